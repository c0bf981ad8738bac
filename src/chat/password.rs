//! Password hashing: PBKDF2-HMAC-SHA256 with a random salt, and the bounded pool that runs it.
//!
//! A stored hash is self-describing: `pbkdf2-sha256$ITERATIONS$SALT$HASH` (base64, no padding),
//! so raising `--pbkdf2-iterations` later keeps old hashes verifiable.
//!
//! Hashing takes tens to hundreds of milliseconds of CPU, so it never runs on the async
//! workers: `HashPool` owns a few plain threads fed through a bounded queue that serves client
//! addresses in turn. When the queue is full, callers get [`ChatError::Busy`] at once instead
//! of queueing without bound.
//! A job that panics fails only its own caller, also with `Busy`; its thread goes on to the
//! next job, so a bug in one hash cannot shrink the pool until logins stop.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

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
        tracing::warn!("could not lower the hashing thread's priority");
    }
}

/// The waiting jobs: one FIFO per client address, and the addresses in the order they are
/// served. An address is in `turn` exactly when its queue is not empty.
#[derive(Default)]
struct Queues {
    by_addr: HashMap<IpAddr, VecDeque<Job>>,
    turn: VecDeque<IpAddr>,
    pending: usize,
    closed: bool,
}

impl Queues {
    /// The next job, taking addresses in turn.
    fn next(&mut self) -> Option<Job> {
        let addr = self.turn.pop_front()?;
        let queue = self.by_addr.get_mut(&addr)?;
        let job = queue.pop_front();
        if queue.is_empty() {
            self.by_addr.remove(&addr);
        } else {
            self.turn.push_back(addr);
        }
        self.pending -= usize::from(job.is_some());
        job
    }

    /// Makes room for a job from `addr` in a full queue by dropping the newest job of the
    /// address with the most waiting, if that is more than `addr` has. A dropped job's caller
    /// gets `Busy`, as if it had arrived to a full queue.
    fn evict_for(&mut self, addr: IpAddr) -> bool {
        let mine = self.by_addr.get(&addr).map_or(0, VecDeque::len);
        let Some((_, queue)) = self.by_addr.iter_mut().max_by_key(|(_, q)| q.len()) else {
            return false;
        };
        if queue.len() <= mine + 1 {
            return false;
        }
        // It holds at least two, so it keeps its place in `turn`.
        queue.pop_back();
        self.pending -= 1;
        true
    }
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
    capacity: usize,
    threads: usize,
    /// How long the last hash took, for `retry_after_ms`.
    last_job_ms: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long the queue now takes to drain, at the last job's speed; at least a second.
    fn busy(&self, pending: usize) -> ChatError {
        let per_job = self.last_job_ms.load(Relaxed).max(1);
        let drain = (pending as u64).div_ceil(self.threads as u64) * per_job;
        ChatError::Busy {
            retry_after_ms: drain.clamp(1000, 60_000),
        }
    }

    fn work(&self) {
        loop {
            let job = {
                let mut q = self.lock();
                loop {
                    if q.closed {
                        return;
                    }
                    if let Some(job) = q.next() {
                        break job;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            let started = Instant::now();
            // Unwinding drops the job's reply sender, so its caller sees an error instead of
            // waiting. Asserting unwind safety is sound: the job owns everything it touches,
            // and nothing of it is used after a panic.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            self.last_job_ms
                .store(started.elapsed().as_millis() as u64, Relaxed);
        }
    }
}

/// A fixed set of hashing threads behind a bounded queue that is fair between client
/// addresses: each address has its own FIFO and the threads serve the addresses in turn, so
/// one address's flood delays another address's login by at most a hash per busy address.
/// When the queue is full, a newcomer displaces the newest job of the address holding the
/// most, if that address holds more than the newcomer; otherwise it gets `Busy`.
pub(crate) struct HashPool {
    shared: Arc<Shared>,
}

impl HashPool {
    /// Starts `threads` hashing threads; at most `queue` jobs wait for them.
    pub(crate) fn new(threads: usize, queue: usize) -> HashPool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            queues: Mutex::default(),
            ready: Condvar::new(),
            capacity: queue.max(1),
            threads,
            last_job_ms: AtomicU64::new(0),
        });
        for i in 0..threads {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("parley-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    shared.work();
                });
            if let Err(e) = spawned {
                tracing::warn!("could not start a hashing thread: {e}");
            }
        }
        HashPool { shared }
    }

    /// Runs `f` on a hashing thread, in `addr`'s turn, and waits for its result without
    /// blocking the runtime. [`ChatError::Busy`] when the queue is full, the job was displaced
    /// or `f` panicked.
    pub(crate) async fn run<T, F>(&self, addr: IpAddr, f: F) -> Result<T, ChatError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        {
            let mut guard = self.shared.lock();
            let q = &mut *guard;
            if q.pending >= self.shared.capacity && !q.evict_for(addr) {
                return Err(self.shared.busy(q.pending));
            }
            let queue = q.by_addr.entry(addr).or_default();
            if queue.is_empty() {
                q.turn.push_back(addr);
            }
            queue.push_back(job);
            q.pending += 1;
        }
        self.shared.ready.notify_one();
        match result.await {
            Ok(v) => Ok(v),
            Err(_) => Err(self.shared.busy(self.shared.lock().pending)),
        }
    }
}

impl HashPool {
    /// Jobs waiting for a thread (not those running).
    pub(crate) fn waiting(&self) -> usize {
        self.shared.lock().pending
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    /// Polls `f` once (enqueueing a pool job), unless it completes at once.
    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        tokio::time::timeout(std::time::Duration::from_millis(1), f)
            .await
            .ok()
    }

    /// A one-thread pool of `capacity`, its thread held by a job until the returned sender
    /// sends (or drops).
    async fn held_pool(capacity: usize) -> (HashPool, std::sync::mpsc::Sender<()>) {
        let pool = HashPool::new(1, capacity);
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        let mut blocker = Box::pin(pool.run(A, move || {
            let _ = started_tx.send(());
            let _ = held.recv();
        }));
        assert!(poll_once(&mut blocker).await.is_none());
        started.await.unwrap();
        drop(blocker);
        (pool, release)
    }

    /// Queues `a_jobs` from A, then one from B, on a held pool; the addresses in the order
    /// they were served, and how many were refused or displaced.
    async fn order_of_service(capacity: usize, a_jobs: usize) -> (Vec<IpAddr>, usize) {
        let (pool, release) = held_pool(capacity).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for addr in std::iter::repeat_n(A, a_jobs).chain([B]) {
            let order = order.clone();
            let mut job = Box::pin(pool.run(addr, move || order.lock().unwrap().push(addr)));
            let early = poll_once(&mut job).await;
            waiting.push((job, early));
        }
        drop(release);
        let mut refused = 0;
        for (job, early) in waiting {
            let result = match early {
                Some(r) => r,
                None => job.await,
            };
            refused += usize::from(result.is_err());
        }
        let served = order.lock().unwrap().clone();
        (served, refused)
    }

    #[tokio::test]
    async fn addresses_are_served_in_turn() {
        let (served, refused) = order_of_service(64, 10).await;
        assert_eq!((served.len(), refused), (11, 0));
        assert_eq!(
            served[1], B,
            "B waits for one of A's jobs, not ten: {served:?}"
        );
    }

    #[tokio::test]
    async fn a_full_queue_makes_room_for_another_address() {
        // A fills all four places; B's job displaces A's newest instead of being refused.
        let (served, refused) = order_of_service(4, 4).await;
        assert_eq!(served, [A, B, A, A]);
        assert_eq!(refused, 1);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_with_a_retry_time() {
        let (pool, release) = held_pool(1).await;
        let mut queued = Box::pin(pool.run(A, || ()));
        assert!(poll_once(&mut queued).await.is_none());
        match pool.run(A, || ()).await {
            Err(ChatError::Busy { retry_after_ms }) => assert!(retry_after_ms >= 1000),
            other => panic!("{other:?}"),
        }
        release.send(()).unwrap();
        assert_eq!(queued.await, Ok(()));
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
