//! The delivery thread: runs each written batch's `done` callbacks, in submit order, off the
//! writer thread. The writer only writes; broadcasting an acknowledged entry to a thousand
//! connections happens here, while the writer already writes the next batch.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};

use crossbeam_channel::{Receiver, Sender};

use super::{Done, Shared};

/// One batch's callbacks and how many reserved places its records hold.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) dones: Vec<Done>,
    pub(super) reserved: usize,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.dones.is_empty() && self.reserved == 0
    }
}

/// Owns the delivery thread; dropping it lets the thread finish what was handed over, then
/// joins it.
pub(super) struct Deliverer {
    tx: Option<Sender<(Batch, bool)>>,
    handle: Option<JoinHandle<()>>,
}

impl Deliverer {
    pub(super) fn start(shared: &Arc<Shared>) -> io::Result<Deliverer> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::clone(shared);
        let handle = thread::Builder::new()
            .name("parley-journal-deliver".into())
            .spawn(move || run(&rx, &shared))?;
        Ok(Deliverer {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    pub(super) fn thread_id(&self) -> ThreadId {
        match &self.handle {
            Some(h) => h.thread().id(),
            None => thread::current().id(),
        }
    }

    /// Hands over a batch: `written` tells its callbacks whether the records are safe. The
    /// channel is not bounded by itself: the places of [`super::QUEUE_CAPACITY`] bound it.
    pub(super) fn hand(&self, batch: Batch, written: bool) {
        if batch.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            // The thread only exits once this sender is dropped.
            let _ = tx.send((batch, written));
        }
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(handle) = self.handle.take() {
            if handle.thread().id() == thread::current().id() {
                return;
            }
            if handle.join().is_err() {
                tracing::error!("journal: delivery thread panicked");
            }
        }
    }
}

fn run(rx: &Receiver<(Batch, bool)>, shared: &Shared) {
    while let Ok((batch, written)) = rx.recv() {
        for done in batch.dones {
            if panic::catch_unwind(AssertUnwindSafe(|| done(written))).is_err() {
                tracing::error!("journal: a record's done callback panicked; continuing");
            }
        }
        shared.in_flight.fetch_sub(batch.reserved, Ordering::AcqRel);
    }
}
