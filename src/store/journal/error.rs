//! [`JournalError`], the one error type of the journal, and the helper that attaches a
//! file and an operation to an I/O error.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can stop [`Journal::open`](super::Journal::open).
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

pub(super) fn io_error(path: &Path, op: &'static str, source: io::Error) -> JournalError {
    JournalError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}
