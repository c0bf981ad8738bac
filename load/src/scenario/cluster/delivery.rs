//! Cross-node delivery: one room whose members are split over both nodes, senders on n1 and
//! then on both nodes, at a fixed offered load; each delivery timed from send to receipt and
//! sorted by whether the receiver is on its sender's node.

use super::{finish_by_node, open_split, ClusterConfig, ClusterMeter, ClusterUsage};
use crate::api;
use crate::error::Result;
use crate::http::HttpClient;
use crate::scenario::{secs, Target};
use crate::sender::{run_open_loop, OpenLoop, SendSpec};
use crate::stats::{new_total_histogram, Latency, Shared};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Deliveries of one run to one group of receivers.
#[derive(Clone, Debug, Default)]
pub struct DeliveryGroup {
    /// `other node`, `same node`, `all`.
    pub label: String,
    pub receivers: usize,
    pub expected: u64,
    pub received: u64,
    pub latency: Latency,
}

/// One delivery run: where the senders were and what each group of receivers got.
#[derive(Clone, Debug, Default)]
pub struct DeliveryRun {
    pub label: String,
    pub offered_per_s: f64,
    pub sent: u64,
    pub missed: u64,
    /// From the first scheduled send to the last delivery.
    pub active: Duration,
    pub groups: Vec<DeliveryGroup>,
    pub send_lag: Latency,
    pub usage: ClusterUsage,
}

/// What the delivery part measured.
#[derive(Clone, Debug, Default)]
pub struct DeliveryReport {
    pub members: usize,
    pub on_n1: usize,
    pub senders: usize,
    pub runs: Vec<DeliveryRun>,
    pub problems: BTreeMap<String, u64>,
    /// The room, with a member's token.
    pub rooms: Vec<(String, String)>,
    /// Every member's token.
    pub tokens: Vec<String>,
}

/// A phase and its senders: indices into the connections, the first half on n1.
type Senders = (u32, Vec<usize>);

/// Cross-node delivery: phase 0 warms up, phase 1 has every sender on n1, phases 2 and 3
/// are the senders on n1 and on n2 of the run with senders on both.
pub(super) async fn delivery(
    nodes: &[Target; 2],
    procs: &[(String, Target)],
    cfg: &ClusterConfig,
) -> Result<DeliveryReport> {
    let prefix = api::run_prefix();
    let conc = cfg.setup_concurrency;
    let users = api::create_users(nodes[0].addr, &prefix, cfg.members, conc).await?;
    let mut client = HttpClient::new(nodes[0].addr, None);
    let room = api::create_room(
        &mut client,
        &users[0].token,
        &format!("{prefix}cluster"),
        cfg.members as u64,
    )
    .await?;
    let half = cfg.members / 2;
    let rooms = [room.clone()];
    // Each member joins through the node it will connect to, so that node has applied the
    // account and the join before the upgrade.
    api::join_all(nodes[0].addr, &users[..half], &rooms, |_| 0, conc).await?;
    api::join_all(nodes[1].addr, &users[half..], &rooms, |_| 0, conc).await?;

    let shared = Arc::new(Shared::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let node_of = |i: usize| usize::from(i >= half);
    let conns = open_split(nodes, &users, node_of, &shared, &stop_rx).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let spec = Arc::new(SendSpec::new(&room, cfg.text_len));
    let members = cfg.members as u64;
    let s = cfg.senders;
    let on_n1: Vec<usize> = (0..s).collect();
    let split: (Vec<usize>, Vec<usize>) =
        ((0..s / 2).collect(), (half..half + s - s / 2).collect());
    let mut plan: Vec<(String, f64, Vec<Senders>)> = Vec::new();
    if cfg.warmup_secs > 0.0 {
        plan.push(("warm-up".into(), cfg.warmup_secs, vec![(0, on_n1.clone())]));
    }
    plan.push((
        format!("{s} senders on n1"),
        cfg.phase_secs,
        vec![(1, on_n1)],
    ));
    plan.push((
        format!("{} senders on n1, {} on n2", split.0.len(), split.1.len()),
        cfg.phase_secs,
        vec![(2, split.0), (3, split.1)],
    ));

    let rate = cfg.load / members as f64 / s as f64;
    let mut runs = Vec::new();
    for (label, duration, phases) in plan {
        let meter = ClusterMeter::start(procs);
        let start = Instant::now() + Duration::from_millis(20);
        let start_ns = shared.clock.now_ns() + 20_000_000;
        let mut tasks = Vec::new();
        let mut k = 0usize;
        for (phase, senders) in &phases {
            for &c in senders {
                let offset = Duration::from_secs_f64(k as f64 / (rate * s as f64));
                k += 1;
                let plan = OpenLoop {
                    phase: *phase,
                    rate,
                    start: start + offset,
                    duration: secs(duration),
                    max_backlog: ((rate * 0.5) as u64).max(1),
                };
                tasks.push(tokio::spawn(run_open_loop(
                    conns[c].1.tx.clone(),
                    spec.clone(),
                    plan,
                    shared.clone(),
                    (*phase as u64) << 40 | c as u64,
                )));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        let mut run = DeliveryRun {
            label,
            offered_per_s: cfg.load,
            ..Default::default()
        };
        let mut last = start_ns;
        let mut lag = new_total_histogram();
        for (phase, _) in &phases {
            shared.drain_phase(*phase, members).await;
            let c = shared.phase(*phase);
            run.sent += shared.sent(*phase);
            run.missed += c.missed.load(Ordering::Relaxed);
            last = last.max(c.last_arrival_ns.load(Ordering::Relaxed));
            if let Ok(h) = shared.send_lag.lock() {
                let _ = lag.add(&h[*phase as usize]);
            }
        }
        run.usage = meter.finish();
        run.active = Duration::from_nanos(last.saturating_sub(start_ns));
        run.send_lag = Latency::of(&lag);
        runs.push((run, phases.iter().map(|(p, _)| *p).collect::<Vec<u32>>()));
    }
    let totals = finish_by_node(conns, &stop_tx, 4).await;
    let members_on = [half as u64, members - half as u64];
    // Which node each phase's senders were on.
    let sender_node = |phase: u32| usize::from(phase == 3);
    let mut out = Vec::new();
    for (mut run, phases) in runs {
        if run.label == "warm-up" {
            continue;
        }
        let mut groups = [
            ("other node", new_total_histogram(), 0u64, 0usize),
            ("same node", new_total_histogram(), 0u64, 0usize),
            ("all members", new_total_histogram(), 0u64, cfg.members),
        ];
        for &p in &phases {
            let sent = shared.sent(p);
            for (node, on) in members_on.iter().enumerate() {
                let g = usize::from(node == sender_node(p));
                let h = &totals[node][p as usize];
                let _ = groups[g].1.add(h);
                groups[g].2 += sent * on;
                let _ = groups[2].1.add(h);
                groups[2].2 += sent * on;
            }
        }
        // With senders on both nodes, every member is on some senders' node and on the
        // other node of the rest.
        (groups[0].3, groups[1].3) = if phases.len() > 1 {
            (cfg.members, cfg.members)
        } else {
            (cfg.members - half, half)
        };
        run.groups = groups
            .into_iter()
            .map(|(label, h, expected, receivers)| DeliveryGroup {
                label: label.into(),
                receivers,
                expected,
                received: h.len(),
                latency: Latency::of(&h),
            })
            .collect();
        out.push(run);
    }
    Ok(DeliveryReport {
        members: cfg.members,
        on_n1: half,
        senders: cfg.senders,
        runs: out,
        problems: shared.problems(),
        rooms: vec![(room, users[0].token.clone())],
        tokens: users.iter().map(|u| u.token.clone()).collect(),
    })
}
