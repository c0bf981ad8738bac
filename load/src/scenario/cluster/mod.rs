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
//! At the end, [`compare`] reads every room's kept entries and members from each node.
//!
//! - `delivery.rs`: the cross-node delivery runs; `records.rs`: the records steps and the
//!   topping up; `catch_up.rs`: the fresh node's figures and log lines; `compare.rs`: the
//!   timelines of the nodes compared.

mod catch_up;
mod compare;
mod delivery;
mod records;

pub use catch_up::{caught_up_line, snapshots_written, CatchUpReport, CaughtUp, RestartReport};
pub use compare::Consistency;
pub use delivery::{DeliveryGroup, DeliveryReport, DeliveryRun};
pub use records::{RecordsReport, RecordsStep};

use super::{open_many, Meter, OpenOptions, Target, Usage};
use crate::api::User;
use crate::conn::{Connection, WsConfig};
use crate::error::{LoadError, Result};
use crate::nats::NatsProcess;
use crate::server::{bench_flags, supports_flag, ServerProcess, TempDir};
use crate::stats::{merge_into, new_total_histogram, Shared, TotalHistogram};
use compare::compare;
use delivery::delivery;
use records::records;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// How long a fresh node may take to catch up and print its listening line. Default is 600 s.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);
/// Times the fresh node is started before the catch-up is given up. Default is 3.
const START_ATTEMPTS: usize = 3;
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
    /// The nodes' `--cluster-snapshot-every`; `None` leaves the server's default.
    pub snapshot_every: Option<u64>,
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
            snapshot_every: None,
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

/// Everything the cluster scenario measured.
#[derive(Clone, Debug, Default)]
pub struct ClusterReport {
    /// The command lines of the processes, for the record.
    pub commands: Vec<String>,
    pub delivery: DeliveryReport,
    pub records: RecordsReport,
    pub catch_up: CatchUpReport,
    /// n2 stopped cleanly and started again on its data directory.
    pub restart: RestartReport,
    /// Lines of the nodes' logs at WARN or ERROR level.
    pub log_problems: Vec<String>,
    /// Snapshots the nodes wrote during the run, by node.
    pub snapshots: Vec<(String, usize)>,
    /// The nodes' log lines about snapshots (the first 10).
    pub snapshot_lines: Vec<String>,
    /// Whether the three nodes hold the same timelines after the catch-up.
    pub consistency: Consistency,
}

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
    if let Some(n) = cfg.snapshot_every {
        base.extend(["--cluster-snapshot-every".into(), n.to_string()]);
    }
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
    // A node that could not start is reported, and started again on the same directory,
    // as an operator would.
    let mut failures = Vec::new();
    let mut began = began;
    let n3 = loop {
        match start("n3", &d3, CATCH_UP_LIMIT) {
            Ok(n) => break Some(n),
            Err(e) => {
                eprintln!("cluster: n3 did not start: {e}");
                failures.push(e.to_string());
                if failures.len() >= START_ATTEMPTS {
                    break None;
                }
                std::thread::sleep(Duration::from_secs(1));
                began = Instant::now();
            }
        }
    };
    let mut catch_up = CatchUpReport {
        start_to_listening: began.elapsed(),
        n1_rss_kib: n1.probe.rss_kib(),
        failures,
        ..Default::default()
    };
    if let Some(n3) = &n3 {
        catch_up.cpu = n3.probe.cpu();
        catch_up.peak_rss_kib = n3.probe.peak_rss_kib();
        if let Some(c) = caught_up_line(&n3.stderr_text()) {
            catch_up.snapshot = Some(c.snapshot);
            catch_up.changes = Some(c.changes);
            catch_up.logged_ms = Some(c.ms);
            catch_up.logged_line = Some(c.line);
        }
    }
    eprintln!("cluster: n2 stops cleanly and starts again on its data directory");
    let mut restart = RestartReport::default();
    let n2_before = n2.stderr_text();
    let n2 = match n2.stop() {
        Ok(status) if status.success() => {
            let began = Instant::now();
            match start("n2", &d2, CATCH_UP_LIMIT) {
                Ok(n2) => {
                    restart.start_to_listening = began.elapsed();
                    restart.caught = caught_up_line(&n2.stderr_text());
                    restart.cpu = n2.probe.cpu();
                    restart.peak_rss_kib = n2.probe.peak_rss_kib();
                    Some(n2)
                }
                Err(e) => {
                    restart.failure = Some(format!("n2 did not start again: {e}"));
                    None
                }
            }
        }
        Ok(status) => {
            restart.failure = Some(format!("n2 exited with {status} at its stop"));
            None
        }
        Err(e) => {
            restart.failure = Some(format!("n2 did not stop: {e}"));
            None
        }
    };
    eprintln!("cluster: comparing the timelines of the three nodes");
    let mut rooms = delivery.rooms.clone();
    rooms.extend(records.rooms.iter().cloned());
    let mut tokens = delivery.tokens.clone();
    tokens.extend(records.rooms.iter().map(|(_, t)| t.clone()));
    let mut addrs = vec![("n1", n1.addr)];
    if let Some(n2) = &n2 {
        addrs.push(("n2", n2.addr));
    }
    if let Some(n3) = &n3 {
        addrs.push(("n3", n3.addr));
    }
    let consistency = rt.block_on(compare(&rooms, &tokens, &addrs))?;
    let mut report = ClusterReport {
        commands,
        delivery,
        records,
        catch_up,
        restart,
        log_problems: Vec::new(),
        snapshots: Vec::new(),
        snapshot_lines: Vec::new(),
        consistency,
    };
    let mut logs = vec![("n1", n1.stderr_text()), ("n2", n2_before)];
    for (name, node) in [("n2 (restarted)", &n2), ("n3", &n3)] {
        if let Some(node) = node {
            logs.push((name, node.stderr_text()));
        }
    }
    for (name, log) in logs {
        report
            .snapshots
            .push((name.to_string(), snapshots_written(&log)));
        for line in log.lines() {
            if line.contains("snapshot") && report.snapshot_lines.len() < 10 {
                report
                    .snapshot_lines
                    .push(format!("{name}: {}", line.trim()));
            }
            if line.contains("WARN") || line.contains("ERROR") {
                report.log_problems.push(format!("{name}: {}", line.trim()));
            }
        }
    }
    for node in [n3, n2, Some(n1)].into_iter().flatten() {
        let status = node.stop()?;
        if !status.success() {
            eprintln!("warning: a node exited with {status}");
        }
    }
    nats.stop()?;
    Ok(report)
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
