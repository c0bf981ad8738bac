//! Read markers, unread counts, typing and mentions: how a shown entry is accounted for
//! (the current room is marked read, other rooms count unread, a mention rings the
//! bell), what is unread on connect and on switching rooms, and typing both ways. The
//! state and its throttles are [`crate::talk::Talk`]'s.

use std::time::Instant;

use super::App;
use crate::protocol::{ClientFrame, Entry, EntryKind, Room};

impl App {
    /// Print an entry the timeline released, and account for it: the current room is
    /// marked read up to it, another room counts it unread, and a mention of the user
    /// rings the terminal bell when `bell` (the caller rings once per batch). Returns
    /// whether the bell rang.
    pub(super) fn show_entry(&mut self, e: &Entry, bell: bool) -> bool {
        let label = self.label(&e.room);
        let Some(s) = self.session.as_mut() else {
            let line = self.style.entry(&label, e);
            self.print(&line);
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
        } else if current && !removes(e, &me) {
            // Not the kick or ban of this user: the room is lost, a `read` would be refused.
            s.talk.want_read(&e.room, e.seq);
        }
        if let Some(r) = s.rooms.get_mut(&e.room) {
            if e.seq > r.last_seq {
                r.last_seq = e.seq;
                let counts = e.kind == EntryKind::Message && !from_me && !e.is_deleted();
                if counts && !current {
                    r.unread = Some(r.unread_count() + 1);
                }
            }
            if current {
                r.unread = Some(0);
            }
        }
        let mut line = self.style.entry_for(&label, e, &me);
        // Only on a terminal with colour: not under NO_COLOR or TERM=dumb, nor in scripts.
        let ring = bell && mentioned && self.ui.is_some() && self.style.colour;
        if ring {
            line.push('\x07');
        }
        self.print(&line);
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
            r.unread = Some(0);
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
            conn.send(ClientFrame::read(&room, seq).to_json());
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
            conn.send(ClientFrame::typing(&room).to_json());
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
            self.print(&line);
        }
    }

    /// A `read` frame: another connection of this user read `room` up to `seq`.
    pub(super) fn on_read(&mut self, room: &str, seq: u64) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.talk.read_known(room, seq);
        if let Some(r) = s.rooms.get_mut(room) {
            r.read_seq = Some(r.read_marker().max(seq));
            if seq >= r.last_seq {
                r.unread = Some(0);
            }
        }
    }

    /// `3 unread in lobby, 1 unread in @bob`, for the rooms with unread messages.
    pub(super) fn unread_summary(&self) -> Option<String> {
        let s = self.session.as_ref()?;
        let mut rooms: Vec<&Room> = s.rooms.values().filter(|r| r.unread_count() > 0).collect();
        rooms.sort_by_key(|r| (r.is_dm(), r.name.to_lowercase()));
        let parts: Vec<String> = rooms
            .iter()
            .map(|r| format!("{} unread in {}", r.unread_count(), self.label(&r.id)))
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
        let Some(r) = s.rooms.get(id).filter(|r| r.unread_count() > 0) else {
            return;
        };
        let (read_seq, unread, token, me) = (
            r.read_marker(),
            r.unread_count(),
            s.token.clone(),
            s.user.clone(),
        );
        let before = s.talk.first_shown(id).unwrap_or(u64::MAX);
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
        // Those shown live in this session were counted too, but are not repeated.
        let messages = missed
            .iter()
            .filter(|e| e.kind == EntryKind::Message && !e.is_deleted())
            .filter(|e| !e.from.eq_ignore_ascii_case(&me))
            .count()
            .min(unread as usize);
        let heading = format!("{messages} unread in {label}:");
        let text = self.style.listing(&heading, &rows);
        self.print(&text);
        if let Some(s) = self.session.as_mut() {
            s.talk.want_read(id, last);
            if let Some(r) = s.rooms.get_mut(id) {
                r.unread = Some(0);
            }
        }
        self.flush_reads(false);
    }
}

/// Whether `e` removes `me` from its room (a kick or a ban of them).
fn removes(e: &Entry, me: &str) -> bool {
    matches!(e.kind, EntryKind::Kick | EntryKind::Ban)
        && e.extra
            .target
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(me))
}
