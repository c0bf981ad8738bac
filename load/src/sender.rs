//! Message senders: the open-loop schedule (a fixed rate, whatever the server does) and the
//! closed-loop window used for saturation.
//!
//! A sender builds batches of encoded `send` frames and hands them to a connection's writer
//! task, so the connection keeps reading while a write waits on the server.

use crate::conn::Outgoing;
use crate::frame::{self, OpCode, XorShift};
use crate::scan::{self, Stamp};
use crate::stats::{new_total_histogram, Shared};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

/// Encodes `send` frames for one room.
#[derive(Clone, Debug)]
pub struct SendSpec {
    /// `{"type":"send","room":"<id>","text":"`
    prefix: Vec<u8>,
    /// Length of each message text in bytes.
    pub text_len: usize,
}

impl SendSpec {
    pub fn new(room_id: &str, text_len: usize) -> SendSpec {
        let mut prefix = br#"{"type":"send","room":"#.to_vec();
        prefix.extend_from_slice(serde_json::Value::from(room_id).to_string().as_bytes());
        prefix.extend_from_slice(br#","text":""#);
        SendSpec { prefix, text_len }
    }

    /// Appends one masked `send` frame carrying `stamp`, with nonce `n<nonce>`.
    pub fn append_frame(
        &self,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        stamp: Stamp,
        nonce: u64,
        rng: &mut XorShift,
    ) {
        scratch.clear();
        scratch.extend_from_slice(&self.prefix);
        scan::write_text(scratch, stamp, self.text_len);
        scratch.extend_from_slice(br#"","nonce":"n"#);
        scan::push_u64(scratch, nonce);
        scratch.extend_from_slice(b"\"}");
        frame::encode_masked(out, OpCode::Text, scratch, rng.mask());
    }
}

/// A fixed schedule for one sender.
#[derive(Clone, Debug)]
pub struct OpenLoop {
    pub phase: u32,
    /// Messages per second from this sender.
    pub rate: f64,
    /// When this sender's first message is due.
    pub start: Instant,
    pub duration: Duration,
    /// How many due messages may wait before the excess is skipped and counted as missed.
    /// Default in the scenarios: half a second's worth.
    pub max_backlog: u64,
}

/// Sends on the schedule until `duration` has passed. Each message is stamped with the time
/// its batch was built; how late that was against the plan goes to `shared.send_lag`.
pub async fn run_open_loop(
    tx: mpsc::Sender<Outgoing>,
    spec: Arc<SendSpec>,
    plan: OpenLoop,
    shared: Arc<Shared>,
    seed: u64,
) {
    if plan.rate <= 0.0 {
        return;
    }
    let total = (plan.rate * plan.duration.as_secs_f64()).floor() as u64;
    let period = Duration::from_secs_f64((1.0 / plan.rate).clamp(0.001, 0.1));
    let mut ticks = tokio::time::interval_at(plan.start.into(), period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut rng = XorShift::new(seed);
    let mut scratch = Vec::with_capacity(spec.text_len + 128);
    let mut lag = new_total_histogram();
    let counters = shared.phase(plan.phase);
    let mut sent = 0u64;
    let mut missed = 0u64;
    while sent < total {
        ticks.tick().await;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(plan.start).as_secs_f64();
        let due = ((elapsed * plan.rate).floor() as u64 + 1).min(total);
        if due <= sent {
            continue;
        }
        if due - sent > plan.max_backlog.max(1) {
            let skip = due - sent - plan.max_backlog.max(1);
            missed += skip;
            sent += skip;
        }
        let stamp = Stamp {
            phase: plan.phase,
            sent_ns: shared.clock.now_ns(),
        };
        let n = due - sent;
        let mut batch = Vec::with_capacity(n as usize * (spec.text_len + 96));
        for i in sent..due {
            let planned = plan.start + Duration::from_secs_f64(i as f64 / plan.rate);
            lag.saturating_record(now.saturating_duration_since(planned).as_micros() as u64);
            spec.append_frame(&mut batch, &mut scratch, stamp, i, &mut rng);
        }
        sent = due;
        counters.sent.fetch_add(n, Ordering::Relaxed);
        if tx.send(Outgoing::Frames(batch)).await.is_err() {
            break;
        }
    }
    counters.missed.fetch_add(missed, Ordering::Relaxed);
    if let Ok(mut h) = shared.send_lag.lock() {
        let _ = h[plan.phase as usize].add(&lag);
    }
}

/// A closed loop: keep about `window` messages of the phase undelivered, room-wide.
#[derive(Clone, Debug)]
pub struct ClosedLoop {
    pub phase: u32,
    pub duration: Duration,
    /// Messages in flight allowed over all senders. A message counts as in flight until every
    /// member received it (measured as deliveries / members).
    pub window: u64,
    /// Deliveries each message makes (the room's member connections).
    pub fanout: u64,
    /// Number of senders sharing the window.
    pub senders: u64,
}

/// Sends whenever the window allows, checking every millisecond, until `duration` has passed.
pub async fn run_closed_loop(
    tx: mpsc::Sender<Outgoing>,
    spec: Arc<SendSpec>,
    plan: ClosedLoop,
    shared: Arc<Shared>,
    seed: u64,
) {
    let start = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut rng = XorShift::new(seed);
    let mut scratch = Vec::with_capacity(spec.text_len + 128);
    let counters = shared.phase(plan.phase);
    let share = plan.window.div_ceil(plan.senders.max(1)).max(1);
    let mut nonce = seed << 32;
    while start.elapsed() < plan.duration {
        ticks.tick().await;
        let sent = counters.sent.load(Ordering::Relaxed);
        let received = counters.received.load(Ordering::Relaxed);
        let outstanding = (sent * plan.fanout)
            .saturating_sub(received)
            .div_ceil(plan.fanout.max(1));
        let n = plan.window.saturating_sub(outstanding).min(share);
        if n == 0 {
            continue;
        }
        let stamp = Stamp {
            phase: plan.phase,
            sent_ns: shared.clock.now_ns(),
        };
        let mut batch = Vec::with_capacity(n as usize * (spec.text_len + 96));
        for _ in 0..n {
            spec.append_frame(&mut batch, &mut scratch, stamp, nonce, &mut rng);
            nonce += 1;
        }
        counters.sent.fetch_add(n, Ordering::Relaxed);
        if tx.send(Outgoing::Frames(batch)).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_frames_are_valid_json_with_the_stamp() {
        let spec = SendSpec::new("r-42", 100);
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let mut rng = XorShift::new(7);
        let stamp = Stamp {
            phase: 2,
            sent_ns: 99,
        };
        spec.append_frame(&mut out, &mut scratch, stamp, 5, &mut rng);
        // Unmask and parse as JSON.
        // A 100-byte text makes a payload over 125 bytes: 16-bit length, then the mask.
        assert_eq!(out[1], 0x80 | 126);
        let len = usize::from(u16::from_be_bytes([out[2], out[3]]));
        let mask = [out[4], out[5], out[6], out[7]];
        let mut payload = out[8..].to_vec();
        assert_eq!(len, payload.len());
        frame::apply_mask(&mut payload, mask);
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["type"], "send");
        assert_eq!(v["room"], "r-42");
        assert_eq!(v["nonce"], "n5");
        let text = v["text"].as_str().unwrap();
        assert_eq!(text.len(), 100);
        assert_eq!(scan::find_stamp(text.as_bytes()), Some(stamp));
    }

    /// The hand-built `send` frame is the shared `ClientFrame::send`, byte for byte.
    #[test]
    fn send_frames_are_the_shared_client_frame() {
        let spec = SendSpec::new("r-\"42", 40);
        let (mut out, mut scratch, mut rng) = (Vec::new(), Vec::new(), XorShift::new(7));
        let stamp = Stamp {
            phase: 1,
            sent_ns: 12,
        };
        spec.append_frame(&mut out, &mut scratch, stamp, 5, &mut rng);
        let mut text = Vec::new();
        scan::write_text(&mut text, stamp, 40);
        let text = String::from_utf8(text).unwrap();
        let shared = parley_protocol::ClientFrame::send("r-\"42", &text, Some("n5"));
        assert_eq!(String::from_utf8(scratch).unwrap(), shared.to_json());
        let back: parley_protocol::ClientFrame = serde_json::from_str(&shared.to_json()).unwrap();
        assert_eq!(back, shared);
    }
}
