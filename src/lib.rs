//! # Parley
//!
//! A real-time chat server for one small machine: accounts, rooms, WebSocket messaging and a
//! durable journal, in one binary on bare tokio.
//!
//! # Layout
//! Four layers, each using only those below it: **socket, session, core, store**; and the
//! core hands frames to outbound queues that the connections write.
//! - **Socket** (`server`, [`tls`]): the accept loop, connection caps, periodic work and
//!   shutdown; `server::conn`, the keep-alive loop of one HTTP connection (timeouts,
//!   pipelining, the point where it upgrades); TLS, `--tls-cert` and `--tls-key` reloaded on
//!   `SIGHUP`. Its `Service` answers requests with `api` and hands upgrades to `ws`.
//! - **Session** (`api`, `ws`): what one request or connection means. `api`: REST handlers,
//!   thin calls into the core, and where a core error becomes an HTTP answer. `ws`: the
//!   upgrade handshake, the per-connection session (reading client frames, writing the
//!   connection's outbound queue) and client frame parsing.
//! - **Core** ([`chat`]): users, sessions, presence, rooms (sharded), history rings,
//!   commands, filtering and rate limits, the outbound queues and server frame encoding
//!   (`chat::outbound`, `chat::wire`). No socket or disk I/O.
//! - **Store** ([`store`]): records and kept entries, and where records go: memory, the
//!   journal in the data directory, or cluster mode's shared log (`store::Log`).
//!
//! Beside the layers:
//! - `http`, under socket and session: the HTTP/1 vocabulary the socket layer hands the
//!   session layer (the request and its parser with the contract's limits, the response, the
//!   plain or TLS byte stream a WebSocket session takes over). It imports nothing of the crate.
//! - [`cluster`], beside the socket layer, the other door to the outside (`--cluster-nats`):
//!   the NATS JetStream stream the nodes share. It publishes the core's proposals and records,
//!   applies the stream in order through the core, writes and loads snapshots, and carries
//!   presence and typing between nodes. The core sees it only as its `Replicator`, the store
//!   as a `store::Log`; the binary starts it with [`join_cluster`] before it listens.
//! - [`config`], under every layer but the store: every flag, limit and default, and `--help`.
//!   It takes the journal's `FsyncPolicy` from the store, which knows nothing of it.
//! - [`protocol`] (the JSON shapes of `docs/PROTOCOL.md`) and [`metrics`] (counters for
//!   `/metrics`), at the bottom: every layer may use them, and they use nothing. `protocol`
//!   re-exports the `parley-protocol` crate (`protocol/` in the workspace), which
//!   `parley-cli` and `parley-load` share, plus the request bodies only the server decodes.
//!   The hot frames (`entry`, `history`, `presence`) are written by hand in `store::kept`,
//!   `chat::history` and `chat::outbound`; `protocol`'s tests decode them with the shared
//!   types.
//! - [`logging`] (where `tracing` events go) is for the binary.
//! - `sim` (hidden), beside the socket layer like a door: the deterministic simulation
//!   behind `tests/simulation.rs`. Seeded clients drive the core through `Core::run` on a
//!   simulated journal (`store::sim`) with crashes, torn records, failed writes and
//!   compactions, and invariants are checked after every step (`docs/TESTING.md`).
//!
//! Nothing imports upward: the store imports no core, session or socket; the core no
//! session, socket, `http` or `cluster`; the session layer no socket; `http` nothing. Checked by
//! `grep -rnE 'crate::(api|ws|http|server|cluster|tls)' src/chat src/store` (empty) and
//! `grep -rnE 'crate::(server|tls|cluster)' src/api src/ws` (empty).
//!
//! `server`, `http`, `api` and `ws` are private to the crate; the others are public for the
//! binary, the tests and the benches.
//!
//! Threads: tokio's workers run the accept loop, one task per connection (HTTP, then its
//! WebSocket session) and the timers; they never block (no lock across an `.await`, and a
//! full journal refuses a change rather than waits). PBKDF2 runs on the `parley-hash-N`
//! threads of [`chat::password`], never on a worker. With a data directory, the journal
//! writes on `parley-journal-writer`, runs acknowledgements and broadcasts on
//! `parley-journal-deliver`, fsyncs on its own thread under `--fsync interval`, and writes
//! snapshots on `parley-journal-snapshot`, which reads the live state itself: nothing on a
//! request path waits for a snapshot.
//!
//! [`start`] builds everything from a [`Config`]; [`bind`] makes a listener with a deep accept
//! backlog; [`run`] serves an already-bound listener, so tests bind `127.0.0.1:0`.

pub(crate) mod api;
pub mod chat;
pub mod cluster;
pub mod config;
pub(crate) mod http;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub(crate) mod server;
#[doc(hidden)]
pub mod sim;
pub mod store;
pub mod tls;
pub(crate) mod ws;

/// Entry points for the fuzz targets in `fuzz/` (not part of the API): each feeds arbitrary
/// bytes to a parser of untrusted input and ignores the result. A panic, including a failed
/// consistency check here, is a bug.
#[doc(hidden)]
pub mod fuzzing {
    use crate::http::parse::{self as http, Limits, Parser};
    use crate::store::{snapshot, KeptEntry, Record};
    use crate::ws::frame;

    /// The HTTP request parser, with the default limits and with tiny ones. A request it
    /// returns must parse the same from exactly its own bytes, and not from fewer, and the
    /// same when its bytes arrive in two reads as in one.
    pub fn http_request(data: &[u8]) {
        let tiny = Limits {
            max_request_line: 32,
            max_header_bytes: 64,
            max_headers: 3,
            max_body: 16,
        };
        for limits in [Limits::default(), tiny] {
            let split = data
                .first()
                .map_or(0, |b| usize::from(*b) % (data.len() + 1));
            let mut parser = Parser::default();
            if let Ok(None) = parser.parse(&data[..split], &limits) {
                // A parser that resumes may find a malformed line later than one that sees
                // it whole (it waits for the line's end, which the limits bound), never
                // differently.
                match (parser.parse(data, &limits), http::parse(data, &limits)) {
                    (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b, "two reads, split at {split}"),
                    (Ok(None), Ok(None)) | (Ok(None), Err(_)) | (Err(_), Err(_)) => {}
                    (two, one) => panic!("two reads (split at {split}): {two:?}; one: {one:?}"),
                }
            }
            if let Ok(Some((req, used))) = http::parse(data, &limits) {
                assert!(used <= data.len());
                let again = http::parse(&data[..used], &limits);
                assert_eq!(
                    again,
                    Ok(Some((req, used))),
                    "request differs on its own bytes"
                );
                for cut in [used - 1, used / 2] {
                    assert_eq!(
                        http::parse(&data[..cut], &limits),
                        Ok(None),
                        "prefix of {cut}"
                    );
                }
            }
        }
    }

    /// The WebSocket client frame parser, at the server's message cap and at the control
    /// frame size. A frame it returns must parse the same from exactly its own bytes.
    pub fn ws_frame(data: &[u8]) {
        for max in [crate::config::MAX_WS_MESSAGE, 125] {
            if let Ok(Some((f, used))) = frame::parse(data, max) {
                assert!(used <= data.len());
                assert_eq!(frame::parse(&data[..used], max), Ok(Some((f, used))));
                assert_eq!(frame::parse(&data[..used - 1], max), Ok(None));
            }
        }
    }

    /// `data` as a journal file's records (each payload decoded as recovery does), and as one
    /// payload itself: a snapshot record, a journal record's JSON and a kept entry.
    pub fn journal_records(data: &[u8]) {
        crate::store::journal::fuzz_records(data, &mut payload);
        payload(data);
    }

    fn payload(p: &[u8]) {
        let _ = snapshot::decode(p, &mut |rec| {
            // What a snapshot holds, written again, reads back the same.
            let again = match &rec {
                Record::KeptEntries { room, entries } => snapshot::encode_kept(room, entries),
                _ => snapshot::encode(&rec),
            };
            let mut back = Vec::new();
            let read = snapshot::decode(&again, &mut |r| back.push(r));
            assert_eq!((read, back), (Ok(()), vec![rec.clone()]));
            if let Record::KeptEntries { entries, .. } = &rec {
                entries.iter().for_each(kept);
            }
        });
        if let Ok(rec) = serde_json::from_slice::<Record>(p) {
            let again = snapshot::encode(&rec);
            assert_eq!(serde_json::from_slice::<Record>(&again).ok(), Some(rec));
        }
        if let Some(e) = KeptEntry::from_bytes(p) {
            kept(&e);
        }
    }

    /// A kept entry that decoded is whole: its journal record and its JSON are readable.
    fn kept(e: &KeptEntry) {
        let _ = (e.ts(), e.kind(), e.from(), e.nonce(), e.text());
        let _ = e.to_entry("room", 1, true);
        let mut out = Vec::new();
        e.write_record(&mut out, "room", 1);
        let rec = serde_json::from_slice::<Record>(&out);
        assert!(
            rec.is_ok(),
            "unreadable record {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

pub use config::Config;

use chat::filter::Filter;
use chat::Core;
use metrics::Metrics;
use store::Store;

/// Builds the chat core for `cfg`: the filter, the store and the recovered state.
pub fn start(cfg: Config) -> Result<Arc<Core>, String> {
    let filter = match &cfg.blocked_words {
        Some(path) => Filter::from_file(path)
            .map_err(|e| format!("cannot read --blocked-words {}: {e}", path.display()))?,
        None => Filter::default(),
    };
    let cluster = !cfg.cluster_nats.is_empty();
    let store = if cluster {
        Store::cluster()
    } else if cfg.ephemeral {
        Store::memory()
    } else {
        Store::journal()
    };
    let cfg = Arc::new(cfg);
    let core = Arc::new(Core::new(
        cfg.clone(),
        Arc::new(Metrics::default()),
        store,
        filter,
    ));
    if cluster {
        // The state is the stream's: `join_cluster` reads it.
        return Ok(core);
    }
    let boot = boot_id();
    if !cfg.ephemeral {
        let began = Instant::now();
        let jcfg = store::JournalConfig {
            dir: cfg.data_dir.clone(),
            fsync: cfg.fsync,
            compact_bytes: cfg.compact_bytes,
            max_batch_bytes: store::journal::DEFAULT_MAX_BATCH_BYTES,
        };
        let found = core.store().open(jcfg, &mut |rec| core.apply(&rec), &|| {
            core.loss_possible(&boot)
        })?;
        if let Some(note) = &found.truncated_tail {
            tracing::warn!("{note}");
        }
        if let Some(note) = &found.lost_tail {
            tracing::warn!("{note}; starting a new epoch");
        }
        let (users, rooms, entries) = core.counts();
        tracing::info!(
            records = found.records,
            bytes = found.bytes,
            data_dir = %cfg.data_dir.display(),
            ms = began.elapsed().as_millis() as u64,
            users,
            rooms,
            entries,
            "recovered {} records ({} bytes) from {} in {} ms: {users} users, {rooms} rooms, {entries} kept entries",
            found.records,
            found.bytes,
            cfg.data_dir.display(),
            began.elapsed().as_millis()
        );
    }
    core.begin_run(&boot);
    core.announce_admin_setup();
    Ok(core)
}

/// Cluster mode: joins the stream the nodes share and catches up with it (see [`cluster`]);
/// `port` names the node when `--node-name` does not.
pub async fn join_cluster(core: &Arc<Core>, port: u16) -> Result<Arc<cluster::Cluster>, String> {
    let node = core.cfg.node_name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "parley".into());
        format!("{host}:{port}")
    });
    let cluster = cluster::join(core, &core.cfg, &node).await?;
    // Now that the node has the cluster's accounts.
    core.announce_admin_setup();
    Ok(cluster)
}

/// This boot of the machine, to tell a process crash (acknowledged data is with the OS) from a
/// power loss after which a journal may miss acknowledged records.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Binds a listener on `addr` (the first address it resolves to) with a listen backlog of
/// [`LISTEN_BACKLOG`], so a burst of connects waits in the kernel's queue instead of having its
/// SYNs dropped and retried a second later; the kernel caps it at `net.core.somaxconn`.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        match bind_one(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    }))
}

/// Default is 4096: tokio's `TcpListener::bind` uses 128, which a few hundred clients
/// reconnecting at once (after a restart, say) overflow.
pub const LISTEN_BACKLOG: u32 = 4096;

fn bind_one(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `listener` with `core` until `shutdown` completes.
pub async fn run(listener: TcpListener, core: Arc<Core>, shutdown: impl Future<Output = ()>) {
    server::serve(listener, core, None, shutdown).await
}

/// [`run`], over TLS when `tls` is given (see [`tls::Tls::from_config`]).
pub async fn run_with_tls(
    listener: TcpListener,
    core: Arc<Core>,
    tls: Option<Arc<tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    server::serve(listener, core, tls, shutdown).await
}
