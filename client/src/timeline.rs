//! Exactly-once, hole-free display of room timelines.
//!
//! For each room the client remembers the highest `seq` it has shown: the mark. A live
//! `entry` at or below the mark is a duplicate and is dropped; the one right after it is
//! shown. One further on means entries went missing in between, a hole, and a hole is
//! never shown: the entry is held, a `sync` from the mark is asked for, and when the
//! `history` answer comes, its entries and the held ones are shown together in seq order,
//! each once.
//!
//! Live entries are held the same way whenever a history is awaited: the answer to the
//! `sync` sent after a reconnect, or the history the server sends after a join. After a
//! join the mark is only a guess, so entries older than that history are context not
//! shown, not a hole.
//!
//! A `history` frame settles everything up to its last entry. When it says `more` (the
//! server cut it to fit its output budget), a `sync` from that last entry follows. When a
//! hole is still left before the held entries, the room syncs again. After
//! [`MAX_SYNC_ROUNDS`] syncs that neither fill the hole nor come back within
//! [`CATCH_UP_TIMEOUT`], what is held is shown anyway and the gap is reported: a stall is
//! bounded, and a loss is never silent.
//!
//! No I/O here: methods take `now` and return a [`Step`] saying what to show, which
//! `sync` frames to send and which gaps to tell the user about.

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

/// Most `sync` frames asked in a row to fill one hole (continuation pages of a `more`
/// answer do not count). Default is 3: an answer lost or late, or a hole the server keeps
/// answering around, costs at most three round trips or 15 s before the user sees what
/// arrived and is told what is missing.
pub const MAX_SYNC_ROUNDS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Showing live entries as they come.
    Live,
    /// Waiting for the history the server sends after a join; the mark is a guess.
    Joining { deadline: Instant },
    /// A `sync` from the mark is outstanding; `round` counts the syncs asked in a row.
    Syncing { deadline: Instant, round: u32 },
    /// The connection dropped while a history was awaited: no deadline runs while
    /// offline, the `sync` after the reconnect takes over.
    Offline,
}

#[derive(Debug)]
struct Track {
    /// Highest seq shown (or settled by a history as not to be shown).
    shown: u64,
    phase: Phase,
    held: BTreeMap<u64, Entry>,
}

impl Track {
    fn new(shown: u64, phase: Phase) -> Track {
        Track {
            shown,
            phase,
            held: BTreeMap::new(),
        }
    }

    /// Hold `e` unless it is shown or held already.
    fn hold(&mut self, e: Entry) {
        if e.seq > self.shown {
            self.held.entry(e.seq).or_insert(e);
        }
    }

    /// Move held entries up to `upto` to `out`, in order, and the mark with them.
    fn settle_to(&mut self, upto: u64, out: &mut Vec<Entry>) {
        let later = self.held.split_off(&(upto.saturating_add(1)));
        out.extend(std::mem::replace(&mut self.held, later).into_values());
        self.shown = self.shown.max(upto);
    }

    /// Move held entries that follow the mark without a hole to `out`.
    fn settle_run(&mut self, out: &mut Vec<Entry>) {
        while let Some(e) = self.held.remove(&(self.shown + 1)) {
            self.shown = e.seq;
            out.push(e);
        }
    }

    /// Whether the first held entry leaves a hole after the mark.
    fn hole(&self) -> bool {
        self.held.keys().next().is_some_and(|&s| s > self.shown + 1)
    }
}

/// Why some entries of a room will not be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The server no longer keeps entries we asked for (`complete: false`).
    NotKept,
    /// A hole the server's answers did not fill in time; held entries were shown anyway.
    Unfilled,
}

/// What the timeline asks of the app after an event, in this order: report the gaps,
/// send the syncs, show the entries.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Entries to show, in seq order within each room.
    pub show: Vec<Entry>,
    /// `sync` frames to send, as `(room, since)`.
    pub sync: Vec<(String, u64)>,
    pub gaps: Vec<(String, Gap)>,
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
        self.rooms
            .entry(room.to_owned())
            .or_insert_with(|| Track::new(last_seq, Phase::Live));
    }

    /// We just joined `room`: hold live entries until the server's history arrives.
    pub fn expect_history(&mut self, room: &str, now: Instant) {
        let t = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| Track::new(0, Phase::Live));
        t.phase = Phase::Joining {
            deadline: now + CATCH_UP_TIMEOUT,
        };
    }

    /// About to send `sync` (after a reconnect): returns the `since` to ask for, and
    /// holds live entries until the answer.
    pub fn begin_sync(&mut self, room: &str, now: Instant) -> u64 {
        let t = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| Track::new(0, Phase::Live));
        t.phase = Phase::Syncing {
            deadline: now + CATCH_UP_TIMEOUT,
            round: 1,
        };
        t.shown
    }

    /// Whether live entries of `room` are being held for a history still to come.
    pub fn is_catching_up(&self, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|t| t.phase != Phase::Live)
    }

    /// The connection dropped: histories still awaited will not come on it. Rooms keep
    /// what they hold, without a deadline, until the reconnect's [`Timeline::begin_sync`].
    pub fn connection_lost(&mut self) {
        for t in self.rooms.values_mut() {
            if t.phase != Phase::Live {
                t.phase = Phase::Offline;
            }
        }
    }

    pub fn forget(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// Rooms tracked now.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// A live entry. An entry for an unknown room starts a short hold: the user joined it
    /// elsewhere or just now, and its history is likely on the way.
    pub fn on_entry(&mut self, e: Entry, now: Instant) -> Step {
        let room = e.room.clone();
        let t = self.rooms.entry(room.clone()).or_insert_with(|| {
            Track::new(
                0,
                Phase::Joining {
                    deadline: now + CATCH_UP_TIMEOUT,
                },
            )
        });
        let mut step = Step::default();
        if e.seq <= t.shown {
            return step;
        }
        if t.phase == Phase::Live {
            if e.seq == t.shown + 1 {
                t.shown = e.seq;
                step.show.push(e);
                return step;
            }
            // A hole: hold this one and ask for what is missing.
            t.phase = Phase::Syncing {
                deadline: now + CATCH_UP_TIMEOUT,
                round: 1,
            };
            step.sync.push((room.clone(), t.shown));
        }
        t.hold(e);
        if t.held.len() > MAX_HELD {
            give_up(&room, t, &mut step);
        }
        step
    }

    /// A `history` frame (an answer to `sync`, or the catch-up after a join).
    pub fn on_history(
        &mut self,
        room: &str,
        entries: Vec<Entry>,
        complete: bool,
        more: bool,
        now: Instant,
    ) -> Step {
        // A history for a room we did not know is the one sent after a join elsewhere.
        let t = self.rooms.entry(room.to_owned()).or_insert_with(|| {
            Track::new(
                0,
                Phase::Joining {
                    deadline: now + CATCH_UP_TIMEOUT,
                },
            )
        });
        let mut step = Step::default();
        let joining = matches!(t.phase, Phase::Joining { .. });
        // After a join, `complete: false` only means older entries than those sent exist;
        // it is a gap only when something of this room was already shown.
        if !complete && !joining && t.shown > 0 {
            step.gaps.push((room.to_owned(), Gap::NotKept));
        }
        let round = match t.phase {
            Phase::Syncing { round, .. } => round,
            _ => 0,
        };
        let mark = t.shown;
        let last = entries.iter().map(|e| e.seq).max().unwrap_or(0);
        for e in entries {
            t.hold(e);
        }
        // The answer covers everything up to its last entry.
        t.settle_to(last, &mut step.show);
        if more && last > mark {
            t.phase = Phase::Syncing {
                deadline: now + CATCH_UP_TIMEOUT,
                round,
            };
            step.sync.push((room.to_owned(), t.shown));
            return step;
        }
        t.settle_run(&mut step.show);
        if t.held.is_empty() {
            t.phase = Phase::Live;
        } else if round < MAX_SYNC_ROUNDS {
            // Entries are still missing before the held ones: ask again from the mark.
            t.phase = Phase::Syncing {
                deadline: now + CATCH_UP_TIMEOUT,
                round: round + 1,
            };
            step.sync.push((room.to_owned(), t.shown));
        } else {
            give_up(room, t, &mut step);
        }
        step
    }

    /// Deal with histories that did not come in time: sync again, or after
    /// [`MAX_SYNC_ROUNDS`] show what is held.
    pub fn expire(&mut self, now: Instant) -> Step {
        let mut step = Step::default();
        for (room, t) in self.rooms.iter_mut() {
            match t.phase {
                Phase::Joining { deadline } if deadline <= now => give_up(room, t, &mut step),
                Phase::Syncing { deadline, round } if deadline <= now => {
                    if round < MAX_SYNC_ROUNDS {
                        t.phase = Phase::Syncing {
                            deadline: now + CATCH_UP_TIMEOUT,
                            round: round + 1,
                        };
                        step.sync.push((room.clone(), t.shown));
                    } else {
                        give_up(room, t, &mut step);
                    }
                }
                _ => {}
            }
        }
        step
    }

    /// The earliest moment [`Timeline::expire`] has work, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.rooms
            .values()
            .filter_map(|t| match t.phase {
                Phase::Joining { deadline } | Phase::Syncing { deadline, .. } => Some(deadline),
                Phase::Live | Phase::Offline => None,
            })
            .min()
    }
}

/// Stop waiting: show everything held, in order, and go live. A hole before it is a gap
/// worth telling, except after a join, where older entries are context not shown.
fn give_up(room: &str, t: &mut Track, step: &mut Step) {
    if t.hole() && !matches!(t.phase, Phase::Joining { .. }) {
        step.gaps.push((room.to_owned(), Gap::Unfilled));
    }
    let last = t.held.keys().next_back().copied().unwrap_or(0);
    t.settle_to(last, &mut step.show);
    t.phase = Phase::Live;
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
            ..Entry::default()
        }
    }

    fn es(room: &str, seqs: &[u64]) -> Vec<Entry> {
        seqs.iter().map(|&s| e(room, s)).collect()
    }

    fn seqs(v: &[Entry]) -> Vec<u64> {
        v.iter().map(|e| e.seq).collect()
    }

    fn sync(room: &str, since: u64) -> Vec<(String, u64)> {
        vec![(room.to_owned(), since)]
    }

    /// Feeds live entries and returns what was shown and which syncs were asked for.
    fn live(t: &mut Timeline, room: &str, seqs_in: &[u64], now: Instant) -> Step {
        let mut all = Step::default();
        for &s in seqs_in {
            let step = t.on_entry(e(room, s), now);
            all.show.extend(step.show);
            all.sync.extend(step.sync);
            all.gaps.extend(step.gaps);
        }
        all
    }

    #[test]
    fn live_entries_show_once() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 3);
        assert_eq!(seqs(&t.on_entry(e("r", 3), now).show), Vec::<u64>::new());
        assert_eq!(seqs(&t.on_entry(e("r", 4), now).show), vec![4]);
        assert_eq!(t.on_entry(e("r", 4), now), Step::default());
        assert_eq!(t.last_seq("r"), Some(4));
    }

    #[test]
    fn a_hole_in_live_entries_is_filled_by_a_sync_before_anything_after_it_shows() {
        // Table: the history answering the sync may or may not repeat the held entry.
        for answer in [&[3, 4][..], &[3, 4, 5], &[3, 4, 5, 6]] {
            let now = Instant::now();
            let mut t = Timeline::new();
            t.track("r", 0);
            let step = live(&mut t, "r", &[1, 2, 5], now);
            assert_eq!(seqs(&step.show), [1, 2], "answer {answer:?}");
            assert_eq!(step.sync, sync("r", 2), "one sync from the last shown");
            assert!(t.is_catching_up("r"));
            // More live entries while the sync is out are held too, duplicates dropped.
            assert_eq!(live(&mut t, "r", &[6, 5, 2, 1], now), Step::default());

            let step = t.on_history("r", es("r", answer), true, false, now);
            assert_eq!(seqs(&step.show), [3, 4, 5, 6], "answer {answer:?}");
            assert!(step.sync.is_empty() && step.gaps.is_empty());
            assert!(!t.is_catching_up("r"));
            // Late duplicates of anything are dropped; the next one shows.
            assert_eq!(live(&mut t, "r", &[3, 5, 6], now), Step::default());
            assert_eq!(seqs(&t.on_entry(e("r", 7), now).show), [7]);
        }
    }

    #[test]
    fn exactly_once_over_a_whole_run() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 0);
        let mut shown = Vec::new();
        let mut step = live(&mut t, "r", &[1, 2, 5], now);
        shown.extend(seqs(&step.show));
        assert_eq!(step.sync, sync("r", 2));
        step = t.on_history("r", es("r", &[3, 4]), true, false, now);
        shown.extend(seqs(&step.show));
        step = live(&mut t, "r", &[5, 4, 6], now);
        shown.extend(seqs(&step.show));
        assert_eq!(shown, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn more_asks_for_the_rest_from_the_last_entry() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 1);
        let step = t.on_entry(e("r", 9), now);
        assert_eq!(step.sync, sync("r", 1));

        // The first page is cut short: show it, ask again from its last seq, keep holding.
        let step = t.on_history("r", es("r", &[2, 3, 4]), true, true, now);
        assert_eq!(seqs(&step.show), [2, 3, 4]);
        assert_eq!(step.sync, sync("r", 4));
        assert!(t.is_catching_up("r"));
        assert!(t.on_entry(e("r", 10), now).show.is_empty());

        let step = t.on_history("r", es("r", &[5, 6, 7]), true, true, now);
        assert_eq!(seqs(&step.show), [5, 6, 7]);
        assert_eq!(step.sync, sync("r", 7));

        let step = t.on_history("r", es("r", &[8, 9]), true, false, now);
        assert_eq!(seqs(&step.show), [8, 9, 10]);
        assert!(step.sync.is_empty());
        assert!(!t.is_catching_up("r"));
    }

    #[test]
    fn more_without_progress_does_not_loop() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 4);
        t.on_entry(e("r", 6), now);
        // A page that repeats what was shown, still claiming more: sync again, but only
        // as one of the bounded rounds.
        let mut rounds = 0;
        loop {
            let step = t.on_history("r", es("r", &[3, 4]), true, true, now);
            if step.sync.is_empty() {
                assert_eq!(seqs(&step.show), [6]);
                assert_eq!(step.gaps, [("r".to_owned(), Gap::Unfilled)]);
                break;
            }
            assert_eq!(step.sync, sync("r", 4));
            rounds += 1;
            assert!(
                rounds < MAX_SYNC_ROUNDS,
                "gives up after the bounded rounds"
            );
        }
    }

    #[test]
    fn a_hole_left_after_the_answer_syncs_again() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 2);
        t.on_entry(e("r", 4), now);
        // The answer was made before 4 and 5 were appended; 4 came live, 5 did not.
        assert!(t.on_entry(e("r", 6), now).show.is_empty());
        let step = t.on_history("r", es("r", &[3, 4]), true, false, now);
        assert_eq!(seqs(&step.show), [3, 4]);
        assert_eq!(step.sync, sync("r", 4));
        let step = t.on_history("r", es("r", &[5, 6]), true, false, now);
        assert_eq!(seqs(&step.show), [5, 6]);
        assert!(step.sync.is_empty() && step.gaps.is_empty());
    }

    #[test]
    fn an_unanswered_sync_is_retried_then_held_entries_show_with_a_gap() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 1);
        assert_eq!(t.on_entry(e("r", 3), now).sync, sync("r", 1));
        let mut at = now;
        for _ in 1..MAX_SYNC_ROUNDS {
            assert_eq!(t.expire(at), Step::default(), "not due yet");
            at += CATCH_UP_TIMEOUT;
            assert_eq!(t.next_deadline(), Some(at));
            let step = t.expire(at);
            assert_eq!(step.sync, sync("r", 1));
            assert!(step.show.is_empty());
        }
        at += CATCH_UP_TIMEOUT;
        let step = t.expire(at);
        assert_eq!(seqs(&step.show), [3]);
        assert_eq!(step.gaps, [("r".to_owned(), Gap::Unfilled)]);
        assert_eq!(t.next_deadline(), None);
        assert_eq!(seqs(&t.on_entry(e("r", 4), at).show), [4]);
    }

    #[test]
    fn no_deadline_runs_while_offline() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 1);
        t.on_entry(e("r", 3), now);
        t.connection_lost();
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.expire(now + CATCH_UP_TIMEOUT * 10), Step::default());
        assert!(t.is_catching_up("r"));
        // The reconnect's sync still asks from the mark, and the held entry follows.
        assert_eq!(t.begin_sync("r", now), 1);
        let step = t.on_history("r", es("r", &[2, 3, 4]), true, false, now);
        assert_eq!(seqs(&step.show), [2, 3, 4]);
    }

    #[test]
    fn sync_merges_held_live_entries_in_order() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 5);
        assert_eq!(t.begin_sync("r", now), 5);
        // Live entries overtake the sync answer.
        assert_eq!(live(&mut t, "r", &[9, 8], now), Step::default());
        let step = t.on_history("r", es("r", &[6, 7, 8]), true, false, now);
        assert_eq!(seqs(&step.show), [6, 7, 8, 9]);
        assert!(step.gaps.is_empty());
        assert!(t.on_entry(e("r", 7), now).show.is_empty());
        assert_eq!(seqs(&t.on_entry(e("r", 10), now).show), [10]);
    }

    #[test]
    fn history_after_join_shows_context_and_join() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.expect_history("r", now);
        // Our own join entry may come before the history that contains it.
        assert!(t.on_entry(e("r", 3), now).show.is_empty());
        let step = t.on_history("r", es("r", &[1, 2, 3]), false, false, now);
        assert_eq!(seqs(&step.show), [1, 2, 3]);
        assert!(
            step.gaps.is_empty(),
            "older entries before a join are no gap"
        );

        // Joining a busy room: context starts 50 back; older ones are simply not shown.
        t.track("busy", 950);
        t.expect_history("busy", now);
        let entries: Vec<Entry> = (951..=1000).map(|s| e("busy", s)).collect();
        let step = t.on_history("busy", entries, false, false, now);
        assert_eq!(step.show.len(), 50);
        assert!(step.gaps.is_empty() && step.sync.is_empty());
    }

    #[test]
    fn incomplete_sync_is_a_gap() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 5);
        t.begin_sync("r", now);
        let step = t.on_history("r", es("r", &[40]), false, false, now);
        assert_eq!(step.gaps, [("r".to_owned(), Gap::NotKept)]);
        assert_eq!(seqs(&step.show), [40]);
        assert!(step.sync.is_empty());
    }

    #[test]
    fn unknown_room_holds_briefly_without_a_gap() {
        let now = Instant::now();
        let mut t = Timeline::new();
        assert_eq!(t.on_entry(e("new", 7), now), Step::default());
        let step = t.expire(now + CATCH_UP_TIMEOUT);
        assert_eq!(seqs(&step.show), [7]);
        assert!(step.gaps.is_empty() && step.sync.is_empty());
    }

    #[test]
    fn an_overflowing_hold_shows_everything() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("r", 0);
        t.on_entry(e("r", 2), now);
        let mut step = Step::default();
        for s in 3..=(MAX_HELD as u64 + 2) {
            assert!(step.show.is_empty());
            step = t.on_entry(e("r", s), now);
        }
        assert_eq!(step.show.len(), MAX_HELD + 1);
        assert_eq!(step.gaps, [("r".to_owned(), Gap::Unfilled)]);
        assert!(!t.is_catching_up("r"));
    }

    #[test]
    fn rooms_are_independent() {
        let now = Instant::now();
        let mut t = Timeline::new();
        t.track("a", 0);
        t.track("b", 10);
        t.begin_sync("a", now);
        assert!(t.on_entry(e("a", 1), now).show.is_empty());
        assert_eq!(seqs(&t.on_entry(e("b", 11), now).show), [11]);
        let step = t.on_entry(e("b", 13), now);
        assert_eq!(step.sync, sync("b", 11));
        assert!(t.is_catching_up("a") && t.is_catching_up("b"));
    }
}
