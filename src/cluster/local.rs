//! The node's own copy of its replica, in `--data-dir`: a restarted node resumes from it when
//! the stream still holds every change after it, and reads only those.
//!
//! One file, `cluster-STREAM.snap`: a JSON head line (the stream, its creation time, the
//! stream sequence the state is at, the body's length and SHA-256), then the snapshot records
//! as [`frame`] lays them out. It is replaced whole (`replace_private_file`), so a crashed
//! process leaves the previous copy. It is not fsynced, since the copy only makes a restart
//! quicker: one a power loss damaged does not check out against its SHA-256, so it is
//! ignored, and the node loads the latest snapshot from JetStream instead.
//!
//! The reader saves a copy `--cluster-save-every` (30 s) after the last one when anything
//! changed, one save at a time, and a clean stop saves the last one. More often would cost:
//! a save of a 14 MB state takes about 0.2 s of CPU, and every 5 s that took a tenth off the
//! records per second through the stream in `cargo bench --bench cluster`. Under heavy traffic a copy 30 s old
//! may be behind the stream's start; a node killed then starts from the latest snapshot, as
//! a new node does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chat::{hex, Core};
use crate::store::journal::replace_private_file;
use crate::store::snapshot::{frame, unframe};

#[derive(Serialize, Deserialize)]
struct Head {
    stream: String,
    /// The stream's creation time in nanoseconds, as text (JSON numbers stop at 2^53).
    created: String,
    seq: u64,
    /// The last snapshot point at `seq`, which every node must agree on.
    point: u64,
    bytes: u64,
    sha256: String,
}

/// The file, and what was last saved to it.
pub(super) struct LocalCopy {
    dir: PathBuf,
    name: String,
    stream: String,
    created: i128,
    /// The stream sequence of the last copy written, and the lock writers take.
    written: Mutex<u64>,
    /// A save is under way.
    saving: AtomicBool,
    /// The sequence and time of the last save begun.
    last: Mutex<(u64, Instant)>,
    /// How long after it the next save is due, when anything changed.
    every: Duration,
}

/// Why a copy in the data directory was not used.
pub(super) enum Unusable {
    /// There is none.
    Missing,
    /// Of another stream, or of this one before it was made anew: its changes are not the log's.
    OtherStream,
    /// The stream no longer holds the changes right after it.
    Behind { seq: u64, first: u64 },
    /// Cannot be read, or does not check out.
    Broken(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Missing => write!(f, "there is none"),
            Unusable::OtherStream => {
                write!(
                    f,
                    "it is of another stream, or of this one before it was made anew"
                )
            }
            Unusable::Behind { seq, first } => {
                write!(f, "it is at {seq}, and the stream now starts at {first}")
            }
            Unusable::Broken(e) => write!(f, "{e}"),
        }
    }
}

impl LocalCopy {
    pub(super) fn new(dir: PathBuf, stream: &str, created: i128, every: Duration) -> LocalCopy {
        LocalCopy {
            dir,
            name: format!("cluster-{stream}.snap"),
            stream: stream.to_string(),
            created,
            written: Mutex::new(0),
            saving: AtomicBool::new(false),
            last: Mutex::new((0, Instant::now())),
            every,
        }
    }

    /// Loads the copy into `core` when it is of this stream and the stream holds every change
    /// after it (`first` is the stream's first sequence, `last` its last): returns the stream
    /// sequence it is at and the snapshot point then. Nothing is loaded when it is unusable.
    pub(super) fn load(&self, core: &Core, first: u64, last: u64) -> Result<(u64, u64), Unusable> {
        self.remove_half_written();
        let bytes = match std::fs::read(self.dir.join(&self.name)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) => return Err(Unusable::Broken(e.to_string())),
        };
        let broken = |why: &str| Unusable::Broken(why.to_string());
        let split = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| broken("it has no head"))?;
        let head: Head = serde_json::from_slice(&bytes[..split])
            .map_err(|e| Unusable::Broken(format!("its head is unreadable: {e}")))?;
        let body = &bytes[split + 1..];
        if body.len() as u64 != head.bytes || hex(&Sha256::digest(body)) != head.sha256 {
            return Err(broken("it is cut short or damaged"));
        }
        if head.stream != self.stream || head.created != self.created.to_string() || head.seq > last
        {
            return Err(Unusable::OtherStream);
        }
        if head.seq + 1 < first {
            return Err(Unusable::Behind {
                seq: head.seq,
                first,
            });
        }
        // Read to the end once before anything is applied: a copy that does not read (one of
        // a later version's records, say) must leave the core as it was, for the snapshot.
        unframe(body, &mut |_| {}).map_err(Unusable::Broken)?;
        unframe(body, &mut |r| core.apply(&r)).map_err(Unusable::Broken)?;
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = head.seq;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = (head.seq, Instant::now());
        Ok((head.seq, head.point))
    }

    /// Removes the temporary files of saves a crash interrupted (`NAME.PID.tmp`): each is as
    /// large as the state, and nothing will finish them.
    fn remove_half_written(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let prefix = format!("{}.", self.name);
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Whether the reader, having applied `seq`, should save a copy now.
    pub(super) fn due(&self, seq: u64) -> bool {
        if self.saving.load(Relaxed) {
            return false;
        }
        let (at, when) = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        seq > at && when.elapsed() >= self.every
    }

    /// Saves `records`, the state at stream sequence `seq` (snapshot point `point`), off the
    /// async workers.
    pub(super) fn save_in_background(
        self: &Arc<Self>,
        (seq, point): (u64, u64),
        records: impl Iterator<Item = Vec<u8>> + Send + 'static,
    ) {
        if self.saving.swap(true, Relaxed) {
            return;
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = (seq, Instant::now());
        let copy = self.clone();
        tokio::task::spawn_blocking(move || {
            copy.save((seq, point), records);
            copy.saving.store(false, Relaxed);
        });
    }

    /// Writes `records`, the state at stream sequence `seq` (snapshot point `point`), unless
    /// a copy as recent is already written. A failure is logged: the previous copy stays, and
    /// a restart reads more of the stream.
    pub(super) fn save(&self, (seq, point): (u64, u64), records: impl Iterator<Item = Vec<u8>>) {
        let began = Instant::now();
        let body = frame(records, usize::MAX).pop().unwrap_or_default();
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if seq <= *written {
            return;
        }
        let head = Head {
            stream: self.stream.clone(),
            created: self.created.to_string(),
            seq,
            point,
            bytes: body.len() as u64,
            sha256: hex(&Sha256::digest(&body)),
        };
        let mut head = serde_json::to_vec(&head).unwrap_or_default();
        head.push(b'\n');
        match replace_private_file(&self.dir, &self.name, &[&head, &body]) {
            Ok(()) => {
                *written = seq;
                tracing::debug!(
                    seq,
                    bytes = head.len() + body.len(),
                    ms = began.elapsed().as_millis() as u64,
                    "cluster: saved the state at {seq} in the data directory"
                );
            }
            Err(e) => tracing::warn!(
                "cluster: cannot save the state in {}: {e}; a restart reads more of the stream",
                self.dir.join(&self.name).display()
            ),
        }
    }
}
