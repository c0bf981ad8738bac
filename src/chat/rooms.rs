//! The sharded room table and each room's state: members, subscribed connections and the
//! history ring.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
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

/// Rooms by id, sharded by a hash of the id.
#[derive(Debug)]
pub struct RoomTable {
    shards: Vec<RwLock<HashMap<String, Arc<Room>>>>,
    hasher: RandomState,
}

impl Default for RoomTable {
    fn default() -> Self {
        RoomTable {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
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
        shard.insert(room.id.clone(), room);
        true
    }

    /// Removes a room; returns whether it was there.
    pub fn remove(&self, id: &str) -> bool {
        let mut shard = self.shard(id).write().unwrap_or_else(|e| e.into_inner());
        shard.remove(id).is_some()
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
