//! Token buckets: `rate` tokens a second up to `burst`. A user's bucket counts messages; a
//! room's budget ([`RoomBudget`]) counts messages and bytes; and the per-user REST budget is
//! built on the same bucket. Every entry a member makes (message, action, edit, deletion),
//! by any door, takes a token from the user's message bucket and its frame from the room's
//! budget (`Core::charge_entry`, in `timeline`). The core's budget checks are in `budgets`.

use std::time::Instant;

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
        self.refill(rate, burst, now);
        match self.wait_ms(1.0, rate) {
            0 => {
                self.tokens -= 1.0;
                Ok(())
            }
            wait => Err(wait),
        }
    }

    /// Refills; `Ok` while the bucket holds anything, else the milliseconds until it does
    /// (a bucket spent into debt first pays it off).
    pub(crate) fn ready(&mut self, rate: u32, burst: u32, now: Instant) -> Result<(), u64> {
        self.refill(rate, burst, now);
        if self.tokens > 0.0 {
            return Ok(());
        }
        Err(self.wait_ms(1.0, rate))
    }

    /// Takes `n` tokens, into debt if there are fewer.
    pub(crate) fn spend(&mut self, n: f64, rate: u32, burst: u32, now: Instant) {
        self.refill(rate, burst, now);
        self.tokens -= n;
    }

    fn refill(&mut self, rate: u32, burst: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate as f64).min(burst as f64);
    }

    /// Milliseconds until `n` tokens are there; 0 if they are.
    fn wait_ms(&self, n: f64, rate: u32) -> u64 {
        if self.tokens >= n {
            return 0;
        }
        let wait = (n - self.tokens) / rate.max(1) as f64;
        ((wait * 1000.0).ceil() as u64).max(1)
    }
}

/// A room's budget: messages a second and bytes a second, each with a burst, taken together
/// (a refused message takes neither).
#[derive(Debug)]
pub struct RoomBudget {
    messages: TokenBucket,
    bytes: TokenBucket,
}

/// The limits a [`RoomBudget`] is checked against (from `Config`).
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    pub rate: u32,
    pub burst: u32,
    pub byte_rate: u32,
    pub byte_burst: u32,
}

impl Default for RoomBudget {
    /// Full, whatever the limits: a bucket is capped at its burst when first taken from.
    fn default() -> Self {
        RoomBudget {
            messages: TokenBucket::full(u32::MAX),
            bytes: TokenBucket::full(u32::MAX),
        }
    }
}

impl RoomBudget {
    /// Takes one message of `bytes`. A message larger than the byte burst needs a full
    /// bucket, so it can pass. On refusal returns the milliseconds until both budgets have
    /// room for it.
    pub(crate) fn take(&mut self, l: RoomLimits, bytes: usize, now: Instant) -> Result<(), u64> {
        self.messages.refill(l.rate, l.burst, now);
        self.bytes.refill(l.byte_rate, l.byte_burst, now);
        let cost = bytes.min(l.byte_burst as usize) as f64;
        let wait = self
            .messages
            .wait_ms(1.0, l.rate)
            .max(self.bytes.wait_ms(cost, l.byte_rate));
        if wait > 0 {
            return Err(wait);
        }
        self.messages.tokens -= 1.0;
        self.bytes.tokens -= cost;
        Ok(())
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

    #[test]
    fn a_spent_budget_waits_out_its_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(1000);
        b.last = t0;
        assert!(b.ready(1000, 1000, t0).is_ok());
        b.tokens -= 3000.0;
        assert_eq!(b.ready(1000, 1000, t0), Err(2001));
        assert!(b
            .ready(1000, 1000, t0 + Duration::from_millis(2002))
            .is_ok());
    }

    #[test]
    fn a_room_budget_counts_messages_and_bytes_and_a_refusal_takes_neither() {
        let t0 = Instant::now();
        let l = RoomLimits {
            rate: 10,
            burst: 3,
            byte_rate: 1000,
            byte_burst: 2000,
        };
        let mut b = RoomBudget::default();
        b.messages.last = t0;
        b.bytes.last = t0;
        assert!(b.take(l, 1500, t0).is_ok());
        // 500 bytes left: 600 more take 100 ms, and the message token is not spent.
        assert_eq!(b.take(l, 600, t0), Err(100));
        assert!(b.take(l, 500, t0).is_ok());
        assert!(b.take(l, 1, t0).is_err(), "no bytes left");
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(l, 100, t1).is_ok());
        assert!(b.take(l, 0, t1).is_ok());
        assert_eq!(b.take(l, 0, t1), Err(100), "no message left");
        // A message larger than the byte burst waits for a full bucket, then passes.
        let t2 = t0 + Duration::from_secs(10);
        assert!(b.take(l, 5000, t2).is_ok());
        assert_eq!(b.take(l, 5000, t2), Err(2000));
    }
}
