//! The writer thread, the only one that writes journal files: it batches whatever is queued
//! into one write (group commit), fsyncs by the policy, hands the batch's `done` callbacks to
//! the delivery thread, and switches to a new journal file when a compaction comes through
//! the queue.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::compactor::Compactor;
use super::deliverer::{Batch, Deliverer};
use super::files::{create_journal_file, LockGuard};
use super::format::{encode_record, HEADER_LEN};
use super::syncer::Syncer;
use super::{
    lock_ignoring_poison, Done, FsyncPolicy, Shared, SnapshotSource, DEFAULT_MAX_BATCH_BYTES,
    MAX_RECORD_BYTES, SYNC_INTERVAL,
};

/// What a [`Journal`](super::Journal) handle sends the writer thread. A record says whether it
/// holds a reserved place.
pub(super) enum Msg {
    Record(Vec<u8>, Option<Done>, bool),
    Compact(SnapshotSource),
    Close,
}

/// A message that ends a batch: the batch is written before it is acted on.
enum Control {
    Compact(SnapshotSource),
    Close,
    Fail(String),
}

/// The writer thread's state. Field order matters for drop: the snapshot thread is stopped
/// before the lock file is removed.
pub(super) struct Writer {
    pub(super) rx: Receiver<Msg>,
    pub(super) shared: Arc<Shared>,
    pub(super) dir: PathBuf,
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) generation: u64,
    pub(super) policy: FsyncPolicy,
    pub(super) max_batch_bytes: usize,
    /// Encoded records of the batch being built; reused so appends allocate nothing here.
    pub(super) buf: Vec<u8>,
    /// The callbacks and places of the batch being built.
    pub(super) batch: Batch,
    pub(super) batch_records: u64,
    /// When the oldest write not yet fsynced happened; `None` when everything is synced.
    pub(super) unsynced_since: Option<Instant>,
    pub(super) failed: bool,
    /// Under `Interval`, the thread that fsyncs in the background.
    pub(super) syncer: Option<Syncer>,
    pub(super) deliverer: Deliverer,
    pub(super) compactor: Compactor,
    pub(super) _lock: LockGuard,
}

impl Writer {
    pub(super) fn run(mut self) {
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
        self.shared.stopped.store(true, Ordering::Release);
        // Whatever is still queued will never be written.
        while let Ok(msg) = self.rx.try_recv() {
            self.drop_message(msg);
        }
        // Dropping `self` runs the last acknowledgements, stops the snapshot thread (after any
        // snapshot in hand) and unlocks.
    }

    fn drop_message(&mut self, msg: Msg) {
        match msg {
            Msg::Record(_, done, reserved) => {
                let mut batch = Batch::default();
                batch.dones.extend(done);
                batch.reserved = usize::from(reserved);
                self.deliverer.hand(batch, false);
            }
            Msg::Compact(_) => {
                self.shared
                    .pending_compactions
                    .fetch_sub(1, Ordering::AcqRel);
            }
            Msg::Close => {}
        }
    }

    /// Blocks for the next message; under `Interval` wakes up to fsync on time.
    fn next_message(&mut self) -> Option<Msg> {
        loop {
            let deadline = match (self.policy, self.unsynced_since) {
                (FsyncPolicy::Interval, Some(since)) if !self.failed && self.syncer.is_none() => {
                    since + SYNC_INTERVAL
                }
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
                Msg::Record(record, done, reserved) => {
                    if self.failed {
                        // A failed journal acknowledges nothing.
                        self.drop_message(Msg::Record(record, done, reserved));
                    } else if record.len() > MAX_RECORD_BYTES {
                        self.drop_message(Msg::Record(Vec::new(), done, reserved));
                        return Some(Control::Fail(format!(
                            "record of {} bytes exceeds the {MAX_RECORD_BYTES}-byte limit",
                            record.len()
                        )));
                    } else {
                        encode_record(&mut self.buf, &record);
                        self.batch.dones.extend(done);
                        self.batch.reserved += usize::from(reserved);
                        self.batch_records += 1;
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
        if !self.failed && lock_ignoring_poison(&self.shared.failed).is_some() {
            // The fsync thread failed; it published why.
            self.failed = true;
        }
        if self.buf.is_empty() || self.failed {
            self.buf.clear();
            self.batch_records = 0;
            let batch = std::mem::take(&mut self.batch);
            self.deliverer.hand(batch, false);
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
            FsyncPolicy::Interval => match &self.syncer {
                Some(syncer) => {
                    syncer.dirty();
                    false
                }
                None => since.elapsed() >= SYNC_INTERVAL,
            },
            FsyncPolicy::Never => false,
        };
        if sync_now && !self.sync() {
            return;
        }
        self.shared
            .records
            .fetch_add(self.batch_records, Ordering::Relaxed);
        self.batch_records = 0;
        let batch = std::mem::take(&mut self.batch);
        self.deliverer.hand(batch, true);
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
            tracing::error!("journal: {reason}; no further records will be acknowledged");
            self.shared.set_failed(reason);
            self.failed = true;
        }
        self.buf.clear();
        self.batch_records = 0;
        let batch = std::mem::take(&mut self.batch);
        self.deliverer.hand(batch, false);
    }

    /// Starts journal generation `g + 1` and hands the snapshot (base `g + 1`) to the
    /// snapshot thread. On failure the old journal stays live and nothing is lost.
    fn rotate(&mut self, snapshot: SnapshotSource) {
        let abandon = |shared: &Shared| {
            shared.pending_compactions.fetch_sub(1, Ordering::AcqRel);
        };
        if self.failed {
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
                let handed = self.syncer.as_ref().map(|s| s.switch(&file, &path));
                if let Some(Err(e)) = handed {
                    tracing::error!("journal: cannot hand the new journal to the fsync thread ({e}); fsyncing on the writer thread from now on"
                    );
                    self.syncer = None;
                }
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
                tracing::error!("journal: cannot start a new journal file, not compacting: {e}");
                abandon(&self.shared);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::test_support::{append_wait, open, record, TestDir};
    use crate::store::journal::MAX_RECORD_BYTES;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{mpsc, Mutex};
    use std::thread;
    use std::time::Duration;

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
                            .then(|| Box::new(move |_| seen.lock().unwrap().push((p, i))) as Done);
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
            Some(Box::new(move |written| {
                if written {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }))
        };
        append_wait(&journal, record(0));
        journal.append(vec![0; MAX_RECORD_BYTES + 1], counter(&acked));
        journal.append(record(1), counter(&acked));
        let (tx, rx) = mpsc::channel::<bool>();
        journal.append(
            record(2),
            Some(Box::new(move |written| {
                let _ = tx.send(written);
            })),
        );
        // The done runs, told that the record was not written.
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(false));
        assert_eq!(acked.load(Ordering::SeqCst), 0);
        assert!(journal.failed().is_some_and(|e| e.contains("exceeds")));
        assert!(matches!(
            journal.reserve(),
            Err(super::super::Refused::Failed)
        ));
        journal.close();
        let (journal, recovered) = open(dir.config());
        assert_eq!(recovered.records, vec![record(0)]);
        assert!(journal.failed().is_none());
    }
}
