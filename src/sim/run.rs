//! One simulation: the live core on the simulated journal, the clients, the faults, the
//! checker and the cluster replicas.

use std::collections::BTreeSet;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::check::{violation, Checker, Invariant, Violation};
use super::driver::{self, Cmd, Reply};
use super::gen::{self, World};
use super::{config, core, replay, Failure, Options, Plant, Summary};
use crate::chat::{ChatError, Core};
use crate::config::Config;
use crate::store::sim::{Fault, SimLog};
use crate::store::Store;

/// The simulated clock starts here (ms; in 2065) and moves on by a drawn amount each step.
/// Accounts, sessions and invite codes still read the wall clock; a snapshot keeps the mutes
/// that end after the wall clock's now, so simulated mutes must end after it.
pub const SIM_EPOCH: u64 = 3_000_000_000_000;

pub struct Sim {
    opts: Options,
    cfg: Arc<Config>,
    log: Arc<SimLog>,
    live: Arc<Core>,
    world: World,
    checker: Checker,
    /// Faults, proposal seeds and the replicas' clock: apart from the clients' draws.
    rng: StdRng,
    /// Cores fed the cluster proposals of the commands (with the same clock and seed as
    /// the live core's: the same room ids).
    replicas: Vec<Arc<Core>>,
    proposals: u64,
    clock: u64,
    step: u64,
    /// Users (lowercase) whose sessions ended in memory although the store did not record
    /// the end: the safe side by design (`Core::end_session`), so until the next crash their
    /// sessions are not compared.
    ended_unrecorded: BTreeSet<String>,
    /// Every step's command, room and answer (not the tokens: those come from the OS).
    trace: Sha256,
    /// The last command run, for a failure's report.
    last: String,
    pub summary: Summary,
}

impl Sim {
    pub fn new(opts: Options) -> Sim {
        let cfg = config();
        let log = Arc::new(SimLog::default());
        let live = core(&cfg, Store::simulated(log.clone()));
        let replicas = (0..opts.replicas)
            .map(|_| core(&cfg, Store::memory()))
            .collect();
        Sim {
            world: World::new(opts.seed, live.admin_setup_code()),
            rng: StdRng::seed_from_u64(opts.seed ^ 0x5eed_f00d),
            cfg,
            log,
            live,
            checker: Checker::default(),
            replicas,
            proposals: 0,
            clock: SIM_EPOCH,
            step: 0,
            last: String::new(),
            trace: Sha256::new(),
            ended_unrecorded: BTreeSet::new(),
            summary: Summary::default(),
            opts,
        }
    }

    /// The simulated clock (ms).
    pub fn now(&self) -> u64 {
        self.clock
    }

    /// The live core.
    pub fn core(&self) -> &Arc<Core> {
        &self.live
    }

    /// The cluster replicas.
    pub fn replicas(&self) -> &[Arc<Core>] {
        &self.replicas
    }

    pub fn log(&self) -> &Arc<SimLog> {
        &self.log
    }

    /// Plants a violation in the live core (mutation checks).
    pub fn plant(&self, p: &Plant) -> bool {
        self.live.sim_plant(p)
    }

    /// Runs `cmd` on the live core (and, as a proposal, on the replicas), tells the clients the
    /// answer, and checks what it touched.
    pub fn exec(&mut self, cmd: &Cmd) -> Result<Result<Reply, ChatError>, Violation> {
        let ends = match cmd {
            Cmd::Logout { token } => self
                .live
                .authenticate(crate::chat::token_hash(token))
                .ok()
                .map(|a| a.user.key.clone()),
            Cmd::Disable { target, .. } => Some(target.to_ascii_lowercase()),
            _ => None,
        };
        let seed = self.rng.random();
        let (out, op) = driver::execute(&self.live, &self.log, cmd, self.clock, seed);
        if let (Some(user), Err(ChatError::Unavailable)) = (ends, &out) {
            self.ended_unrecorded.insert(user);
        }
        self.last = format!("{cmd:?} answered {out:?}");
        self.world.observe(cmd, &out);
        if out.is_ok() {
            self.summary.accepted += 1;
        }
        let name = format!("{cmd:?}");
        let name = name.split([' ', '{']).next().unwrap_or_default();
        let code = match &out {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        *self
            .summary
            .outcomes
            .entry(format!("{name} {code}"))
            .or_default() += 1;
        let room = match &out {
            Ok(Reply::Room(id)) => id.as_str(),
            _ => "",
        };
        let step = format!(
            "{name} {} {code} {room}\n",
            gen::room_of(cmd).unwrap_or_default()
        );
        self.trace.update(step.as_bytes());
        if let Some(p) = op {
            self.proposals += 1;
            for r in &self.replicas {
                driver::execute_proposal(r, self.proposals, self.clock, seed, p.clone());
            }
        }
        let mut touched: Vec<&str> = gen::room_of(cmd).into_iter().collect();
        if let Ok(Reply::Room(id)) = &out {
            touched.push(id);
        }
        for id in touched {
            self.checker.room(&self.live, id, true)?;
        }
        Ok(out)
    }

    /// One drawn step: maybe a fault, a command, its checks, maybe a crash or a compaction.
    pub fn step(&mut self) -> Result<(), Violation> {
        self.step += 1;
        self.summary.steps = self.step;
        self.clock += self.rng.random_range(1..2000);
        let fault = match self.rng.random_range(0..1000) {
            0 => Some(Fault::Fail),
            1 => Some(Fault::Torn),
            2 => Some(Fault::Full),
            _ => None,
        };
        if let Some(f) = fault {
            self.log.inject(f);
        }
        let t = std::time::Instant::now();
        let cmd = self.world.next(&self.live);
        let t1 = std::time::Instant::now();
        let out = self.exec(&cmd)?;
        self.summary.t_gen += (t1 - t).as_secs_f64();
        self.summary.t_exec += t1.elapsed().as_secs_f64();
        // Fail and Torn refuse from the write they spoil on.
        let spoilt = matches!(fault, Some(Fault::Fail | Fault::Torn)) && self.log.refusing();
        if spoilt {
            match fault {
                Some(Fault::Torn) => self.summary.torn += 1,
                _ => self.summary.failed_writes += 1,
            }
            if out.is_ok() && !driver::answers_before_ack(&cmd) {
                return Err(violation(
                    Invariant::Durability,
                    format!("{cmd:?} was answered {out:?} though the store failed its record"),
                ));
            }
        }
        if self.opts.sabotage_at == Some(self.step) {
            if let Some(room) = self.live.sim_room_ids().first() {
                self.live.sim_plant(&Plant::Topic {
                    room: room.clone(),
                    topic: "never recorded".into(),
                });
            }
        }
        if self.step.is_multiple_of(200) {
            self.world.prune_rooms(&self.live);
        }
        self.log.drain();
        if let Some(Fault::Full) = fault {
            self.summary.full += 1;
        }
        let fails = matches!(fault, Some(Fault::Fail | Fault::Torn));
        if fails || self.rng.random_range(0..2000) == 0 {
            let t = std::time::Instant::now();
            let r = self.crash();
            self.summary.t_crash += t.elapsed().as_secs_f64();
            return r;
        }
        if self.rng.random_range(0..700) == 0 {
            self.compact();
        }
        Ok(())
    }

    /// Drops the live core and recovers a new one from the log, torn last record and all;
    /// the recovered state must be the live one.
    pub fn crash(&mut self) -> Result<(), Violation> {
        self.summary.crashes += 1;
        let skip = std::mem::take(&mut self.ended_unrecorded);
        let wall = crate::chat::now_ms();
        let before = without_sessions(&self.live.sim_render(self.clock, wall), &skip);
        let found = self
            .log
            .recover()
            .map_err(|e| violation(Invariant::Durability, format!("recovery failed: {e}")))?;
        let recovered = replay(&self.cfg, &self.log, &found.records)
            .map_err(|e| violation(Invariant::Durability, format!("replay failed: {e}")))?;
        let after = without_sessions(&recovered.sim_render(self.clock, wall), &skip);
        same(Invariant::Durability, "live", &before, "recovered", &after)?;
        self.world.set_admin_code(recovered.admin_setup_code());
        self.live = recovered;
        self.checker.all_rooms(&self.live)
    }

    /// Checks every room of the live core.
    pub fn check_rooms(&mut self) -> Result<(), Violation> {
        self.checker.all_rooms(&self.live)
    }

    /// Replaces the log with the live core's snapshot.
    pub fn compact(&mut self) {
        self.summary.compactions += 1;
        self.log.replace(self.live.snapshot_now());
    }

    /// Every room; the log replayed into fresh cores against the live state and each other;
    /// the cluster replicas against each other.
    pub fn full_check(&mut self) -> Result<(), Violation> {
        self.summary.checkpoints += 1;
        self.checker.all_rooms(&self.live)?;
        let wall = crate::chat::now_ms();
        let skip = &self.ended_unrecorded;
        let live = without_sessions(&self.live.sim_render(self.clock, wall), skip);
        let found = self
            .log
            .read()
            .map_err(|e| violation(Invariant::Durability, format!("the log is unreadable: {e}")))?;
        let scratch = Arc::new(SimLog::default());
        let mut first: Option<String> = None;
        for i in 0..self.opts.replicas.max(1) {
            let c = replay(&self.cfg, &scratch, &found.records)
                .map_err(|e| violation(Invariant::Durability, format!("replay failed: {e}")))?;
            let got = without_sessions(&c.sim_render(self.clock, wall), skip);
            match &first {
                None => {
                    same(Invariant::Durability, "live", &live, "replayed", &got)?;
                    first = Some(got);
                }
                Some(f) => same(
                    Invariant::Determinism,
                    "replay 0",
                    f,
                    &format!("replay {i}"),
                    &got,
                )?,
            }
        }
        if let Some((r0, rest)) = self.replicas.split_first() {
            let want = r0.sim_render(self.clock, wall);
            for (i, r) in rest.iter().enumerate() {
                same(
                    Invariant::Determinism,
                    "replica 0",
                    &want,
                    &format!("replica {}", i + 1),
                    &r.sim_render(self.clock, wall),
                )?;
            }
        }
        self.summary.rooms = self.live.sim_room_ids().len();
        self.summary.trace = crate::chat::hex(&self.trace.clone().finalize());
        self.summary.replica_rooms = self.replicas.first().map_or(0, |r| r.sim_room_ids().len());
        self.summary.users = self.live.counts().0;
        Ok(())
    }

    /// Runs until `steps` steps are done, with the full checks at every checkpoint, at the
    /// end, and at every step after `full_after` if given.
    pub fn run_to(mut self, steps: u64, full_after: Option<u64>) -> Result<Summary, Failure> {
        while self.step < steps {
            let mut r = self.step();
            let s = self.step;
            if r.is_ok()
                && (s.is_multiple_of(self.opts.checkpoint)
                    || s == steps
                    || full_after.is_some_and(|c| s > c))
            {
                let t = std::time::Instant::now();
                r = self.full_check();
                self.summary.t_full += t.elapsed().as_secs_f64();
            }
            if let Err(mut violation) = r {
                violation.detail += &format!(" (after {})", self.last);
                return Err(Failure {
                    seed: self.opts.seed,
                    step: s,
                    violation,
                });
            }
        }
        Ok(self.summary)
    }
}

/// `render` without the session lines of `users`.
fn without_sessions(render: &str, users: &BTreeSet<String>) -> String {
    if users.is_empty() {
        return render.to_string();
    }
    let mut out = String::with_capacity(render.len());
    for line in render.lines() {
        let mut w = line.split(' ');
        if w.next() == Some("session")
            && w.nth(1)
                .is_some_and(|u| users.contains(&u.to_ascii_lowercase()))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `Err` naming the first line where `a` and `b` differ, with the two lines after it.
fn same(inv: Invariant, an: &str, a: &str, bn: &str, b: &str) -> Result<(), Violation> {
    if a == b {
        return Ok(());
    }
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let at = la
        .iter()
        .zip(&lb)
        .position(|(x, y)| x != y)
        .unwrap_or(la.len().min(lb.len()));
    let near = |l: &[&str]| {
        l.iter()
            .skip(at)
            .take(3)
            .copied()
            .collect::<Vec<_>>()
            .join(" | ")
    };
    Err(violation(
        inv,
        format!(
            "the states differ at line {at}: {an} has [{}], {bn} has [{}]",
            near(&la),
            near(&lb)
        ),
    ))
}
