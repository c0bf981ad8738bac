//! The sharded room table and its listing index: rooms by id, sharded by a hash of the id,
//! and every room by (name, id) so that a page of the listing walks from its cursor.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};

use super::rooms::Room;

/// Shards of the room table. Lookups take one shard's read lock, so joins and messages in
/// different rooms rarely meet on a lock.
const SHARDS: usize = 16;

/// Deleted rooms whose place in the listing order is remembered, so that a listing whose
/// cursor room was deleted meanwhile goes on where it was.
const REMEMBERED_DELETIONS: usize = 4096;

/// A room's place in the listing: its name, then its id.
type ListKey = (String, String);

/// Every room by (name, id), with its lowercase name for `q`, and each room's key by id.
#[derive(Debug, Default)]
struct Index {
    order: BTreeMap<ListKey, (String, Arc<Room>)>,
    keys: HashMap<String, ListKey>,
}

/// Rooms by id, sharded by a hash of the id, and an index in listing order.
#[derive(Debug)]
pub struct RoomTable {
    shards: Vec<RwLock<HashMap<String, Arc<Room>>>>,
    hasher: RandomState,
    /// A page of the listing walks from its cursor instead of sorting every room. Locked
    /// after a shard, and after a room's lock (a rename); never locks a room itself.
    index: RwLock<Index>,
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

    /// Inserts `room`, listed under `name`, unless its id is taken; returns whether it was
    /// inserted.
    pub fn insert(&self, room: Arc<Room>, name: &str) -> bool {
        let mut shard = self
            .shard(&room.id)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if shard.contains_key(&room.id) {
            return false;
        }
        shard.insert(room.id.clone(), room.clone());
        let key = (name.to_string(), room.id.clone());
        let mut index = self.index();
        index.keys.insert(room.id.clone(), key.clone());
        index.order.insert(key, (name.to_lowercase(), room));
        true
    }

    fn index(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists a room under its new name.
    pub fn rename(&self, id: &str, name: &str) {
        let mut index = self.index();
        let Some(old) = index.keys.get(id).cloned() else {
            return;
        };
        if let Some(entry) = index.order.remove(&old) {
            let key = (name.to_string(), id.to_string());
            index.keys.insert(id.to_string(), key.clone());
            index.order.insert(key, (name.to_lowercase(), entry.1));
        }
    }

    /// Removes a room; returns it if it was there.
    pub fn remove(&self, id: &str) -> Option<Arc<Room>> {
        let mut shard = self.shard(id).write().unwrap_or_else(|e| e.into_inner());
        let room = shard.remove(id)?;
        let mut index = self.index();
        let key = index
            .keys
            .remove(id)
            .unwrap_or_else(|| (String::new(), id.to_string()));
        index.order.remove(&key);
        drop(index);
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
    /// lowercase name contains `q` (already lowercase) and that `visible` keeps. `None`
    /// when `after` is a room this table never held (or forgot it deleted), or one `visible`
    /// does not keep. The work is the
    /// rooms walked, not all rooms. `visible` must not lock a room.
    pub fn page(
        &self,
        q: &str,
        after: Option<&str>,
        limit: usize,
        visible: impl Fn(&Room) -> bool,
    ) -> Option<Page> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let start = match after {
            None => Bound::Unbounded,
            Some(id) => Bound::Excluded(match index.keys.get(id) {
                // A cursor the caller may not see is unknown: starting at its place would
                // tell where its name sorts, and bisection would spell the name out.
                Some(key) => match index.order.get(key) {
                    Some((_, room)) if visible(room) => key.clone(),
                    _ => return None,
                },
                None => {
                    let deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
                    deleted.0.get(id)?.clone()
                }
            }),
        };
        let mut matching = index
            .order
            .range((start, Bound::Unbounded))
            .filter(|(_, (lower, room))| lower.contains(q) && visible(room))
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
