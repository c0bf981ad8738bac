//! The sharded room table, its listing index, and each room's state: members, subscribed
//! connections and the history ring.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::ratelimit::RoomBudget;
use super::ring::Ring;
use super::users::{Conn, User};
use crate::protocol::RoomView;
use crate::store::KeptEntry;

/// Shards of the room table. Lookups take one shard's read lock, so joins and messages in
/// different rooms rarely meet on a lock.
const SHARDS: usize = 16;

/// Deleted rooms whose place in the listing order is remembered, so that a listing whose
/// cursor room was deleted meanwhile goes on where it was.
const REMEMBERED_DELETIONS: usize = 4096;

#[derive(Debug)]
pub struct Room {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub capacity: u32,
    /// Highest seq whose record the store has acknowledged. Readers (history, sync, hello)
    /// see only entries up to it, so nobody is told about an entry a crash could lose.
    pub committed_seq: AtomicU64,
    state: Mutex<RoomState>,
}

#[derive(Debug)]
pub struct RoomState {
    /// Members by lowercase username.
    pub members: BTreeMap<String, Arc<User>>,
    /// Every connection of every member. Copy-on-write: a broadcast clones the `Arc`, and a
    /// change copies the list only while a broadcast still holds the old one.
    pub subscribers: Arc<Vec<Arc<Conn>>>,
    /// The last `--history` entries; the newest has seq `last_seq`, and seqs are consecutive.
    pub ring: Ring<KeptEntry>,
    pub last_seq: u64,
    /// Messages and bytes the room may still take (`--room-rate-limit`, `--room-byte-rate`).
    /// Not kept across restarts: a restarted room starts with a full budget.
    pub budget: RoomBudget,
    /// Set when the last member left and the room was removed from the table: a request
    /// that found it just before must not join it.
    pub deleted: bool,
}

impl Room {
    pub fn new(id: String, name: String, owner: String, capacity: u32, history: usize) -> Room {
        Room {
            id,
            name,
            owner,
            capacity,
            committed_seq: AtomicU64::new(0),
            state: Mutex::new(RoomState {
                members: BTreeMap::new(),
                subscribers: Arc::new(Vec::new()),
                ring: Ring::new(history),
                last_seq: 0,
                budget: RoomBudget::default(),
                deleted: false,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, RoomState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn committed(&self) -> u64 {
        self.committed_seq.load(Ordering::Acquire)
    }

    pub fn set_committed(&self, seq: u64) {
        self.committed_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// The contract's `Room`, as of the last committed entry.
    pub fn view(&self, state: &RoomState) -> RoomView {
        RoomView {
            id: self.id.clone(),
            name: self.name.clone(),
            owner: self.owner.clone(),
            members: state.members.len(),
            capacity: self.capacity,
            last_seq: self.committed().min(state.last_seq),
        }
    }
}

impl RoomState {
    /// Appends the room's next entry; returns its seq.
    pub fn append(&mut self, entry: KeptEntry) -> u64 {
        self.last_seq += 1;
        self.ring.push(entry);
        self.last_seq
    }

    /// Appends an entry read back from the journal with its seq. One already kept (a
    /// snapshot may hold entries the journal after it repeats) changes nothing; after a gap
    /// (which recovery never makes) the ring starts afresh, since its seqs must be
    /// consecutive. Returns whether it was appended.
    pub fn restore(&mut self, seq: u64, entry: KeptEntry) -> bool {
        if seq <= self.last_seq {
            return false;
        }
        if seq != self.last_seq + 1 {
            self.ring.clear();
            self.last_seq = seq - 1;
        }
        self.append(entry);
        true
    }

    /// Seq of the oldest kept entry; `last_seq + 1` when none is kept.
    pub fn first_seq(&self) -> u64 {
        self.last_seq + 1 - self.ring.len() as u64
    }

    /// Kept entries with `from < seq <= to` and their seqs, oldest first.
    pub fn entries_between(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, &KeptEntry)> {
        let first = self.first_seq();
        let start = from.saturating_add(1).max(first) - first;
        let end = to.min(self.last_seq).saturating_add(1).max(first) - first;
        self.ring
            .range(start as usize, end as usize)
            .enumerate()
            .map(move |(i, e)| (first + start + i as u64, e))
    }

    /// Every kept entry, oldest first, for a snapshot.
    pub fn kept(&self) -> Vec<KeptEntry> {
        self.ring.iter().cloned().collect()
    }

    pub fn subscribe(&mut self, conns: &[Arc<Conn>]) {
        let subs = Arc::make_mut(&mut self.subscribers);
        for c in conns {
            if !subs.iter().any(|s| s.id == c.id) {
                subs.push(c.clone());
            }
        }
    }

    pub fn unsubscribe(&mut self, conn_ids: &[u64]) {
        if self.subscribers.iter().any(|s| conn_ids.contains(&s.id)) {
            Arc::make_mut(&mut self.subscribers).retain(|s| !conn_ids.contains(&s.id));
        }
    }

    /// Unsubscribes every connection of a user (by lowercase name), closed ones included.
    pub fn unsubscribe_user(&mut self, key: &str) {
        if self.subscribers.iter().any(|s| s.user.key == key) {
            Arc::make_mut(&mut self.subscribers).retain(|s| s.user.key != key);
        }
    }
}

/// A room's place in the listing: its name, then its id.
type ListKey = (String, String);

/// Rooms by id, sharded by a hash of the id, and an index in listing order.
#[derive(Debug)]
pub struct RoomTable {
    shards: Vec<RwLock<HashMap<String, Arc<Room>>>>,
    hasher: RandomState,
    /// Every room by (name, id), with its lowercase name for `q`: a page of the listing
    /// walks from its cursor instead of sorting every room. Locked after a shard.
    index: RwLock<BTreeMap<ListKey, (String, Arc<Room>)>>,
    /// The listing keys of the last `REMEMBERED_DELETIONS` deleted rooms, by id.
    deleted: Mutex<(HashMap<String, ListKey>, VecDeque<String>)>,
}

impl Default for RoomTable {
    fn default() -> Self {
        RoomTable {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            index: RwLock::default(),
            deleted: Mutex::default(),
        }
    }
}

/// One page of the room listing.
pub struct Page {
    pub rooms: Vec<Arc<Room>>,
    /// The id to pass as `after` for the following page; `None` on the last one.
    pub next: Option<String>,
}

impl RoomTable {
    fn shard(&self, id: &str) -> &RwLock<HashMap<String, Arc<Room>>> {
        let i = self.hasher.hash_one(id) as usize % SHARDS;
        &self.shards[i]
    }

    pub fn get(&self, id: &str) -> Option<Arc<Room>> {
        let shard = self.shard(id).read().unwrap_or_else(|e| e.into_inner());
        shard.get(id).cloned()
    }

    /// Inserts `room` unless its id is taken; returns whether it was inserted.
    pub fn insert(&self, room: Arc<Room>) -> bool {
        let mut shard = self
            .shard(&room.id)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if shard.contains_key(&room.id) {
            return false;
        }
        shard.insert(room.id.clone(), room.clone());
        let key = (room.name.clone(), room.id.clone());
        let lower = room.name.to_lowercase();
        self.index().insert(key, (lower, room));
        true
    }

    fn index(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ListKey, (String, Arc<Room>)>> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes a room; returns it if it was there.
    pub fn remove(&self, id: &str) -> Option<Arc<Room>> {
        let mut shard = self.shard(id).write().unwrap_or_else(|e| e.into_inner());
        let room = shard.remove(id)?;
        let key = (room.name.clone(), room.id.clone());
        self.index().remove(&key);
        let mut deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
        let (keys, order) = &mut *deleted;
        if keys.insert(id.to_string(), key).is_none() {
            order.push_back(id.to_string());
            if order.len() > REMEMBERED_DELETIONS {
                if let Some(old) = order.pop_front() {
                    keys.remove(&old);
                }
            }
        }
        Some(room)
    }

    /// Up to `limit` rooms in listing order after the room `after`, keeping those whose
    /// lowercase name contains `q` (already lowercase). `None` when `after` is a room this
    /// table never held (or forgot it deleted). The work is the rooms walked, not all rooms.
    pub fn page(&self, q: &str, after: Option<&str>, limit: usize) -> Option<Page> {
        let start = match after {
            None => Bound::Unbounded,
            Some(id) => Bound::Excluded(match self.get(id) {
                Some(room) => (room.name.clone(), room.id.clone()),
                None => {
                    let deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
                    deleted.0.get(id)?.clone()
                }
            }),
        };
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut matching = index
            .range((start, Bound::Unbounded))
            .filter(|(_, (lower, _))| lower.contains(q))
            .map(|(_, (_, room))| room);
        let rooms: Vec<Arc<Room>> = matching.by_ref().take(limit).cloned().collect();
        let next = match matching.next() {
            Some(_) => rooms.last().map(|r| r.id.clone()),
            None => None,
        };
        Some(Page { rooms, next })
    }

    /// Every room, in no particular order.
    pub fn all(&self) -> Vec<Arc<Room>> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            out.extend(shard.values().cloned());
        }
        out
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}
