//! Where records go: nowhere (`--ephemeral`), the journal in `--data-dir`, or in cluster
//! mode the log the nodes share ([`Log`], which the `cluster` module provides).
//!
//! The chat core first takes a place ([`Store::reserve`], refused once the journal failed or
//! is full, before anything changed), then hands the record here with what to do once it is
//! safe (the acknowledgement). In memory the core acknowledges at once itself; with a journal
//! the acknowledgement runs on the journal's delivery thread after the record's batch reached
//! the OS (and the disk, under `--fsync always`). Records are JSON inside the journal's
//! length-prefixed, checksummed frames; a snapshot is a stream of records (`snapshot`).

pub(crate) mod journal;
pub(crate) mod kept;
pub(crate) mod record;
pub mod sim;
pub(crate) mod snapshot;

use std::sync::{Arc, OnceLock};

use journal::{Journal, Origin, Reserved, SnapshotSource};

pub use journal::JournalConfig;

pub use journal::{Done, Refused};
pub use record::{KeptEntry, Record};

enum Backend {
    Memory,
    /// Set once recovery is over; the core exists (and replays into) before that.
    Journal(OnceLock<Journal>),
    /// Set once the node reached NATS and caught up with the shared log.
    Cluster(OnceLock<Arc<dyn Log>>),
    /// The deterministic simulation's journal (`sim`).
    Sim(Arc<sim::SimLog>),
}

/// The shared log of cluster mode, as the store sees it: a place records go in order.
pub trait Log: Send + Sync {
    /// A place for one record among the changes on their way to the log: `Full` while as
    /// many as it holds wait for an acknowledgement, `Failed` while it cannot be reached.
    fn reserve(&self) -> Result<Box<dyn LogPlace>, Refused>;
    /// Why the log refuses changes now (NATS unreachable), if it does.
    fn failed(&self) -> Option<String>;
}

/// A place taken in the shared log ([`Log::reserve`]).
pub trait LogPlace: Send {
    /// Hands one record (its JSON) to the log, after those handed before; `done` runs with
    /// whether the log acknowledged it, never on the caller's thread.
    fn append(self: Box<Self>, record: Vec<u8>, done: Done);
}

pub struct Store {
    backend: Backend,
}

/// A place for one record, taken before the change it describes.
pub enum Slot {
    /// Nothing is stored: the caller acknowledges at once.
    Memory,
    Journal(Reserved),
    Cluster(Box<dyn LogPlace>),
    Sim(sim::SimPlace),
}

impl Slot {
    /// Hands the record to the journal; `done` runs once its fate is known. In memory,
    /// `done(true)` runs at once, on this thread.
    pub fn append(self, record: Vec<u8>, done: Done) {
        match self {
            Slot::Memory => done(true),
            Slot::Journal(place) => place.append(record, Some(done)),
            Slot::Cluster(place) => place.append(record, done),
            Slot::Sim(place) => place.append(record, done),
        }
    }
}

/// What recovery did, for the log.
#[derive(Debug, Default)]
pub struct Recovery {
    pub records: u64,
    pub bytes: u64,
    /// A torn final record was cut: nothing acknowledged was lost.
    pub truncated_tail: Option<String>,
    /// Damage followed by valid records was cut after an unclean stop and a reboot:
    /// acknowledged records may be lost.
    pub lost_tail: Option<String>,
}

impl Store {
    /// A store that keeps nothing.
    pub fn memory() -> Store {
        Store {
            backend: Backend::Memory,
        }
    }

    /// A store for the journal in `--data-dir`, not open yet: see [`Store::open`].
    pub fn journal() -> Store {
        Store {
            backend: Backend::Journal(OnceLock::new()),
        }
    }

    /// A store for cluster mode, whose log is set by [`Store::join_cluster`].
    pub fn cluster() -> Store {
        Store {
            backend: Backend::Cluster(OnceLock::new()),
        }
    }

    /// A store for the deterministic simulation: records go to `log`, which acknowledges
    /// them when the simulation says (see [`sim`]).
    pub fn simulated(log: Arc<sim::SimLog>) -> Store {
        Store {
            backend: Backend::Sim(log),
        }
    }

    /// Sends records to `log` from now on (cluster mode only).
    pub fn join_cluster(&self, log: Arc<dyn Log>) {
        if let Backend::Cluster(slot) = &self.backend {
            let _ = slot.set(log);
        }
    }

    /// False only in cluster mode before the node has caught up with the shared log: its state
    /// is partial until then, so the server answers nothing but `/healthz` and `/metrics`.
    pub fn joined(&self) -> bool {
        match &self.backend {
            Backend::Cluster(log) => log.get().is_some(),
            _ => true,
        }
    }

    /// True in cluster mode.
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    /// True when nothing is stored and changes are acknowledged at once.
    pub fn is_memory(&self) -> bool {
        matches!(self.backend, Backend::Memory)
    }

    fn live(&self) -> Option<&Journal> {
        match &self.backend {
            Backend::Memory | Backend::Cluster(_) | Backend::Sim(_) => None,
            Backend::Journal(j) => j.get(),
        }
    }

    /// Opens the journal as `jcfg` says and replays it into `apply`, one record at a time.
    /// `may_lose` is asked when damage is followed by valid records (see `Journal::open`).
    pub fn open(
        &self,
        jcfg: JournalConfig,
        apply: &mut dyn FnMut(Record),
        may_lose: &dyn Fn() -> bool,
    ) -> Result<Recovery, String> {
        let Backend::Journal(slot) = &self.backend else {
            return Ok(Recovery::default());
        };
        let mut sink = |origin: Origin, payload: &[u8]| -> Result<(), String> {
            match origin {
                Origin::Journal => {
                    let rec = serde_json::from_slice(payload)
                        .map_err(|e| format!("journal record is unreadable: {e}"))?;
                    apply(rec);
                }
                Origin::Snapshot => snapshot::decode(payload, &mut *apply)?,
            }
            Ok(())
        };
        let (journal, found) =
            Journal::open(jcfg, &mut sink, may_lose).map_err(|e| e.to_string())?;
        let _ = slot.set(journal);
        Ok(Recovery {
            records: found.snapshot_records + found.journal_records,
            bytes: found.bytes,
            truncated_tail: found.truncated_tail,
            lost_tail: found.lost_tail,
        })
    }

    /// Takes a place for one record; refused when the journal failed, closed or is full.
    pub fn reserve(&self) -> Result<Slot, Refused> {
        match &self.backend {
            Backend::Memory => Ok(Slot::Memory),
            Backend::Journal(j) => match j.get() {
                Some(j) => j.reserve().map(Slot::Journal),
                None => Err(Refused::Failed),
            },
            Backend::Cluster(log) => match log.get() {
                Some(log) => log.reserve().map(Slot::Cluster),
                None => Err(Refused::Failed),
            },
            Backend::Sim(log) => log.reserve().map(Slot::Sim),
        }
    }

    /// Appends a record the server writes for itself (start, stop, epoch), without a place.
    pub fn append_system(&self, rec: &Record) {
        if let Backend::Sim(log) = &self.backend {
            if let Ok(place) = log.reserve() {
                place.append(
                    serde_json::to_vec(rec).unwrap_or_default(),
                    Box::new(|_| {}),
                );
            }
            return;
        }
        if let Some(j) = self.live() {
            j.append(serde_json::to_vec(rec).unwrap_or_default(), None);
        }
    }

    /// When the journal has grown past `--compact-bytes`, replaces it with a snapshot whose
    /// records `source` gives; `source` is called at once, and its records are pulled on the
    /// snapshot thread.
    pub fn compact_if_due(&self, source: impl FnOnce() -> SnapshotSource) {
        if let Some(j) = self.live() {
            if j.wants_snapshot() {
                j.compact(source());
            }
        }
    }

    /// Bytes written and fsyncs done, for `/metrics`.
    pub fn stats(&self) -> (u64, u64) {
        match self.live() {
            None => (0, 0),
            Some(j) => {
                let s = j.stats();
                (s.bytes_written, s.fsyncs)
            }
        }
    }

    /// Snapshots written since start.
    pub fn snapshots(&self) -> u64 {
        self.live().map_or(0, |j| j.stats().snapshots)
    }

    /// Why the journal stopped accepting writes, if it did.
    pub fn failed(&self) -> Option<String> {
        match &self.backend {
            Backend::Cluster(log) => match log.get() {
                Some(log) => log.failed(),
                None => Some("not caught up with the cluster yet".into()),
            },
            _ => self.live().and_then(Journal::failed),
        }
    }

    /// Flushes and stops the journal, if any. Blocks until it is on disk.
    pub fn close(&self) {
        if let Some(j) = self.live() {
            j.close();
        }
    }
}
