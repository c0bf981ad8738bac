//! The snapshot thread: takes a snapshot source from the writer after it switched journal
//! files, pulls its records one at a time into `snapshot.tmp` (so a snapshot is never whole in
//! memory), makes it durable (fsync, rename, directory fsync) and then deletes the journals it
//! covers. Runs apart from the writer so a large snapshot never holds up acknowledgements.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};

use super::error::{io_error, JournalError};
use super::files::{list_journals, private_file_options, sync_dir, SNAPSHOT_FILE, SNAPSHOT_TMP};
use super::format::{encode_end_record, encode_header_version, encode_record, SNAPSHOT_MAGIC};
use super::{lock_ignoring_poison, Shared, SnapshotSource, MAX_RECORD_BYTES, SNAPSHOT_VERSION};

/// The snapshot thread and the one-job slot it takes work from.
pub(super) struct Compactor {
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
    job: Option<(SnapshotSource, u64)>,
    stop: bool,
}

impl Compactor {
    pub(super) fn start(dir: &Path, shared: &Arc<Shared>) -> Result<Compactor, JournalError> {
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

    pub(super) fn submit(&self, snapshot: SnapshotSource, base: u64, shared: &Shared) {
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
                tracing::error!("journal: snapshot thread panicked");
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
        let began = std::time::Instant::now();
        match write_snapshot(dir, snapshot, base, shared) {
            Ok(()) => tracing::info!(
                ms = began.elapsed().as_millis() as u64,
                "journal compacted: snapshot written in {} ms",
                began.elapsed().as_millis()
            ),
            // The previous snapshot and all journals since it are untouched: nothing is lost,
            // the journal just stays long until the next compaction.
            Err(e) => tracing::error!("journal: snapshot not written: {e}"),
        }
        shared.pending_compactions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Writes the records of `snapshot` with base generation `base` atomically, then deletes the
/// journals it covers.
fn write_snapshot(
    dir: &Path,
    snapshot: SnapshotSource,
    base: u64,
    shared: &Shared,
) -> Result<(), JournalError> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let file = private_file_options()
        .open(&tmp)
        .map_err(|e| io_error(&tmp, "create", e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let write_err = |e| io_error(&tmp, "write", e);
    out.write_all(&encode_header_version(
        &SNAPSHOT_MAGIC,
        SNAPSHOT_VERSION,
        base,
    ))
    .map_err(write_err)?;
    let mut framed = Vec::new();
    let mut count = 0u64;
    for record in snapshot {
        if record.len() > MAX_RECORD_BYTES {
            return Err(JournalError::Corrupt {
                path: tmp.clone(),
                offset: 0,
                reason: format!(
                    "snapshot record of {} bytes exceeds the {MAX_RECORD_BYTES}-byte limit",
                    record.len()
                ),
            });
        }
        framed.clear();
        encode_record(&mut framed, &record);
        out.write_all(&framed).map_err(write_err)?;
        count += 1;
    }
    framed.clear();
    encode_end_record(&mut framed, count);
    out.write_all(&framed).map_err(write_err)?;
    let file = out
        .into_inner()
        .map_err(|e| io_error(&tmp, "write", e.into_error()))?;
    file.sync_all().map_err(|e| io_error(&tmp, "fsync", e))?;
    drop(file);
    let path = dir.join(SNAPSHOT_FILE);
    fs::rename(&tmp, &path).map_err(|e| io_error(&path, "rename snapshot into", e))?;
    sync_dir(dir)?;
    shared.snapshots.fetch_add(1, Ordering::Relaxed);
    // From here the old journals are dead weight, and go at once: they may hold the text of
    // messages deleted since, which must not outlive this compaction. One left behind is
    // deleted at next open.
    for (generation, path) in list_journals(dir)? {
        if generation < base {
            if let Err(e) = fs::remove_file(&path) {
                tracing::error!("journal: cannot delete old journal {}: {e}", path.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::files::{journal_name, journal_path, TMP_SUFFIX};
    use crate::store::journal::test_support::{
        append_wait, open, record, snap, write_records, TestDir,
    };
    use std::time::{Duration, Instant};

    #[test]
    fn compaction_keeps_snapshot_and_later_records_only() {
        let dir = TestDir::new("compact");
        let (journal, _) = open(dir.config());
        for i in 0..5 {
            journal.append(record(i), None);
        }
        journal.compact(snap(b"state after 5"));
        for i in 5..8 {
            journal.append(record(i), None);
        }
        journal.close();
        assert_eq!(journal.stats().snapshots, 1);
        let journals = list_journals(&dir.0).unwrap();
        assert_eq!(journals.len(), 1);
        assert_eq!(journals[0].0, 2, "the old journal is gone");

        let (journal, recovered) = open(dir.config());
        assert_eq!(recovered.snapshot, Some(vec![b"state after 5".to_vec()]));
        assert_eq!(recovered.records, (5..8).map(record).collect::<Vec<_>>());
        // A second compaction on top of the first.
        journal.compact(snap(b"state after 8"));
        append_wait(&journal, record(8));
        journal.close();
        let (_journal, recovered) = open(dir.config());
        assert_eq!(recovered.snapshot, Some(vec![b"state after 8".to_vec()]));
        assert_eq!(recovered.records, vec![record(8)]);
        assert_eq!(list_journals(&dir.0).unwrap()[0].0, 3);
    }

    /// The directory states a crash can leave mid-compaction all recover the same records.
    #[test]
    fn interrupted_compaction_recovers_the_same_state() {
        let dir = TestDir::new("crash-compact");
        let (first_path, _) = write_records(&dir, 5);
        let first_journal = fs::read(&first_path).unwrap();
        let (journal, _) = open(dir.config());
        journal.compact(snap(b"state after 5"));
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
        assert_eq!(recovered.snapshot, Some(vec![b"state after 5".to_vec()]));
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
        journal.compact(snap(b"s"));
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
}
