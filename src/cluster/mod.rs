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

mod local;
mod settings;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::chat::replica::{Failed, Proposal, Replicator};
use crate::chat::Command;
use crate::chat::{ChatError, Core, Record};
use crate::config::Config;
use crate::store::snapshot::{frame, unframe};
use crate::store::{Done, Log, LogPlace, Refused};
use local::{LocalCopy, Unusable};
use settings::Settings;

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
/// How often the reader checks that it is not stalled behind the stream.
const STALL_CHECK: Duration = Duration::from_secs(1);
/// Pause before the reader starts again after its consumer failed.
const RETRY: Duration = Duration::from_millis(250);

/// The first pause before trying a NATS server again after it failed. Default is 100 ms.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between two tries at one NATS server: how long a node may take to
/// notice that NATS is back. Default is 5 s.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

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
    /// Its place among the changes on their way (`Cluster::inflight`), given back once its
    /// fate is known.
    _place: OwnedSemaphorePermit,
}

/// A record's place, taken by `Log::reserve`.
struct Place {
    queue: mpsc::Sender<Outgoing>,
    place: OwnedSemaphorePermit,
}

impl LogPlace for Place {
    fn append(self: Box<Self>, record: Vec<u8>, done: Done) {
        let out = Outgoing {
            subject: "rec",
            payload: record,
            done,
            _place: self.place,
        };
        // The queue holds as many as there are places, so only a stopped publisher refuses.
        // The callback then runs elsewhere: the caller may hold the locks an undo takes.
        if let Err(e) = self.queue.try_send(out) {
            let out = match e {
                mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => o,
            };
            refused_later(out.done);
        }
    }
}

/// Runs the callbacks of records the publisher never took, on one thread of their own.
fn refused_later(done: Done) {
    static LATER: std::sync::OnceLock<crossbeam_channel::Sender<Done>> = std::sync::OnceLock::new();
    let tx = LATER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<Done>();
        let spawned = std::thread::Builder::new()
            .name("cluster-refused".into())
            .spawn(move || {
                for done in rx {
                    done(false);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cluster: no thread for refused records: {e}");
        }
        tx
    });
    if let Err(e) = tx.send(done) {
        // No thread to run it: it is dropped, and its commit ends as not kept.
        drop(e);
    }
}

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

impl Log for Cluster {
    fn reserve(&self) -> Result<Box<dyn LogPlace>, Refused> {
        let place = self.place()?;
        Ok(Box::new(Place {
            queue: self.queue.clone(),
            place,
        }))
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

/// Which NATS server the client tries next, and after what pause: one of those that failed
/// the fewest times in a row (at random among them, so nodes spread over the servers), after
/// [`backoff`] of its failures. A server that failed before is logged at WARN with its URL
/// and why, once a try: the client library's own events name neither.
fn next_server(servers: &[async_nats::Server]) -> Option<async_nats::ReconnectToServer> {
    let fewest = servers.iter().map(|s| s.failed_attempts).min()?;
    let ties: Vec<&async_nats::Server> = servers
        .iter()
        .filter(|s| s.failed_attempts == fewest)
        .collect();
    let next = ties[rand::random_range(0..ties.len())];
    let delay = backoff(next.failed_attempts);
    match (&next.last_error, next.failed_attempts) {
        (Some(why), failures @ 1..) => tracing::warn!(
            url = %next,
            failures,
            "cluster: cannot reach NATS at {next} ({why}; failed {failures} times in a row); \
             trying again in {} ms",
            delay.as_millis()
        ),
        _ => tracing::info!(url = %next, "cluster: connecting to NATS at {next}"),
    }
    Some(async_nats::ReconnectToServer {
        addr: next.addr.clone(),
        delay: Some(delay),
    })
}

/// The pause before trying a NATS server that failed `failures` times in a row: none after
/// a connection was lost, then [`RECONNECT_FIRST`] doubling up to [`RECONNECT_MAX`].
fn backoff(failures: usize) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => RECONNECT_FIRST
            .saturating_mul(1 << (n - 1).min(16))
            .min(RECONNECT_MAX),
    }
}

/// Loads the state a starting node reads the stream on from: the copy in its data directory
/// when it can serve, else the latest snapshot. Returns the stream sequence it is at, the
/// snapshot point then, and where it came from, for the log.
async fn load_state(
    core: &Core,
    local: &LocalCopy,
    info: &stream::Info,
    snaps: &stream::Stream,
    base: &str,
) -> Result<(u64, u64, &'static str), String> {
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    match local.load(core, first, last) {
        Ok((seq, point)) => Ok((seq, point, "its data directory")),
        Err(why) => {
            if !matches!(why, Unusable::Missing) {
                tracing::warn!(
                    "cluster: the state saved in the data directory is not used ({why}); \
                     loading the latest snapshot"
                );
            }
            let seq = load_snapshot(core, snaps, base).await?;
            Ok((seq, seq, "the latest snapshot"))
        }
    }
}

/// The file-backed stream `name` on `subjects`, with `--cluster-replicas`, made if missing;
/// waits (retrying each second) while JetStream is not ready.
async fn file_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: Vec<String>,
    cfg: &Config,
) -> stream::Stream {
    let config = stream::Config {
        name: name.to_string(),
        subjects,
        storage: stream::StorageType::File,
        num_replicas: cfg.cluster_replicas,
        ..Default::default()
    };
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(s) => return s,
            Err(e) => {
                tracing::warn!("cluster: stream {name} not ready ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Publishes queued changes in order. Each one's callback runs once JetStream acknowledged it
/// and this node's reader went past it: every node's reader gets it at about that moment,
/// so a client told of a logout (say) finds it done on the next node it asks.
async fn publish(
    js: jetstream::Context,
    base: String,
    mut rx: mpsc::Receiver<Outgoing>,
    caught: watch::Receiver<u64>,
) {
    let (op, rec) = (format!("{base}.op"), format!("{base}.rec"));
    while let Some(out) = rx.recv().await {
        // The place is given back with the callback's run, not before.
        let Outgoing {
            subject,
            payload,
            done,
            _place: place,
        } = out;
        let subject = if subject == "op" { &op } else { &rec };
        match js.publish(subject.clone(), payload.into()).await {
            Ok(ack) => {
                let mut caught = caught.clone();
                tokio::spawn(async move {
                    let acked = ack.await;
                    if let Ok(ack) = &acked {
                        let read = caught.wait_for(|s| *s >= ack.sequence);
                        let _ = tokio::time::timeout(CATCH_UP, read).await;
                    }
                    done(acked.is_ok());
                    drop(place);
                });
            }
            Err(e) => {
                tracing::warn!("cluster: publish failed: {e}");
                done(false);
                drop(place);
            }
        }
    }
}

/// The stream's reader: applies it in order and takes part in its snapshots.
struct Reader {
    core: Arc<Core>,
    js: jetstream::Context,
    stream: stream::Stream,
    snaps: stream::Stream,
    base: String,
    applied: Arc<AtomicU64>,
    caught: watch::Sender<u64>,
    reconnected: Arc<tokio::sync::Notify>,
    /// Changes between snapshots (`--cluster-snapshot-every`).
    every: u64,
    /// The stream sequence of the last snapshot point: the same on every node, since it is
    /// decided in log order. Held while a change is applied, so that a copy of the state
    /// taken elsewhere (`Cluster::save_local`) is between two changes.
    point: Arc<Mutex<u64>>,
    /// The snapshot point this node last proposed a new snapshot after.
    proposed_after: Option<u64>,
    /// When the stream was made, as the node found it (its epoch).
    created: i128,
    local: Arc<LocalCopy>,
}

impl Reader {
    /// Applies the stream in order, from the message after the last one applied, for as long
    /// as the node runs.
    async fn run(mut self) {
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

/// The latest snapshot: at which stream sequence, and where its chunks are.
#[derive(Serialize, Deserialize)]
struct SnapshotHead {
    seq: u64,
    first_chunk: u64,
    chunks: u64,
}

/// Bytes per snapshot chunk, under NATS's default 1 MB message limit.
const CHUNK_BYTES: usize = 512 * 1024;

/// Writes a snapshot of the state at stream sequence `seq` (its records, length-prefixed, in
/// chunks), then its head; then drops older snapshots and the stream up to the previous
/// point, which keeps a stretch for nodes a little behind. Returns its size.
async fn write_snapshot(
    records: impl Iterator<Item = Vec<u8>> + Send + 'static,
    seq: u64,
    (js, stream, snaps): (&jetstream::Context, &stream::Stream, &stream::Stream),
    base: &str,
    previous: u64,
) -> Result<u64, String> {
    let chunks = tokio::task::spawn_blocking(move || frame(records, CHUNK_BYTES))
        .await
        .map_err(|e| e.to_string())?;
    let bytes: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let count = chunks.len() as u64;
    let mut first_chunk = 0;
    for chunk in chunks {
        let ack = js
            .publish(format!("{base}-snap.chunk"), chunk.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        if first_chunk == 0 {
            first_chunk = ack.sequence;
        }
    }
    let head = SnapshotHead {
        seq,
        first_chunk,
        chunks: count,
    };
    let head = serde_json::to_vec(&head).unwrap_or_default();
    js.publish(format!("{base}-snap.head"), head.into())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    // Older chunks only: nats-server 2.9 reads a filtered purge up to sequence 1 as no bound
    // at all, and there is nothing older than the first chunk ever written anyway.
    if first_chunk > 1 {
        snaps
            .purge()
            .filter(format!("{base}-snap.chunk"))
            .sequence(first_chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    snaps
        .purge()
        .filter(format!("{base}-snap.head"))
        .keep(1)
        .await
        .map_err(|e| e.to_string())?;
    if previous > 0 {
        stream
            .purge()
            .sequence(previous + 1)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

/// Loads the latest snapshot into the core, if there is one; returns its stream sequence.
async fn load_snapshot(core: &Core, snaps: &stream::Stream, base: &str) -> Result<u64, String> {
    let head = match snaps
        .get_last_raw_message_by_subject(&format!("{base}-snap.head"))
        .await
    {
        Ok(m) => m,
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => return Ok(0),
        Err(e) => return Err(format!("cannot read the latest snapshot: {e}")),
    };
    let head: SnapshotHead = serde_json::from_slice(&head.payload)
        .map_err(|e| format!("the latest snapshot's head is unreadable: {e}"))?;
    for n in 0..head.chunks {
        let chunk = snaps
            .get_raw_message(head.first_chunk + n)
            .await
            .map_err(|e| format!("snapshot chunk {n}: {e}"))?;
        unframe(&chunk.payload, &mut |r| core.apply(&r))
            .map_err(|e| format!("snapshot chunk {n}: {e}"))?;
    }
    Ok(head.seq)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_pauses_double_from_the_first_to_the_longest() {
        let cases = [(0, 0), (1, 100), (2, 200), (3, 400), (6, 3_200), (7, 5_000)];
        for (failures, ms) in cases {
            assert_eq!(backoff(failures), Duration::from_millis(ms), "{failures}");
        }
        assert_eq!(backoff(usize::MAX), RECONNECT_MAX);
    }
}
