//! Server administration: who is an admin (`--admin`), invite codes, accounts that admins
//! create, disabling and enabling accounts; and a user changing their own password.
//!
//! Admins are named on the command line only, so being one is not state: nothing about it is
//! journaled. A name given to `--admin` that has no account yet registers only with the admin
//! setup code: a random code made at every start, kept in memory only and written to the log,
//! so only whoever runs the server can make the first admin account. Invite codes and
//! disabled flags are records (`InviteCodeCreated`, `InviteCodeUsed`, `UserDisabled`) like
//! every other change, and a snapshot writes the live codes and the disabled accounts again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

use super::{
    hex, now_ms, password, token_hash, unhex, Auth, ChatError, Commit, Core, Record, User,
};
use crate::config;
use crate::metrics::Metrics;
use crate::protocol::InviteCode;

/// One live invite code, keyed by the SHA-256 of the code.
#[derive(Debug, Clone)]
pub(crate) struct Invite {
    /// Uses left, as the journal knows them.
    pub remaining: u32,
    /// Registrations under way that took a use; spent or given back when they end.
    pub held: u32,
    /// ts after which the code no longer works.
    pub expires: u64,
}

/// The admin setup code: a fresh random code each start (the same 192 bits, URL-safe, as an
/// invite code), never stored. `None` when `--admin` names nobody.
pub(crate) fn new_setup_code(cfg: &config::Config) -> Option<String> {
    (!cfg.admins.is_empty()).then(new_code)
}

/// 192 random bits, URL-safe: an invite code or the admin setup code.
fn new_code() -> String {
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The live invite codes. An `Arc` so a snapshot can read them on its own thread.
pub(crate) type Invites = Arc<Mutex<HashMap<[u8; 32], Invite>>>;

fn lock(invites: &Mutex<HashMap<[u8; 32], Invite>>) -> MutexGuard<'_, HashMap<[u8; 32], Invite>> {
    invites.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut invites = lock(&self.invites);
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
        let mut invites = lock(&self.invites);
        if let Some(inv) = invites.get_mut(&self.hash) {
            inv.held = inv.held.saturating_sub(1);
            if inv.remaining == 0 && inv.held == 0 {
                invites.remove(&self.hash);
            }
        }
    }
}

impl Core {
    /// Whether `user` was named by `--admin`.
    pub fn is_admin(&self, user: &User) -> bool {
        self.is_admin_name(&user.key)
    }

    /// `name` in any case.
    pub(super) fn is_admin_name(&self, name: &str) -> bool {
        self.cfg.admins.iter().any(|a| a.eq_ignore_ascii_case(name))
    }

    /// Whether `key` (lowercase) is a name given to `--admin` that has no account yet: one
    /// that registers only with the admin setup code.
    pub(super) fn awaits_admin(&self, key: &str) -> bool {
        self.is_admin_name(key) && self.user(key).is_none()
    }

    /// The `--admin` names (lowercase, each once, sorted) that have no account yet.
    fn admins_awaited(&self) -> Vec<&str> {
        let awaited = |a: &&String| self.awaits_admin(a);
        let mut names: Vec<&str> = self
            .cfg
            .admins
            .iter()
            .filter(awaited)
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The admin setup code, while some name given to `--admin` has no account yet: the
    /// `invite_code` that registers such a name, whatever `--registration` says. In cluster
    /// mode each node has its own, good for registrations through that node.
    pub fn admin_setup_code(&self) -> Option<String> {
        let code = self.admin_setup.as_ref()?;
        (!self.admins_awaited().is_empty()).then(|| code.clone())
    }

    /// Whether `code` is the admin setup code (compared as hashes, so the time taken says
    /// nothing about the code).
    pub(super) fn is_admin_setup_code(&self, code: Option<&str>) -> bool {
        match (&self.admin_setup, code) {
            (Some(setup), Some(code)) => token_hash(setup) == token_hash(code),
            _ => false,
        }
    }

    /// Logs the admin setup code at WARN, once a start has the state (after recovery, or
    /// once a cluster node has caught up), if some name given to `--admin` has no account.
    pub fn announce_admin_setup(&self) {
        let (Some(code), awaited) = (&self.admin_setup, self.admins_awaited()) else {
            return;
        };
        let names = awaited
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        match awaited.len() {
            0 => {}
            1 => tracing::warn!(
                "admin {names} is not registered yet: register it with the invite code {code} \
                 (one use per admin name; a new code at every start)"
            ),
            _ => tracing::warn!(
                "admins {names} are not registered yet: register them with the invite code \
                 {code} (one use per admin name; a new code at every start)"
            ),
        }
    }

    /// `forbidden` unless `user` is an admin.
    pub fn require_admin(&self, user: &User) -> Result<(), ChatError> {
        if self.is_admin(user) {
            Ok(())
        } else {
            Err(ChatError::Forbidden)
        }
    }

    // ----- invite codes -----

    /// Makes an invite code good for `uses` registrations (default 1) for `expires_in`
    /// seconds (default 7 days). The code is shown only in the answer.
    pub async fn create_invite(
        &self,
        admin: &User,
        uses: Option<u64>,
        expires_in: Option<u64>,
    ) -> Result<InviteCode, ChatError> {
        self.require_admin(admin)?;
        let uses = uses.unwrap_or(1);
        if uses == 0 || uses > u64::from(config::INVITE_USES_MAX) {
            return Err(ChatError::BadRequest(format!(
                "uses must be from 1 to {}",
                config::INVITE_USES_MAX
            )));
        }
        let max_secs = config::INVITE_LIFETIME_MAX.as_secs();
        let secs = expires_in.unwrap_or(config::INVITE_LIFETIME_DEFAULT.as_secs());
        if secs == 0 || secs > max_secs {
            return Err(ChatError::BadRequest(format!(
                "expires_in must be from 1 to {max_secs} seconds"
            )));
        }
        let code = new_code();
        let hash = token_hash(&code);
        let now = now_ms();
        let (uses, expires) = (uses as u32, now + secs * 1000);
        let rec = Record::InviteCodeCreated {
            hash: hex(&hash),
            uses,
            expires,
        };
        let commit = {
            let mut invites = lock(&self.invites);
            invites.retain(|_, inv| inv.expires > now || inv.held > 0);
            if invites.len() >= config::MAX_INVITE_CODES {
                return Err(ChatError::BadRequest(format!(
                    "{} invite codes are live already; let some expire",
                    config::MAX_INVITE_CODES
                )));
            }
            let slot = self.reserve()?;
            invites.insert(
                hash,
                Invite {
                    remaining: uses,
                    held: 0,
                    expires,
                },
            );
            let table = self.invites.clone();
            self.commit(slot, &rec, move || {
                lock(&table).remove(&hash);
            })
        };
        commit.wait().await?;
        Ok(InviteCode {
            code,
            uses,
            expires,
        })
    }

    /// Takes one use of a live invite code for a registration under way, or
    /// `invite_required`.
    pub(super) fn take_invite(
        &self,
        now: u64,
        code: Option<&str>,
    ) -> Result<InviteHold, ChatError> {
        let hash = token_hash(code.ok_or(ChatError::InviteRequired)?);
        let mut invites = lock(&self.invites);
        match invites.get_mut(&hash) {
            Some(inv) if inv.expires > now && inv.remaining > inv.held => {
                inv.held += 1;
                Ok(InviteHold {
                    invites: self.invites.clone(),
                    hash,
                    spent: false,
                })
            }
            _ => Err(ChatError::InviteRequired),
        }
    }

    pub(super) fn apply_invite_created(&self, hash: &str, uses: u32, expires: u64) {
        if let Some(hash) = unhex(hash) {
            lock(&self.invites).entry(hash).or_insert(Invite {
                remaining: uses,
                held: 0,
                expires,
            });
        }
    }

    pub(super) fn apply_invite_used(&self, hash: &str, remaining: u32) {
        let Some(hash) = unhex(hash) else { return };
        let mut invites = lock(&self.invites);
        if let Some(inv) = invites.get_mut(&hash) {
            inv.remaining = inv.remaining.min(remaining);
            if inv.remaining == 0 && inv.held == 0 {
                invites.remove(&hash);
            }
        }
    }

    /// The live codes as a snapshot keeps them: created with the uses left.
    pub(super) fn invite_records(&self) -> Vec<Record> {
        let now = now_ms();
        lock(&self.invites)
            .iter()
            .filter(|(_, inv)| inv.expires > now && inv.remaining > 0)
            .map(|(hash, inv)| Record::InviteCodeCreated {
                hash: hex(hash),
                uses: inv.remaining,
                expires: inv.expires,
            })
            .collect()
    }

    // ----- accounts -----

    /// An account made by an admin: allowed whatever `--registration` says, and not counted
    /// toward the admin's address's `--register-per-ip-per-hour`.
    pub async fn create_user(
        &self,
        admin: &User,
        username: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<String, ChatError> {
        self.require_admin(admin)?;
        self.check_new_account(username, password)?;
        self.create_account(username, password, from, None, None)
            .await
    }

    /// Disables (`disabled`) or enables an account. Disabling ends every session of the user
    /// at once; the names given to `--admin` cannot be disabled (`forbidden`), so the server
    /// never locks out the people who run it.
    pub async fn set_disabled(
        &self,
        admin: &User,
        name: &str,
        disabled: bool,
    ) -> Result<(), ChatError> {
        self.require_admin(admin)?;
        let user = self
            .user(&name.to_ascii_lowercase())
            .ok_or(ChatError::UserNotFound)?;
        if disabled && self.is_admin(&user) {
            return Err(ChatError::Forbidden);
        }
        let rec = Record::UserDisabled {
            username: user.name.clone(),
            disabled,
        };
        let commit = {
            let mut us = user.lock();
            if us.disabled == disabled {
                None
            } else {
                let slot = self.reserve()?;
                us.disabled = disabled;
                let user = user.clone();
                Some(self.commit(slot, &rec, move || user.lock().disabled = !disabled))
            }
        };
        if let Some(commit) = commit {
            commit.wait().await?;
        }
        if disabled {
            // After the flag is set: a login racing with this either sees the flag or made
            // its session before this reads the list (see `login`).
            let sessions = user.lock().sessions.clone();
            self.end_sessions(sessions).await?;
        }
        Ok(())
    }

    pub(super) fn apply_disabled(&self, username: &str, disabled: bool) {
        if let Some(user) = self.user(&username.to_ascii_lowercase()) {
            user.lock().disabled = disabled;
        }
    }

    /// Ends each of `sessions` (token hashes) and waits until the journal has the ends.
    async fn end_sessions(&self, sessions: Vec<[u8; 32]>) -> Result<(), ChatError> {
        let commits: Vec<Result<Commit, ChatError>> = sessions
            .into_iter()
            .filter_map(|h| self.end_session(h))
            .collect();
        for commit in commits {
            commit?.wait().await?;
        }
        Ok(())
    }

    // ----- one's own password -----

    /// Changes the caller's password and ends every other session of theirs. A wrong `old`
    /// counts as a failed login for the account and `from`, so a stolen token cannot be used
    /// to guess the password faster than logins can.
    pub async fn change_password(
        &self,
        auth: &Auth,
        old: &str,
        new: &str,
        from: IpAddr,
    ) -> Result<(), ChatError> {
        self.check_password(new)?;
        let user = &auth.user;
        let now = now_ms();
        self.throttled(&user.key, from, now)?;
        let stored = user.lock().hash.clone();
        let (old_pw, new_pw) = (old.as_bytes().to_vec(), new.as_bytes().to_vec());
        let (iterations, verified) = (self.cfg.pbkdf2_iterations, stored.clone());
        let hash = self
            .hasher
            .run(from, move || {
                password::verify(&old_pw, &verified)
                    .then(|| password::hash_password(&new_pw, iterations))
            })
            .await?;
        let Some(hash) = hash else {
            self.record_failure(&user.key, from, now);
            Metrics::add(&self.metrics.login_failures_total, 1);
            return Err(ChatError::InvalidCredentials);
        };
        self.throttle().pairs.forget(&(user.key.clone(), from));
        let rec = Record::PasswordChanged {
            username: user.name.clone(),
            hash: hash.clone(),
        };
        let commit = {
            let mut us = user.lock();
            // Changed meanwhile by another session: `old` is no longer the password.
            if us.hash != stored {
                return Err(ChatError::InvalidCredentials);
            }
            let slot = self.reserve()?;
            us.hash = hash;
            us.password_changes += 1;
            let user = user.clone();
            self.commit(slot, &rec, move || user.lock().hash = stored)
        };
        commit.wait().await?;
        let others: Vec<[u8; 32]> = user
            .lock()
            .sessions
            .iter()
            .copied()
            .filter(|h| *h != auth.session)
            .collect();
        self.end_sessions(others).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::filter::Filter;
    use crate::store::Store;

    fn core() -> Core {
        Core::new(
            Arc::default(),
            Arc::default(),
            Store::memory(),
            Filter::default(),
        )
    }

    fn remaining(c: &Core, hash: [u8; 32]) -> Option<u32> {
        lock(&c.invites).get(&hash).map(|inv| inv.remaining)
    }

    /// A snapshot may hold a code with fewer uses left than the journal after it repeats.
    #[test]
    fn replaying_invite_records_a_snapshot_holds_changes_nothing() {
        let c = core();
        let hash = token_hash("code");
        let created = |uses| Record::InviteCodeCreated {
            hash: hex(&hash),
            uses,
            expires: u64::MAX,
        };
        let used = |remaining| Record::InviteCodeUsed {
            hash: hex(&hash),
            remaining,
        };
        // The snapshot: one use left of three.
        c.apply(&created(1));
        // The journal repeats the creation and the first use, then goes on.
        for rec in [created(3), used(2), used(1)] {
            c.apply(&rec);
            assert_eq!(remaining(&c, hash), Some(1), "{rec:?}");
        }
        c.apply(&used(0));
        assert_eq!(remaining(&c, hash), None, "a used-up code is gone");
        c.apply(&used(0));
        c.apply(&Record::InviteCodeUsed {
            hash: "not hex".into(),
            remaining: 0,
        });
        assert_eq!(remaining(&c, hash), None);
    }

    #[test]
    fn an_unspent_hold_gives_its_use_back() {
        let c = core();
        let hash = token_hash("code");
        c.apply(&Record::InviteCodeCreated {
            hash: hex(&hash),
            uses: 1,
            expires: u64::MAX,
        });
        let hold = c.take_invite(now_ms(), Some("code")).expect("a live code");
        assert_eq!(
            c.take_invite(now_ms(), Some("code")).err(),
            Some(ChatError::InviteRequired),
            "its one use is held"
        );
        drop(hold);
        let mut hold = c.take_invite(now_ms(), Some("code")).expect("given back");
        assert_eq!(
            hold.spend(),
            Record::InviteCodeUsed {
                hash: hex(&hash),
                remaining: 0
            }
        );
        drop(hold);
        assert_eq!(remaining(&c, hash), None);
        assert!(c.take_invite(now_ms(), Some("code")).is_err());
        assert!(c.take_invite(now_ms(), None).is_err());
    }

    #[test]
    fn disabled_flags_replay_as_absolute_values() {
        let c = core();
        c.apply(&Record::UserRegistered {
            username: "Al".into(),
            hash: String::new(),
            ts: 0,
        });
        let disabled = |d| Record::UserDisabled {
            username: "AL".into(),
            disabled: d,
        };
        for (rec, want) in [(true, true), (true, true), (false, false), (false, false)] {
            c.apply(&disabled(rec));
            assert_eq!(c.user("al").unwrap().lock().disabled, want);
        }
        c.apply(&Record::UserDisabled {
            username: "nobody".into(),
            disabled: true,
        });
    }
}
