//! The chat core: accounts, sessions, presence, rooms, timelines and fan-out.
//!
//! No socket or disk I/O happens here. State changes become [`Record`]s that go to the
//! [`Store`]; frames go to connections' outbound queues. Every door (REST routes, slash
//! commands, WebSocket frames) parses its input into a [`Command`] and submits it
//! (`command`), so nothing about rooms or users is decided in a door or decided twice.
//!
//! # Deciding and applying
//! [`Core::run`] decides a command synchronously: from the state, the caller and a [`Ctx`]
//! (the clock, the random seed, whether it comes from the cluster's log), never from a
//! global clock, a thread-local or a fresh random number. What it changes is applied through
//! the per-record helpers of `apply`, the code journal replay and cluster replicas run for
//! the same records.
//!
//! # Acknowledgement
//! A change first takes a place in the store (refused with `unavailable` when the journal
//! failed or is full, before anything changed), is applied in memory under its locks, and
//! its record is handed to the store in the same critical section, so the journal's order is
//! the memory's order. Whatever tells a client about the change (a REST answer, a broadcast
//! `entry`) runs only once the store has acknowledged the record: broadcasts are published in
//! the store's callback (`timeline`), REST answers await it. If the store fails before
//! acknowledging, the callback undoes the change in memory instead, so memory never holds a
//! user, session, room or membership that the journal lacks.
//!
//! Why apply before the record is durable, and undo on failure, rather than apply on the
//! acknowledgement: the next command must be decided against the change (the room's next
//! seq, a name now taken, a member now banned) while the journal still writes it. Group
//! commit keeps many records in flight, one write and one fsync for a whole batch; deciding
//! against durable state only would either wait a disk round trip per change in a room or
//! hand out one seq twice. The journal fails for good on a write error, so every change after
//! a failed one fails too, and undoing them puts memory back where the journal stopped.
//!
//! # Threads
//! Request and connection tasks run on the tokio workers and never block: no lock is held
//! across an `.await`, and a full journal refuses rather than waits. Password hashing runs on
//! its own small pool (`password`). With a journal, acknowledgements and broadcasts run on
//! the journal's delivery thread, writes on its writer thread, snapshots on its snapshot
//! thread; nothing on a request path waits for a snapshot.
//!
//! # Layout
//! `Core` is here, `Command` and `run` in `command`, the one `apply` in `apply`, and the
//! rules of a room's entries as pure functions (messages, edits, deletions, joins, leaves,
//! governance) in `decide`. Pieces of
//! the state that own their table and apply their own records: `sessions`, `blocks`,
//! `invites` (invite codes), `owners` (rooms per owner), `room_table` (the sharded rooms,
//! each a `rooms::RoomState` with its `ring` of history). The commands and views live by
//! concept: `accounts` (registration, login, sessions), `admin` (admins and their setup
//! code, disabled accounts, password changes), `presence`, `membership` (rooms, joins,
//! leaves), `moderation`, `timeline` (messages and their fan-out), `history` (sync, pages),
//! `conversation` (edits, deletions, read markers, typing), `dm`, `connections` (WebSocket
//! registration, heartbeat), `budgets` and `lifecycle` (epoch, sweeps, snapshots). Helpers:
//! `commands` (slash commands: a door), `filter`, `password`, `ratelimit`, `throttle`,
//! `text`, `policy` (who may do what).
//!
//! # Lock order
//! The store's gate, then the sessions table, then a user, then a room, then an outbound
//! queue; the DM pair index before a user; the blocks, invite-code and owner tables last
//! (nothing is locked while one is held). No lock is held across an `.await`. Each lock's
//! place is also written where the lock is defined (`sessions`, `blocks`, `owners`,
//! `rooms`, `room_table`).

pub mod command;
pub(crate) mod commands;
pub mod error;
pub(crate) mod filter;
pub(crate) mod inspect;
pub(crate) mod outbound;
pub mod password;
pub(crate) mod ratelimit;
pub(crate) mod ring;
pub(crate) mod room_table;
pub(crate) mod rooms;
pub(crate) mod text;
pub(crate) mod throttle;
pub(crate) mod users;
pub(crate) mod wire;

mod accounts;
mod admin;
mod apply;
mod blocks;
mod budgets;
mod connections;
mod conversation;
mod decide;
mod dm;
mod history;
mod invites;
mod lifecycle;
mod membership;
pub mod moderation;
mod nodes;
mod owners;
pub(crate) mod policy;
mod presence;
pub mod replica;
mod sessions;
mod snapshot;
mod timeline;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tungstenite::Bytes;

pub use crate::store::Record;
pub use accounts::valid_username;
pub use command::{Caller, Command, Ctx, Reply};
pub use error::ChatError;
pub use history::HistoryPage;
pub use membership::NewRoomSpec;
pub use users::{Conn, Session, User};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::ServerFrame;
use crate::store::{Slot, Store};
use filter::Filter;
use outbound::Pushed;
use password::HashPool;
use rooms::{Room, RoomTable};
use wire as frame;

/// Milliseconds since the Unix epoch, by the wall clock. A command is decided with the time
/// of its [`Ctx`] instead, so that every replica decides it the same.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// SHA-256 of a token: the only form in which the server keeps it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A random identifier of `len` characters from a URL-safe alphabet.
pub fn random_id(len: usize) -> String {
    random_id_from(&mut rand::rng(), len)
}

/// [`random_id`] drawn from `rng`.
fn random_id_from(rng: &mut impl rand::Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The last start recorded in the journal, and whether a clean stop followed it.
#[derive(Debug, Clone)]
struct LastRun {
    boot_id: String,
    fsync: String,
    stopped: bool,
}

/// Waits for the store to acknowledge the records of a change.
pub struct Commit(Vec<oneshot::Receiver<bool>>);

impl Commit {
    /// A change that needed no waiting (nothing is stored).
    pub(super) fn done() -> Commit {
        Commit(Vec::new())
    }

    pub(super) fn one(rx: oneshot::Receiver<bool>) -> Commit {
        Commit(vec![rx])
    }

    /// Completes once both this and `then` do.
    pub(super) fn and(mut self, then: Commit) -> Commit {
        self.0.extend(then.0);
        self
    }

    /// `Err(Unavailable)` when the store failed before acknowledging a record.
    pub async fn wait(self) -> Result<(), ChatError> {
        for rx in self.0 {
            if rx.await != Ok(true) {
                return Err(ChatError::Unavailable);
            }
        }
        Ok(())
    }
}

/// Who an authenticated request or connection belongs to.
#[derive(Clone)]
pub struct Auth {
    pub user: Arc<User>,
    pub session: [u8; 32],
}

/// A validated message, action (`/me TEXT`) or command from a `send` frame.
pub enum Posted<'a> {
    Message(String),
    Action(String),
    Command(&'a str),
}

type Owned = Arc<owners::Owners>;

pub struct Core {
    pub cfg: Arc<Config>,
    pub metrics: Arc<Metrics>,
    // The tables are `Arc`s so that an acknowledgement callback can undo a change the store
    // failed to keep, and a snapshot can read them on the snapshot thread.
    users: Arc<users::UserTable>,
    sessions: Arc<sessions::Sessions>,
    rooms: Arc<RoomTable>,
    owned: Owned,
    dms: dm::DmIndex,
    blocks: Arc<blocks::Blocks>,
    /// Rooms with read markers not yet written to the store (`Member::read_dirty`).
    read_dirty: Mutex<std::collections::HashSet<String>>,
    /// Users who went offline since the last `flush_last_seen`, with when (`Record::LastSeen`).
    seen_dirty: Mutex<HashMap<String, u64>>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Failed logins and registrations by account and client address.
    throttle: Mutex<throttle::Throttle>,
    invites: invites::Invites,
    /// The admin setup code of this start (`admin`), in memory only.
    admin_setup: Option<String>,
    hasher: HashPool,
    filter: Filter,
    store: Store,
    epoch: RwLock<String>,
    /// The previous run on this data directory, as recovery found it.
    last_run: Mutex<Option<LastRun>>,
    next_conn: AtomicU64,
    ping: Bytes,
    /// Cluster mode's log, once the node joined it (`replica`).
    replica: std::sync::OnceLock<Arc<dyn replica::Replicator>>,
    /// This process among the cluster's proposers, and its proposals waiting for an outcome.
    origin: String,
    pending: Arc<replica::Pending>,
    next_proposal: AtomicU64,
    /// Presence reports of the other nodes, by origin.
    nodes: Mutex<HashMap<String, nodes::Report>>,
}

impl Core {
    pub fn new(cfg: Arc<Config>, metrics: Arc<Metrics>, store: Store, filter: Filter) -> Core {
        Core {
            hasher: HashPool::new(cfg.hash_threads, cfg.max_pending_hashes),
            admin_setup: admin::new_setup_code(&cfg),
            cfg,
            metrics,
            users: Arc::default(),
            sessions: Arc::default(),
            rooms: Arc::default(),
            owned: Arc::default(),
            dms: dm::DmIndex::default(),
            blocks: Arc::default(),
            read_dirty: Mutex::default(),
            seen_dirty: Mutex::default(),
            conns: Mutex::new(HashMap::new()),
            throttle: Mutex::new(throttle::Throttle::new()),
            invites: invites::Invites::default(),
            filter,
            store,
            epoch: RwLock::new(String::new()),
            last_run: Mutex::new(None),
            next_conn: AtomicU64::new(1),
            ping: frame::ping(),
            replica: std::sync::OnceLock::new(),
            origin: random_id(16),
            pending: Arc::default(),
            next_proposal: AtomicU64::new(1),
            nodes: Mutex::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn user(&self, key: &str) -> Option<Arc<User>> {
        self.users.get(key)
    }

    /// Every user, copied out of the table so none of its lock is held while they are read.
    fn all_users(&self) -> Vec<Arc<User>> {
        self.users.all()
    }

    fn room(&self, id: &str) -> Result<Arc<Room>, ChatError> {
        self.rooms.get(id).ok_or(ChatError::RoomNotFound)
    }

    /// Takes a place in the store for one record, before changing anything.
    fn reserve(&self) -> Result<Slot, ChatError> {
        self.store.reserve().map_err(|_| ChatError::Unavailable)
    }

    /// [`Core::reserve`] for a record of a command decided in `cx`. A command from the
    /// cluster's log is kept already: it takes no place.
    fn place(&self, cx: &Ctx) -> Result<Slot, ChatError> {
        if cx.is_from_log() {
            return Ok(Slot::Memory);
        }
        self.reserve()
    }

    /// Hands `rec` to the store in `slot`; the returned [`Commit`] completes once it is
    /// acknowledged. `on_fail` runs instead if the store never will: it undoes the change.
    fn commit(&self, slot: Slot, rec: &Record, on_fail: impl FnOnce() + Send + 'static) -> Commit {
        if let Slot::Memory = slot {
            return Commit::done();
        }
        self.commit_then(slot, rec, move |written| {
            if !written {
                on_fail();
            }
        })
    }

    /// Like [`Core::commit`], but `done` runs with whether the store kept the record (on the
    /// journal's delivery thread). In memory it runs at once, on the caller's thread and
    /// under its locks.
    fn commit_then(
        &self,
        slot: Slot,
        rec: &Record,
        done: impl FnOnce(bool) + Send + 'static,
    ) -> Commit {
        if let Slot::Memory = slot {
            done(true);
            return Commit::done();
        }
        let (tx, rx) = oneshot::channel();
        slot.append(
            crate::store::snapshot::encode(rec),
            Box::new(move |written| {
                done(written);
                let _ = tx.send(written);
            }),
        );
        Commit::one(rx)
    }
}

/// Serializes a server frame into a WebSocket text frame.
pub fn encode(f: &ServerFrame<'_>) -> Bytes {
    frame::text(&serde_json::to_vec(f).unwrap_or_default())
}

/// Pushes one frame, counting a slow-consumer close; returns frames queued (0 or 1).
fn deliver_to(metrics: &Metrics, conn: &Conn, frame: &Bytes) -> u64 {
    match conn.out.push(frame) {
        Pushed::Queued => 1,
        Pushed::Overflow => {
            Metrics::add(&metrics.slow_consumer_closes_total, 1);
            0
        }
        Pushed::Closed => 0,
    }
}
