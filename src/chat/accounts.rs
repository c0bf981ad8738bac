//! Accounts and sessions: registration (with `--registration` and invite codes), password
//! rules, login with its throttle, bearer-token authentication, and ending sessions (logout,
//! the per-user cap).

use std::net::IpAddr;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

use super::invites::InviteHold;
use super::throttle::Throttle;
use super::wire as frame;
use super::{
    hex, now_ms, password, token_hash, unhex, Auth, Caller, ChatError, Command, Commit, Conn, Core,
    Ctx, Record, User,
};
use crate::config::{self, Registration};
use crate::metrics::Metrics;

pub use config::valid_username;

/// A registration counted against its address's hourly limit while it is under way; the
/// count is taken back unless the account was created.
struct Counted<'a> {
    core: &'a Core,
    from: IpAddr,
    at: u64,
    created: bool,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if !self.created {
            self.core
                .throttle()
                .registrations
                .unrecord(&self.from, self.at);
        }
    }
}

impl Core {
    /// Creates an account through `POST /api/v1/register`, as `--registration` allows.
    /// `from` is the client's address, for `--register-per-ip-per-hour`.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        invite_code: Option<&str>,
        from: IpAddr,
    ) -> Result<String, ChatError> {
        if !valid_username(username) {
            return Err(ChatError::InvalidUsername);
        }
        // Before anything that tells whether a name is taken: a closed server tells strangers
        // nothing. A name given to `--admin` without an account gets in with the admin setup
        // code only, whatever `--registration` says, so only the operator makes the first
        // admin; without it, it is refused as a stranger's registration would be.
        let invite = if self.awaits_admin(&username.to_ascii_lowercase()) {
            if !self.is_admin_setup_code(invite_code) {
                return Err(match self.cfg.registration {
                    Registration::Closed => ChatError::RegistrationClosed,
                    Registration::Open | Registration::Invite => ChatError::InviteRequired,
                });
            }
            None
        } else {
            match self.cfg.registration {
                Registration::Open => None,
                Registration::Invite => Some(self.invites.take(now_ms(), invite_code)?),
                Registration::Closed => return Err(ChatError::RegistrationClosed),
            }
        };
        // Only a code that took an invite's use goes to the cluster's log, to be taken again
        // there: not the setup code, nor a code sent where none is needed.
        let code = invite.as_ref().and(invite_code);
        self.check_new_account(username, password)?;
        // Counted before hashing, so a flood from one address cannot have more registrations
        // under way than its limit lets succeed.
        let mut counted = self.count_registration(from)?;
        let name = self
            .create_account(username, password, from, invite, code)
            .await?;
        if let Some(c) = counted.as_mut() {
            c.created = true;
        }
        Ok(name)
    }

    /// The checks every new account passes, before any hashing: the name, the password's
    /// length, and that the name is free.
    pub(super) fn check_new_account(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(), ChatError> {
        if !valid_username(username) {
            return Err(ChatError::InvalidUsername);
        }
        self.check_password(password)?;
        if self.user(&username.to_ascii_lowercase()).is_some() {
            return Err(ChatError::UsernameTaken);
        }
        Ok(())
    }

    /// Hashes the password, then submits the account ([`Command::Register`]). `invite` holds
    /// a use of the invite code `code` while the password is hashed, so that no more
    /// registrations hash at once than the code has uses; the command takes the use again
    /// as it is decided (in cluster mode, in log order).
    pub(super) async fn create_account(
        &self,
        username: &str,
        password: &str,
        from: IpAddr,
        invite: Option<InviteHold>,
        code: Option<&str>,
    ) -> Result<String, ChatError> {
        let (pw, iterations) = (password.as_bytes().to_vec(), self.cfg.pbkdf2_iterations);
        let hash = self
            .hasher
            .run(from, move || password::hash_password(&pw, iterations))
            .await?;
        drop(invite);
        let cmd = Command::Register {
            username: username.to_string(),
            hash,
            invite: code.map(str::to_string),
        };
        let name = self.submit(Caller::default(), cmd).await?.name()?;
        // Here, where the account was asked for: in cluster mode once, not on every replica.
        Metrics::add(&self.metrics.registrations_total, 1);
        Ok(name)
    }

    /// Stores an account whose password is hashed ([`Command::Register`]); with `invite`,
    /// spends its use in the same critical section (its record first: a crash between the
    /// two loses a use, never gives one away).
    pub(super) fn store_account(
        &self,
        cx: &Ctx,
        username: &str,
        hash: String,
        mut invite: Option<InviteHold>,
    ) -> Result<Commit, ChatError> {
        let key = username.to_ascii_lowercase();
        let rec = Record::UserRegistered {
            username: username.to_string(),
            hash: hash.clone(),
            ts: cx.now,
        };
        let (spent, commit) = {
            let mut users = self.users.write();
            if users.contains_key(&key) {
                return Err(ChatError::UsernameTaken);
            }
            let invite_slot = invite.as_ref().map(|_| self.place(cx)).transpose()?;
            let slot = self.place(cx)?;
            // A use the store fails to keep stays spent in memory: the safe side.
            let spent = invite
                .as_mut()
                .zip(invite_slot)
                .map(|(hold, slot)| self.commit(slot, &hold.spend(), || {}));
            self.apply_user(&mut users, username, hash);
            let table = self.users.clone();
            let commit = self.commit(slot, &rec, move || table.remove(&key));
            (spent, commit)
        };
        Ok(match spent {
            Some(spent) => spent.and(commit),
            None => commit,
        })
    }

    pub(super) fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a registration from `from`, or `too_many_attempts` over the hourly limit.
    fn count_registration(&self, from: IpAddr) -> Result<Option<Counted<'_>>, ChatError> {
        let limit = self.cfg.register_per_ip_per_hour;
        if limit == 0 {
            return Ok(None);
        }
        let at = now_ms();
        let mut throttle = self.throttle();
        let windows = &mut throttle.registrations;
        windows
            .check(&from, limit, at)
            .map_err(|retry_after_ms| ChatError::TooManyAttempts { retry_after_ms })?;
        windows.record(&from, limit, at);
        Ok(Some(Counted {
            core: self,
            from,
            at,
            created: false,
        }))
    }

    pub(super) fn check_password(&self, password: &str) -> Result<(), ChatError> {
        let min = self.cfg.min_password_length;
        if password.len() < min || password.len() > config::MAX_PASSWORD_BYTES {
            return Err(ChatError::InvalidPassword(format!(
                "passwords are {min} to {} bytes",
                config::MAX_PASSWORD_BYTES
            )));
        }
        Ok(())
    }

    /// The stored hash of a user, for tests and tools that check how passwords are kept.
    pub fn stored_hash(&self, username: &str) -> Option<String> {
        self.user(&username.to_ascii_lowercase())
            .map(|u| u.lock().hash.clone())
    }

    /// Logins and registrations waiting for a hashing thread.
    pub fn hashes_waiting(&self) -> usize {
        self.hasher.waiting()
    }

    /// `too_many_attempts` when `key` failed too often from `from`, or from everywhere.
    pub(super) fn throttled(&self, key: &str, from: IpAddr, now: u64) -> Result<(), ChatError> {
        let mut throttle = self.throttle();
        let pair = (key.to_string(), from);
        let per_pair = throttle
            .pairs
            .check(&pair, config::LOGIN_FAILURES_ALLOWED, now);
        let per_account = throttle
            .accounts
            .check(&pair.0, self.cfg.login_account_failures, now);
        match (per_pair, per_account) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(ChatError::TooManyAttempts {
                retry_after_ms: a.max(b),
            }),
            (Err(retry_after_ms), _) | (_, Err(retry_after_ms)) => {
                Err(ChatError::TooManyAttempts { retry_after_ms })
            }
        }
    }

    pub(super) fn record_failure(&self, key: &str, from: IpAddr, now: u64) {
        let mut throttle = self.throttle();
        let pair = (key.to_string(), from);
        throttle
            .pairs
            .record(&pair, config::LOGIN_FAILURES_ALLOWED, now);
        throttle
            .accounts
            .record(&pair.0, self.cfg.login_account_failures, now);
    }

    /// Logs in: a new session and its token. `from` is the client's address: failures are
    /// counted per account and address, and hashing takes turns between addresses. Each
    /// success and failure is logged with the username and address (never the password).
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<(String, String), ChatError> {
        let result = self.login_checked(username, password, from).await;
        match &result {
            Ok((_, name)) => tracing::info!(user = %name, addr = %from, "login"),
            Err(e) => tracing::warn!(
                user = ?logged_prefix(username),
                addr = %from,
                code = e.code(),
                "login failed: {}",
                e.code()
            ),
        }
        result
    }

    async fn login_checked(
        &self,
        username: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<(String, String), ChatError> {
        // A name no account can have is refused at once: no hash to spend (the answer's time
        // tells nothing about real accounts, since none has such a name) and, above all, no
        // throttle entry, so failures with huge names cannot fill memory.
        if !valid_username(username) {
            Metrics::add(&self.metrics.login_failures_total, 1);
            return Err(ChatError::InvalidCredentials);
        }
        let key = username.to_ascii_lowercase();
        let now = now_ms();
        self.throttled(&key, from, now)?;
        let user = self.user(&key);
        let (hash, changes) = match &user {
            Some(u) => {
                let us = u.lock();
                (Some(us.hash.clone()), us.password_changes)
            }
            None => (None, 0),
        };
        let (pw, current) = (password.as_bytes().to_vec(), self.cfg.pbkdf2_iterations);
        let (ok, rehashed) = self
            .hasher
            .run(from, move || {
                check_and_rehash(&pw, hash.as_deref(), current)
            })
            .await?;
        let Some(user) = user.filter(|_| ok) else {
            self.record_failure(&key, from, now);
            Metrics::add(&self.metrics.login_failures_total, 1);
            return Err(ChatError::InvalidCredentials);
        };
        // Only this address's count clears: a stranger's failures still count toward the
        // account's ceiling.
        self.throttle().pairs.forget(&(key.clone(), from));
        // Told only now, after the password verified, so it tells a guesser nothing.
        if user.lock().disabled {
            return Err(ChatError::AccountDisabled);
        }
        if let Some(hash) = rehashed {
            let cmd = Command::SetPassword { hash, old: None };
            self.submit(Caller::user(&user), cmd).await?;
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let hash = token_hash(&token);
        let cmd = Command::StartSession {
            token_hash: hex(&hash),
        };
        self.submit(Caller::user(&user), cmd).await?;
        // Disabled, or the password changed, meanwhile: the session was made before
        // `set_disabled` or `change_password` read the list of sessions (and it ends it), or
        // after the flag was set or the hash replaced, and it ends here. Without this, a login
        // that verified the old password just before a change finished kept its session.
        let (disabled, changed) = {
            let us = user.lock();
            (us.disabled, us.password_changes != changes)
        };
        if disabled || changed {
            if let Some(commit) = self.end_session(hash) {
                commit?.wait().await?;
            }
            return Err(if disabled {
                ChatError::AccountDisabled
            } else {
                ChatError::InvalidCredentials
            });
        }
        // A user's oldest session ends when they hold too many, so logins cannot pile up
        // sessions without bound.
        let oldest = {
            let us = user.lock();
            (us.sessions.len() > config::MAX_SESSIONS_PER_USER).then(|| us.sessions[0])
        };
        if let Some(commit) = oldest.and_then(|h| self.end_session(h)) {
            commit?.wait().await?;
        }
        Metrics::add(&self.metrics.logins_total, 1);
        self.touch(&user);
        Ok((token, user.name.clone()))
    }

    /// Starts a session of `user` for the token whose hash (hex) is `token_hash`
    /// ([`Command::StartSession`]).
    pub(super) fn start_session(
        &self,
        cx: &Ctx,
        user: &Arc<User>,
        token_hash: &str,
    ) -> Result<Commit, ChatError> {
        let hash = unhex(token_hash).ok_or(ChatError::Unauthorized)?;
        let rec = Record::SessionStarted {
            token_hash: token_hash.to_string(),
            username: user.name.clone(),
            created: cx.now,
        };
        let slot = self.place(cx)?;
        self.apply(&rec);
        let sessions = self.sessions.clone();
        Ok(self.commit(slot, &rec, move || {
            sessions.apply_ended(&hash);
        }))
    }

    /// Replaces `user`'s password hash ([`Command::SetPassword`]). With `old`, a change of
    /// password: refused when the hash is no longer `old` (changed meanwhile by another
    /// session), and counted, so that a login that verified the old password meanwhile
    /// ends its session. Without, a re-hash at the current iteration count: kept only
    /// while the stored hash uses another count. If the store cannot keep it, the old hash
    /// stays, which still verifies.
    pub(super) fn keep_password(
        &self,
        cx: &Ctx,
        user: &Arc<User>,
        hash: &str,
        old: Option<&str>,
    ) -> Result<Commit, ChatError> {
        let rec = Record::PasswordChanged {
            username: user.name.clone(),
            hash: hash.to_string(),
        };
        let mut us = user.lock();
        match old {
            Some(old) if us.hash != old => return Err(ChatError::InvalidCredentials),
            None if password::iterations_of(&us.hash) == Some(self.cfg.pbkdf2_iterations) => {
                return Ok(Commit::done());
            }
            _ => {}
        }
        let slot = self.place(cx)?;
        let before = std::mem::replace(&mut us.hash, hash.to_string());
        if old.is_some() {
            us.password_changes += 1;
        }
        let user = user.clone();
        Ok(self.commit(slot, &rec, move || user.lock().hash = before))
    }

    /// Resolves a bearer token by its hash (`token_hash`), counting the call as activity for
    /// presence.
    pub fn authenticate(&self, hash: [u8; 32]) -> Result<Auth, ChatError> {
        let max_age = self.cfg.session_max_age.as_millis() as u64;
        let (user, created) = self.sessions.get(&hash).ok_or(ChatError::Unauthorized)?;
        let user = (now_ms().saturating_sub(created) < max_age).then_some(user);
        let Some(user) = user else {
            self.end_session(hash);
            return Err(ChatError::Unauthorized);
        };
        self.touch(&user);
        Ok(Auth {
            user,
            session: hash,
        })
    }

    /// Ends a session now: its token stops working and its sockets close with 4001. When it
    /// was the user's last session, the user is offline at once, whatever their last
    /// request's time. If the journal cannot record the end, the session still ends in memory
    /// (the safe side), and the answer is `unavailable`.
    pub fn end_session(&self, hash: [u8; 32]) -> Option<Result<Commit, ChatError>> {
        self.end_session_with(hash, || self.reserve())
    }

    /// [`Core::end_session`] with where its record's place comes from, taken once the
    /// session is known (in memory for an end the cluster's log holds already).
    pub(super) fn end_session_with(
        &self,
        hash: [u8; 32],
        place: impl FnOnce() -> Result<crate::store::Slot, ChatError>,
    ) -> Option<Result<Commit, ChatError>> {
        let (user, _) = self.sessions.get(&hash)?;
        let rec = Record::SessionEnded {
            token_hash: hex(&hash),
        };
        let slot = place();
        self.apply(&rec);
        let commit = slot.map(|slot| self.commit(slot, &rec, || {}));
        let conns: Vec<Arc<Conn>> = {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns
                .values()
                .filter(|c| c.session == hash)
                .cloned()
                .collect()
        };
        for c in conns {
            c.out.close(frame::close::SESSION_ENDED, "session ended");
            // No longer counted for presence, although its task takes a moment to end.
            self.close_conn(&c);
        }
        {
            let mut us = user.lock();
            if us.sessions.is_empty() {
                // Offline at once, and last seen now (not at 0, as with no requests at all).
                us.last_request = 0;
                us.last_close = us.last_close.max(now_ms());
            }
        }
        self.refresh_presence(&user);
        Some(commit)
    }

    pub async fn logout(&self, auth: &Auth) -> Result<(), ChatError> {
        let cmd = Command::EndSession {
            token_hash: hex(&auth.session),
        };
        self.submit(Caller::user(&auth.user), cmd).await.map(drop)
    }
}

/// Most characters of a client's username a log line repeats: a failed login's name can be
/// anything up to the body limit, and the log must not grow by that much per attempt.
pub(crate) const LOGGED_NAME_CHARS: usize = 40;

/// The start of `name`, at most [`LOGGED_NAME_CHARS`] characters, for a log line.
fn logged_prefix(name: &str) -> &str {
    match name.char_indices().nth(LOGGED_NAME_CHARS) {
        Some((end, _)) => &name[..end],
        None => name,
    }
}

/// Verifies `password` against `stored` (or, for an unknown user, spends the same work), on a
/// hashing thread. Every failure costs `current` iterations, however old the stored hash, so
/// the time does not tell a wrong password from an unknown name. A success with a hash of
/// another count also returns the password hashed anew at `current`.
fn check_and_rehash(password: &[u8], stored: Option<&str>, current: u32) -> (bool, Option<String>) {
    let Some(stored) = stored else {
        return (password::verify_dummy(password, current), None);
    };
    let ok = password::verify(password, stored);
    let had = password::iterations_of(stored).unwrap_or(0);
    if !ok {
        if had < current {
            password::verify_dummy(password, current - had);
        }
        return (false, None);
    }
    let rehashed = (had != current).then(|| password::hash_password(password, current));
    (true, rehashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored hash, password, current count; then success, and the count of the new hash.
    type Case<'a> = (Option<&'a str>, &'a [u8], u32, bool, Option<u32>);

    #[test]
    fn only_a_success_with_another_count_is_rehashed() {
        let old = password::hash_password(b"right password", 1000);
        let current = password::hash_password(b"right password", 2000);
        let cases: &[Case] = &[
            (Some(&old), b"right password", 2000, true, Some(2000)),
            (Some(&old), b"wrong password", 2000, false, None),
            (Some(&current), b"right password", 2000, true, None),
            (Some(&current), b"right password", 1000, true, Some(1000)),
            (None, b"right password", 2000, false, None),
            (Some("not a hash"), b"right password", 2000, false, None),
        ];
        for (i, &(stored, pw, count, ok, rehashed)) in cases.iter().enumerate() {
            let (got_ok, got_hash) = check_and_rehash(pw, stored, count);
            assert_eq!(got_ok, ok, "case {i}");
            let got_count = got_hash.as_deref().and_then(password::iterations_of);
            assert_eq!(got_count, rehashed, "case {i}");
            if let Some(h) = got_hash {
                assert!(password::verify(pw, &h), "case {i}");
            }
        }
    }
}
