//! What [`Journal::open`](super::Journal::open) reads back: the snapshot and the journals
//! after it, checked and handed to the caller's sink one record at a time. A torn final
//! record is cut; a lost tail is cut when the caller says loss was possible; anything else
//! that is damaged is refused without changing the directory (see "Recovery rules" in the
//! module above).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{io_error, JournalError};
use super::files::{
    create_journal_file, journal_path, list_journals, sync_dir, JOURNAL_PREFIX, SNAPSHOT_FILE,
    SNAPSHOT_TMP, TMP_SUFFIX,
};
use super::format::{
    end_record_count, parse_header, parse_header_version, read_record, record_at, ReadResult,
    HEADER_LEN, JOURNAL_MAGIC, RECORD_HEADER_LEN, SNAPSHOT_MAGIC,
};
use super::{Origin, Recovered, Sink, MAX_LEGACY_SNAPSHOT_BYTES, MAX_RECORD_BYTES};

/// Buffer for reading files record by record.
const READ_BUFFER: usize = 256 * 1024;

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
pub(super) fn recover(
    dir: &Path,
    sink: Sink<'_>,
    may_lose: &dyn Fn() -> bool,
) -> Result<RecoveryState, JournalError> {
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

    let mut recovered = Recovered::default();
    let base = read_snapshot(&dir.join(SNAPSHOT_FILE), sink, &mut recovered)?;
    let has_snapshot = base.is_some();
    let base = base.unwrap_or(1);
    let mut journals = Vec::new();
    for (generation, path) in list_journals(dir)? {
        if generation < base {
            // Covered by the snapshot; left behind by a crash right after it was written.
            garbage.push(path);
        } else {
            journals.push((generation, path));
        }
    }
    if journals.is_empty() && has_snapshot {
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
            let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
            let scan = scan_journal(path, file, *generation, sink, &mut recovered)?;
            if let Some((offset, reason)) = scan.bad {
                return Err(JournalError::Corrupt {
                    path: path.clone(),
                    offset,
                    reason: format!("{reason}, in a journal file followed by a newer one"),
                });
            }
            live_bytes += scan.valid_end;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error(path, "open", e))?;
        let reader = file.try_clone().map_err(|e| io_error(path, "open", e))?;
        let scan = scan_journal(path, reader, *generation, sink, &mut recovered)?;
        let file_len = file
            .metadata()
            .map_err(|e| io_error(path, "stat", e))?
            .len();
        let mut valid_end = scan.valid_end;
        if let Some((offset, reason)) = scan.bad {
            let valid = find_valid_record_after(path, &mut file, offset)?;
            match valid {
                None => {
                    recovered.truncated_tail = Some(format!(
                        "cut a torn final record from {} at byte offset {offset} ({} bytes dropped: {reason})",
                        path.display(),
                        file_len - offset
                    ));
                }
                Some(next) if may_lose() => {
                    recovered.lost_tail = Some(format!(
                        "cut the journal {} at byte offset {offset} ({} bytes dropped: {reason}, followed by a valid record at offset {next}); the previous run stopped uncleanly before a reboot without fsyncing every write, so its last acknowledged records may be lost",
                        path.display(),
                        file_len - offset
                    ));
                }
                Some(next) => {
                    return Err(JournalError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason: format!("{reason}, followed by a valid record at offset {next}"),
                    });
                }
            }
            valid_end = offset;
        }
        if valid_end < file_len {
            file.set_len(valid_end)
                .map_err(|e| io_error(path, "truncate", e))?;
            file.sync_all().map_err(|e| io_error(path, "fsync", e))?;
        }
        file.seek(SeekFrom::Start(valid_end))
            .map_err(|e| io_error(path, "seek", e))?;
        live_bytes += valid_end;
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

/// A buffered reader over `file` and the file's header bytes (fewer if it is that short).
fn read_header(path: &Path, file: File) -> Result<(BufReader<File>, Vec<u8>), JournalError> {
    let mut input = BufReader::with_capacity(READ_BUFFER, file);
    let mut header = Vec::with_capacity(HEADER_LEN);
    (&mut input)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(|e| io_error(path, "read", e))?;
    Ok((input, header))
}

/// Reads the snapshot, if there is one, into `sink`; returns its base generation.
fn read_snapshot(
    path: &Path,
    sink: Sink<'_>,
    recovered: &mut Recovered,
) -> Result<Option<u64>, JournalError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, "open", e)),
    };
    let (mut input, header) = read_header(path, file)?;
    let (version, base) = parse_header_version(path, &header, &SNAPSHOT_MAGIC)?;
    let corrupt = |offset: u64, reason: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut pos = HEADER_LEN as u64;
    let mut payload = Vec::new();
    let mut count = 0u64;
    let max = if version == 1 {
        MAX_LEGACY_SNAPSHOT_BYTES
    } else {
        MAX_RECORD_BYTES
    };
    loop {
        let read =
            read_record(&mut input, max, &mut payload).map_err(|e| io_error(path, "read", e))?;
        match read {
            ReadResult::Record => {}
            ReadResult::End if version == 1 && count == 1 => break,
            ReadResult::End => {
                return Err(corrupt(pos, "snapshot ends before its end record".into()));
            }
            ReadResult::Bad(reason) => return Err(corrupt(pos, reason)),
        }
        let at = pos;
        pos += (RECORD_HEADER_LEN + payload.len()) as u64;
        if version == 1 {
            if count == 1 {
                return Err(corrupt(
                    at,
                    "unexpected bytes after the snapshot record".into(),
                ));
            }
        } else if let Some(expected) = end_record_count(&payload) {
            if expected != count {
                return Err(corrupt(
                    at,
                    format!("end record counts {expected} records, the snapshot holds {count}"),
                ));
            }
            let mut rest = [0u8; 1];
            if input
                .read(&mut rest)
                .map_err(|e| io_error(path, "read", e))?
                != 0
            {
                return Err(corrupt(pos, "unexpected bytes after the end record".into()));
            }
            break;
        }
        sink(Origin::Snapshot, &payload).map_err(|reason| corrupt(at, reason))?;
        count += 1;
    }
    recovered.snapshot_records = count;
    recovered.bytes += pos;
    Ok(Some(base))
}

/// What [`scan_journal`] found: where its valid part ends, and the first bad record's offset
/// and reason, if any.
struct Scan {
    valid_end: u64,
    bad: Option<(u64, String)>,
}

/// Hands the records of one journal file to `sink` up to the first bad one.
fn scan_journal(
    path: &Path,
    file: File,
    generation: u64,
    sink: Sink<'_>,
    recovered: &mut Recovered,
) -> Result<Scan, JournalError> {
    let (mut input, header) = read_header(path, file)?;
    let header_generation = parse_header(path, &header, &JOURNAL_MAGIC)?;
    if header_generation != generation {
        return Err(JournalError::BadHeader {
            path: path.to_path_buf(),
            reason: format!(
                "header says generation {header_generation} but the file name says {generation}"
            ),
        });
    }
    let mut pos = HEADER_LEN as u64;
    let mut payload = Vec::new();
    loop {
        let read = read_record(&mut input, MAX_RECORD_BYTES, &mut payload)
            .map_err(|e| io_error(path, "read", e))?;
        match read {
            ReadResult::End => {
                recovered.bytes += pos;
                return Ok(Scan {
                    valid_end: pos,
                    bad: None,
                });
            }
            ReadResult::Bad(reason) => {
                recovered.bytes += pos;
                return Ok(Scan {
                    valid_end: pos,
                    bad: Some((pos, reason)),
                });
            }
            ReadResult::Record => {
                sink(Origin::Journal, &payload).map_err(|reason| JournalError::Corrupt {
                    path: path.to_path_buf(),
                    offset: pos,
                    reason,
                })?;
                recovered.journal_records += 1;
                pos += (RECORD_HEADER_LEN + payload.len()) as u64;
            }
        }
    }
}

/// Offset of the first whole, checksummed record starting after `bad` in `file`, if any.
/// Reads the rest of the file: this runs only when a file is damaged.
fn find_valid_record_after(
    path: &Path,
    file: &mut File,
    bad: u64,
) -> Result<Option<u64>, JournalError> {
    file.seek(SeekFrom::Start(bad))
        .map_err(|e| io_error(path, "seek", e))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)
        .map_err(|e| io_error(path, "read", e))?;
    Ok(find_valid_record(&rest, 1).map(|at| bad + at as u64))
}

/// First offset at or after `from` where a whole, checksummed journal record starts. Cheap on
/// real tails: most offsets are rejected by their length field before any checksum is computed.
fn find_valid_record(data: &[u8], from: usize) -> Option<usize> {
    let last_start = data.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last_start).find(|&pos| record_at(data, pos, MAX_RECORD_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::test_support::{
        append_wait, lock_is_free, open, open_err, open_may_lose, open_may_lose_err, record, snap,
        write_records, TestDir,
    };
    use std::io::Write;

    #[test]
    fn refusal_leaves_the_directory_untouched() {
        let dir = TestDir::new("untouched");
        write_records(&dir, 2);
        // A snapshot whose journal is missing, plus leftovers open would otherwise clean up.
        let (journal, _) = open(dir.config());
        journal.compact(snap(b"s"));
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

    #[test]
    fn damage_before_valid_records_is_cut_when_loss_was_possible() {
        let dir = TestDir::new("lost-src");
        let (path, offsets) = write_records(&dir, 4);
        let mut bytes = fs::read(&path).unwrap();
        let at = offsets[1] as usize + RECORD_HEADER_LEN + 2;
        bytes[at] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        let (journal, recovered) = open_may_lose(dir.config());
        assert_eq!(recovered.records, vec![record(0)]);
        let note = recovered.lost_tail.expect("a lost tail is reported");
        assert!(note.contains(&format!("offset {}", offsets[1])), "{note}");
        assert!(recovered.truncated_tail.is_none());
        assert_eq!(fs::metadata(&path).unwrap().len(), offsets[1]);
        append_wait(&journal, b"after the cut".to_vec());
        journal.close();
        let (_journal, recovered) = open(dir.config());
        assert_eq!(
            recovered.records,
            vec![record(0), b"after the cut".to_vec()]
        );
    }

    #[test]
    fn damage_in_an_older_journal_is_refused_even_when_loss_was_possible() {
        let dir = TestDir::new("lost-older");
        let (path, offsets) = write_records(&dir, 3);
        let mut first = fs::read(&path).unwrap();
        let (journal, _) = open(dir.config());
        journal.compact(snap(b"s"));
        append_wait(&journal, record(9));
        journal.close();
        // Journal 2 exists now; put journal 1 back, damaged, and drop the snapshot, so that
        // journal 1 is replayed and is followed by a newer one.
        fs::remove_file(dir.0.join(SNAPSHOT_FILE)).unwrap();
        first[offsets[1] as usize + RECORD_HEADER_LEN + 1] ^= 0x20;
        fs::write(journal_path(&dir.0, 1), &first).unwrap();
        let err = open_may_lose_err(dir.config());
        match err {
            JournalError::Corrupt { offset, .. } => assert_eq!(offset, offsets[1]),
            other => panic!("expected corrupt, got {other}"),
        }
    }

    #[test]
    fn a_format_1_snapshot_is_still_read() {
        use crate::store::journal::format::{encode_header, encode_record};
        let dir = TestDir::new("legacy-snapshot");
        write_records(&dir, 2);
        // Journal 1 becomes journal 2, after a format-1 snapshot with base 2.
        fs::rename(journal_path(&dir.0, 1), journal_path(&dir.0, 2)).unwrap();
        let mut journal = fs::read(journal_path(&dir.0, 2)).unwrap();
        journal[..HEADER_LEN].copy_from_slice(&encode_header(&JOURNAL_MAGIC, 2));
        fs::write(journal_path(&dir.0, 2), &journal).unwrap();
        let mut snapshot = encode_header(&SNAPSHOT_MAGIC, 2).to_vec();
        encode_record(&mut snapshot, b"[\"the whole state\"]");
        fs::write(dir.0.join(SNAPSHOT_FILE), &snapshot).unwrap();
        let (_journal, recovered) = open(dir.config());
        assert_eq!(
            recovered.snapshot,
            Some(vec![b"[\"the whole state\"]".to_vec()])
        );
        assert_eq!(recovered.records, vec![record(0), record(1)]);
    }

    #[test]
    fn a_snapshot_without_its_end_record_is_refused() {
        let dir = TestDir::new("snapshot-end");
        write_records(&dir, 1);
        let (journal, _) = open(dir.config());
        journal.compact(Box::new((0..3).map(|i| format!("part {i}").into_bytes())));
        append_wait(&journal, record(5));
        journal.close();
        let (j, recovered) = open(dir.config());
        assert_eq!(recovered.snapshot.as_ref().map(Vec::len), Some(3));
        j.close();
        // Cut the end record off: a snapshot that ends early is not taken for a whole one.
        let path = dir.0.join(SNAPSHOT_FILE);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - (RECORD_HEADER_LEN + 12)]).unwrap();
        let err = open_err(dir.config());
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    }
}
