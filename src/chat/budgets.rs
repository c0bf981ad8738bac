//! The core's per-user budgets, on the token buckets of `ratelimit`: the REST budget of
//! state-changing calls, the message budget of entries made over REST, and the history
//! budget of `sync` answers, history pages and joins.

use std::time::Instant;

use super::{ChatError, Core, User};

impl Core {
    /// A bucket's refusal as `rate_limited`, counted in `/metrics`.
    fn limited(&self, result: Result<(), u64>) -> Result<(), ChatError> {
        result.map_err(|retry_after_ms| {
            crate::metrics::Metrics::add(&self.metrics.rate_limited_total, 1);
            ChatError::RateLimited { retry_after_ms }
        })
    }

    /// Takes one token from `user`'s REST bucket (`--rest-rate-limit`, `--rest-rate-burst`)
    /// for a state-changing REST call; `rate_limited` when it is empty.
    pub fn take_rest_budget(&self, user: &User) -> Result<(), ChatError> {
        let (rate, burst) = (self.cfg.rest_rate_limit, self.cfg.rest_rate_burst);
        if rate == 0 {
            return Ok(());
        }
        let result = user.lock().rest_bucket.take(rate, burst, Instant::now());
        self.limited(result)
    }

    /// Takes one token from `user`'s message bucket (`--rate-limit`, `--rate-burst`) for an
    /// entry made over REST (an edit, a deletion), as a `send` frame takes one over
    /// WebSocket; `rate_limited` when it is empty.
    pub fn take_message_budget(&self, user: &User) -> Result<(), ChatError> {
        let (rate, burst) = (self.cfg.rate_limit, self.cfg.rate_burst);
        if rate == 0 {
            return Ok(());
        }
        let result = user.lock().bucket.take(rate, burst, Instant::now());
        self.limited(result)
    }

    /// Whether `user` may be served history now (`--history-byte-rate`,
    /// `--history-byte-burst`): `rate_limited` while their history budget is spent. What an
    /// answer costs is only known once it is put together, so a served answer takes its
    /// bytes afterwards ([`Core::charge_history`]) and may leave the budget in debt, which
    /// the next request waits out: bytes served stay within the rate, the burst and one
    /// answer.
    pub fn history_ready(&self, user: &User) -> Result<(), ChatError> {
        let (rate, burst) = (self.cfg.history_byte_rate, self.cfg.history_byte_burst);
        if rate == 0 {
            return Ok(());
        }
        let result = user
            .lock()
            .history_bucket
            .ready(rate, burst, Instant::now());
        self.limited(result)
    }

    /// Takes the `bytes` of a history answer from `user`'s history budget.
    pub fn charge_history(&self, user: &User, bytes: usize) {
        self.charge_history_locked(&mut user.lock(), bytes);
    }

    /// [`Core::charge_history`] under the user's lock: a join's history frame, built there.
    pub(super) fn charge_history_locked(&self, us: &mut super::users::UserState, bytes: usize) {
        crate::metrics::Metrics::add(&self.metrics.history_bytes_total, bytes as u64);
        let (rate, burst) = (self.cfg.history_byte_rate, self.cfg.history_byte_burst);
        if rate == 0 {
            return;
        }
        us.history_bucket
            .spend(bytes as f64, rate, burst, Instant::now());
    }
}
