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
//! record is at most [`MAX_RECORD_BYTES`]. Journals are format version 1. A snapshot (format
//! version 2) is a stream of such records ended by an end record (payload `\0end` and the
//! record count, u64), written and read one record at a time, so it has no size limit; a
//! version-1 snapshot (one record holding everything) is still read.
//!
//! # Threads
//! [`Journal::append`] only puts the record on a channel; [`Journal::reserve`] first takes one
//! of [`QUEUE_CAPACITY`] places, so a caller learns that the journal is full or failed before
//! it changes anything, and nobody ever blocks. One writer thread does all journal I/O: it
//! waits for a message, drains whatever else is already queued (up to `max_batch_bytes`),
//! writes the batch with one `write`, fsyncs according to the policy, and hands the batch's
//! `done` callbacks to the delivery thread (`deliverer`), which runs them in submit order: the
//! writer only writes, and a slow broadcast never holds up the disk. A place is given back
//! once its `done` has run, so the places bound the records waiting to be written and the
//! acknowledgements waiting to be delivered together. A third thread writes snapshots, so a
//! large snapshot never holds up acknowledgements. Under `Interval` a fourth thread does the
//! fsyncs (`syncer`), so a slow disk never holds them up either: `Always` fsyncs on the writer
//! thread before each batch's `done`s, as it must.
//!
//! # Recovery rules
//! [`Journal::open`] reads the snapshot and then the journals one record at a time and hands
//! each to the caller's sink, so recovery holds one record in memory, not the data directory.
//! A bad final record (incomplete, oversized length or checksum mismatch) with no valid record
//! anywhere after it is a torn write: the file is cut back to the last whole record and the
//! cut is reported in [`Recovered::truncated_tail`]. A bad record followed by a valid record
//! in the newest journal is a lost tail when the caller says loss was possible (`may_lose`:
//! an unclean stop, a reboot since, and no fsync per batch): the file is cut at the bad record
//! and the cut reported in [`Recovered::lost_tail`]. Otherwise it is corruption, and so is a
//! bad record in a journal followed by a newer one (rotation fsyncs a journal before the next
//! exists): `open` refuses with [`JournalError::Corrupt`] naming the file and byte offset, and
//! changes nothing on disk.
//!
//! # Compaction
//! [`Journal::compact`] travels through the writer's queue, so it is ordered with appends. The
//! writer fsyncs the live journal and switches to a new generation `g + 1` (created as a
//! temporary file, fsynced, renamed, directory fsynced); records appended after the call go
//! there. The snapshot thread then pulls the snapshot's records from the caller's
//! [`SnapshotSource`] one at a time (the caller reads its state then, not before, so nothing
//! waits for it), writes them to `snapshot.tmp` with base `g + 1`, fsyncs it, renames it over
//! `snapshot`, fsyncs the directory and deletes journals older than `g + 1` (at once: they
//! may hold the text of messages deleted since). A copy of the directory (`cp -a`) that read
//! the old snapshot before the rename and reached the old journals after their deletion lacks
//! them: a server started on it refuses, naming the missing journal, and the copy must be
//! taken again (docs/OPERATIONS.md). The state the
//! source reads is at least the state at the switch and may hold some later records too, so
//! replaying journal `g + 1` over it must skip what it already holds (the caller's records are
//! idempotent). At every
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
//! - `deliverer.rs`: the delivery thread that runs acknowledgements.
//! - `compactor.rs`: the snapshot thread.
//! - `tests.rs`: tests of the journal as a whole; `test_support.rs`: helpers all tests share.

mod compactor;
mod deliverer;
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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use crossbeam_channel::Sender;

pub use error::JournalError;
pub(crate) use files::replace_private_file;

use compactor::Compactor;
use deliverer::Deliverer;
use error::io_error;
use files::{create_private_dir, LockGuard};
use recovery::recover;
use syncer::Syncer;
use writer::{Msg, Writer};

/// For `crate::fuzzing`: reads `data` as a journal file's content after its header, as
/// recovery does, handing each whole record's payload to `each` until the end or the first bad
/// record; also checks `data` as a file header and scans it for records as a resync would.
#[doc(hidden)]
pub(crate) fn fuzz_records(data: &[u8], each: &mut dyn FnMut(&[u8])) {
    let path = std::path::Path::new("fuzz");
    let _ = format::parse_header(path, data, &format::JOURNAL_MAGIC);
    let _ = format::parse_header_version(path, data, &format::SNAPSHOT_MAGIC);
    for pos in 0..data.len().min(64) {
        let _ = format::record_at(data, pos, MAX_RECORD_BYTES);
    }
    let mut input = data;
    let mut payload = Vec::new();
    while let Ok(format::ReadResult::Record) =
        format::read_record(&mut input, MAX_RECORD_BYTES, &mut payload)
    {
        let _ = format::end_record_count(&payload);
        each(&payload);
    }
}

/// Largest record payload. Default is 16 MiB: far above any state change the server makes
/// (request bodies are capped at 64 KiB), small enough that a corrupt length field is
/// recognised as such instead of sending recovery off to read gigabytes.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Largest record in a format-1 snapshot (the u32 length field's range).
pub const MAX_LEGACY_SNAPSHOT_BYTES: usize = u32::MAX as usize;

/// Default `compact_bytes`: 64 MiB of journal since the last snapshot makes
/// [`Journal::wants_snapshot`] true. Replaying that much takes well under a second.
pub const DEFAULT_COMPACT_BYTES: u64 = 64 * 1024 * 1024;

/// Default `max_batch_bytes`: 1 MiB per write. Large enough that one write and one fsync
/// cover thousands of small records, small enough to keep acknowledgement latency low.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Places for reserved records: written or not, not yet acknowledged. When all are taken,
/// [`Journal::reserve`] refuses with [`Refused::Full`] instead of blocking the caller.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Under [`FsyncPolicy::Interval`], the longest a written record stays unsynced.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// On-disk format version of journal files.
pub const FORMAT_VERSION: u32 = 1;

/// On-disk format version of snapshots written by this build (a stream of records).
pub const SNAPSHOT_VERSION: u32 = 2;

/// Callback run once its record's fate is known: `true` when it was written (see
/// `Journal::append`), `false` when it never will be (the journal failed or closed).
pub type Done = Box<dyn FnOnce(bool) + Send>;

/// The records of a snapshot, pulled one at a time by the snapshot thread.
pub type SnapshotSource = Box<dyn Iterator<Item = Vec<u8>> + Send>;

/// What [`Journal::open`] hands each recovered record to; an error refuses the open.
pub type Sink<'a> = &'a mut dyn FnMut(Origin, &[u8]) -> Result<(), String>;

/// Where a recovered record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Snapshot,
    Journal,
}

/// When the writer calls fsync. Every policy survives a process crash (`kill -9`) for every
/// acknowledged record, because a `done` runs only after the record reached the OS; the
/// policies differ in how much survives a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// fsync every batch before acknowledging it: nothing acknowledged is lost on power loss.
    Always,
    /// fsync at most `SYNC_INTERVAL` after a write: up to a second at risk on power loss.
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
    /// Journal bytes since the last snapshot above which a compaction is due.
    pub compact_bytes: u64,
    /// Upper bound on one group-commit write; a single larger record is still written whole.
    pub max_batch_bytes: usize,
}

#[cfg(test)]
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

/// What [`Journal::open`] did, beside handing every record to the sink.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Records read from the snapshot (the end record not counted).
    pub snapshot_records: u64,
    /// Records read from the journals after it.
    pub journal_records: u64,
    /// Bytes of snapshot and journal read.
    pub bytes: u64,
    /// Set when a torn final record was cut off; a line worth logging at startup.
    pub truncated_tail: Option<String>,
    /// Set when damage followed by valid records was cut because the caller said loss was
    /// possible: acknowledged records may be gone, and their seqs will be handed out again.
    pub lost_tail: Option<String>,
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

/// Why `Journal::reserve` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every place is taken: the disk or the deliveries are behind. Try again shortly.
    Full,
    /// The journal failed or closed; nothing more will be written.
    Failed,
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
    deliverer_id: ThreadId,
}

/// State the writer, delivery and snapshot threads publish to handles.
struct Shared {
    bytes_written: AtomicU64,
    fsyncs: AtomicU64,
    records: AtomicU64,
    snapshots: AtomicU64,
    live_bytes: AtomicU64,
    /// Reserved places not yet given back (see [`QUEUE_CAPACITY`]).
    in_flight: AtomicUsize,
    /// `compact` calls not yet finished (or abandoned); `wants_snapshot` is false meanwhile.
    pending_compactions: AtomicU64,
    /// Set once nothing more will be written: the writer failed, or the journal closed.
    stopped: AtomicBool,
    failed: Mutex<Option<String>>,
}

impl Shared {
    fn set_failed(&self, reason: String) {
        *lock_ignoring_poison(&self.failed) = Some(reason);
        self.stopped.store(true, Ordering::Release);
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A place in the journal's queue, taken by [`Journal::reserve`]; given back if dropped unused.
pub struct Reserved {
    journal: Journal,
    used: bool,
}

impl Reserved {
    /// Hands the record to the writer (see [`Journal::append`]); the place is given back once
    /// `done` has run.
    pub fn append(mut self, record: Vec<u8>, done: Option<Done>) {
        self.used = true;
        self.journal.send(record, done, true);
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if !self.used {
            self.journal
                .inner
                .shared
                .in_flight
                .fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Journal {
    /// Creates `dir` if needed, locks it, reads the snapshot and journal records back one at
    /// a time into `sink`, cuts a torn final record, and starts the threads.
    ///
    /// `may_lose` is asked when a damaged record is followed by valid ones in the newest
    /// journal, with everything before the damage already in the sink: `true` (the previous
    /// run may have lost acknowledged records in a power cut) cuts the journal there, `false`
    /// refuses. An error from `sink` refuses too, naming the file and offset.
    ///
    /// Refuses with [`JournalError::Locked`] while another live process (or another open
    /// handle in this process) holds the directory, and with [`JournalError::Corrupt`] or
    /// [`JournalError::BadHeader`] on damage that is not a torn final write. A refusal
    /// changes nothing on disk.
    pub fn open(
        cfg: JournalConfig,
        sink: Sink<'_>,
        may_lose: &dyn Fn() -> bool,
    ) -> Result<(Journal, Recovered), JournalError> {
        let dir = cfg.dir;
        create_private_dir(&dir).map_err(|e| io_error(&dir, "create directory", e))?;
        let lock = LockGuard::acquire(&dir)?;
        let state = recover(&dir, sink, may_lose)?;

        let shared = Arc::new(Shared {
            bytes_written: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            records: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            live_bytes: AtomicU64::new(state.live_bytes),
            in_flight: AtomicUsize::new(0),
            pending_compactions: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            failed: Mutex::new(None),
        });
        let compactor = Compactor::start(&dir, &shared)?;
        let deliverer =
            Deliverer::start(&shared).map_err(|e| io_error(&dir, "spawn delivery thread", e))?;
        let deliverer_id = deliverer.thread_id();
        let (tx, rx) = crossbeam_channel::unbounded();
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
            batch: deliverer::Batch::default(),
            batch_records: 0,
            unsynced_since: None,
            failed: false,
            syncer,
            deliverer,
            compactor,
            _lock: lock,
        };
        // If spawning fails the closure is dropped with the writer, which stops the other
        // threads and removes the lock file.
        let handle = thread::Builder::new()
            .name("parley-journal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| io_error(&dir, "spawn writer thread", e))?;
        let inner = Inner {
            tx,
            shared,
            compact_bytes: cfg.compact_bytes,
            writer_id: handle.thread().id(),
            deliverer_id,
            writer: Mutex::new(Some(handle)),
        };
        Ok((
            Journal {
                inner: Arc::new(inner),
            },
            state.recovered,
        ))
    }

    /// Takes a place for one record, or says why not: the journal failed or closed, or every
    /// place is taken. Take it before changing anything the record describes, so that a
    /// refusal leaves nothing to undo.
    pub fn reserve(&self) -> Result<Reserved, Refused> {
        let shared = &self.inner.shared;
        if shared.stopped.load(Ordering::Acquire) {
            return Err(Refused::Failed);
        }
        if shared.in_flight.fetch_add(1, Ordering::AcqRel) >= QUEUE_CAPACITY {
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        Ok(Reserved {
            journal: self.clone(),
            used: false,
        })
    }

    /// Hands a record to the writer thread without a place (records the server writes for
    /// itself, such as its start and stop). `done(true)` runs on the delivery thread after the
    /// batch holding this record was written to the OS (and fsynced under `Always`); records
    /// are written and `done`s run in submit order. After [`Journal::close`], or once the
    /// journal has [`failed`](Journal::failed), the record is dropped and `done(false)` runs.
    pub fn append(&self, record: Vec<u8>, done: Option<Done>) {
        self.send(record, done, false);
    }

    fn send(&self, record: Vec<u8>, done: Option<Done>, reserved: bool) {
        let sent = self.inner.tx.send(Msg::Record(record, done, reserved));
        // An error means the writer has exited: nothing more is written.
        if let Err(crossbeam_channel::SendError(Msg::Record(_, done, reserved))) = sent {
            if reserved {
                self.inner.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
            if let Some(done) = done {
                done(false);
            }
        }
    }

    /// True when the journal has grown past `compact_bytes` since the last snapshot and no
    /// compaction is under way.
    pub fn wants_snapshot(&self) -> bool {
        let shared = &self.inner.shared;
        shared.pending_compactions.load(Ordering::Acquire) == 0
            && shared.live_bytes.load(Ordering::Relaxed) > self.inner.compact_bytes
    }

    /// Replaces the journal so far with a snapshot. Returns at once: the writer switches to a
    /// new journal file in queue order, and then the snapshot thread pulls `source`'s records
    /// and writes them. `source` must describe at least every record appended before this
    /// call, and may describe some appended after it if replaying those again changes nothing
    /// (see "Compaction" above). A crash at any point recovers the same state.
    pub fn compact(&self, source: SnapshotSource) {
        let shared = &self.inner.shared;
        shared.pending_compactions.fetch_add(1, Ordering::AcqRel);
        if self.inner.tx.send(Msg::Compact(source)).is_err() {
            shared.pending_compactions.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Writes and fsyncs everything queued, runs the last acknowledgements, finishes a
    /// snapshot in progress, stops the threads and removes the lock file. Idempotent; later
    /// appends are dropped.
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
        let me = thread::current().id();
        if me == self.writer_id || me == self.deliverer_id {
            // Called from a `done` (or by dropping the last handle inside one): joining would
            // wait for this very thread. The writer finishes what is queued and stops; a later
            // `close` from another thread, or the process, joins it.
            let _ = self.tx.send(Msg::Close);
            return;
        }
        let mut writer = lock_ignoring_poison(&self.writer);
        if let Some(handle) = writer.take() {
            let _ = self.tx.send(Msg::Close);
            if handle.join().is_err() {
                tracing::error!("journal: writer thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}
