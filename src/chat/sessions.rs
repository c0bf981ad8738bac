//! Sessions: one piece of the state, with its own apply (`SessionStarted`, `SessionEnded`).
//! A session is known by the SHA-256 of its token only; each user also lists theirs
//! (`UserState::sessions`), locked after this table.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{hex, Record, Session, User};

/// Sessions by token hash. Locked before a user.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `SessionStarted`: a session already known keeps what it has.
    pub(crate) fn apply_started(&self, user: Arc<User>, hash: [u8; 32], created: u64) {
        if let Entry::Vacant(slot) = self.lock().entry(hash) {
            user.lock().sessions.push(hash);
            slot.insert(Session { user, created });
        }
    }

    /// Applies `SessionEnded`; returns the session's user, if it was known.
    pub(crate) fn apply_ended(&self, hash: &[u8; 32]) -> Option<Arc<User>> {
        let s = self.lock().remove(hash)?;
        s.user.lock().sessions.retain(|h| h != hash);
        Some(s.user)
    }

    /// The session's user and when it started.
    pub(crate) fn get(&self, hash: &[u8; 32]) -> Option<(Arc<User>, u64)> {
        self.lock().get(hash).map(|s| (s.user.clone(), s.created))
    }

    pub(crate) fn contains(&self, hash: &[u8; 32]) -> bool {
        self.lock().contains_key(hash)
    }

    /// The sessions for which `ended` says yes, given each one's user and start.
    pub(crate) fn select(&self, ended: impl Fn(&User, u64) -> bool) -> Vec<[u8; 32]> {
        self.lock()
            .iter()
            .filter(|(_, s)| ended(&s.user, s.created))
            .map(|(h, _)| *h)
            .collect()
    }

    /// Every session as the record a snapshot keeps.
    pub(crate) fn records(&self) -> Vec<Record> {
        self.lock()
            .iter()
            .map(|(hash, s)| Record::SessionStarted {
                token_hash: hex(hash),
                username: s.user.name.clone(),
                created: s.created,
            })
            .collect()
    }
}
