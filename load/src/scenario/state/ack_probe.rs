//! The acknowledgement probe: one connection posting one message every few milliseconds to its
//! own room, each acknowledgement (the sender's copy of the entry) timed and placed on the
//! run's clock, so the ones that overlapped a compaction can be picked out.

use super::watch::Compaction;
use crate::conn::{Connection, Outgoing, WsConfig};
use crate::error::Result;
use crate::frame::XorShift;
use crate::scan::Stamp;
use crate::sender::SendSpec;
use crate::stats::{new_total_histogram, Arrival, Latency, Shared, MAX_LATENCY_US};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// The phase the probe's stamps carry.
const PROBE_PHASE: u32 = 1;

/// A running probe.
pub struct AckProbe {
    conn: Connection,
    pub shared: Arc<Shared>,
    stop_reader: watch::Sender<bool>,
    stop_sending: Arc<AtomicBool>,
    sender: JoinHandle<u64>,
    /// Clock reading when the first message went out.
    pub start_ns: u64,
}

impl AckProbe {
    /// Connects with `token` and starts posting `rate` messages per second of `text_len` bytes
    /// to `room`, on a fixed schedule: a stalled server shows as latency, not as fewer probes.
    pub async fn start(
        addr: SocketAddr,
        token: &str,
        room: &str,
        rate: f64,
        text_len: usize,
    ) -> Result<AckProbe> {
        let shared = Arc::new(Shared::new(false).with_arrival_log());
        let (stop_reader, stop_rx) = watch::channel(false);
        let conn = Connection::open(
            addr,
            None,
            token,
            &WsConfig::default(),
            Arc::clone(&shared),
            stop_rx,
            4242,
        )
        .await?;
        let stop_sending = Arc::new(AtomicBool::new(false));
        let start_ns = shared.clock.now_ns();
        let sender = tokio::spawn(post_every(
            conn.tx.clone(),
            SendSpec::new(room, text_len),
            Duration::from_secs_f64(1.0 / rate.max(1.0)),
            Arc::clone(&shared),
            Arc::clone(&stop_sending),
        ));
        Ok(AckProbe {
            conn,
            shared,
            stop_reader,
            stop_sending,
            sender,
            start_ns,
        })
    }

    /// Stops posting, waits for the outstanding acknowledgements (2 s without one, 15 s at
    /// most) and returns every acknowledgement received.
    pub async fn stop(self) -> ProbeRun {
        self.stop_sending.store(true, Ordering::Relaxed);
        let sent = self.sender.await.unwrap_or(0);
        self.shared.drain_phase(PROBE_PHASE, 1).await;
        let _ = self.stop_reader.send(true);
        self.conn.finish().await;
        ProbeRun {
            sent,
            start_ns: self.start_ns,
            acks: self.shared.arrivals(),
            problems: self.shared.problems(),
        }
    }
}

async fn post_every(
    tx: tokio::sync::mpsc::Sender<Outgoing>,
    spec: SendSpec,
    period: Duration,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut rng = XorShift::new(17);
    let mut scratch = Vec::new();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let stamp = Stamp {
            phase: PROBE_PHASE,
            sent_ns: shared.clock.now_ns(),
        };
        let mut frame = Vec::with_capacity(spec.text_len + 96);
        spec.append_frame(&mut frame, &mut scratch, stamp, sent, &mut rng);
        shared
            .phase(PROBE_PHASE)
            .sent
            .fetch_add(1, Ordering::Relaxed);
        sent += 1;
        if tx.send(Outgoing::Frames(frame)).await.is_err() {
            break;
        }
    }
    sent
}

/// What the probe saw.
#[derive(Clone, Debug, Default)]
pub struct ProbeRun {
    pub sent: u64,
    pub start_ns: u64,
    pub acks: Vec<Arrival>,
    pub problems: BTreeMap<String, u64>,
}

/// An acknowledgement for the report: seconds into the probe at its send, latency, and whether
/// it overlapped a compaction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowAck {
    pub at_s: f64,
    pub latency_us: u64,
    pub during: bool,
}

/// The probe's figures against the compactions seen meanwhile.
#[derive(Clone, Debug, Default)]
pub struct ProbeReport {
    pub sent: u64,
    pub acked: u64,
    pub all: Latency,
    /// Acknowledgements whose time in flight overlapped a compaction.
    pub during: Latency,
    pub outside: Latency,
    /// The ten slowest, in time order.
    pub slowest: Vec<SlowAck>,
}

impl ProbeRun {
    /// Sorts every acknowledgement into *during* a compaction, when its send-to-arrival span
    /// overlaps one (from the last look at the directory before it began to the first look
    /// that saw it done, or the end of the probe), or *outside*.
    pub fn against(&self, compactions: &[Compaction]) -> ProbeReport {
        let during_any = |a: &Arrival| {
            compactions.iter().any(|c| {
                let end = c.done_ns.unwrap_or(u64::MAX);
                a.sent_ns <= end && a.received_ns >= c.quiet_ns
            })
        };
        let (mut all, mut during, mut outside) = (
            new_total_histogram(),
            new_total_histogram(),
            new_total_histogram(),
        );
        let mut slow: Vec<SlowAck> = Vec::with_capacity(self.acks.len());
        for a in &self.acks {
            let us = a.latency_us().clamp(1, MAX_LATENCY_US);
            let inside = during_any(a);
            all.saturating_record(us);
            if inside {
                during.saturating_record(us);
            } else {
                outside.saturating_record(us);
            }
            slow.push(SlowAck {
                at_s: a.sent_ns.saturating_sub(self.start_ns) as f64 / 1e9,
                latency_us: us,
                during: inside,
            });
        }
        slow.sort_by_key(|s| std::cmp::Reverse(s.latency_us));
        slow.truncate(10);
        slow.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        ProbeReport {
            sent: self.sent,
            acked: self.acks.len() as u64,
            all: Latency::of(&all),
            during: Latency::of(&during),
            outside: Latency::of(&outside),
            slowest: slow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(sent_ms: u64, latency_ms: u64) -> Arrival {
        Arrival {
            phase: PROBE_PHASE,
            sent_ns: sent_ms * 1_000_000,
            received_ns: (sent_ms + latency_ms) * 1_000_000,
        }
    }

    #[test]
    fn an_ack_counts_as_during_when_its_flight_overlaps_the_compaction() {
        let run = ProbeRun {
            sent: 5,
            start_ns: 0,
            // Before; stalled across the start; inside; across the end; after.
            acks: vec![
                ack(100, 1),
                ack(900, 400),
                ack(1500, 2),
                ack(1990, 30),
                ack(3000, 3),
            ],
            problems: BTreeMap::new(),
        };
        let c = Compaction {
            quiet_ns: 1_000_000_000,
            seen_ns: 1_001_000_000,
            done_ns: Some(2_000_000_000),
            snapshot_bytes: None,
        };
        let r = run.against(&[c]);
        assert_eq!((r.sent, r.acked), (5, 5));
        assert_eq!(r.during.count, 3);
        assert_eq!(r.outside.count, 2);
        assert!((399_000..=401_000).contains(&r.during.max_us), "{r:?}");
        assert!(r.outside.max_us <= 3_001, "{r:?}");
        assert_eq!(r.slowest.len(), 5);
        assert!(r.slowest[1].during && !r.slowest[0].during);
        // Without a compaction everything is outside.
        assert_eq!(run.against(&[]).during.count, 0);
    }
}
