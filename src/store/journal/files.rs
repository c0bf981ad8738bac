//! The data directory: file names, creating files and the directory readable by the owner
//! only, fsyncing the directory, and the `LOCK` file that keeps a second process out.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::{io_error, JournalError};
use super::format::{encode_header, JOURNAL_MAGIC};

pub(super) const LOCK_FILE: &str = "LOCK";
pub(super) const SNAPSHOT_FILE: &str = "snapshot";
pub(super) const SNAPSHOT_TMP: &str = "snapshot.tmp";
pub(super) const JOURNAL_PREFIX: &str = "journal-";
const JOURNAL_SUFFIX: &str = ".log";
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// Creates journal `generation` with its header, durably and without ever exposing a
/// half-written header under the final name. Returns it open for appending.
pub(super) fn create_journal_file(
    dir: &Path,
    generation: u64,
) -> Result<(File, PathBuf), JournalError> {
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

/// Puts `parts`, one after the other, in `dir/name` in place of what it held: written to a
/// temporary file of this process, then renamed over `name`, so a crashed process leaves the
/// old file or the new one. Not fsynced: after a power loss the file may be cut short or
/// hold zeros, so its reader must check it (a cache may; a journal may not). Makes `dir` if
/// missing.
pub(crate) fn replace_private_file(dir: &Path, name: &str, parts: &[&[u8]]) -> io::Result<()> {
    create_private_dir(dir)?;
    let tmp = dir.join(format!("{name}.{}{TMP_SUFFIX}", std::process::id()));
    let written = private_file_options().open(&tmp).and_then(|mut file| {
        for part in parts {
            file.write_all(part)?;
        }
        Ok(())
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, dir.join(name))) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Options for a new journal or snapshot file. They hold password and token hashes, so on
/// Unix only the owner may read them.
pub(super) fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync directory", e))
}

pub(super) fn journal_name(generation: u64) -> String {
    format!("{JOURNAL_PREFIX}{generation:020}{JOURNAL_SUFFIX}")
}

pub(super) fn journal_path(dir: &Path, generation: u64) -> PathBuf {
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
pub(super) fn list_journals(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
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
pub(super) struct LockGuard {
    _file: File,
}

impl LockGuard {
    pub(super) fn acquire(dir: &Path) -> Result<LockGuard, JournalError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::test_support::{open, open_err, TestDir};
    use crate::store::journal::JournalError;

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
}
