//! Rooms owned per owner (`--max-owned-rooms`): one piece of the state, moved by the
//! records that make, delete or hand on a room (`RoomCreated`, `RoomDeleted`, a `role`
//! entry making someone the owner). DMs are nobody's to own.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Rooms per lowercase owner name. Locked last: nothing is locked while it is held.
#[derive(Debug, Default)]
pub(crate) struct Owners(Mutex<HashMap<String, usize>>);

impl Owners {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a room made (`up`) or deleted for `owner`, in any case.
    pub(crate) fn count(&self, owner: &str, up: bool) {
        let mut owned = self.lock();
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

    /// Rooms `key` (lowercase) owns.
    pub(crate) fn of(&self, key: &str) -> usize {
        self.lock().get(key).copied().unwrap_or(0)
    }
}
