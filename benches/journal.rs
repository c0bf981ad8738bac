//! Journal append throughput for each `--fsync` policy.
//!
//! Appends 1,000,000 message entries (100-byte texts, the fan-out benchmark's size) through
//! the server's own store, as `post` does (a place reserved, the record encoded), from one
//! producer that waits for a place when all are taken, and waits for the last
//! acknowledgement. Then measures append-then-wait round trips, one record
//! at a time, which is what a lone client sees. Run: `cargo bench --bench journal`.
//! `PARLEY_BENCH_RECORDS` overrides the record count.

use std::sync::mpsc;
use std::time::Instant;

use parley::config::FsyncPolicy;
use parley::protocol::EntryKind;
use parley::store::{Done, JournalConfig, KeptEntry, Store};

fn entry(seq: u64) -> Vec<u8> {
    let text = "x".repeat(100);
    let kept = KeptEntry::new(
        1_795_000_000_000 + seq,
        EntryKind::Message,
        "sender-0042",
        Some(&text),
        Some("\"n-1\""),
    );
    let mut out = Vec::with_capacity(256);
    kept.write_record(&mut out, "k3v9x0a2qp", seq);
    out
}

/// Appends like the server does: a place first (waiting while all are taken), then the record.
fn append(store: &Store, record: Vec<u8>, done: Done) {
    loop {
        match store.reserve() {
            Ok(slot) => return slot.append(record, done),
            Err(_) => std::thread::yield_now(),
        }
    }
}

fn main() {
    // `cargo bench -- NAME` runs only the benches whose name contains NAME.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "journal".contains(f.as_str())) {
        return;
    }
    let n: u64 = std::env::var("PARLEY_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("### Journal append throughput ({n} entries of 100-byte text, one producer)\n");
    println!("| fsync | records/s | MiB/s | fsyncs | append-then-wait round trip |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ] {
        let dir = std::env::temp_dir().join(format!(
            "parley-bench-journal-{}-{policy}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = JournalConfig {
            dir: dir.clone(),
            fsync: policy,
            compact_bytes: u64::MAX,
            max_batch_bytes: 1 << 20,
        };
        let store = Store::journal();
        store
            .open(cfg, &mut |_| {}, &|| false)
            .expect("open the journal");
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        for seq in 1..=n {
            let tx = (seq == n).then(|| tx.clone());
            append(
                &store,
                entry(seq),
                Box::new(move |_| {
                    if let Some(tx) = tx {
                        let _ = tx.send(());
                    }
                }),
            );
        }
        rx.recv().expect("the last acknowledgement");
        let secs = start.elapsed().as_secs_f64();
        let (bytes, fsyncs) = store.stats();

        const ROUND_TRIPS: u64 = 2_000;
        let start = Instant::now();
        for seq in 0..ROUND_TRIPS {
            let (tx, rx) = mpsc::channel();
            append(
                &store,
                entry(n + 1 + seq),
                Box::new(move |_| {
                    let _ = tx.send(());
                }),
            );
            rx.recv().expect("acknowledged");
        }
        let per = start.elapsed() / ROUND_TRIPS as u32;
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "| {policy} | {:.0} | {:.1} | {fsyncs} | {per:.1?} |",
            n as f64 / secs,
            bytes as f64 / secs / (1024.0 * 1024.0),
        );
    }
}
