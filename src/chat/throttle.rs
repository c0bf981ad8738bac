//! Sliding-window counters in bounded tables: the login throttle (failures per account and
//! client address, and per account from everywhere) and the registration limit per address.
//!
//! Each key keeps the times of its recent events, at most as many as its limit, so a table
//! of `max_keys` keys holds at most `max_keys × limit` times. When a new key would pass
//! `max_keys`, keys with nothing inside the window go first, then the least recently active
//! half: forgetting a key only ever lets it through sooner, never locks anyone out.
//!
//! Keys are bounded in size too: a key longer than [`MAX_KEY_BYTES`] is never kept (no
//! username is that long, so nothing real is lost), so a table holds at most
//! `max_keys × MAX_KEY_BYTES` bytes of keys (6.4 MB for the 100,000 keys of a login table)
//! and `max_keys × limit` times, whatever clients send.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;

use crate::config;

/// Longest key, in bytes, a table keeps: a username (at most 32 bytes) with room to spare.
pub(crate) const MAX_KEY_BYTES: usize = 64;

/// A key's size, for the byte bound.
pub(crate) trait KeyBytes {
    fn key_bytes(&self) -> usize;
}

impl KeyBytes for String {
    fn key_bytes(&self) -> usize {
        self.len()
    }
}

impl KeyBytes for (String, IpAddr) {
    fn key_bytes(&self) -> usize {
        self.0.len() + 16
    }
}

impl KeyBytes for IpAddr {
    fn key_bytes(&self) -> usize {
        16
    }
}

#[cfg(test)]
impl KeyBytes for &str {
    fn key_bytes(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
impl KeyBytes for u64 {
    fn key_bytes(&self) -> usize {
        8
    }
}

pub(crate) struct Windows<K> {
    events: HashMap<K, VecDeque<u64>>,
    window_ms: u64,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone + KeyBytes> Windows<K> {
    pub(crate) fn new(window_ms: u64, max_keys: usize) -> Windows<K> {
        Windows {
            events: HashMap::new(),
            window_ms,
            max_keys: max_keys.max(1),
        }
    }

    /// `Err(retry_after_ms)` when `key` already has `limit` events inside the window.
    pub(crate) fn check(&mut self, key: &K, limit: usize, now: u64) -> Result<(), u64> {
        let Some(times) = self.events.get_mut(key) else {
            return Ok(());
        };
        let window = self.window_ms;
        while times
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= window)
        {
            times.pop_front();
        }
        if times.is_empty() {
            self.events.remove(key);
            return Ok(());
        }
        if times.len() < limit {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        Err((oldest + window).saturating_sub(now).max(1))
    }

    /// Records an event of `key` at `now`, keeping at most `limit` of them. A key over
    /// [`MAX_KEY_BYTES`] is not kept.
    pub(crate) fn record(&mut self, key: &K, limit: usize, now: u64) {
        if key.key_bytes() > MAX_KEY_BYTES {
            return;
        }
        if !self.events.contains_key(key) && self.events.len() >= self.max_keys {
            self.make_room(now);
        }
        let times = self.events.entry(key.clone()).or_default();
        times.push_back(now);
        while times.len() > limit.max(1) {
            times.pop_front();
        }
    }

    /// Takes back one event of `key` recorded at `at` (an attempt that did not count).
    pub(crate) fn unrecord(&mut self, key: &K, at: u64) {
        if let Some(times) = self.events.get_mut(key) {
            if let Some(i) = times.iter().rposition(|&t| t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                self.events.remove(key);
            }
        }
    }

    pub(crate) fn forget(&mut self, key: &K) {
        self.events.remove(key);
    }

    /// Drops keys with no event inside the window.
    pub(crate) fn sweep(&mut self, now: u64) {
        let window = self.window_ms;
        self.events.retain(|_, times| {
            times
                .back()
                .is_some_and(|&t| now.saturating_sub(t) < window)
        });
    }

    fn make_room(&mut self, now: u64) {
        self.sweep(now);
        if self.events.len() < self.max_keys {
            return;
        }
        let mut last: Vec<u64> = self
            .events
            .values()
            .filter_map(|t| t.back().copied())
            .collect();
        let mid = last.len() / 2;
        let (_, &mut cut, _) = last.select_nth_unstable(mid);
        self.events
            .retain(|_, times| times.back().is_some_and(|&t| t > cut));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.events.len()
    }
}

/// Most keys each table keeps.
const MAX_KEYS: usize = 100_000;

/// The core's counters, behind one lock.
pub(crate) struct Throttle {
    /// Failed logins per (lowercase username, client address).
    pub(crate) pairs: Windows<(String, IpAddr)>,
    /// Failed logins per lowercase username, from all addresses.
    pub(crate) accounts: Windows<String>,
    /// Successful (or in-flight) registrations per client address.
    pub(crate) registrations: Windows<IpAddr>,
}

impl Throttle {
    pub(crate) fn new() -> Throttle {
        let login = config::LOGIN_WINDOW.as_millis() as u64;
        Throttle {
            pairs: Windows::new(login, MAX_KEYS),
            accounts: Windows::new(login, MAX_KEYS),
            registrations: Windows::new(config::REGISTER_WINDOW.as_millis() as u64, MAX_KEYS),
        }
    }

    pub(crate) fn sweep(&mut self, now: u64) {
        self.pairs.sweep(now);
        self.accounts.sweep(now);
        self.registrations.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_at_its_limit_until_its_oldest_event_leaves_the_window() {
        let mut w = Windows::new(1000, 10);
        for t in [0, 100, 200] {
            assert_eq!(w.check(&"k", 3, t), Ok(()));
            w.record(&"k", 3, t);
        }
        assert_eq!(w.check(&"k", 3, 500), Err(500));
        assert_eq!(w.check(&"other", 3, 500), Ok(()));
        assert_eq!(w.check(&"k", 3, 1000), Ok(()));
        w.unrecord(&"k", 200);
        w.record(&"k", 3, 1000);
        assert_eq!(w.check(&"k", 3, 1001), Ok(()), "100 and 1000 remain");
    }

    #[test]
    fn a_key_longer_than_any_username_is_never_kept() {
        let mut w = Windows::new(1000, 10);
        let huge = "x".repeat(65_000);
        w.record(&huge, 3, 0);
        assert_eq!(w.len(), 0);
        let name = "x".repeat(32);
        w.record(&name, 3, 0);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_recently_active() {
        let mut w = Windows::new(1_000_000, 100);
        for k in 0..1000u64 {
            w.record(&k, 5, k);
            assert!(w.len() <= 100);
        }
        w.record(&5000, 5, 5000);
        assert!(w.check(&999, 1, 5000).is_err(), "the newest keys survive");
        assert_eq!(w.check(&0, 1, 5000), Ok(()), "the oldest were forgotten");
        w.sweep(2_000_000);
        assert_eq!(w.len(), 0);
    }
}
