//! What this client knows of its conversations, with no I/O: which of the user's
//! messages it has shown (for `/edit` and `/delete` without a seq), how far each room was
//! shown, and the throttles of `read` and `typing` frames. The app thread owns one per
//! session and carries out what it answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::protocol::{Entry, EntryKind};

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

/// A session's conversation state; see the module docs.
#[derive(Debug, Default)]
pub struct Talk {
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
    pub fn saw(&mut self, e: &Entry, me: &str) {
        let shown = self.shown.entry(e.room.clone()).or_default();
        *shown = (*shown).max(e.seq);
        let first = self.first_shown.entry(e.room.clone()).or_insert(e.seq);
        *first = (*first).min(e.seq);
        match e.kind {
            EntryKind::Message => {
                if e.from.eq_ignore_ascii_case(me) {
                    if !e.is_deleted() {
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
                if let (Some(r), Some(own)) = (e.extra.refers, self.own.get_mut(&e.room)) {
                    own.retain(|s| *s != r);
                }
            }
            _ => {}
        }
    }

    /// This user's newest message seen in `room` and not deleted.
    pub fn last_own(&self, room: &str) -> Option<u64> {
        self.own.get(room).and_then(|v| v.last().copied())
    }

    /// Newest seq printed in `room`.
    pub fn shown(&self, room: &str) -> Option<u64> {
        self.shown.get(room).copied()
    }

    /// Oldest seq printed in `room`: older entries were never on screen here.
    pub fn first_shown(&self, room: &str) -> Option<u64> {
        self.first_shown.get(room).copied()
    }

    /// The server's marker for `room` is at least `seq` (hello, a `Room`, a `read`
    /// frame from another connection): nothing up to it needs sending.
    pub fn read_known(&mut self, room: &str, seq: u64) {
        let m = self.reads.entry(room.to_owned()).or_default();
        m.sent = m.sent.max(seq);
    }

    /// `room` was shown up to `seq` while current: mark it read, in time.
    pub fn want_read(&mut self, room: &str, seq: u64) {
        let m = self.reads.entry(room.to_owned()).or_default();
        m.want = m.want.max(seq);
    }

    /// `read` frames due at `now`, as `(room, seq)`; each counts as sent.
    pub fn due_reads(&mut self, now: Instant) -> Vec<(String, u64)> {
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
    pub fn pending_reads(&mut self) -> Vec<(String, u64)> {
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
    pub fn next_read_due(&self) -> Option<Instant> {
        self.reads
            .values()
            .filter(|m| m.want > m.sent)
            .map(|m| m.last.map_or_else(Instant::now, |t| t + READ_INTERVAL))
            .min()
    }

    /// Whether a `typing` frame for `room` may go now; if so it counts as sent.
    pub fn typing_due(&mut self, room: &str, now: Instant) -> bool {
        match self.typing_sent.get(room) {
            Some(t) if now.duration_since(*t) < TYPING_INTERVAL => false,
            _ => {
                self.typing_sent.insert(room.to_owned(), now);
                true
            }
        }
    }

    /// `user` is typing in `room`: whether to say so (the start of a burst).
    pub fn typing_heard(&mut self, room: &str, user: &str, now: Instant) -> bool {
        let key = (room.to_owned(), user.to_lowercase());
        let new_burst = self
            .typing_seen
            .get(&key)
            .is_none_or(|t| now.duration_since(*t) >= TYPING_QUIET);
        self.typing_seen.insert(key, now);
        new_burst
    }

    /// The user left `room`: forget it.
    pub fn forget(&mut self, room: &str) {
        self.own.remove(room);
        self.shown.remove(room);
        self.first_shown.remove(room);
        self.reads.remove(room);
        self.typing_sent.remove(room);
        self.typing_seen.retain(|(r, _), _| r != room);
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
        let del = {
            let mut e = msg("r", 8, "bo");
            e.kind = EntryKind::Delete;
            e.extra.refers = Some(7);
            e
        };
        t.saw(&del, "al");
        assert_eq!(t.last_own("r"), Some(3));
        assert_eq!(t.shown("r"), Some(8));
        // A message served as deleted is not one to edit.
        let gone = {
            let mut e = msg("r", 10, "al");
            e.extra.deleted = Some(true);
            e.text = None;
            e
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
