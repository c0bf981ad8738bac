//! A token bucket: `rate` tokens a second up to `burst`; and the per-user REST budget
//! built on it.

use std::time::Instant;

use super::{ChatError, Core, User};

impl Core {
    /// Takes one token from `user`'s REST bucket (`--rest-rate-limit`, `--rest-rate-burst`)
    /// for a state-changing REST call; `rate_limited` when it is empty.
    pub fn take_rest_budget(&self, user: &User) -> Result<(), ChatError> {
        let (rate, burst) = (self.cfg.rest_rate_limit, self.cfg.rest_rate_burst);
        if rate == 0 {
            return Ok(());
        }
        let result = user.lock().rest_bucket.take(rate, burst, Instant::now());
        result.map_err(|retry_after_ms| {
            crate::metrics::Metrics::add(&self.metrics.rate_limited_total, 1);
            ChatError::RateLimited { retry_after_ms }
        })
    }
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn full(burst: u32) -> Self {
        TokenBucket {
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    /// Takes one token. On refusal returns the milliseconds until one is available.
    pub(crate) fn take(&mut self, rate: u32, burst: u32, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate as f64).min(burst as f64);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate.max(1) as f64;
            Err((wait * 1000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(3);
        b.last = t0;
        for _ in 0..3 {
            assert!(b.take(10, 3, t0).is_ok());
        }
        assert_eq!(b.take(10, 3, t0), Err(100));
        assert!(b.take(10, 3, t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(10, 3, t0 + Duration::from_millis(100)).is_err());
    }
}
