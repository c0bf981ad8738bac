//! Watching a server's data directory for compactions, from a thread of its own that looks
//! every millisecond.
//!
//! `/metrics` does not count snapshots, so a compaction is seen in the files the journal
//! module lays out (`src/store/journal/mod.rs`): between compactions the directory holds one
//! `journal-*.log`, `snapshot` and `LOCK`. A compaction switches to a new journal file, writes
//! `snapshot.tmp`, renames it over `snapshot` and deletes the older journals. So a compaction
//! is *under way* while a `*.tmp` file or more than one journal exists, and *done* once neither
//! does and `snapshot` is another file than before.

use crate::stats::Clock;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between looks. Default is 1 ms: a look is one `readdir` and one `stat`, a few
/// microseconds of the generator's core.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// One look at the directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Look {
    /// `journal-*.log` files.
    pub journals: usize,
    /// Half-written `*.tmp` files.
    pub temporary: usize,
    /// `snapshot`: inode, size and modification time in ns, if it exists.
    pub snapshot: Option<(u64, u64, i64)>,
    /// Bytes of the journal files.
    pub journal_bytes: u64,
}

impl Look {
    /// Looks at `dir` now; an unreadable directory looks empty.
    pub fn at(dir: &Path) -> Look {
        let mut look = Look::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return look;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                look.temporary += 1;
            } else if name.starts_with("journal-") && name.ends_with(".log") {
                look.journals += 1;
                look.journal_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            } else if name == "snapshot" {
                look.snapshot = entry
                    .metadata()
                    .ok()
                    .map(|m| (m.ino(), m.len(), m.mtime() * 1_000_000_000 + m.mtime_nsec()));
            }
        }
        look
    }

    /// A compaction is under way: a half-written file, or an old journal not yet deleted.
    pub fn busy(&self) -> bool {
        self.temporary > 0 || self.journals > 1
    }

    /// Bytes of the `snapshot` file.
    pub fn snapshot_bytes(&self) -> Option<u64> {
        self.snapshot.map(|s| s.1)
    }
}

/// Waits until no compaction is under way in `dir`, at most `limit`. Returns whether it is.
pub fn wait_idle(dir: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if !Look::at(dir).busy() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One compaction as seen from outside, on the run's clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// The last look before the first change: the compaction began after this.
    pub quiet_ns: u64,
    /// The first look that saw it under way (or the snapshot already replaced).
    pub seen_ns: u64,
    /// The first look that saw it done, if one did.
    pub done_ns: Option<u64>,
    /// Size of the new snapshot.
    pub snapshot_bytes: Option<u64>,
}

/// What the watcher thread shares with the rest of the run.
#[derive(Default)]
struct Progress {
    stop: AtomicBool,
    /// Compactions seen so far, and whether one is under way now (`done_ns` is `None`).
    compactions: Mutex<Vec<Compaction>>,
    /// Compactions completed so far.
    done: AtomicU64,
}

/// A running watcher; [`DirWatch::finish`] stops it.
pub struct DirWatch {
    progress: Arc<Progress>,
    handle: Option<JoinHandle<()>>,
}

impl DirWatch {
    /// Starts looking at `dir`, timing what it sees on `clock`.
    pub fn start(dir: &Path, clock: Clock) -> DirWatch {
        let progress = Arc::new(Progress::default());
        let handle = {
            let (dir, progress) = (dir.to_path_buf(), Arc::clone(&progress));
            std::thread::Builder::new()
                .name("parley-load-dirwatch".into())
                .spawn(move || watch(&dir, clock, &progress))
                .ok()
        };
        DirWatch { progress, handle }
    }

    /// Compactions completed so far.
    pub fn done(&self) -> u64 {
        self.progress.done.load(Ordering::Relaxed)
    }

    /// Stops the thread and returns the compactions it saw.
    pub fn finish(mut self) -> Vec<Compaction> {
        self.stop_thread();
        self.progress
            .compactions
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    fn stop_thread(&mut self) {
        self.progress.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn watch(dir: &Path, clock: Clock, progress: &Progress) {
    let mut baseline = Look::at(dir).snapshot;
    let mut last_ns = clock.now_ns();
    let mut under_way = false;
    while !progress.stop.load(Ordering::Relaxed) {
        std::thread::sleep(LOOK_EVERY);
        let look = Look::at(dir);
        let now = clock.now_ns();
        let replaced = look.snapshot.is_some() && look.snapshot != baseline;
        if !under_way && (look.busy() || replaced) {
            under_way = true;
            if let Ok(mut c) = progress.compactions.lock() {
                c.push(Compaction {
                    quiet_ns: last_ns,
                    seen_ns: now,
                    ..Compaction::default()
                });
            }
        }
        if under_way && !look.busy() && replaced {
            under_way = false;
            baseline = look.snapshot;
            if let Ok(mut c) = progress.compactions.lock() {
                if let Some(last) = c.last_mut() {
                    last.done_ns = Some(now);
                    last.snapshot_bytes = look.snapshot_bytes();
                }
            }
            progress.done.fetch_add(1, Ordering::Relaxed);
        }
        last_ns = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_compaction_the_way_the_journal_makes_one() {
        let dir = std::env::temp_dir().join(format!("parley-load-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
        write("LOCK", b"1");
        write("snapshot", b"old");
        write("journal-1.log", &[0; 100]);
        let idle = Look::at(&dir);
        assert_eq!(
            (idle.journals, idle.journal_bytes, idle.busy()),
            (1, 100, false)
        );
        assert!(wait_idle(&dir, Duration::from_millis(10)));

        let clock = Clock::new();
        let w = DirWatch::start(&dir, clock);
        std::thread::sleep(Duration::from_millis(20));
        write("journal-2.log", b"");
        std::thread::sleep(Duration::from_millis(20));
        write("snapshot.tmp", b"new state");
        assert!(Look::at(&dir).busy());
        std::thread::sleep(Duration::from_millis(20));
        std::fs::rename(dir.join("snapshot.tmp"), dir.join("snapshot")).unwrap();
        std::fs::remove_file(dir.join("journal-1.log")).unwrap();
        let start = Instant::now();
        while w.done() == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen = w.finish();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(seen.len(), 1, "{seen:?}");
        let c = &seen[0];
        assert!(c.quiet_ns < c.seen_ns);
        assert!(c.done_ns.unwrap() >= c.seen_ns + 30_000_000, "{c:?}");
        assert_eq!(c.snapshot_bytes, Some(9));
    }
}
