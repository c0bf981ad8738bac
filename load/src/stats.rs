//! The measurement state: one monotonic clock, per-phase counters shared by every connection,
//! latency histograms and their summaries.
//!
//! A *phase* is one measurement (one offered load, one broadcast). Its id travels inside each
//! message text ([`crate::scan`]), so a late delivery is still counted for the phase that sent
//! it, and no connection needs to be told when a phase starts or ends.

use crate::roster::Roster;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Phase ids run from 0 to `MAX_PHASES - 1`.
pub const MAX_PHASES: usize = 64;

/// Highest latency a histogram records, in microseconds (60 s); higher values are clamped.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// Latency histogram of one receiver: microseconds, 3 significant figures. `u32` counts keep it
/// at about 70 KB, which matters with a thousand receivers; recording saturates.
pub type RecvHistogram = Histogram<u32>;

/// Merged histograms, where counts can pass `u32`.
pub type TotalHistogram = Histogram<u64>;

pub fn new_recv_histogram() -> RecvHistogram {
    // Bounds and precision are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

pub fn new_total_histogram() -> TotalHistogram {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Adds a receiver's histogram into a total.
pub fn merge_into(total: &mut TotalHistogram, part: &RecvHistogram) {
    for v in part.iter_recorded() {
        total.saturating_record_n(v.value_iterated_to(), u64::from(v.count_at_value()));
    }
}

/// The one clock of a run: nanoseconds since a shared `Instant`. Sender and receivers are in
/// one process, so a stamp written by one task is comparable with a reading by another.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub fn at_ns(&self, ns: u64) -> Instant {
        self.origin + Duration::from_nanos(ns)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Counters of one phase, updated by every connection (once per read, not per frame).
#[derive(Default)]
pub struct PhaseCounters {
    /// Messages the senders wrote.
    pub sent: AtomicU64,
    /// Stamped entry frames of this phase received, over all connections.
    pub received: AtomicU64,
    /// Clock reading of the latest such delivery.
    pub last_arrival_ns: AtomicU64,
    /// Sends the schedule wanted but that were skipped because the sender fell more than its
    /// backlog allowance behind.
    pub missed: AtomicU64,
    /// `read` frames the members queued in answer to this phase's entries (only while
    /// [`Shared::answer_reads`] is on).
    pub reads: AtomicU64,
}

/// Width of a timeline slot: 100 ms.
pub const SLOT_NS: u64 = 100_000_000;
/// Slots kept: 30 minutes.
pub const TIMELINE_SLOTS: usize = 18_000;

/// State shared by all connections of one run.
pub struct Shared {
    pub clock: Clock,
    pub phases: Vec<PhaseCounters>,
    /// `error` frames by code.
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Close codes received from the server (0 = closed without a close frame), and read or
    /// protocol failures, by description.
    pub closes: Mutex<BTreeMap<String, u64>>,
    /// Frames other than stamped entries (hello, history, presence, join entries...).
    pub other_frames: AtomicU64,
    /// When set, receivers also record into this shared histogram per phase instead of their
    /// own: used when there are too many receivers for one histogram each.
    pub shared_latency: Option<Mutex<Vec<TotalHistogram>>>,
    /// Histogram of send-schedule lag (actual minus planned send time), microseconds.
    pub send_lag: Mutex<Vec<TotalHistogram>>,
    /// Highest latency (µs) of any delivery in each 100 ms slot of the clock: shows when a
    /// stall happened, and whether stalls recur.
    pub timeline_max_us: Vec<AtomicU64>,
    /// When set, every stamped delivery is also logged here: for a probe whose deliveries must
    /// be placed in time exactly (a few thousand of them, not millions).
    pub arrivals: Option<Mutex<Vec<Arrival>>>,
    /// When set, every `presence` frame a member's connection receives is recorded here.
    pub roster: Option<Arc<Roster>>,
    /// While on, every connection answers each stamped `entry` it receives with a `read`
    /// frame for that entry's room and seq (the read-marker benchmark). Off by default.
    pub answer_reads: AtomicBool,
}

/// One stamped delivery, on the run's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub phase: u32,
    pub sent_ns: u64,
    /// When the `read()` that brought it returned.
    pub received_ns: u64,
}

impl Arrival {
    pub fn latency_us(&self) -> u64 {
        self.received_ns.saturating_sub(self.sent_ns) / 1000
    }
}

impl Shared {
    pub fn new(shared_latency: bool) -> Shared {
        let hists = || {
            (0..MAX_PHASES)
                .map(|_| new_total_histogram())
                .collect::<Vec<_>>()
        };
        Shared {
            clock: Clock::new(),
            phases: (0..MAX_PHASES).map(|_| PhaseCounters::default()).collect(),
            errors: Mutex::new(BTreeMap::new()),
            closes: Mutex::new(BTreeMap::new()),
            other_frames: AtomicU64::new(0),
            shared_latency: shared_latency.then(|| Mutex::new(hists())),
            send_lag: Mutex::new(hists()),
            timeline_max_us: (0..TIMELINE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            arrivals: None,
            roster: None,
            answer_reads: AtomicBool::new(false),
        }
    }

    /// Also records the `presence` frames of the roster's members (see [`Roster`]).
    pub fn with_roster(mut self, roster: Arc<Roster>) -> Shared {
        self.roster = Some(roster);
        self
    }

    /// Also logs every stamped delivery (see [`Shared::arrivals`]).
    pub fn with_arrival_log(mut self) -> Shared {
        self.arrivals = Some(Mutex::new(Vec::new()));
        self
    }

    /// The logged deliveries so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        match self.arrivals.as_ref().map(|m| m.lock()) {
            Some(Ok(a)) => a.clone(),
            _ => Vec::new(),
        }
    }

    /// Records the worst latency of a batch of deliveries received at `now_ns`.
    pub fn note_worst(&self, now_ns: u64, us: u64) {
        if let Some(slot) = self.timeline_max_us.get((now_ns / SLOT_NS) as usize) {
            slot.fetch_max(us, Ordering::Relaxed);
        }
    }

    /// The 100 ms slots between two clock readings whose worst delivery took at least
    /// `threshold_us`, as (seconds from `from_ns` to the slot's end, worst µs) in time order,
    /// and how many
    /// there were: the `limit` worst are returned.
    pub fn spikes(
        &self,
        from_ns: u64,
        to_ns: u64,
        threshold_us: u64,
        limit: usize,
    ) -> (Vec<(f64, u64)>, usize) {
        let first = (from_ns / SLOT_NS) as usize;
        let last = ((to_ns / SLOT_NS) as usize).min(TIMELINE_SLOTS.saturating_sub(1));
        let mut all: Vec<(f64, u64)> = (first..=last)
            .filter_map(|i| {
                let us = self.timeline_max_us[i].load(Ordering::Relaxed);
                (us >= threshold_us).then(|| {
                    // The slot's end, so the slot holding `from_ns` reads 0.1 s, not 0.
                    let t = ((i as u64 + 1) * SLOT_NS).saturating_sub(from_ns) as f64 / 1e9;
                    (t, us)
                })
            })
            .collect();
        let total = all.len();
        all.sort_by_key(|s| std::cmp::Reverse(s.1));
        all.truncate(limit);
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        (all, total)
    }

    pub fn phase(&self, phase: u32) -> &PhaseCounters {
        &self.phases[phase as usize % MAX_PHASES]
    }

    pub fn received(&self, phase: u32) -> u64 {
        self.phase(phase).received.load(Ordering::Relaxed)
    }

    pub fn sent(&self, phase: u32) -> u64 {
        self.phase(phase).sent.load(Ordering::Relaxed)
    }

    /// `read` frames queued in answer to the phase's entries.
    pub fn reads(&self, phase: u32) -> u64 {
        self.phase(phase).reads.load(Ordering::Relaxed)
    }

    pub fn count_error(&self, code: String) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(code).or_default() += 1;
        }
    }

    pub fn count_close(&self, what: String) {
        if let Ok(mut m) = self.closes.lock() {
            *m.entry(what).or_default() += 1;
        }
    }

    /// A snapshot of error and close counts, for reports.
    pub fn problems(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        if let Ok(m) = self.errors.lock() {
            for (k, v) in m.iter() {
                out.insert(format!("error {k}"), *v);
            }
        }
        if let Ok(m) = self.closes.lock() {
            for (k, v) in m.iter() {
                out.insert(format!("closed {k}"), *v);
            }
        }
        out
    }

    /// Waits for a message phase to drain: every message sent reaching its `fanout`
    /// receivers, or 2 s without progress, 15 s at most.
    pub async fn drain_phase(&self, phase: u32, fanout: u64) {
        let expected = self.sent(phase) * fanout;
        self.wait_delivered(
            phase,
            expected,
            Duration::from_secs(2),
            Duration::from_secs(15),
        )
        .await;
    }

    /// Waits until `expected` deliveries of `phase` arrived, or none arrived for `idle`, or
    /// `limit` passed. Returns whether all arrived.
    pub async fn wait_delivered(
        &self,
        phase: u32,
        expected: u64,
        idle: Duration,
        limit: Duration,
    ) -> bool {
        let start = Instant::now();
        let mut last = self.received(phase);
        let mut last_change = Instant::now();
        loop {
            let now = self.received(phase);
            if now >= expected {
                return true;
            }
            if now != last {
                last = now;
                last_change = Instant::now();
            }
            if last_change.elapsed() >= idle || start.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Latency percentiles of one phase, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &TotalHistogram) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Formats microseconds for tables: `850 µs`, `12.3 ms`, `4.20 s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// Formats a count with thousands separators.
pub fn fmt_count(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_summarises() {
        let mut a = new_recv_histogram();
        let mut b = new_recv_histogram();
        for v in 1..=1000 {
            a.saturating_record(v);
        }
        b.saturating_record(50_000);
        let mut t = new_total_histogram();
        merge_into(&mut t, &a);
        merge_into(&mut t, &b);
        let l = Latency::of(&t);
        assert_eq!(l.count, 1001);
        assert!((495..=505).contains(&l.p50_us), "{l:?}");
        assert!(l.max_us >= 49_990, "{l:?}");
        assert_eq!(Latency::of(&new_total_histogram()), Latency::default());
    }

    #[test]
    fn spikes_are_the_worst_slots_in_time_order() {
        let shared = Shared::new(false);
        let base = 10 * SLOT_NS;
        for (slot, us) in [
            (0u64, 5_000u64),
            (1, 30_000),
            (2, 90_000),
            (3, 25_000),
            (5, 60_000),
        ] {
            shared.note_worst(base + slot * SLOT_NS + 1, us);
        }
        let (worst, total) = shared.spikes(base, base + 6 * SLOT_NS, 20_000, 2);
        assert_eq!(total, 4);
        assert_eq!(worst, vec![(0.3, 90_000), (0.6, 60_000)]);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(12_345), "12.3 ms");
        assert_eq!(fmt_us(4_200_000), "4.20 s");
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(1234567), "1,234,567");
        assert_eq!(fmt_count(100), "100");
    }
}
