//! NATS stopped and started again under running nodes: meanwhile every change answers
//! `503 unavailable` (over WebSocket, error `unavailable`), `/healthz` answers 503, and reads
//! and open connections keep working; once NATS is back the nodes carry on by themselves, with
//! everything acknowledged before still there and nothing refused applied after all.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::common::*;
use crate::{
    answer, assert_error, epoch, kept, me, same_history_everywhere, until_accepted, within,
    Cluster, SLOW,
};

async fn health(addr: SocketAddr) -> u16 {
    get(addr, "/healthz", None).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nats_is_down_changes_are_refused_and_reads_work() {
    let mut cluster = Cluster::start("outage", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    let (mut a, hello) = ws_hello(n0, &alice).await;
    let (mut b, _) = ws_hello(n1, &bob).await;
    let ack = say_acked(&mut a, &general, "before the outage").await;
    b.next_where("entry", |f| f["seq"] == seq(&ack)).await;
    let before = same_history_everywhere(&[n0, n1], &alice, &general).await;

    cluster.nats[0].stop();
    for addr in [n0, n1] {
        assert!(
            within(SLOW, || async { health(addr).await == 503 }).await,
            "{addr} kept answering /healthz with 200 while NATS was down"
        );
    }

    // Changes are refused, through either door and on either node.
    let r = post(
        n0,
        "/api/v1/rooms",
        Some(&alice),
        json!({ "name": "refused room" }),
    )
    .await;
    assert_error(&r, 503, "unavailable");
    let r = leave(n1, &bob, &general).await;
    assert_error(&r, 503, "unavailable");
    let f = answer(&mut a, &general, "refused message", "refused").await;
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{f}"
    );

    // Reads work, on open connections too.
    for (addr, token) in [(n0, &alice), (n1, &bob)] {
        let r = me(addr, token).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        let r = get(addr, &format!("/api/v1/rooms/{general}"), Some(token)).await;
        assert_eq!(r.json()["members"], 2, "{:?}", r.json());
        assert_eq!(kept(addr, token, &general).await, before);
    }
    b.send(json!({ "type": "sync", "room": general, "since": 0 }))
        .await;
    let h = b
        .next_where("history", |f| f["room"] == general.as_str())
        .await;
    let synced: Vec<Value> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(as_entry)
        .collect();
    assert_eq!(synced, before, "sync during the outage");

    // NATS is back: the nodes recover by themselves.
    cluster.nats[0].start().await;
    for addr in [n0, n1] {
        assert!(
            within(SLOW, || async { health(addr).await == 200 }).await,
            "{addr} never reported healthy again"
        );
    }
    let ack = until_accepted(&mut a, &general, "after the outage").await;
    let got = b.next_where("entry", |f| f["seq"] == seq(&ack)).await;
    assert_eq!(
        as_entry(&got),
        as_entry(&ack),
        "bob's open connection on node 1"
    );
    room(n1, &bob, "new room").await;
    let (_, again) = ws_hello(n1, &alice).await;
    assert_eq!(
        epoch(&again),
        epoch(&hello),
        "the epoch changed with a NATS restart"
    );

    // Everything from before is kept; nothing refused was applied after all.
    let after = same_history_everywhere(&[n0, n1], &alice, &general).await;
    assert_eq!(
        after[..before.len()],
        before[..],
        "history before the outage changed"
    );
    assert!(
        after
            .iter()
            .all(|e| e["text"] != "refused message" && e["kind"] != "leave"),
        "a change answered with unavailable was applied later: {after:?}"
    );
    let r = get(n0, "/api/v1/rooms?q=refused", Some(&alice)).await;
    assert_eq!(
        r.json()["rooms"],
        json!([]),
        "the refused room exists after all"
    );
}

/// How one sender fared: the acknowledged messages (seq, text), and how many were refused.
#[derive(Default)]
struct Tally {
    acked: Vec<(u64, String)>,
    refused: usize,
}

/// Posts one message after another over `w` until `stop` is set, each with its own text and
/// nonce, counting acknowledgements and `unavailable` refusals in `tally`.
async fn keep_posting(
    mut w: Ws,
    room: String,
    who: &'static str,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
) {
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let text = format!("{who} {i}");
        let f = answer(&mut w, &room, &text, &text).await;
        let mut tally = tally.lock().unwrap();
        if f["type"] == "entry" {
            tally.acked.push((seq(&f), text));
        } else {
            assert_eq!(f["code"], "unavailable", "{f}");
            tally.refused += 1;
        }
    }
}

/// `kill -9` of the only NATS server in the middle of traffic, and a restart on its store:
/// every acknowledged message is kept with its seq, and traffic resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_of_nats() {
    let mut cluster = Cluster::start("nats-kill", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    let (_, hello) = ws_hello(n0, &alice).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tallies = [
        Arc::new(Mutex::new(Tally::default())),
        Arc::new(Mutex::new(Tally::default())),
    ];
    let mut senders = Vec::new();
    for (i, (addr, token, who)) in [(n0, &alice, "alice"), (n1, &bob, "bob")]
        .into_iter()
        .enumerate()
    {
        let (w, _) = ws_hello(addr, token).await;
        senders.push(tokio::spawn(keep_posting(
            w,
            general.clone(),
            who,
            tallies[i].clone(),
            stop.clone(),
        )));
    }
    let acked = |i: usize| tallies[i].lock().unwrap().acked.len();
    let refused = |i: usize| tallies[i].lock().unwrap().refused;
    assert!(
        within(SLOW, || async { acked(0) >= 30 && acked(1) >= 30 }).await,
        "no traffic before the kill"
    );

    cluster.nats[0].kill();
    assert!(
        within(SLOW, || async { refused(0) >= 1 && refused(1) >= 1 }).await,
        "messages were not refused while NATS was down"
    );
    cluster.nats[0].start().await;
    let (a, b) = (acked(0), acked(1));
    assert!(
        within(SLOW, || async { acked(0) >= a + 10 && acked(1) >= b + 10 }).await,
        "traffic did not resume after NATS came back"
    );
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.expect("a sender");
    }

    let kept = same_history_everywhere(&[n0, n1], &alice, &general).await;
    let by_seq: BTreeMap<u64, &Value> = kept.iter().map(|e| (seq(e), e)).collect();
    for tally in &tallies {
        for (s, text) in &tally.lock().unwrap().acked {
            let e = by_seq
                .get(s)
                .unwrap_or_else(|| panic!("acknowledged seq {s} ({text}) is gone"));
            assert_eq!(e["text"], text.as_str(), "seq {s}");
        }
    }
    let mut texts = HashSet::new();
    for e in kept.iter().filter(|e| e["kind"] == "message") {
        assert!(texts.insert(e["text"].as_str().unwrap()), "twice: {e}");
    }
    let (_, again) = ws_hello(n1, &alice).await;
    assert_eq!(epoch(&again), epoch(&hello), "the epoch changed");
}
