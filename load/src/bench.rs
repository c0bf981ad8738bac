//! The `cargo bench` driver: each file in the workspace's `benches/` calls [`main`] with its
//! scenario. It pins itself to CPU 1, starts the release server on CPU 0 with the benchmark
//! flags, runs the scenario on a single-threaded runtime and prints Markdown tables.
//!
//! Scale and duration come from environment variables (see [`BenchEnv`]), so a quick run is
//! `PARLEY_BENCH_QUICK=1 cargo bench --bench fanout`.

use crate::error::{LoadError, Result};
use crate::probe;
use crate::report;
use crate::scenario::cluster::{self, ClusterConfig};
use crate::scenario::connections::{self, ConnectionsConfig};
use crate::scenario::fanout::{self, FanoutConfig};
use crate::scenario::history::{self, PullConfig};
use crate::scenario::logins::{self, FloodConfig};
use crate::scenario::presence::{self, StormConfig};
use crate::scenario::read_markers::{self, ReadMarkersConfig};
use crate::scenario::rooms::{self, RoomsConfig};
use crate::scenario::state::{self, StateConfig};
use crate::scenario::Target;
use crate::server::{bench_flags, server_binary, supports_flag, ServerProcess, TempDir};
use std::path::Path;
use std::process::Command;

/// CPU the server is pinned to.
pub const SERVER_CPU: usize = 0;
/// CPU the generator is pinned to.
pub const GENERATOR_CPU: usize = 1;

/// Benchmark settings read from the environment.
///
/// | variable | meaning | default (quick) |
/// | --- | --- | --- |
/// | `PARLEY_BENCH_QUICK` | `1`: small scale, short phases | off |
/// | `PARLEY_BENCH_SECS` | seconds per measured phase | 5 (2); many-rooms and read markers 10 (2) |
/// | `PARLEY_BENCH_MEMBERS` | fan-out and read-marker room members | 1000 (200) |
/// | `PARLEY_BENCH_SENDERS` | fan-out and read-marker senders; state: fill senders | 10 (5); state 10 |
/// | `PARLEY_BENCH_LOADS` | fan-out offered deliveries/s, comma-separated | 100000,500000,1000000 (20000,100000) |
/// | `PARLEY_BENCH_WINDOW` | saturation (read markers: unthrottled) messages in flight; state: fill messages unacknowledged | 200; state 1000 |
/// | `PARLEY_BENCH_READ_RATES` | read markers: offered messages/s, comma-separated | 50,200 |
/// | `PARLEY_BENCH_ROOMS` | many-rooms room count | 100 (20) |
/// | `PARLEY_BENCH_ROOM_SIZE` | members per room | 10 |
/// | `PARLEY_BENCH_RATE` | messages/s per many-rooms sender | 10 |
/// | `PARLEY_BENCH_CONNECTIONS` | connections scenario target | 19000 (2000) |
/// | `PARLEY_BENCH_FLOOD` | logins in flight in the flood | 32 (8) |
/// | `PARLEY_BENCH_PULLERS` | history: connections pulling 500-entry pages at once | 8 (4) |
/// | `PARLEY_BENCH_ENTRIES` | state: kept entries (rooms of 1000) | 1000000 (50000) |
/// | `PARLEY_BENCH_STORM_MEMBERS` | presence storm: members reconnecting | 5000 (1000) |
/// | `PARLEY_BENCH_STORM_OUTBOUND` | presence storm: server `--max-outbound-bytes` | server default, 1 MiB |
/// | `PARLEY_BENCH_CLUSTER_MEMBERS` | cluster: delivery room members, half on each node | 100 (100) |
/// | `PARLEY_BENCH_CLUSTER_SENDERS` | cluster: delivery room senders | 10 (10) |
/// | `PARLEY_BENCH_CLUSTER_LOAD` | cluster: offered deliveries/s in the delivery room | 10000 |
/// | `PARLEY_BENCH_CLUSTER_RECORD_SENDERS` | cluster: record senders, one room each, half on each node | 100 (20) |
/// | `PARLEY_BENCH_CLUSTER_WINDOWS` | cluster: messages in flight per records step, comma-separated | 100,1000 |
/// | `PARLEY_BENCH_CLUSTER_ENTRIES` | cluster: messages posted before the fresh node catches up | 100000 (10000) |
/// | `PARLEY_BENCH_CLUSTER_SNAPSHOT_EVERY` | cluster: the nodes' `--cluster-snapshot-every` | server default (100000) |
/// | `PARLEY_NATS_BIN` | cluster: `nats-server` binary to run | `nats-server` from `PATH` |
/// | `PARLEY_BENCH_PIN` | `0` disables CPU pinning | on |
/// | `PARLEY_BENCH_NICE` | nice value for server and generator, e.g. `-10` on a shared machine | unchanged |
/// | `PARLEY_BENCH_QUIET_LOAD` | first wait (up to 15 min) for the 1-minute load average to drop below this | no wait |
/// | `PARLEY_BENCH_TLS` | `1`: the server serves a self-signed certificate; every connection is HTTPS/WSS | off |
/// | `PARLEY_SERVER_BIN` | server binary to run | the bench's own build |
#[derive(Clone, Debug)]
pub struct BenchEnv {
    pub fanout: FanoutConfig,
    pub rooms: RoomsConfig,
    pub connections: ConnectionsConfig,
    pub flood: FloodConfig,
    pub pulls: PullConfig,
    pub state: StateConfig,
    pub storm: StormConfig,
    pub reads: ReadMarkersConfig,
    pub cluster: ClusterConfig,
    pub pin: bool,
    pub nice: Option<i32>,
    pub quiet_load: Option<f64>,
    /// Serve and connect over TLS.
    pub tls: bool,
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Result<Option<T>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| LoadError::Config(format!("bad value {v:?} for {name}"))),
        _ => Ok(None),
    }
}

/// A comma-separated list of numbers.
fn env_list(name: &str) -> Result<Option<Vec<f64>>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| s.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map(Some)
            .map_err(|_| LoadError::Config(format!("bad {name} {v:?}"))),
        _ => Ok(None),
    }
}

impl BenchEnv {
    pub fn from_env() -> Result<BenchEnv> {
        let quick = env_parse::<u32>("PARLEY_BENCH_QUICK")?.unwrap_or(0) > 0;
        let mut fanout = FanoutConfig::default();
        let mut rooms = RoomsConfig::default();
        let mut connections = ConnectionsConfig::default();
        let mut flood = FloodConfig::default();
        let mut pulls = PullConfig::default();
        let mut state = StateConfig::default();
        let mut storm = StormConfig::default();
        let mut reads = ReadMarkersConfig::default();
        let mut cluster = ClusterConfig::default();
        if quick {
            fanout.members = 200;
            fanout.senders = 5;
            fanout.loads = vec![20_000.0, 100_000.0];
            fanout.phase_secs = 2.0;
            fanout.saturation_secs = 2.0;
            rooms.rooms = 20;
            rooms.secs = 2.0;
            connections.connections = 2000;
            connections.broadcasts = 3;
            flood.concurrency = 8;
            pulls.pullers = 4;
            state.entries = 50_000;
            storm.members = 1000;
            reads.members = 200;
            reads.senders = 5;
            reads.phase_secs = 2.0;
            reads.unthrottled_secs = 2.0;
            cluster.phase_secs = 2.0;
            cluster.record_senders = 20;
            cluster.entries = 10_000;
        }
        if let Some(s) = env_parse::<f64>("PARLEY_BENCH_SECS")? {
            cluster.phase_secs = s;
            fanout.phase_secs = s;
            fanout.saturation_secs = s;
            rooms.secs = s;
            reads.phase_secs = s;
            reads.unthrottled_secs = s;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_MEMBERS")? {
            fanout.members = v;
            reads.members = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_SENDERS")? {
            fanout.senders = v;
            state.senders = v;
            reads.senders = v;
        }
        if let Some(v) = env_list("PARLEY_BENCH_READ_RATES")? {
            reads.rates = v;
        }
        if let Some(v) = env_list("PARLEY_BENCH_LOADS")? {
            fanout.loads = v;
        }
        if let Some(v) = env_parse::<u64>("PARLEY_BENCH_WINDOW")? {
            fanout.window = v;
            reads.window = v;
            state.window = v as usize;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_ROOMS")? {
            rooms.rooms = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_ROOM_SIZE")? {
            rooms.room_size = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_RATE")? {
            rooms.rate = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_CONNECTIONS")? {
            connections.connections = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_FLOOD")? {
            flood.concurrency = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_PULLERS")? {
            pulls.pullers = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_ENTRIES")? {
            state.entries = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_STORM_MEMBERS")? {
            storm.members = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_STORM_OUTBOUND")? {
            storm.max_outbound_bytes = Some(v);
        }
        if let Some(v) = env_parse("PARLEY_BENCH_CLUSTER_MEMBERS")? {
            cluster.members = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_CLUSTER_SENDERS")? {
            cluster.senders = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_CLUSTER_LOAD")? {
            cluster.load = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_CLUSTER_RECORD_SENDERS")? {
            cluster.record_senders = v;
        }
        if let Some(v) = env_list("PARLEY_BENCH_CLUSTER_WINDOWS")? {
            cluster.windows = v.into_iter().map(|w| w as u64).collect();
        }
        if let Some(v) = env_parse("PARLEY_BENCH_CLUSTER_ENTRIES")? {
            cluster.entries = v;
        }
        if let Some(v) = env_parse("PARLEY_BENCH_CLUSTER_SNAPSHOT_EVERY")? {
            cluster.snapshot_every = Some(v);
        }
        let pin = env_parse::<u32>("PARLEY_BENCH_PIN")?.unwrap_or(1) != 0;
        let nice = env_parse::<i32>("PARLEY_BENCH_NICE")?;
        let quiet_load = env_parse::<f64>("PARLEY_BENCH_QUIET_LOAD")?;
        let tls = env_parse::<u32>("PARLEY_BENCH_TLS")?.unwrap_or(0) > 0;
        Ok(BenchEnv {
            fanout,
            rooms,
            connections,
            flood,
            pulls,
            state,
            storm,
            reads,
            cluster,
            pin,
            nice,
            quiet_load,
            tls,
        })
    }
}

/// Runs one benchmark scenario: `fanout`, `rooms`, `connections`, `logins`, `persistence`,
/// `state`, `presence`, `read_markers` or `cluster`.
/// `server_hint` is the bench's `CARGO_BIN_EXE_parley-server`, `workspace` its manifest dir.
/// Exits non-zero when the benchmark could not run (a benchmark never fails on a figure).
pub fn main(scenario: &str, server_hint: Option<&str>, workspace: &str) {
    // `cargo bench` passes `--bench`; a filter argument selecting nothing of ours skips.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(filter) = args.first() {
        if !scenario.contains(filter.as_str()) {
            return;
        }
    }
    if let Err(e) = run(scenario, server_hint, Path::new(workspace)) {
        eprintln!("benchmark {scenario} failed: {e}");
        std::process::exit(1);
    }
}

/// Runs one scenario against a server it starts; what [`main`] does after argument handling.
pub fn run(scenario: &str, server_hint: Option<&str>, workspace: &Path) -> Result<()> {
    let env = BenchEnv::from_env()?;
    let bin = server_binary(server_hint, workspace)?;
    if let Some(limit) = env.quiet_load {
        wait_for_quiet(limit, std::time::Duration::from_secs(900));
    }
    let pin = env.pin && probe::available_cpus() >= 2;
    if pin && !probe::pin_current_thread(GENERATOR_CPU) {
        eprintln!("warning: could not pin the generator to CPU {GENERATOR_CPU}");
    }
    let server_cpu = pin.then_some(SERVER_CPU);
    if let Some(n) = env.nice {
        if !probe::set_nice(n) {
            eprintln!("warning: could not set nice {n}");
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Kept until the run ends: the server reads its certificate from here.
    let _tls_dir = if env.tls {
        let dir = TempDir::new("tls")?;
        crate::tls::enable_self_signed(&dir.0)?;
        Some(dir)
    } else {
        None
    };
    println!("{}", machine_line(&bin, workspace, pin));
    println!(
        "transport: {}\n",
        if env.tls {
            "TLS (PARLEY_BENCH_TLS=1): rustls on ring both sides, self-signed ECDSA P-256 \
             certificate, a full handshake per connection (no resumption)"
        } else {
            "plain TCP"
        }
    );
    match scenario {
        "fanout" => {
            let server = start(&bin, &ephemeral(Some(1000)), server_cpu, env.nice)?;
            let r = rt.block_on(fanout::run(&target(&server, server_cpu), &env.fanout))?;
            println!("{}", report::fanout(&r));
            stop(server)
        }
        "rooms" => {
            let server = start(&bin, &ephemeral(Some(1000)), server_cpu, env.nice)?;
            let r = rt.block_on(rooms::run(&target(&server, server_cpu), &env.rooms))?;
            println!("{}", report::rooms(&r));
            stop(server)
        }
        "connections" => {
            let server = start(&bin, &ephemeral(Some(1000)), server_cpu, env.nice)?;
            let r = rt.block_on(connections::run(
                &target(&server, server_cpu),
                &env.connections,
            ))?;
            println!("{}", report::connections(&r));
            stop(server)
        }
        "logins" | "login_flood" => {
            // Accounts of the message load are made with cheap hashing; the server then
            // restarts on the same data directory at the default 600,000 iterations, which the
            // flood's accounts and logins use (each hash keeps its own iteration count).
            let dir = TempDir::new("logins")?;
            let mut flags = bench_flags(Some(1000));
            flags.extend(data_dir(&dir.0));
            let server = start(&bin, &flags, server_cpu, env.nice)?;
            eprintln!("logins: preparing accounts with 1000 iterations");
            let setup = rt.block_on(rooms::prepare(&target(&server, server_cpu), &env.rooms))?;
            stop(server)?;
            let mut flags = bench_flags(None);
            flags.extend(data_dir(&dir.0));
            let server = start(&bin, &flags, server_cpu, env.nice)?;
            eprintln!("logins: restarted at the default iterations; measuring");
            let r = rt.block_on(logins::measure(
                &target(&server, server_cpu),
                &setup,
                &env.rooms,
                &env.flood,
            ))?;
            println!("{}", report::isolation(&r));
            stop(server)
        }
        "history" => {
            let server = start(&bin, &ephemeral(Some(1000)), server_cpu, env.nice)?;
            let r = rt.block_on(history::run(
                &target(&server, server_cpu),
                &env.rooms,
                &env.pulls,
            ))?;
            println!("{}", report::history(&r, &env.pulls));
            stop(server)
        }
        "persistence" => {
            let server = start(&bin, &ephemeral(Some(1000)), server_cpu, env.nice)?;
            let eph = rt.block_on(fanout::run(&target(&server, server_cpu), &env.fanout))?;
            stop(server)?;
            let dir = TempDir::new("persistence")?;
            let mut flags = bench_flags(Some(1000));
            flags.extend(data_dir(&dir.0));
            let server = start(&bin, &flags, server_cpu, env.nice)?;
            let per = rt.block_on(fanout::run(&target(&server, server_cpu), &env.fanout))?;
            println!(
                "{}",
                report::persistence(&eph, &per, "`--data-dir` at the default `--fsync interval`")
            );
            stop(server)
        }
        "state" => {
            // A data directory, the default history, and REST calls unthrottled where the
            // server has a limit on them: the setup creates 100 rooms per account.
            let mut flags = bench_flags(Some(1000));
            if supports_flag(&bin, "rest-rate-limit") {
                flags.extend(["--rest-rate-limit".into(), "0".into()]);
            }
            let r = state::run(&rt, &env.state, &flags, &mut |f: &[String]| {
                start(&bin, f, server_cpu, env.nice)
            })?;
            println!("{}", report::state(&r));
            Ok(())
        }
        "presence" => {
            // A data directory, so that the storm comes after a restart: sessions survive it,
            // presence does not. The server's own outbound limit, not the benchmarks' 8 MiB.
            let dir = TempDir::new("presence")?;
            let mut flags = with_outbound(bench_flags(Some(1000)), env.storm.max_outbound_bytes);
            flags.extend(data_dir(&dir.0));
            let server = start(&bin, &flags, server_cpu, env.nice)?;
            eprintln!(
                "presence: registering {} members and one room",
                env.storm.members
            );
            let setup = rt.block_on(presence::prepare(server.addr, &env.storm))?;
            stop(server)?;
            eprintln!("presence: restarting on the data directory");
            let t = std::time::Instant::now();
            let server = start(&bin, &flags, server_cpu, env.nice)?;
            rt.block_on(state::wait_healthy(
                server.addr,
                std::time::Duration::from_secs(120),
            ))?;
            let restart = t.elapsed();
            let mut r = rt.block_on(presence::storm(
                &target(&server, server_cpu),
                &setup,
                &env.storm,
            ))?;
            r.restart = restart;
            println!("{}", report::presence(&r));
            stop(server)
        }
        "read_markers" => {
            // A data directory at the default `--fsync interval`: the markers' cost is what
            // they add to the journal.
            let dir = TempDir::new("read-markers")?;
            let mut flags = bench_flags(Some(1000));
            flags.extend(data_dir(&dir.0));
            let server = start(&bin, &flags, server_cpu, env.nice)?;
            let r = rt.block_on(read_markers::run(
                &target(&server, server_cpu),
                &dir.0,
                &env.reads,
            ))?;
            println!("{}", report::read_markers(&r));
            stop(server)
        }
        "cluster" => {
            // One nats-server and two nodes, each with a data directory, all on the server
            // CPU; a third node joins at the end to catch up.
            let r = cluster::run(&rt, &env.cluster, &bin, server_cpu, env.nice)?;
            println!("{}", report::cluster(&r));
            Ok(())
        }
        other => Err(LoadError::Config(format!("unknown scenario {other:?}"))),
    }
}

/// Waits until the 1-minute load average is below `limit`, at most `max`.
fn wait_for_quiet(limit: f64, max: std::time::Duration) {
    let start = std::time::Instant::now();
    loop {
        let load = probe::load_average().unwrap_or(0.0);
        if load < limit {
            return;
        }
        if start.elapsed() >= max {
            eprintln!("load average still {load:.2} after {max:?}; measuring anyway");
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
}

fn ephemeral(iterations: Option<u32>) -> Vec<String> {
    let mut f = bench_flags(iterations);
    f.push("--ephemeral".into());
    f
}

/// `flags` with `--max-outbound-bytes` set to `bytes`, or left out (the server's default).
fn with_outbound(flags: Vec<String>, bytes: Option<u64>) -> Vec<String> {
    let mut out = Vec::with_capacity(flags.len());
    let mut it = flags.into_iter();
    while let Some(f) = it.next() {
        if f == "--max-outbound-bytes" {
            it.next();
        } else {
            out.push(f);
        }
    }
    if let Some(b) = bytes {
        out.extend(["--max-outbound-bytes".into(), b.to_string()]);
    }
    out
}

fn data_dir(dir: &Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.display().to_string()]
}

fn start(
    bin: &Path,
    flags: &[String],
    cpu: Option<usize>,
    nice: Option<i32>,
) -> Result<ServerProcess> {
    // The load generator registers every account from one address.
    let mut flags = flags.to_vec();
    flags.extend(crate::tls::server_flags());
    if supports_flag(bin, "register-per-ip-per-hour") {
        flags.extend(["--register-per-ip-per-hour".into(), "0".into()]);
    }
    let server = ServerProcess::start(bin, &flags, cpu, nice)?;
    println!(
        "server: `{} {}` (pid {}, pinned to CPU {}{})\n",
        bin.file_name()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default(),
        flags.join(" "),
        server.probe.pid,
        cpu.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
        nice.map(|n| format!(", nice {n}")).unwrap_or_default()
    );
    Ok(server)
}

fn stop(server: ServerProcess) -> Result<()> {
    let status = server.stop()?;
    if !status.success() {
        eprintln!("warning: server exited with {status}");
    }
    Ok(())
}

fn target(server: &ServerProcess, cpu: Option<usize>) -> Target {
    Target {
        addr: server.addr,
        probe: Some(server.probe),
        server_cpu_index: cpu,
    }
}

/// The CPU's model name, from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into())
}

/// Machine, commit and pinning, for the record.
fn machine_line(bin: &Path, workspace: &Path, pin: bool) -> String {
    let cpu = cpu_model();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(workspace)
        .output()
        .ok()
        .filter(|o| o.status.success() && !o.stdout.is_empty())
        .map(|_| " with uncommitted changes")
        .unwrap_or("");
    let load = probe::load_average()
        .map(|l| format!("{l:.2}"))
        .unwrap_or_else(|| "n/a".into());
    format!(
        "machine: {cpu}, {} CPUs, load average {load} at start; commit {commit}{dirty}; server {}; {}",
        probe::online_cpus(),
        bin.display(),
        if pin {
            format!("server on CPU {SERVER_CPU}, generator on CPU {GENERATOR_CPU}")
        } else {
            "not pinned".into()
        }
    )
}
