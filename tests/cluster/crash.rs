//! Nodes dying and arriving: `kill -9` of a node in the middle of a message storm loses nothing
//! that was acknowledged or delivered, and the node comes back serving the same seqs; a node
//! started on an empty data directory catches up and serves everything; the epoch is the
//! cluster's, the same on every node and across restarts.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::{
    assert_error, epoch, hello_last_seq, kept, me, same_history_everywhere, within, Cluster, SLOW,
};

/// Messages a sender keeps unacknowledged at once.
const WINDOW: usize = 8;
/// At most this many messages a sender; three senders stay inside the kept history
/// ([`HISTORY`]).
const MAX_SENT: usize = 400;
const HISTORY: &str = "2000";

/// Sends numbered messages over `w`, keeping up to [`WINDOW`] unacknowledged, until `stop`
/// is set or the connection ends. Returns every acknowledgement: seq and text.
async fn storm(
    mut w: Ws,
    room: String,
    prefix: String,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<(u64, String)> {
    let mut acks = Vec::new();
    let mut texts = BTreeMap::new();
    let mut sent = 0;
    loop {
        while texts.len() < WINDOW && sent < MAX_SENT && !stop.load(Ordering::Relaxed) {
            let text = format!("{prefix} {sent}");
            let nonce = format!("{prefix}-{sent}");
            let frame = json!({ "type": "send", "room": room, "text": text, "nonce": nonce });
            if w.inner
                .send(Message::text(frame.to_string()))
                .await
                .is_err()
            {
                return acks;
            }
            texts.insert(nonce, text);
            sent += 1;
        }
        if texts.is_empty() {
            return acks;
        }
        let Some(f) = w.next_within(SLOW).await else {
            return acks;
        };
        if f["type"] == "error" {
            panic!("{prefix}: {f}");
        }
        let Some(nonce) = f["nonce"].as_str().filter(|_| f["type"] == "entry") else {
            continue;
        };
        let text = texts.remove(nonce).expect("an ack of a message sent");
        assert_eq!(f["text"], text.as_str(), "{f}");
        acks.push((seq(&f), text));
        acked.fetch_add(1, Ordering::Relaxed);
    }
}

/// Creates rooms through REST on `addr` until `stop` is set or the node is gone. Returns the
/// ids of those answered `201`.
async fn room_storm(addr: SocketAddr, token: String, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut made = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            break;
        };
        let body = json!({ "name": format!("storm {i}") });
        let req = request_bytes("POST", "/api/v1/rooms", Some(&token), Some(&body));
        if stream.write_all(req.as_bytes()).await.is_err() {
            break;
        }
        let Some(r) = read_reply(&mut stream, &mut Vec::new()).await else {
            break;
        };
        assert_eq!(r.status, 201, "{:?}", r.json());
        made.push(r.json()["id"].as_str().expect("id").to_string());
    }
    made
}

/// Every entry of `room` a connection receives until it ends.
async fn observe(mut w: Ws, room: String) -> Vec<Value> {
    let mut entries = Vec::new();
    while let Some(f) = w.next_within(SLOW).await {
        if f["type"] == "entry" && f["room"] == room.as_str() {
            entries.push(as_entry(&f));
        }
    }
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_during_a_storm_loses_nothing_acknowledged() {
    let flags = [
        "--max-owned-rooms",
        "0",
        "--max-rooms-per-user",
        "100000",
        "--history",
        HISTORY,
    ];
    let mut cluster = Cluster::start("storm", 3, &flags).await;
    let addrs: Vec<_> = (0..3).map(|i| cluster.addr(i)).collect();
    let names = ["alice", "bob", "carol"];
    let mut tokens = Vec::new();
    for (i, name) in names.iter().enumerate() {
        tokens.push(user(addrs[i], name).await);
    }
    let dave = user(addrs[1], "dave").await;
    let erin = user(addrs[0], "erin").await;
    let general = room(addrs[1], &tokens[1], "general").await;
    for (addr, token) in [
        (addrs[0], &tokens[0]),
        (addrs[2], &tokens[2]),
        (addrs[1], &dave),
    ] {
        let r = join(addr, token, &general).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
    }
    let (watcher, before) = ws_hello(addrs[0], &dave).await;
    let watcher = tokio::spawn(observe(watcher, general.clone()));
    // Dave also follows the room on node 2, which stays up; read after the storm. (Node 2
    // may apply his join through node 1 a moment later.)
    assert!(
        within(SLOW, || async {
            me(addrs[2], &dave).await.json()["rooms"]
                .as_array()
                .is_some_and(|rooms| rooms.iter().any(|r| r["id"] == general.as_str()))
        })
        .await,
        "node 2 never saw dave join"
    );
    let (mut follower, hello2) = ws_hello(addrs[2], &dave).await;
    let followed_from = hello_last_seq(&hello2, &general);

    // Alice sends through node 0, bob through node 1, carol through node 2.
    let stop = Arc::new(AtomicBool::new(false));
    let mut counts = Vec::new();
    let mut senders = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (w, _) = ws_hello(addrs[i], &tokens[i]).await;
        let acked = Arc::new(AtomicUsize::new(0));
        counts.push(acked.clone());
        senders.push(tokio::spawn(storm(
            w,
            general.clone(),
            name.to_string(),
            acked,
            stop.clone(),
        )));
    }
    // Erin creates rooms through node 0's REST door meanwhile.
    let rooms = tokio::spawn(room_storm(addrs[0], erin.clone(), stop.clone()));
    let progress = |i: usize| counts[i].load(Ordering::Relaxed);
    assert!(
        within(SLOW, || async { progress(0) >= 50 }).await,
        "alice's messages were not acknowledged"
    );
    cluster.kill_9(0);
    let (bob_then, carol_then) = (progress(1), progress(2));
    let went_on = within(SLOW, || async {
        // Each goes on by 50 more, unless it is done before.
        progress(1) >= (bob_then + 50).min(MAX_SENT)
            && progress(2) >= (carol_then + 50).min(MAX_SENT)
    })
    .await;
    if !went_on {
        let mut state = String::new();
        for &addr in &addrs[1..] {
            let metrics = String::from_utf8_lossy(&get(addr, "/metrics", None).await.body)
                .lines()
                .filter(|l| l.contains("cluster"))
                .collect::<Vec<_>>()
                .join("; ");
            state.push_str(&format!("\n{addr}: {metrics}"));
        }
        let held = cluster.nats[0].stream_messages("parley").await;
        panic!(
            "the other nodes stalled after node 0 died: bob {bob_then} -> {}, carol {carol_then} \
             -> {}; the stream holds {held:?} messages{state}",
            progress(1),
            progress(2)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    for sender in senders {
        acks.extend(sender.await.expect("a sender"));
    }
    let delivered = watcher.await.expect("the watcher");
    let created = rooms.await.expect("erin's rooms");
    assert!(
        !created.is_empty(),
        "no room was created before node 0 died"
    );

    // Node 0 comes back on its data directory and serves what the others serve.
    cluster.start_node(0);
    let addrs: Vec<_> = (0..3).map(|i| cluster.addr(i)).collect();
    // The connection on a node that stayed up got every entry, in order, with no gap.
    let frames = frames_until_own(&mut follower, &general, "follower-marker").await;
    let followed: Vec<Value> = frames
        .iter()
        .filter(|f| f["type"] == "entry" && f["room"] == general.as_str())
        .map(as_entry)
        .collect();
    let seqs: Vec<u64> = followed.iter().map(seq).collect();
    let expected: Vec<u64> = (followed_from + 1..).take(seqs.len()).collect();
    assert_eq!(
        seqs, expected,
        "node 2's live entries out of order or with gaps"
    );
    let kept = same_history_everywhere(&addrs, &dave, &general).await;
    let by_seq: BTreeMap<u64, &Value> = kept.iter().map(|e| (seq(e), e)).collect();
    assert_eq!(
        seqs.last().map(|s| s + 1),
        kept.last().map(seq),
        "node 2's connection missed the last entries before its own"
    );
    for e in &followed {
        assert_eq!(
            Some(&e),
            by_seq.get(&seq(e)),
            "node 2 delivered another entry"
        );
    }

    for (s, text) in &acks {
        let e = by_seq
            .get(s)
            .unwrap_or_else(|| panic!("acknowledged seq {s} ({text}) is gone"));
        assert_eq!(e["text"], text.as_str(), "seq {s}");
    }
    for e in &delivered {
        assert_eq!(
            Some(&e),
            by_seq.get(&seq(e)),
            "a delivered entry changed or went"
        );
    }
    let mut texts = HashSet::new();
    for e in kept.iter().filter(|e| e["kind"] == "message") {
        assert!(texts.insert(e["text"].as_str().unwrap()), "twice: {e}");
    }

    // Every room answered 201 exists on every node.
    for &addr in &addrs {
        let rooms = me(addr, &erin).await.json();
        let ids: HashSet<&str> = rooms["rooms"]
            .as_array()
            .expect("erin's rooms")
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        for id in &created {
            assert!(ids.contains(id.as_str()), "room {id} is gone from {addr}");
        }
    }

    // Alice reconnects to node 0 and sees the same room, epoch and last seq.
    let (_, hello) = ws_hello(addrs[0], &tokens[0]).await;
    assert_eq!(epoch(&hello), epoch(&before), "the epoch changed");
    assert_eq!(hello_last_seq(&hello, &general), seq(kept.last().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_empty_data_directory_catches_up() {
    let mut cluster = Cluster::start("catch-up", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let alice = user(n0, "alice").await;
    let bob = user(n1, "bob").await;
    let mallory = user(n1, "mallory").await;
    let general = room(n0, &alice, "general").await;
    assert_eq!(join(n1, &bob, &general).await.status, 200);
    let r = post(
        n0,
        &format!("/api/v1/rooms/{general}/bans"),
        Some(&alice),
        json!({ "username": "mallory" }),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.json());
    let r = post(
        n1,
        "/api/v1/rooms",
        Some(&bob),
        json!({ "name": "den", "visibility": "private", "topic": "bob's" }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let den = r.json()["id"].as_str().unwrap().to_string();
    let (mut a, _) = ws_hello(n0, &alice).await;
    let (mut b, _) = ws_hello(n1, &bob).await;
    for i in 0..30 {
        say_acked(&mut a, &general, &format!("alice {i}")).await;
        say_acked(&mut b, &general, &format!("bob {i}")).await;
    }
    say_acked(&mut b, &den, "private note").await;
    let expected = same_history_everywhere(&[n0, n1], &alice, &general).await;

    // It listens once caught up: everything is there at once.
    let n2 = cluster.start_node(2);
    assert_eq!(
        kept(n2, &alice, &general).await,
        expected,
        "node 2's history of general"
    );
    let r = me(n2, &bob).await;
    assert_eq!(r.status, 200, "bob's token on node 2: {:?}", r.json());
    let mut rooms: Vec<String> = r.json()["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    rooms.sort();
    assert_eq!(rooms, ["den", "general"]);
    let r = get(n2, &format!("/api/v1/rooms/{den}"), Some(&bob)).await;
    assert_eq!(r.json()["topic"], "bob's", "{:?}", r.json());
    assert_error(
        &get(n2, &format!("/api/v1/rooms/{den}"), Some(&alice)).await,
        403,
        "room_restricted",
    );
    assert_error(&join(n2, &mallory, &general).await, 403, "banned");
    let r = login(n2, "alice", PASSWORD).await;
    assert_eq!(r.status, 200, "login on node 2: {:?}", r.json());
    let (hist, _) = history(n2, &bob, &den).await;
    assert_eq!(hist.last().unwrap()["text"], "private note");

    // And it takes part from then on, both ways.
    let (mut b2, _) = ws_hello(n2, &bob).await;
    let ack = say_acked(&mut a, &general, "welcome, node 2").await;
    let got = b2
        .next_where("entry", |f| {
            f["room"] == general.as_str() && f["kind"] == "message"
        })
        .await;
    assert_eq!(as_entry(&got), as_entry(&ack));
    let ack = say_acked(&mut b2, &general, "thanks").await;
    let got = a
        .next_where("entry", |f| {
            f["room"] == general.as_str() && f["text"] == "thanks"
        })
        .await;
    assert_eq!(as_entry(&got), as_entry(&ack));
}

/// The `epoch` of a new connection's `hello`.
async fn epoch_at(addr: SocketAddr, token: &str) -> String {
    epoch(&ws_hello(addr, token).await.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_epoch_is_the_same_on_every_node_and_across_restarts() {
    let mut cluster = Cluster::start("epoch", 2, &[]).await;
    let alice = user(cluster.addr(0), "alice").await;
    let general = room(cluster.addr(0), &alice, "general").await;
    let (mut w, hello) = ws_hello(cluster.addr(0), &alice).await;
    let first = epoch(&hello);
    let last = seq(&say_acked(&mut w, &general, "before the restarts").await);
    drop(w);
    assert_eq!(
        epoch_at(cluster.addr(1), &alice).await,
        first,
        "node 1's epoch"
    );

    cluster.kill_9(0);
    cluster.start_node(0);
    assert_eq!(
        epoch_at(cluster.addr(0), &alice).await,
        first,
        "node 0's epoch after kill -9"
    );

    cluster.stop_node(1).await;
    cluster.start_node(1);
    let (_, hello) = ws_hello(cluster.addr(1), &alice).await;
    assert_eq!(epoch(&hello), first, "node 1's epoch after a clean restart");
    assert_eq!(hello_last_seq(&hello, &general), last);

    cluster.start_node(2);
    let (_, hello) = ws_hello(cluster.addr(2), &alice).await;
    assert_eq!(epoch(&hello), first, "a new node's epoch");
    assert_eq!(hello_last_seq(&hello, &general), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_kill_9_of_every_node_and_a_nats_restart() {
    let mut cluster = Cluster::start("all-down", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    let (mut a, hello) = ws_hello(n0, &alice).await;
    let (mut b, _) = ws_hello(n1, &bob).await;
    for i in 0..10 {
        say_acked(&mut a, &general, &format!("alice {i}")).await;
        say_acked(&mut b, &general, &format!("bob {i}")).await;
    }
    let before = same_history_everywhere(&[n0, n1], &alice, &general).await;
    drop((a, b));

    cluster.kill_9(0);
    cluster.kill_9(1);
    cluster.nats[0].stop();
    cluster.nats[0].start().await;
    let n0 = cluster.start_node(0);
    let n1 = cluster.start_node(1);

    assert_eq!(kept(n0, &alice, &general).await, before);
    assert_eq!(kept(n1, &bob, &general).await, before);
    let r = me(n1, &alice).await;
    assert_eq!(r.status, 200, "alice's session: {:?}", r.json());
    let (mut a, again) = ws_hello(n1, &alice).await;
    assert_eq!(epoch(&again), epoch(&hello), "the epoch changed");
    let ack = say_acked(&mut a, &general, "still here").await;
    assert_eq!(seq(&ack), seq(before.last().unwrap()) + 1);
}
