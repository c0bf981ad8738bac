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

pub mod commands;
pub mod error;
pub mod filter;
pub mod password;
pub mod ratelimit;
pub mod record;
pub mod ring;
pub mod rooms;
pub mod users;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::{Rng, RngCore};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tungstenite::Bytes;

pub use error::ChatError;
pub use record::Record;
pub use users::{Conn, Session, User};

use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::protocol::{
    Entry, EntryFrame, EntryKind, MemberView, RoomDetail, RoomView, ServerFrame, UserView,
};
use crate::store::Store;
use crate::ws::frame;
use crate::ws::outbound::{Outbound, Pushed};
use filter::Filter;
use password::HashPool;
use ratelimit::TokenBucket;
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

/// Usernames: 3-32 characters of `[A-Za-z0-9_-]`.
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Most failed-login records kept; beyond it, entries for unknown names are dropped first.
const THROTTLE_KEYS: usize = 100_000;

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

    pub fn epoch(&self) -> String {
        self.epoch.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Sets a fresh epoch if recovery found none, or if acknowledged entries may have been
    /// lost, and records this start. Entries can be lost only when the previous run did not
    /// stop cleanly, the machine rebooted since (a process crash leaves every acknowledged
    /// record with the OS; a power loss does not), and that run did not fsync every batch.
    /// Their seqs would then be handed out again, so clients must forget the ones they hold.
    pub fn begin_run(&self, boot_id: &str) {
        let lost = self
            .last_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|r| !r.stopped && r.boot_id != boot_id && r.fsync != "always");
        let started = Record::Started {
            boot_id: boot_id.to_string(),
            fsync: self.cfg.fsync.to_string(),
        };
        {
            let _gate = self.store.gate();
            self.apply(&started);
            self.store.append(&started, None);
        }
        if self.epoch().is_empty() || lost {
            let rec = Record::Epoch {
                epoch: random_id(16),
            };
            let _gate = self.store.gate();
            self.apply(&rec);
            self.store.append(&rec, None);
        }
    }

    fn user(&self, key: &str) -> Option<Arc<User>> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.get(key).cloned()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
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

    // ----- accounts and sessions -----

    pub async fn register(&self, username: &str, password: &str) -> Result<String, ChatError> {
        if !valid_username(username) {
            return Err(ChatError::InvalidUsername);
        }
        self.check_password(password)?;
        let key = username.to_ascii_lowercase();
        if self.user(&key).is_some() {
            return Err(ChatError::UsernameTaken);
        }
        let (pw, iterations) = (password.as_bytes().to_vec(), self.cfg.pbkdf2_iterations);
        let hash = self
            .hasher
            .run(move || password::hash_password(&pw, iterations))
            .await?;
        let rec = Record::UserRegistered {
            username: username.to_string(),
            hash: hash.clone(),
            ts: now_ms(),
        };
        let commit = {
            let _gate = self.store.gate();
            let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
            if users.contains_key(&key) {
                return Err(ChatError::UsernameTaken);
            }
            self.apply_user(&mut users, username, hash);
            self.commit(&rec, || {})
        };
        commit.wait().await?;
        Metrics::add(&self.metrics.registrations_total, 1);
        Ok(username.to_string())
    }

    fn check_password(&self, password: &str) -> Result<(), ChatError> {
        let min = self.cfg.min_password_length;
        if password.len() < min || password.len() > config::MAX_PASSWORD_BYTES {
            return Err(ChatError::InvalidPassword(format!(
                "passwords are {min} to {} bytes",
                config::MAX_PASSWORD_BYTES
            )));
        }
        Ok(())
    }

    /// The stored hash of a user, for tests and tools that check how passwords are kept.
    pub fn stored_hash(&self, username: &str) -> Option<String> {
        self.user(&username.to_ascii_lowercase())
            .map(|u| u.lock().hash.clone())
    }

    /// Checks the throttle for `key`, pruning old failures.
    fn throttled(&self, key: &str, now: u64) -> Result<(), ChatError> {
        let window = config::LOGIN_WINDOW.as_millis() as u64;
        let mut throttle = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fails) = throttle.get_mut(key) {
            fails.retain(|&t| now.saturating_sub(t) < window);
            if fails.len() >= config::LOGIN_FAILURES_ALLOWED {
                let oldest = fails.iter().min().copied().unwrap_or(now);
                let retry_after_ms = (oldest + window).saturating_sub(now).max(1);
                return Err(ChatError::TooManyAttempts { retry_after_ms });
            }
        }
        Ok(())
    }

    fn record_failure(&self, key: &str, now: u64) {
        let mut throttle = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if throttle.len() >= THROTTLE_KEYS && !throttle.contains_key(key) {
            let window = config::LOGIN_WINDOW.as_millis() as u64;
            throttle.retain(|_, f| f.iter().any(|&t| now.saturating_sub(t) < window));
            if throttle.len() >= THROTTLE_KEYS {
                let users = self.users.read().unwrap_or_else(|e| e.into_inner());
                throttle.retain(|k, _| users.contains_key(k));
            }
        }
        throttle.entry(key.to_string()).or_default().push(now);
    }

    /// Logs in: a new session and its token.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(String, String), ChatError> {
        let key = username.to_ascii_lowercase();
        let now = now_ms();
        self.throttled(&key, now)?;
        let user = self.user(&key);
        let hash = user.as_ref().map(|u| u.lock().hash.clone());
        let (pw, iterations) = (password.as_bytes().to_vec(), self.cfg.pbkdf2_iterations);
        let ok = self
            .hasher
            .run(move || match hash {
                Some(h) => password::verify(&pw, &h),
                None => password::verify_dummy(&pw, iterations),
            })
            .await?;
        let Some(user) = user.filter(|_| ok) else {
            self.record_failure(&key, now);
            Metrics::add(&self.metrics.login_failures_total, 1);
            return Err(ChatError::InvalidCredentials);
        };
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let hash = token_hash(&token);
        let rec = Record::SessionStarted {
            token_hash: hex(&hash),
            username: user.name.clone(),
            created: now_ms(),
        };
        let commit = {
            let _gate = self.store.gate();
            self.apply(&rec);
            self.commit(&rec, || {})
        };
        commit.wait().await?;
        // A user's oldest session ends when they hold too many, so logins cannot pile up
        // sessions without bound.
        let oldest = {
            let us = user.lock();
            (us.sessions.len() > config::MAX_SESSIONS_PER_USER).then(|| us.sessions[0])
        };
        if let Some(commit) = oldest.and_then(|h| self.end_session(h)) {
            commit.wait().await?;
        }
        Metrics::add(&self.metrics.logins_total, 1);
        self.touch(&user);
        Ok((token, user.name.clone()))
    }

    /// Resolves a bearer token, counting the call as activity for presence.
    pub fn authenticate(&self, token: &str) -> Result<Auth, ChatError> {
        let hash = token_hash(token);
        let max_age = self.cfg.session_max_age.as_millis() as u64;
        let user = {
            let sessions = self.sessions();
            let s = sessions.get(&hash).ok_or(ChatError::Unauthorized)?;
            if now_ms().saturating_sub(s.created) >= max_age {
                None
            } else {
                Some(s.user.clone())
            }
        };
        let Some(user) = user else {
            self.end_session(hash);
            return Err(ChatError::Unauthorized);
        };
        self.touch(&user);
        Ok(Auth {
            user,
            session: hash,
        })
    }

    /// Ends a session now: its token stops working and its sockets close with 4001.
    pub fn end_session(&self, hash: [u8; 32]) -> Option<Commit> {
        let commit = {
            let _gate = self.store.gate();
            if !self.sessions().contains_key(&hash) {
                return None;
            }
            let rec = Record::SessionEnded {
                token_hash: hex(&hash),
            };
            self.apply(&rec);
            self.commit(&rec, || {})
        };
        let conns: Vec<Arc<Conn>> = {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns
                .values()
                .filter(|c| c.session == hash)
                .cloned()
                .collect()
        };
        for c in conns {
            c.out.close(frame::close::SESSION_ENDED, "session ended");
        }
        Some(commit)
    }

    pub async fn logout(&self, auth: &Auth) -> Result<(), ChatError> {
        match self.end_session(auth.session) {
            Some(commit) => commit.wait().await,
            None => Err(ChatError::Unauthorized),
        }
    }

    // ----- presence -----

    /// Records request activity, announcing the user online if they were not.
    pub fn touch(&self, user: &Arc<User>) {
        user.lock().last_request = now_ms();
        self.refresh_presence(user);
    }

    fn presence_timeout_ms(&self) -> u64 {
        self.cfg.presence_timeout.as_millis() as u64
    }

    /// Compares a user's presence with what was last announced, and announces a change to
    /// every connection of everyone who shares a room with them.
    pub fn refresh_presence(&self, user: &Arc<User>) {
        let now = now_ms();
        let timeout = self.presence_timeout_ms();
        let (online, rooms) = {
            let mut us = user.lock();
            let online = us.is_online(now, timeout);
            if online == us.online {
                return;
            }
            us.online = online;
            if !online {
                us.last_seen = Some(us.went_offline_at(timeout).min(now));
            }
            (online, us.rooms.clone())
        };
        let frame = encode(&ServerFrame::Presence {
            username: &user.name,
            online,
        });
        let mut sent: HashMap<u64, Arc<Conn>> = HashMap::new();
        for id in rooms {
            if let Some(room) = self.rooms.get(&id) {
                let subs = room.lock().subscribers.clone();
                for c in subs.iter().filter(|c| c.user.key != user.key) {
                    sent.entry(c.id).or_insert_with(|| c.clone());
                }
            }
        }
        for c in sent.values() {
            self.push(c, &frame);
        }
    }

    fn user_view(&self, user: &User, now: u64) -> UserView {
        let us = user.lock();
        let timeout = self.presence_timeout_ms();
        let online = us.is_online(now, timeout);
        // Until the sweep announces it, a user whose presence just ran out is still marked
        // online; their `last_seen` is the moment it ran out.
        let last_seen = if !online && us.online {
            Some(us.went_offline_at(timeout).min(now))
        } else {
            us.last_seen
        };
        UserView {
            username: user.name.clone(),
            online,
            last_seen,
        }
    }

    pub fn users(&self) -> Vec<UserView> {
        let now = now_ms();
        let users: Vec<Arc<User>> = {
            let users = self.users.read().unwrap_or_else(|e| e.into_inner());
            users.values().cloned().collect()
        };
        let mut out: Vec<UserView> = users.iter().map(|u| self.user_view(u, now)).collect();
        out.sort_by_key(|u| u.username.to_lowercase());
        out
    }

    pub fn user_info(&self, name: &str) -> Result<UserView, ChatError> {
        let user = self
            .user(&name.to_ascii_lowercase())
            .ok_or(ChatError::UserNotFound)?;
        Ok(self.user_view(&user, now_ms()))
    }

    // ----- rooms -----

    fn room(&self, id: &str) -> Result<Arc<Room>, ChatError> {
        self.rooms.get(id).ok_or(ChatError::RoomNotFound)
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn rooms(&self) -> Vec<RoomView> {
        let mut rooms: Vec<RoomView> = self.rooms.all().iter().map(|r| r.view(&r.lock())).collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        rooms
    }

    /// The rooms a user belongs to, in the order joined.
    pub fn my_rooms(&self, user: &User) -> Vec<RoomView> {
        let ids = user.lock().rooms.clone();
        ids.iter()
            .filter_map(|id| self.rooms.get(id))
            .map(|r| r.view(&r.lock()))
            .collect()
    }

    pub fn room_detail(&self, id: &str) -> Result<RoomDetail, ChatError> {
        let room = self.room(id)?;
        let (view, members) = {
            let rs = room.lock();
            (
                room.view(&rs),
                rs.members.values().cloned().collect::<Vec<_>>(),
            )
        };
        let now = now_ms();
        let timeout = self.presence_timeout_ms();
        let member_list = members
            .iter()
            .map(|u| MemberView {
                username: u.name.clone(),
                online: u.lock().is_online(now, timeout),
            })
            .collect();
        Ok(RoomDetail {
            room: view,
            member_list,
        })
    }

    pub async fn create_room(
        &self,
        user: &Arc<User>,
        name: &str,
        capacity: Option<i64>,
    ) -> Result<RoomView, ChatError> {
        let name = name.trim();
        let chars = name.chars().count();
        if !(1..=64).contains(&chars) || name.chars().any(char::is_control) {
            return Err(ChatError::InvalidRoomName);
        }
        let capacity = match capacity {
            None => self.cfg.room_capacity,
            Some(c) if (1..=config::MAX_ROOM_CAPACITY as i64).contains(&c) => c as u32,
            Some(_) => return Err(ChatError::InvalidCapacity),
        };
        let (view, commit) = self.create_locked(user, name, capacity)?;
        commit.wait().await?;
        Ok(view)
    }

    fn create_locked(
        &self,
        user: &Arc<User>,
        name: &str,
        capacity: u32,
    ) -> Result<(RoomView, Commit), ChatError> {
        let _gate = self.store.gate();
        let mut us = user.lock();
        if us.rooms.len() >= self.cfg.max_rooms_per_user {
            return Err(ChatError::TooManyRooms);
        }
        let room = loop {
            let room = self.new_room(&random_id(10), name, &user.name, capacity);
            if self.rooms.insert(room.clone()) {
                break room;
            }
        };
        let created = Record::RoomCreated {
            id: room.id.clone(),
            name: room.name.clone(),
            owner: room.owner.clone(),
            capacity,
            ts: now_ms(),
        };
        self.store.append(&created, None);
        let mut rs = room.lock();
        let commit = self.join_locked(&room, &mut rs, user, &mut us);
        let mut view = room.view(&rs);
        view.last_seq = rs.last_seq;
        Ok((view, commit))
    }

    pub async fn join_room(&self, user: &Arc<User>, id: &str) -> Result<RoomView, ChatError> {
        let room = self.room(id)?;
        let (view, commit) = {
            let _gate = self.store.gate();
            let mut us = user.lock();
            let mut rs = room.lock();
            if rs.members.contains_key(&user.key) {
                return Ok(room.view(&rs));
            }
            if us.rooms.len() >= self.cfg.max_rooms_per_user {
                return Err(ChatError::TooManyRooms);
            }
            if rs.members.len() >= room.capacity as usize {
                return Err(ChatError::RoomFull);
            }
            let commit = self.join_locked(&room, &mut rs, user, &mut us);
            let mut view = room.view(&rs);
            view.last_seq = rs.last_seq;
            (view, commit)
        };
        commit.wait().await?;
        Ok(view)
    }

    /// Appends `user`'s join entry. Once it is acknowledged, the joiner's connections get
    /// the room's recent `history` and then the entry, like every other member.
    fn join_locked(
        &self,
        room: &Arc<Room>,
        rs: &mut RoomState,
        user: &Arc<User>,
        us: &mut users::UserState,
    ) -> Commit {
        let entry = Entry {
            room: room.id.clone(),
            seq: rs.last_seq + 1,
            ts: now_ms(),
            kind: EntryKind::Join,
            from: user.name.clone(),
            text: None,
        };
        let recent: Vec<Entry> = {
            let skip = rs.ring.len().saturating_sub(config::JOIN_HISTORY);
            rs.ring
                .range(skip, rs.ring.len())
                .map(|e| (**e).clone())
                .collect()
        };
        let complete = recent.first().is_none_or(|e| e.seq == 1);
        Self::apply_entry(room, rs, Some((user, us)), &entry);
        let history = encode(&ServerFrame::History {
            room: &room.id,
            entries: recent,
            complete,
            more: false,
        });
        let fanout = Fanout {
            subscribers: rs.subscribers.clone(),
            ack: None,
            preface: Some((us.conns.clone(), history)),
        };
        self.append_entry(room, rs, entry, Some(fanout))
    }

    pub async fn leave_room(&self, user: &Arc<User>, id: &str) -> Result<(), ChatError> {
        let room = self.room(id)?;
        let commit = {
            let _gate = self.store.gate();
            let mut us = user.lock();
            let mut rs = room.lock();
            if !rs.members.contains_key(&user.key) {
                return Err(ChatError::NotInRoom);
            }
            let entry = Entry {
                room: room.id.clone(),
                seq: rs.last_seq + 1,
                ts: now_ms(),
                kind: EntryKind::Leave,
                from: user.name.clone(),
                text: None,
            };
            // The leaver's connections still get the entry: it tells them they left.
            let subscribers = rs.subscribers.clone();
            Self::apply_entry(&room, &mut rs, Some((user, &mut us)), &entry);
            let fanout = Fanout {
                subscribers,
                ack: None,
                preface: None,
            };
            self.append_entry(&room, &mut rs, entry, Some(fanout))
        };
        commit.wait().await
    }

    /// Hands an entry the caller has already applied to the store, and broadcasts it once the
    /// store acknowledges it. Called under the room's lock, so the store sees each room's
    /// entries in seq order and so do subscribers. `to` overrides the recipients, and names the
    /// sender's connection and nonce for the acknowledging copy.
    fn append_entry(
        &self,
        room: &Arc<Room>,
        rs: &mut RoomState,
        entry: Entry,
        fanout: Option<Fanout>,
    ) -> Commit {
        let Fanout {
            subscribers,
            ack,
            preface,
        } = fanout.unwrap_or_else(|| Fanout {
            subscribers: rs.subscribers.clone(),
            ack: None,
            preface: None,
        });
        let rec = Record::Entry(entry);
        let room = room.clone();
        let metrics = self.metrics.clone();
        let (tx, rx) = oneshot::channel();
        // Building the frame from the record after the store has it keeps one copy of the text.
        let deliver = move |rec: &Record| {
            let Record::Entry(entry) = rec else { return };
            room.set_committed(entry.seq);
            let mut delivered = 0;
            if let Some((conns, frame)) = &preface {
                for c in conns {
                    delivered += deliver_to(&metrics, c, frame);
                }
            }
            let shared = encode_entry(entry, None);
            for c in subscribers.iter() {
                let frame = match &ack {
                    Some((id, nonce)) if *id == c.id => encode_entry(entry, Some(nonce)),
                    _ => shared.clone(),
                };
                delivered += deliver_to(&metrics, c, &frame);
            }
            Metrics::add(&metrics.frames_delivered_total, delivered);
            Metrics::add(&metrics.entries_appended_total, 1);
            let _ = tx.send(());
        };
        self.store.append_entry(rec, Box::new(deliver));
        Commit(rx)
    }

    /// Validates the text of a `send` frame: a command, or a filtered message.
    pub fn parse_send<'a>(&self, text: &'a str) -> Result<Posted<'a>, ChatError> {
        if text.starts_with('/') && !text.starts_with("//") {
            return Ok(Posted::Command(text));
        }
        let text = text.strip_prefix('/').unwrap_or(text);
        let clean = Filter::strip_controls(text);
        let trimmed = clean.trim();
        if trimmed.is_empty() {
            return Err(ChatError::EmptyMessage);
        }
        if trimmed.len() > config::MAX_MESSAGE_BYTES {
            return Err(ChatError::MessageTooLong);
        }
        Ok(Posted::Message(self.filter.mask(trimmed)))
    }

    /// The per-user rate limit, and the per-connection abuse limit at three times it.
    /// `Err(None)` means close the connection with 1008.
    pub fn rate_check(&self, conn: &Conn) -> Result<(), Option<ChatError>> {
        let (rate, burst) = (self.cfg.rate_limit, self.cfg.rate_burst);
        if rate == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let abused = conn
            .abuse
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(rate * 3, burst * 3, now)
            .is_err();
        if abused {
            return Err(None);
        }
        let taken = conn.user.lock().bucket.take(rate, burst, now);
        taken.map_err(|retry_after_ms| {
            Metrics::add(&self.metrics.rate_limited_total, 1);
            Some(ChatError::RateLimited { retry_after_ms })
        })
    }

    /// Posts a message. The sender's connection gets its copy with `nonce`; that is the ack.
    pub fn post(
        &self,
        conn: &Arc<Conn>,
        room_id: &str,
        text: String,
        nonce: Option<Value>,
    ) -> Result<(), ChatError> {
        let room = self.room(room_id)?;
        let _gate = self.store.gate();
        let mut rs = room.lock();
        if !rs.members.contains_key(&conn.user.key) {
            return Err(ChatError::NotAMember);
        }
        let entry = Entry {
            room: room.id.clone(),
            seq: rs.last_seq + 1,
            ts: now_ms(),
            kind: EntryKind::Message,
            from: conn.user.name.clone(),
            text: Some(text),
        };
        Self::apply_entry(&room, &mut rs, None, &entry);
        // Membership subscribes every connection of the user, the sender's included; without a
        // nonce the sender gets the plain copy like everyone else.
        let fanout = Fanout {
            subscribers: rs.subscribers.clone(),
            ack: nonce.map(|n| (conn.id, n)),
            preface: None,
        };
        drop(self.append_entry(&room, &mut rs, entry, Some(fanout)));
        Ok(())
    }

    /// Kept entries after `since`, for `sync`: `(entries, complete, more)`. Entries are cut
    /// at a byte budget (half the outbound limit) so one answer cannot overflow the
    /// connection; `more` then says to sync again from the last entry returned.
    pub fn sync(
        &self,
        user: &User,
        room_id: &str,
        since: u64,
    ) -> Result<(Vec<Entry>, bool, bool), ChatError> {
        let room = self.room(room_id)?;
        let rs = room.lock();
        if !rs.members.contains_key(&user.key) {
            return Err(ChatError::NotAMember);
        }
        let last = room.committed().min(rs.last_seq);
        let complete = since >= last || since + 1 >= rs.first_seq();
        let budget = self.cfg.max_outbound_bytes / 2;
        let mut used = 0;
        let mut out = Vec::new();
        let mut more = false;
        for e in rs.entries_between(since, last) {
            used += 96 + e.from.len() + e.text.as_ref().map_or(0, |t| t.len() * 2);
            if used > budget && !out.is_empty() {
                more = true;
                break;
            }
            out.push((**e).clone());
        }
        Ok((out, complete, more))
    }

    /// A page of history: at most `limit` entries with `seq < before`, oldest first, and the
    /// oldest kept seq.
    pub fn history(
        &self,
        user: &User,
        room_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Entry>, u64), ChatError> {
        let room = self.room(room_id)?;
        let rs = room.lock();
        if !rs.members.contains_key(&user.key) {
            return Err(ChatError::NotAMember);
        }
        let last = room.committed().min(rs.last_seq);
        let upto = before.map_or(last, |b| b.saturating_sub(1).min(last));
        let from = upto.saturating_sub(limit as u64);
        let entries = rs
            .entries_between(from, upto)
            .map(|e| (**e).clone())
            .collect();
        Ok((entries, rs.first_seq()))
    }

    // ----- connections -----

    /// Registers a new WebSocket connection: it subscribes to the user's rooms and its first
    /// frame is `hello`.
    pub fn open_conn(&self, auth: &Auth) -> Arc<Conn> {
        let burst = self.cfg.rate_burst.max(1);
        let conn = Arc::new(Conn {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            session: auth.session,
            user: auth.user.clone(),
            out: Outbound::new(self.cfg.max_outbound_bytes),
            last_recv: AtomicU64::new(now_ms()),
            abuse: Mutex::new(TokenBucket::full(burst * 3)),
        });
        let user = &auth.user;
        let rooms = {
            let mut us = user.lock();
            us.conns.push(conn.clone());
            let mut views = Vec::with_capacity(us.rooms.len());
            for id in &us.rooms {
                if let Some(room) = self.rooms.get(id) {
                    let mut rs = room.lock();
                    rs.subscribe(std::slice::from_ref(&conn));
                    views.push(room.view(&rs));
                }
            }
            views
        };
        let hello = encode(&ServerFrame::Hello {
            username: &user.name,
            epoch: &self.epoch(),
            heartbeat_ms: self.cfg.heartbeat_interval.as_millis() as u64,
            rooms,
        });
        // Entries may already be queued behind it; `hello` still goes first.
        conn.out.push_front(&hello);
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn.id, conn.clone());
        Metrics::add(&self.metrics.websocket_connections, 1);
        self.refresh_presence(user);
        conn
    }

    pub fn close_conn(&self, conn: &Arc<Conn>) {
        let removed = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id);
        if removed.is_none() {
            return;
        }
        {
            let mut us = conn.user.lock();
            us.conns.retain(|c| c.id != conn.id);
            us.last_close = now_ms();
            for id in &us.rooms {
                if let Some(room) = self.rooms.get(id) {
                    room.lock().unsubscribe(&[conn.id]);
                }
            }
        }
        Metrics::sub(&self.metrics.websocket_connections, 1);
        self.refresh_presence(&conn.user);
    }

    /// Queues a frame for one connection.
    pub fn push(&self, conn: &Conn, frame: &Bytes) {
        deliver_to(&self.metrics, conn, frame);
    }

    /// Sends a server frame to one connection.
    pub fn send_frame(&self, conn: &Conn, f: &ServerFrame<'_>) {
        self.push(conn, &encode(f));
    }

    /// Asks every connection to close, for shutdown.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let conns: Vec<Arc<Conn>> = {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.values().cloned().collect()
        };
        for c in conns {
            c.out.close(code, reason);
        }
    }

    pub fn connection_count(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn online_users(&self) -> usize {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.values().filter(|u| u.lock().online).count()
    }

    // ----- periodic work -----

    /// Pings every connection and closes those silent for three intervals.
    pub fn heartbeat(&self) {
        let now = now_ms();
        let limit = 3 * self.cfg.heartbeat_interval.as_millis() as u64;
        let conns: Vec<Arc<Conn>> = {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.values().cloned().collect()
        };
        for c in conns {
            if now.saturating_sub(c.last_recv.load(Ordering::Relaxed)) >= limit {
                c.out.close(frame::close::NORMAL, "heartbeat timeout");
            } else {
                let _ = c.out.push(&self.ping);
            }
        }
    }

    /// Ends presence by request activity that timed out, and sessions past their idle or
    /// maximum age; prunes the login throttle.
    pub fn sweep(&self) {
        let now = now_ms();
        let users: Vec<Arc<User>> = {
            let users = self.users.read().unwrap_or_else(|e| e.into_inner());
            users.values().cloned().collect()
        };
        for u in &users {
            if u.lock().online {
                self.refresh_presence(u);
            }
        }
        let idle = self.cfg.session_idle_timeout.as_millis() as u64;
        let max_age = self.cfg.session_max_age.as_millis() as u64;
        let expired: Vec<[u8; 32]> = {
            let sessions = self.sessions();
            sessions
                .iter()
                .filter(|(_, s)| {
                    let us = s.user.lock();
                    let idle_for = if us.online {
                        0
                    } else {
                        us.last_seen.map_or(0, |t| now.saturating_sub(t))
                    };
                    now.saturating_sub(s.created) >= max_age || idle_for >= idle
                })
                .map(|(h, _)| *h)
                .collect()
        };
        for h in expired {
            self.end_session(h);
        }
        let window = config::LOGIN_WINDOW.as_millis() as u64;
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, f| f.iter().any(|&t| now.saturating_sub(t) < window));
        self.store.compact_if_due(|| self.snapshot_records());
    }

    /// Records a clean stop: nothing acknowledged can be missing after it.
    pub fn end_run(&self) {
        let _gate = self.store.gate();
        self.store.append(&Record::Stopped, None);
    }

    /// Every record needed to rebuild the current state, for a snapshot. Each room's ring
    /// contributes only the entries it keeps.
    pub fn snapshot_records(&self) -> Vec<Record> {
        let mut out = vec![Record::Epoch {
            epoch: self.epoch(),
        }];
        if let Some(run) = self
            .last_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            out.push(Record::Started {
                boot_id: run.boot_id,
                fsync: run.fsync,
            });
        }
        let users: Vec<Arc<User>> = {
            let users = self.users.read().unwrap_or_else(|e| e.into_inner());
            users.values().cloned().collect()
        };
        for u in &users {
            out.push(Record::UserRegistered {
                username: u.name.clone(),
                hash: u.lock().hash.clone(),
                ts: 0,
            });
        }
        for (hash, s) in self.sessions().iter() {
            out.push(Record::SessionStarted {
                token_hash: hex(hash),
                username: s.user.name.clone(),
                created: s.created,
            });
        }
        for room in self.rooms.all() {
            let rs = room.lock();
            out.push(Record::RoomSnapshot {
                id: room.id.clone(),
                name: room.name.clone(),
                owner: room.owner.clone(),
                capacity: room.capacity,
                last_seq: rs.last_seq,
                members: rs.members.values().map(|u| u.name.clone()).collect(),
                entries: rs.ring.iter().map(|e| (**e).clone()).collect(),
            });
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn core(fsync: &str) -> Core {
        let cfg = Config {
            fsync: fsync.parse().unwrap(),
            ..Config::default()
        };
        Core::new(
            Arc::new(cfg),
            Arc::default(),
            Store::memory(),
            Filter::default(),
        )
    }

    /// Replays a previous run's records, starts a new run on boot `now`, and tells whether
    /// the epoch changed.
    fn epoch_changes(previous: &[Record], now: &str) -> bool {
        let c = core("interval");
        c.apply(&Record::Epoch {
            epoch: "old".into(),
        });
        for r in previous {
            c.apply(r);
        }
        c.begin_run(now);
        c.epoch() != "old"
    }

    #[test]
    fn only_an_unclean_stop_across_a_reboot_without_fsync_changes_the_epoch() {
        let started = |boot: &str, fsync: &str| Record::Started {
            boot_id: boot.into(),
            fsync: fsync.into(),
        };
        let cases = [
            (
                "crash, same boot",
                vec![started("b1", "interval")],
                "b1",
                false,
            ),
            (
                "reboot after a crash",
                vec![started("b1", "interval")],
                "b2",
                true,
            ),
            (
                "reboot, fsync never",
                vec![started("b1", "never")],
                "b2",
                true,
            ),
            (
                "reboot, fsync always",
                vec![started("b1", "always")],
                "b2",
                false,
            ),
            (
                "clean stop, reboot",
                vec![started("b1", "interval"), Record::Stopped],
                "b2",
                false,
            ),
            ("no run recorded", vec![], "b2", false),
        ];
        for (name, previous, now, want) in cases {
            assert_eq!(epoch_changes(&previous, now), want, "{name}");
        }
    }

    #[test]
    fn a_fresh_directory_gets_an_epoch() {
        let c = core("interval");
        c.begin_run("b1");
        assert_eq!(c.epoch().len(), 16);
    }
}
