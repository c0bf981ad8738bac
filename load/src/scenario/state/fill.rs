//! Making the kept state: accounts and rooms, then every room filled to its history length as
//! fast as the server acknowledges.
//!
//! Each sender is one user on one WebSocket and the only member of its rooms, so every stamped
//! entry its connection receives is its own copy: the acknowledgement. A sender keeps up to its
//! share of the window unacknowledged, posting to its rooms in turn.

use super::StateConfig;
use crate::api::{self, User};
use crate::conn::{Connection, Outgoing, WsConfig};
use crate::error::{LoadError, Result};
use crate::frame::XorShift;
use crate::http::HttpClient;
use crate::scan::Stamp;
use crate::scenario::{open_many, OpenOptions};
use crate::sender::SendSpec;
use crate::stats::{Shared, MAX_PHASES};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

/// REST clients used for setup. Default is 16.
const SETUP_CONCURRENCY: usize = 16;
/// Capacity asked for each room: its one member, with room to spare.
const ROOM_CAPACITY: u64 = 10;
/// A fill sender that sees no acknowledgement for this long gives up. Default is 60 s: longer
/// than any compaction pause worth measuring.
const STUCK_AFTER: Duration = Duration::from_secs(60);

/// Accounts and rooms made for the scenario.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The fill senders; `rooms[i]` belongs to `senders[i % senders.len()]`.
    pub senders: Vec<User>,
    pub rooms: Vec<String>,
    /// The probe's own account and room.
    pub probe: User,
    pub probe_room: String,
}

impl Setup {
    /// The rooms of sender `s`.
    pub fn rooms_of(&self, s: usize) -> Vec<String> {
        self.rooms
            .iter()
            .skip(s)
            .step_by(self.senders.len().max(1))
            .cloned()
            .collect()
    }
}

/// Registers the senders and the probe, and creates the rooms (each creator is its member).
pub async fn prepare(addr: SocketAddr, cfg: &StateConfig) -> Result<Setup> {
    let rooms = cfg.rooms();
    let senders = cfg.senders();
    if senders + 1 >= MAX_PHASES {
        return Err(LoadError::Config(format!(
            "{senders} fill senders; at most {} (raise the entries per room instead)",
            MAX_PHASES - 2
        )));
    }
    let prefix = api::run_prefix();
    let mut users = api::create_users(
        addr,
        &prefix,
        senders + 1,
        SETUP_CONCURRENCY.min(senders + 1),
    )
    .await?;
    let probe = users
        .pop()
        .ok_or_else(|| LoadError::Config("no probe user".into()))?;
    let owners: Arc<Vec<String>> = Arc::new(users.iter().map(|u| u.token.clone()).collect());
    let room_prefix = prefix.clone();
    let ids = api::for_each(addr, rooms, SETUP_CONCURRENCY, move |mut client, i| {
        let token = owners[i % owners.len()].clone();
        let name = format!("{room_prefix}r{i}");
        async move {
            let r = api::create_room(&mut client, &token, &name, ROOM_CAPACITY).await;
            (client, r)
        }
    })
    .await?;
    let mut client = HttpClient::new(addr, None);
    let probe_room = api::create_room(
        &mut client,
        &probe.token,
        &format!("{prefix}probe"),
        ROOM_CAPACITY,
    )
    .await?;
    Ok(Setup {
        senders: users,
        rooms: ids,
        probe,
        probe_room,
    })
}

/// The fill senders' connections, open and idle.
pub struct Senders {
    conns: Vec<Connection>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Senders {
    /// Opens one connection per sender.
    pub async fn open(addr: SocketAddr, setup: &Setup) -> Result<Senders> {
        let shared = Arc::new(Shared::new(false));
        let (stop, stop_rx) = watch::channel(false);
        let tokens: Vec<String> = setup.senders.iter().map(|u| u.token.clone()).collect();
        let opts = OpenOptions {
            ws: WsConfig::default(),
            concurrency: 8,
            touch: false,
        };
        let conns = open_many(addr, &tokens, &opts, &shared, &stop_rx)
            .await
            .all()?;
        Ok(Senders {
            conns,
            shared,
            stop,
        })
    }

    /// Posts `per_room` messages of `text_len` bytes to every room and waits for every
    /// acknowledgement. Returns the time from the first send to the last acknowledgement.
    pub async fn fill(
        &self,
        setup: &Setup,
        per_room: usize,
        text_len: usize,
        window: usize,
    ) -> Result<Duration> {
        let share = window.div_ceil(self.conns.len().max(1)).max(1) as u64;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (s, conn) in self.conns.iter().enumerate() {
            let specs: Vec<SendSpec> = setup
                .rooms_of(s)
                .iter()
                .map(|r| SendSpec::new(r, text_len))
                .collect();
            tasks.push(tokio::spawn(send_windowed(
                conn.tx.clone(),
                specs,
                per_room as u64,
                share,
                s as u32 + 1,
                Arc::clone(&self.shared),
            )));
        }
        let mut failed = None;
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed = failed.or(Some(e)),
                Err(e) => failed = failed.or(Some(LoadError::Protocol(format!("fill task: {e}")))),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(start.elapsed()),
        }
    }

    /// Closes the connections; returns the errors and closes they saw.
    pub async fn close(self) -> std::collections::BTreeMap<String, u64> {
        let _ = self.stop.send(true);
        for c in self.conns {
            c.finish().await;
        }
        self.shared.problems()
    }
}

/// One sender: `per_room` messages to each room of `specs`, in turn, at most `window` of them
/// unacknowledged, checking every millisecond. Acknowledgements are counted in `phase`.
pub(crate) async fn send_windowed(
    tx: mpsc::Sender<Outgoing>,
    specs: Vec<SendSpec>,
    per_room: u64,
    window: u64,
    phase: u32,
    shared: Arc<Shared>,
) -> Result<()> {
    let total = per_room * specs.len() as u64;
    let counters = shared.phase(phase);
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut rng = XorShift::new(u64::from(phase) * 7919);
    let mut scratch = Vec::new();
    let text_len = specs.first().map_or(0, |s| s.text_len);
    let mut next = 0u64;
    let mut acked = 0u64;
    let mut last_progress = Instant::now();
    while acked < total {
        ticks.tick().await;
        let now_acked = counters.received.load(Ordering::Relaxed);
        if now_acked != acked {
            acked = now_acked;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STUCK_AFTER {
            return Err(LoadError::Timeout(format!(
                "fill sender {phase}: {acked} of {total} acknowledged, none for {STUCK_AFTER:?}; {:?}",
                shared.problems()
            )));
        }
        let n = window
            .saturating_sub(next.saturating_sub(acked))
            .min(total - next);
        if n == 0 {
            continue;
        }
        let stamp = Stamp {
            phase,
            sent_ns: shared.clock.now_ns(),
        };
        let mut batch = Vec::with_capacity(n as usize * (text_len + 96));
        for k in next..next + n {
            let spec = &specs[(k % specs.len() as u64) as usize];
            spec.append_frame(&mut batch, &mut scratch, stamp, k, &mut rng);
        }
        next += n;
        counters.sent.fetch_add(n, Ordering::Relaxed);
        if tx.send(Outgoing::Frames(batch)).await.is_err() {
            return Err(LoadError::Protocol(format!(
                "fill sender {phase}: connection closed; {:?}",
                shared.problems()
            )));
        }
    }
    Ok(())
}
