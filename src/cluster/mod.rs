//! Cluster mode (`--cluster-nats`): the nodes share one state through a NATS JetStream
//! stream, the log of every change, and each node is a replica that applies it in order.
//!
//! - **Out.** Proposals (`chat::replica`) and records (`store::Log`) go to one queue; one task
//!   publishes them in queue order to `STREAM.op` and `STREAM.rec` and runs each one's
//!   callback when JetStream acknowledges it (or refuses, or times out). At most `QUEUE`
//!   changes are on their way at once, queued or waiting for their acknowledgement: each
//!   takes a place first (`Log::reserve`, or the proposal), and past that the change is
//!   refused (`unavailable`) before anything changed.
//! - **In.** One task reads the stream in order with an ordered consumer from the last
//!   applied sequence on, and applies each message through the core: a proposal with
//!   `Core::execute`, a record with `Core::apply_shared`. When the consumer fails (NATS went
//!   away), it starts again after the last message applied.
//! - **Outages.** While the client is not connected, changes are refused at once
//!   (`unavailable`), `/healthz` answers 503, reads are served from the replica, and the NATS
//!   client reconnects by itself.
//! - **Start.** The node serves its port before it joins: until it has caught up it answers
//!   every call but `/healthz` and `/metrics` with 503 (`server::joining`), and a signal stops
//!   it. The client tries NATS with back-off and logs each failure with the URL
//!   (`next_server`).
//! - **Epoch.** The stream's creation time: it changes only when the stream was made anew,
//!   that is when the log and everything acknowledged in it was lost.
//! - **Resume.** The node keeps a copy of its replica in `--data-dir` (`local`); a restart
//!   loads it and reads the stream after it, or the latest snapshot when it cannot.
//!
//! Typing and presence are not in the log: they are plain NATS subjects (`STREAM.typing`,
//! `STREAM.presence`), see `chat::replica`.
//!
//! The files: `publish` (out), `reader` (in), `snapshot` (snapshots in the stream and what a
//! starting node loads), `connect` (NATS servers, back-off, the streams), `presence` (typing
//! and presence between nodes), `local` (the copy in `--data-dir`), `settings` (the settings
//! all nodes share).

mod connect;
mod local;
mod presence;
mod publish;
mod reader;
mod settings;
mod snapshot;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, stream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::chat::replica::{Failed, Replicator};
use crate::chat::{ChatError, Core, Record};
use crate::config::Config;
use crate::store::Refused;
use connect::{file_stream, next_server};
use local::LocalCopy;
use presence::{ephemeral, TypingReport};
use publish::{publish, Outgoing};
use reader::Reader;
use settings::Settings;
use snapshot::load_state;

/// Changes on their way to NATS (queued, or published and not yet acknowledged) before new
/// ones are refused.
const QUEUE: usize = 65_536;
/// How long JetStream has to acknowledge a publish.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest an unknown token waits for the node to catch up with the stream.
const CATCH_UP: Duration = Duration::from_secs(2);
/// Unknown tokens waiting for that at once; more are refused at once.
const CATCHING_UP: usize = 16;
/// Catch-ups of known tokens (`catch_up`) at once; more wait for a turn.
const READING: usize = 256;
/// Pause before the reader starts again after its consumer failed.
const RETRY: Duration = Duration::from_millis(250);

/// The node's handle on the stream: the store's log and the core's replicator.
pub struct Cluster {
    client: async_nats::Client,
    queue: mpsc::Sender<Outgoing>,
    /// Places for the changes on their way: queued, or published and not yet acknowledged
    /// (at most `QUEUE` in all).
    inflight: Arc<Semaphore>,
    /// The stream sequence of the last message applied here.
    applied: Arc<AtomicU64>,
    typing: String,
    origin: String,
    /// For `catch_up`: the stream, the sequence applied, and a bound on callers at once.
    stream: stream::Stream,
    caught: watch::Receiver<u64>,
    catching_up: tokio::sync::Semaphore,
    /// The same bound for callers with a known token, who wait for their turn.
    reading: tokio::sync::Semaphore,
    /// The node's copy of the replica in `--data-dir`.
    local: Arc<LocalCopy>,
    /// The last snapshot point; the reader holds it while it applies a change.
    point: Arc<Mutex<u64>>,
}

impl Cluster {
    /// A place among the changes on their way to the stream, unless NATS is unreachable or
    /// every place is taken.
    fn place(&self) -> Result<OwnedSemaphorePermit, Refused> {
        if self.client.connection_state() != State::Connected {
            return Err(Refused::Failed);
        }
        self.inflight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Full)
    }

    /// Sends what is queued for the stream (at most for `limit`): at a clean stop, the read
    /// markers written last.
    pub async fn flush(&self, limit: Duration) {
        let began = std::time::Instant::now();
        while self.queue.capacity() < self.queue.max_capacity() && began.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = tokio::time::timeout(limit, self.client.flush()).await;
    }

    /// The stream sequence of the last change applied on this node.
    pub fn applied(&self) -> u64 {
        self.applied.load(Relaxed)
    }

    /// Saves the replica as it is now in the data directory, for a restart to resume from:
    /// at a clean stop. Blocks while it writes.
    pub fn save_local(&self, core: &Arc<Core>) {
        let (at, records) = {
            let point = self.point.lock().unwrap_or_else(|e| e.into_inner());
            ((self.applied(), *point), core.snapshot_now())
        };
        self.local.save(at, records);
    }
}

impl Replicator for Cluster {
    fn propose(&self, proposal: Vec<u8>, failed: Failed) -> Result<(), ChatError> {
        let place = self.place().map_err(|_| ChatError::Unavailable)?;
        let out = Outgoing {
            subject: "op",
            payload: proposal,
            done: Box::new(move |ok| {
                if !ok {
                    failed();
                }
            }),
            _place: place,
        };
        // Refused here, the caller answers `unavailable` itself: `failed` never runs.
        self.queue.try_send(out).map_err(|_| ChatError::Unavailable)
    }

    fn catch_up(
        &self,
        stranger: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if self.client.connection_state() != State::Connected {
                return;
            }
            // Unknown tokens are what strangers send: only a few wait at a time. Known ones
            // wait for a turn among more.
            let _turn = if stranger {
                match self.catching_up.try_acquire() {
                    Ok(turn) => turn,
                    Err(_) => return,
                }
            } else {
                match self.reading.acquire().await {
                    Ok(turn) => turn,
                    Err(_) => return,
                }
            };
            let Ok(Ok(info)) = tokio::time::timeout(CATCH_UP, self.stream.get_info()).await else {
                return;
            };
            let last = info.state.last_sequence;
            let mut caught = self.caught.clone();
            let _ = tokio::time::timeout(CATCH_UP, caught.wait_for(|s| *s >= last)).await;
        })
    }

    fn position(&self) -> u64 {
        self.applied()
    }

    fn typing(&self, room: &str, username: &str) {
        let report = TypingReport {
            origin: self.origin.clone(),
            room: room.to_string(),
            user: username.to_string(),
        };
        let (client, subject) = (self.client.clone(), self.typing.clone());
        let payload = serde_json::to_vec(&report).unwrap_or_default();
        tokio::spawn(async move {
            let _ = client.publish(subject, payload.into()).await;
        });
    }
}

/// Connects to NATS, makes sure the stream exists, catches up with it and keeps applying
/// it: the node's replica is then current and serves. Waits for NATS as long as it takes;
/// the caller drops the future to give up (a signal at start).
pub async fn join(core: &Arc<Core>, cfg: &Config, node: &str) -> Result<Arc<Cluster>, String> {
    let urls = cfg.cluster_nats.join(",");
    let name = format!("parley {node}");
    // The reader starts a new consumer when the client reconnects: the old one may be gone
    // with the server that held it, and waiting for its heartbeat to be missed takes long.
    let reconnected = Arc::new(tokio::sync::Notify::new());
    let notify = reconnected.clone();
    let client = async_nats::ConnectOptions::new()
        .name(&name)
        .event_callback(move |event| {
            let notify = notify.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("cluster: connected to NATS");
                        notify.notify_one();
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(
                            "cluster: NATS unreachable; changes are refused until it is back"
                        );
                    }
                    other => tracing::debug!("cluster: NATS {other}"),
                }
            }
        })
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_to_server_callback(|servers, _info| std::future::ready(next_server(&servers)))
        .connect(cfg.cluster_nats.as_slice())
        .await
        .map_err(|e| format!("--cluster-nats {urls}: {e}"))?;
    // Asked before the client is connected, the other nodes could not answer in time.
    while client.connection_state() != State::Connected {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let base = cfg.cluster_stream.clone();
    let settings = Settings::of(cfg, node, core.origin())?;
    tokio::spawn(settings.clone().answer(client.clone(), base.clone()));
    settings.check(&client, &base).await?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(ACK_TIMEOUT);
    let mut stream = file_stream(
        &js,
        &base,
        vec![format!("{base}.op"), format!("{base}.rec")],
        cfg,
    )
    .await;
    let info = loop {
        match stream.info().await {
            Ok(i) => break i.clone(),
            Err(e) => {
                tracing::warn!("cluster: stream {base} info: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let snaps_name = format!("{base}-snap");
    let snaps = file_stream(&js, &snaps_name, vec![format!("{snaps_name}.>")], cfg).await;
    let began = std::time::Instant::now();
    let created = info.created.unix_timestamp_nanos();
    let local = Arc::new(LocalCopy::new(
        cfg.data_dir.clone(),
        &base,
        created,
        cfg.cluster_save_every,
    ));
    let last = info.state.last_sequence;
    let (from, point, source) = load_state(core, &local, &info, &snaps, &base).await?;
    let epoch = format!("{created:x}");
    core.apply(&Record::Epoch { epoch });

    let point = Arc::new(Mutex::new(point));
    let applied = Arc::new(AtomicU64::new(from));
    let (caught_tx, mut caught_rx) = watch::channel(from);
    let (queue, rx) = mpsc::channel(QUEUE);
    tokio::spawn(publish(js.clone(), base.clone(), rx, caught_rx.clone()));
    let reader = Reader {
        core: core.clone(),
        js: js.clone(),
        stream: stream.clone(),
        snaps,
        base: base.clone(),
        applied: applied.clone(),
        caught: caught_tx,
        reconnected,
        every: cfg.cluster_snapshot_every,
        point: point.clone(),
        proposed_after: None,
        created,
        local: local.clone(),
    };
    tokio::spawn(reader.run());
    while *caught_rx.borrow() < last {
        if caught_rx.changed().await.is_err() {
            return Err("cluster: the stream reader stopped".into());
        }
    }
    let (users, rooms, entries) = core.counts();
    tracing::info!(
        node,
        stream = %base,
        from,
        changes = last.saturating_sub(from),
        ms = began.elapsed().as_millis() as u64,
        "cluster: caught up with stream {base} in {} ms: {source} at {from}, then {} changes; {users} users, {rooms} rooms, {entries} kept entries",
        began.elapsed().as_millis(),
        last.saturating_sub(from)
    );
    let cluster = Arc::new(Cluster {
        client: client.clone(),
        queue,
        inflight: Arc::new(Semaphore::new(QUEUE)),
        applied,
        typing: format!("{base}.typing"),
        origin: core.origin().to_string(),
        stream,
        caught: caught_rx,
        catching_up: tokio::sync::Semaphore::new(CATCHING_UP),
        reading: tokio::sync::Semaphore::new(READING),
        local,
        point,
    });
    tokio::spawn(ephemeral(core.clone(), client, base, node.to_string()));
    core.store().join_cluster(cluster.clone());
    core.set_replicator(cluster.clone());
    Ok(cluster)
}
