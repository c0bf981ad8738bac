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
//! large snapshot never holds up acknowledgements.
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

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

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

const JOURNAL_MAGIC: [u8; 8] = *b"PRLYJRNL";
const SNAPSHOT_MAGIC: [u8; 8] = *b"PRLYSNAP";
const HEADER_LEN: usize = 32;
const RECORD_HEADER_LEN: usize = 8;

const LOCK_FILE: &str = "LOCK";
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const JOURNAL_PREFIX: &str = "journal-";
const JOURNAL_SUFFIX: &str = ".log";
const TMP_SUFFIX: &str = ".tmp";

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

/// Everything that can stop [`Journal::open`].
#[derive(Debug)]
pub enum JournalError {
    /// A file system call failed.
    Io {
        /// The file or directory it was about.
        path: PathBuf,
        /// What was being done, e.g. `"fsync"`.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Another running process (or another open handle in this one) holds the directory.
    Locked(PathBuf),
    /// Damage that is not a torn final write; refusing keeps the data for a human to inspect.
    Corrupt {
        /// The damaged (or missing) file.
        path: PathBuf,
        /// Byte offset of the first bad record in it.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// Not a journal or snapshot file, or one written in a format version this build cannot read.
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with its header.
        reason: String,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { path, op, source } => {
                write!(f, "journal i/o error: {op} {}: {source}", path.display())
            }
            JournalError::Locked(path) => write!(
                f,
                "journal directory is in use by another running process (lock file {})",
                path.display()
            ),
            JournalError::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "journal file {} is corrupt at byte offset {offset}: {reason}",
                path.display()
            ),
            JournalError::BadHeader { path, reason } => {
                write!(
                    f,
                    "journal file {} has a bad header: {reason}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(path: &Path, op: &'static str, source: io::Error) -> JournalError {
    JournalError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
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

enum Msg {
    Record(Vec<u8>, Option<Done>),
    Compact(Vec<u8>),
    Close,
}

/// A message that ends a batch: the batch is written before it is acted on.
enum Control {
    Compact(Vec<u8>),
    Close,
    Fail(String),
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

/// The writer thread's state. Field order matters for drop: the snapshot thread is stopped
/// before the lock file is removed.
struct Writer {
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    dir: PathBuf,
    file: File,
    path: PathBuf,
    generation: u64,
    policy: FsyncPolicy,
    max_batch_bytes: usize,
    /// Encoded records of the batch being built; reused so appends allocate nothing here.
    buf: Vec<u8>,
    dones: Vec<Done>,
    batch_records: u64,
    /// When the oldest write not yet fsynced happened; `None` when everything is synced.
    unsynced_since: Option<Instant>,
    failed: bool,
    compactor: Compactor,
    _lock: LockGuard,
}

impl Writer {
    fn run(mut self) {
        while let Some(first) = self.next_message() {
            let control = self.collect_batch(first);
            self.commit_batch();
            match control {
                None => {}
                Some(Control::Compact(snapshot)) => self.rotate(snapshot),
                Some(Control::Fail(reason)) => self.fail(reason),
                Some(Control::Close) => break,
            }
        }
        if !self.failed {
            self.sync();
        }
        // Dropping `self` stops the snapshot thread (after any snapshot in hand) and unlocks.
    }

    /// Blocks for the next message; under `Interval` wakes up to fsync on time.
    fn next_message(&mut self) -> Option<Msg> {
        loop {
            if self.shared.close_requested.load(Ordering::Acquire) {
                return None;
            }
            let deadline = match (self.policy, self.unsynced_since) {
                (FsyncPolicy::Interval, Some(since)) if !self.failed => since + SYNC_INTERVAL,
                _ => return self.rx.recv().ok(),
            };
            match self.rx.recv_deadline(deadline) {
                Ok(msg) => return Some(msg),
                Err(RecvTimeoutError::Timeout) => {
                    self.sync();
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Encodes `first` and whatever else is already queued, up to `max_batch_bytes`. Stops early
    /// at a control message, which is returned to be handled after the batch is written.
    fn collect_batch(&mut self, first: Msg) -> Option<Control> {
        let mut msg = first;
        loop {
            match msg {
                Msg::Record(record, done) => {
                    if self.failed {
                        // Dropped uncalled: a failed journal acknowledges nothing.
                    } else if record.len() > MAX_RECORD_BYTES {
                        return Some(Control::Fail(format!(
                            "record of {} bytes exceeds the {MAX_RECORD_BYTES}-byte limit",
                            record.len()
                        )));
                    } else {
                        encode_record(&mut self.buf, &record);
                        self.batch_records += 1;
                        if let Some(done) = done {
                            self.dones.push(done);
                        }
                    }
                }
                Msg::Compact(snapshot) => return Some(Control::Compact(snapshot)),
                Msg::Close => return Some(Control::Close),
            }
            if self.buf.len() >= self.max_batch_bytes {
                return None;
            }
            match self.rx.try_recv() {
                Ok(next) => msg = next,
                Err(_) => return None,
            }
        }
    }

    /// One write, an fsync if the policy says so, then the batch's `done`s in order.
    fn commit_batch(&mut self) {
        if self.buf.is_empty() || self.failed {
            self.buf.clear();
            self.dones.clear();
            self.batch_records = 0;
            return;
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            // The file may now end in a partial batch; writing more after it would turn a
            // torn tail into mid-file corruption, so the writer stops for good.
            self.fail(format!("write to {} failed: {e}", self.path.display()));
            return;
        }
        let written = self.buf.len() as u64;
        self.shared
            .bytes_written
            .fetch_add(written, Ordering::Relaxed);
        self.shared.live_bytes.fetch_add(written, Ordering::Relaxed);
        let since = *self.unsynced_since.get_or_insert_with(Instant::now);
        let sync_now = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => since.elapsed() >= SYNC_INTERVAL,
            FsyncPolicy::Never => false,
        };
        if sync_now && !self.sync() {
            return;
        }
        self.shared
            .records
            .fetch_add(self.batch_records, Ordering::Relaxed);
        self.batch_records = 0;
        for done in self.dones.drain(..) {
            if panic::catch_unwind(AssertUnwindSafe(done)).is_err() {
                eprintln!("parley journal: a record's done callback panicked; continuing");
            }
        }
        self.buf.clear();
        if self.buf.capacity() > 4 * self.max_batch_bytes.max(DEFAULT_MAX_BATCH_BYTES) {
            // One huge record should not pin its buffer for the life of the process.
            self.buf.shrink_to(self.max_batch_bytes);
        }
    }

    /// fsyncs the live journal if anything is unsynced. False (and failed) if fsync fails:
    /// after a failed fsync the kernel may have dropped the dirty pages, so nothing more can
    /// be promised.
    fn sync(&mut self) -> bool {
        if self.unsynced_since.is_none() {
            return true;
        }
        match self.file.sync_data() {
            Ok(()) => {
                self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
                self.unsynced_since = None;
                true
            }
            Err(e) => {
                self.fail(format!("fsync of {} failed: {e}", self.path.display()));
                false
            }
        }
    }

    fn fail(&mut self, reason: String) {
        if !self.failed {
            eprintln!("parley journal: {reason}; no further records will be acknowledged");
            *lock_ignoring_poison(&self.shared.failed) = Some(reason);
            self.failed = true;
        }
        self.buf.clear();
        self.dones.clear();
        self.batch_records = 0;
    }

    /// Starts journal generation `g + 1` and hands the snapshot (base `g + 1`) to the
    /// snapshot thread. On failure the old journal stays live and nothing is lost.
    fn rotate(&mut self, snapshot: Vec<u8>) {
        let abandon = |shared: &Shared| {
            shared.pending_compactions.fetch_sub(1, Ordering::AcqRel);
        };
        if self.failed {
            return abandon(&self.shared);
        }
        if snapshot.len() > MAX_SNAPSHOT_BYTES {
            eprintln!(
                "parley journal: snapshot of {} bytes exceeds the {MAX_SNAPSHOT_BYTES}-byte limit; not compacting",
                snapshot.len()
            );
            return abandon(&self.shared);
        }
        // The old journal must be complete on disk before a newer one exists: recovery only
        // forgives a torn record at the end of the newest file.
        if !self.sync() {
            return abandon(&self.shared);
        }
        let generation = self.generation + 1;
        match create_journal_file(&self.dir, generation) {
            Ok((file, path)) => {
                self.file = file;
                self.path = path;
                self.generation = generation;
                self.shared
                    .bytes_written
                    .fetch_add(HEADER_LEN as u64, Ordering::Relaxed);
                self.shared
                    .live_bytes
                    .store(HEADER_LEN as u64, Ordering::Relaxed);
                self.compactor.submit(snapshot, generation, &self.shared);
            }
            Err(e) => {
                eprintln!("parley journal: cannot start a new journal file, not compacting: {e}");
                abandon(&self.shared);
            }
        }
    }
}

/// The snapshot thread and the one-job slot it takes work from.
struct Compactor {
    slot: Arc<CompactorSlot>,
    handle: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct CompactorSlot {
    state: Mutex<CompactorState>,
    wake: Condvar,
}

#[derive(Default)]
struct CompactorState {
    /// The next snapshot to write and its base generation. A newer one replaces one not yet
    /// started: it covers strictly more, so memory stays bounded at two snapshots.
    job: Option<(Vec<u8>, u64)>,
    stop: bool,
}

impl Compactor {
    fn start(dir: &Path, shared: &Arc<Shared>) -> Result<Compactor, JournalError> {
        let slot = Arc::new(CompactorSlot::default());
        let handle = {
            let (owned_dir, slot, shared) =
                (dir.to_path_buf(), Arc::clone(&slot), Arc::clone(shared));
            thread::Builder::new()
                .name("parley-journal-snapshot".into())
                .spawn(move || run_compactor(&owned_dir, &slot, &shared))
                .map_err(|e| io_error(dir, "spawn snapshot thread", e))?
        };
        Ok(Compactor {
            slot,
            handle: Some(handle),
        })
    }

    fn submit(&self, snapshot: Vec<u8>, base: u64, shared: &Shared) {
        let mut state = lock_ignoring_poison(&self.slot.state);
        if state.job.replace((snapshot, base)).is_some() {
            shared.pending_compactions.fetch_sub(1, Ordering::AcqRel);
        }
        self.slot.wake.notify_one();
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        lock_ignoring_poison(&self.slot.state).stop = true;
        self.slot.wake.notify_one();
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                eprintln!("parley journal: snapshot thread panicked");
            }
        }
    }
}

fn run_compactor(dir: &Path, slot: &CompactorSlot, shared: &Shared) {
    loop {
        let job = {
            let mut state = lock_ignoring_poison(&slot.state);
            loop {
                if let Some(job) = state.job.take() {
                    break Some(job);
                }
                if state.stop {
                    break None;
                }
                state = slot
                    .wake
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        let Some((snapshot, base)) = job else { return };
        match write_snapshot(dir, &snapshot, base) {
            Ok(()) => {
                shared.snapshots.fetch_add(1, Ordering::Relaxed);
            }
            // The previous snapshot and all journals since it are untouched: nothing is lost,
            // the journal just stays long until the next compaction.
            Err(e) => eprintln!("parley journal: snapshot not written: {e}"),
        }
        shared.pending_compactions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Writes `snapshot` with base generation `base` atomically, then deletes journals it covers.
fn write_snapshot(dir: &Path, snapshot: &[u8], base: u64) -> Result<(), JournalError> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let mut file = private_file_options()
        .open(&tmp)
        .map_err(|e| io_error(&tmp, "create", e))?;
    let mut head = Vec::with_capacity(HEADER_LEN + RECORD_HEADER_LEN);
    head.extend_from_slice(&encode_header(&SNAPSHOT_MAGIC, base));
    let len = snapshot.len() as u32;
    head.extend_from_slice(&len.to_le_bytes());
    head.extend_from_slice(&record_crc(len, snapshot).to_le_bytes());
    file.write_all(&head)
        .and_then(|()| file.write_all(snapshot))
        .map_err(|e| io_error(&tmp, "write", e))?;
    file.sync_all().map_err(|e| io_error(&tmp, "fsync", e))?;
    drop(file);
    let path = dir.join(SNAPSHOT_FILE);
    fs::rename(&tmp, &path).map_err(|e| io_error(&path, "rename snapshot into", e))?;
    sync_dir(dir)?;
    // From here the old journals are dead weight; one left behind is deleted at next open.
    for (generation, path) in list_journals(dir)? {
        if generation < base {
            if let Err(e) = fs::remove_file(&path) {
                eprintln!(
                    "parley journal: cannot delete old journal {}: {e}",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Creates journal `generation` with its header, durably and without ever exposing a
/// half-written header under the final name. Returns it open for appending.
fn create_journal_file(dir: &Path, generation: u64) -> Result<(File, PathBuf), JournalError> {
    let path = journal_path(dir, generation);
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", journal_name(generation)));
    let mut file = private_file_options()
        .open(&tmp)
        .map_err(|e| io_error(&tmp, "create", e))?;
    file.write_all(&encode_header(&JOURNAL_MAGIC, generation))
        .map_err(|e| io_error(&tmp, "write", e))?;
    file.sync_all().map_err(|e| io_error(&tmp, "fsync", e))?;
    fs::rename(&tmp, &path).map_err(|e| io_error(&path, "rename journal into", e))?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// Options for a new journal or snapshot file. They hold password and token hashes, so on
/// Unix only the owner may read them.
fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync directory", e))
}

fn journal_name(generation: u64) -> String {
    format!("{JOURNAL_PREFIX}{generation:020}{JOURNAL_SUFFIX}")
}

fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(journal_name(generation))
}

fn parse_journal_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(JOURNAL_PREFIX)?
        .strip_suffix(JOURNAL_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Journal files in `dir`, sorted by generation.
fn list_journals(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut journals = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, "list directory", e))? {
        let entry = entry.map_err(|e| io_error(dir, "list directory", e))?;
        if let Some(generation) = entry.file_name().to_str().and_then(parse_journal_name) {
            journals.push((generation, entry.path()));
        }
    }
    journals.sort_unstable_by_key(|(generation, _)| *generation);
    Ok(journals)
}

/// The `LOCK` file, held with an exclusive `flock` for as long as the journal is open. The
/// kernel drops the lock when the process dies, however it dies, so a crash never leaves a
/// stale lock behind; the file itself stays and only records the holder's pid for people.
struct LockGuard {
    _file: File,
}

impl LockGuard {
    fn acquire(dir: &Path) -> Result<LockGuard, JournalError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, "open", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(JournalError::Locked(path)),
            Err(fs::TryLockError::Error(e)) => return Err(io_error(&path, "lock", e)),
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(|e| io_error(&path, "write", e))?;
        Ok(LockGuard { _file: file })
    }
}

struct RecoveryState {
    recovered: Recovered,
    /// The newest journal, open for appending at its (possibly cut) end.
    file: File,
    path: PathBuf,
    generation: u64,
    live_bytes: u64,
}

/// Reads and validates everything before changing anything on disk: a refusal leaves the
/// directory exactly as it was found.
fn recover(dir: &Path) -> Result<RecoveryState, JournalError> {
    // Leftovers of an interrupted snapshot or rotation: never needed, deleted at the end.
    let mut garbage = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, "list directory", e))? {
        let entry = entry.map_err(|e| io_error(dir, "list directory", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == SNAPSHOT_TMP || (name.starts_with(JOURNAL_PREFIX) && name.ends_with(TMP_SUFFIX))
        {
            garbage.push(entry.path());
        }
    }

    let snapshot = read_snapshot(&dir.join(SNAPSHOT_FILE))?;
    let base = snapshot.as_ref().map_or(1, |(base, _)| *base);
    let mut journals = Vec::new();
    for (generation, path) in list_journals(dir)? {
        if generation < base {
            // Covered by the snapshot; left behind by a crash right after it was written.
            garbage.push(path);
        } else {
            journals.push((generation, path));
        }
    }
    let mut recovered = Recovered {
        snapshot: snapshot.map(|(_, bytes)| bytes),
        ..Recovered::default()
    };
    if journals.is_empty() && recovered.snapshot.is_some() {
        return Err(JournalError::Corrupt {
            path: journal_path(dir, base),
            offset: 0,
            reason: "journal file is missing (the snapshot says it follows)".into(),
        });
    }
    for (i, (generation, _)) in journals.iter().enumerate() {
        let expected = base.saturating_add(i as u64);
        if *generation != expected {
            return Err(JournalError::Corrupt {
                path: journal_path(dir, expected),
                offset: 0,
                reason: format!("journal file is missing (found generation {generation})"),
            });
        }
    }

    let mut live_bytes = 0u64;
    let mut newest = None;
    if let Some(((generation, path), older)) = journals.split_last() {
        for (generation, path) in older {
            let data = fs::read(path).map_err(|e| io_error(path, "read", e))?;
            parse_journal(path, &data, *generation, false, &mut recovered.records)?;
            live_bytes += data.len() as u64;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error(path, "open", e))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| io_error(path, "read", e))?;
        let (valid_end, note) =
            parse_journal(path, &data, *generation, true, &mut recovered.records)?;
        if valid_end < data.len() {
            file.set_len(valid_end as u64)
                .map_err(|e| io_error(path, "truncate", e))?;
            file.sync_all().map_err(|e| io_error(path, "fsync", e))?;
        }
        file.seek(SeekFrom::Start(valid_end as u64))
            .map_err(|e| io_error(path, "seek", e))?;
        recovered.truncated_tail = note;
        live_bytes += valid_end as u64;
        newest = Some((file, path.clone(), *generation));
    }
    let (file, path, generation) = match newest {
        Some(newest) => newest,
        None => {
            // A new directory (no snapshot, no journal).
            live_bytes = HEADER_LEN as u64;
            let (file, path) = create_journal_file(dir, 1)?;
            (file, path, 1)
        }
    };

    for path in &garbage {
        fs::remove_file(path).map_err(|e| io_error(path, "remove leftover", e))?;
    }
    if !garbage.is_empty() {
        sync_dir(dir)?;
    }
    Ok(RecoveryState {
        recovered,
        file,
        path,
        generation,
        live_bytes,
    })
}

/// Reads the snapshot: `(base generation, payload)`, or `None` if there is none.
fn read_snapshot(path: &Path) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
    let mut data = match fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, "read", e)),
    };
    let base = parse_header(path, &data, &SNAPSHOT_MAGIC)?;
    let corrupt = |offset: usize, reason: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let (len, end) = match decode_at(&data, HEADER_LEN, MAX_SNAPSHOT_BYTES) {
        Decoded::Record(payload, end) => (payload.len(), end),
        Decoded::End => return Err(corrupt(HEADER_LEN, "snapshot holds no record".into())),
        Decoded::Bad(reason) => return Err(corrupt(HEADER_LEN, reason)),
    };
    if end != data.len() {
        return Err(corrupt(
            end,
            "unexpected bytes after the snapshot record".into(),
        ));
    }
    data.drain(..HEADER_LEN + RECORD_HEADER_LEN);
    data.truncate(len);
    Ok(Some((base, data)))
}

/// Appends the records of one journal file to `out`. Returns where its valid part ends and,
/// if a torn final record was found in the newest file (`is_last`), a note about cutting it.
fn parse_journal(
    path: &Path,
    data: &[u8],
    generation: u64,
    is_last: bool,
    out: &mut Vec<Vec<u8>>,
) -> Result<(usize, Option<String>), JournalError> {
    let header_generation = parse_header(path, data, &JOURNAL_MAGIC)?;
    if header_generation != generation {
        return Err(JournalError::BadHeader {
            path: path.to_path_buf(),
            reason: format!(
                "header says generation {header_generation} but the file name says {generation}"
            ),
        });
    }
    let mut pos = HEADER_LEN;
    loop {
        match decode_at(data, pos, MAX_RECORD_BYTES) {
            Decoded::End => return Ok((pos, None)),
            Decoded::Record(payload, next) => {
                out.push(payload.to_vec());
                pos = next;
            }
            Decoded::Bad(reason) => {
                let corrupt = |reason: String| JournalError::Corrupt {
                    path: path.to_path_buf(),
                    offset: pos as u64,
                    reason,
                };
                if !is_last {
                    return Err(corrupt(format!(
                        "{reason}, in a journal file followed by a newer one"
                    )));
                }
                if let Some(valid) = find_valid_record(data, pos + 1) {
                    return Err(corrupt(format!(
                        "{reason}, followed by a valid record at offset {valid}"
                    )));
                }
                let note = format!(
                    "cut a torn final record from {} at byte offset {pos} ({} bytes dropped: {reason})",
                    path.display(),
                    data.len() - pos
                );
                return Ok((pos, Some(note)));
            }
        }
    }
}

/// First offset at or after `from` where a whole, checksummed journal record starts. Cheap on
/// real tails: most offsets are rejected by their length field before any checksum is computed.
fn find_valid_record(data: &[u8], from: usize) -> Option<usize> {
    let last_start = data.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last_start)
        .find(|&pos| matches!(decode_at(data, pos, MAX_RECORD_BYTES), Decoded::Record(..)))
}

enum Decoded<'a> {
    /// A whole record with a matching checksum, and the offset just past it.
    Record(&'a [u8], usize),
    /// Clean end of file.
    End,
    Bad(String),
}

fn decode_at(data: &[u8], pos: usize, max_len: usize) -> Decoded<'_> {
    let rest = data.get(pos..).unwrap_or_default();
    if rest.is_empty() {
        return Decoded::End;
    }
    let (Some(len), Some(crc)) = (read_u32(rest, 0), read_u32(rest, 4)) else {
        return Decoded::Bad(format!(
            "incomplete record header ({} of {RECORD_HEADER_LEN} bytes)",
            rest.len()
        ));
    };
    if len as usize > max_len {
        return Decoded::Bad(format!(
            "record length {len} exceeds the {max_len}-byte limit"
        ));
    }
    let Some(payload) = rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len as usize) else {
        return Decoded::Bad(format!(
            "incomplete record ({} of {len} payload bytes present)",
            rest.len() - RECORD_HEADER_LEN
        ));
    };
    if record_crc(len, payload) != crc {
        return Decoded::Bad("record checksum mismatch".into());
    }
    Decoded::Record(payload, pos + RECORD_HEADER_LEN + len as usize)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(read_u32(bytes, at)?) | u64::from(read_u32(bytes, at + 4)?) << 32)
}

fn encode_record(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(len, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

fn record_crc(len: u32, payload: &[u8]) -> u32 {
    crc32c_update(crc32c_update(0, &len.to_le_bytes()), payload)
}

fn encode_header(magic: &[u8; 8], generation: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(magic);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // 12..16: flags, none defined in version 1.
    header[16..24].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c_update(0, &header[0..24]);
    header[24..28].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a file header and returns its generation.
fn parse_header(path: &Path, data: &[u8], magic: &[u8; 8]) -> Result<u64, JournalError> {
    let bad = |reason: String| JournalError::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    let kind = if magic == &SNAPSHOT_MAGIC {
        "snapshot"
    } else {
        "journal"
    };
    if data.len() < HEADER_LEN {
        return Err(bad(format!(
            "file is {} bytes, shorter than the {HEADER_LEN}-byte header",
            data.len()
        )));
    }
    if &data[0..8] != magic {
        return Err(bad(format!("not a parley {kind} file (wrong magic bytes)")));
    }
    let version = read_u32(data, 8).unwrap_or_default();
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "unsupported format version {version} (this build reads version {FORMAT_VERSION})"
        )));
    }
    if read_u32(data, 24) != Some(crc32c_update(0, &data[0..24])) {
        return Err(bad("header checksum mismatch".into()));
    }
    let flags = read_u32(data, 12).unwrap_or_default();
    if flags != 0 {
        return Err(bad(format!("unknown header flags {flags:#x}")));
    }
    read_u64(data, 16).ok_or_else(|| bad("header too short".into()))
}

/// CRC32C (Castagnoli), reflected polynomial.
const CRC32C_POLY: u32 = 0x82F6_3B78;

/// Slicing-by-8 tables: `CRC_TABLES[0]` is the classic byte table, `CRC_TABLES[k]` advances a
/// byte through k further zero bytes, so eight input bytes cost eight lookups and no shifts
/// between them.
static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC32C_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xFF) as usize];
            k += 1;
        }
        i += 1;
    }
    tables
}

/// Continues a CRC32C: `crc32c_update(crc32c_update(0, a), b)` is the CRC32C of `a` then `b`.
fn crc32c_update(crc: u32, data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut crc = !crc;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xFF) as usize]
            ^ t[6][((lo >> 8) & 0xFF) as usize]
            ^ t[5][((lo >> 16) & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xFF) as usize]
            ^ t[2][((hi >> 8) & 0xFF) as usize]
            ^ t[1][((hi >> 16) & 0xFF) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &byte in chunks.remainder() {
        crc = t[0][((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;

    /// A fresh directory under the system temp dir, removed when the test ends.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> TestDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "parley-journal-{name}-{}-{n}-{nanos}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&dir);
            TestDir(dir)
        }

        fn config(&self) -> JournalConfig {
            JournalConfig::new(&self.0)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn open(cfg: JournalConfig) -> (Journal, Recovered) {
        match Journal::open(cfg) {
            Ok(opened) => opened,
            Err(e) => panic!("open failed: {e}"),
        }
    }

    fn open_err(cfg: JournalConfig) -> JournalError {
        match Journal::open(cfg) {
            Ok(_) => panic!("open unexpectedly succeeded"),
            Err(e) => e,
        }
    }

    fn record(i: usize) -> Vec<u8> {
        format!(
            "{{\"op\":\"entry\",\"i\":{i},\"pad\":\"{}\"}}",
            "x".repeat(i % 97)
        )
        .into_bytes()
    }

    /// Appends and waits until the record's `done` has run.
    fn append_wait(journal: &Journal, rec: Vec<u8>) {
        let (tx, rx) = mpsc::channel();
        journal.append(
            rec,
            Some(Box::new(move || {
                let _ = tx.send(());
            })),
        );
        rx.recv_timeout(Duration::from_secs(10))
            .expect("done did not run");
    }

    fn only_journal(dir: &Path) -> PathBuf {
        let journals = list_journals(dir).expect("list");
        assert_eq!(journals.len(), 1, "expected one journal file: {journals:?}");
        journals[0].1.clone()
    }

    /// Writes records `0..n` and closes; returns the journal path and each record's offset.
    fn write_records(dir: &TestDir, n: usize) -> (PathBuf, Vec<u64>) {
        let (journal, _) = open(dir.config());
        for i in 0..n {
            journal.append(record(i), None);
        }
        journal.close();
        let mut offsets = Vec::new();
        let mut pos = HEADER_LEN as u64;
        for i in 0..n {
            offsets.push(pos);
            pos += (RECORD_HEADER_LEN + record(i).len()) as u64;
        }
        let path = only_journal(&dir.0);
        assert_eq!(fs::metadata(&path).expect("stat").len(), pos);
        (path, offsets)
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Journal>();
    }

    #[test]
    fn refusal_leaves_the_directory_untouched() {
        let dir = TestDir::new("untouched");
        write_records(&dir, 2);
        // A snapshot whose journal is missing, plus leftovers open would otherwise clean up.
        let (journal, _) = open(dir.config());
        journal.compact(b"s".to_vec());
        journal.close();
        fs::remove_file(journal_path(&dir.0, 2)).unwrap();
        fs::write(journal_path(&dir.0, 1), b"stale").unwrap();
        fs::write(dir.0.join(SNAPSHOT_TMP), b"tmp").unwrap();
        let listing = |d: &Path| {
            let mut names: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let before = listing(&dir.0);
        assert!(matches!(
            open_err(dir.config()),
            JournalError::Corrupt { .. }
        ));
        assert_eq!(listing(&dir.0), before);
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c_update(0, b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_update(0, b""), 0);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for split in [0, 1, 7, 8, 9, 500, 1000] {
            let (a, b) = data.split_at(split);
            assert_eq!(
                crc32c_update(crc32c_update(0, a), b),
                crc32c_update(0, &data)
            );
        }
    }

    #[test]
    fn fsync_policy_parses_flag_values() {
        for policy in [
            FsyncPolicy::Always,
            FsyncPolicy::Interval,
            FsyncPolicy::Never,
        ] {
            assert_eq!(policy.to_string().parse::<FsyncPolicy>(), Ok(policy));
        }
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn append_then_reopen_round_trips() {
        let dir = TestDir::new("roundtrip");
        let (journal, recovered) = open(dir.config());
        assert!(recovered.snapshot.is_none() && recovered.records.is_empty());
        let expected: Vec<Vec<u8>> = (0..500).map(record).chain([Vec::new()]).collect();
        for rec in &expected[..expected.len() - 1] {
            journal.append(rec.clone(), None);
        }
        append_wait(&journal, Vec::new());
        assert_eq!(journal.stats().records, expected.len() as u64);
        journal.close();
        assert!(lock_is_free(&dir.0));

        let (journal, recovered) = open(dir.config());
        assert_eq!(recovered.records, expected);
        assert!(recovered.truncated_tail.is_none());
        append_wait(&journal, b"after reopen".to_vec());
        journal.close();
        let (_journal, recovered) = open(dir.config());
        assert_eq!(recovered.records.len(), expected.len() + 1);
        assert_eq!(
            recovered.records.last().map(Vec::as_slice),
            Some(&b"after reopen"[..])
        );
    }

    #[test]
    fn dones_run_in_submit_order() {
        let dir = TestDir::new("order");
        let mut cfg = dir.config();
        cfg.max_batch_bytes = 4096; // many batches
        let (journal, _) = open(cfg);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let (journal, seen) = (journal.clone(), Arc::clone(&seen));
                thread::spawn(move || {
                    for i in 0..5_000 {
                        let seen = Arc::clone(&seen);
                        // Every third record has no callback; the rest must still be ordered.
                        let done: Option<Done> = (i % 3 != 0)
                            .then(|| Box::new(move || seen.lock().unwrap().push((p, i))) as Done);
                        journal.append(format!("{p}:{i}").into_bytes(), done);
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.join().unwrap();
        }
        journal.close();
        let seen = seen.lock().unwrap();
        for p in 0..4 {
            let mine: Vec<usize> = seen
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, i)| *i)
                .collect();
            let want: Vec<usize> = (0..5_000).filter(|i| i % 3 != 0).collect();
            assert_eq!(mine, want, "producer {p}");
        }
        // The file order is the done order.
        let (_journal, recovered) = open(dir.config());
        let file_order: Vec<(usize, usize)> = recovered
            .records
            .iter()
            .filter_map(|r| {
                let text = String::from_utf8(r.clone()).ok()?;
                let (p, i) = text.split_once(':')?;
                let (p, i) = (p.parse().ok()?, i.parse().ok()?);
                (i % 3 != 0).then_some((p, i))
            })
            .collect();
        assert_eq!(file_order, *seen);
    }

    #[test]
    fn torn_tail_at_every_cut_recovers_the_previous_records() {
        let dir = TestDir::new("torn-src");
        let (path, offsets) = write_records(&dir, 3);
        let original = fs::read(&path).unwrap();
        let last_start = offsets[2] as usize;
        for cut in last_start..original.len() {
            let case = TestDir::new("torn");
            fs::create_dir_all(&case.0).unwrap();
            let case_path = case.0.join(path.file_name().unwrap());
            fs::write(&case_path, &original[..cut]).unwrap();

            let (journal, recovered) = open(case.config());
            assert_eq!(
                recovered.records,
                vec![record(0), record(1)],
                "cut at {cut}"
            );
            assert_eq!(
                recovered.truncated_tail.is_some(),
                cut > last_start,
                "cut at {cut}"
            );
            if let Some(note) = &recovered.truncated_tail {
                assert!(note.contains(&format!("offset {last_start}")), "{note}");
            }
            assert_eq!(fs::metadata(&case_path).unwrap().len(), last_start as u64);
            // New records follow the last whole one, not the garbage.
            append_wait(&journal, b"next".to_vec());
            journal.close();
            let (_journal, recovered) = open(case.config());
            assert_eq!(
                recovered.records,
                vec![record(0), record(1), b"next".to_vec()],
                "cut at {cut}"
            );
            assert!(recovered.truncated_tail.is_none());
        }
    }

    #[test]
    fn zero_filled_tail_is_cut_not_read_as_records() {
        let dir = TestDir::new("zeros");
        let (path, offsets) = write_records(&dir, 2);
        let end = fs::metadata(&path).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0u8; 4096]).unwrap();
        drop(file);
        let (_journal, recovered) = open(dir.config());
        assert_eq!(recovered.records, vec![record(0), record(1)]);
        assert!(recovered.truncated_tail.is_some());
        assert_eq!(fs::metadata(&path).unwrap().len(), end);
        assert!(offsets[1] < end);
    }

    #[test]
    fn flipped_byte_in_a_middle_record_is_corruption_at_its_offset() {
        let dir = TestDir::new("flip-src");
        let (path, offsets) = write_records(&dir, 3);
        let original = fs::read(&path).unwrap();
        let (start, end) = (offsets[1] as usize, offsets[2] as usize);
        for at in start..end {
            for mask in [0x01u8, 0x80, 0xFF] {
                let case = TestDir::new("flip");
                fs::create_dir_all(&case.0).unwrap();
                let case_path = case.0.join(path.file_name().unwrap());
                let mut bytes = original.clone();
                bytes[at] ^= mask;
                fs::write(&case_path, &bytes).unwrap();
                match open_err(case.config()) {
                    JournalError::Corrupt { path, offset, .. } => {
                        assert_eq!(path, case_path, "byte {at} mask {mask:#x}");
                        assert_eq!(offset, start as u64, "byte {at} mask {mask:#x}");
                    }
                    other => panic!("byte {at} mask {mask:#x}: expected corrupt, got {other}"),
                }
                // Refusing must not modify the file or leave the directory locked.
                assert_eq!(fs::read(&case_path).unwrap(), bytes);
                assert!(lock_is_free(&case.0));
            }
        }
        let case = TestDir::new("flip-msg");
        fs::create_dir_all(&case.0).unwrap();
        let case_path = case.0.join(path.file_name().unwrap());
        let mut bytes = original.clone();
        bytes[start + RECORD_HEADER_LEN] ^= 1;
        fs::write(&case_path, &bytes).unwrap();
        let message = open_err(case.config()).to_string();
        assert!(
            message.contains(&case_path.display().to_string()),
            "{message}"
        );
        assert!(message.contains(&format!("offset {start}")), "{message}");
    }

    #[test]
    fn bad_headers_are_refused() {
        let dir = TestDir::new("header-src");
        let (path, _) = write_records(&dir, 1);
        let original = fs::read(&path).unwrap();
        let mut newer = original.clone();
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        let mut wrong_magic = original.clone();
        wrong_magic[0] = b'X';
        let mut bad_crc = original.clone();
        bad_crc[16] ^= 1; // generation
        for (name, bytes, needle) in [
            ("version", newer, "version 2"),
            ("magic", wrong_magic, "magic"),
            ("crc", bad_crc, "checksum"),
            ("short", original[..10].to_vec(), "shorter"),
        ] {
            let case = TestDir::new(name);
            fs::create_dir_all(&case.0).unwrap();
            fs::write(case.0.join(path.file_name().unwrap()), bytes).unwrap();
            match open_err(case.config()) {
                JournalError::BadHeader { reason, .. } => {
                    assert!(reason.contains(needle), "{name}: {reason}")
                }
                other => panic!("{name}: expected bad header, got {other}"),
            }
        }
    }

    #[test]
    fn compaction_keeps_snapshot_and_later_records_only() {
        let dir = TestDir::new("compact");
        let (journal, _) = open(dir.config());
        for i in 0..5 {
            journal.append(record(i), None);
        }
        journal.compact(b"state after 5".to_vec());
        for i in 5..8 {
            journal.append(record(i), None);
        }
        journal.close();
        assert_eq!(journal.stats().snapshots, 1);
        let journals = list_journals(&dir.0).unwrap();
        assert_eq!(journals.len(), 1);
        assert_eq!(journals[0].0, 2, "the old journal is gone");

        let (journal, recovered) = open(dir.config());
        assert_eq!(recovered.snapshot.as_deref(), Some(&b"state after 5"[..]));
        assert_eq!(recovered.records, (5..8).map(record).collect::<Vec<_>>());
        // A second compaction on top of the first.
        journal.compact(b"state after 8".to_vec());
        append_wait(&journal, record(8));
        journal.close();
        let (_journal, recovered) = open(dir.config());
        assert_eq!(recovered.snapshot.as_deref(), Some(&b"state after 8"[..]));
        assert_eq!(recovered.records, vec![record(8)]);
        assert_eq!(list_journals(&dir.0).unwrap()[0].0, 3);
    }

    const CHILD_DIR_ENV: &str = "PARLEY_JOURNAL_KILL_TEST_DIR";

    /// The child half of `kill_9_keeps_every_acknowledged_record`; does nothing in a normal run.
    #[test]
    fn kill_9_child() {
        let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
            return;
        };
        let cfg = JournalConfig {
            fsync: FsyncPolicy::Never,
            ..JournalConfig::new(dir)
        };
        let (journal, _) = open(cfg);
        // Bounded, so a parent that dies early cannot leave this filling the disk.
        for i in 0..2_000_000u64 {
            journal.append(
                i.to_string().into_bytes(),
                Some(Box::new(move || println!("ack {i}"))),
            );
        }
    }

    /// Runs a child process that appends as fast as it can, SIGKILLs it mid-stream, and checks
    /// that every record it saw acknowledged is recovered, in order, with nothing invented.
    #[test]
    #[cfg(target_os = "linux")]
    fn kill_9_keeps_every_acknowledged_record() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let dir = TestDir::new("kill9");
        let exe = std::env::current_exe().unwrap();
        struct KillOnDrop(std::process::Child);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = self.0.kill(); // SIGKILL
                let _ = self.0.wait();
            }
        }
        let mut child = KillOnDrop(
            Command::new(exe)
                .args(["kill_9_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_DIR_ENV, &dir.0)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // libtest prints "test ... " without a newline before the child's first line.
        let ack = |line: io::Result<String>| -> Option<u64> {
            line.ok()?.rsplit_once("ack ")?.1.parse().ok()
        };
        let mut lines = io::BufReader::new(child.0.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        for line in lines.by_ref() {
            acked.extend(ack(line));
            if acked.len() == 20_000 {
                break;
            }
        }
        drop(child); // SIGKILL mid-stream, and reap it
        acked.extend(lines.filter_map(ack));
        assert!(acked.len() >= 20_000, "child stopped early");
        // The child died holding the lock; the kernel released its flock, so open succeeds.
        let (_journal, recovered) = open(dir.config());
        let recovered: Vec<u64> = recovered
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(r).parse().unwrap())
            .collect();
        assert!(
            acked.iter().copied().eq(0..acked.len() as u64),
            "acks in order"
        );
        assert!(
            recovered.iter().copied().eq(0..recovered.len() as u64),
            "recovered records in order, none invented"
        );
        assert!(
            recovered.len() >= acked.len(),
            "{} acknowledged but only {} recovered",
            acked.len(),
            recovered.len()
        );
    }

    /// The directory states a crash can leave mid-compaction all recover the same records.
    #[test]
    fn interrupted_compaction_recovers_the_same_state() {
        let dir = TestDir::new("crash-compact");
        let (first_path, _) = write_records(&dir, 5);
        let first_journal = fs::read(&first_path).unwrap();
        let (journal, _) = open(dir.config());
        journal.compact(b"state after 5".to_vec());
        for i in 5..8 {
            journal.append(record(i), None);
        }
        journal.close();
        let all: Vec<Vec<u8>> = (0..8).map(record).collect();

        // Crash after the new journal started, before the snapshot was renamed into place.
        let before_rename = TestDir::new("crash-before-rename");
        fs::create_dir_all(&before_rename.0).unwrap();
        for (generation, path) in list_journals(&dir.0).unwrap() {
            fs::copy(&path, journal_path(&before_rename.0, generation)).unwrap();
        }
        fs::write(journal_path(&before_rename.0, 1), &first_journal).unwrap();
        fs::write(before_rename.0.join(SNAPSHOT_TMP), b"half a snaps").unwrap();
        let (_j, recovered) = open(before_rename.config());
        assert!(recovered.snapshot.is_none());
        assert_eq!(recovered.records, all);
        assert!(!before_rename.0.join(SNAPSHOT_TMP).exists());

        // Crash after the rename, before the old journal was deleted.
        let before_delete = TestDir::new("crash-before-delete");
        fs::create_dir_all(&before_delete.0).unwrap();
        fs::copy(
            dir.0.join(SNAPSHOT_FILE),
            before_delete.0.join(SNAPSHOT_FILE),
        )
        .unwrap();
        fs::copy(journal_path(&dir.0, 2), journal_path(&before_delete.0, 2)).unwrap();
        fs::write(journal_path(&before_delete.0, 1), &first_journal).unwrap();
        let (_j, recovered) = open(before_delete.config());
        assert_eq!(recovered.snapshot.as_deref(), Some(&b"state after 5"[..]));
        assert_eq!(recovered.records, all[5..]);
        assert!(!journal_path(&before_delete.0, 1).exists());

        // Crash while writing the next journal's header: the temp file is ignored.
        let mid_rotate = TestDir::new("crash-mid-rotate");
        fs::create_dir_all(&mid_rotate.0).unwrap();
        fs::write(journal_path(&mid_rotate.0, 1), &first_journal).unwrap();
        fs::write(
            mid_rotate
                .0
                .join(format!("{}{TMP_SUFFIX}", journal_name(2))),
            b"PRLY",
        )
        .unwrap();
        let (_j, recovered) = open(mid_rotate.config());
        assert_eq!(recovered.records, all[..5]);
    }

    #[test]
    fn missing_journal_is_refused() {
        let dir = TestDir::new("missing");
        write_records(&dir, 1);
        fs::rename(journal_path(&dir.0, 1), journal_path(&dir.0, 2)).unwrap();
        match open_err(dir.config()) {
            JournalError::Corrupt { path, .. } => assert_eq!(path, journal_path(&dir.0, 1)),
            other => panic!("expected corrupt, got {other}"),
        }
    }

    #[test]
    fn wants_snapshot_after_compact_bytes() {
        let dir = TestDir::new("wants");
        let mut cfg = dir.config();
        cfg.compact_bytes = 1_000;
        let (journal, _) = open(cfg);
        assert!(!journal.wants_snapshot());
        for i in 0..20 {
            journal.append(record(i), None);
        }
        append_wait(&journal, record(20));
        assert!(journal.wants_snapshot());
        journal.compact(b"s".to_vec());
        assert!(
            !journal.wants_snapshot(),
            "false while a compaction is pending"
        );
        append_wait(&journal, record(21));
        let deadline = Instant::now() + Duration::from_secs(5);
        while journal.stats().snapshots == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(journal.stats().snapshots, 1);
        assert!(!journal.wants_snapshot());
    }

    #[test]
    fn lock_refuses_a_second_open_until_close() {
        let dir = TestDir::new("lock");
        let (journal, _) = open(dir.config());
        assert!(matches!(open_err(dir.config()), JournalError::Locked(_)));
        journal.close();
        let (journal, _) = open(dir.config());
        // Dropping the last handle closes too.
        drop(journal);
        let (_journal, _) = open(dir.config());
    }

    /// Whether another opener could take the directory's lock now.
    fn lock_is_free(dir: &Path) -> bool {
        match File::open(dir.join(LOCK_FILE)) {
            Ok(f) => f.try_lock().is_ok(),
            Err(_) => true,
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn stale_lock_is_taken_over() {
        for content in ["999999999\n", "", "not a pid"] {
            let dir = TestDir::new("stale-lock");
            fs::create_dir_all(&dir.0).unwrap();
            fs::write(dir.0.join(LOCK_FILE), content).unwrap();
            let (journal, _) = open(dir.config());
            let holder = fs::read_to_string(dir.0.join(LOCK_FILE)).unwrap();
            assert_eq!(holder.trim(), std::process::id().to_string());
            journal.close();
        }
    }

    #[test]
    fn interval_policy_fsyncs_within_a_second_of_a_lone_write() {
        let dir = TestDir::new("interval");
        let (journal, _) = open(dir.config());
        append_wait(&journal, record(1));
        let before = journal.stats().fsyncs;
        let start = Instant::now();
        while journal.stats().fsyncs == before && start.elapsed() < Duration::from_millis(1500) {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(journal.stats().fsyncs > before, "no fsync within 1.5 s");
    }

    #[test]
    fn always_policy_fsyncs_before_done_and_never_does_not() {
        for (policy, expect_sync) in [(FsyncPolicy::Always, true), (FsyncPolicy::Never, false)] {
            let dir = TestDir::new("policy");
            let mut cfg = dir.config();
            cfg.fsync = policy;
            let (journal, _) = open(cfg);
            append_wait(&journal, record(1));
            assert_eq!(journal.stats().fsyncs > 0, expect_sync, "{policy}");
            journal.close();
            assert!(journal.stats().fsyncs > 0, "close fsyncs under {policy}");
        }
    }

    #[test]
    fn oversized_record_fails_the_journal_and_nothing_after_is_acknowledged() {
        let dir = TestDir::new("oversized");
        let (journal, _) = open(dir.config());
        let acked = Arc::new(AtomicUsize::new(0));
        let counter = |acked: &Arc<AtomicUsize>| -> Option<Done> {
            let acked = Arc::clone(acked);
            Some(Box::new(move || {
                acked.fetch_add(1, Ordering::SeqCst);
            }))
        };
        append_wait(&journal, record(0));
        journal.append(vec![0; MAX_RECORD_BYTES + 1], counter(&acked));
        journal.append(record(1), counter(&acked));
        let (tx, rx) = mpsc::channel::<()>();
        journal.append(record(2), Some(Box::new(move || drop(tx))));
        // The done is dropped uncalled, which disconnects the channel.
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_err());
        assert_eq!(acked.load(Ordering::SeqCst), 0);
        assert!(journal.failed().is_some_and(|e| e.contains("exceeds")));
        journal.close();
        let (journal, recovered) = open(dir.config());
        assert_eq!(recovered.records, vec![record(0)]);
        assert!(journal.failed().is_none());
    }

    #[test]
    fn close_from_a_done_does_not_deadlock() {
        let dir = TestDir::new("close-in-done");
        let (journal, _) = open(dir.config());
        let handle = journal.clone();
        let (tx, rx) = mpsc::channel();
        journal.append(
            record(0),
            Some(Box::new(move || {
                handle.close();
                let _ = tx.send(());
            })),
        );
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        journal.close();
        let (_journal, recovered) = open(dir.config());
        assert_eq!(recovered.records, vec![record(0)]);
    }
}
