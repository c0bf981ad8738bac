//! The records a snapshot is made of, as bytes. Most are JSON [`Record`]s, one per user,
//! session or room; a room's kept entries follow its record in binary batches (a kept entry
//! is already bytes, so writing and reading one is a copy, not a parse), which is what makes
//! a snapshot of a million entries quick to write and to read back.
//!
//! Batch layout: tag `0x01`, room id length (u8), room id, entry count (u32 LE), then per entry
//! its length (u32 LE) and its [`KeptEntry`] bytes. A payload starting with `[` is a whole
//! format-1 snapshot (one JSON array of records), still read.

use super::record::{KeptEntry, Record};

const KEPT_BATCH: u8 = 1;

/// Kept entries per batch record: about 200 KB for 100-byte messages.
pub const BATCH_ENTRIES: usize = 1000;

/// A JSON record.
pub fn encode(rec: &Record) -> Vec<u8> {
    serde_json::to_vec(rec).unwrap_or_default()
}

/// A batch of a room's kept entries, oldest first.
pub fn encode_kept(room: &str, entries: &[KeptEntry]) -> Vec<u8> {
    let room = &room.as_bytes()[..room.len().min(255)];
    let size: usize = entries.iter().map(|e| 4 + e.as_bytes().len()).sum();
    let mut out = Vec::with_capacity(6 + room.len() + size);
    out.push(KEPT_BATCH);
    out.push(room.len() as u8);
    out.extend_from_slice(room);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&(e.as_bytes().len() as u32).to_le_bytes());
        out.extend_from_slice(e.as_bytes());
    }
    out
}

/// Snapshot records laid end to end, each after its length (u32 LE), in chunks of at most
/// `chunk_bytes` (a record larger than that has a chunk of its own): cluster mode's snapshots,
/// in JetStream and in the data directory.
pub fn frame(records: impl Iterator<Item = Vec<u8>>, chunk_bytes: usize) -> Vec<Vec<u8>> {
    let mut chunks = vec![Vec::new()];
    for rec in records {
        let last = chunks.last_mut().expect("one chunk");
        if !last.is_empty() && last.len() + 4 + rec.len() > chunk_bytes {
            chunks.push(Vec::new());
        }
        let last = chunks.last_mut().expect("one chunk");
        last.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        last.extend_from_slice(&rec);
    }
    chunks
}

/// Reads the records of one chunk [`frame`] made into `apply`.
pub fn unframe(mut chunk: &[u8], apply: &mut dyn FnMut(Record)) -> Result<(), String> {
    while !chunk.is_empty() {
        let len = chunk
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("a snapshot record's length is cut short")?;
        let rec = chunk
            .get(4..4 + len)
            .ok_or("a snapshot record is cut short")?;
        decode(rec, apply)?;
        chunk = &chunk[4 + len..];
    }
    Ok(())
}

/// Reads one snapshot record into `apply`.
pub fn decode(payload: &[u8], apply: &mut dyn FnMut(Record)) -> Result<(), String> {
    match payload.first() {
        Some(b'{') => {
            let rec = serde_json::from_slice(payload)
                .map_err(|e| format!("snapshot record is unreadable: {e}"))?;
            apply(rec);
        }
        Some(b'[') => {
            let recs: Vec<Record> = serde_json::from_slice(payload)
                .map_err(|e| format!("snapshot is unreadable: {e}"))?;
            recs.into_iter().for_each(apply);
        }
        Some(&KEPT_BATCH) => apply(decode_kept(payload).ok_or("malformed batch of kept entries")?),
        _ => return Err("unknown snapshot record".into()),
    }
    Ok(())
}

fn decode_kept(payload: &[u8]) -> Option<Record> {
    let room_len = *payload.get(1)? as usize;
    let room = std::str::from_utf8(payload.get(2..2 + room_len)?).ok()?;
    let mut pos = 2 + room_len;
    let count = u32::from_le_bytes(payload.get(pos..pos + 4)?.try_into().ok()?) as usize;
    pos += 4;
    let mut entries = Vec::with_capacity(count.min(BATCH_ENTRIES * 4));
    for _ in 0..count {
        let len = u32::from_le_bytes(payload.get(pos..pos + 4)?.try_into().ok()?) as usize;
        pos += 4;
        entries.push(KeptEntry::from_bytes(payload.get(pos..pos + len)?)?);
        pos += len;
    }
    (pos == payload.len()).then(|| Record::KeptEntries {
        room: room.to_string(),
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EntryKind;

    fn collect(payload: &[u8]) -> Result<Vec<Record>, String> {
        let mut out = Vec::new();
        decode(payload, &mut |r| out.push(r))?;
        Ok(out)
    }

    #[test]
    fn batches_and_records_read_back() {
        let entries: Vec<KeptEntry> = (0..5)
            .map(|i| KeptEntry::new(i, EntryKind::Message, "al", Some(&format!("m{i}")), None))
            .collect();
        let got = collect(&encode_kept("room1", &entries)).unwrap();
        assert_eq!(
            got,
            vec![Record::KeptEntries {
                room: "room1".into(),
                entries: entries.clone()
            }]
        );
        let rec = Record::Epoch { epoch: "e".into() };
        assert_eq!(collect(&encode(&rec)).unwrap(), vec![rec.clone()]);
        let legacy = serde_json::to_vec(&vec![rec.clone(), Record::Stopped]).unwrap();
        assert_eq!(collect(&legacy).unwrap(), vec![rec, Record::Stopped]);
    }

    #[test]
    fn damaged_batches_are_refused() {
        let entries = vec![KeptEntry::new(1, EntryKind::Join, "al", None, None)];
        let good = encode_kept("r", &entries);
        for cut in 1..good.len() {
            assert!(collect(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(collect(&extra).is_err());
        assert!(collect(b"\x07junk").is_err());
    }

    #[test]
    fn framed_records_read_back_from_their_chunks_and_a_cut_chunk_is_refused() {
        let recs: Vec<Record> = (0..10)
            .map(|i| Record::Epoch {
                epoch: "e".repeat(i * 10),
            })
            .collect();
        let chunks = frame(recs.iter().map(encode), 64);
        assert!(chunks.len() > 1, "{} chunks", chunks.len());
        let mut back = Vec::new();
        for chunk in &chunks {
            unframe(chunk, &mut |r| back.push(r)).unwrap();
        }
        assert_eq!(back, recs);
        let whole = frame(recs.iter().map(encode), usize::MAX).concat();
        assert_eq!(
            frame(recs.iter().map(encode), usize::MAX),
            vec![whole.clone()]
        );
        let ends: Vec<usize> = recs
            .iter()
            .map(encode)
            .scan(0, |at, r| {
                *at += 4 + r.len();
                Some(*at)
            })
            .collect();
        // A chunk cut between two records reads as whole records; cut anywhere else, it is
        // refused.
        for cut in 1..whole.len() {
            let read = unframe(&whole[..cut], &mut |_| {});
            assert_eq!(read.is_ok(), ends.contains(&cut), "cut at {cut}");
        }
    }
}
