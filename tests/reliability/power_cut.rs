//! A power cut: the server was killed without a clean stop and the machine rebooted since, so
//! under `--fsync interval` the journal may lack acknowledged records or hold damaged ones.
//! The server cuts the journal at the first damaged record, starts, and tells clients through
//! a new `epoch` that seqs were lost. Where nothing acknowledged can have been lost (the same
//! boot, or a run that fsynced every batch), damage is refused as before.
//!
//! The reboot is simulated: the journal's last `started` record gets another boot id (and a
//! recomputed checksum), as if `/proc/sys/kernel/random/boot_id` had changed since.

use std::fs;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::common::journal::{
    crc32c, journal_files, payload, record_spans, replace_record, stored_crc, RECORD_HEADER,
};
use crate::common::process::{launch, refused, start, Launch, TempDir};
use crate::common::*;

/// A data directory after a crash, a reboot and a damaged record.
struct Damaged {
    _tmp: TempDir,
    data: PathBuf,
    journal: PathBuf,
    /// The journal as the test left it.
    damaged: Vec<u8>,
    /// Start and end of the damaged record, and the offset of the flipped byte.
    target: (usize, usize),
    flipped_at: usize,
    /// History before the crash, and the seq of the damaged entry.
    before: Vec<Value>,
    damaged_seq: u64,
    alice: String,
    general: String,
    epoch: String,
}

/// Another boot id of the same shape.
fn another_boot_id(old: &str) -> String {
    let new: String = old
        .chars()
        .map(|c| match c {
            '-' => '-',
            '0' => '1',
            _ => '0',
        })
        .collect();
    if new.is_empty() {
        "00000000-0000-4000-8000-000000000000".into()
    } else {
        new
    }
}

/// Posts 20 notes under `--fsync FSYNC`, kills the server with SIGKILL, pretends the machine
/// rebooted, and flips one byte in the middle of note 10's record (notes 11 to 19 follow it).
async fn crash_reboot_and_damage(name: &str, fsync: &str) -> Damaged {
    let tmp = TempDir::new(name);
    let data = tmp.data();
    let mut server = start(&data, &["--fsync", fsync]);
    let alice = user(server.addr, "alice").await;
    let general = room(server.addr, &alice, "general").await;
    let (mut ws, hello) = ws_hello(server.addr, &alice).await;
    let epoch = hello["epoch"].as_str().expect("epoch").to_string();
    for i in 0..20 {
        say_acked(&mut ws, &general, &format!("note {i}")).await;
    }
    let (before, _) = history(server.addr, &alice, &general).await;
    assert_eq!(before.len(), 21, "a join and 20 notes");
    drop(ws);
    server.kill_9();

    let journal = journal_files(&data).pop().expect("a journal file");
    let original = fs::read(&journal).unwrap();
    let spans = record_spans(&original);
    for &span in &spans {
        let mut covered = original[span.0..span.0 + 4].to_vec();
        covered.extend_from_slice(&original[span.0 + RECORD_HEADER..span.1]);
        assert_eq!(
            crc32c(&covered),
            stored_crc(&original, span),
            "the test's CRC32C disagrees with the journal's at offset {}",
            span.0
        );
    }

    // The reboot: the last start recorded another boot id.
    let (i, &started) = spans
        .iter()
        .enumerate()
        .rev()
        .find(|(_, &span)| payload(&original, span)["t"] == "started")
        .expect("a started record");
    let mut rec = payload(&original, started);
    assert_eq!(rec["fsync"], fsync, "{rec}");
    let rebooted = another_boot_id(rec["boot_id"].as_str().expect("boot_id"));
    rec["boot_id"] = json!(rebooted);
    let bytes = replace_record(&original, started, &rec);
    let spans = record_spans(&bytes);
    assert_eq!(payload(&bytes, spans[i])["boot_id"], rebooted.as_str());

    // The damage: one flipped bit in the middle of note 10's record.
    let target = *spans
        .iter()
        .find(|&&span| payload(&bytes, span)["text"] == "note 10")
        .expect("the record of note 10");
    assert!(
        spans
            .iter()
            .any(|&span| span.0 > target.0 && payload(&bytes, span)["text"] == "note 19"),
        "valid records follow the damaged one"
    );
    let damaged_seq = payload(&bytes, target)["seq"].as_u64().expect("seq");
    let flipped_at = target.0 + RECORD_HEADER + (target.1 - target.0 - RECORD_HEADER) / 2;
    let mut damaged = bytes;
    damaged[flipped_at] ^= 0x01;
    fs::write(&journal, &damaged).unwrap();
    Damaged {
        _tmp: tmp,
        data,
        journal,
        damaged,
        target,
        flipped_at,
        before,
        damaged_seq,
        alice,
        general,
        epoch,
    }
}

impl Damaged {
    /// The damaged journal's file name, as the server's messages give it.
    fn journal_name(&self) -> String {
        self.journal
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

/// Whether one line of `stderr` names `file` and, besides, a number within `offsets`.
fn names_file_and_offset(stderr: &str, d: &Damaged, offsets: RangeInclusive<usize>) -> bool {
    let file = d.journal_name();
    let dir = d.data.display().to_string();
    stderr.lines().filter(|l| l.contains(&file)).any(|line| {
        line.replace(&dir, " ")
            .replace(&file, " ")
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|digits| digits.parse::<usize>().ok())
            .any(|n| offsets.contains(&n))
    })
}

/// After a power cut under `--fsync interval` (the default), a record in the middle of the
/// journal is damaged: the server must cut the journal there and serve, say on stderr which
/// file it cut and at which offset, hand out a new `epoch`, keep the entries before the
/// damaged one, and number the next entry right after them.
///
/// What a user notices when this breaks: after the power comes back the chat server does not
/// start at all ("corrupt journal"), and nobody can chat until an operator edits the journal
/// by hand, although the contract already allows the last second of entries to be lost on
/// power loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_power_cut_a_damaged_journal_is_cut_and_the_server_serves() {
    let d = crash_reboot_and_damage("powercut", "interval").await;
    let server = match launch(&d.data, &[]) {
        Launch::Running(server) => server,
        Launch::Exited { status, stderr } => panic!(
            "after a power cut under --fsync interval the server refused to start ({status}) \
             instead of cutting the journal at the damaged record: {stderr}"
        ),
    };
    let addr = server.addr;
    let file = d.journal_name();
    let stderr = server.stderr_eventually_contains(&file).await;
    assert!(
        names_file_and_offset(&stderr, &d, d.target.0..=d.flipped_at),
        "stderr names the journal file and the offset where it cut ({}..={}): {stderr}",
        d.target.0,
        d.flipped_at
    );

    let (mut ws, hello) = ws_hello(addr, &d.alice).await;
    assert_ne!(
        hello["epoch"],
        d.epoch.as_str(),
        "entries were lost, so clients must forget their seqs: a new epoch"
    );
    let (kept, _) = history(addr, &d.alice, &d.general).await;
    let cut = (d.damaged_seq - 1) as usize;
    assert_eq!(
        kept,
        d.before[..cut],
        "the entries before the damaged one, and none from it on"
    );
    let ack = say_acked(&mut ws, &d.general, "after the power cut").await;
    assert_eq!(
        seq(&ack),
        d.damaged_seq,
        "numbering continues after the cut"
    );
    drop(ws);
    server.stop().await;
}

/// The same power cut and damage, but the run before it used `--fsync always`: every
/// acknowledged record was on disk, so a damaged one may hold something a client was told
/// about. The server must refuse to start, name the file and offset, and leave the journal
/// as it was. (The same damage without a reboot is refused too: see tests/durability.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_power_cut_damage_in_an_fsync_always_journal_is_refused() {
    let d = crash_reboot_and_damage("powercut-always", "always").await;
    let (status, stderr) = refused(&d.data, &[]);
    assert!(!status.success(), "exit status {status}");
    assert!(
        names_file_and_offset(&stderr, &d, d.target.0..=d.flipped_at),
        "stderr names the journal file and the damaged record's offset ({}..={}): {stderr}",
        d.target.0,
        d.flipped_at
    );
    assert_eq!(
        fs::read(&d.journal).unwrap(),
        d.damaged,
        "a refused start leaves the journal as it was"
    );
}
