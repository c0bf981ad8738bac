//! Scenario 4, login isolation: the many-rooms measurement, once quiet and once while a flood
//! of logins keeps the server's password hashing busy.
//!
//! The flood logs in a few accounts over and over with the right password from many
//! keep-alive connections, ignoring `Retry-After` as an attacker would; every answer is
//! counted by status.

use super::rooms::{self, RoomsConfig, RoomsReport, RoomsSetup};
use super::Target;
use crate::api;
use crate::error::Result;
use crate::http::HttpClient;
use crate::stats::{new_total_histogram, Latency, TotalHistogram, MAX_LATENCY_US};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of the login flood.
#[derive(Clone, Debug)]
pub struct FloodConfig {
    /// Logins in flight at once (one keep-alive connection each). Default is 32.
    pub concurrency: usize,
    /// Accounts the flood logs in to, registered first. Default is 8.
    pub accounts: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            concurrency: 32,
            accounts: 8,
        }
    }
}

/// What the flood achieved.
#[derive(Clone, Debug, Default)]
pub struct FloodReport {
    pub duration: Duration,
    /// Answers by HTTP status (0 = connection error).
    pub statuses: BTreeMap<u16, u64>,
    /// Time of each login answer (any status), microseconds.
    pub latency: Latency,
}

impl FloodReport {
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

/// A running flood.
pub struct FloodRun {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    statuses: Arc<Mutex<BTreeMap<u16, u64>>>,
    latency: Arc<Mutex<TotalHistogram>>,
    start: Instant,
}

/// Registers the flood's accounts, then starts the flood.
pub async fn start_flood(addr: SocketAddr, cfg: &FloodConfig) -> Result<FloodRun> {
    let prefix = format!("{}f", api::run_prefix());
    let accounts = cfg.accounts.max(1);
    let names: Vec<String> = (0..accounts).map(|i| format!("{prefix}{i}")).collect();
    let reg_names = names.clone();
    api::for_each(addr, accounts, accounts, move |mut client, i| {
        let name = reg_names[i].clone();
        async move {
            let r = api::register(&mut client, &name).await;
            (client, r)
        }
    })
    .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(Mutex::new(BTreeMap::new()));
    let latency = Arc::new(Mutex::new(new_total_histogram()));
    let sources = api::source_addresses(addr);
    let mut tasks = Vec::new();
    for w in 0..cfg.concurrency.max(1) {
        let stop = stop.clone();
        let statuses = statuses.clone();
        let latency = latency.clone();
        let name = names[w % names.len()].clone();
        let local = sources[w % sources.len()];
        tasks.push(tokio::spawn(async move {
            let mut client = HttpClient::new(addr, local);
            let body = serde_json::json!({ "username": name, "password": api::PASSWORD })
                .to_string()
                .into_bytes();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let status = match client
                    .request("POST", "/api/v1/login", None, Some(&body))
                    .await
                {
                    Ok(r) => r.status,
                    Err(_) => 0,
                };
                let us = (t0.elapsed().as_micros() as u64).min(MAX_LATENCY_US);
                if let Ok(mut h) = latency.lock() {
                    h.saturating_record(us);
                }
                if let Ok(mut s) = statuses.lock() {
                    *s.entry(status).or_default() += 1;
                }
                if status != 200 {
                    // Don't spin the generator's core on instant refusals.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    Ok(FloodRun {
        stop,
        tasks,
        statuses,
        latency,
        start: Instant::now(),
    })
}

impl FloodRun {
    /// Stops the flood (logins still waiting on the server are abandoned) and reports.
    pub async fn stop(self) -> FloodReport {
        self.stop.store(true, Ordering::Relaxed);
        let duration = self.start.elapsed();
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        FloodReport {
            duration,
            statuses: self.statuses.lock().map(|s| s.clone()).unwrap_or_default(),
            latency: self
                .latency
                .lock()
                .map(|h| Latency::of(&h))
                .unwrap_or_default(),
        }
    }
}

/// Both measurements of the scenario.
#[derive(Clone, Debug)]
pub struct IsolationReport {
    pub quiet: RoomsReport,
    pub flooded: RoomsReport,
}

impl IsolationReport {
    /// Flooded p99 over quiet p99.
    pub fn p99_ratio(&self) -> f64 {
        let q = self.quiet.phase.latency.p99_us.max(1) as f64;
        self.flooded.phase.latency.p99_us as f64 / q
    }
}

/// Measures on prepared accounts: quiet, then flooded.
pub async fn measure(
    target: &Target,
    setup: &RoomsSetup,
    cfg: &RoomsConfig,
    flood: &FloodConfig,
) -> Result<IsolationReport> {
    let quiet = rooms::measure(target, setup, cfg, None).await?;
    let flooded = rooms::measure(target, setup, cfg, Some(rooms::Burden::Logins(flood))).await?;
    Ok(IsolationReport { quiet, flooded })
}

/// Prepares the accounts on the running server and measures. (The benchmark instead prepares
/// with cheap hashing and restarts the server at the default cost: see `benches/`.)
pub async fn run(
    target: &Target,
    cfg: &RoomsConfig,
    flood: &FloodConfig,
) -> Result<IsolationReport> {
    let setup = rooms::prepare(target, cfg).await?;
    measure(target, &setup, cfg, flood).await
}
