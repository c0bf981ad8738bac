//! The chat core: accounts, sessions, presence, rooms, timelines and fan-out.
//!
//! No socket or disk I/O happens here. State changes become [`Record`]s that go to the
//! [`Store`]; frames go to connections' outbound queues. REST handlers and slash commands
//! both call the methods of [`Core`], so nothing about rooms or users is decided twice.
//!
//! # Acknowledgement
//! A change is applied in memory under its locks and its record handed to the store in the
//! same critical section, so the journal's order is the memory's order. Whatever tells a
//! client about the change (a REST answer, a broadcast `entry`) runs only once the store has
//! acknowledged the record: broadcasts run in the store's callback, REST answers await it.
//!
//! # Layout
//! `Core` and the one `apply` are here; its other methods live by concept in `accounts`
//! (registration, login, sessions), `presence`, `membership` (rooms, joins, leaves),
//! `timeline` (messages, sync, history), `connections` (WebSocket registration, heartbeat)
//! and `lifecycle` (epoch, sweeps, snapshots). Data structures: `rooms` (the sharded table),
//! `ring` (history), `users`; helpers: `commands`, `filter`, `password`, `ratelimit`.
//!
//! # Lock order
//! The store's gate, then sessions, then a user, then a room, then an outbound queue; no
//! lock is held across an `.await`.

pub mod commands;
pub mod error;
pub mod filter;
pub mod password;
pub mod ratelimit;
pub mod record;
pub mod ring;
pub mod rooms;
pub mod users;

mod accounts;
mod connections;
mod lifecycle;
mod membership;
mod presence;
mod timeline;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tungstenite::Bytes;

pub use accounts::valid_username;
pub use error::ChatError;
pub use record::Record;
pub use users::{Conn, Session, User};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::{Entry, EntryFrame, EntryKind, ServerFrame};
use crate::store::Store;
use crate::ws::frame;
use crate::ws::outbound::Pushed;
use filter::Filter;
use password::HashPool;
use rooms::{Room, RoomState, RoomTable};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// SHA-256 of a token: the only form in which the server keeps it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
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
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Who receives a new entry once it is acknowledged.
struct Fanout {
    subscribers: Arc<Vec<Arc<Conn>>>,
    /// The sender's connection and nonce: that connection's copy carries the nonce.
    ack: Option<(u64, Value)>,
    /// A frame some connections get just before the entry: a joiner's `history`.
    preface: Option<(Vec<Arc<Conn>>, Bytes)>,
}

/// The last start recorded in the journal, and whether a clean stop followed it.
#[derive(Debug, Clone)]
struct LastRun {
    boot_id: String,
    fsync: String,
    stopped: bool,
}

/// Waits for the store to acknowledge a record.
pub struct Commit(oneshot::Receiver<()>);

impl Commit {
    pub async fn wait(self) -> Result<(), ChatError> {
        self.0.await.map_err(|_| ChatError::Unavailable)
    }
}

/// Who an authenticated request or connection belongs to.
#[derive(Clone)]
pub struct Auth {
    pub user: Arc<User>,
    pub session: [u8; 32],
}

/// A validated message or command from a `send` frame.
pub enum Posted<'a> {
    Message(String),
    Command(&'a str),
}

pub struct Core {
    pub cfg: Arc<Config>,
    pub metrics: Arc<Metrics>,
    users: RwLock<HashMap<String, Arc<User>>>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    rooms: RoomTable,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Failed-login times per lowercase username, for throttling.
    throttle: Mutex<HashMap<String, Vec<u64>>>,
    hasher: HashPool,
    filter: Filter,
    store: Store,
    epoch: RwLock<String>,
    /// The previous run on this data directory, as recovery found it.
    last_run: Mutex<Option<LastRun>>,
    next_conn: AtomicU64,
    ping: Bytes,
}

impl Core {
    pub fn new(cfg: Arc<Config>, metrics: Arc<Metrics>, store: Store, filter: Filter) -> Core {
        Core {
            hasher: HashPool::new(cfg.hash_threads, cfg.max_pending_hashes),
            cfg,
            metrics,
            users: RwLock::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            rooms: RoomTable::default(),
            conns: Mutex::new(HashMap::new()),
            throttle: Mutex::new(HashMap::new()),
            filter,
            store,
            epoch: RwLock::new(String::new()),
            last_run: Mutex::new(None),
            next_conn: AtomicU64::new(1),
            ping: frame::ping(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn user(&self, key: &str) -> Option<Arc<User>> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.get(key).cloned()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn room(&self, id: &str) -> Result<Arc<Room>, ChatError> {
        self.rooms.get(id).ok_or(ChatError::RoomNotFound)
    }

    /// Hands `rec` to the store; `then` runs once it is acknowledged, and so does the
    /// returned [`Commit`].
    fn commit(&self, rec: &Record, then: impl FnOnce() + Send + 'static) -> Commit {
        let (tx, rx) = oneshot::channel();
        self.store.append(
            rec,
            Some(Box::new(move || {
                then();
                let _ = tx.send(());
            })),
        );
        Commit(rx)
    }

    // ----- the one function that applies records -----

    /// Applies a record to memory. Recovery replays the journal through here; the live path
    /// calls the same per-record helpers under the locks it already holds.
    pub fn apply(&self, rec: &Record) {
        match rec {
            Record::Epoch { epoch } => {
                *self.epoch.write().unwrap_or_else(|e| e.into_inner()) = epoch.clone();
            }
            Record::Started { boot_id, fsync } => {
                *self.last_run.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastRun {
                    boot_id: boot_id.clone(),
                    fsync: fsync.clone(),
                    stopped: false,
                });
            }
            Record::Stopped => {
                if let Some(run) = self
                    .last_run
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                {
                    run.stopped = true;
                }
            }
            Record::UserRegistered { username, hash, .. } => {
                let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
                self.apply_user(&mut users, username, hash.clone());
            }
            Record::SessionStarted {
                token_hash,
                username,
                created,
            } => {
                if let (Some(user), Some(hash)) =
                    (self.user(&username.to_ascii_lowercase()), unhex(token_hash))
                {
                    let mut sessions = self.sessions();
                    user.lock().sessions.push(hash);
                    let session = Session {
                        user,
                        created: *created,
                    };
                    sessions.insert(hash, session);
                }
            }
            Record::SessionEnded { token_hash } => {
                if let Some(hash) = unhex(token_hash) {
                    if let Some(s) = self.sessions().remove(&hash) {
                        s.user.lock().sessions.retain(|h| *h != hash);
                    }
                }
            }
            Record::RoomCreated {
                id,
                name,
                owner,
                capacity,
                ..
            } => {
                self.rooms.insert(self.new_room(id, name, owner, *capacity));
            }
            Record::RoomSnapshot {
                id,
                name,
                owner,
                capacity,
                last_seq,
                members,
                entries,
            } => {
                let room = self.new_room(id, name, owner, *capacity);
                self.rooms.insert(room.clone());
                let mut rs = room.lock();
                for e in entries {
                    rs.ring.push(Arc::new(e.clone()));
                }
                rs.last_seq = *last_seq;
                room.set_committed(*last_seq);
                for name in members {
                    if let Some(user) = self.user(&name.to_ascii_lowercase()) {
                        user.lock().rooms.push(id.clone());
                        rs.members.insert(user.key.clone(), user);
                    }
                }
            }
            Record::Entry(entry) => {
                let Some(room) = self.rooms.get(&entry.room) else {
                    return;
                };
                let user = self.user(&entry.from.to_ascii_lowercase());
                let mut us = user.as_ref().map(|u| u.lock());
                let mut rs = room.lock();
                Self::apply_entry(&room, &mut rs, user.as_ref().zip(us.as_deref_mut()), entry);
                room.set_committed(entry.seq);
            }
        }
    }

    fn new_room(&self, id: &str, name: &str, owner: &str, capacity: u32) -> Arc<Room> {
        let (id, name, owner) = (id.to_string(), name.to_string(), owner.to_string());
        Arc::new(Room::new(id, name, owner, capacity, self.cfg.history))
    }

    fn apply_user(&self, users: &mut HashMap<String, Arc<User>>, name: &str, hash: String) {
        let user = User::new(name, hash, self.cfg.rate_burst);
        users.insert(user.key.clone(), Arc::new(user));
    }

    /// Adds an entry to a room's timeline; `join` and `leave` also change membership.
    fn apply_entry(
        room: &Room,
        rs: &mut RoomState,
        user: Option<(&Arc<User>, &mut users::UserState)>,
        entry: &Entry,
    ) {
        rs.last_seq = rs.last_seq.max(entry.seq);
        rs.ring.push(Arc::new(entry.clone()));
        let Some((user, us)) = user else { return };
        match entry.kind {
            EntryKind::Join => {
                rs.members.insert(user.key.clone(), user.clone());
                if !us.rooms.contains(&room.id) {
                    us.rooms.push(room.id.clone());
                }
                rs.subscribe(&us.conns);
            }
            EntryKind::Leave => {
                rs.members.remove(&user.key);
                us.rooms.retain(|r| *r != room.id);
                let ids: Vec<u64> = us.conns.iter().map(|c| c.id).collect();
                rs.unsubscribe(&ids);
            }
            EntryKind::Message => {}
        }
    }
}

/// Serializes a server frame into a WebSocket text frame.
pub fn encode(f: &ServerFrame<'_>) -> Bytes {
    frame::text(&serde_json::to_vec(f).unwrap_or_default())
}

fn encode_entry(entry: &Entry, nonce: Option<&Value>) -> Bytes {
    let f = EntryFrame {
        kind_tag: "entry",
        entry,
        nonce,
    };
    frame::text(&serde_json::to_vec(&f).unwrap_or_default())
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
