//! The deterministic simulation (`tests/simulation.rs`; see `docs/TESTING.md`).
//!
//! From a seed, [`World`](gen::World) draws commands from many simulated users, the
//! [`driver`] runs each on the live core, whose store is the simulated journal
//! ([`SimLog`]), and faults are injected between steps: a crash (the core is dropped and a
//! new one recovers from what the log holds, a torn last record included), a compaction
//! (the core's snapshot replaces the log) and a failed journal write. After every step the
//! [`Checker`](check::Checker) judges the rooms the step touched; every
//! [`Options::checkpoint`] steps, and at the end, every room, the recovered state against the
//! live one, and the replicas (fresh cores fed the log through `Core::apply`, and cores fed
//! the same cluster proposals through `Core::execute`) against each other.
//!
//! Not part of the API: public only for the test target.

pub mod check;
pub mod driver;
pub mod gen;
mod run;

use std::sync::Arc;

pub use crate::chat::inspect::{Plant, RoomFacts};
pub use check::{Invariant, Violation};
pub use driver::{Cmd, Reply};
pub use run::Sim;

use crate::chat::filter::Filter;
use crate::chat::Core;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::sim::SimLog;
use crate::store::{snapshot, Store};

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub steps: u64,
    /// Full checks (every room, recovery, replicas) every this many steps.
    pub checkpoint: u64,
    /// Fresh cores fed the log, and cores fed the proposals, at each checkpoint.
    pub replicas: usize,
    /// After this step, a room's topic changes in memory only (a broken durability), to
    /// show that a run finds the shortest failing prefix.
    pub sabotage_at: Option<u64>,
}

impl Options {
    pub fn new(seed: u64, steps: u64) -> Options {
        Options {
            seed,
            steps,
            checkpoint: 1000,
            replicas: 2,
            sabotage_at: None,
        }
    }
}

/// A broken invariant, the step (counted from 1) whose checks found it, and the seed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub violation: Violation,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} step {}: {}\nreplay: PARLEY_SIM_SEED={} PARLEY_SIM_STEPS={} cargo test --test simulation",
            self.seed, self.step, self.violation, self.seed, self.step
        )
    }
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub steps: u64,
    pub accepted: u64,
    pub crashes: u64,
    pub torn: u64,
    pub failed_writes: u64,
    /// Steps run with a full journal (every place refused).
    pub full: u64,
    pub compactions: u64,
    pub checkpoints: u64,
    pub rooms: usize,
    pub users: usize,
    /// Rooms the first cluster replica holds at the last checkpoint.
    pub replica_rooms: usize,
    /// SHA-256 of every step's command kind, room and answer, at the last checkpoint: the
    /// same for every run of a seed.
    pub trace: String,
    /// Answers by command and code.
    pub outcomes: std::collections::BTreeMap<String, u64>,
    /// Seconds spent drawing commands, running and checking them, in crashes and in full
    /// checks.
    pub t_gen: f64,
    pub t_exec: f64,
    pub t_crash: f64,
    pub t_full: f64,
}

/// The configuration every simulated core runs with: cheap hashing, rate limits out of the
/// way, a short history so rings wrap, small limits so they are reached.
pub fn config() -> Arc<Config> {
    Arc::new(Config {
        pbkdf2_iterations: 1,
        min_password_length: 8,
        hash_threads: 1,
        rate_limit: 1_000_000,
        rate_burst: 1_000_000,
        room_rate_limit: 1_000_000,
        room_rate_burst: 1_000_000,
        room_byte_rate: u32::MAX,
        room_byte_burst: u32::MAX,
        rest_rate_limit: 1_000_000,
        rest_rate_burst: 1_000_000,
        history_byte_rate: u32::MAX,
        history_byte_burst: u32::MAX,
        register_per_ip_per_hour: usize::MAX,
        login_account_failures: usize::MAX,
        history: 24,
        room_capacity: 6,
        max_rooms_per_user: 12,
        max_owned_rooms: 6,
        admins: vec!["root".into()],
        ..Config::default()
    })
}

/// A core on `store`.
pub fn core(cfg: &Arc<Config>, store: Store) -> Arc<Core> {
    Arc::new(Core::new(
        cfg.clone(),
        Arc::new(Metrics::default()),
        store,
        Filter::default(),
    ))
}

/// A fresh core on `log` that replays `records` (journal records and snapshot records alike)
/// through `Core::apply`, as `Store::open` replays the journal.
pub fn replay(
    cfg: &Arc<Config>,
    log: &Arc<SimLog>,
    records: &[Vec<u8>],
) -> Result<Arc<Core>, String> {
    let c = core(cfg, Store::simulated(log.clone()));
    for payload in records {
        snapshot::decode(payload, &mut |rec| c.apply(&rec))?;
    }
    Ok(c)
}

/// Runs `opts`; on a failure, finds the shortest failing prefix.
pub fn run(opts: &Options) -> Result<Summary, Failure> {
    let first = match Sim::new(opts.clone()).run_to(opts.steps, None) {
        Ok(summary) => return Ok(summary),
        Err(f) => f,
    };
    // A step's own checks are incremental; a full check may find a breach some steps after
    // it happened. Replay with full checks at every step after the last clean checkpoint:
    // the first that fails is the shortest prefix that fails.
    let clean = (first.step - 1) / opts.checkpoint * opts.checkpoint;
    Err(Sim::new(opts.clone())
        .run_to(first.step, Some(clean))
        .err()
        .unwrap_or(first))
}

/// The seed and step count `PARLEY_SIM_SEED` and `PARLEY_SIM_STEPS` ask for (`random` picks
/// a seed); a fixed seed and 100,000 steps by default.
pub fn options_from_env() -> Result<Options, String> {
    let seed = match std::env::var("PARLEY_SIM_SEED") {
        Err(_) => DEFAULT_SEED,
        Ok(s) if s == "random" => rand::random::<u64>() >> 12,
        Ok(s) => s
            .parse()
            .map_err(|_| format!("PARLEY_SIM_SEED={s}: not a number"))?,
    };
    let steps = match std::env::var("PARLEY_SIM_STEPS") {
        Err(_) => DEFAULT_STEPS,
        Ok(s) => s
            .parse()
            .map_err(|_| format!("PARLEY_SIM_STEPS={s}: not a number"))?,
    };
    Ok(Options::new(seed, steps))
}

pub const DEFAULT_SEED: u64 = 21;
pub const DEFAULT_STEPS: u64 = 100_000;
