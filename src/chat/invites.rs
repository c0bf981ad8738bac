//! Invite codes: one piece of the state, with its own apply (`InviteCodeCreated`,
//! `InviteCodeUsed`). A code is known by its SHA-256 only; a registration under way holds a
//! use of it ([`InviteHold`]) while its password is hashed, so no more registrations run at
//! once than the code has uses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{hex, token_hash, unhex, ChatError, Record};
use crate::config;

/// One live invite code.
#[derive(Debug, Clone)]
pub(crate) struct Invite {
    /// Uses left, as the journal knows them.
    pub remaining: u32,
    /// Registrations under way that took a use; spent or given back when they end.
    pub held: u32,
    /// ts after which the code no longer works.
    pub expires: u64,
}

type Table = HashMap<[u8; 32], Invite>;

/// The live invite codes, by the SHA-256 of the code. Shared (`Arc`) with the holds taken
/// from it and with a snapshot on its own thread.
#[derive(Debug, Default, Clone)]
pub(crate) struct Invites(Arc<Mutex<Table>>);

impl Invites {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a code good for `uses` registrations until `expires`, once `place` took its
    /// record's place in the store; refused when `MAX_INVITE_CODES` are live at `now`.
    pub(crate) fn add<T>(
        &self,
        now: u64,
        hash: [u8; 32],
        (uses, expires): (u32, u64),
        place: impl FnOnce() -> Result<T, ChatError>,
    ) -> Result<T, ChatError> {
        let mut invites = self.lock();
        invites.retain(|_, inv| inv.expires > now || inv.held > 0);
        if invites.len() >= config::MAX_INVITE_CODES {
            return Err(ChatError::BadRequest(format!(
                "{} invite codes are live already; let some expire",
                config::MAX_INVITE_CODES
            )));
        }
        let placed = place()?;
        invites.insert(
            hash,
            Invite {
                remaining: uses,
                held: 0,
                expires,
            },
        );
        Ok(placed)
    }

    /// Forgets a code (one the store failed to keep).
    pub(crate) fn remove(&self, hash: &[u8; 32]) {
        self.lock().remove(hash);
    }

    /// Takes one use of a live code for a registration under way, or `invite_required`.
    pub(crate) fn take(&self, now: u64, code: Option<&str>) -> Result<InviteHold, ChatError> {
        let hash = token_hash(code.ok_or(ChatError::InviteRequired)?);
        let mut invites = self.lock();
        match invites.get_mut(&hash) {
            Some(inv) if inv.expires > now && inv.remaining > inv.held => {
                inv.held += 1;
                Ok(InviteHold {
                    invites: self.clone(),
                    hash,
                    spent: false,
                })
            }
            _ => Err(ChatError::InviteRequired),
        }
    }

    /// Applies `InviteCodeCreated`: a code already known keeps what it has.
    pub(crate) fn apply_created(&self, hash: &str, uses: u32, expires: u64) {
        if let Some(hash) = unhex(hash) {
            self.lock().entry(hash).or_insert(Invite {
                remaining: uses,
                held: 0,
                expires,
            });
        }
    }

    /// Applies `InviteCodeUsed`: uses left only go down.
    pub(crate) fn apply_used(&self, hash: &str, remaining: u32) {
        let Some(hash) = unhex(hash) else { return };
        let mut invites = self.lock();
        if let Some(inv) = invites.get_mut(&hash) {
            inv.remaining = inv.remaining.min(remaining);
            if inv.remaining == 0 && inv.held == 0 {
                invites.remove(&hash);
            }
        }
    }

    /// The codes live at `now` as a snapshot keeps them: created with the uses left.
    pub(crate) fn records(&self, now: u64) -> Vec<Record> {
        self.lock()
            .iter()
            .filter(|(_, inv)| inv.expires > now && inv.remaining > 0)
            .map(|(hash, inv)| Record::InviteCodeCreated {
                hash: hex(hash),
                uses: inv.remaining,
                expires: inv.expires,
            })
            .collect()
    }

    /// Uses left of a code, if it is live.
    #[cfg(test)]
    pub(crate) fn remaining(&self, hash: &[u8; 32]) -> Option<u32> {
        self.lock().get(hash).map(|inv| inv.remaining)
    }
}

/// A use of an invite code taken by a registration under way. Dropped unspent (the
/// registration failed), the use is given back.
pub(crate) struct InviteHold {
    invites: Invites,
    hash: [u8; 32],
    spent: bool,
}

impl InviteHold {
    /// Spends the use; the record that says how many are left.
    pub(crate) fn spend(&mut self) -> Record {
        self.spent = true;
        let mut invites = self.invites.lock();
        let remaining = match invites.get_mut(&self.hash) {
            Some(inv) => {
                inv.held = inv.held.saturating_sub(1);
                inv.remaining = inv.remaining.saturating_sub(1);
                let remaining = inv.remaining;
                if inv.remaining == 0 && inv.held == 0 {
                    invites.remove(&self.hash);
                }
                remaining
            }
            None => 0,
        };
        Record::InviteCodeUsed {
            hash: hex(&self.hash),
            remaining,
        }
    }
}

impl Drop for InviteHold {
    fn drop(&mut self) {
        if self.spent {
            return;
        }
        let mut invites = self.invites.lock();
        if let Some(inv) = invites.get_mut(&self.hash) {
            inv.held = inv.held.saturating_sub(1);
            if inv.remaining == 0 && inv.held == 0 {
                invites.remove(&self.hash);
            }
        }
    }
}
