//! Accounts, sessions, connections and presence state.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::outbound::{Outbound, PresenceFrames};
use super::ratelimit::TokenBucket;

/// Pending invitations a user's own list remembers; older ones are forgotten there (the
/// room still holds them, so `/join` works).
pub const MAX_INVITES_KEPT: usize = 200;

/// An account. `name` is as registered; `key` is its lowercase form, unique.
#[derive(Debug)]
pub struct User {
    pub name: String,
    pub key: String,
    /// This user's `presence` frames, encoded once and shared by room-mates' connections.
    pub presence: Arc<PresenceFrames>,
    // A std mutex: every critical section is short and none spans an await. Lock order is
    // user, then room, then outbound queue.
    state: Mutex<UserState>,
}

#[derive(Debug)]
pub struct UserState {
    pub hash: String,
    /// Rooms this user belongs to, in the order joined. A deleted room's id may linger
    /// until the next join prunes it; readers skip ids the room table lacks.
    pub rooms: Vec<String>,
    /// Rooms this user was invited to, oldest first (at most [`MAX_INVITES_KEPT`]). The
    /// room's own list decides: an id whose room no longer holds the invitation is stale.
    pub invites: Vec<String>,
    /// Live WebSocket connections.
    pub conns: Vec<Arc<Conn>>,
    /// Token hashes of this user's sessions, oldest first.
    pub sessions: Vec<[u8; 32]>,
    /// Last authenticated request, ms since the epoch; 0 if none.
    pub last_request: u64,
    /// Last time a WebSocket connection of theirs closed; 0 if none.
    pub last_close: u64,
    /// When they last went offline; `None` if never online.
    pub last_seen: Option<u64>,
    /// The presence last announced.
    pub online: bool,
    /// Messages per second, per user across all their connections.
    pub bucket: TokenBucket,
    /// State-changing REST calls per second (`--rest-rate-limit`).
    pub rest_bucket: TokenBucket,
    /// Bytes of history served (`--history-byte-rate`); may run into debt by one answer.
    pub history_bucket: TokenBucket,
    /// Disabled by an admin: no login, no session.
    pub disabled: bool,
    /// Password changes made on this node (not rehashes): a login that verified the hash
    /// before a change finished gets no session (`login_checked`).
    pub password_changes: u64,
    /// Cluster mode: other nodes reporting this user online (`nodes`).
    pub remote: u32,
}

impl User {
    /// `burst` and `rest_burst` fill the message and REST buckets.
    pub fn new(name: &str, hash: String, burst: u32, rest_burst: u32) -> User {
        User {
            name: name.to_string(),
            presence: Arc::new(PresenceFrames::new(name)),
            key: name.to_ascii_lowercase(),
            state: Mutex::new(UserState {
                hash,
                rooms: Vec::new(),
                invites: Vec::new(),
                conns: Vec::new(),
                sessions: Vec::new(),
                last_request: 0,
                last_close: 0,
                last_seen: None,
                online: false,
                bucket: TokenBucket::full(burst),
                rest_bucket: TokenBucket::full(rest_burst),
                // Capped at the burst when first taken from.
                history_bucket: TokenBucket::full(u32::MAX),
                disabled: false,
                password_changes: 0,
                remote: 0,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, UserState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl UserState {
    /// Presence as the contract defines it: a live connection, or a request within
    /// `timeout_ms`, on this node or (in cluster mode) another.
    pub fn is_online(&self, now: u64, timeout_ms: u64) -> bool {
        self.remote > 0 || self.is_online_here(now, timeout_ms)
    }

    /// Online by this node's own connections and requests: what it reports to the others.
    pub fn is_online_here(&self, now: u64, timeout_ms: u64) -> bool {
        !self.conns.is_empty()
            || (self.last_request > 0 && now.saturating_sub(self.last_request) < timeout_ms)
    }

    /// When a user who is offline now went offline.
    pub fn went_offline_at(&self, timeout_ms: u64) -> u64 {
        let by_requests = if self.last_request > 0 {
            self.last_request + timeout_ms
        } else {
            0
        };
        by_requests.max(self.last_close)
    }
}

/// A logged-in session, keyed by the SHA-256 of its token.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: Arc<User>,
    /// ms since the epoch.
    pub created: u64,
}

/// One live WebSocket connection.
#[derive(Debug)]
pub struct Conn {
    pub id: u64,
    /// The SHA-256 of the token it authenticated with; its session's end closes it.
    pub session: [u8; 32],
    pub user: Arc<User>,
    pub out: Outbound,
    /// Last time any byte arrived, ms since the epoch; the heartbeat reads it.
    pub last_recv: AtomicU64,
    /// Sends at three times the rate limit; running dry closes the connection with 1008.
    pub abuse: Mutex<TokenBucket>,
}

/// Every user by lowercase name: one piece of the state, moved by `UserRegistered` (and, in
/// each user's own lock, by the records about them). A `BTreeMap`, so the listing pages
/// through it in order. Locked before a user.
#[derive(Default)]
pub(crate) struct UserTable(RwLock<BTreeMap<String, Arc<User>>>);

impl UserTable {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Arc<User>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The table locked for a registration: checking that a name is free and taking it are
    /// one step.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Arc<User>>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<User>> {
        self.read().get(key).cloned()
    }

    /// Every user, copied out of the table so none of its lock is held while they are read.
    pub(crate) fn all(&self) -> Vec<Arc<User>> {
        self.read().values().cloned().collect()
    }

    /// Forgets a user (a registration the store failed to keep).
    pub(crate) fn remove(&self, key: &str) {
        self.write().remove(key);
    }
}
