//! Records through the stream: one-member rooms, their senders split over both nodes,
//! posting in a closed loop; a message counts when its sender's own copy arrives.

use super::{finish_by_node, open_split, ClusterConfig, ClusterMeter, ClusterUsage, SEED_STEP};
use crate::api::{self, User};
use crate::error::{LoadError, Result};
use crate::scenario::{secs, Target};
use crate::sender::{run_closed_loop, ClosedLoop, SendSpec};
use crate::stats::{new_total_histogram, Latency, Shared};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One closed-loop step of the records part.
#[derive(Clone, Debug, Default)]
pub struct RecordsStep {
    pub window: u64,
    pub sent: u64,
    pub acked: u64,
    pub active: Duration,
    pub latency: Latency,
    pub usage: ClusterUsage,
}

impl RecordsStep {
    pub fn acked_per_s(&self) -> f64 {
        let s = self.active.as_secs_f64();
        if s > 0.0 {
            self.acked as f64 / s
        } else {
            0.0
        }
    }
}

/// What the records part measured.
#[derive(Clone, Debug, Default)]
pub struct RecordsReport {
    pub senders: usize,
    pub steps: Vec<RecordsStep>,
    /// Messages posted in the records rooms, the topping up included.
    pub posted: u64,
    /// Time spent topping the stream up for the catch-up.
    pub seed: Duration,
    pub problems: BTreeMap<String, u64>,
    /// The rooms, each with its member's token.
    pub rooms: Vec<(String, String)>,
}

/// Records through the stream: one closed-loop step per window, then topping up until
/// `cfg.entries` messages were posted.
pub(super) async fn records(
    nodes: &[Target; 2],
    procs: &[(String, Target)],
    cfg: &ClusterConfig,
) -> Result<RecordsReport> {
    let prefix = api::run_prefix();
    let n = cfg.record_senders;
    let half = n / 2;
    let node_of = move |i: usize| usize::from(i >= half);
    let users = api::create_users(nodes[0].addr, &prefix, n, cfg.setup_concurrency).await?;
    // Each sender makes its own room through its own node; `users` are in node order.
    let mut rooms = Vec::with_capacity(n);
    for (node, target) in nodes.iter().enumerate() {
        let mine: Vec<User> = (0..n)
            .filter(|&i| node_of(i) == node)
            .map(|i| users[i].clone())
            .collect();
        let mine = Arc::new(mine);
        let prefix = prefix.clone();
        let made = api::for_each(
            target.addr,
            mine.len(),
            cfg.setup_concurrency,
            move |mut client, i| {
                let mine = mine.clone();
                let name = format!("{prefix}r{node}-{i}");
                async move {
                    let r = api::create_room(&mut client, &mine[i].token, &name, 10).await;
                    (client, r)
                }
            },
        )
        .await?;
        rooms.extend(made);
    }

    let shared = Arc::new(Shared::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let conns = open_split(nodes, &users, node_of, &shared, &stop_rx).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let specs: Vec<Arc<SendSpec>> = rooms
        .iter()
        .map(|r| Arc::new(SendSpec::new(r, cfg.text_len)))
        .collect();

    let closed = |phase: u32, window: u64, duration: Duration| {
        let tasks: Vec<_> = conns
            .iter()
            .enumerate()
            .map(|(i, (_, c))| {
                let plan = ClosedLoop {
                    phase,
                    duration,
                    window,
                    fanout: 1,
                    senders: n as u64,
                };
                tokio::spawn(run_closed_loop(
                    c.tx.clone(),
                    specs[i].clone(),
                    plan,
                    shared.clone(),
                    (phase as u64) << 40 | i as u64,
                ))
            })
            .collect();
        async move {
            for t in tasks {
                let _ = t.await;
            }
        }
    };

    let mut steps = Vec::new();
    for (i, &window) in cfg.windows.iter().enumerate() {
        let phase = i as u32;
        let meter = ClusterMeter::start(procs);
        let start_ns = shared.clock.now_ns();
        closed(phase, window, secs(cfg.phase_secs)).await;
        shared.drain_phase(phase, 1).await;
        let usage = meter.finish();
        let last = shared.phase(phase).last_arrival_ns.load(Ordering::Relaxed);
        steps.push(RecordsStep {
            window,
            sent: shared.sent(phase),
            acked: shared.received(phase),
            active: Duration::from_nanos(last.saturating_sub(start_ns)),
            usage,
            ..Default::default()
        });
    }
    let seed_phase = cfg.windows.len() as u32;
    let posted = |shared: &Shared| (0..=seed_phase).map(|p| shared.received(p)).sum::<u64>();
    let seed_start = Instant::now();
    let window = cfg.windows.iter().copied().max().unwrap_or(1000);
    while posted(&shared) < cfg.entries {
        eprintln!(
            "cluster: {} of {} messages posted",
            posted(&shared),
            cfg.entries
        );
        closed(seed_phase, window, SEED_STEP).await;
        shared.drain_phase(seed_phase, 1).await;
        if seed_start.elapsed() > Duration::from_secs(900) {
            return Err(LoadError::Timeout("topping the stream up".into()));
        }
    }
    let seed = seed_start.elapsed();
    let total = posted(&shared);
    let totals = finish_by_node(conns, &stop_tx, seed_phase as usize + 1).await;
    for (i, step) in steps.iter_mut().enumerate() {
        let mut h = new_total_histogram();
        for node in &totals {
            let _ = h.add(&node[i]);
        }
        step.latency = Latency::of(&h);
    }
    Ok(RecordsReport {
        senders: n,
        steps,
        posted: total,
        seed,
        problems: shared.problems(),
        rooms: rooms
            .into_iter()
            .zip(users.iter().map(|u| u.token.clone()))
            .collect(),
    })
}
