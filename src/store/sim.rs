//! The deterministic simulation's journal (`crate::sim`): records kept in memory in the order
//! they were appended, framed like the real journal's (length, checksum, payload), with the
//! faults the simulation injects.
//!
//! An append is not acknowledged at once: its `done` waits in a queue until the simulation
//! calls [`SimLog::deliver`], as the real journal acknowledges on its delivery thread, never
//! under the caller's locks. A fault decides an append's fate instead:
//! - [`Fault::Full`]: the store refuses places (`reserve` fails with `Full`), as a journal
//!   whose writes are behind does, until [`SimLog::drain`];
//! - [`Fault::Fail`]: the next record is not written and `done(false)` runs (the write
//!   failed); the log then refuses every place until the next crash, as a failed journal does;
//! - [`Fault::Torn`]: the next record's bytes are cut short and `done(false)` runs: the crash
//!   the simulation makes next finds a torn last record, which recovery cuts off.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::journal::{Done, Refused};

/// A fault to inject into the next append (or, for `Full`, into every reservation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Full,
    Fail,
    Torn,
}

#[derive(Default)]
struct Inner {
    /// Frames end to end: length (u32 LE), the first 4 bytes of the payload's SHA-256, payload.
    bytes: Vec<u8>,
    /// Records framed since the last recovery or compaction.
    records: u64,
    /// Acknowledgements waiting for [`SimLog::deliver`], in append order.
    waiting: VecDeque<(Done, bool)>,
    /// Places are refused until the next recovery (a failed journal).
    refusing: bool,
    /// Places are refused until `drain` (a full journal).
    full: bool,
    /// The fate of the next append.
    next: Option<Fault>,
    /// Bytes appended in total, for the cut of a torn record.
    appended: u64,
}

/// The simulated journal, shared by the store of the live core and the simulation.
#[derive(Default)]
pub struct SimLog {
    inner: Mutex<Inner>,
}

/// A place taken in the simulated journal.
pub struct SimPlace(Arc<SimLog>);

/// What recovery read from the log.
#[derive(Debug, Default)]
pub struct SimRecovery {
    pub records: Vec<Vec<u8>>,
    /// Bytes of a torn last record that were cut off.
    pub torn_bytes: usize,
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload)[..4]);
    out.extend_from_slice(payload);
}

impl SimLog {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn reserve(self: &Arc<Self>) -> Result<SimPlace, Refused> {
        let inner = self.lock();
        if inner.refusing {
            return Err(Refused::Failed);
        }
        if inner.full {
            return Err(Refused::Full);
        }
        drop(inner);
        Ok(SimPlace(self.clone()))
    }

    /// Injects `fault` (see the module's comment).
    pub fn inject(&self, fault: Fault) {
        let mut inner = self.lock();
        match fault {
            Fault::Full => inner.full = true,
            _ => inner.next = Some(fault),
        }
    }

    /// Whether the log failed (and refuses places until the next recovery).
    pub fn refusing(&self) -> bool {
        self.lock().refusing
    }

    /// A full log has written what it held: it takes places again.
    pub fn drain(&self) {
        self.lock().full = false;
    }

    /// Runs the waiting acknowledgements, oldest first, on the caller's thread (holding no
    /// lock of the log); returns whether there were any.
    pub fn deliver(&self) -> bool {
        let mut any = false;
        loop {
            let Some((done, ok)) = self.lock().waiting.pop_front() else {
                return any;
            };
            any = true;
            done(ok);
        }
    }

    /// Records appended since the last recovery or compaction.
    pub fn len(&self) -> u64 {
        self.lock().records
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the log holds.
    pub fn bytes(&self) -> usize {
        self.lock().bytes.len()
    }

    fn append(&self, payload: Vec<u8>, done: Done) {
        let mut inner = self.lock();
        match inner.next.take() {
            // A failed journal writes nothing more, even in places taken before it failed.
            None if inner.refusing => inner.waiting.push_back((done, false)),
            None => {
                frame(&mut inner.bytes, &payload);
                inner.records += 1;
                inner.appended += payload.len() as u64;
                inner.waiting.push_back((done, true));
            }
            Some(Fault::Fail) | Some(Fault::Full) => {
                inner.refusing = true;
                inner.waiting.push_back((done, false));
            }
            Some(Fault::Torn) => {
                let mut framed = Vec::new();
                frame(&mut framed, &payload);
                // At least one byte is missing, at least one is there.
                let keep = 1 + (inner.appended as usize % (framed.len() - 1));
                inner.bytes.extend_from_slice(&framed[..keep]);
                inner.refusing = true;
                inner.waiting.push_back((done, false));
            }
        }
    }

    /// Reads every whole record, as a restart does, and cuts a torn last record off (it was
    /// never acknowledged); a damaged record followed by more bytes is an error. The log
    /// accepts changes again afterwards, and forgets waiting acknowledgements (their core
    /// is gone).
    pub fn recover(&self) -> Result<SimRecovery, String> {
        let mut inner = self.lock();
        let out = read(&inner.bytes)?;
        let keep = inner.bytes.len() - out.torn_bytes;
        inner.bytes.truncate(keep);
        inner.records = out.records.len() as u64;
        inner.refusing = false;
        inner.full = false;
        inner.next = None;
        inner.waiting.clear();
        Ok(out)
    }

    /// The whole records the log holds, as [`SimLog::recover`] reads them, changing nothing.
    pub fn read(&self) -> Result<SimRecovery, String> {
        read(&self.lock().bytes)
    }

    /// Replaces the whole log with `records` (a compaction: the snapshot replaces the journal).
    pub fn replace(&self, records: impl Iterator<Item = Vec<u8>>) {
        let mut bytes = Vec::new();
        let mut n = 0;
        for r in records {
            frame(&mut bytes, &r);
            n += 1;
        }
        let mut inner = self.lock();
        inner.bytes = bytes;
        inner.records = n;
    }
}

fn read(bytes: &[u8]) -> Result<SimRecovery, String> {
    let mut out = SimRecovery::default();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let whole = rest.len() >= 8 && {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest.len() >= 8 + len && {
                let payload = &rest[8..8 + len];
                if Sha256::digest(payload)[..4] != rest[4..8] {
                    return Err(format!("record at byte {at} fails its checksum"));
                }
                out.records.push(payload.to_vec());
                at += 8 + len;
                true
            }
        };
        if !whole {
            out.torn_bytes = rest.len();
            break;
        }
    }
    Ok(out)
}

impl SimPlace {
    pub fn append(self, record: Vec<u8>, done: Done) {
        self.0.append(record, done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Done {
        Box::new(|_| {})
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_the_log_goes_on_after_it() {
        let log = Arc::new(SimLog::default());
        log.reserve().unwrap().append(b"one".to_vec(), ok());
        log.inject(Fault::Torn);
        log.reserve().unwrap().append(b"two".to_vec(), ok());
        assert!(log.reserve().is_err(), "a torn write fails the log");
        let found = log.recover().unwrap();
        assert_eq!(found.records, vec![b"one".to_vec()]);
        assert!(found.torn_bytes > 0);
        log.reserve().unwrap().append(b"three".to_vec(), ok());
        let found = log.recover().unwrap();
        assert_eq!(found.records, vec![b"one".to_vec(), b"three".to_vec()]);
        assert_eq!(found.torn_bytes, 0);
    }

    #[test]
    fn a_failed_write_is_not_kept_and_is_not_acknowledged() {
        let log = Arc::new(SimLog::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        log.inject(Fault::Fail);
        let s = seen.clone();
        log.reserve().unwrap().append(
            b"x".to_vec(),
            Box::new(move |ok| s.lock().unwrap().push(ok)),
        );
        assert!(seen.lock().unwrap().is_empty(), "not before deliver");
        assert!(log.deliver());
        assert_eq!(*seen.lock().unwrap(), vec![false]);
        assert!(log.recover().unwrap().records.is_empty());
    }
}
