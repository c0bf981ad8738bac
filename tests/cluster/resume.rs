//! A restarted node resumes from the copy of its replica in its data directory and reads only
//! the changes after it from the stream; when that copy cannot serve (the stream no longer
//! holds what came right after it, the stream was made anew, the file is damaged), it starts
//! from the latest snapshot as a new node would, and serves the same state either way.

use std::net::SocketAddr;

use crate::common::*;
use crate::{epoch, me, same_history_everywhere, Cluster, SLOW};

/// The copy of node `i`'s replica, as the data directory holds it for stream `parley`.
fn saved(cluster: &Cluster, i: usize) -> std::path::PathBuf {
    cluster.data(i).join("cluster-parley.snap")
}

/// How node `i` caught up when it last started, from its log: "its data directory" or "the
/// latest snapshot", and the number of changes it then read from the stream.
async fn caught_up_from(cluster: &Cluster, i: usize) -> (String, u64) {
    let said = |log: String| log.lines().any(|l| l.contains("caught up with stream"));
    // The log is read on a thread of its own: it may come a moment after the listening line.
    crate::within(SLOW, || async { said(cluster.stderr(i)) }).await;
    let log = cluster.stderr(i);
    let line = log
        .lines()
        .find(|l| l.contains("caught up with stream"))
        .unwrap_or_else(|| panic!("node {i} never said how it caught up:\n{log}"));
    let from = if line.contains("its data directory at") {
        "its data directory"
    } else if line.contains("the latest snapshot at") {
        "the latest snapshot"
    } else {
        panic!("node {i} caught up from what? {line}")
    };
    let changes = line
        .split("then ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of changes in: {line}"));
    (from.to_string(), changes)
}

/// Says `count` numbered messages in `room` as `token` on `addr`.
async fn say_many(addr: SocketAddr, token: &str, room: &str, label: &str, count: usize) {
    let (mut w, _) = ws_hello(addr, token).await;
    for i in 0..count {
        say_acked(&mut w, room, &format!("{label} {i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_cleanly_resumes_from_its_data_directory() {
    let mut cluster = Cluster::start("resume-clean", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    say_many(n0, &alice, &general, "before", 40).await;
    same_history_everywhere(&[n0, n1], &alice, &general).await;

    cluster.stop_node(0).await;
    assert!(saved(&cluster, 0).exists(), "a clean stop saves the state");
    // What a save cut short by a crash leaves behind is cleared at the next start.
    let half_written = cluster.data(0).join("cluster-parley.snap.4242.tmp");
    std::fs::write(&half_written, vec![0u8; 4096]).unwrap();
    say_many(n1, &bob, &general, "while node 0 was stopped", 5).await;
    let n0 = cluster.start_node(0);
    assert!(
        !half_written.exists(),
        "a half-written save was left behind"
    );
    let (from, changes) = caught_up_from(&cluster, 0).await;
    assert_eq!(from, "its data directory");
    assert!(
        changes < 20,
        "read {changes} changes from the stream, not only the few made while it was stopped"
    );
    let all = same_history_everywhere(&[n0, n1], &alice, &general).await;
    assert_eq!(all.len(), 2 + 40 + 5, "two joins and the messages");
    assert_eq!(me(n0, &bob).await.status, 200, "bob's token on node 0");

    // And it carries on both ways.
    let (mut a, _) = ws_hello(n0, &alice).await;
    let (mut b, _) = ws_hello(n1, &bob).await;
    let ack = say_acked(&mut a, &general, "back").await;
    let got = b.next_where("entry", |f| f["seq"] == seq(&ack)).await;
    assert_eq!(as_entry(&got), as_entry(&ack));
    let ack = say_acked(&mut b, &general, "welcome back").await;
    let got = a.next_where("entry", |f| f["seq"] == seq(&ack)).await;
    assert_eq!(as_entry(&got), as_entry(&ack));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_resumes_from_its_data_directory_without_doubling_anything() {
    // A save every second rather than every 30.
    let mut cluster = Cluster::start("resume-kill", 2, &["--cluster-save-every", "1"]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    let (mut a, _) = ws_hello(n0, &alice).await;
    let deadline = tokio::time::Instant::now() + SLOW;
    let mut i = 0;
    while !saved(&cluster, 0).exists() {
        assert!(tokio::time::Instant::now() < deadline, "no state saved");
        say_acked(&mut a, &general, &format!("alice {i}")).await;
        i += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Some changes after the save, which the restart must read from the stream once.
    for j in 0..30 {
        say_acked(&mut a, &general, &format!("after the save {j}")).await;
    }
    drop(a);
    cluster.kill_9(0);
    say_many(n1, &bob, &general, "while node 0 was down", 10).await;

    let n0 = cluster.start_node(0);
    let (from, changes) = caught_up_from(&cluster, 0).await;
    assert_eq!(from, "its data directory");
    assert!(changes >= 10, "read {changes} changes after its save");
    let all = same_history_everywhere(&[n0, n1], &alice, &general).await;
    assert_eq!(all.len(), 2 + i + 30 + 10, "every message once");
    let seqs: Vec<u64> = all.iter().map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_the_stream_has_moved_past_or_a_damaged_one_gives_way_to_the_latest_snapshot() {
    let mut cluster = Cluster::start("resume-behind", 2, &["--cluster-snapshot-every", "50"]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    say_many(n0, &alice, &general, "before", 10).await;
    cluster.stop_node(0).await;
    assert!(saved(&cluster, 0).exists(), "a clean stop saves the state");

    // Snapshots every 50 changes purge the stream past what node 0 saved.
    say_many(n1, &bob, &general, "while node 0 was stopped", 200).await;
    let purged = || async {
        let held = cluster.nats[0].stream_messages("parley").await;
        held.is_some_and(|n| n < 150)
    };
    assert!(
        crate::within(SLOW, purged).await,
        "the stream was never purged"
    );
    let n0 = cluster.start_node(0);
    let (from, _) = caught_up_from(&cluster, 0).await;
    assert_eq!(from, "the latest snapshot");
    assert!(
        cluster.stderr(0).contains("and the stream now starts at"),
        "the log says why the saved state was not used"
    );
    let all = same_history_everywhere(&[n0, n1], &alice, &general).await;
    assert_eq!(all.len(), 2 + 10 + 200);

    // A damaged copy is not loaded either.
    cluster.stop_node(0).await;
    let path = saved(&cluster, 0);
    let mut bytes = std::fs::read(&path).expect("the saved state");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&path, bytes).expect("damage it");
    say_many(n1, &bob, &general, "after", 3).await;
    let n0 = cluster.start_node(0);
    assert_eq!(caught_up_from(&cluster, 0).await.0, "the latest snapshot");
    assert!(
        cluster.stderr(0).contains("damaged"),
        "the log says the saved state is damaged"
    );
    let all = same_history_everywhere(&[n0, n1], &alice, &general).await;
    assert_eq!(all.len(), 2 + 10 + 200 + 3);

    // Nor is one that checks out but holds a record this version cannot read (a later
    // version's, say): nothing of it is applied, so the snapshot and the stream after it
    // give every entry once.
    cluster.stop_node(0).await;
    unreadable_record_at_the_end(&saved(&cluster, 0));
    let n0 = cluster.start_node(0);
    assert_eq!(caught_up_from(&cluster, 0).await.0, "the latest snapshot");
    assert!(
        cluster.stderr(0).contains("unknown snapshot record"),
        "the log says why:\n{}",
        cluster.stderr(0)
    );
    let all = same_history_everywhere(&[n0, n1], &alice, &general).await;
    assert_eq!(all.len(), 2 + 10 + 200 + 3, "every entry once");
}

/// Appends a record no version reads to the saved state at `path`, and makes its head's
/// length and SHA-256 match, so that only reading it finds the fault.
fn unreadable_record_at_the_end(path: &std::path::Path) {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).expect("the saved state");
    let split = bytes.iter().position(|&b| b == b'\n').expect("a head");
    let mut head: serde_json::Value = serde_json::from_slice(&bytes[..split]).expect("head");
    let mut body = bytes[split + 1..].to_vec();
    body.extend_from_slice(&3u32.to_le_bytes());
    body.extend_from_slice(b"xyz");
    let sha: String = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    head["bytes"] = body.len().into();
    head["sha256"] = sha.into();
    let mut out = serde_json::to_vec(&head).unwrap();
    out.push(b'\n');
    out.extend_from_slice(&body);
    std::fs::write(path, out).expect("write the saved state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_anew_wins_over_the_data_directory_with_a_new_epoch() {
    let mut cluster = Cluster::start("resume-anew", 1, &[]).await;
    let n0 = cluster.addr(0);
    let alice = user(n0, "alice").await;
    let (_, hello) = ws_hello(n0, &alice).await;
    let before = epoch(&hello);
    cluster.stop_node(0).await;
    assert!(saved(&cluster, 0).exists(), "a clean stop saves the state");

    // NATS loses its storage: the log, and everything acknowledged in it, is gone.
    cluster.nats[0].stop();
    cluster.nats[0].lose_store();
    cluster.nats[0].start().await;
    let n0 = cluster.start_node(0);
    assert_eq!(caught_up_from(&cluster, 0).await.0, "the latest snapshot");
    assert!(
        cluster.stderr(0).contains("another stream"),
        "the log says why the saved state was not used"
    );
    // The node serves the stream's state, with the new epoch that tells clients so.
    assert_error(&me(n0, &alice).await, 401, "unauthorized");
    let alice = user(n0, "alice").await;
    let (_, hello) = ws_hello(n0, &alice).await;
    assert_ne!(epoch(&hello), before, "the epoch after the log was lost");
}
