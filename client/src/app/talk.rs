//! Conversations: direct messages, blocks, edits and deletions, read markers and unread
//! counts, typing, and how a shown entry is accounted for (mentions ring the bell, the
//! current room is marked read, other rooms count unread).
//!
//! [`Talk`] is the state with no I/O: which of this user's messages were seen (for
//! `/edit` and `/delete` without a seq), how far each room was shown, and the throttles
//! of `read` and `typing` frames. The `App` methods below carry it out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::App;
use crate::outbox::next_nonce;
use crate::protocol::{ClientFrame, Entry, EntryKind, Room};
use crate::render::clean;

/// At most one `read` frame per room in this interval. Default is 1 s: a busy room
/// costs one frame a second, and what was shown is marked read within a second.
pub const READ_INTERVAL: Duration = Duration::from_secs(1);

/// At most one `typing` frame per room in this interval. Default is 2 s, the rate at
/// which the server forwards them; more would be dropped there anyway.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(2);

/// "alice is typing" is said once per burst: again only after this long without a
/// typing event from her in that room, or after she posted. Default is 10 s.
pub const TYPING_QUIET: Duration = Duration::from_secs(10);

/// Own message seqs remembered per room, for `/edit` and `/delete` without a seq.
/// Default is 50: deleting further back than that takes a seq.
const OWN_KEPT: usize = 50;

/// How far back `/edit` and `/delete` without a seq look in the server's history when no
/// message of the user's was shown since the client started. Default is 100 entries.
const OWN_LOOKBACK: usize = 100;

/// A room's read marker as this client knows it.
#[derive(Debug, Default, Clone, Copy)]
struct ReadMark {
    /// The marker the server has (sent by us, told by the server).
    sent: u64,
    /// The newest seq shown in the room while it was current.
    want: u64,
    /// When a `read` frame for the room was last sent.
    last: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct Talk {
    /// This user's messages seen per room, oldest first, deleted ones removed.
    own: HashMap<String, Vec<u64>>,
    /// Newest seq printed per room.
    shown: HashMap<String, u64>,
    /// Oldest seq printed per room: what came before was never on screen.
    first_shown: HashMap<String, u64>,
    reads: HashMap<String, ReadMark>,
    /// When a `typing` frame was last sent, per room.
    typing_sent: HashMap<String, Instant>,
    /// When a `typing` event was last received, per (room, lowercased user), and
    /// whether it was announced then.
    typing_seen: HashMap<(String, String), Instant>,
}

impl Talk {
    /// Account for an entry printed: the room's newest seq, this user's messages,
    /// deletions, and the end of someone's typing when they post.
    pub(super) fn saw(&mut self, e: &Entry, me: &str) {
        let shown = self.shown.entry(e.room.clone()).or_default();
        *shown = (*shown).max(e.seq);
        let first = self.first_shown.entry(e.room.clone()).or_insert(e.seq);
        *first = (*first).min(e.seq);
        match e.kind {
            EntryKind::Message => {
                if e.from.eq_ignore_ascii_case(me) {
                    if !e.deleted {
                        let own = self.own.entry(e.room.clone()).or_default();
                        if let Err(at) = own.binary_search(&e.seq) {
                            own.insert(at, e.seq);
                        }
                        if own.len() > OWN_KEPT {
                            own.remove(0);
                        }
                    }
                } else {
                    self.typing_seen
                        .remove(&(e.room.clone(), e.from.to_lowercase()));
                }
            }
            EntryKind::Delete => {
                if let (Some(r), Some(own)) = (e.refers, self.own.get_mut(&e.room)) {
                    own.retain(|s| *s != r);
                }
            }
            _ => {}
        }
    }

    /// This user's newest message seen in `room` and not deleted.
    pub(super) fn last_own(&self, room: &str) -> Option<u64> {
        self.own.get(room).and_then(|v| v.last().copied())
    }

    /// Newest seq printed in `room`.
    pub(super) fn shown(&self, room: &str) -> Option<u64> {
        self.shown.get(room).copied()
    }

    /// The server's marker for `room` is at least `seq` (hello, a `Room`, a `read`
    /// frame from another connection): nothing up to it needs sending.
    pub(super) fn read_known(&mut self, room: &str, seq: u64) {
        let m = self.reads.entry(room.to_owned()).or_default();
        m.sent = m.sent.max(seq);
    }

    /// `room` was shown up to `seq` while current: mark it read, in time.
    pub(super) fn want_read(&mut self, room: &str, seq: u64) {
        let m = self.reads.entry(room.to_owned()).or_default();
        m.want = m.want.max(seq);
    }

    /// `read` frames due at `now`, as `(room, seq)`; each counts as sent.
    pub(super) fn due_reads(&mut self, now: Instant) -> Vec<(String, u64)> {
        let mut due = Vec::new();
        for (room, m) in &mut self.reads {
            let ready = m
                .last
                .is_none_or(|t| now.duration_since(t) >= READ_INTERVAL);
            if m.want > m.sent && ready {
                m.sent = m.want;
                m.last = Some(now);
                due.push((room.clone(), m.want));
            }
        }
        due.sort();
        due
    }

    /// Every marker not sent yet, throttle or not (the client is exiting).
    pub(super) fn pending_reads(&mut self) -> Vec<(String, u64)> {
        let mut due = Vec::new();
        for (room, m) in &mut self.reads {
            if m.want > m.sent {
                m.sent = m.want;
                due.push((room.clone(), m.want));
            }
        }
        due.sort();
        due
    }

    /// When [`Talk::due_reads`] next has something, if ever.
    pub(super) fn next_read_due(&self) -> Option<Instant> {
        self.reads
            .values()
            .filter(|m| m.want > m.sent)
            .map(|m| m.last.map_or_else(Instant::now, |t| t + READ_INTERVAL))
            .min()
    }

    /// Whether a `typing` frame for `room` may go now; if so it counts as sent.
    pub(super) fn typing_due(&mut self, room: &str, now: Instant) -> bool {
        match self.typing_sent.get(room) {
            Some(t) if now.duration_since(*t) < TYPING_INTERVAL => false,
            _ => {
                self.typing_sent.insert(room.to_owned(), now);
                true
            }
        }
    }

    /// `user` is typing in `room`: whether to say so (the start of a burst).
    pub(super) fn typing_heard(&mut self, room: &str, user: &str, now: Instant) -> bool {
        let key = (room.to_owned(), user.to_lowercase());
        let new_burst = self
            .typing_seen
            .get(&key)
            .is_none_or(|t| now.duration_since(*t) >= TYPING_QUIET);
        self.typing_seen.insert(key, now);
        new_burst
    }

    /// The user left `room`: forget it.
    pub(super) fn forget(&mut self, room: &str) {
        self.own.remove(room);
        self.shown.remove(room);
        self.first_shown.remove(room);
        self.reads.remove(room);
        self.typing_sent.remove(room);
        self.typing_seen.retain(|(r, _), _| r != room);
    }
}

impl App {
    /// Print an entry the timeline released, and account for it: the current room is
    /// marked read up to it, another room counts it unread, and a mention of the user
    /// rings the terminal bell when `bell` (the caller rings once per batch). Returns
    /// whether the bell rang.
    pub(super) fn show_entry(&mut self, e: &Entry, bell: bool) -> bool {
        let label = self.label(&e.room);
        let Some(s) = self.session.as_mut() else {
            let line = self.style.entry(&label, e);
            self.out.line(&line);
            return false;
        };
        let me = s.user.clone();
        let from_me = e.from.eq_ignore_ascii_case(&me);
        let mentioned = !from_me && e.mentions_user(&me);
        s.talk.saw(e, &me);
        let current = s.current.as_deref() == Some(e.room.as_str());
        if from_me && e.kind == EntryKind::Message {
            // Posting moved the server's marker already.
            s.talk.read_known(&e.room, e.seq);
        } else if current {
            s.talk.want_read(&e.room, e.seq);
        }
        if let Some(r) = s.rooms.get_mut(&e.room) {
            if e.seq > r.last_seq {
                r.last_seq = e.seq;
                let counts = e.kind == EntryKind::Message && !from_me && !e.deleted;
                if counts && !current {
                    r.unread += 1;
                }
            }
            if current {
                r.unread = 0;
            }
        }
        let mut line = self.style.entry_for(&label, e, &me);
        // Only on a terminal with colour: not under NO_COLOR or TERM=dumb, nor in scripts.
        let ring = bell && mentioned && self.ui.is_some() && self.style.colour;
        if ring {
            line.push('\x07');
        }
        self.out.line(&line);
        ring
    }

    /// The room just became current: everything shown in it is read.
    pub(super) fn mark_current_read(&mut self, id: &str) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(seq) = s.talk.shown(id) else {
            return;
        };
        s.talk.want_read(id, seq);
        // Unread entries from before this client started were never shown: they stay.
        if let Some(r) = s.rooms.get_mut(id).filter(|r| seq >= r.last_seq) {
            r.unread = 0;
        }
        self.flush_reads(false);
    }

    /// Send the `read` frames that are due (all pending ones with `all`), if connected.
    pub(super) fn flush_reads(&mut self, all: bool) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if !s.online {
            return;
        }
        let Some(conn) = &s.conn else { return };
        let due = if all {
            s.talk.pending_reads()
        } else {
            s.talk.due_reads(Instant::now())
        };
        for (room, seq) in due {
            conn.send(ClientFrame::Read { room: &room, seq }.to_json());
        }
    }

    /// The user is composing a message (a keystroke in the line editor): tell the
    /// current room, at most once per [`TYPING_INTERVAL`].
    pub(super) fn typed(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let (Some(room), Some(conn)) = (s.current.clone(), &s.conn) else {
            return;
        };
        if s.online && s.talk.typing_due(&room, Instant::now()) {
            conn.send(ClientFrame::Typing { room: &room }.to_json());
        }
    }

    /// A `typing` frame: say so once per burst, never for this user's own typing.
    pub(super) fn on_typing(&mut self, room: &str, user: &str) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.user.eq_ignore_ascii_case(user) || !s.rooms.contains_key(room) {
            return;
        }
        if s.talk.typing_heard(room, user, Instant::now()) {
            let label = self.label(room);
            let line = self.style.typing(user, &label);
            self.out.line(&line);
        }
    }

    /// A `read` frame: another connection of this user read `room` up to `seq`.
    pub(super) fn on_read(&mut self, room: &str, seq: u64) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.talk.read_known(room, seq);
        if let Some(r) = s.rooms.get_mut(room) {
            r.read_seq = r.read_seq.max(seq);
            if seq >= r.last_seq {
                r.unread = 0;
            }
        }
    }

    /// `3 unread in lobby, 1 unread in @bob`, for the rooms with unread messages.
    pub(super) fn unread_summary(&self) -> Option<String> {
        let s = self.session.as_ref()?;
        let mut rooms: Vec<&Room> = s.rooms.values().filter(|r| r.unread > 0).collect();
        rooms.sort_by_key(|r| (r.is_dm(), r.name.to_lowercase()));
        let parts: Vec<String> = rooms
            .iter()
            .map(|r| format!("{} unread in {}", r.unread, self.label(&r.id)))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// The room just became current by the user's choice: show what is unread in it and
    /// was never on screen here (it came while this client was not running), then mark
    /// it read.
    pub(super) fn show_unread(&mut self, id: &str) {
        let Some(s) = self.session.as_ref() else {
            return;
        };
        let Some(r) = s.rooms.get(id).filter(|r| r.unread > 0) else {
            return;
        };
        let (read_seq, unread, token, me) = (r.read_seq, r.unread, s.token.clone(), s.user.clone());
        let before = s.talk.first_shown.get(id).copied().unwrap_or(u64::MAX);
        // Unread counts messages only; leave room for the joins and edits between them.
        let limit = (unread as usize)
            .saturating_mul(2)
            .saturating_add(20)
            .min(500);
        let page = match self.api.messages(&token, id, limit) {
            Ok(p) => p,
            Err(e) => return self.api_error("cannot fetch what is unread", e),
        };
        let label = self.label(id);
        let missed: Vec<&Entry> = page
            .entries
            .iter()
            .filter(|e| e.seq > read_seq && e.seq < before)
            .collect();
        let Some(last) = missed.last().map(|e| e.seq) else {
            return;
        };
        let rows: Vec<String> = missed
            .iter()
            .map(|e| self.style.entry_for(&label, e, &me))
            .collect();
        let heading = format!("{unread} unread in {label}:");
        let text = self.style.listing(&heading, &rows);
        self.out.line(&text);
        if let Some(s) = self.session.as_mut() {
            s.talk.want_read(id, last);
            if let Some(r) = s.rooms.get_mut(id) {
                r.unread = 0;
            }
        }
        self.flush_reads(false);
    }

    /// `/msg USER TEXT`: open (or reuse) the DM and post there; the current room stays.
    pub(super) fn msg(&mut self, user: &str, text: &str) {
        let Some(id) = self.open_dm(user, false) else {
            return;
        };
        self.send_to(id, text.to_owned());
    }

    /// `/dm USER`: open (or reuse) the DM and make it current.
    pub(super) fn dm(&mut self, user: &str) {
        if let Some(id) = self.open_dm(user, true) {
            self.announce_current(&id);
            self.show_unread(&id);
        }
    }

    /// The DM room with `user`, opened over REST if this client does not know it yet.
    fn open_dm(&mut self, user: &str, current: bool) -> Option<String> {
        let token = self.token()?;
        let known = self.session.as_ref().and_then(|s| {
            s.rooms
                .values()
                .find(|r| {
                    r.dm_peer(&s.user)
                        .is_some_and(|p| p.eq_ignore_ascii_case(user))
                })
                .map(|r| r.id.clone())
        });
        if let Some(id) = known {
            if current {
                if let Some(s) = self.session.as_mut() {
                    s.current = Some(id.clone());
                }
            }
            return Some(id);
        }
        match self.api.open_dm(&token, user) {
            Ok(room) => {
                let id = room.id.clone();
                self.entered(room, current);
                let label = self.label(&id);
                self.notice(&format!(
                    "direct messages with {} are {label}; /dm {} makes them current",
                    clean(user),
                    clean(user)
                ));
                Some(id)
            }
            Err(e) => {
                let what = format!("cannot open a DM with {}", clean(user));
                self.api_error(&what, e);
                None
            }
        }
    }

    /// `/dms`: the user's DMs with unread counts.
    pub(super) fn dms(&mut self) {
        if self.need_session().is_none() {
            return;
        }
        let line = self.dm_listing();
        self.out.line(&line);
    }

    /// The DM section of `/rooms` and `/dms`.
    pub(super) fn dm_listing(&self) -> String {
        let Some(s) = &self.session else {
            return self.style.listing("not logged in", &[]);
        };
        let mut dms: Vec<&Room> = s.rooms.values().filter(|r| r.is_dm()).collect();
        dms.sort_by_key(|r| r.name.to_lowercase());
        let rows: Vec<String> = dms
            .iter()
            .map(|r| {
                let label = self.label(&r.id);
                let row = format!("{label:<20}  id {}", clean(&r.id));
                if r.unread > 0 {
                    self.style.strong(&format!("{row}  {} unread", r.unread))
                } else {
                    row
                }
            })
            .collect();
        let heading = if dms.is_empty() {
            "no direct messages yet: /msg USER TEXT starts one".to_owned()
        } else {
            format!(
                "{} direct message room(s); /dm USER makes one current",
                dms.len()
            )
        };
        self.style.listing(&heading, &rows)
    }

    /// `/edit [SEQ] TEXT` in the current room.
    pub(super) fn edit(&mut self, seq: Option<u64>, text: &str) {
        let Some((room, seq, nonce)) = self.revision_target("/edit", seq) else {
            return;
        };
        if let Some(conn) = self.session.as_ref().and_then(|s| s.conn.as_ref()) {
            let frame = ClientFrame::Edit {
                room: &room,
                seq,
                text,
                nonce: &nonce,
            };
            conn.send(frame.to_json());
        }
    }

    /// `/delete [SEQ]` in the current room.
    pub(super) fn delete(&mut self, seq: Option<u64>) {
        let Some((room, seq, nonce)) = self.revision_target("/delete", seq) else {
            return;
        };
        if let Some(conn) = self.session.as_ref().and_then(|s| s.conn.as_ref()) {
            let frame = ClientFrame::Delete {
                room: &room,
                seq,
                nonce: &nonce,
            };
            conn.send(frame.to_json());
        }
    }

    /// The room, seq and a nonce for an edit or deletion, or an error said.
    fn revision_target(&mut self, what: &str, seq: Option<u64>) -> Option<(String, u64, String)> {
        let s = self.need_session()?;
        let Some(room) = s.current.clone() else {
            self.error(&format!(
                "{what} acts on the current room, and there is none: /switch ID first"
            ));
            return None;
        };
        if !s.online {
            self.error(&format!("{what}: offline; try again once reconnected"));
            return None;
        }
        let seq = match seq.or_else(|| s.talk.last_own(&room)) {
            Some(seq) => seq,
            None => self.last_own_in_history(&room)?,
        };
        Some((room, seq, next_nonce()))
    }

    /// This user's last message in `room` that is still kept, from the server's history,
    /// when none was shown since the client started.
    fn last_own_in_history(&mut self, room: &str) -> Option<u64> {
        let (token, me) = self
            .session
            .as_ref()
            .map(|s| (s.token.clone(), s.user.clone()))?;
        let page = match self.api.messages(&token, room, OWN_LOOKBACK) {
            Ok(p) => p,
            Err(e) => {
                self.api_error("cannot look for your last message", e);
                return None;
            }
        };
        let found = page
            .entries
            .iter()
            .rev()
            .find(|e| {
                e.kind == EntryKind::Message && !e.deleted && e.from.eq_ignore_ascii_case(&me)
            })
            .map(|e| e.seq);
        if found.is_none() {
            let label = self.label(room);
            self.error(&format!(
                "no message of yours among the last {OWN_LOOKBACK} entries of {label}; give its number (/history shows them)"
            ));
        }
        found
    }

    /// `/block USER` and `/unblock USER`.
    pub(super) fn block(&mut self, user: &str, block: bool) {
        let Some(token) = self.token() else { return };
        let user = clean(user);
        match (self.api.set_blocked(&token, &user, block), block) {
            (Ok(()), true) => self.notice(&format!(
                "blocked {user}: they cannot open a DM with you or post in yours"
            )),
            (Ok(()), false) => self.notice(&format!("unblocked {user}")),
            (Err(e), _) if e.status() == Some(404) && !block => {
                let code = e.code().unwrap_or("not_found").to_owned();
                if code == "user_not_found" {
                    self.api_error(&format!("cannot unblock {user}"), e);
                } else {
                    self.error(&format!("{user} is not blocked ({code})"));
                }
            }
            (Err(e), true) => self.api_error(&format!("cannot block {user}"), e),
            (Err(e), false) => self.api_error(&format!("cannot unblock {user}"), e),
        }
    }

    /// `/blocks`.
    pub(super) fn blocks(&mut self) {
        let Some(token) = self.token() else { return };
        match self.api.blocks(&token) {
            Ok(list) => {
                let heading = if list.is_empty() {
                    "you have blocked nobody".to_owned()
                } else {
                    format!("{} blocked user(s); /unblock USER", list.len())
                };
                let rows: Vec<String> = list.iter().map(|u| clean(u)).collect();
                let line = self.style.listing(&heading, &rows);
                self.out.line(&line);
            }
            Err(e) => self.api_error("cannot list blocks", e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(room: &str, seq: u64, from: &str) -> Entry {
        Entry {
            room: room.into(),
            seq,
            from: from.into(),
            text: Some("x".into()),
            ..Entry::default()
        }
    }

    #[test]
    fn own_messages_are_remembered_until_deleted() {
        let mut t = Talk::default();
        t.saw(&msg("r", 3, "Al"), "al");
        t.saw(&msg("r", 5, "bo"), "al");
        t.saw(&msg("r", 7, "al"), "al");
        t.saw(&msg("q", 9, "al"), "al");
        assert_eq!(t.last_own("r"), Some(7));
        assert_eq!(t.shown("r"), Some(7));
        // Deleted by anyone: the one before becomes the last.
        let del = Entry {
            kind: EntryKind::Delete,
            refers: Some(7),
            ..msg("r", 8, "bo")
        };
        t.saw(&del, "al");
        assert_eq!(t.last_own("r"), Some(3));
        assert_eq!(t.shown("r"), Some(8));
        // A message served as deleted is not one to edit.
        let gone = Entry {
            deleted: true,
            text: None,
            ..msg("r", 10, "al")
        };
        t.saw(&gone, "al");
        assert_eq!(t.last_own("r"), Some(3));
        t.forget("r");
        assert_eq!((t.last_own("r"), t.shown("r")), (None, None));
        assert_eq!(t.last_own("q"), Some(9));
        for s in 100..200 {
            t.saw(&msg("q", s, "al"), "al");
        }
        assert_eq!(t.own["q"].len(), OWN_KEPT);
        assert_eq!(t.last_own("q"), Some(199));
    }

    #[test]
    fn read_markers_are_throttled_per_room() {
        let now = Instant::now();
        let mut t = Talk::default();
        t.read_known("r", 4);
        t.want_read("r", 3);
        assert!(t.due_reads(now).is_empty(), "never backwards");
        assert_eq!(t.next_read_due(), None);
        t.want_read("r", 5);
        t.want_read("q", 2);
        assert_eq!(t.due_reads(now), [("q".to_owned(), 2), ("r".to_owned(), 5)]);
        // Within the interval: held, newest wins.
        t.want_read("r", 6);
        t.want_read("r", 8);
        let later = now + READ_INTERVAL / 2;
        assert!(t.due_reads(later).is_empty());
        assert_eq!(t.next_read_due(), Some(now + READ_INTERVAL));
        assert_eq!(t.due_reads(now + READ_INTERVAL), [("r".to_owned(), 8)]);
        // Another connection read further: nothing to send.
        t.want_read("r", 9);
        t.read_known("r", 12);
        assert!(t.due_reads(now + READ_INTERVAL * 3).is_empty());
        // At exit everything pending goes, throttle or not.
        t.want_read("r", 13);
        assert_eq!(t.pending_reads(), [("r".to_owned(), 13)]);
        assert!(t.pending_reads().is_empty());
    }

    #[test]
    fn typing_is_throttled_both_ways() {
        let now = Instant::now();
        let mut t = Talk::default();
        assert!(t.typing_due("r", now));
        assert!(!t.typing_due("r", now + TYPING_INTERVAL / 2));
        assert!(t.typing_due("q", now), "rooms are independent");
        assert!(t.typing_due("r", now + TYPING_INTERVAL));

        // Heard: said at the start of a burst only.
        assert!(t.typing_heard("r", "Bo", now));
        assert!(!t.typing_heard("r", "bo", now + Duration::from_secs(2)));
        assert!(!t.typing_heard("r", "bo", now + Duration::from_secs(4)));
        assert!(t.typing_heard("q", "bo", now));
        assert!(t.typing_heard("r", "bo", now + Duration::from_secs(4) + TYPING_QUIET));
        // Once she posts, her next typing is news again.
        t.saw(&msg("r", 1, "BO"), "al");
        assert!(t.typing_heard("r", "bo", now + Duration::from_secs(15)));
    }
}
