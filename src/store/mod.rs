//! Where records go: nowhere (`--ephemeral`), or the journal in `--data-dir`.
//!
//! The chat core hands every record here together with what to do once it is safe (the
//! acknowledgement). In memory that happens at once; with a journal it happens on the writer
//! thread after the record's batch reached the OS (and the disk, under `--fsync always`).
//! Records are JSON inside the journal's length-prefixed, checksummed frames; a snapshot is
//! one JSON array of the records that rebuild the state.

pub mod journal;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::chat::Record;
use crate::config::Config;
use journal::{Journal, JournalConfig};

/// Runs once a record is acknowledged.
pub type Done = journal::Done;
/// Runs once an entry record is acknowledged, with the record.
pub type Deliver = Box<dyn FnOnce(&Record) + Send>;

/// Largest group-commit write.
const MAX_BATCH_BYTES: usize = 1 << 20;

enum Backend {
    Memory,
    Journal(Journal),
}

pub struct Store {
    /// Held shared by every change (memory and record together) and exclusively by a
    /// snapshot, so a snapshot never sees a change whose record went to the next journal.
    gate: RwLock<()>,
    backend: Backend,
}

/// What recovery read back, in the order to apply it.
pub struct Recovered {
    pub records: Vec<Record>,
    /// A note about a torn final record that was cut off, to log.
    pub truncated_tail: Option<String>,
}

impl Store {
    /// A store that keeps nothing: every record is acknowledged at once.
    pub fn memory() -> Store {
        Store {
            gate: RwLock::new(()),
            backend: Backend::Memory,
        }
    }

    /// Opens the journal in `cfg.data_dir` and reads back what it holds.
    pub fn open(cfg: &Config) -> Result<(Store, Recovered), String> {
        let jcfg = JournalConfig {
            dir: cfg.data_dir.clone(),
            fsync: cfg.fsync,
            compact_bytes: cfg.compact_bytes,
            max_batch_bytes: MAX_BATCH_BYTES,
        };
        let (journal, found) = Journal::open(jcfg).map_err(|e| e.to_string())?;
        let mut records = Vec::with_capacity(found.records.len());
        if let Some(snapshot) = &found.snapshot {
            let state: Vec<Record> = serde_json::from_slice(snapshot).map_err(|e| {
                format!("snapshot in {} is unreadable: {e}", cfg.data_dir.display())
            })?;
            records.extend(state);
        }
        for (i, raw) in found.records.iter().enumerate() {
            let rec = serde_json::from_slice(raw).map_err(|e| {
                format!(
                    "journal record {} in {} is unreadable: {e}",
                    i + 1,
                    cfg.data_dir.display()
                )
            })?;
            records.push(rec);
        }
        let store = Store {
            gate: RwLock::new(()),
            backend: Backend::Journal(journal),
        };
        let recovered = Recovered {
            records,
            truncated_tail: found.truncated_tail,
        };
        Ok((store, recovered))
    }

    /// Taken around each change; see the `gate` field.
    pub fn gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    fn quiesce(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn append(&self, rec: &Record, done: Option<Done>) {
        match &self.backend {
            Backend::Memory => {
                if let Some(done) = done {
                    done();
                }
            }
            Backend::Journal(j) => j.append(serde_json::to_vec(rec).unwrap_or_default(), done),
        }
    }

    /// Like [`Store::append`], handing the record itself to the acknowledgement so the
    /// broadcast can be built from it without another copy.
    pub fn append_entry(&self, rec: Record, deliver: Deliver) {
        match &self.backend {
            Backend::Memory => deliver(&rec),
            Backend::Journal(j) => {
                let bytes = serde_json::to_vec(&rec).unwrap_or_default();
                j.append(bytes, Some(Box::new(move || deliver(&rec))));
            }
        }
    }

    /// When the journal has grown past `--compact-bytes`, replaces it with a snapshot of the
    /// state `snapshot` describes. Changes wait while the state is read.
    pub fn compact_if_due(&self, snapshot: impl FnOnce() -> Vec<Record>) {
        let Backend::Journal(j) = &self.backend else {
            return;
        };
        if !j.wants_snapshot() {
            return;
        }
        let _quiet = self.quiesce();
        let bytes = serde_json::to_vec(&snapshot()).unwrap_or_default();
        j.compact(bytes);
    }

    /// Bytes written and fsyncs done, for `/metrics`.
    pub fn stats(&self) -> (u64, u64) {
        match &self.backend {
            Backend::Memory => (0, 0),
            Backend::Journal(j) => {
                let s = j.stats();
                (s.bytes_written, s.fsyncs)
            }
        }
    }

    /// Why the journal stopped accepting writes, if it did.
    pub fn failed(&self) -> Option<String> {
        match &self.backend {
            Backend::Memory => None,
            Backend::Journal(j) => j.failed(),
        }
    }

    /// Flushes and stops the journal, if any. Blocks until it is on disk.
    pub fn close(&self) {
        if let Backend::Journal(j) = &self.backend {
            j.close();
        }
    }
}
