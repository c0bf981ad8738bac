//! Cluster mode (`--cluster-nats`): the nodes share one state through a NATS JetStream
//! stream, the log of every change, and each node is a replica that applies it in order.
//!
//! - **Out.** Proposals (`chat::replica`) and records (`store::Log`) go to one queue; one task
//!   publishes them in queue order to `STREAM.op` and `STREAM.rec` and runs each one's
//!   callback when JetStream acknowledges it (or refuses, or times out).
//! - **In.** One task reads the stream in order with an ordered consumer from the last
//!   applied sequence on, and applies each message through the core: a proposal with
//!   `Core::execute`, a record with `Core::apply_shared`. When the consumer fails (NATS went
//!   away), it starts again after the last message applied.
//! - **Outages.** While the client is not connected, changes are refused at once
//!   (`unavailable`), `/healthz` answers 503, reads are served from the replica, and the NATS
//!   client reconnects by itself.
//! - **Epoch.** The stream's creation time: it changes only when the stream was made anew,
//!   that is when the log and everything acknowledged in it was lost.
//!
//! Typing and presence are not in the log: they are plain NATS subjects (`STREAM.typing`,
//! `STREAM.presence`), see `chat::replica`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::chat::replica::{Failed, Proposal, Replicator};
use crate::chat::{ChatError, Core, Record};
use crate::config::Config;
use crate::store::{Done, Log};

/// Changes queued for NATS before new ones are refused.
const QUEUE: usize = 65_536;
/// How long JetStream has to acknowledge a publish.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest an unknown token waits for the node to catch up with the stream.
const CATCH_UP: Duration = Duration::from_secs(2);
/// Unknown tokens waiting for that at once; more are refused at once.
const CATCHING_UP: usize = 16;
/// Pause before the reader starts again after its consumer failed.
const RETRY: Duration = Duration::from_millis(250);

/// How often a node compares its users' presence with what it last reported.
const PRESENCE_EVERY: Duration = Duration::from_millis(250);
/// A node reports its online users at least this often: its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node not heard from for this long counts as gone, and its users' connections with it.
const SILENT_MS: u64 = 6_000;

/// A node's report of the users online there (`STREAM.presence`).
#[derive(Serialize, Deserialize)]
struct PresenceReport {
    origin: String,
    node: String,
    users: Vec<String>,
}

/// Someone typing on a node (`STREAM.typing`).
#[derive(Serialize, Deserialize)]
struct TypingReport {
    origin: String,
    room: String,
    user: String,
}

/// One change on its way to the stream.
struct Outgoing {
    subject: &'static str,
    payload: Vec<u8>,
    done: Done,
}

/// The node's handle on the stream: the store's log and the core's replicator.
pub struct Cluster {
    client: async_nats::Client,
    queue: mpsc::Sender<Outgoing>,
    /// The stream sequence of the last message applied here.
    applied: Arc<AtomicU64>,
    typing: String,
    origin: String,
    /// For `catch_up`: the stream, the sequence applied, and a bound on callers at once.
    stream: stream::Stream,
    caught: watch::Receiver<u64>,
    catching_up: tokio::sync::Semaphore,
}

impl Cluster {
    /// Queues `out` for the stream, or gives it back when NATS is unreachable or the queue
    /// is full.
    fn send(&self, out: Outgoing) -> Result<(), Outgoing> {
        if self.client.connection_state() != State::Connected {
            return Err(out);
        }
        self.queue.try_send(out).map_err(|e| match e {
            mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => o,
        })
    }

    /// The stream sequence of the last change applied on this node.
    pub fn applied(&self) -> u64 {
        self.applied.load(Relaxed)
    }
}

impl Log for Cluster {
    fn append(&self, record: Vec<u8>, done: Done) {
        let out = Outgoing {
            subject: "rec",
            payload: record,
            done,
        };
        if let Err(out) = self.send(out) {
            (out.done)(false);
        }
    }

    fn failed(&self) -> Option<String> {
        match self.client.connection_state() {
            State::Connected => None,
            _ => Some("NATS is unreachable".into()),
        }
    }
}

impl Replicator for Cluster {
    fn propose(&self, proposal: Vec<u8>, failed: Failed) -> Result<(), ChatError> {
        let out = Outgoing {
            subject: "op",
            payload: proposal,
            done: Box::new(move |ok| {
                if !ok {
                    failed();
                }
            }),
        };
        // Refused here, the caller answers `unavailable` itself: `failed` never runs.
        self.send(out).map_err(|_| ChatError::Unavailable)
    }

    fn catch_up(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // Unknown tokens are what strangers send: only a few wait at a time.
            let Ok(_turn) = self.catching_up.try_acquire() else {
                return;
            };
            let Ok(Ok(info)) = tokio::time::timeout(CATCH_UP, self.stream.get_info()).await else {
                return;
            };
            let last = info.state.last_sequence;
            let mut caught = self.caught.clone();
            let _ = tokio::time::timeout(CATCH_UP, caught.wait_for(|s| *s >= last)).await;
        })
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
/// it: the node's replica is then current and serves. Waits for NATS as long as it takes.
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
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).min(1000))
        })
        .connect(urls.as_str())
        .await
        .map_err(|e| format!("--cluster-nats {urls}: {e}"))?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(ACK_TIMEOUT);
    let base = cfg.cluster_stream.clone();
    let stream_cfg = stream::Config {
        name: base.clone(),
        subjects: vec![format!("{base}.op"), format!("{base}.rec")],
        storage: stream::StorageType::File,
        num_replicas: cfg.cluster_replicas,
        ..Default::default()
    };
    let mut stream = loop {
        match js.get_or_create_stream(stream_cfg.clone()).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!("cluster: stream {base} not ready ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let info = loop {
        match stream.info().await {
            Ok(i) => break i.clone(),
            Err(e) => {
                tracing::warn!("cluster: stream {base} info: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let epoch = format!("{:x}", info.created.unix_timestamp_nanos());
    core.apply(&Record::Epoch { epoch });
    let last = info.state.last_sequence;

    let (queue, rx) = mpsc::channel(QUEUE);
    tokio::spawn(publish(js.clone(), base.clone(), rx));
    let applied = Arc::new(AtomicU64::new(0));
    let (caught_tx, mut caught_rx) = watch::channel(0u64);
    tokio::spawn(read(
        core.clone(),
        stream.clone(),
        applied.clone(),
        caught_tx,
        reconnected,
    ));
    let began = std::time::Instant::now();
    while *caught_rx.borrow() < last {
        if caught_rx.changed().await.is_err() {
            return Err("cluster: the stream reader stopped".into());
        }
    }
    let (users, rooms, entries) = core.counts();
    tracing::info!(
        node,
        stream = %base,
        messages = last,
        ms = began.elapsed().as_millis() as u64,
        "cluster: caught up with {last} changes of stream {base} in {} ms: {users} users, {rooms} rooms, {entries} kept entries",
        began.elapsed().as_millis()
    );
    let cluster = Arc::new(Cluster {
        client: client.clone(),
        queue,
        applied,
        typing: format!("{base}.typing"),
        origin: core.origin().to_string(),
        stream,
        caught: caught_rx,
        catching_up: tokio::sync::Semaphore::new(CATCHING_UP),
    });
    tokio::spawn(ephemeral(core.clone(), client, base, node.to_string()));
    core.store().join_cluster(cluster.clone());
    core.set_replicator(cluster.clone());
    Ok(cluster)
}

/// Publishes queued changes in order; each one's callback runs on its acknowledgement.
async fn publish(js: jetstream::Context, base: String, mut rx: mpsc::Receiver<Outgoing>) {
    let (op, rec) = (format!("{base}.op"), format!("{base}.rec"));
    while let Some(out) = rx.recv().await {
        let subject = if out.subject == "op" { &op } else { &rec };
        match js.publish(subject.clone(), out.payload.into()).await {
            Ok(ack) => {
                tokio::spawn(async move {
                    let ok = ack.await.is_ok();
                    (out.done)(ok);
                });
            }
            Err(e) => {
                tracing::warn!("cluster: publish failed: {e}");
                (out.done)(false);
            }
        }
    }
}

/// Applies the stream in order, from the message after the last one applied, for as long as
/// the node runs; `caught` follows the sequence applied.
async fn read(
    core: Arc<Core>,
    stream: stream::Stream,
    applied: Arc<AtomicU64>,
    caught: watch::Sender<u64>,
    reconnected: Arc<tokio::sync::Notify>,
) {
    loop {
        let start = applied.load(Relaxed) + 1;
        let config = consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        };
        let messages = match stream.create_consumer(config).await {
            Ok(c) => c.messages().await,
            Err(e) => {
                tracing::debug!("cluster: cannot read the stream yet: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("cluster: cannot read the stream yet: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = reconnected.notified() => break,
            };
            let Some(next) = next else { break };
            let msg = match next {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("cluster: reading the stream failed: {e}; reading again");
                    break;
                }
            };
            let Ok(seq) = msg.info().map(|i| i.stream_sequence) else {
                continue;
            };
            if seq <= applied.load(Relaxed) {
                continue;
            }
            apply(&core, &msg.subject, &msg.payload);
            applied.store(seq, Relaxed);
            caught.send_replace(seq);
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Reports this node's online users when they change and at every heartbeat; takes the
/// other nodes' reports and typing; forgets nodes gone silent.
async fn ephemeral(core: Arc<Core>, client: async_nats::Client, base: String, node: String) {
    let subject = format!("{base}.presence");
    let (mut presence, mut typing) = loop {
        let p = client.subscribe(subject.clone()).await;
        let t = client.subscribe(format!("{base}.typing")).await;
        match (p, t) {
            (Ok(p), Ok(t)) => break (p, t),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cluster: cannot subscribe to presence: {e}");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let mut tick = tokio::time::interval(PRESENCE_EVERY);
    let mut reported: Option<(Vec<String>, std::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut users = core.local_presence();
                users.sort_unstable();
                let due = match &reported {
                    Some((last, at)) => *last != users || at.elapsed() >= HEARTBEAT,
                    None => true,
                };
                if due {
                    let report = PresenceReport {
                        origin: core.origin().to_string(),
                        node: node.clone(),
                        users: users.clone(),
                    };
                    let payload = serde_json::to_vec(&report).unwrap_or_default();
                    if client.publish(subject.clone(), payload.into()).await.is_ok() {
                        reported = Some((users, std::time::Instant::now()));
                    }
                }
                core.forget_silent_nodes(SILENT_MS);
            }
            Some(m) = presence.next() => {
                if let Ok(r) = serde_json::from_slice::<PresenceReport>(&m.payload) {
                    core.node_presence(&r.origin, r.users);
                }
            }
            Some(m) = typing.next() => {
                if let Ok(t) = serde_json::from_slice::<TypingReport>(&m.payload) {
                    core.node_typing(&t.origin, &t.room, &t.user);
                }
            }
        }
    }
}

/// Applies one message of the stream to the core.
fn apply(core: &Core, subject: &str, payload: &[u8]) {
    if subject.ends_with(".op") {
        match serde_json::from_slice::<Proposal>(payload) {
            Ok(p) => core.execute(&p),
            Err(e) => tracing::error!("cluster: unreadable proposal skipped: {e}"),
        }
    } else {
        match serde_json::from_slice::<Record>(payload) {
            Ok(rec) => core.apply_shared(&rec),
            Err(e) => tracing::error!("cluster: unreadable record skipped: {e}"),
        }
    }
}
