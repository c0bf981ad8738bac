//! Scenario 1, fan-out: one big room, a few senders on a fixed schedule at several offered
//! loads, then a closed-loop saturation run.

use super::{finish_all, open_many, secs, Meter, OpenOptions, PhaseResult, Target, Usage};
use crate::api;
use crate::conn::WsConfig;
use crate::error::{LoadError, Result};
use crate::http::HttpClient;
use crate::sender::{run_closed_loop, run_open_loop, ClosedLoop, OpenLoop, SendSpec};
use crate::stats::{Latency, Shared};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Settings of the fan-out scenario. Defaults are those of the benchmark issue.
#[derive(Clone, Debug)]
pub struct FanoutConfig {
    /// Room members, each with one connection. Default is 1000.
    pub members: usize,
    /// Members that also send. Default is 10.
    pub senders: usize,
    /// Message text length in bytes. Default is 100.
    pub text_len: usize,
    /// Offered loads in deliveries per second. Default is 100K, 500K and 1M.
    pub loads: Vec<f64>,
    /// Seconds per offered load. Default is 5.
    pub phase_secs: f64,
    /// Seconds of closed-loop saturation; 0 skips it. Default is 5.
    pub saturation_secs: f64,
    /// Messages in flight in the saturation run. Default is 200 (200,000 deliveries
    /// outstanding in a 1000-member room, about 45 KiB queued per connection).
    pub window: u64,
    /// Seconds of warm-up at the lowest load before measuring; 0 skips it. Default is 1.
    pub warmup_secs: f64,
    /// REST clients used for setup. Default is 16.
    pub setup_concurrency: usize,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            members: 1000,
            senders: 10,
            text_len: 100,
            loads: vec![100_000.0, 500_000.0, 1_000_000.0],
            phase_secs: 5.0,
            saturation_secs: 5.0,
            window: 200,
            warmup_secs: 1.0,
            setup_concurrency: 16,
        }
    }
}

/// What the fan-out scenario measured.
#[derive(Clone, Debug, Default)]
pub struct FanoutReport {
    pub members: usize,
    pub senders: usize,
    pub phases: Vec<PhaseResult>,
    pub setup: Duration,
    /// Errors and closes seen by any connection.
    pub problems: BTreeMap<String, u64>,
    pub whole_run: Usage,
}

/// Runs the scenario against `target`.
pub async fn run(target: &Target, cfg: &FanoutConfig) -> Result<FanoutReport> {
    if cfg.members == 0 || cfg.senders == 0 || cfg.senders > cfg.members {
        return Err(LoadError::Config(
            "fan-out needs 1 <= senders <= members".into(),
        ));
    }
    let whole = Meter::start(target);
    let setup_start = Instant::now();
    let prefix = api::run_prefix();
    let users = api::create_users(target.addr, &prefix, cfg.members, cfg.setup_concurrency).await?;
    let mut client = HttpClient::new(target.addr, None);
    let room = api::create_room(
        &mut client,
        &users[0].token,
        &format!("{prefix}fanout"),
        cfg.members as u64,
    )
    .await?;
    let rooms = vec![room.clone()];
    api::join_all(target.addr, &users, &rooms, |_| 0, cfg.setup_concurrency).await?;

    let shared = Arc::new(Shared::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tokens: Vec<String> = users.iter().map(|u| u.token.clone()).collect();
    let opts = OpenOptions {
        ws: WsConfig::default(),
        concurrency: 64,
        touch: false,
    };
    let conns = open_many(target.addr, &tokens, &opts, &shared, &stop_rx)
        .await
        .all()?;
    // Let presence and join traffic settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let setup = setup_start.elapsed();

    let spec = Arc::new(SendSpec::new(&room, cfg.text_len));
    let fanout = cfg.members as u64;
    let mut phases = Vec::new();
    let mut plan: Vec<(String, Option<f64>, f64)> = Vec::new();
    if cfg.warmup_secs > 0.0 {
        if let Some(&first) = cfg.loads.first() {
            plan.push(("warm-up".into(), Some(first), cfg.warmup_secs));
        }
    }
    for &load in &cfg.loads {
        plan.push((
            format!("open loop {}", fmt_load(load)),
            Some(load),
            cfg.phase_secs,
        ));
    }
    if cfg.saturation_secs > 0.0 {
        plan.push(("closed loop (saturation)".into(), None, cfg.saturation_secs));
    }

    for (i, (label, load, duration)) in plan.into_iter().enumerate() {
        let phase = i as u32;
        let meter = Meter::start(target);
        let duration = secs(duration);
        let mut result = PhaseResult {
            label,
            phase,
            offered_per_s: load,
            start_ns: shared.clock.now_ns(),
            ..Default::default()
        };
        let mut tasks = Vec::new();
        match load {
            Some(load) => {
                let rate = load / fanout as f64 / cfg.senders as f64;
                let start = Instant::now() + Duration::from_millis(20);
                // Deliveries per second count from the first scheduled send.
                result.start_ns = shared.clock.now_ns() + 20_000_000;
                for (s, conn) in conns.iter().take(cfg.senders).enumerate() {
                    // Stagger senders evenly over one sending interval.
                    let offset = Duration::from_secs_f64(s as f64 / (rate * cfg.senders as f64));
                    let plan = OpenLoop {
                        phase,
                        rate,
                        start: start + offset,
                        duration,
                        max_backlog: ((rate * 0.5) as u64).max(1),
                    };
                    tasks.push(tokio::spawn(run_open_loop(
                        conn.tx.clone(),
                        spec.clone(),
                        plan,
                        shared.clone(),
                        (phase as u64) << 40 | s as u64,
                    )));
                }
            }
            None => {
                for (s, conn) in conns.iter().take(cfg.senders).enumerate() {
                    let plan = ClosedLoop {
                        phase,
                        duration,
                        window: cfg.window,
                        fanout,
                        senders: cfg.senders as u64,
                    };
                    tasks.push(tokio::spawn(run_closed_loop(
                        conn.tx.clone(),
                        spec.clone(),
                        plan,
                        shared.clone(),
                        (phase as u64) << 40 | s as u64,
                    )));
                }
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        shared.drain_phase(phase, fanout).await;
        result.usage = meter.finish();
        result.record_counts(&shared, fanout);
        phases.push(result);
    }

    let totals = finish_all(conns, &stop_tx, &shared).await;
    for p in &mut phases {
        p.latency = Latency::of(&totals[p.phase as usize]);
    }
    // The warm-up is not reported.
    if cfg.warmup_secs > 0.0 && !cfg.loads.is_empty() {
        phases.remove(0);
    }
    Ok(FanoutReport {
        members: cfg.members,
        senders: cfg.senders,
        phases,
        setup,
        problems: shared.problems(),
        whole_run: whole.finish(),
    })
}

/// `100K/s`, `1M/s`.
pub fn fmt_load(load: f64) -> String {
    if load >= 1e6 && (load / 1e6).fract() == 0.0 {
        format!("{}M/s", load / 1e6)
    } else if load >= 1e3 && (load / 1e3).fract() == 0.0 {
        format!("{}K/s", load / 1e3)
    } else {
        format!("{load}/s")
    }
}
