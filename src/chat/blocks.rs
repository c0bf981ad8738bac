//! Who blocks whom: one piece of the state, with its own apply ([`Record::Blocked`]). A
//! block refuses the blocked side's messages in a DM (`Core::dm_check`), keeps their
//! invitations from being pushed and their typing from being shown; nothing else.

use std::collections::{BTreeSet, HashMap};
use std::sync::{RwLock, RwLockReadGuard};

use super::Record;

/// Blocker's lowercase name to the lowercase names they block. Locked last: nothing is
/// locked while it is held.
#[derive(Debug, Default)]
pub(crate) struct Blocks(RwLock<HashMap<String, BTreeSet<String>>>);

impl Blocks {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, BTreeSet<String>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `username` blocks (or no longer blocks) `target`, in any case.
    pub(crate) fn apply(&self, username: &str, target: &str, blocked: bool) {
        let mut blocks = self.0.write().unwrap_or_else(|e| e.into_inner());
        let key = username.to_ascii_lowercase();
        let target = target.to_ascii_lowercase();
        if blocked {
            blocks.entry(key).or_default().insert(target);
        } else if let Some(set) = blocks.get_mut(&key) {
            set.remove(&target);
            if set.is_empty() {
                blocks.remove(&key);
            }
        }
    }

    /// Whether `blocker` (lowercase) blocks `blocked` (lowercase).
    pub(crate) fn blocks(&self, blocker: &str, blocked: &str) -> bool {
        self.read()
            .get(blocker)
            .is_some_and(|s| s.contains(blocked))
    }

    /// The lowercase names `key` blocks, in order.
    pub(crate) fn of(&self, key: &str) -> Vec<String> {
        self.read()
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Keeps the items of `items` whose user (by lowercase name, from `key`) does not block
    /// `blocked`, under one read of the table.
    pub(crate) fn retain_unblocking<T>(
        &self,
        items: impl Iterator<Item = T>,
        key: impl Fn(&T) -> &str,
        blocked: &str,
    ) -> Vec<T> {
        let blocks = self.read();
        items
            .filter(|t| !blocks.get(key(t)).is_some_and(|s| s.contains(blocked)))
            .collect()
    }

    /// Every block as the record a snapshot keeps.
    pub(crate) fn records(&self) -> Vec<Record> {
        self.read()
            .iter()
            .flat_map(|(who, set)| {
                set.iter().map(move |target| Record::Blocked {
                    username: who.clone(),
                    target: target.clone(),
                    blocked: true,
                })
            })
            .collect()
    }
}
