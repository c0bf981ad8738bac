//! The benchmark scenarios, and what they share: the target server, CPU and memory metering,
//! opening many connections, and per-phase results.

pub mod burden;
pub mod cluster;
pub mod connections;
pub mod fanout;
pub mod history;
pub mod logins;
pub mod presence;
pub mod read_markers;
pub mod rooms;
pub mod state;

use crate::api::{self, source_addresses};
use crate::conn::{Connection, WsConfig};
use crate::error::{LoadError, Result};
use crate::http::HttpClient;
use crate::probe::{self, ServerProbe};
use crate::stats::{
    merge_into, new_total_histogram, Latency, Shared, TotalHistogram, MAX_LATENCY_US,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The server under load: its address, and its process when it runs on this machine.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub probe: Option<ServerProbe>,
    /// The CPU the server is pinned to, if it is: its interrupt time is measured too.
    pub server_cpu_index: Option<usize>,
}

/// CPU and memory used over a stretch of time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub wall: Duration,
    /// Server CPU time (user + system); `None` without a local server process.
    pub server_cpu: Option<Duration>,
    /// The generator's own CPU time: near `wall` means the generator was saturated.
    pub generator_cpu: Duration,
    /// Server peak RSS over the stretch (`VmHWM`, reset at its start).
    pub server_peak_rss_kib: Option<u64>,
    /// CPU time that neither the server nor the generator used (other processes, kernel
    /// threads): noise from the rest of the machine. `None` without a local server.
    pub other_cpu: Option<Duration>,
    /// Interrupt and softirq time on the server's CPU, when it is pinned: loopback TCP work
    /// that no process is charged for.
    pub server_irq: Option<Duration>,
    /// Major page faults of the server and of the generator: a page (often code) read back
    /// after reclaim, each a stall.
    pub server_major_faults: Option<u64>,
    pub generator_major_faults: Option<u64>,
}

impl Usage {
    /// Server CPU plus the interrupt time of its CPU: the conservative cost of serving.
    pub fn server_cpu_with_irq(&self) -> Option<Duration> {
        Some(self.server_cpu? + self.server_irq?)
    }
}

/// Starts metering; [`Meter::finish`] gives the usage since.
pub struct Meter {
    probe: Option<ServerProbe>,
    start: Instant,
    server_cpu: Option<Duration>,
    generator_cpu: Duration,
    machine_busy: Option<Duration>,
    irq_cpu: Option<usize>,
    irq: Option<Duration>,
    server_majflt: Option<u64>,
    generator_majflt: Option<u64>,
}

impl Meter {
    pub fn start(target: &Target) -> Meter {
        if let Some(p) = target.probe {
            p.reset_peak();
        }
        Meter {
            probe: target.probe,
            start: Instant::now(),
            server_cpu: target.probe.and_then(|p| p.cpu()),
            generator_cpu: probe::self_cpu(),
            machine_busy: probe::machine_busy(),
            irq_cpu: target.server_cpu_index,
            irq: target.server_cpu_index.and_then(probe::cpu_irq_time),
            server_majflt: target.probe.and_then(|p| p.major_faults()),
            generator_majflt: probe::self_major_faults(),
        }
    }

    pub fn finish(&self) -> Usage {
        let server_cpu = match (self.probe.and_then(|p| p.cpu()), self.server_cpu) {
            (Some(end), Some(start)) => Some(end.saturating_sub(start)),
            _ => None,
        };
        let generator_cpu = probe::self_cpu().saturating_sub(self.generator_cpu);
        let other_cpu = match (probe::machine_busy(), self.machine_busy, server_cpu) {
            (Some(end), Some(start), Some(server)) => Some(
                end.saturating_sub(start)
                    .saturating_sub(server)
                    .saturating_sub(generator_cpu),
            ),
            _ => None,
        };
        Usage {
            wall: self.start.elapsed(),
            server_cpu,
            generator_cpu,
            server_peak_rss_kib: self.probe.and_then(|p| p.peak_rss_kib()),
            other_cpu,
            server_irq: match (self.irq_cpu.and_then(probe::cpu_irq_time), self.irq) {
                (Some(end), Some(start)) => Some(end.saturating_sub(start)),
                _ => None,
            },
            server_major_faults: match (
                self.probe.and_then(|p| p.major_faults()),
                self.server_majflt,
            ) {
                (Some(end), Some(start)) => Some(end.saturating_sub(start)),
                _ => None,
            },
            generator_major_faults: match (probe::self_major_faults(), self.generator_majflt) {
                (Some(end), Some(start)) => Some(end.saturating_sub(start)),
                _ => None,
            },
        }
    }
}

/// The figures of one measured phase.
#[derive(Clone, Debug, Default)]
pub struct PhaseResult {
    pub label: String,
    pub phase: u32,
    /// Offered deliveries per second (open loop), `None` for closed loop.
    pub offered_per_s: Option<f64>,
    pub sent: u64,
    pub missed: u64,
    pub expected: u64,
    pub received: u64,
    /// Clock reading when the phase started, and duration until its last delivery.
    pub start_ns: u64,
    pub active: Duration,
    pub latency: Latency,
    pub send_lag: Latency,
    pub usage: Usage,
    /// 100 ms slots whose worst delivery took at least [`SPIKE_US`]: (seconds into the
    /// phase, worst µs).
    pub spikes: Vec<(f64, u64)>,
    /// How many such slots there were in all.
    pub spike_slots: usize,
}

/// Latency worth listing in a phase's spike timeline: 20 ms (the fan-out target's p99).
pub const SPIKE_US: u64 = 20_000;

impl PhaseResult {
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Deliveries per second: received over the time from the phase's start to its last
    /// delivery, so a server that lags behind gets a lower figure.
    pub fn delivered_per_s(&self) -> f64 {
        let secs = self.active.as_secs_f64();
        if secs > 0.0 {
            self.received as f64 / secs
        } else {
            0.0
        }
    }

    /// Deliveries per second of server CPU time (over the phase and its drain).
    pub fn per_server_cpu_s(&self) -> Option<f64> {
        let cpu = self.usage.server_cpu?.as_secs_f64();
        (cpu > 0.0).then(|| self.received as f64 / cpu)
    }

    /// Deliveries per second of server CPU time plus its CPU's interrupt time.
    pub fn per_server_cpu_irq_s(&self) -> Option<f64> {
        let cpu = self.usage.server_cpu_with_irq()?.as_secs_f64();
        (cpu > 0.0).then(|| self.received as f64 / cpu)
    }

    /// Fills the counters of the phase from `shared` once its deliveries are in.
    pub fn record_counts(&mut self, shared: &Shared, fanout: u64) {
        let c = shared.phase(self.phase);
        self.sent = c.sent.load(Ordering::Relaxed);
        self.missed = c.missed.load(Ordering::Relaxed);
        self.received = c.received.load(Ordering::Relaxed);
        self.expected = self.sent * fanout;
        let last = c.last_arrival_ns.load(Ordering::Relaxed);
        self.active = Duration::from_nanos(last.saturating_sub(self.start_ns));
        if let Ok(h) = shared.send_lag.lock() {
            self.send_lag = Latency::of(&h[self.phase as usize]);
        }
        let (spikes, total) = shared.spikes(self.start_ns, last.max(self.start_ns), SPIKE_US, 10);
        self.spikes = spikes;
        self.spike_slots = total;
    }
}

/// Settings for opening many connections.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub ws: WsConfig,
    /// Upgrades in flight at once.
    pub concurrency: usize,
    /// Make an authenticated REST request just before each upgrade, as an app does after
    /// login. It keeps the user present, so the upgrade causes no presence broadcast.
    pub touch: bool,
}

/// The result of opening many connections.
pub struct Opened {
    /// `None` where opening failed.
    pub conns: Vec<Option<Connection>>,
    pub failures: BTreeMap<String, u64>,
    /// Time of each upgrade, request to `hello`, in microseconds.
    pub upgrade_latency: TotalHistogram,
    /// For each connection that opened, two readings of the run's clock (`Shared::clock`, ns):
    /// before its TCP connect, and once its `hello` had arrived. Whatever the server did for
    /// this upgrade happened between the two.
    pub spans: Vec<Option<(u64, u64)>>,
    pub wall: Duration,
}

impl Opened {
    pub fn count(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    /// All connections, or an error naming the failures.
    pub fn all(self) -> Result<Vec<Connection>> {
        if !self.failures.is_empty() {
            return Err(LoadError::Protocol(format!(
                "could not open every connection: {:?}",
                self.failures
            )));
        }
        Ok(self.conns.into_iter().flatten().collect())
    }
}

/// Opens one connection per token, `concurrency` at a time, spreading them over several
/// loopback source addresses. Failures are counted, not fatal.
pub async fn open_many(
    addr: SocketAddr,
    tokens: &[String],
    opts: &OpenOptions,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> Opened {
    let tokens: Arc<Vec<String>> = Arc::new(tokens.to_vec());
    let n = tokens.len();
    let workers = opts.concurrency.clamp(1, n.max(1));
    let sources = source_addresses(addr);
    let failures = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let tokens = tokens.clone();
        let shared = shared.clone();
        let stop = stop.clone();
        let opts = opts.clone();
        let sources = sources.clone();
        let failures = failures.clone();
        handles.push(tokio::spawn(async move {
            let mut rest = HttpClient::new(addr, sources[w % sources.len()]);
            let mut lat = new_total_histogram();
            let mut out = Vec::new();
            let mut i = w;
            while i < n {
                let token = &tokens[i];
                let touched = if opts.touch {
                    api::me(&mut rest, token).await
                } else {
                    Ok(())
                };
                let t0 = Instant::now();
                let began_ns = shared.clock.now_ns();
                let r = match touched {
                    Ok(()) => {
                        let local = sources[i % sources.len()];
                        let open = Connection::open(
                            addr,
                            local,
                            token,
                            &opts.ws,
                            shared.clone(),
                            stop.clone(),
                            i as u64 + 1,
                        );
                        match tokio::time::timeout(Duration::from_secs(30), open).await {
                            Ok(r) => r,
                            Err(_) => Err(LoadError::Timeout("upgrade and hello".into())),
                        }
                    }
                    Err(e) => Err(e),
                };
                match r {
                    Ok(c) => {
                        lat.saturating_record(
                            (t0.elapsed().as_micros() as u64).min(MAX_LATENCY_US),
                        );
                        out.push((i, c, (began_ns, shared.clock.now_ns())));
                    }
                    Err(e) => {
                        if let Ok(mut f) = failures.lock() {
                            *f.entry(short_error(&e)).or_default() += 1;
                        }
                    }
                }
                i += workers;
            }
            (out, lat)
        }));
    }
    let mut conns: Vec<Option<Connection>> = (0..n).map(|_| None).collect();
    let mut spans = vec![None; n];
    let mut upgrade_latency = new_total_histogram();
    for h in handles {
        if let Ok((part, lat)) = h.await {
            let _ = upgrade_latency.add(&lat);
            for (i, c, span) in part {
                conns[i] = Some(c);
                spans[i] = Some(span);
            }
        }
    }
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    Opened {
        conns,
        failures,
        upgrade_latency,
        spans,
        wall: start.elapsed(),
    }
}

/// An error as a short key for failure counts.
pub fn short_error(e: &LoadError) -> String {
    let s = e.to_string();
    s.chars().take(120).collect()
}

/// Stops every reader, closes every connection and merges their latency histograms by phase.
pub async fn finish_all(
    conns: Vec<Connection>,
    stop: &watch::Sender<bool>,
    shared: &Shared,
) -> Vec<TotalHistogram> {
    let mut totals: Vec<TotalHistogram> = (0..crate::stats::MAX_PHASES)
        .map(|_| new_total_histogram())
        .collect();
    let _ = stop.send(true);
    for c in conns {
        let report = c.finish().await;
        for (phase, h) in &report.latency {
            merge_into(&mut totals[*phase as usize], h);
        }
    }
    if let Some(Ok(shared_hists)) = shared.shared_latency.as_ref().map(|m| m.lock()) {
        for (t, h) in totals.iter_mut().zip(shared_hists.iter()) {
            let _ = t.add(h);
        }
    }
    totals
}

/// Reads a duration in seconds from a float.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}
