//! Helpers for the journal's unit tests: scratch directories, record fixtures, and opening,
//! appending and inspecting a journal in one call.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::files::{list_journals, LOCK_FILE};
use super::format::{HEADER_LEN, RECORD_HEADER_LEN};
use super::{Journal, JournalConfig, JournalError, Origin, Recovered, SnapshotSource};

/// Everything [`Journal::open`] handed to its sink, for tests to compare.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// The snapshot's records, if there was a snapshot.
    pub(super) snapshot: Option<Vec<Vec<u8>>>,
    pub(super) records: Vec<Vec<u8>>,
    pub(super) truncated_tail: Option<String>,
    pub(super) lost_tail: Option<String>,
}

fn open_collecting(
    cfg: JournalConfig,
    may_lose: bool,
) -> Result<(Journal, Collected), JournalError> {
    let mut got = Collected::default();
    let mut sink = |origin: Origin, payload: &[u8]| {
        match origin {
            Origin::Snapshot => got
                .snapshot
                .get_or_insert_with(Vec::new)
                .push(payload.to_vec()),
            Origin::Journal => got.records.push(payload.to_vec()),
        }
        Ok(())
    };
    let (journal, recovered): (Journal, Recovered) = Journal::open(cfg, &mut sink, &|| may_lose)?;
    if recovered.snapshot_records > 0 || got.snapshot.is_some() {
        got.snapshot.get_or_insert_with(Vec::new);
    }
    got.truncated_tail = recovered.truncated_tail;
    got.lost_tail = recovered.lost_tail;
    Ok((journal, got))
}

/// A snapshot source of one record.
pub(super) fn snap(payload: &[u8]) -> SnapshotSource {
    Box::new(std::iter::once(payload.to_vec()))
}

/// Why opening with `may_lose` answering true fails.
pub(super) fn open_may_lose_err(cfg: JournalConfig) -> JournalError {
    match open_collecting(cfg, true) {
        Ok(_) => panic!("open unexpectedly succeeded"),
        Err(e) => e,
    }
}

/// Opens with `may_lose` answering true.
pub(super) fn open_may_lose(cfg: JournalConfig) -> (Journal, Collected) {
    match open_collecting(cfg, true) {
        Ok(opened) => opened,
        Err(e) => panic!("open failed: {e}"),
    }
}

/// A fresh directory under the system temp dir, removed when the test ends.
pub(super) struct TestDir(pub(super) PathBuf);

impl TestDir {
    pub(super) fn new(name: &str) -> TestDir {
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

    pub(super) fn config(&self) -> JournalConfig {
        JournalConfig::new(&self.0)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn open(cfg: JournalConfig) -> (Journal, Collected) {
    match open_collecting(cfg, false) {
        Ok(opened) => opened,
        Err(e) => panic!("open failed: {e}"),
    }
}

pub(super) fn open_err(cfg: JournalConfig) -> JournalError {
    match open_collecting(cfg, false) {
        Ok(_) => panic!("open unexpectedly succeeded"),
        Err(e) => e,
    }
}

pub(super) fn record(i: usize) -> Vec<u8> {
    format!(
        "{{\"op\":\"entry\",\"i\":{i},\"pad\":\"{}\"}}",
        "x".repeat(i % 97)
    )
    .into_bytes()
}

/// Appends and waits until the record's `done` has run.
pub(super) fn append_wait(journal: &Journal, rec: Vec<u8>) {
    let (tx, rx) = mpsc::channel();
    journal.append(
        rec,
        Some(Box::new(move |_| {
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
pub(super) fn write_records(dir: &TestDir, n: usize) -> (PathBuf, Vec<u64>) {
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

/// Whether another opener could take the directory's lock now.
pub(super) fn lock_is_free(dir: &Path) -> bool {
    match File::open(dir.join(LOCK_FILE)) {
        Ok(f) => f.try_lock().is_ok(),
        Err(_) => true,
    }
}
