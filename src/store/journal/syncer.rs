//! Background fsync for `--fsync interval`.
//!
//! The writer keeps writing and acknowledging while this thread brings the disk up to date at
//! most [`SYNC_INTERVAL`] after the oldest unsynced write. An fsync can take a hundred
//! milliseconds on a busy disk; done on the writer thread it would hold back every delivery
//! behind it, although `interval` never promised that an acknowledged record is on the disk.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use super::{lock_ignoring_poison, Shared, SYNC_INTERVAL};

struct State {
    /// A second handle on the live journal file.
    file: Arc<File>,
    path: PathBuf,
    /// When the oldest write not yet fsynced happened.
    dirty_since: Option<Instant>,
    stop: bool,
}

struct Inner {
    state: Mutex<State>,
    wake: Condvar,
}

/// Owns the fsync thread; dropping it stops the thread (the writer syncs on close itself).
pub(super) struct Syncer {
    inner: Arc<Inner>,
    handle: Option<JoinHandle<()>>,
}

impl Syncer {
    pub(super) fn start(file: &File, path: &Path, shared: &Arc<Shared>) -> io::Result<Syncer> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                file: Arc::new(file.try_clone()?),
                path: path.to_path_buf(),
                dirty_since: None,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let (thread_inner, shared) = (Arc::clone(&inner), Arc::clone(shared));
        let handle = thread::Builder::new()
            .name("parley-journal-sync".into())
            .spawn(move || run(&thread_inner, &shared))?;
        Ok(Syncer {
            inner,
            handle: Some(handle),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock_ignoring_poison(&self.inner.state)
    }

    /// The writer wrote to the live journal.
    pub(super) fn dirty(&self) {
        let mut state = self.lock();
        if state.dirty_since.is_none() {
            state.dirty_since = Some(Instant::now());
            self.inner.wake.notify_one();
        }
    }

    /// A compaction started a new journal file; the writer synced the old one.
    pub(super) fn switch(&self, file: &File, path: &Path) -> io::Result<()> {
        let clone = Arc::new(file.try_clone()?);
        let mut state = self.lock();
        state.file = clone;
        state.path = path.to_path_buf();
        Ok(())
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.lock().stop = true;
        self.inner.wake.notify_one();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn run(inner: &Inner, shared: &Shared) {
    let mut state = lock_ignoring_poison(&inner.state);
    loop {
        if state.stop {
            return;
        }
        let Some(since) = state.dirty_since else {
            state = inner.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let now = Instant::now();
        let due = since + SYNC_INTERVAL;
        if now < due {
            state = inner
                .wake
                .wait_timeout(state, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        state.dirty_since = None;
        let (file, path) = (Arc::clone(&state.file), state.path.clone());
        drop(state);
        match file.sync_data() {
            Ok(()) => {
                shared.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // After a failed fsync the kernel may have dropped dirty pages: the writer
                // stops acknowledging when it sees this.
                let reason = format!("fsync of {} failed: {e}", path.display());
                tracing::error!("journal: {reason}; no further records will be acknowledged");
                lock_ignoring_poison(&shared.failed).get_or_insert(reason);
                shared
                    .stopped
                    .store(true, std::sync::atomic::Ordering::Release);
                return;
            }
        }
        state = lock_ignoring_poison(&inner.state);
    }
}
