//! Scenario 2, many small rooms: every member of every room sends on a fixed schedule, for the
//! small-room latency that chat users feel.

use super::burden::{Burden, BurdenReport};
use super::{finish_all, open_many, secs, Meter, OpenOptions, PhaseResult, Target};
use crate::api::{self, User};
use crate::conn::WsConfig;
use crate::error::{LoadError, Result};
use crate::http::HttpClient;
use crate::sender::{run_open_loop, OpenLoop, SendSpec};
use crate::stats::{Latency, Shared};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Settings of the many-rooms scenario.
#[derive(Clone, Debug)]
pub struct RoomsConfig {
    /// Default is 100.
    pub rooms: usize,
    /// Members per room, each with one connection, each a sender. Default is 10.
    pub room_size: usize,
    /// Messages per second per sender. Default is 10: 1,000 senders make 10,000 messages and
    /// 100,000 deliveries per second.
    pub rate: f64,
    /// Measured seconds. Default is 10.
    pub secs: f64,
    /// Message text length. Default is 100.
    pub text_len: usize,
    /// Seconds of warm-up before measuring. Default is 1.
    pub warmup_secs: f64,
    /// REST clients used for setup. Default is 16.
    pub setup_concurrency: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            rooms: 100,
            room_size: 10,
            rate: 10.0,
            secs: 10.0,
            text_len: 100,
            warmup_secs: 1.0,
            setup_concurrency: 16,
        }
    }
}

/// Accounts and rooms made by [`prepare`]: user `i` is in room `i / room_size`.
#[derive(Clone, Debug)]
pub struct RoomsSetup {
    pub users: Vec<User>,
    pub rooms: Vec<String>,
    pub setup: Duration,
}

/// What one measurement of the scenario gave.
#[derive(Clone, Debug, Default)]
pub struct RoomsReport {
    pub rooms: usize,
    pub room_size: usize,
    pub rate: f64,
    pub phase: PhaseResult,
    pub problems: BTreeMap<String, u64>,
    /// What ran beside the measured messages (a login flood, history pulls), if anything.
    pub burden: Option<BurdenReport>,
}

/// One measurement quiet and one with a burden alongside.
#[derive(Clone, Debug)]
pub struct IsolationReport {
    pub quiet: RoomsReport,
    pub burdened: RoomsReport,
}

impl IsolationReport {
    /// p50 with the burden over quiet p50.
    pub fn p50_ratio(&self) -> f64 {
        let q = self.quiet.phase.latency.p50_us.max(1) as f64;
        self.burdened.phase.latency.p50_us as f64 / q
    }

    /// p99 with the burden over quiet p99.
    pub fn p99_ratio(&self) -> f64 {
        let q = self.quiet.phase.latency.p99_us.max(1) as f64;
        self.burdened.phase.latency.p99_us as f64 / q
    }
}

/// Measures on prepared accounts: quiet, then with `burden` running alongside.
pub async fn isolation(
    target: &Target,
    setup: &RoomsSetup,
    cfg: &RoomsConfig,
    burden: &dyn Burden,
) -> Result<IsolationReport> {
    let quiet = measure(target, setup, cfg, None).await?;
    let burdened = measure(target, setup, cfg, Some(burden)).await?;
    Ok(IsolationReport { quiet, burdened })
}

/// Registers the users, creates the rooms and fills them.
pub async fn prepare(target: &Target, cfg: &RoomsConfig) -> Result<RoomsSetup> {
    if cfg.rooms == 0 || cfg.room_size == 0 {
        return Err(LoadError::Config(
            "rooms and room size must be positive".into(),
        ));
    }
    let start = Instant::now();
    let prefix = api::run_prefix();
    let n = cfg.rooms * cfg.room_size;
    let users = api::create_users(target.addr, &prefix, n, cfg.setup_concurrency).await?;
    let mut rooms = Vec::with_capacity(cfg.rooms);
    let mut client = HttpClient::new(target.addr, None);
    for r in 0..cfg.rooms {
        let owner = &users[r * cfg.room_size];
        let id = api::create_room(
            &mut client,
            &owner.token,
            &format!("{prefix}room{r}"),
            cfg.room_size as u64,
        )
        .await?;
        rooms.push(id);
    }
    let size = cfg.room_size;
    api::join_all(
        target.addr,
        &users,
        &rooms,
        move |i| i / size,
        cfg.setup_concurrency,
    )
    .await?;
    Ok(RoomsSetup {
        users,
        rooms,
        setup: start.elapsed(),
    })
}

/// Connects every user, runs the schedule (with `burden` alongside when given), and
/// disconnects.
pub async fn measure(
    target: &Target,
    setup: &RoomsSetup,
    cfg: &RoomsConfig,
    burden: Option<&dyn Burden>,
) -> Result<RoomsReport> {
    let shared = Arc::new(Shared::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tokens: Vec<String> = setup.users.iter().map(|u| u.token.clone()).collect();
    let opts = OpenOptions {
        ws: WsConfig {
            read_buf: 16 * 1024,
            ..WsConfig::default()
        },
        concurrency: 64,
        touch: false,
    };
    let conns = open_many(target.addr, &tokens, &opts, &shared, &stop_rx)
        .await
        .all()?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The burden prepares (a flood registers its accounts) before anything is measured, then
    // runs through the warm-up so it is in full swing when measuring starts.
    let burden_run = match burden {
        Some(b) => Some(b.start(target.addr).await?),
        None => None,
    };

    let specs: Vec<Arc<SendSpec>> = setup
        .rooms
        .iter()
        .map(|r| Arc::new(SendSpec::new(r, cfg.text_len)))
        .collect();
    let fanout = cfg.room_size as u64;
    let mut result = PhaseResult::default();
    for (phase, duration) in [(0u32, cfg.warmup_secs), (1, cfg.secs)] {
        if duration <= 0.0 {
            continue;
        }
        let meter = Meter::start(target);
        let duration = secs(duration);
        let mut r = PhaseResult {
            label: if phase == 0 { "warm-up" } else { "measured" }.into(),
            phase,
            offered_per_s: Some(cfg.rate * conns.len() as f64 * fanout as f64),
            start_ns: shared.clock.now_ns(),
            ..Default::default()
        };
        let start = Instant::now() + Duration::from_millis(20);
        // Deliveries per second count from the first scheduled send.
        r.start_ns = shared.clock.now_ns() + 20_000_000;
        let n = conns.len();
        let mut tasks = Vec::with_capacity(n);
        for (i, conn) in conns.iter().enumerate() {
            let offset = Duration::from_secs_f64(i as f64 / (cfg.rate * n as f64));
            let plan = OpenLoop {
                phase,
                rate: cfg.rate,
                start: start + offset,
                duration,
                max_backlog: ((cfg.rate * 0.5) as u64).max(1),
            };
            tasks.push(tokio::spawn(run_open_loop(
                conn.tx.clone(),
                specs[(i / cfg.room_size) % specs.len()].clone(),
                plan,
                shared.clone(),
                (u64::from(phase) << 40) | i as u64,
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
        shared.drain_phase(phase, fanout).await;
        r.usage = meter.finish();
        r.record_counts(&shared, fanout);
        result = r;
    }
    let burden_report = match burden_run {
        Some(w) => Some(w.stop().await),
        None => None,
    };
    let totals = finish_all(conns, &stop_tx, &shared).await;
    result.latency = Latency::of(&totals[result.phase as usize]);
    Ok(RoomsReport {
        rooms: cfg.rooms,
        room_size: cfg.room_size,
        rate: cfg.rate,
        phase: result,
        problems: shared.problems(),
        burden: burden_report,
    })
}

/// Prepares and measures once.
pub async fn run(target: &Target, cfg: &RoomsConfig) -> Result<RoomsReport> {
    let setup = prepare(target, cfg).await?;
    measure(target, &setup, cfg, None).await
}
