//! Password hashing: PBKDF2-HMAC-SHA256 with a random salt, and the bounded pool that runs it.
//!
//! A stored hash is self-describing: `pbkdf2-sha256$ITERATIONS$SALT$HASH` (base64, no padding),
//! so raising `--pbkdf2-iterations` later keeps old hashes verifiable.
//!
//! Hashing takes tens to hundreds of milliseconds of CPU, so it never runs on the async
//! workers: `HashPool` owns a few plain threads fed through a bounded channel. When the
//! channel is full, callers get [`ChatError::Busy`] at once instead of queueing without bound.
//! A job that panics fails only its own caller, also with `Busy`; its thread goes on to the
//! next job, so a bug in one hash cannot shrink the pool until logins stop.

use std::panic::AssertUnwindSafe;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;
use sha2::Sha256;
use tokio::sync::oneshot;

use super::error::ChatError;

const SCHEME: &str = "pbkdf2-sha256";
const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;

/// Hashes `password` with a fresh random salt.
pub(crate) fn hash_password(password: &[u8], iterations: u32) -> String {
    let mut salt = [0u8; SALT_BYTES];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, iterations, &mut out);
    format!(
        "{SCHEME}${iterations}${}${}",
        B64.encode(salt),
        B64.encode(out)
    )
}

/// The parts of a stored hash: iterations, salt, hash.
fn parse(stored: &str) -> Option<(u32, Vec<u8>, Vec<u8>)> {
    let mut parts = stored.split('$');
    if parts.next()? != SCHEME {
        return None;
    }
    let iterations = parts.next()?.parse().ok()?;
    let salt = B64.decode(parts.next()?).ok()?;
    let hash = B64.decode(parts.next()?).ok()?;
    Some((iterations, salt, hash))
}

/// The iteration count a stored hash was made with.
pub fn iterations_of(stored: &str) -> Option<u32> {
    parse(stored).map(|(i, _, _)| i)
}

/// Checks `password` against `stored` in time independent of where they differ.
pub(crate) fn verify(password: &[u8], stored: &str) -> bool {
    let Some((iterations, salt, want)) = parse(stored) else {
        return false;
    };
    let mut got = vec![0u8; want.len()];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, iterations, &mut got);
    got.len() == want.len() && got.iter().zip(&want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Spends the same work as a real verification, for logins of unknown users, so that the
/// answer's timing does not tell whether an account exists.
pub(crate) fn verify_dummy(password: &[u8], iterations: u32) -> bool {
    let mut out = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, b"parley-dummy-salt", iterations, &mut out);
    false
}

type Job = Box<dyn FnOnce() + Send>;

/// Nice value of the hashing threads. At 19 the scheduler gives them about 1.5% of a core
/// that messaging also wants, so a login flood slows logins rather than conversations; on an
/// idle core they still run at full speed.
const HASH_NICE: i32 = 19;

/// Lowers the calling thread's scheduling priority (Linux sets nice per thread).
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, HASH_NICE)
    };
    if rc != 0 {
        eprintln!("parley: could not lower the hashing thread's priority");
    }
}

/// A fixed set of hashing threads behind a bounded queue.
pub(crate) struct HashPool {
    tx: crossbeam_channel::Sender<Job>,
}

impl HashPool {
    /// Starts `threads` hashing threads; at most `queue` jobs wait for them.
    pub(crate) fn new(threads: usize, queue: usize) -> HashPool {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("parley-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    while let Ok(job) = rx.recv() {
                        // Unwinding drops the job's reply sender, so its caller sees an error
                        // instead of waiting. Asserting unwind safety is sound: the job owns
                        // everything it touches, and nothing of it is used after a panic.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                eprintln!("parley: could not start a hashing thread: {e}");
            }
        }
        HashPool { tx }
    }

    /// Runs `f` on a hashing thread and waits for its result without blocking the runtime.
    /// [`ChatError::Busy`] when the queue is full or `f` panicked.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, ChatError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        self.tx.try_send(job).map_err(|_| ChatError::Busy)?;
        result.await.map_err(|_| ChatError::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trips_and_records_its_iterations() {
        let h = hash_password(b"correct horse battery", 1000);
        assert_eq!(iterations_of(&h), Some(1000));
        assert!(verify(b"correct horse battery", &h));
        assert!(!verify(b"correct horse batterY", &h));
        assert_ne!(
            h,
            hash_password(b"correct horse battery", 1000),
            "salt is random"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_fails_its_caller_and_the_thread_serves_the_next() {
        // One thread: had the panic killed it, the pool would have none left.
        let pool = HashPool::new(1, 4);
        let panicked = pool.run(|| -> u32 { panic!("a hashing job panics on purpose") });
        assert_eq!(panicked.await, Err(ChatError::Busy));
        let hashed = pool.run(|| iterations_of(&hash_password(b"pw", 1000)));
        assert_eq!(hashed.await, Ok(Some(1000)));
    }

    #[test]
    fn malformed_hashes_never_verify() {
        for bad in [
            "",
            "pbkdf2-sha256",
            "md5$1$AA$AA",
            "pbkdf2-sha256$x$AA$AA",
            "pbkdf2-sha256$1$!!$AA",
        ] {
            assert!(!verify(b"pw", bad), "{bad}");
        }
    }
}
