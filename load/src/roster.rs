//! What each connection of a room's members has been told about the others' presence: one
//! row per member (its connection), one cell per other member, written by the connection's
//! reader as `presence` frames arrive and read by the scenario while they do.
//!
//! Each member holds one connection, found by the `username` of its `hello`. A cell keeps the
//! latest state the connection was told and when that state began (a repeat of the same state
//! does not move the time), so "when did this connection last learn something new" can be
//! read after the fact, and "the latest state per user wins" is how a client reads the frames.
//! Cells are atomics written with relaxed stores: the generator runs on one thread, and a
//! reading that races a write is only a poll that looks again.

use crate::scan;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// What one connection was last told about one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Told {
    Nothing,
    /// Online since the read at this clock reading (milliseconds).
    Online(u32),
    Offline(u32),
}

/// How a cell packs [`Told`]: 0 is nothing, else `(ms + 1) << 1 | online`.
fn pack(ms: u32, online: bool) -> u32 {
    (ms.min((u32::MAX >> 1) - 1) + 1) << 1 | u32::from(online)
}

fn unpack(v: u32) -> Told {
    match v {
        0 => Told::Nothing,
        v if v & 1 == 1 => Told::Online((v >> 1) - 1),
        v => Told::Offline((v >> 1) - 1),
    }
}

/// Marks a row whose connection ended: `ENDED | close code` (code 0: no close frame).
const ENDED: u32 = 1 << 16;

/// The presence each member's connection was told, for a room of `members`.
pub struct Roster {
    /// Username to member index.
    index: HashMap<Vec<u8>, u32>,
    members: usize,
    /// `cells[row * members + member]`, packed by [`pack`].
    cells: Box<[AtomicU32]>,
    /// Presence frames received, per row.
    frames: Box<[AtomicU32]>,
    /// Members whose latest state told to the row is online.
    online: Box<[AtomicU32]>,
    /// 0 while the row's connection is open (or never opened); `ENDED | code` once it ended.
    ended: Box<[AtomicU32]>,
    /// Presence frames over all rows, and how many of them said offline.
    total: AtomicU64,
    offline_frames: AtomicU64,
    /// Presence frames about no member, or not understood.
    strangers: AtomicU64,
    /// Clock reading (ns) of the latest presence frame.
    last_ns: AtomicU64,
}

fn atomics(n: usize) -> Box<[AtomicU32]> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}

impl Roster {
    /// A roster of the members named `names`, in member order. Costs 4 bytes per pair of
    /// members: 100 MB for 5,000.
    pub fn new(names: &[String]) -> Roster {
        let n = names.len();
        Roster {
            index: names
                .iter()
                .enumerate()
                .map(|(i, name)| (name.as_bytes().to_vec(), i as u32))
                .collect(),
            members: n,
            cells: atomics(n * n),
            frames: atomics(n),
            online: atomics(n),
            ended: atomics(n),
            total: AtomicU64::new(0),
            offline_frames: AtomicU64::new(0),
            strangers: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
        }
    }

    pub fn members(&self) -> usize {
        self.members
    }

    /// The row of the connection whose `hello` this is, if its user is a member.
    pub fn row_of_hello(&self, hello: &[u8]) -> Option<usize> {
        let name = scan::username(hello)?;
        self.index.get(name).map(|&i| i as usize)
    }

    /// Records a `presence` frame received by `row`'s connection in the read at `now_ns`.
    pub fn note(&self, row: usize, payload: &[u8], now_ns: u64) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.last_ns.fetch_max(now_ns, Ordering::Relaxed);
        self.frames[row].fetch_add(1, Ordering::Relaxed);
        let Some((name, online)) = scan::presence(payload) else {
            self.strangers.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !online {
            self.offline_frames.fetch_add(1, Ordering::Relaxed);
        }
        let Some(&member) = self.index.get(name) else {
            self.strangers.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let cell = &self.cells[row * self.members + member as usize];
        let was = unpack(cell.load(Ordering::Relaxed));
        let was_online = matches!(was, Told::Online(_));
        if was != Told::Nothing && was_online == online {
            return;
        }
        let ms = u32::try_from(now_ns / 1_000_000).unwrap_or(u32::MAX);
        cell.store(pack(ms, online), Ordering::Relaxed);
        if online && !was_online {
            self.online[row].fetch_add(1, Ordering::Relaxed);
        } else if !online && was_online {
            self.online[row].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `row`'s connection ended: closed by the server with `code`, or 0 without a close frame.
    pub fn end(&self, row: usize, code: u16) {
        let _ = self.ended[row].compare_exchange(
            0,
            ENDED | u32::from(code),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// How `row`'s connection ended, if it did before the scenario closed it.
    pub fn ended(&self, row: usize) -> Option<u16> {
        let v = self.ended[row].load(Ordering::Relaxed);
        (v & ENDED != 0).then_some((v & 0xffff) as u16)
    }

    /// What `row`'s connection was last told about `member`.
    pub fn told(&self, row: usize, member: usize) -> Told {
        unpack(self.cells[row * self.members + member].load(Ordering::Relaxed))
    }

    /// Presence frames `row`'s connection received.
    pub fn frames(&self, row: usize) -> u32 {
        self.frames[row].load(Ordering::Relaxed)
    }

    /// Members `row`'s connection was last told are online.
    pub fn online(&self, row: usize) -> u32 {
        self.online[row].load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn offline_frames(&self) -> u64 {
        self.offline_frames.load(Ordering::Relaxed)
    }

    pub fn strangers(&self) -> u64 {
        self.strangers.load(Ordering::Relaxed)
    }

    /// Clock reading (ns) of the latest presence frame, 0 before the first.
    pub fn last_ns(&self) -> u64 {
        self.last_ns.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, online: bool) -> Vec<u8> {
        format!(r#"{{"type":"presence","username":"{name}","online":{online}}}"#).into_bytes()
    }

    #[test]
    fn the_latest_state_wins_and_keeps_the_time_it_began() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let r = Roster::new(&names);
        assert_eq!(
            r.row_of_hello(br#"{"type":"hello","username":"b"}"#),
            Some(1)
        );
        assert_eq!(r.row_of_hello(br#"{"type":"hello","username":"z"}"#), None);
        r.note(0, &frame("b", false), 1_000_000);
        r.note(0, &frame("b", true), 5_000_000);
        r.note(0, &frame("b", true), 9_000_000);
        r.note(0, &frame("c", true), 7_000_000);
        r.note(0, &frame("zz", true), 8_000_000);
        assert_eq!(r.told(0, 1), Told::Online(5));
        assert_eq!(r.told(0, 2), Told::Online(7));
        assert_eq!(r.told(0, 0), Told::Nothing);
        assert_eq!((r.frames(0), r.online(0)), (5, 2));
        r.note(0, &frame("c", false), 10_000_000);
        assert_eq!((r.told(0, 2), r.online(0)), (Told::Offline(10), 1));
        assert_eq!((r.total(), r.offline_frames(), r.strangers()), (6, 2, 1));
        assert_eq!(r.last_ns(), 10_000_000);
        assert_eq!(r.ended(2), None);
        r.end(2, 4002);
        r.end(2, 1000);
        assert_eq!(r.ended(2), Some(4002));
        r.end(1, 0);
        assert_eq!(r.ended(1), Some(0));
    }
}
