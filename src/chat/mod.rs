//! The chat core: accounts, sessions, presence, rooms, timelines and fan-out.
//!
//! No socket or disk I/O happens here. State changes become [`Record`]s that go to the
//! [`Store`]; frames go to connections' outbound queues. REST handlers and slash commands
//! both call the methods of [`Core`], so nothing about rooms or users is decided twice.
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
//! # Threads
//! Request and connection tasks run on the tokio workers and never block: no lock is held
//! across an `.await`, and a full journal refuses rather than waits. Password hashing runs on
//! its own small pool (`password`). With a journal, acknowledgements and broadcasts run on
//! the journal's delivery thread, writes on its writer thread, snapshots on its snapshot
//! thread; nothing on a request path waits for a snapshot.
//!
//! # Layout
//! `Core` and the one `apply` are here; its other methods live by concept in `accounts`
//! (registration, login, sessions), `admin` (admins and their setup code, invite codes,
//! disabled accounts, password changes), `presence`, `membership` (rooms, joins, leaves),
//! `timeline` (messages, sync, history), `connections` (WebSocket registration, heartbeat)
//! and `lifecycle` (epoch, sweeps, snapshots). Data structures: `rooms` (the sharded table),
//! `ring` (history), `users`, `throttle` (login and registration windows); helpers:
//! `commands`, `filter`, `password`, `ratelimit`.
//!
//! # Lock order
//! The store's gate, then sessions, then a user, then a room, then an outbound queue; no
//! lock is held across an `.await`.

pub(crate) mod commands;
pub mod error;
pub(crate) mod filter;
pub(crate) mod inspect;
pub(crate) mod outbound;
pub mod password;
pub(crate) mod ratelimit;
pub(crate) mod ring;
pub(crate) mod rooms;
pub(crate) mod text;
pub(crate) mod throttle;
pub(crate) mod users;
pub(crate) mod wire;

mod accounts;
mod admin;
mod connections;
mod conversation;
mod lifecycle;
mod membership;
pub mod moderation;
mod nodes;
pub(crate) mod policy;
mod presence;
pub mod replica;
mod snapshot;
mod timeline;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tungstenite::Bytes;

pub use crate::store::Record;
pub use accounts::valid_username;
pub use error::ChatError;
pub use membership::NewRoomSpec;
pub use timeline::HistoryPage;
pub use users::{Conn, Session, User};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::{EntryExtra, EntryKind, ServerFrame};
use crate::store::record::GovernanceRecord;
use crate::store::{KeptEntry, Slot, Store};
use filter::Filter;
use outbound::Pushed;
use password::HashPool;
use rooms::{Governance, Member, Room, RoomTable};
use wire as frame;

/// Milliseconds since the Unix epoch; while a cluster proposal is applied, its time, so
/// that every node decides it the same (`replica`).
pub fn now_ms() -> u64 {
    replica::clock().unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
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
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[replica::random_below(ALPHABET.len())] as char)
        .collect()
}

/// The last start recorded in the journal, and whether a clean stop followed it.
#[derive(Debug, Clone)]
struct LastRun {
    boot_id: String,
    fsync: String,
    stopped: bool,
}

/// Waits for the store to acknowledge a record.
pub struct Commit(oneshot::Receiver<bool>);

impl Commit {
    /// A change that needed no waiting (nothing is stored).
    pub(super) fn done() -> Commit {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(true);
        Commit(rx)
    }

    /// `Err(Unavailable)` when the store failed before acknowledging the record.
    pub async fn wait(self) -> Result<(), ChatError> {
        match self.0.await {
            Ok(true) => Ok(()),
            _ => Err(ChatError::Unavailable),
        }
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

/// Users by lowercase name: a `BTreeMap`, so the listing pages through it in order.
type Users = Arc<RwLock<BTreeMap<String, Arc<User>>>>;
/// Rooms owned per lowercase owner name (`--max-owned-rooms`). Locked last: nothing is
/// locked while it is held.
type Owned = Arc<Mutex<HashMap<String, usize>>>;
type Sessions = Arc<Mutex<HashMap<[u8; 32], Session>>>;
/// Who blocked whom: blocker's lowercase name to the lowercase names they block. Locked
/// last: nothing is locked while it is held.
type Blocks = Arc<RwLock<HashMap<String, std::collections::BTreeSet<String>>>>;

pub struct Core {
    pub cfg: Arc<Config>,
    pub metrics: Arc<Metrics>,
    // The tables are `Arc`s so that an acknowledgement callback can undo a change the store
    // failed to keep, and a snapshot can read them on the snapshot thread.
    users: Users,
    sessions: Sessions,
    rooms: Arc<RoomTable>,
    owned: Owned,
    /// DM rooms by their pair of lowercase names (`conversation::pair_key`). An id whose
    /// room was deleted may linger; lookups check the table. Locked before users.
    dms: Mutex<HashMap<String, String>>,
    blocks: Blocks,
    /// Rooms with read markers not yet written to the store (`Member::read_dirty`).
    read_dirty: Mutex<std::collections::HashSet<String>>,
    /// Users who went offline since the last `flush_last_seen`, with when (`Record::LastSeen`).
    seen_dirty: Mutex<HashMap<String, u64>>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Failed logins and registrations by account and client address.
    throttle: Mutex<throttle::Throttle>,
    invites: admin::Invites,
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
            dms: Mutex::default(),
            blocks: Arc::default(),
            read_dirty: Mutex::default(),
            seen_dirty: Mutex::default(),
            conns: Mutex::new(HashMap::new()),
            throttle: Mutex::new(throttle::Throttle::new()),
            invites: Arc::default(),
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
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.get(key).cloned()
    }

    /// Every user, copied out of the table so none of its lock is held while they are read.
    fn all_users(&self) -> Vec<Arc<User>> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.values().cloned().collect()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn room(&self, id: &str) -> Result<Arc<Room>, ChatError> {
        self.rooms.get(id).ok_or(ChatError::RoomNotFound)
    }

    /// Takes a place in the store for one record, before changing anything.
    /// A change applied from the cluster's log is already kept: it takes no place.
    fn reserve(&self) -> Result<Slot, ChatError> {
        if replica::applying() {
            return Ok(Slot::Memory);
        }
        self.store.reserve().map_err(|_| ChatError::Unavailable)
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
        Commit(rx)
    }

    // ----- the one function that applies records -----

    /// Applies a record to memory. Recovery replays the snapshot and the journal through
    /// here; the live path calls the same per-record helpers under the locks it already
    /// holds. Applying a record the state already holds changes nothing (see
    /// `store::record`).
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
                if !users.contains_key(&username.to_ascii_lowercase()) {
                    self.apply_user(&mut users, username, hash.clone());
                }
            }
            Record::PasswordChanged { username, hash } => {
                if let Some(user) = self.user(&username.to_ascii_lowercase()) {
                    user.lock().hash = hash.clone();
                }
            }
            Record::SessionStarted {
                token_hash,
                username,
                created,
            } => {
                if let (Some(user), Some(hash)) =
                    (self.user(&username.to_ascii_lowercase()), unhex(token_hash))
                {
                    if let std::collections::hash_map::Entry::Vacant(slot) =
                        self.sessions().entry(hash)
                    {
                        user.lock().sessions.push(hash);
                        slot.insert(Session {
                            user,
                            created: *created,
                        });
                    }
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
                visibility,
                topic,
                dm_with,
                ..
            } => {
                let gov = Governance {
                    name: name.clone(),
                    owner: owner.clone(),
                    topic: topic.clone(),
                    visibility: *visibility,
                    dm: dm_with.as_ref().map(|w| (owner.clone(), w.clone())),
                    ..Governance::default()
                };
                let dm = gov.dm.clone();
                if self.rooms.insert(self.new_room(id, gov, *capacity), name) {
                    match dm {
                        Some((a, b)) => self.remember_dm(&a, &b, id),
                        None => Self::count_owned(&self.owned, owner, true),
                    }
                }
            }
            Record::Blocked {
                username,
                target,
                blocked,
            } => self.apply_block(username, target, *blocked),
            Record::ReadMarkers { room, markers } => {
                self.move_read_markers(room, markers);
            }
            Record::RoomDeleted { id, .. } => {
                if let Some(room) = self.rooms.remove(id) {
                    let (owner, dm) = {
                        let mut rs = room.lock();
                        rs.deleted = true;
                        rs.members.clear();
                        (rs.gov.owner.clone(), rs.gov.dm.is_some())
                    };
                    if !dm {
                        Self::count_owned(&self.owned, &owner, false);
                    }
                }
            }
            Record::Invited {
                room,
                username,
                by,
                at_seq,
            } => {
                if let (Some(room), Some(user)) = (
                    self.rooms.get(room),
                    self.user(&username.to_ascii_lowercase()),
                ) {
                    let mut us = user.lock();
                    let mut rs = room.lock();
                    if rs.last_seq <= *at_seq {
                        Self::apply_invite(&room, &mut rs, &user, &mut us, by);
                    }
                }
            }
            Record::RoomSnapshot {
                id,
                name,
                owner,
                capacity,
                last_seq,
                members,
                entries,
                kept,
                gov,
            } => {
                let saved = gov.as_deref().cloned().unwrap_or_default();
                let gov = Governance {
                    name: name.clone(),
                    owner: owner.clone(),
                    topic: saved.topic,
                    visibility: saved.visibility,
                    moderators: saved.moderators.into_iter().collect(),
                    bans: saved
                        .bans
                        .into_iter()
                        .map(|b| (b.username.to_ascii_lowercase(), b))
                        .collect(),
                    mutes: saved.mutes.into_iter().collect(),
                    invites: saved.invites.into_iter().collect(),
                    dm: saved.dm.clone(),
                };
                let room = self.new_room(id, gov, *capacity);
                if !self.rooms.insert(room.clone(), name) {
                    return;
                }
                match &saved.dm {
                    Some((a, b)) => self.remember_dm(a, b, id),
                    None => Self::count_owned(&self.owned, owner, true),
                }
                let mut rs = room.lock();
                // The kept entries follow (format 2) and bring `last_seq` up to date as they
                // are restored; a format-1 snapshot has them inline.
                rs.last_seq = last_seq.saturating_sub(*kept + entries.len() as u64);
                for e in entries {
                    rs.restore(e.seq, KeptEntry::from_entry(e));
                }
                rs.last_seq = rs.last_seq.max(last_seq.saturating_sub(*kept));
                room.set_committed(*last_seq);
                for (i, name) in members.iter().enumerate() {
                    if let Some(user) = self.user(&name.to_ascii_lowercase()) {
                        let since = saved.joined.get(i).copied().unwrap_or(i as u64);
                        let mut us = user.lock();
                        Self::apply_membership(&room, &mut rs, &user, &mut us, Some(since));
                        if let Some(m) = rs.members.get_mut(&user.key) {
                            m.read_seq = saved.read.get(i).copied().unwrap_or(0);
                        }
                    }
                }
                for name in &saved.unanswered {
                    rs.set_unanswered(&name.to_ascii_lowercase(), true);
                }
                let invited: Vec<String> = rs.gov.invites.keys().cloned().collect();
                drop(rs);
                for key in invited {
                    if let Some(user) = self.user(&key) {
                        user.lock().invites.push(id.clone());
                    }
                }
            }
            Record::DmUnanswered {
                room,
                username,
                unanswered,
                at_seq,
            } => {
                if let Some(room) = self.rooms.get(room) {
                    let mut rs = room.lock();
                    if rs.last_seq <= *at_seq {
                        rs.set_unanswered(&username.to_ascii_lowercase(), *unanswered);
                    }
                }
            }
            Record::KeptEntries { room, entries } => {
                let Some(room) = self.rooms.get(room) else {
                    return;
                };
                let mut rs = room.lock();
                for e in entries {
                    rs.append(e.clone());
                }
            }
            Record::InviteCodeCreated {
                hash,
                uses,
                expires,
            } => self.apply_invite_created(hash, *uses, *expires),
            Record::InviteCodeUsed { hash, remaining } => self.apply_invite_used(hash, *remaining),
            Record::UserDisabled { username, disabled } => self.apply_disabled(username, *disabled),
            Record::LastSeen { seen } => self.apply_last_seen(seen),
            Record::Entry(entry) => {
                let Some(room) = self.rooms.get(&entry.room) else {
                    return;
                };
                let facts = Facts {
                    kind: entry.kind,
                    from: &entry.from,
                    ts: entry.ts,
                    text: entry.text.as_deref(),
                    extra: &entry.extra,
                };
                let user = facts
                    .subject()
                    .and_then(|name| self.user(&name.to_ascii_lowercase()));
                let mut us = user.as_ref().map(|u| u.lock());
                let mut rs = room.lock();
                if rs.restore(entry.seq, KeptEntry::from_entry(entry)) {
                    let subject = user.as_ref().zip(us.as_deref_mut());
                    self.apply_effects(&room, &mut rs, entry.seq, &facts, subject);
                }
                room.set_committed(entry.seq);
            }
        }
    }

    /// Moves members' read markers up to the given seqs (clamped to the room's last seq; a
    /// lower one is ignored). Returns the members whose marker moved, with where to.
    fn move_read_markers(&self, room_id: &str, markers: &[(String, u64)]) -> Vec<(Arc<User>, u64)> {
        let Some(room) = self.rooms.get(room_id) else {
            return Vec::new();
        };
        let mut rs = room.lock();
        let top = rs.last_seq;
        markers
            .iter()
            .filter_map(|(name, seq)| {
                let m = rs.members.get_mut(&name.to_ascii_lowercase())?;
                let seq = (*seq).min(top);
                (seq > m.read_seq).then(|| {
                    m.read_seq = seq;
                    (m.user.clone(), seq)
                })
            })
            .collect()
    }

    fn new_room(&self, id: &str, gov: Governance, capacity: u32) -> Arc<Room> {
        Arc::new(Room::new(id.to_string(), gov, capacity, self.cfg.history))
    }

    /// Counts a room created (`up`) or deleted for its owner.
    fn count_owned(owned: &Mutex<HashMap<String, usize>>, owner: &str, up: bool) {
        let mut owned = owned.lock().unwrap_or_else(|e| e.into_inner());
        let key = owner.to_ascii_lowercase();
        if up {
            *owned.entry(key).or_default() += 1;
        } else if let Some(n) = owned.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                owned.remove(&key);
            }
        }
    }

    fn apply_user(&self, users: &mut BTreeMap<String, Arc<User>>, name: &str, hash: String) {
        let user = User::new(name, hash, self.cfg.rate_burst, self.cfg.rest_rate_burst);
        users.insert(user.key.clone(), Arc::new(user));
    }

    /// Makes `user` a member since the join of seq `since`, or (`None`) removes them.
    /// Connections subscribe and unsubscribe when the entry is published (`timeline`), not
    /// here.
    fn apply_membership(
        room: &Room,
        rs: &mut rooms::RoomState,
        user: &Arc<User>,
        us: &mut users::UserState,
        since: Option<u64>,
    ) {
        match since {
            Some(since) => {
                rs.members
                    .insert(user.key.clone(), Member::new(user.clone(), since));
                rs.gov.invites.remove(&user.key);
                if !us.rooms.contains(&room.id) {
                    us.rooms.push(room.id.clone());
                }
            }
            None => {
                rs.members.remove(&user.key);
                rs.gov.moderators.remove(&user.key);
                us.rooms.retain(|r| *r != room.id);
            }
        }
    }

    /// Records a pending invitation of `user` by `by`.
    fn apply_invite(
        room: &Room,
        rs: &mut rooms::RoomState,
        user: &User,
        us: &mut users::UserState,
        by: &str,
    ) {
        if rs.members.contains_key(&user.key) || rs.gov.bans.contains_key(&user.key) {
            return;
        }
        rs.gov.invites.insert(user.key.clone(), by.to_string());
        us.invites.retain(|id| *id != room.id);
        us.invites.push(room.id.clone());
        if us.invites.len() > users::MAX_INVITES_KEPT {
            us.invites.remove(0);
        }
    }

    /// What an entry changes besides the timeline: membership, roles, bans, mutes and the
    /// room's fields. `subject` is the user a join, leave, kick or ban moves in or out of
    /// the room, with their state locked. The live path calls this right after appending
    /// the entry; replay calls it for each entry it restores.
    fn apply_effects(
        &self,
        room: &Room,
        rs: &mut rooms::RoomState,
        seq: u64,
        f: &Facts<'_>,
        subject: Option<(&Arc<User>, &mut users::UserState)>,
    ) {
        let target = f.extra.target.as_deref().unwrap_or_default();
        let target_key = target.to_ascii_lowercase();
        match f.kind {
            EntryKind::Message => {
                // Writing in a DM is acting in it: it counts toward the writer's room limit.
                rs.set_unanswered(&f.from.to_ascii_lowercase(), false);
            }
            EntryKind::Join => {
                if let Some((user, us)) = subject {
                    Self::apply_membership(room, rs, user, us, Some(seq));
                }
            }
            EntryKind::Leave | EntryKind::Kick | EntryKind::Ban => {
                if let Some((user, us)) = subject {
                    Self::apply_membership(room, rs, user, us, None);
                }
                if f.kind != EntryKind::Leave {
                    rs.members.remove(&target_key);
                    rs.gov.moderators.remove(&target_key);
                    rs.gov.invites.remove(&target_key);
                }
                if f.kind == EntryKind::Ban {
                    rs.gov.mutes.remove(&target_key);
                    let ban = crate::protocol::BanView {
                        username: target.to_string(),
                        by: f.from.to_string(),
                        ts: f.ts,
                        reason: f.text.map(str::to_string),
                    };
                    rs.gov.bans.insert(target_key, ban);
                }
            }
            EntryKind::Unban => {
                rs.gov.bans.remove(&target_key);
            }
            EntryKind::Mute => {
                rs.gov.mutes.insert(target_key, f.extra.until.unwrap_or(0));
            }
            EntryKind::Unmute => {
                rs.gov.mutes.remove(&target_key);
            }
            EntryKind::Role => match f.text {
                Some("owner") => {
                    let old = std::mem::replace(&mut rs.gov.owner, target.to_string());
                    rs.gov.moderators.remove(&target_key);
                    Self::count_owned(&self.owned, &old, false);
                    Self::count_owned(&self.owned, target, true);
                }
                Some("moderator") => {
                    rs.gov.moderators.insert(target_key);
                }
                _ => {
                    rs.gov.moderators.remove(&target_key);
                }
            },
            EntryKind::Edit | EntryKind::Delete => {
                if let Some(target) = f.extra.refers {
                    let edit = (f.kind == EntryKind::Edit).then_some((f.text, f.extra));
                    Self::rewrite_message(rs, target, edit);
                }
            }
            EntryKind::Update => {
                let Some(changes) = &f.extra.changes else {
                    return;
                };
                if let Some(name) = &changes.name {
                    rs.gov.name = name.clone();
                    self.rooms.rename(&room.id, name);
                }
                if let Some(topic) = &changes.topic {
                    rs.gov.topic = topic.clone();
                }
                if let Some(v) = changes.visibility {
                    room.set_visibility(rs, v);
                }
            }
        }
    }
}

/// The parts of an entry that `Core::apply_effects` reads.
pub(crate) struct Facts<'a> {
    pub(crate) kind: EntryKind,
    pub(crate) from: &'a str,
    pub(crate) ts: u64,
    pub(crate) text: Option<&'a str>,
    pub(crate) extra: &'a EntryExtra,
}

impl Facts<'_> {
    /// The user whose membership the entry changes: the sender of a join or leave, the
    /// target of a kick or ban.
    fn subject(&self) -> Option<&str> {
        match self.kind {
            EntryKind::Join | EntryKind::Leave => Some(self.from),
            EntryKind::Kick | EntryKind::Ban => self.extra.target.as_deref(),
            _ => None,
        }
    }
}

/// A room's members in the order they joined, and its governance, as a snapshot record
/// keeps them.
fn governance_record(rs: &rooms::RoomState) -> (Vec<String>, GovernanceRecord) {
    let mut members: Vec<&Member> = rs.members.values().collect();
    members.sort_by_key(|m| m.since);
    let now = now_ms();
    let names = members.iter().map(|m| m.user.name.clone()).collect();
    let read = members.iter().map(|m| m.read_seq).collect();
    let gov = GovernanceRecord {
        visibility: rs.gov.visibility,
        topic: rs.gov.topic.clone(),
        joined: members.iter().map(|m| m.since).collect(),
        moderators: rs.gov.moderators.iter().cloned().collect(),
        bans: rs.gov.bans.values().cloned().collect(),
        mutes: rs
            .gov
            .mutes
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(k, until)| (k.clone(), *until))
            .collect(),
        invites: rs
            .gov
            .invites
            .iter()
            .map(|(k, by)| (k.clone(), by.clone()))
            .collect(),
        dm: rs.gov.dm.clone(),
        read,
        unanswered: members
            .iter()
            .filter(|m| m.unanswered)
            .map(|m| m.user.name.clone())
            .collect(),
    };
    (names, gov)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Entry;

    fn core() -> Core {
        Core::new(
            Arc::default(),
            Arc::default(),
            Store::memory(),
            Filter::default(),
        )
    }

    fn entry(room: &str, seq: u64, kind: EntryKind, from: &str, text: Option<&str>) -> Entry {
        Entry {
            room: room.into(),
            seq,
            ts: seq,
            kind,
            from: from.into(),
            text: text.map(str::to_string),
            nonce: None,
            extra: EntryExtra::default(),
        }
    }

    fn kept_seqs(c: &Core, room: &str) -> (Vec<u64>, u64) {
        let room = c.rooms.get(room).expect("room");
        let rs = room.lock();
        let seqs = rs.entries_between(0, rs.last_seq).map(|(s, _)| s).collect();
        (seqs, rs.last_seq)
    }

    #[test]
    fn a_format_1_room_snapshot_restores_its_inline_entries() {
        let c = core();
        c.apply(&Record::UserRegistered {
            username: "Al".into(),
            hash: String::new(),
            ts: 0,
        });
        c.apply(&Record::RoomSnapshot {
            id: "r".into(),
            name: "general".into(),
            owner: "Al".into(),
            capacity: 10,
            last_seq: 7,
            members: vec!["Al".into()],
            entries: (5..=7)
                .map(|s| entry("r", s, EntryKind::Message, "Al", Some("hi")))
                .collect(),
            kept: 0,
            gov: None,
        });
        assert_eq!(kept_seqs(&c, "r"), (vec![5, 6, 7], 7));
    }

    #[test]
    fn replaying_a_room_deletion_is_idempotent_and_keeps_the_owned_count() {
        let c = core();
        c.apply(&Record::UserRegistered {
            username: "Al".into(),
            hash: String::new(),
            ts: 0,
        });
        let created = |id: &str| Record::RoomCreated {
            id: id.into(),
            name: "n".into(),
            owner: "Al".into(),
            capacity: 5,
            ts: 0,
            visibility: Default::default(),
            topic: String::new(),
            dm_with: None,
        };
        let deleted = |id: &str| Record::RoomDeleted {
            id: id.into(),
            by: None,
        };
        for rec in [created("r"), created("r"), created("s"), deleted("r")] {
            c.apply(&rec);
        }
        assert_eq!(c.owned_by("al"), 1);
        // Again, and of a room never seen: nothing changes.
        c.apply(&deleted("r"));
        c.apply(&deleted("nowhere"));
        c.apply(&Record::Entry(entry("r", 2, EntryKind::Join, "Al", None)));
        assert!(c.rooms.get("r").is_none());
        assert!(c.rooms.get("s").is_some());
        assert_eq!(c.owned_by("al"), 1);
        assert!(c.user("al").unwrap().lock().rooms.is_empty());
        let al = c.user("al").unwrap();
        let listed = c.rooms(&al, "", None, 10).unwrap();
        assert_eq!(listed.rooms.len(), 1);
    }

    #[test]
    fn a_dm_side_added_unanswered_answers_by_writing_and_a_repeated_mark_is_skipped() {
        let c = core();
        for name in ["Al", "Bo"] {
            c.apply(&Record::UserRegistered {
                username: name.into(),
                hash: String::new(),
                ts: 0,
            });
        }
        c.apply(&Record::RoomCreated {
            id: "d".into(),
            name: "Al, Bo".into(),
            owner: "Al".into(),
            capacity: 2,
            ts: 0,
            visibility: crate::protocol::Visibility::Private,
            topic: String::new(),
            dm_with: Some("Bo".into()),
        });
        let mark = Record::DmUnanswered {
            room: "d".into(),
            username: "Bo".into(),
            unanswered: true,
            at_seq: 2,
        };
        c.apply(&Record::Entry(entry("d", 1, EntryKind::Join, "Al", None)));
        c.apply(&Record::Entry(entry("d", 2, EntryKind::Join, "Bo", None)));
        c.apply(&mark);
        let unanswered = |who: &str| {
            let user = c.user(who).unwrap();
            let mut us = user.lock();
            c.room_load(&user, &mut us).unanswered
        };
        assert_eq!((unanswered("al"), unanswered("bo")), (0, 1));
        c.apply(&Record::Entry(entry(
            "d",
            3,
            EntryKind::Message,
            "Bo",
            Some("hi"),
        )));
        assert_eq!(unanswered("bo"), 0, "writing is answering");
        // The journal after a snapshot may repeat the mark: the room has gone past it.
        c.apply(&mark);
        assert_eq!(unanswered("bo"), 0);
    }

    #[test]
    fn replaying_what_a_snapshot_holds_changes_nothing() {
        let c = core();
        let user = Record::UserRegistered {
            username: "Al".into(),
            hash: "h".into(),
            ts: 0,
        };
        c.apply(&user);
        c.apply(&Record::RoomSnapshot {
            id: "r".into(),
            name: "general".into(),
            owner: "Al".into(),
            capacity: 10,
            last_seq: 3,
            members: vec!["Al".into()],
            entries: Vec::new(),
            kept: 2,
            gov: None,
        });
        c.apply(&Record::KeptEntries {
            room: "r".into(),
            entries: vec![
                KeptEntry::new(2, EntryKind::Message, "Al", Some("two"), None),
                KeptEntry::new(3, EntryKind::Message, "Al", Some("three"), None),
            ],
        });
        // The journal after the snapshot repeats some of it, then goes on.
        c.apply(&user);
        c.apply(&Record::RoomCreated {
            id: "r".into(),
            name: "other".into(),
            owner: "Al".into(),
            capacity: 1,
            ts: 0,
            visibility: Default::default(),
            topic: String::new(),
            dm_with: None,
        });
        c.apply(&Record::Entry(entry("r", 3, EntryKind::Leave, "Al", None)));
        c.apply(&Record::Entry(entry(
            "r",
            4,
            EntryKind::Message,
            "Al",
            Some("four"),
        )));
        assert_eq!(kept_seqs(&c, "r"), (vec![2, 3, 4], 4));
        let room = c.rooms.get("r").unwrap();
        let rs = room.lock();
        assert_eq!(rs.gov.name, "general");
        assert!(
            rs.members.contains_key("al"),
            "the repeated leave was skipped"
        );
        let texts: Vec<_> = rs
            .ring
            .iter()
            .map(|e| e.text().map(str::to_string))
            .collect();
        assert_eq!(
            texts,
            [
                Some("two".into()),
                Some("three".into()),
                Some("four".into())
            ]
        );
        drop(rs);
        assert_eq!(c.user("al").unwrap().lock().hash, "h");
    }
}
