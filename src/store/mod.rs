//! Where records go: nowhere (`--ephemeral`), or the journal in `--data-dir`.
//!
//! The chat core hands every record here together with what to do once it is safe (the
//! acknowledgement). In memory that happens at once; with a journal it happens on the writer
//! thread after the record's batch reached the OS.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::chat::Record;

/// Runs once a record is acknowledged.
pub type Done = Box<dyn FnOnce() + Send>;
/// Runs once an entry record is acknowledged, with the record.
pub type Deliver = Box<dyn FnOnce(&Record) + Send>;

enum Backend {
    Memory,
}

pub struct Store {
    /// Held shared by every change (memory and record together) and exclusively by a
    /// snapshot, so a snapshot never sees a change whose record went to the next journal.
    gate: RwLock<()>,
    backend: Backend,
}

impl Store {
    /// A store that keeps nothing: every record is acknowledged at once.
    pub fn memory() -> Store {
        Store {
            gate: RwLock::new(()),
            backend: Backend::Memory,
        }
    }

    /// Taken around each change; see [`Store::gate`]'s field doc.
    pub fn gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Taken to snapshot: no change is in progress while it is held.
    pub fn quiesce(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn append(&self, _rec: &Record, done: Option<Done>) {
        match self.backend {
            Backend::Memory => {
                if let Some(done) = done {
                    done();
                }
            }
        }
    }

    /// Like [`Store::append`], handing the record itself to the acknowledgement so the
    /// broadcast can be built from it without another copy.
    pub fn append_entry(&self, rec: Record, deliver: Deliver) {
        match self.backend {
            Backend::Memory => deliver(&rec),
        }
    }

    /// Bytes written and fsyncs done, for `/metrics`.
    pub fn stats(&self) -> (u64, u64) {
        (0, 0)
    }
}

impl Store {
    /// Flushes and stops the journal, if any.
    pub fn close(&self) {}
}
