//! Scenario 3, connections: as many authenticated WebSocket connections as the open-file limit
//! allows, all members of one room; upgrade rate, server memory per connection, and the time
//! one message takes to reach every one of them.

use super::{finish_all, open_many, Meter, OpenOptions, Target, Usage};
use crate::api;
use crate::conn::{Outgoing, WsConfig};
use crate::error::{LoadError, Result};
use crate::frame::XorShift;
use crate::http::HttpClient;
use crate::probe;
use crate::scan::Stamp;
use crate::sender::SendSpec;
use crate::stats::{Latency, Shared};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Settings of the connections scenario.
#[derive(Clone, Debug)]
pub struct ConnectionsConfig {
    /// Connections to open. Default is 19,000: the 20,000 open-file limit of each process, less
    /// headroom for the server's listener, journal and REST connections.
    pub connections: usize,
    /// Upgrades in flight at once. Default is 64.
    pub concurrency: usize,
    /// Broadcasts timed once all are connected. Default is 5.
    pub broadcasts: usize,
    /// REST clients used for setup. Default is 32.
    pub setup_concurrency: usize,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            connections: 19_000,
            concurrency: 64,
            broadcasts: 5,
            setup_concurrency: 32,
        }
    }
}

/// One timed broadcast.
#[derive(Clone, Debug, Default)]
pub struct Broadcast {
    pub reached: u64,
    /// Send to the last delivery.
    pub to_all: Duration,
    /// Spread of the deliveries, microseconds.
    pub latency: Latency,
}

/// What the connections scenario measured.
#[derive(Clone, Debug, Default)]
pub struct ConnectionsReport {
    pub asked: usize,
    pub connected: usize,
    pub failures: BTreeMap<String, u64>,
    pub setup: Duration,
    /// The connect phase: touch, upgrade and `hello` for every connection.
    pub connect_wall: Duration,
    pub upgrade_latency: Latency,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    pub server_fds: Option<usize>,
    pub generator_peak_rss_kib: Option<u64>,
    pub broadcasts: Vec<Broadcast>,
    pub connect_usage: Usage,
    pub problems: BTreeMap<String, u64>,
}

impl ConnectionsReport {
    pub fn upgrades_per_s(&self) -> f64 {
        let s = self.connect_wall.as_secs_f64();
        if s > 0.0 {
            self.connected as f64 / s
        } else {
            0.0
        }
    }

    /// Server RSS growth per connection, in bytes.
    pub fn rss_per_connection(&self) -> Option<f64> {
        let (b, a) = (self.server_rss_before_kib?, self.server_rss_after_kib?);
        (self.connected > 0).then(|| (a.saturating_sub(b) * 1024) as f64 / self.connected as f64)
    }
}

/// Runs the scenario against `target`.
pub async fn run(target: &Target, cfg: &ConnectionsConfig) -> Result<ConnectionsReport> {
    if cfg.connections < 2 {
        return Err(LoadError::Config("connections must be at least 2".into()));
    }
    if let Some(limit) = probe::open_file_limit() {
        if (cfg.connections as u64) + 64 > limit {
            eprintln!(
                "warning: {} connections asked but this process may open {limit} files",
                cfg.connections
            );
        }
    }
    let setup_start = Instant::now();
    let prefix = api::run_prefix();
    let n = cfg.connections;
    eprintln!("connections: registering {n} users");
    let users = api::create_users(target.addr, &prefix, n, cfg.setup_concurrency).await?;
    let mut client = HttpClient::new(target.addr, None);
    let room = api::create_room(
        &mut client,
        &users[0].token,
        &format!("{prefix}all"),
        n as u64,
    )
    .await?;
    eprintln!("connections: joining one room");
    api::join_all(
        target.addr,
        &users,
        std::slice::from_ref(&room),
        |_| 0,
        cfg.setup_concurrency,
    )
    .await?;
    drop(client);
    let setup = setup_start.elapsed();

    // Idle REST connections of the setup close on their own; give the server a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = target.probe.and_then(|p| p.rss_kib());

    let shared = Arc::new(Shared::new(true));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tokens: Vec<String> = users.iter().map(|u| u.token.clone()).collect();
    let opts = OpenOptions {
        ws: WsConfig {
            read_buf: 4096,
            write_queue: 4,
            ..WsConfig::default()
        },
        concurrency: cfg.concurrency,
        touch: true,
    };
    eprintln!("connections: opening {n} websockets");
    let meter = Meter::start(target);
    let opened = open_many(target.addr, &tokens, &opts, &shared, &stop_rx).await;
    let connect_usage = meter.finish();
    let connected = opened.count();
    let failures = opened.failures.clone();
    let upgrade_latency = Latency::of(&opened.upgrade_latency);
    let connect_wall = opened.wall;
    let conns: Vec<_> = opened.conns.into_iter().flatten().collect();
    eprintln!("connections: {connected} open; failures: {failures:?}");

    // Idle: let the server settle (presence, buffers) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = target.probe.and_then(|p| p.rss_kib());
    let server_fds = target.probe.and_then(|p| p.fds());

    let mut broadcasts = Vec::new();
    if let Some(first) = conns.first() {
        let spec = SendSpec::new(&room, 100);
        let mut rng = XorShift::new(99);
        let mut scratch = Vec::new();
        for b in 0..cfg.broadcasts {
            let phase = b as u32 + 1;
            let sent_ns = shared.clock.now_ns();
            let mut frame = Vec::new();
            spec.append_frame(
                &mut frame,
                &mut scratch,
                Stamp { phase, sent_ns },
                b as u64,
                &mut rng,
            );
            shared.phase(phase).sent.fetch_add(1, Ordering::Relaxed);
            if first.tx.send(Outgoing::Frames(frame)).await.is_err() {
                break;
            }
            shared
                .wait_delivered(
                    phase,
                    conns.len() as u64,
                    Duration::from_secs(3),
                    Duration::from_secs(20),
                )
                .await;
            let last = shared.phase(phase).last_arrival_ns.load(Ordering::Relaxed);
            broadcasts.push(Broadcast {
                reached: shared.received(phase),
                to_all: Duration::from_nanos(last.saturating_sub(sent_ns)),
                latency: Latency::default(),
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let generator_peak_rss_kib = probe::self_peak_rss_kib();
    let totals = finish_all(conns, &stop_tx, &shared).await;
    for (b, r) in broadcasts.iter_mut().enumerate() {
        r.latency = Latency::of(&totals[b + 1]);
    }
    Ok(ConnectionsReport {
        asked: n,
        connected,
        failures,
        setup,
        connect_wall,
        upgrade_latency,
        server_rss_before_kib: rss_before,
        server_rss_after_kib: rss_after,
        server_fds,
        generator_peak_rss_kib,
        broadcasts,
        connect_usage,
        problems: shared.problems(),
    })
}
