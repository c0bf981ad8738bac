//! A copy of the data directory taken with `cp -a` while the server keeps writing is a
//! valid backup: a server started on the copy recovers everything acknowledged before the
//! copy began.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::process::{start, TempDir};
use common::{history, room, say_acked, user, ws_hello};
use std::process::Command;

/// Copies `data` with `cp -a` while a writer keeps posting acknowledged messages, then
/// checks a server on the copy has every message acknowledged before the copy began.
async fn backup_while_writing(name: &str, flags: &[&str]) {
    let tmp = TempDir::new(name);
    let data = tmp.data();
    let mut all_flags = vec!["--history", "100000"];
    all_flags.extend_from_slice(flags);
    let server = start(&data, &all_flags);
    let alice = user(server.addr, "alice").await;
    let general = room(server.addr, &alice, "general").await;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (addr, token, room, acked, stop) = (
            server.addr,
            alice.clone(),
            general.clone(),
            Arc::clone(&acked),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let (mut ws, _) = ws_hello(addr, &token).await;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let text = format!("backup line {i}");
                say_acked(&mut ws, &room, &text).await;
                acked.lock().unwrap().push(text);
                i += 1;
            }
        })
    };
    // Let the journal grow, then copy while the writer goes on.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before: Vec<String> = acked.lock().unwrap().clone();
    let copy = tmp.0.join("copy");
    // On a blocking thread: the writer keeps going on the runtime meanwhile.
    let (from, to) = (data.clone(), copy.clone());
    let status = tokio::task::spawn_blocking(move || {
        Command::new("cp").arg("-a").arg(from).arg(to).status()
    })
    .await
    .unwrap()
    .expect("run cp");
    assert!(status.success(), "cp -a failed");
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    drop(server);

    let restored = start(&copy, &["--history", "100000"]);
    let token = common::login(restored.addr, "alice", common::PASSWORD)
        .await
        .json()["token"]
        .as_str()
        .expect("alice can log in on the copy")
        .to_string();
    let (entries, _) = history(restored.addr, &token, &general).await;
    let texts: Vec<&str> = entries.iter().filter_map(|e| e["text"].as_str()).collect();
    assert!(
        texts.len() >= before.len(),
        "{} kept, {} acknowledged before the copy",
        texts.len(),
        before.len()
    );
    assert_eq!(
        texts[..before.len()],
        before.iter().map(String::as_str).collect::<Vec<_>>()[..],
        "every message acknowledged before the copy, in order"
    );
    // Seqs stay consecutive: nothing after the copy's end is half there.
    for pair in entries.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_u64(),
            pair[0]["seq"].as_u64().map(|s| s + 1)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_taken_while_writing_recovers_everything_acknowledged_before_it() {
    backup_while_writing("backup", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_taken_while_compacting_recovers_everything_acknowledged_before_it() {
    backup_while_writing("backup-compacting", &["--compact-bytes", "4096"]).await;
}

/// Snapshots written so far, from `/metrics`.
async fn snapshots(addr: std::net::SocketAddr) -> u64 {
    let text = String::from_utf8(common::get(addr, "/metrics", None).await.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("parley_journal_snapshots "))
        .and_then(|v| v.trim().parse().ok())
        .expect("parley_journal_snapshots")
}

/// The worst order a file-by-file copy can take: the snapshot is read before a compaction
/// replaces it, the journals after the compaction deleted the ones it covered. Those may
/// hold the text of deleted messages, which must not outlive the compaction, so the copy
/// lacks them: a server started on it refuses at once, naming the missing journal, rather
/// than start without acknowledged messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_reads_the_snapshot_before_a_compaction_and_the_journals_after_is_refused() {
    let tmp = TempDir::new("backup-split");
    let data = tmp.data();
    let server = start(&data, &["--history", "100000", "--compact-bytes", "65536"]);
    let alice = user(server.addr, "alice").await;
    let general = room(server.addr, &alice, "general").await;
    let (mut ws, _) = ws_hello(server.addr, &alice).await;
    let mut n = 0;
    let mut say = async || {
        say_acked(&mut ws, &general, &format!("split line {n}")).await;
        n += 1;
    };
    while snapshots(server.addr).await == 0 {
        say().await;
    }
    let copy = tmp.0.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(data.join("snapshot"), copy.join("snapshot")).unwrap();
    let first = snapshots(server.addr).await;
    while snapshots(server.addr).await == first {
        for _ in 0..10 {
            say().await;
        }
    }
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("journal-") {
            std::fs::copy(entry.path(), copy.join(&name)).unwrap();
        }
    }
    drop(server);
    let (status, stderr) = common::process::refused(&copy, &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("missing") && stderr.contains("journal-"),
        "names the missing journal: {stderr}"
    );
}
