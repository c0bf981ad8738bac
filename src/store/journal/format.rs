//! The bytes on disk: the 32-byte file header, length-prefixed checksummed records, and the
//! CRC32C that guards both. Pure functions over byte slices; no I/O.

use std::io::{self, Read};
use std::path::Path;

use super::error::JournalError;
use super::{FORMAT_VERSION, SNAPSHOT_VERSION};

pub(super) const JOURNAL_MAGIC: [u8; 8] = *b"PRLYJRNL";
pub(super) const SNAPSHOT_MAGIC: [u8; 8] = *b"PRLYSNAP";
pub(super) const HEADER_LEN: usize = 32;
pub(super) const RECORD_HEADER_LEN: usize = 8;

/// Whether a whole record with a matching checksum starts at `pos` in `data`.
pub(super) fn record_at(data: &[u8], pos: usize, max_len: usize) -> bool {
    let Some(rest) = data.get(pos..) else {
        return false;
    };
    let (Some(len), Some(crc)) = (read_u32(rest, 0), read_u32(rest, 4)) else {
        return false;
    };
    if len as usize > max_len {
        return false;
    }
    match rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len as usize) {
        Some(payload) => record_crc(len, payload) == crc,
        None => false,
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(read_u32(bytes, at)?) | u64::from(read_u32(bytes, at + 4)?) << 32)
}

pub(super) fn encode_record(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(len, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

pub(super) fn record_crc(len: u32, payload: &[u8]) -> u32 {
    crc32c_update(crc32c_update(0, &len.to_le_bytes()), payload)
}

/// Payload of the record that ends a format-2 snapshot, before the record count (u64 LE).
pub(super) const END_MARK: &[u8; 4] = b"\0end";

/// Appends the end record of a snapshot of `count` records.
pub(super) fn encode_end_record(buf: &mut Vec<u8>, count: u64) {
    let mut payload = END_MARK.to_vec();
    payload.extend_from_slice(&count.to_le_bytes());
    encode_record(buf, &payload);
}

/// The record count of an end record, if `payload` is one.
pub(super) fn end_record_count(payload: &[u8]) -> Option<u64> {
    let rest = payload.strip_prefix(END_MARK.as_slice())?;
    Some(u64::from_le_bytes(rest.try_into().ok()?))
}

/// What [`read_record`] found.
pub(super) enum ReadResult {
    /// A whole record; its payload is in the buffer.
    Record,
    /// Clean end of input.
    End,
    Bad(String),
}

/// Reads one record from `input` into `payload`. Incomplete input, an oversized length or a
/// checksum mismatch is `Bad`; an I/O error is returned as such.
pub(super) fn read_record(
    input: &mut impl Read,
    max_len: usize,
    payload: &mut Vec<u8>,
) -> io::Result<ReadResult> {
    let mut head = [0u8; RECORD_HEADER_LEN];
    let got = read_full(input, &mut head)?;
    if got == 0 {
        return Ok(ReadResult::End);
    }
    if got < RECORD_HEADER_LEN {
        return Ok(ReadResult::Bad(format!(
            "incomplete record header ({got} of {RECORD_HEADER_LEN} bytes)"
        )));
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len as usize > max_len {
        return Ok(ReadResult::Bad(format!(
            "record length {len} exceeds the {max_len}-byte limit"
        )));
    }
    payload.clear();
    payload.resize(len as usize, 0);
    let got = read_full(input, payload)?;
    if got < len as usize {
        return Ok(ReadResult::Bad(format!(
            "incomplete record ({got} of {len} payload bytes present)"
        )));
    }
    if record_crc(len, payload) != crc {
        return Ok(ReadResult::Bad("record checksum mismatch".into()));
    }
    Ok(ReadResult::Record)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

pub(super) fn encode_header(magic: &[u8; 8], generation: u64) -> [u8; HEADER_LEN] {
    encode_header_version(magic, FORMAT_VERSION, generation)
}

pub(super) fn encode_header_version(
    magic: &[u8; 8],
    version: u32,
    generation: u64,
) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(magic);
    header[8..12].copy_from_slice(&version.to_le_bytes());
    // 12..16: flags, none defined in version 1.
    header[16..24].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c_update(0, &header[0..24]);
    header[24..28].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a file header and returns its generation.
pub(super) fn parse_header(path: &Path, data: &[u8], magic: &[u8; 8]) -> Result<u64, JournalError> {
    parse_header_version(path, data, magic).map(|(_, generation)| generation)
}

/// Checks a file header and returns its format version and generation. Journals are version
/// 1; snapshots are version 1 (one record) or 2 (a stream of records).
pub(super) fn parse_header_version(
    path: &Path,
    data: &[u8],
    magic: &[u8; 8],
) -> Result<(u32, u64), JournalError> {
    let bad = |reason: String| JournalError::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    let kind = if magic == &SNAPSHOT_MAGIC {
        "snapshot"
    } else {
        "journal"
    };
    if data.len() < HEADER_LEN {
        return Err(bad(format!(
            "file is {} bytes, shorter than the {HEADER_LEN}-byte header",
            data.len()
        )));
    }
    if &data[0..8] != magic {
        return Err(bad(format!("not a parley {kind} file (wrong magic bytes)")));
    }
    let version = read_u32(data, 8).unwrap_or_default();
    let newest = if magic == &SNAPSHOT_MAGIC {
        SNAPSHOT_VERSION
    } else {
        FORMAT_VERSION
    };
    if version == 0 || version > newest {
        return Err(bad(format!(
            "unsupported format version {version} (this build reads versions 1 to {newest})"
        )));
    }
    if read_u32(data, 24) != Some(crc32c_update(0, &data[0..24])) {
        return Err(bad("header checksum mismatch".into()));
    }
    let flags = read_u32(data, 12).unwrap_or_default();
    if flags != 0 {
        return Err(bad(format!("unknown header flags {flags:#x}")));
    }
    let generation = read_u64(data, 16).ok_or_else(|| bad("header too short".into()))?;
    Ok((version, generation))
}

/// CRC32C (Castagnoli), reflected polynomial.
const CRC32C_POLY: u32 = 0x82F6_3B78;

/// Slicing-by-8 tables: `CRC_TABLES[0]` is the classic byte table, `CRC_TABLES[k]` advances a
/// byte through k further zero bytes, so eight input bytes cost eight lookups and no shifts
/// between them.
static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC32C_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xFF) as usize];
            k += 1;
        }
        i += 1;
    }
    tables
}

/// Continues a CRC32C: `crc32c_update(crc32c_update(0, a), b)` is the CRC32C of `a` then `b`.
fn crc32c_update(crc: u32, data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut crc = !crc;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xFF) as usize]
            ^ t[6][((lo >> 8) & 0xFF) as usize]
            ^ t[5][((lo >> 16) & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xFF) as usize]
            ^ t[2][((hi >> 8) & 0xFF) as usize]
            ^ t[1][((hi >> 16) & 0xFF) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &byte in chunks.remainder() {
        crc = t[0][((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::test_support::{open_err, write_records, TestDir};
    use std::fs;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c_update(0, b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_update(0, b""), 0);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for split in [0, 1, 7, 8, 9, 500, 1000] {
            let (a, b) = data.split_at(split);
            assert_eq!(
                crc32c_update(crc32c_update(0, a), b),
                crc32c_update(0, &data)
            );
        }
    }

    #[test]
    fn bad_headers_are_refused() {
        let dir = TestDir::new("header-src");
        let (path, _) = write_records(&dir, 1);
        let original = fs::read(&path).unwrap();
        let mut newer = original.clone();
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        let mut wrong_magic = original.clone();
        wrong_magic[0] = b'X';
        let mut bad_crc = original.clone();
        bad_crc[16] ^= 1; // generation
        for (name, bytes, needle) in [
            ("version", newer, "version 2"),
            ("magic", wrong_magic, "magic"),
            ("crc", bad_crc, "checksum"),
            ("short", original[..10].to_vec(), "shorter"),
        ] {
            let case = TestDir::new(name);
            fs::create_dir_all(&case.0).unwrap();
            fs::write(case.0.join(path.file_name().unwrap()), bytes).unwrap();
            match open_err(case.config()) {
                JournalError::BadHeader { reason, .. } => {
                    assert!(reason.contains(needle), "{name}: {reason}")
                }
                other => panic!("{name}: expected bad header, got {other}"),
            }
        }
    }
}
