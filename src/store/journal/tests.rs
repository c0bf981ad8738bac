//! Tests of the journal as a whole: the public API end to end, closing from inside a `done`,
//! and a real `kill -9` of a child process mid-stream.

use std::io;
use std::sync::mpsc;
use std::time::Duration;

use super::test_support::{append_wait, lock_is_free, open, record, TestDir};
use super::{FsyncPolicy, Journal, JournalConfig, Refused, QUEUE_CAPACITY};

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Journal>();
}

#[test]
fn fsync_policy_parses_flag_values() {
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ] {
        assert_eq!(policy.to_string().parse::<FsyncPolicy>(), Ok(policy));
    }
    assert!("sometimes".parse::<FsyncPolicy>().is_err());
}

#[test]
fn append_then_reopen_round_trips() {
    let dir = TestDir::new("roundtrip");
    let (journal, recovered) = open(dir.config());
    assert!(recovered.snapshot.is_none() && recovered.records.is_empty());
    let expected: Vec<Vec<u8>> = (0..500).map(record).chain([Vec::new()]).collect();
    for rec in &expected[..expected.len() - 1] {
        journal.append(rec.clone(), None);
    }
    append_wait(&journal, Vec::new());
    assert_eq!(journal.stats().records, expected.len() as u64);
    journal.close();
    assert!(lock_is_free(&dir.0));

    let (journal, recovered) = open(dir.config());
    assert_eq!(recovered.records, expected);
    assert!(recovered.truncated_tail.is_none());
    append_wait(&journal, b"after reopen".to_vec());
    journal.close();
    let (_journal, recovered) = open(dir.config());
    assert_eq!(recovered.records.len(), expected.len() + 1);
    assert_eq!(
        recovered.records.last().map(Vec::as_slice),
        Some(&b"after reopen"[..])
    );
}

#[test]
fn close_from_a_done_does_not_deadlock() {
    let dir = TestDir::new("close-in-done");
    let (journal, _) = open(dir.config());
    let handle = journal.clone();
    let (tx, rx) = mpsc::channel();
    journal.append(
        record(0),
        Some(Box::new(move |_| {
            handle.close();
            let _ = tx.send(());
        })),
    );
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    journal.close();
    let (_journal, recovered) = open(dir.config());
    assert_eq!(recovered.records, vec![record(0)]);
}

/// When deliveries fall behind, places run out and `reserve` refuses at once instead of
/// blocking the caller; they come back as acknowledgements run.
#[test]
fn reserve_refuses_when_every_place_is_taken_and_recovers() {
    let dir = TestDir::new("full");
    let (journal, _) = open(dir.config());
    // The first acknowledgement blocks the delivery thread until released.
    let (release, blocked) = mpsc::channel::<()>();
    let (started, has_started) = mpsc::channel::<()>();
    journal.reserve().expect("a place").append(
        record(0),
        Some(Box::new(move |_| {
            let _ = started.send(());
            let _ = blocked.recv_timeout(Duration::from_secs(30));
        })),
    );
    has_started.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut taken = 1;
    let refused = loop {
        match journal.reserve() {
            Ok(place) => {
                place.append(b"x".to_vec(), None);
                taken += 1;
            }
            Err(e) => break e,
        }
        assert!(taken <= QUEUE_CAPACITY, "more places than the capacity");
    };
    assert_eq!(refused, Refused::Full);
    assert_eq!(taken, QUEUE_CAPACITY);
    // Once the delivery thread goes on, the places come back.
    drop(release);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while journal.reserve().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "places never came back"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    append_wait(&journal, record(1));
    assert_eq!(journal.stats().records, QUEUE_CAPACITY as u64 + 1);
}

const CHILD_DIR_ENV: &str = "PARLEY_JOURNAL_KILL_TEST_DIR";

/// The child half of `kill_9_keeps_every_acknowledged_record`; does nothing in a normal run.
#[test]
fn kill_9_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let cfg = JournalConfig {
        fsync: FsyncPolicy::Never,
        ..JournalConfig::new(dir)
    };
    let (journal, _) = open(cfg);
    // Bounded, so a parent that dies early cannot leave this filling the disk.
    for i in 0..2_000_000u64 {
        journal.append(
            i.to_string().into_bytes(),
            Some(Box::new(move |_| println!("ack {i}"))),
        );
    }
}

/// Runs a child process that appends as fast as it can, SIGKILLs it mid-stream, and checks
/// that every record it saw acknowledged is recovered, in order, with nothing invented.
#[test]
#[cfg(target_os = "linux")]
fn kill_9_keeps_every_acknowledged_record() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = TestDir::new("kill9");
    let exe = std::env::current_exe().unwrap();
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill(); // SIGKILL
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(exe)
            .args(["kill_9_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, &dir.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // libtest prints "test ... " without a newline before the child's first line.
    let ack = |line: io::Result<String>| -> Option<u64> {
        line.ok()?.rsplit_once("ack ")?.1.parse().ok()
    };
    let mut lines = io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    for line in lines.by_ref() {
        acked.extend(ack(line));
        if acked.len() == 20_000 {
            break;
        }
    }
    drop(child); // SIGKILL mid-stream, and reap it
    acked.extend(lines.filter_map(ack));
    assert!(acked.len() >= 20_000, "child stopped early");
    // The child died holding the lock; the kernel released its flock, so open succeeds.
    let (_journal, recovered) = open(dir.config());
    let recovered: Vec<u64> = recovered
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(r).parse().unwrap())
        .collect();
    assert!(
        acked.iter().copied().eq(0..acked.len() as u64),
        "acks in order"
    );
    assert!(
        recovered.iter().copied().eq(0..recovered.len() as u64),
        "recovered records in order, none invented"
    );
    assert!(
        recovered.len() >= acked.len(),
        "{} acknowledged but only {} recovered",
        acked.len(),
        recovered.len()
    );
}
