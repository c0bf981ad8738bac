//! The durable journal: an append-only log of opaque records plus an occasional snapshot,
//! with group commit, crash recovery and compaction.
//!
//! The journal knows nothing about chat state. The server serializes each state change into
//! a record and hands it to [`Journal::append`]; on startup [`Journal::open`] gives back the
//! last snapshot and every record written after it, in order, for the server to replay.
//!
//! # Files in the data directory
//! - `LOCK`: held with an exclusive `flock` while the journal is open, and holding the pid of
//!   the process that has the directory open, for people. The kernel drops the lock when that
//!   process dies, however it dies, so a crash never leaves the directory locked.
//! - `journal-<generation>.log` (generation as 20 zero-padded decimal digits): the live
//!   journal, and during a compaction also the one or two before it.
//! - `snapshot`: the state as of the start of journal generation `base` (stored in its header).
//! - `snapshot.tmp`, `journal-*.log.tmp`: half-written files of an interrupted compaction or
//!   rotation; deleted on open.
//!
//! # Format (version 1, all integers little-endian)
//! Every file starts with a 32-byte header: magic (`PRLYJRNL` or `PRLYSNAP`), format version
//! (u32), flags (u32, zero), generation (u64), CRC32C of the previous 24 bytes (u32), zero (u32).
//! A record is its payload length (u32), a CRC32C (u32) over the length bytes and the payload,
//! then the payload. Covering the length means a run of zero bytes (what a file system may
//! leave at the end of a file after a power cut) never reads as a valid empty record. A
//! journal record is at most [`MAX_RECORD_BYTES`]; the snapshot is one record of up to 4 GiB.
//!
//! # Threads
//! [`Journal::append`] only puts the record on a bounded channel. One writer thread does all
//! journal I/O: it waits for a message, drains whatever else is already queued (up to
//! `max_batch_bytes`), writes the batch with one `write`, fsyncs according to the policy, then
//! runs the batch's `done` callbacks in submit order. A second thread writes snapshots, so a
//! large snapshot never holds up acknowledgements. Under `Interval` a third thread does the
//! fsyncs (`syncer`), so a slow disk never holds them up either: `Always` fsyncs on the writer
//! thread before each batch's `done`s, as it must.
//!
//! # Recovery rules
//! A bad final record (incomplete, oversized length or checksum mismatch) with no valid record
//! anywhere after it is a torn write: the file is cut back to the last whole record and the
//! cut is reported in [`Recovered::truncated_tail`]. A bad record followed by a valid record,
//! or a bad record in a journal that is followed by a newer journal, is corruption: `open`
//! refuses with [`JournalError::Corrupt`] naming the file and byte offset, and touches nothing.
//!
//! # Compaction
//! [`Journal::compact`] travels through the writer's queue, so it is ordered with appends. The
//! writer fsyncs the live journal and switches to a new generation `g + 1` (created as a
//! temporary file, fsynced, renamed, directory fsynced); records appended after the call go
//! there. The snapshot thread then writes `snapshot.tmp` with base `g + 1`, fsyncs it, renames
//! it over `snapshot`, fsyncs the directory and deletes journals older than `g + 1`. At every
//! instant the directory holds either the old snapshot with all journals from its base on, or
//! the new snapshot with journals from `g + 1` on (plus stale older journals, which open
//! ignores and deletes); both replay to the same state.
//!
//! # Layout
//! - `mod.rs`: the public API ([`Journal`], [`JournalConfig`], [`FsyncPolicy`], the limits) and
//!   the counters and state the handles share with the two threads.
//! - `error.rs`: [`JournalError`].
//! - `format.rs`: the bytes on disk: file headers, records, CRC32C.
//! - `files.rs`: the data directory: file names, private file and directory creation,
//!   directory fsync, the `LOCK` file.
//! - `recovery.rs`: what `open` reads back, and the torn-tail vs corruption rules.
//! - `writer.rs`: the writer thread: group commit, the fsync policy, switching journal files.
//! - `compactor.rs`: the snapshot thread.
//! - `tests.rs`: tests of the journal as a whole; `test_support.rs`: helpers all tests share.

mod compactor;
mod error;
mod files;
mod format;
mod recovery;
mod syncer;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use crossbeam_channel::Sender;

pub use error::JournalError;

use compactor::Compactor;
use error::io_error;
use files::{create_private_dir, LockGuard};
use recovery::recover;
use syncer::Syncer;
use writer::{Msg, Writer};

/// Largest journal record payload. Default is 16 MiB: far above any state change the server
/// makes (request bodies are capped at 64 KiB), small enough that a corrupt length field is
/// recognised as such instead of sending recovery off to read gigabytes.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Largest snapshot payload (the u32 length field's range).
pub const MAX_SNAPSHOT_BYTES: usize = u32::MAX as usize;

/// Default `compact_bytes`: 64 MiB of journal since the last snapshot makes
/// [`Journal::wants_snapshot`] true. Replaying that much takes well under a second.
pub const DEFAULT_COMPACT_BYTES: u64 = 64 * 1024 * 1024;

/// Default `max_batch_bytes`: 1 MiB per write. Large enough that one write and one fsync
/// cover thousands of small records, small enough to keep acknowledgement latency low.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Capacity of the writer's queue, in messages. When it is full, [`Journal::append`] blocks
/// until the writer catches up: producers get backpressure instead of unbounded memory.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Under [`FsyncPolicy::Interval`], the longest a written record stays unsynced.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// On-disk format version written by this build; other versions are refused.
pub const FORMAT_VERSION: u32 = 1;

/// Callback run on the writer thread once its record is written (see [`Journal::append`]).
pub type Done = Box<dyn FnOnce() + Send>;

/// When the writer calls fsync. Every policy survives a process crash (`kill -9`) for every
/// acknowledged record, because a `done` runs only after the record reached the OS; the
/// policies differ in how much survives a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// fsync every batch before acknowledging it: nothing acknowledged is lost on power loss.
    Always,
    /// fsync at most [`SYNC_INTERVAL`] after a write: up to a second at risk on power loss.
    #[default]
    Interval,
    /// Leave it to the OS (fsync only at compaction and close).
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = String;

    /// Parses the `--fsync` flag value: `always`, `interval` or `never`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "interval" => Ok(FsyncPolicy::Interval),
            "never" => Ok(FsyncPolicy::Never),
            other => Err(format!(
                "unknown fsync policy {other:?} (expected always, interval or never)"
            )),
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Never => "never",
        })
    }
}

/// Where and how the journal keeps its files.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Data directory; created if missing.
    pub dir: PathBuf,
    /// When to fsync (the `--fsync` flag).
    pub fsync: FsyncPolicy,
    /// Journal bytes since the last snapshot above which [`Journal::wants_snapshot`] is true.
    pub compact_bytes: u64,
    /// Upper bound on one group-commit write; a single larger record is still written whole.
    pub max_batch_bytes: usize,
}

impl JournalConfig {
    /// The defaults: `interval` fsync, [`DEFAULT_COMPACT_BYTES`], [`DEFAULT_MAX_BATCH_BYTES`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            fsync: FsyncPolicy::default(),
            compact_bytes: DEFAULT_COMPACT_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
        }
    }
}

/// What [`Journal::open`] found on disk: replay `snapshot` (if any), then `records` in order.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The state as of the last compaction, exactly as passed to [`Journal::compact`].
    pub snapshot: Option<Vec<u8>>,
    /// Every record appended after that snapshot, oldest first.
    pub records: Vec<Vec<u8>>,
    /// Set when a torn final record was cut off; a line worth logging at startup.
    pub truncated_tail: Option<String>,
}

/// Counters since [`Journal::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Bytes written to journal files (snapshots not included).
    pub bytes_written: u64,
    /// fsync calls on journal files (the snapshot thread's are not counted).
    pub fsyncs: u64,
    /// Records written and acknowledged.
    pub records: u64,
    /// Snapshots completed.
    pub snapshots: u64,
    /// Size of the journal files since the last snapshot, as compared with `compact_bytes`.
    pub live_bytes: u64,
}

/// A handle to an open journal. Cheap to clone; all clones share one writer thread. The
/// journal closes (flush, fsync, unlock) on [`Journal::close`] or when the last clone drops.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    compact_bytes: u64,
    /// Taken by the first `close`; held while joining so a concurrent `close` waits too.
    writer: Mutex<Option<JoinHandle<()>>>,
    writer_id: ThreadId,
}

/// State the writer and snapshot threads publish to handles.
struct Shared {
    bytes_written: AtomicU64,
    fsyncs: AtomicU64,
    records: AtomicU64,
    snapshots: AtomicU64,
    live_bytes: AtomicU64,
    /// `compact` calls not yet finished (or abandoned); `wants_snapshot` is false meanwhile.
    pending_compactions: AtomicU64,
    /// Set by a `close` that runs on the writer thread itself (from a `done`), which cannot
    /// wait for the writer without waiting for itself.
    close_requested: AtomicBool,
    failed: Mutex<Option<String>>,
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Journal {
    /// Creates `dir` if needed, locks it, recovers the snapshot and journal records, cuts a
    /// torn final record, and starts the writer thread.
    ///
    /// Refuses with [`JournalError::Locked`] while another live process (or another open
    /// handle in this process) holds the directory, and with [`JournalError::Corrupt`] or
    /// [`JournalError::BadHeader`] on damage that is not a torn final write.
    pub fn open(cfg: JournalConfig) -> Result<(Journal, Recovered), JournalError> {
        let dir = cfg.dir;
        create_private_dir(&dir).map_err(|e| io_error(&dir, "create directory", e))?;
        let lock = LockGuard::acquire(&dir)?;
        let state = recover(&dir)?;

        let shared = Arc::new(Shared {
            bytes_written: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            records: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            live_bytes: AtomicU64::new(state.live_bytes),
            pending_compactions: AtomicU64::new(0),
            close_requested: AtomicBool::new(false),
            failed: Mutex::new(None),
        });
        let compactor = Compactor::start(&dir, &shared)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        let syncer = match cfg.fsync {
            FsyncPolicy::Interval => Some(
                Syncer::start(&state.file, &state.path, &shared)
                    .map_err(|e| io_error(&dir, "spawn fsync thread", e))?,
            ),
            _ => None,
        };
        let writer = Writer {
            rx,
            shared: Arc::clone(&shared),
            dir: dir.clone(),
            file: state.file,
            path: state.path,
            generation: state.generation,
            policy: cfg.fsync,
            max_batch_bytes: cfg.max_batch_bytes.max(1),
            buf: Vec::with_capacity(cfg.max_batch_bytes.clamp(1, DEFAULT_MAX_BATCH_BYTES)),
            dones: Vec::new(),
            batch_records: 0,
            unsynced_since: None,
            failed: false,
            syncer,
            compactor,
            _lock: lock,
        };
        // If spawning fails the closure is dropped with the writer, which stops the snapshot
        // thread and removes the lock file.
        let handle = thread::Builder::new()
            .name("parley-journal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| io_error(&dir, "spawn writer thread", e))?;
        let inner = Inner {
            tx,
            shared,
            compact_bytes: cfg.compact_bytes,
            writer_id: handle.thread().id(),
            writer: Mutex::new(Some(handle)),
        };
        Ok((
            Journal {
                inner: Arc::new(inner),
            },
            state.recovered,
        ))
    }

    /// Hands a record to the writer thread. `done` runs on the writer thread after the batch
    /// holding this record was written to the OS (and fsynced under `Always`); records are
    /// written and `done`s run in submit order. Keep `done` short (signal a oneshot, push to a
    /// queue): it holds up the next batch. It must not call `append` or `compact`, which could
    /// wait on a full queue that only this thread drains; `close` is fine.
    ///
    /// Blocks while [`QUEUE_CAPACITY`] messages are waiting. After [`Journal::close`], or once
    /// the journal has [`failed`](Journal::failed), the record is dropped and `done` is dropped
    /// without being called (a captured oneshot sender then reports the loss).
    pub fn append(&self, record: Vec<u8>, done: Option<Done>) {
        // A send error means the writer has exited; dropping the message drops `done` uncalled.
        let _ = self.inner.tx.send(Msg::Record(record, done));
    }

    /// True when the journal has grown past `compact_bytes` since the last snapshot and no
    /// compaction is under way.
    pub fn wants_snapshot(&self) -> bool {
        let shared = &self.inner.shared;
        shared.pending_compactions.load(Ordering::Acquire) == 0
            && shared.live_bytes.load(Ordering::Relaxed) > self.inner.compact_bytes
    }

    /// Replaces the journal so far with `snapshot`, the full serialized state including every
    /// record appended before this call and none appended after it (so take the snapshot and
    /// call this under the same lock that orders your appends). Returns at once; the writer
    /// switches to a new journal file in queue order and a background thread writes the
    /// snapshot. A crash at any point recovers the same state.
    pub fn compact(&self, snapshot: Vec<u8>) {
        let shared = &self.inner.shared;
        shared.pending_compactions.fetch_add(1, Ordering::AcqRel);
        if self.inner.tx.send(Msg::Compact(snapshot)).is_err() {
            shared.pending_compactions.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Writes and fsyncs everything queued, finishes a snapshot in progress, stops the threads
    /// and removes the lock file. Idempotent; later appends are dropped.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Counters for `/metrics` and tests.
    pub fn stats(&self) -> JournalStats {
        let s = &self.inner.shared;
        JournalStats {
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            snapshots: s.snapshots.load(Ordering::Relaxed),
            live_bytes: s.live_bytes.load(Ordering::Relaxed),
        }
    }

    /// The error that stopped the writer, if any. Once set, nothing more is written or
    /// acknowledged; the server should report unhealthy and stop accepting changes.
    pub fn failed(&self) -> Option<String> {
        lock_ignoring_poison(&self.inner.shared.failed).clone()
    }
}

impl Inner {
    fn close(&self) {
        if thread::current().id() == self.writer_id {
            // Called from a `done` (or by dropping the last handle inside one): the writer
            // finishes this batch and then shuts down by itself.
            self.shared.close_requested.store(true, Ordering::Release);
            return;
        }
        let mut writer = lock_ignoring_poison(&self.writer);
        if let Some(handle) = writer.take() {
            let _ = self.tx.send(Msg::Close);
            if handle.join().is_err() {
                eprintln!("parley journal: writer thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}
