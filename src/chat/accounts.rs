//! Accounts and sessions: registration, password rules, login with its throttle,
//! bearer-token authentication, and ending sessions (logout, the per-user cap).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

use super::wire as frame;
use super::{hex, now_ms, password, token_hash, Auth, ChatError, Commit, Conn, Core, Record};
use crate::config;
use crate::metrics::Metrics;

/// Usernames: 3-32 characters of `[A-Za-z0-9_-]`.
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Most failed-login records kept; beyond it, entries for unknown names are dropped first.
const THROTTLE_KEYS: usize = 100_000;

impl Core {
    pub async fn register(&self, username: &str, password: &str) -> Result<String, ChatError> {
        if !valid_username(username) {
            return Err(ChatError::InvalidUsername);
        }
        self.check_password(password)?;
        let key = username.to_ascii_lowercase();
        if self.user(&key).is_some() {
            return Err(ChatError::UsernameTaken);
        }
        let (pw, iterations) = (password.as_bytes().to_vec(), self.cfg.pbkdf2_iterations);
        let hash = self
            .hasher
            .run(move || password::hash_password(&pw, iterations))
            .await?;
        let rec = Record::UserRegistered {
            username: username.to_string(),
            hash: hash.clone(),
            ts: now_ms(),
        };
        let commit = {
            let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
            if users.contains_key(&key) {
                return Err(ChatError::UsernameTaken);
            }
            let slot = self.reserve()?;
            self.apply_user(&mut users, username, hash);
            let table = self.users.clone();
            self.commit(slot, &rec, move || {
                table
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
            })
        };
        commit.wait().await?;
        Metrics::add(&self.metrics.registrations_total, 1);
        Ok(username.to_string())
    }

    fn check_password(&self, password: &str) -> Result<(), ChatError> {
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

    /// Checks the throttle for `key`, pruning old failures.
    fn throttled(&self, key: &str, now: u64) -> Result<(), ChatError> {
        let window = config::LOGIN_WINDOW.as_millis() as u64;
        let mut throttle = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fails) = throttle.get_mut(key) {
            fails.retain(|&t| now.saturating_sub(t) < window);
            if fails.len() >= config::LOGIN_FAILURES_ALLOWED {
                let oldest = fails.iter().min().copied().unwrap_or(now);
                let retry_after_ms = (oldest + window).saturating_sub(now).max(1);
                return Err(ChatError::TooManyAttempts { retry_after_ms });
            }
        }
        Ok(())
    }

    fn record_failure(&self, key: &str, now: u64) {
        let mut throttle = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if throttle.len() >= THROTTLE_KEYS && !throttle.contains_key(key) {
            let window = config::LOGIN_WINDOW.as_millis() as u64;
            throttle.retain(|_, f| f.iter().any(|&t| now.saturating_sub(t) < window));
            if throttle.len() >= THROTTLE_KEYS {
                let users = self.users.read().unwrap_or_else(|e| e.into_inner());
                throttle.retain(|k, _| users.contains_key(k));
            }
        }
        throttle.entry(key.to_string()).or_default().push(now);
    }

    /// Logs in: a new session and its token.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(String, String), ChatError> {
        let key = username.to_ascii_lowercase();
        let now = now_ms();
        self.throttled(&key, now)?;
        let user = self.user(&key);
        let hash = user.as_ref().map(|u| u.lock().hash.clone());
        let (pw, iterations) = (password.as_bytes().to_vec(), self.cfg.pbkdf2_iterations);
        let ok = self
            .hasher
            .run(move || match hash {
                Some(h) => password::verify(&pw, &h),
                None => password::verify_dummy(&pw, iterations),
            })
            .await?;
        let Some(user) = user.filter(|_| ok) else {
            self.record_failure(&key, now);
            Metrics::add(&self.metrics.login_failures_total, 1);
            return Err(ChatError::InvalidCredentials);
        };
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let hash = token_hash(&token);
        let rec = Record::SessionStarted {
            token_hash: hex(&hash),
            username: user.name.clone(),
            created: now_ms(),
        };
        let commit = {
            let slot = self.reserve()?;
            self.apply(&rec);
            let (sessions, user) = (self.sessions.clone(), user.clone());
            self.commit(slot, &rec, move || {
                sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&hash);
                user.lock().sessions.retain(|h| *h != hash);
            })
        };
        commit.wait().await?;
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

    /// Resolves a bearer token, counting the call as activity for presence.
    pub fn authenticate(&self, token: &str) -> Result<Auth, ChatError> {
        let hash = token_hash(token);
        let max_age = self.cfg.session_max_age.as_millis() as u64;
        let user = {
            let sessions = self.sessions();
            let s = sessions.get(&hash).ok_or(ChatError::Unauthorized)?;
            if now_ms().saturating_sub(s.created) >= max_age {
                None
            } else {
                Some(s.user.clone())
            }
        };
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
        let user = self.sessions().get(&hash).map(|s| s.user.clone())?;
        let rec = Record::SessionEnded {
            token_hash: hex(&hash),
        };
        let slot = self.reserve();
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
                us.last_request = 0;
            }
        }
        self.refresh_presence(&user);
        Some(commit)
    }

    pub async fn logout(&self, auth: &Auth) -> Result<(), ChatError> {
        match self.end_session(auth.session) {
            Some(commit) => commit?.wait().await,
            None => Err(ChatError::Unauthorized),
        }
    }
}
