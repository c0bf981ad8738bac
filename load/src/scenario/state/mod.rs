//! Scenario: kept state (issue 9, core reliability). What a million kept entries cost in
//! memory, live and after a restart; how long the restart takes and how high memory peaks
//! while it recovers; and how long acknowledgements take while the server compacts its
//! journal into a snapshot of all that state.
//!
//! The server runs with a data directory, so it needs starting and restarting: [`run`] is
//! given a function that starts it with the flags asked for.
//!
//! - `fill.rs`: accounts, rooms, and the windowed senders that fill every room.
//! - `watch.rs`: seeing compactions in the data directory.
//! - `ack_probe.rs`: the acknowledgement probe and its figures during and outside compactions.

pub mod ack_probe;
pub mod fill;
pub mod watch;

use crate::error::{LoadError, Result};
use crate::http::HttpClient;
use crate::scenario::{Meter, Target, Usage};
use crate::server::{ServerProcess, TempDir};
use ack_probe::{AckProbe, ProbeReport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use watch::{Compaction, DirWatch, Look};

/// Time between a state change and the memory reading that follows it, so the server's
/// periodic sweep and any queued work have run. Default is 1 s.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the probe keeps going after a compaction was seen done. Default is 2 s.
const PROBE_AFTER: Duration = Duration::from_secs(2);
/// Longest wait for a compaction under way after the fill to finish. Default is 120 s.
const IDLE_LIMIT: Duration = Duration::from_secs(120);
/// Longest wait for `/healthz` to answer 200 after a start. Default is 120 s.
const HEALTHY_LIMIT: Duration = Duration::from_secs(120);
/// The smallest `--compact-bytes` the server accepts.
const MIN_COMPACT_BYTES: u64 = 4096;

/// Settings of the state scenario.
#[derive(Clone, Debug)]
pub struct StateConfig {
    /// Kept entries to make: `entries / history` rooms (rounded up), each filled with
    /// `history` messages. Default is 1,000,000.
    pub entries: usize,
    /// Entries each room keeps (`--history`), and messages posted to each room. Default is
    /// 1000, the server's default.
    pub history: usize,
    /// Bytes of each message text. Default is 100.
    pub text_len: usize,
    /// Fill senders (one account and WebSocket each). Default is 10; raised to one per 100
    /// rooms, the server's default `--max-rooms-per-user`.
    pub senders: usize,
    /// Messages unacknowledged over all fill senders. Default is 1000.
    pub window: usize,
    /// Probe messages per second. Default is 200 (one every 5 ms).
    pub probe_rate: f64,
    /// `--compact-bytes` after the restart is the journal's size plus this: about three seconds
    /// of the probe's own records (each about 230 bytes), so the probe has a quiet start and
    /// then crosses the threshold by itself. Default is 128 KiB.
    pub compaction_margin: u64,
    /// Longest probe, if no compaction comes. Default is 60 s.
    pub probe_limit: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            entries: 1_000_000,
            history: 1000,
            text_len: 100,
            senders: 10,
            window: 1000,
            probe_rate: 200.0,
            compaction_margin: 128 * 1024,
            probe_limit: Duration::from_secs(60),
        }
    }
}

/// Rooms one user may be in by default (`--max-rooms-per-user`).
const ROOMS_PER_USER: usize = 100;

impl StateConfig {
    pub fn rooms(&self) -> usize {
        self.entries.div_ceil(self.history.max(1)).max(1)
    }

    pub fn senders(&self) -> usize {
        self.senders
            .max(self.rooms().div_ceil(ROOMS_PER_USER))
            .min(self.rooms())
            .max(1)
    }

    /// Kept entries after the fill: every room full.
    pub fn kept(&self) -> u64 {
        (self.rooms() * self.history) as u64
    }
}

/// What the scenario measured. Memory figures are KiB, `None` where `/proc` had no answer.
#[derive(Clone, Debug, Default)]
pub struct StateReport {
    pub entries: u64,
    pub rooms: usize,
    pub history: usize,
    pub text_len: usize,
    pub senders: usize,
    pub window: usize,
    /// First send to last acknowledgement of the fill.
    pub fill: Duration,
    /// RSS of the first server, on an empty data directory, [`SETTLE`] after its first
    /// `/healthz` 200.
    pub rss_empty_kib: Option<u64>,
    /// RSS with accounts, rooms and sender connections, before the fill.
    pub rss_before_kib: Option<u64>,
    /// RSS after the fill, [`SETTLE`] after the last acknowledgement and any compaction.
    pub rss_after_kib: Option<u64>,
    /// Journal and snapshot bytes when the server stopped.
    pub journal_bytes: u64,
    pub snapshot_bytes: u64,
    /// SIGTERM to exit.
    pub stop: Duration,
    /// Spawn to the first `/healthz` 200 of the restarted server.
    pub restart: Duration,
    /// `VmHWM` of the restarted server at its first `/healthz` 200: the recovery's peak.
    pub recovery_peak_kib: Option<u64>,
    /// `VmRSS` of the restarted server [`SETTLE`] later.
    pub steady_kib: Option<u64>,
    /// `--compact-bytes` of the restarted server.
    pub compact_bytes: u64,
    pub probe_rate: f64,
    pub probe_limit: Duration,
    /// Compactions seen during the probe, on the probe's clock; `probe_start_ns` is its start.
    pub compactions: Vec<Compaction>,
    pub probe_start_ns: u64,
    pub probe: ProbeReport,
    /// CPU over the probe: the server's, and the rest of the machine's (noise).
    pub probe_usage: Usage,
    /// Error frames and closes the generator's connections saw.
    pub problems: BTreeMap<String, u64>,
}

fn per_entry(kib: Option<u64>, minus: Option<u64>, entries: u64) -> Option<f64> {
    let (a, b) = (kib?, minus?);
    (entries > 0).then(|| (a as f64 - b as f64) * 1024.0 / entries as f64)
}

impl StateReport {
    /// Live bytes per kept entry: RSS growth over the fill ÷ kept entries.
    pub fn live_per_entry(&self) -> Option<f64> {
        per_entry(self.rss_after_kib, self.rss_before_kib, self.entries)
    }

    /// Bytes per kept entry after the restart: (steady RSS − empty server RSS) ÷ kept entries.
    pub fn restart_per_entry(&self) -> Option<f64> {
        per_entry(self.steady_kib, self.rss_empty_kib, self.entries)
    }

    /// Recovery peak over steady RSS.
    pub fn peak_ratio(&self) -> Option<f64> {
        let (p, s) = (self.recovery_peak_kib?, self.steady_kib?);
        (s > 0).then(|| p as f64 / s as f64)
    }
}

/// Runs the scenario: fill, restart, probe during a compaction. `flags` are the server flags
/// without a data directory; `launch` starts the server with the flags it is given.
pub fn run(
    rt: &Runtime,
    cfg: &StateConfig,
    flags: &[String],
    launch: &mut dyn FnMut(&[String]) -> Result<ServerProcess>,
) -> Result<StateReport> {
    let dir = TempDir::new("state")?;
    let mut flags = flags.to_vec();
    flags.extend([
        "--history".into(),
        cfg.history.to_string(),
        "--data-dir".into(),
        dir.0.display().to_string(),
    ]);
    let mut report = StateReport {
        entries: cfg.kept(),
        rooms: cfg.rooms(),
        history: cfg.history,
        text_len: cfg.text_len,
        senders: cfg.senders(),
        window: cfg.window,
        probe_rate: cfg.probe_rate,
        probe_limit: cfg.probe_limit,
        ..StateReport::default()
    };

    // The empty server, then the state.
    let server = launch(&flags)?;
    rt.block_on(wait_healthy(server.addr, HEALTHY_LIMIT))?;
    std::thread::sleep(SETTLE);
    report.rss_empty_kib = server.probe.rss_kib();
    eprintln!(
        "state: {} senders creating {} rooms",
        report.senders, report.rooms
    );
    let setup = rt.block_on(fill::prepare(server.addr, cfg))?;
    let senders = rt.block_on(fill::Senders::open(server.addr, &setup))?;
    std::thread::sleep(SETTLE);
    report.rss_before_kib = server.probe.rss_kib();
    eprintln!(
        "state: filling {} rooms with {} messages each",
        report.rooms, cfg.history
    );
    report.fill = rt.block_on(senders.fill(&setup, cfg.history, cfg.text_len, cfg.window))?;
    eprintln!(
        "state: filled in {:.1} s; waiting for compactions to finish",
        report.fill.as_secs_f64()
    );
    if !watch::wait_idle(&dir.0, IDLE_LIMIT) {
        eprintln!("warning: a compaction was still under way after {IDLE_LIMIT:?}");
    }
    std::thread::sleep(SETTLE);
    report.rss_after_kib = server.probe.rss_kib();
    report.problems = rt.block_on(senders.close());

    // Restart on the same directory.
    let t = Instant::now();
    stop(server)?;
    report.stop = t.elapsed();
    let look = Look::at(&dir.0);
    report.journal_bytes = look.journal_bytes;
    report.snapshot_bytes = look.snapshot_bytes().unwrap_or(0);
    report.compact_bytes = (look.journal_bytes + cfg.compaction_margin).max(MIN_COMPACT_BYTES);
    flags.extend(["--compact-bytes".into(), report.compact_bytes.to_string()]);
    eprintln!("state: restarting");
    let t = Instant::now();
    let server = launch(&flags)?;
    rt.block_on(wait_healthy(server.addr, HEALTHY_LIMIT))?;
    report.restart = t.elapsed();
    report.recovery_peak_kib = server.probe.peak_rss_kib();
    std::thread::sleep(SETTLE);
    report.steady_kib = server.probe.rss_kib();

    // The probe, until a compaction has come and gone.
    eprintln!(
        "state: probing acknowledgements until a compaction is done (at most {:?})",
        cfg.probe_limit
    );
    let run = rt.block_on(async {
        let mut client = HttpClient::new(server.addr, None);
        let token = crate::api::login(&mut client, &setup.probe.name).await?;
        let probe = AckProbe::start(
            server.addr,
            &token,
            &setup.probe_room,
            cfg.probe_rate,
            cfg.text_len,
        )
        .await?;
        let watcher = DirWatch::start(&dir.0, probe.shared.clock);
        let meter = Meter::start(&Target {
            addr: server.addr,
            probe: Some(server.probe),
            server_cpu_index: None,
        });
        let start = Instant::now();
        let mut done_at = None;
        while start.elapsed() < cfg.probe_limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if watcher.done() > 0 {
                let at = *done_at.get_or_insert_with(Instant::now);
                if at.elapsed() >= PROBE_AFTER {
                    break;
                }
            }
        }
        let start_ns = probe.start_ns;
        let run = probe.stop().await;
        Ok::<_, LoadError>((run, watcher.finish(), start_ns, meter.finish()))
    })?;
    let (run, compactions, start_ns, usage) = run;
    report.probe_usage = usage;
    report.probe = run.against(&compactions);
    report.compactions = compactions;
    report.probe_start_ns = start_ns;
    for (k, v) in run.problems {
        *report.problems.entry(k).or_default() += v;
    }
    stop(server)?;
    Ok(report)
}

fn stop(server: ServerProcess) -> Result<()> {
    let status = server.stop()?;
    if !status.success() {
        eprintln!("warning: server exited with {status}");
    }
    Ok(())
}

/// Asks `GET /healthz` every 2 ms until it answers 200, at most `limit`.
pub async fn wait_healthy(addr: SocketAddr, limit: Duration) -> Result<()> {
    let start = Instant::now();
    let mut client = HttpClient::new(addr, None);
    loop {
        if let Ok(r) = client.request("GET", "/healthz", None, None).await {
            if r.status == 200 {
                return Ok(());
            }
        }
        if start.elapsed() >= limit {
            return Err(LoadError::Timeout(format!(
                "/healthz did not answer 200 within {limit:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
