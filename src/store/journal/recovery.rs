//! What [`Journal::open`](super::Journal::open) reads back: the snapshot and the journals
//! after it, checked record by record. A torn final record is cut; anything else that is
//! damaged is refused without touching the directory (see "Recovery rules" in the module
//! above).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{io_error, JournalError};
use super::files::{
    create_journal_file, journal_path, list_journals, sync_dir, JOURNAL_PREFIX, SNAPSHOT_FILE,
    SNAPSHOT_TMP, TMP_SUFFIX,
};
use super::format::{
    decode_at, parse_header, Decoded, HEADER_LEN, JOURNAL_MAGIC, RECORD_HEADER_LEN, SNAPSHOT_MAGIC,
};
use super::{Recovered, MAX_RECORD_BYTES, MAX_SNAPSHOT_BYTES};

pub(super) struct RecoveryState {
    pub(super) recovered: Recovered,
    /// The newest journal, open for appending at its (possibly cut) end.
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) generation: u64,
    pub(super) live_bytes: u64,
}

/// Reads and validates everything before changing anything on disk: a refusal leaves the
/// directory exactly as it was found.
pub(super) fn recover(dir: &Path) -> Result<RecoveryState, JournalError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::test_support::{
        append_wait, lock_is_free, open, open_err, record, write_records, TestDir,
    };
    use std::io::Write;

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
    fn missing_journal_is_refused() {
        let dir = TestDir::new("missing");
        write_records(&dir, 1);
        fs::rename(journal_path(&dir.0, 1), journal_path(&dir.0, 2)).unwrap();
        match open_err(dir.config()) {
            JournalError::Corrupt { path, .. } => assert_eq!(path, journal_path(&dir.0, 1)),
            other => panic!("expected corrupt, got {other}"),
        }
    }
}
