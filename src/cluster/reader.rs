//! In: the stream's reader, which applies it in order through the core (`Core::execute`,
//! `Core::apply_shared`) and takes part in its snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::local::LocalCopy;
use super::snapshot::write_snapshot;
use super::RETRY;
use crate::chat::replica::Proposal;
use crate::chat::Command;
use crate::chat::{Core, Record};

/// How often the reader checks that it is not stalled behind the stream.
const STALL_CHECK: Duration = Duration::from_secs(1);

/// The stream's reader: applies it in order and takes part in its snapshots.
pub(super) struct Reader {
    pub(super) core: Arc<Core>,
    pub(super) js: jetstream::Context,
    pub(super) stream: stream::Stream,
    pub(super) snaps: stream::Stream,
    pub(super) base: String,
    pub(super) applied: Arc<AtomicU64>,
    pub(super) caught: watch::Sender<u64>,
    pub(super) reconnected: Arc<tokio::sync::Notify>,
    /// Changes between snapshots (`--cluster-snapshot-every`).
    pub(super) every: u64,
    /// The stream sequence of the last snapshot point: the same on every node, since it is
    /// decided in log order. Held while a change is applied, so that a copy of the state
    /// taken elsewhere (`Cluster::save_local`) is between two changes.
    pub(super) point: Arc<Mutex<u64>>,
    /// The snapshot point this node last proposed a new snapshot after.
    pub(super) proposed_after: Option<u64>,
    /// When the stream was made, as the node found it (its epoch).
    pub(super) created: i128,
    pub(super) local: Arc<LocalCopy>,
}

impl Reader {
    /// Applies the stream in order, from the message after the last one applied, for as long
    /// as the node runs.
    pub(super) async fn run(mut self) {
        loop {
            let start = self.applied.load(Relaxed) + 1;
            match self.stream.get_info().await {
                Ok(info)
                    if info.created.unix_timestamp_nanos() != self.created
                        || info.state.last_sequence < start - 1 =>
                {
                    tracing::error!(
                        "cluster: stream {} was made anew: what it held is lost; exiting so \
                         that a restart starts over from it, with a new epoch",
                        self.base
                    );
                    std::process::exit(3);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("cluster: cannot read the stream yet: {e}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
            let config = consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            };
            let messages = match self.stream.create_consumer(config).await {
                Ok(c) => c.messages().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!("cluster: cannot read the stream yet: {e}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let mut stall = tokio::time::interval(STALL_CHECK);
            stall.tick().await;
            let mut seen = self.applied.load(Relaxed);
            loop {
                let next = tokio::select! {
                    next = messages.next() => next,
                    _ = self.reconnected.notified() => break,
                    _ = stall.tick() => {
                        let now = self.applied.load(Relaxed);
                        if now == seen && self.behind(now).await {
                            // The consumer's server went away (a NATS cluster lost one)
                            // while this node stayed connected: the client library would
                            // notice only after missing two 15 s heartbeats.
                            tracing::warn!(applied = now, "cluster: the stream reader stalled; reading again");
                            break;
                        }
                        seen = now;
                        continue;
                    }
                };
                let msg = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::warn!("cluster: reading the stream failed: {e}; reading again");
                        tokio::time::sleep(RETRY).await;
                        break;
                    }
                    None => break,
                };
                let Ok(seq) = msg.info().map(|i| i.stream_sequence) else {
                    continue;
                };
                let applied = self.applied.load(Relaxed);
                if seq <= applied {
                    continue;
                }
                if seq > applied + 1 {
                    // Purged before this node read it: only the latest snapshot can bring it
                    // up to date, and it loads at start.
                    tracing::error!(
                        applied,
                        next = seq,
                        "cluster: this node fell behind the stream's purged start; \
                         exiting so that a restart loads the latest snapshot"
                    );
                    std::process::exit(3);
                }
                let point = self.point.clone();
                let mut point = point.lock().unwrap_or_else(|e| e.into_inner());
                self.apply(seq, &msg.subject, &msg.payload, &mut point);
                self.applied.store(seq, Relaxed);
                self.caught.send_replace(seq);
                if seq - *point >= self.every && self.proposed_after != Some(*point) {
                    self.proposed_after = Some(*point);
                    self.core.propose_snapshot();
                }
                if self.local.due(seq) {
                    let records = self.core.snapshot_now();
                    self.local.save_in_background((seq, *point), records);
                }
            }
        }
    }

    /// Whether the stream holds changes after `applied`.
    async fn behind(&self, applied: u64) -> bool {
        let info = tokio::time::timeout(STALL_CHECK, self.stream.get_info()).await;
        matches!(info, Ok(Ok(i)) if i.state.last_sequence > applied)
    }

    /// Applies one message of the stream to the core; a snapshot proposal may move `point`.
    fn apply(&mut self, seq: u64, subject: &str, payload: &[u8], point: &mut u64) {
        if subject.ends_with(".op") {
            match serde_json::from_slice::<Proposal>(payload) {
                Ok(p) if matches!(p.command, Command::Snapshot) => {
                    self.snapshot_point(seq, &p, point)
                }
                Ok(p) => self.core.execute(&p),
                Err(e) => tracing::error!("cluster: unreadable proposal skipped: {e}"),
            }
        } else {
            match serde_json::from_slice::<Record>(payload) {
                Ok(rec) => self.core.apply_shared(&rec),
                Err(e) => tracing::error!("cluster: unreadable record skipped: {e}"),
            }
        }
    }

    /// A proposed snapshot: the first one a full stretch after the last point is the next
    /// point, and its proposer writes the state as it is here, between two changes.
    fn snapshot_point(&self, seq: u64, p: &Proposal, point: &mut u64) {
        if seq - *point < self.every {
            return;
        }
        let previous = std::mem::replace(point, seq);
        if p.origin != self.core.origin() {
            return;
        }
        let records = self.core.snapshot_now();
        let (stream, snaps, base) = (self.stream.clone(), self.snaps.clone(), self.base.clone());
        let js = self.js.clone();
        tokio::spawn(async move {
            let began = std::time::Instant::now();
            let streams = (&js, &stream, &snaps);
            match write_snapshot(records, seq, streams, &base, previous).await {
                Ok(bytes) => tracing::info!(
                    seq,
                    bytes,
                    ms = began.elapsed().as_millis() as u64,
                    "cluster: wrote a snapshot at {seq} ({bytes} bytes); the stream now starts after {previous}"
                ),
                Err(e) => tracing::warn!("cluster: snapshot at {seq} not written: {e}"),
            }
        });
    }
}
