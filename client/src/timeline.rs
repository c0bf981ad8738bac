//! Exactly-once display of room timelines across reconnects.
//!
//! For each room the client remembers the highest `seq` it has shown. Live `entry` frames
//! and `history` frames (answers to `sync`, and the catch-up sent after a join) are merged
//! by seq: anything at or below the mark is a duplicate and is dropped.
//!
//! While a room is catching up (a `sync` is outstanding, or we just joined and wait for
//! the server's history), live entries are held back, because a newer live entry shown
//! first would move the mark past the older entries still on their way in the history.
//! When the history arrives, or after [`CATCH_UP_TIMEOUT`] if it never does, the held
//! entries and the history are shown together in seq order.
//!
//! No I/O here: methods take `now` and return the entries to show.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::protocol::Entry;

/// How long live entries are held for a history that does not come. Default is 5 s:
/// long enough for a sync on a loaded server, short enough that a lost answer is only a
/// short stall, never a silent loss of live messages.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// Most entries held back per room while catching up; past it they are shown at once.
/// Default is 2,000: twice what the server keeps per room.
pub const MAX_HELD: usize = 2000;

#[derive(Debug, Default)]
struct Track {
    /// Highest seq shown (or deliberately skipped as old).
    shown: u64,
    /// Set while catching up: when to give up waiting for history.
    waiting_until: Option<Instant>,
    held: BTreeMap<u64, Entry>,
    /// Waiting for the history the server sends after a join: it is context, so its
    /// `complete: false` (older entries exist) is no gap.
    joining: bool,
}

/// What a history frame or a flush produced.
#[derive(Debug, Default, PartialEq)]
pub struct Shown {
    pub entries: Vec<Entry>,
    /// The server no longer keeps some of the entries asked for.
    pub gap: bool,
}

#[derive(Debug, Default)]
pub struct Timeline {
    rooms: HashMap<String, Track>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Forget everything (logout, or a new server epoch).
    pub fn clear(&mut self) {
        self.rooms.clear();
    }

    pub fn knows(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Highest seq shown in `room`, if the room is tracked.
    pub fn last_seq(&self, room: &str) -> Option<u64> {
        self.rooms.get(room).map(|t| t.shown)
    }

    /// Start tracking `room` as of `last_seq`: older entries will not be shown.
    /// Does nothing if the room is already tracked.
    pub fn track(&mut self, room: &str, last_seq: u64) {
        self.rooms.entry(room.to_owned()).or_insert(Track {
            shown: last_seq,
            ..Track::default()
        });
    }

    /// We just joined `room`: hold live entries until the server's history arrives.
    pub fn expect_history(&mut self, room: &str, now: Instant) {
        let t = self.rooms.entry(room.to_owned()).or_default();
        t.waiting_until = Some(now + CATCH_UP_TIMEOUT);
        t.joining = true;
    }

    /// About to send `sync`: returns the `since` to ask for, and holds live entries.
    pub fn begin_sync(&mut self, room: &str, now: Instant) -> u64 {
        let t = self.rooms.entry(room.to_owned()).or_default();
        t.waiting_until = Some(now + CATCH_UP_TIMEOUT);
        t.joining = false;
        t.shown
    }

    /// Whether live entries of `room` are being held for a history still to come.
    pub fn is_catching_up(&self, room: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|t| t.waiting_until.is_some())
    }

    pub fn forget(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// Rooms tracked now.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// A live entry. Returns what to show now (possibly nothing, possibly more than one
    /// entry when a hold overflows). An entry for an unknown room starts a short hold:
    /// the user joined it elsewhere or just now, and its history is likely on the way.
    pub fn on_entry(&mut self, e: Entry, now: Instant) -> Vec<Entry> {
        let t = self.rooms.entry(e.room.clone()).or_insert_with(|| Track {
            waiting_until: Some(now + CATCH_UP_TIMEOUT),
            ..Track::default()
        });
        if e.seq <= t.shown {
            return Vec::new();
        }
        if t.waiting_until.is_some() {
            t.held.insert(e.seq, e);
            if t.held.len() > MAX_HELD {
                t.waiting_until = None;
                return drain(t, Vec::new());
            }
            return Vec::new();
        }
        t.shown = e.seq;
        vec![e]
    }

    /// A `history` frame: ends the hold for its room.
    pub fn on_history(&mut self, room: &str, entries: Vec<Entry>, complete: bool) -> Shown {
        let t = self.rooms.entry(room.to_owned()).or_default();
        // `complete: false` after a join only means older entries than the 50 sent exist;
        // it is a gap only when we had already shown something of this room.
        let gap = !complete && t.shown > 0 && !t.joining;
        t.waiting_until = None;
        t.joining = false;
        Shown {
            entries: drain(t, entries),
            gap,
        }
    }

    /// Give up on histories that did not come in time; show what was held.
    pub fn expire(&mut self, now: Instant) -> Vec<Entry> {
        let mut out = Vec::new();
        for t in self.rooms.values_mut() {
            if t.waiting_until.is_some_and(|d| d <= now) {
                t.waiting_until = None;
                out.extend(drain(t, Vec::new()));
            }
        }
        out
    }

    /// The earliest moment [`Timeline::expire`] has work, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.rooms.values().filter_map(|t| t.waiting_until).min()
    }
}

/// Merge `extra` with the held entries, drop duplicates and what was already shown,
/// return the rest in seq order and move the mark.
fn drain(t: &mut Track, extra: Vec<Entry>) -> Vec<Entry> {
    let mut all = std::mem::take(&mut t.held);
    for e in extra {
        all.entry(e.seq).or_insert(e);
    }
    let out: Vec<Entry> = all.into_values().filter(|e| e.seq > t.shown).collect();
    if let Some(last) = out.last() {
        t.shown = last.seq;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EntryKind;

    fn e(room: &str, seq: u64) -> Entry {
        Entry {
            room: room.into(),
            seq,
            ts: 0,
            kind: EntryKind::Message,
            from: "a".into(),
            text: Some(format!("m{seq}")),
            nonce: None,
        }
    }

    fn seqs(v: &[Entry]) -> Vec<u64> {
        v.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn live_entries_show_once() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 3);
        assert_eq!(seqs(&t.on_entry(e("r", 3), now)), Vec::<u64>::new());
        assert_eq!(seqs(&t.on_entry(e("r", 4), now)), vec![4]);
        assert_eq!(seqs(&t.on_entry(e("r", 4), now)), Vec::<u64>::new());
        assert_eq!(t.last_seq("r"), Some(4));
    }

    #[test]
    fn sync_merges_held_live_entries_in_order() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 5);
        assert_eq!(t.begin_sync("r", now), 5);
        // Live entries overtake the sync answer.
        assert!(t.on_entry(e("r", 9), now).is_empty());
        assert!(t.on_entry(e("r", 8), now).is_empty());
        let shown = t.on_history("r", vec![e("r", 6), e("r", 7), e("r", 8)], true);
        assert_eq!(seqs(&shown.entries), vec![6, 7, 8, 9]);
        assert!(!shown.gap);
        // A late duplicate of anything is dropped.
        assert!(t.on_entry(e("r", 7), now).is_empty());
        assert_eq!(seqs(&t.on_entry(e("r", 10), now)), vec![10]);
    }

    #[test]
    fn history_after_join_shows_context_and_join() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.expect_history("r", now);
        // Our own join entry may come before the history that contains it.
        assert!(t.on_entry(e("r", 3), now).is_empty());
        let shown = t.on_history("r", vec![e("r", 1), e("r", 2), e("r", 3)], false);
        assert_eq!(seqs(&shown.entries), vec![1, 2, 3]);
        assert!(!shown.gap, "older entries before a join are no gap");

        // Joining a busy room: context starts 50 back; older ones are simply not shown.
        t.track("busy", 950);
        t.expect_history("busy", now);
        let shown = t.on_history("busy", (951..=1000).map(|s| e("busy", s)).collect(), false);
        assert_eq!(shown.entries.len(), 50);
        assert!(!shown.gap);
    }

    #[test]
    fn incomplete_sync_is_a_gap() {
        let mut t = Timeline::new();
        t.track("r", 5);
        t.begin_sync("r", Instant::now());
        let shown = t.on_history("r", vec![e("r", 40)], false);
        assert!(shown.gap);
        assert_eq!(seqs(&shown.entries), vec![40]);
    }

    #[test]
    fn held_entries_flush_after_timeout() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 1);
        t.begin_sync("r", now);
        assert!(t.on_entry(e("r", 3), now).is_empty());
        assert!(t.expire(now).is_empty());
        assert_eq!(t.next_deadline(), Some(now + CATCH_UP_TIMEOUT));
        assert_eq!(seqs(&t.expire(now + CATCH_UP_TIMEOUT)), vec![3]);
        assert_eq!(t.next_deadline(), None);
        assert_eq!(seqs(&t.on_entry(e("r", 4), now)), vec![4]);
    }

    #[test]
    fn unknown_room_holds_briefly() {
        let now = Instant::now();
        let mut t = Timeline::new();
        assert!(t.on_entry(e("new", 7), now).is_empty());
        assert_eq!(seqs(&t.expire(now + CATCH_UP_TIMEOUT)), vec![7]);
    }

    #[test]
    fn rooms_are_independent() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("a", 0);
        t.track("b", 10);
        t.begin_sync("a", now);
        assert!(t.on_entry(e("a", 1), now).is_empty());
        assert_eq!(seqs(&t.on_entry(e("b", 11), now)), vec![11]);
    }
}
