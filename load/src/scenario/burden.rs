//! What can run beside a many-rooms measurement (`rooms::measure`): workers that make one
//! request after another, ignoring `Retry-After` as an attacker would, and count the answers
//! by status and time. The login flood (`logins`) and the history pulls (`history`) are two.

use crate::error::Result;
use crate::stats::{new_total_histogram, Latency, TotalHistogram, MAX_LATENCY_US};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Something to run beside the measured messages.
pub trait Burden: Sync {
    /// Prepares what it needs on the server at `addr` and starts its workers.
    fn start<'a>(
        &'a self,
        addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Workers>> + Send + 'a>>;
}

/// What the workers achieved.
#[derive(Clone, Debug, Default)]
pub struct BurdenReport {
    pub duration: Duration,
    /// Answers by HTTP status (0 = a connection that failed or ended first).
    pub statuses: BTreeMap<u16, u64>,
    /// Time of each answer (any status), microseconds.
    pub latency: Latency,
}

impl BurdenReport {
    pub fn ok(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    pub fn ok_per_s(&self) -> f64 {
        let s = self.duration.as_secs_f64();
        if s > 0.0 {
            self.ok() as f64 / s
        } else {
            0.0
        }
    }
}

/// The workers' shared count of answers, and whether they should go on.
#[derive(Default)]
pub struct Tally {
    stopped: AtomicBool,
    statuses: Mutex<BTreeMap<u16, u64>>,
    latency: Mutex<Option<TotalHistogram>>,
}

impl Tally {
    pub fn running(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed)
    }

    /// Counts one answer with `status`, asked at `asked`. A refusal comes at once, so the
    /// worker then waits 5 ms rather than spin the generator's core.
    pub async fn record(&self, status: u16, asked: Instant) {
        let us = (asked.elapsed().as_micros() as u64).min(MAX_LATENCY_US);
        if let Ok(mut h) = self.latency.lock() {
            h.get_or_insert_with(new_total_histogram)
                .saturating_record(us);
        }
        if let Ok(mut s) = self.statuses.lock() {
            *s.entry(status).or_default() += 1;
        }
        if status != 200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Running workers.
pub struct Workers {
    tally: Arc<Tally>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    start: Instant,
}

impl Workers {
    /// Spawns `n` workers; worker `i` is `work(i, tally)`, which loops while the tally runs.
    pub fn spawn<F, Fut>(n: usize, work: F) -> Workers
    where
        F: Fn(usize, Arc<Tally>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let tally = Arc::new(Tally::default());
        let tasks = (0..n.max(1))
            .map(|i| tokio::spawn(work(i, tally.clone())))
            .collect();
        Workers {
            tally,
            tasks,
            start: Instant::now(),
        }
    }

    /// Stops the workers (requests still waiting on the server are abandoned) and reports.
    pub async fn stop(self) -> BurdenReport {
        self.tally.stopped.store(true, Ordering::Relaxed);
        let duration = self.start.elapsed();
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let statuses = self.tally.statuses.lock().map(|s| s.clone());
        let latency = self
            .tally
            .latency
            .lock()
            .map(|h| h.as_ref().map(Latency::of));
        BurdenReport {
            duration,
            statuses: statuses.unwrap_or_default(),
            latency: latency.ok().flatten().unwrap_or_default(),
        }
    }
}
