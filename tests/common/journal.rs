//! The journal files of a data directory, read and damaged the way a disk or a power cut
//! would. The format is documented in `src/store/journal/mod.rs`: a 32-byte file header, then
//! records of `[len u32 LE][crc32c u32 LE over the 4 length bytes then the payload][payload]`,
//! each payload one JSON record such as `{"t":"started","boot_id":"…","fsync":"interval"}`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub const FILE_HEADER: usize = 32;
pub const RECORD_HEADER: usize = 8;

/// The journal files of a data directory, oldest generation first.
pub fn journal_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(data)
        .expect("list data dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("journal-") && name.ends_with(".log")
        })
        .collect();
    files.sort(); // zero-padded generations sort by name
    files
}

/// Start and end offsets of each whole record in a journal file.
pub fn record_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut pos = FILE_HEADER;
    while pos + RECORD_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let end = pos + RECORD_HEADER + len;
        assert!(end <= bytes.len(), "record at {pos} runs past the file");
        spans.push((pos, end));
        pos = end;
    }
    assert_eq!(pos, bytes.len(), "trailing bytes after the last record");
    spans
}

pub fn payload(bytes: &[u8], (start, end): (usize, usize)) -> Value {
    serde_json::from_slice(&bytes[start + RECORD_HEADER..end]).expect("record payload is JSON")
}

/// CRC32C (Castagnoli), bit by bit: slow, and obviously the textbook one.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The stored checksum of the record at `span`.
pub fn stored_crc(bytes: &[u8], (start, _): (usize, usize)) -> u32 {
    u32::from_le_bytes(bytes[start + 4..start + 8].try_into().unwrap())
}

/// One record as the journal writes it.
pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut covered = len.to_vec();
    covered.extend_from_slice(payload);
    let mut out = len.to_vec();
    out.extend_from_slice(&crc32c(&covered).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// `bytes` with the record at `span` replaced by a valid record holding `new_payload`.
pub fn replace_record(bytes: &[u8], (start, end): (usize, usize), new_payload: &Value) -> Vec<u8> {
    let mut out = bytes[..start].to_vec();
    out.extend_from_slice(&encode_record(new_payload.to_string().as_bytes()));
    out.extend_from_slice(&bytes[end..]);
    out
}
