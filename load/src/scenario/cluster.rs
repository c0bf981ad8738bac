//! Scenario: cluster mode (issue 15). One `nats-server -js` and two Parley nodes sharing its
//! stream, then:
//!
//! - **Cross-node delivery.** One room whose members are split over both nodes, senders on
//!   one node and then on both, at a fixed offered load. Every delivery is timed from send to
//!   receipt and sorted by whether the receiver is on the sender's node or on the other.
//! - **Records through the stream.** Many one-member rooms, their senders split over both
//!   nodes, posting in a closed loop; a message counts when its sender's own copy arrives
//!   (the node answers only once its replica applied the message, that is after JetStream
//!   acknowledged it and the node read it back). One step per window of messages in flight.
//! - **Catch-up.** With the stream topped up to a number of messages, a third node starts
//!   with an empty data directory; its time from process start to its listening line, which
//!   it prints only after catching up, and its own log line about the catch-up.
//!
//! The nodes run with a data directory each; the benchmark starts and stops every process.

use super::{open_many, secs, Meter, OpenOptions, Target, Usage};
use crate::api::{self, User};
use crate::conn::{Connection, WsConfig};
use crate::error::{LoadError, Result};
use crate::http::HttpClient;
use crate::nats::NatsProcess;
use crate::sender::{run_closed_loop, run_open_loop, ClosedLoop, OpenLoop, SendSpec};
use crate::server::{bench_flags, supports_flag, ServerProcess, TempDir};
use crate::stats::{merge_into, new_total_histogram, Latency, Shared, TotalHistogram};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// How long a fresh node may take to catch up and print its listening line. Default is 600 s.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);
/// Length of one step of topping the stream up for the catch-up. Default is 2 s.
const SEED_STEP: Duration = Duration::from_secs(2);

/// Settings of the cluster scenario.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Members of the delivery room, the first half on node 1, the rest on node 2. Default
    /// is 100.
    pub members: usize,
    /// Senders in the delivery room. Default is 10.
    pub senders: usize,
    /// Offered deliveries per second in the delivery room. Default is 10,000 (100 messages/s
    /// into 100 members).
    pub load: f64,
    /// Seconds per delivery run and per records step. Default is 5.
    pub phase_secs: f64,
    /// Seconds of unreported warm-up before the delivery runs. Default is 1.
    pub warmup_secs: f64,
    /// Message text length in bytes. Default is 100.
    pub text_len: usize,
    /// Senders (and one-member rooms) of the records steps, half on each node. Default is 100.
    pub record_senders: usize,
    /// Messages in flight over all record senders, one step each. Default is 100 and 1000.
    pub windows: Vec<u64>,
    /// Messages posted in the records rooms, steps included, before the catch-up. Default is
    /// 100,000.
    pub entries: u64,
    /// REST clients used for setup. Default is 16.
    pub setup_concurrency: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            members: 100,
            senders: 10,
            load: 10_000.0,
            phase_secs: 5.0,
            warmup_secs: 1.0,
            text_len: 100,
            record_senders: 100,
            windows: vec![100, 1000],
            entries: 100_000,
            setup_concurrency: 16,
        }
    }
}

/// CPU and memory of each process of the cluster over one stretch: `n1`, `n2`, `nats`.
#[derive(Clone, Debug, Default)]
pub struct ClusterUsage {
    pub procs: Vec<(String, Usage)>,
    /// CPU time of neither the cluster's processes nor the generator.
    pub other_cpu: Option<Duration>,
}

impl ClusterUsage {
    /// The generator's CPU time, as seen by any of the meters.
    pub fn generator_cpu(&self) -> Duration {
        self.procs
            .first()
            .map(|(_, u)| u.generator_cpu)
            .unwrap_or_default()
    }

    pub fn wall(&self) -> Duration {
        self.procs.first().map(|(_, u)| u.wall).unwrap_or_default()
    }
}

/// Meters every process of the cluster at once.
struct ClusterMeter(Vec<(String, Meter)>);

impl ClusterMeter {
    fn start(procs: &[(String, Target)]) -> ClusterMeter {
        ClusterMeter(
            procs
                .iter()
                .map(|(n, t)| (n.clone(), Meter::start(t)))
                .collect(),
        )
    }

    fn finish(&self) -> ClusterUsage {
        let procs: Vec<(String, Usage)> = self
            .0
            .iter()
            .map(|(n, m)| (n.clone(), m.finish()))
            .collect();
        // Each meter's "other" still holds the other processes of the cluster.
        let other_cpu = procs.first().and_then(|(_, first)| {
            let mut other = first.other_cpu?;
            for (_, u) in &procs[1..] {
                other = other.saturating_sub(u.server_cpu?);
            }
            Some(other)
        });
        ClusterUsage { procs, other_cpu }
    }
}

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
}

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

/// What the catch-up part measured.
#[derive(Clone, Debug, Default)]
pub struct CatchUpReport {
    /// From spawning the fresh node to its listening line.
    pub start_to_listening: Duration,
    /// The node's own log line: stream messages applied and milliseconds taken.
    pub changes: Option<u64>,
    pub logged_ms: Option<u64>,
    /// The rest of that line (users, rooms, kept entries).
    pub logged_line: Option<String>,
    /// The fresh node's CPU time and peak RSS once listening.
    pub cpu: Option<Duration>,
    pub peak_rss_kib: Option<u64>,
    /// Node 1's RSS at the same moment, for comparison.
    pub n1_rss_kib: Option<u64>,
}

impl CatchUpReport {
    /// Changes per second from process start to listening.
    pub fn per_s_wall(&self) -> Option<f64> {
        let s = self.start_to_listening.as_secs_f64();
        Some(self.changes? as f64 / s).filter(|_| s > 0.0)
    }

    /// Changes per second by the node's own measure (stream info to caught up).
    pub fn per_s_logged(&self) -> Option<f64> {
        let ms = self.logged_ms?;
        Some(self.changes? as f64 * 1000.0 / ms.max(1) as f64)
    }
}

/// Everything the cluster scenario measured.
#[derive(Clone, Debug, Default)]
pub struct ClusterReport {
    /// The command lines of the processes, for the record.
    pub commands: Vec<String>,
    pub delivery: DeliveryReport,
    pub records: RecordsReport,
    pub catch_up: CatchUpReport,
    /// Lines of the nodes' logs at WARN or ERROR level.
    pub log_problems: Vec<String>,
    /// Whether the three nodes hold the same timelines after the catch-up.
    pub consistency: Consistency,
}

/// The newest entries of every room of the run, read from each node and compared.
#[derive(Clone, Debug, Default)]
pub struct Consistency {
    pub rooms: usize,
    /// Entries compared per room and node (the newest, at most [`COMPARED`]).
    pub compared: usize,
    /// Rooms whose newest entries and `first_seq` are the same on every node.
    pub identical: usize,
    /// What differed, one line a room (the first few).
    pub differences: Vec<String>,
    /// Entries (over all rooms and nodes after the first) whose `nonce` differs from the
    /// first node's; compared apart from the rest, which ignores `nonce`.
    pub nonce_differences: u64,
    /// One example of a `nonce` difference.
    pub nonce_example: Option<String>,
}

/// Newest entries of a room compared between nodes: the most one history page holds.
pub const COMPARED: usize = 500;

/// Runs the whole scenario: starts NATS and two nodes (pinned to `cpu` when given), measures,
/// starts the third node, stops everything.
pub fn run(
    rt: &Runtime,
    cfg: &ClusterConfig,
    bin: &Path,
    cpu: Option<usize>,
    nice: Option<i32>,
) -> Result<ClusterReport> {
    if cfg.members < 2 || cfg.senders < 2 || cfg.senders > cfg.members / 2 {
        return Err(LoadError::Config(
            "cluster needs 2 <= senders <= members / 2".into(),
        ));
    }
    if cfg.record_senders < 2 || cfg.windows.is_empty() {
        return Err(LoadError::Config(
            "cluster needs 2 or more record senders and a window".into(),
        ));
    }
    let nats = NatsProcess::start(cpu, nice)?;
    let version = std::process::Command::new(crate::nats::nats_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut commands = vec![format!(
        "`{}` ({version}, pid {})",
        nats.command, nats.probe.pid
    )];
    let mut base = bench_flags(Some(1000));
    for flag in ["register-per-ip-per-hour", "rest-rate-limit"] {
        if supports_flag(bin, flag) {
            base.extend([format!("--{flag}"), "0".into()]);
        }
    }
    base.extend(["--cluster-nats".into(), nats.url()]);
    let node_flags = |name: &str, dir: &TempDir| {
        let mut f = base.clone();
        f.extend([
            "--node-name".into(),
            name.into(),
            "--data-dir".into(),
            dir.0.display().to_string(),
        ]);
        f
    };
    let mut start = |name: &str, dir: &TempDir, limit: Duration| {
        let flags = node_flags(name, dir);
        let node = ServerProcess::start_within(bin, &flags, cpu, nice, limit)?;
        commands.push(format!(
            "`{} {}` (pid {})",
            bin.file_name()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default(),
            flags.join(" "),
            node.probe.pid
        ));
        Ok::<_, LoadError>(node)
    };
    let (d1, d2, d3) = (
        TempDir::new("cluster-n1")?,
        TempDir::new("cluster-n2")?,
        TempDir::new("cluster-n3")?,
    );
    let n1 = start("n1", &d1, Duration::from_secs(60))?;
    let n2 = start("n2", &d2, Duration::from_secs(60))?;
    let target = |s: &ServerProcess| Target {
        addr: s.addr,
        probe: Some(s.probe),
        server_cpu_index: cpu,
    };
    let nodes = [target(&n1), target(&n2)];
    let procs = vec![
        ("n1".to_string(), nodes[0]),
        ("n2".to_string(), nodes[1]),
        (
            "nats".to_string(),
            Target {
                addr: nats.addr,
                probe: Some(nats.probe),
                server_cpu_index: None,
            },
        ),
    ];

    eprintln!(
        "cluster: delivery in a {}-member room split over n1 and n2",
        cfg.members
    );
    let delivery = rt.block_on(delivery(&nodes, &procs, cfg))?;
    eprintln!(
        "cluster: records through the stream from {} senders",
        cfg.record_senders
    );
    let records = rt.block_on(records(&nodes, &procs, cfg))?;

    eprintln!("cluster: a fresh node n3 catches up");
    let began = Instant::now();
    let n3 = start("n3", &d3, CATCH_UP_LIMIT)?;
    let start_to_listening = began.elapsed();
    let mut catch_up = CatchUpReport {
        start_to_listening,
        cpu: n3.probe.cpu(),
        peak_rss_kib: n3.probe.peak_rss_kib(),
        n1_rss_kib: n1.probe.rss_kib(),
        ..Default::default()
    };
    if let Some((changes, ms, line)) = caught_up_line(&n3.stderr_text()) {
        catch_up.changes = Some(changes);
        catch_up.logged_ms = Some(ms);
        catch_up.logged_line = Some(line);
    }
    eprintln!("cluster: comparing the timelines of the three nodes");
    let mut rooms = delivery.rooms.clone();
    rooms.extend(records.rooms.iter().cloned());
    let consistency = rt.block_on(compare(
        &rooms,
        &[("n1", n1.addr), ("n2", n2.addr), ("n3", n3.addr)],
    ))?;
    let mut report = ClusterReport {
        commands,
        delivery,
        records,
        catch_up,
        log_problems: Vec::new(),
        consistency,
    };
    for (name, node) in [("n1", &n1), ("n2", &n2), ("n3", &n3)] {
        for line in node.stderr_text().lines() {
            if line.contains("WARN") || line.contains("ERROR") {
                report.log_problems.push(format!("{name}: {}", line.trim()));
            }
        }
    }
    for node in [n3, n2, n1] {
        let status = node.stop()?;
        if !status.success() {
            eprintln!("warning: a node exited with {status}");
        }
    }
    nats.stop()?;
    Ok(report)
}

/// Finds `caught up with N changes ... in M ms` in a node's log: (N, M, the line from
/// `caught up`).
pub fn caught_up_line(log: &str) -> Option<(u64, u64, String)> {
    let line = log.lines().find(|l| l.contains("caught up with "))?;
    let rest = &line[line.find("caught up with ")?..];
    let number = |s: &str| -> Option<u64> {
        let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    };
    let changes = number(&rest["caught up with ".len()..])?;
    let at = rest.find(" in ")?;
    let ms = number(&rest[at + 4..])?;
    Some((changes, ms, rest.trim().to_owned()))
}

/// Reads the newest entries of each `(room, member's token)` from every node and compares
/// them with the first node's.
async fn compare(rooms: &[(String, String)], nodes: &[(&str, SocketAddr)]) -> Result<Consistency> {
    let mut clients: Vec<HttpClient> = nodes
        .iter()
        .map(|(_, a)| HttpClient::new(*a, None))
        .collect();
    let mut out = Consistency {
        rooms: rooms.len(),
        compared: COMPARED,
        ..Default::default()
    };
    let path_of = |room: &str| format!("/api/v1/rooms/{room}/messages?limit={COMPARED}");
    for (room, token) in rooms {
        let mut pages = Vec::with_capacity(nodes.len());
        for c in clients.iter_mut() {
            let r = api::call(c, "GET", &path_of(room), Some(token), None).await?;
            if r.status != 200 {
                pages.push(Err(r.status));
            } else {
                pages.push(Ok(r.json()?));
            }
        }
        // The reader's own entries carry their nonce; set apart, then compare the rest.
        let nonces: Vec<Vec<serde_json::Value>> = pages
            .iter_mut()
            .map(|p| match p {
                Ok(v) => v["entries"]
                    .as_array_mut()
                    .map(|es| {
                        es.iter_mut()
                            .map(|e| {
                                e.as_object_mut()
                                    .and_then(|o| o.remove("nonce"))
                                    .unwrap_or(serde_json::Value::Null)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            })
            .collect();
        for (i, other) in nonces.iter().enumerate().skip(1) {
            for (k, (a, b)) in nonces[0].iter().zip(other).enumerate() {
                if a != b {
                    out.nonce_differences += 1;
                    if out.nonce_example.is_none() {
                        let seq = pages[0]
                            .as_ref()
                            .ok()
                            .and_then(|v| v["entries"][k]["seq"].as_u64())
                            .unwrap_or(0);
                        out.nonce_example = Some(format!(
                            "room {room}, seq {seq}, read by its author: nonce {a} on {}, {b} on {}",
                            nodes[0].0, nodes[i].0
                        ));
                    }
                }
            }
        }
        let first = &pages[0];
        let mut differs = Vec::new();
        for ((name, _), page) in nodes.iter().zip(&pages).skip(1) {
            if page != first {
                differs.push(format!("{name}: {}", first_difference(first, page)));
            }
        }
        if differs.is_empty() {
            out.identical += 1;
        } else if out.differences.len() < 10 {
            out.differences.push(format!(
                "room {room}: {}: {}; {}",
                nodes[0].0,
                page_summary(first),
                differs.join("; ")
            ));
        }
    }
    Ok(out)
}

/// Where page `b` first differs from page `a`: the entry and the fields that differ.
fn first_difference(
    a: &std::result::Result<serde_json::Value, u16>,
    b: &std::result::Result<serde_json::Value, u16>,
) -> String {
    let (Ok(a), Ok(b)) = (a, b) else {
        return page_summary(b);
    };
    if a["first_seq"] != b["first_seq"] {
        return page_summary(&Ok(b.clone()));
    }
    let none = Vec::new();
    let ea = a["entries"].as_array().unwrap_or(&none);
    let eb = b["entries"].as_array().unwrap_or(&none);
    if ea.len() != eb.len() {
        return page_summary(&Ok(b.clone()));
    }
    let differing = ea.iter().zip(eb).filter(|(x, y)| x != y).count();
    let Some((x, y)) = ea.iter().zip(eb).find(|(x, y)| x != y) else {
        return "same entries, other fields differ".into();
    };
    let mut fields = Vec::new();
    if let (Some(x), Some(y)) = (x.as_object(), y.as_object()) {
        for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
            if x.get(k) != y.get(k) {
                let show = |v: Option<&serde_json::Value>| {
                    let t = v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into());
                    t.chars().take(60).collect::<String>()
                };
                fields.push(format!("{k} {} vs {}", show(x.get(k)), show(y.get(k))));
            }
        }
    }
    format!(
        "{differing} of {} entries differ, the first at seq {}: {}",
        ea.len(),
        x["seq"],
        fields.join(", ")
    )
}

/// `first_seq`, entries and the seq range of a history page, or its error status.
fn page_summary(page: &std::result::Result<serde_json::Value, u16>) -> String {
    match page {
        Err(status) => format!("status {status}"),
        Ok(v) => {
            let entries = v["entries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let seq = |e: Option<&serde_json::Value>| {
                e.and_then(|e| e["seq"].as_u64())
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            format!(
                "first_seq {}, {} entries, seqs {}..{}",
                v["first_seq"],
                entries.len(),
                seq(entries.first()),
                seq(entries.last())
            )
        }
    }
}

/// Merges connections' histograms by (node, phase) once their readers stop.
async fn finish_by_node(
    conns: Vec<(usize, Connection)>,
    stop: &watch::Sender<bool>,
    phases: usize,
) -> Vec<Vec<TotalHistogram>> {
    let mut totals: Vec<Vec<TotalHistogram>> = (0..2)
        .map(|_| (0..phases).map(|_| new_total_histogram()).collect())
        .collect();
    let _ = stop.send(true);
    for (node, c) in conns {
        for (phase, h) in &c.finish().await.latency {
            if let Some(t) = totals[node].get_mut(*phase as usize) {
                merge_into(t, h);
            }
        }
    }
    totals
}

/// Opens one connection per user, `users[i]` on node `node_of(i)`.
async fn open_split(
    nodes: &[Target; 2],
    users: &[User],
    node_of: impl Fn(usize) -> usize,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<(usize, Connection)>> {
    let opts = OpenOptions {
        ws: WsConfig::default(),
        concurrency: 32,
        touch: false,
    };
    let mut out = Vec::with_capacity(users.len());
    for (n, node) in nodes.iter().enumerate() {
        let idx: Vec<usize> = (0..users.len()).filter(|&i| node_of(i) == n).collect();
        let tokens: Vec<String> = idx.iter().map(|&i| users[i].token.clone()).collect();
        let conns = open_many(node.addr, &tokens, &opts, shared, stop)
            .await
            .all()?;
        out.extend(conns.into_iter().map(|c| (n, c)));
    }
    Ok(out)
}

/// Cross-node delivery: phase 0 warms up, phase 1 has every sender on n1, phases 2 and 3
/// are the senders on n1 and on n2 of the run with senders on both.
async fn delivery(
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
    // (label, phases with their senders: indices into `conns`)
    let on_n1: Vec<usize> = (0..s).collect();
    let split: (Vec<usize>, Vec<usize>) = ((0..s / 2).collect(), (half..half + s - s / 2).collect());
    let mut plan: Vec<(String, f64, Vec<(u32, Vec<usize>)>)> = Vec::new();
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
            run.missed += c.missed.load(std::sync::atomic::Ordering::Relaxed);
            last = last.max(c.last_arrival_ns.load(std::sync::atomic::Ordering::Relaxed));
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
    })
}

/// Records through the stream: one closed-loop step per window, then topping up until
/// `cfg.entries` messages were posted.
async fn records(
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
        let last = shared
            .phase(phase)
            .last_arrival_ns
            .load(std::sync::atomic::Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_catch_up_line() {
        let log = "2026-12-01T20:00:00Z INFO parley: starting\n\
                   2026-12-01T20:00:01Z  INFO parley::cluster: cluster: caught up with 123456 changes of stream parley in 4321 ms: 200 users, 101 rooms, 100000 kept entries node=\"n3\"\n";
        let (n, ms, line) = caught_up_line(log).unwrap();
        assert_eq!((n, ms), (123_456, 4321));
        assert!(line.starts_with("caught up with 123456"));
        assert_eq!(caught_up_line("nothing here"), None);
    }
}
