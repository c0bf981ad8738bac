//! Fan-out, ordering, join and leave entries, history on join, `sync` and `hello`.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::Barrier;

use crate::common::*;
use crate::{frames_until_own, next_message, room_with, seqs, sync};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_every_member_connection_and_nobody_else() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let carol = user(s.addr, "carol").await;
    let elsewhere = room(s.addr, &carol, "elsewhere").await;
    let (mut a1, _) = ws_hello(s.addr, &t[0]).await;
    let (mut a2, _) = ws_hello(s.addr, &t[0]).await;
    let (mut b, _) = ws_hello(s.addr, &t[1]).await;
    let (mut c, _) = ws_hello(s.addr, &carol).await;

    a1.say(&id, "hello, all", "n-1").await;
    let mine = next_message(&mut a1).await;
    assert_eq!(mine["room"], json!(id));
    assert_eq!(mine["seq"], 3, "after the two joins: {mine}");
    assert_eq!(mine["from"], "alice");
    assert_eq!(mine["text"], "hello, all");
    assert_eq!(mine["nonce"], "n-1", "the sender's copy is the ack");
    assert!(mine["ts"].as_u64().unwrap() > 1_600_000_000_000, "{mine}");
    for (who, w) in [("alice's other", &mut a2), ("bob", &mut b)] {
        let got = next_message(w).await;
        assert_eq!(got["seq"], 3, "{who}: {got}");
        assert_eq!(got["text"], "hello, all", "{who}");
        assert_eq!(got["ts"], mine["ts"], "{who}: one entry, one ts");
        assert!(got.get("nonce").is_none(), "{who} gets no nonce: {got}");
    }
    // Carol is in no room with alice: nothing of that room reaches her.
    let seen = frames_until_own(&mut c, &elsewhere, "carol-marker").await;
    assert!(
        seen.iter().all(|f| f["room"] != json!(id)),
        "a non-member got traffic: {seen:?}"
    );
    // A message without a nonce gets no nonce on any copy, the sender's included.
    b.send(json!({ "type": "send", "room": id, "text": "plain" }))
        .await;
    for w in [&mut a1, &mut a2, &mut b] {
        let got = next_message(w).await;
        assert_eq!(got["text"], "plain");
        assert!(got.get("nonce").is_none(), "{got}");
    }
    s.stop().await;
}

/// Every message entry one connection receives, as `(seq, from, text)`, plus the nonces on
/// the copies it got.
type Seen = (Vec<(u64, String, String)>, Vec<String>);

async fn collect(w: &mut Ws, n: usize) -> Seen {
    let mut seen = Vec::new();
    let mut nonces = Vec::new();
    while seen.len() < n {
        let f = match w.next().await {
            Some(f) => f,
            None => panic!("the stream stopped after {} messages", seen.len()),
        };
        if f["type"] != "entry" || f["kind"] != "message" {
            continue;
        }
        seen.push((
            f["seq"].as_u64().unwrap(),
            f["from"].as_str().unwrap().to_string(),
            f["text"].as_str().unwrap().to_string(),
        ));
        if let Some(n) = f["nonce"].as_str() {
            nonces.push(n.to_string());
        }
    }
    (seen, nonces)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_are_seen_in_one_gap_free_order_by_everyone() {
    const EACH: usize = 60;
    let names = ["ann", "ben", "cat", "dan"];
    let s = start(&["--rate-limit", "0"]).await;
    let (id, t) = room_with(s.addr, &names).await;
    let total = EACH * names.len();
    // Everyone is connected before anyone speaks: a connection gets what is posted while it
    // is open (and `sync` for the rest).
    let mut clients = Vec::new();
    for token in &t {
        clients.push(ws_hello(s.addr, token).await.0);
    }
    // A connection that only listens sees the same thing.
    let (mut quiet, _) = ws_hello(s.addr, &t[0]).await;
    let start_line = Arc::new(Barrier::new(names.len()));
    let mut tasks = Vec::new();
    for (name, mut w) in names.iter().zip(clients) {
        let (id, name, start_line) = (id.clone(), name.to_string(), start_line.clone());
        tasks.push(tokio::spawn(async move {
            start_line.wait().await;
            for i in 0..EACH {
                w.say(&id, &format!("{name} {i}"), &format!("{name}-{i}"))
                    .await;
            }
            (name, collect(&mut w, total).await)
        }));
    }
    let listener = tokio::spawn(async move { collect(&mut quiet, total).await });

    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.unwrap());
    }
    let (reference, quiet_nonces) = listener.await.unwrap();
    assert!(quiet_nonces.is_empty(), "a listener gets no nonces");
    let first = names.len() as u64 + 1;
    let want: Vec<u64> = (first..first + total as u64).collect();
    let got: Vec<u64> = reference.iter().map(|e| e.0).collect();
    assert_eq!(got, want, "seqs are consecutive, without gaps or repeats");
    for (name, (seen, nonces)) in &all {
        assert_eq!(seen, &reference, "{name} saw another order");
        let mine: Vec<String> = (0..EACH).map(|i| format!("{name}-{i}")).collect();
        assert_eq!(nonces, &mine, "{name}'s acks carry its nonces, in order");
        // Each sender's messages keep their sending order.
        let texts: Vec<&str> = seen
            .iter()
            .filter(|e| &e.1 == name)
            .map(|e| e.2.as_str())
            .collect();
        let sent: Vec<String> = (0..EACH).map(|i| format!("{name} {i}")).collect();
        assert_eq!(texts, sent, "{name}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_leave_are_entries_that_members_and_the_mover_see() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let id = room(s.addr, &alice, "lobby").await;
    let own = room(s.addr, &bob, "bob's own").await;
    let (mut wa, _) = ws_hello(s.addr, &alice).await;
    let (mut wb, _) = ws_hello(s.addr, &bob).await;

    let r = join(s.addr, &bob, &id).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["members"], 2);
    let j = wa.next_where("entry", |_| true).await;
    assert_eq!(
        (&j["room"], &j["seq"], &j["kind"], &j["from"]),
        (&json!(id), &json!(2), &json!("join"), &json!("bob")),
        "{j}"
    );
    assert!(j.get("text").is_none(), "join entries have no text: {j}");
    let joined = wb.next().await.unwrap();
    assert_eq!(
        (&joined["type"], &joined["room"]["id"]),
        (&json!("joined"), &json!(id))
    );
    assert_eq!(joined["room"]["role"], "member");
    let h = wb.next().await.unwrap();
    assert_eq!((&h["type"], &h["room"]), (&json!("history"), &json!(id)));
    let j2 = wb.next().await.unwrap();
    assert_eq!((&j2["type"], &j2["seq"]), (&json!("entry"), &json!(2)));

    wb.say(&id, "hi", "b1").await;
    assert_eq!(next_message(&mut wa).await["seq"], 3);
    assert_eq!(next_message(&mut wb).await["seq"], 3);

    let r = post(
        s.addr,
        &format!("/api/v1/rooms/{id}/leave"),
        Some(&bob),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 204);
    for w in [&mut wa, &mut wb] {
        let l = w.next_where("entry", |_| true).await;
        assert_eq!(
            (&l["seq"], &l["kind"], &l["from"]),
            (&json!(4), &json!("leave"), &json!("bob")),
            "{l}"
        );
    }
    wa.say(&id, "still there?", "a1").await;
    assert_eq!(next_message(&mut wa).await["seq"], 5);
    let seen = frames_until_own(&mut wb, &own, "bob-marker").await;
    assert!(
        seen.iter().all(|f| f["room"] != json!(id)),
        "traffic after leaving: {seen:?}"
    );
    let detail = get(s.addr, &format!("/api/v1/rooms/{id}"), Some(&alice)).await;
    assert_eq!(detail.json()["members"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_sends_the_last_50_entries_to_every_connection_of_the_joiner() {
    let s = start(&["--rate-limit", "0"]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let id = room(s.addr, &alice, "busy").await;
    let (mut wa, _) = ws_hello(s.addr, &alice).await;
    for i in 0..60 {
        wa.say(&id, &format!("m{i}"), &format!("n{i}")).await;
    }
    for _ in 0..60 {
        next_message(&mut wa).await;
    }
    let (mut b1, _) = ws_hello(s.addr, &bob).await;
    let (mut b2, _) = ws_hello(s.addr, &bob).await;
    assert_eq!(join(s.addr, &bob, &id).await.status, 200);
    for b in [&mut b1, &mut b2] {
        let joined = b.next().await.unwrap();
        assert_eq!(
            (&joined["type"], &joined["room"]["id"]),
            (&json!("joined"), &json!(id))
        );
        let h = b.next().await.unwrap();
        assert_eq!((&h["type"], &h["room"]), (&json!("history"), &json!(id)));
        // seq 1 is alice's join, 2..=61 her messages: the last 50 are 12..=61.
        assert_eq!(seqs(&h), (12..=61).collect::<Vec<u64>>());
        let last = h["entries"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            (&last["text"], &last["from"]),
            (&json!("m59"), &json!("alice"))
        );
        let j = b.next().await.unwrap();
        assert_eq!(
            (&j["type"], &j["kind"], &j["seq"]),
            (&json!("entry"), &json!("join"), &json!(62))
        );
    }
    let j = wa.next_where("entry", |_| true).await;
    assert_eq!((&j["kind"], &j["seq"]), (&json!("join"), &json!(62)));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_room_starts_with_its_creators_join_and_a_short_history_is_complete() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let (mut wa, hello) = ws_hello(s.addr, &alice).await;
    assert_eq!(hello["rooms"], json!([]));
    wa.send(json!({ "type": "send", "room": "", "text": "/create den", "nonce": "c" }))
        .await;
    let joined = wa.next().await.unwrap();
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["room"]["role"], "owner", "{joined}");
    let h = wa.next().await.unwrap();
    assert_eq!(h["type"], "history", "{h}");
    assert_eq!((&h["entries"], &h["complete"]), (&json!([]), &json!(true)));
    let id = h["room"].as_str().unwrap().to_string();
    let j = wa.next().await.unwrap();
    assert_eq!(
        (&j["type"], &j["room"], &j["seq"], &j["kind"], &j["from"]),
        (
            &json!("entry"),
            &json!(id),
            &json!(1),
            &json!("join"),
            &json!("alice")
        )
    );
    let reply = wa.next_where("reply", |_| true).await;
    assert_eq!(reply["data"]["id"], json!(id));
    for i in 0..3 {
        wa.say(&id, &format!("m{i}"), &format!("n{i}")).await;
        next_message(&mut wa).await;
    }
    let (mut wb, _) = ws_hello(s.addr, &bob).await;
    wb.send(json!({ "type": "send", "room": "", "text": format!("/join {id}") }))
        .await;
    let joined = wb.next().await.unwrap();
    assert_eq!(joined["type"], "joined", "{joined}");
    // Three messages by alice that bob has not read.
    assert_eq!(
        (&joined["room"]["read_seq"], &joined["room"]["unread"]),
        (&json!(0), &json!(3))
    );
    let h = wb.next().await.unwrap();
    assert_eq!(h["type"], "history", "{h}");
    assert_eq!(seqs(&h), vec![1, 2, 3, 4]);
    assert_eq!(h["complete"], true);
    assert_eq!(h["entries"][3]["text"], "m2");
    let j = wb.next().await.unwrap();
    assert_eq!((&j["kind"], &j["seq"]), (&json!("join"), &json!(5)));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_after_a_reconnect_returns_exactly_the_missed_entries() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    wa.say(&id, "before", "b").await;
    let seen = next_message(&mut wb).await["seq"].as_u64().unwrap();
    assert_eq!(seen, 3);
    wb.inner.close(None).await.unwrap();
    drop(wb);

    for i in 0..5 {
        wa.say(&id, &format!("missed {i}"), &format!("m{i}")).await;
        next_message(&mut wa).await;
    }
    let (mut wb, hello) = ws_hello(s.addr, &t[1]).await;
    assert_eq!(hello["rooms"][0]["last_seq"], 8, "{hello}");
    let h = sync(&mut wb, &id, seen).await;
    assert_eq!(seqs(&h), vec![4, 5, 6, 7, 8]);
    let texts: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["missed 0", "missed 1", "missed 2", "missed 3", "missed 4"]
    );
    assert_eq!(h["complete"], true);
    assert!(h.get("more").is_none_or(|m| m == false), "{h}");
    let h = sync(&mut wb, &id, 8).await;
    assert_eq!((&h["entries"], &h["complete"]), (&json!([]), &json!(true)));

    wa.say(&id, "live", "l").await;
    let live = next_message(&mut wb).await;
    assert_eq!((&live["seq"], &live["text"]), (&json!(9), &json!("live")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_says_incomplete_once_missed_entries_were_trimmed() {
    let s = start(&["--history", "5", "--rate-limit", "0"]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    for i in 0..10 {
        wa.say(&id, &format!("m{i}"), &format!("n{i}")).await;
    }
    for _ in 0..10 {
        next_message(&mut wa).await;
    }
    // seqs 1-2 are the joins, 3..=12 the messages; 5 are kept: 8..=12.
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    let h = sync(&mut wb, &id, 2).await;
    assert_eq!(seqs(&h), vec![8, 9, 10, 11, 12]);
    assert_eq!(h["complete"], false, "seqs 3-7 are gone: {h}");
    let h = sync(&mut wb, &id, 7).await;
    assert_eq!(seqs(&h), vec![8, 9, 10, 11, 12]);
    assert_eq!(h["complete"], true, "everything after 7 is kept: {h}");
    let h = sync(&mut wb, &id, 12).await;
    assert_eq!((&h["entries"], &h["complete"]), (&json!([]), &json!(true)));
    let page = get(s.addr, &format!("/api/v1/rooms/{id}/messages"), Some(&t[1])).await;
    assert_eq!(page.json()["first_seq"], 8);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sync_comes_in_parts_that_add_up_to_everything() {
    let s = start(&["--rate-limit", "0", "--max-outbound-bytes", "65536"]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let text = "x".repeat(1000);
    for i in 0..100 {
        wa.say(&id, &text, &format!("n{i}")).await;
        next_message(&mut wa).await;
    }
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    let (mut since, mut got, mut parts) = (2, Vec::new(), 0);
    loop {
        let h = sync(&mut wb, &id, since).await;
        parts += 1;
        let part = seqs(&h);
        assert!(!part.is_empty(), "a part is never empty: {h}");
        since = *part.last().unwrap();
        got.extend(part);
        if h.get("more") != Some(&json!(true)) {
            break;
        }
        assert!(parts < 100, "sync never finishes");
    }
    assert_eq!(got, (3..=102).collect::<Vec<u64>>());
    assert!(
        parts > 1,
        "100 KB cannot fit one 64 KiB connection's answer"
    );
    // The connection survived the whole exchange.
    wa.say(&id, "after", "after").await;
    assert_eq!(next_message(&mut wb).await["seq"], 103);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_comes_first_and_lists_the_users_rooms() {
    let s = start(&["--heartbeat-interval", "7", "--rate-limit", "0"]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let r1 = room(s.addr, &alice, "first").await;
    let r2 = room(s.addr, &alice, "second").await;
    room(s.addr, &bob, "not alice's").await;
    let (wa, hello) = ws_hello(s.addr, &alice).await;
    assert_eq!(hello["username"], "alice");
    assert_eq!(hello["heartbeat_ms"], 7000);
    let epoch = hello["epoch"].as_str().unwrap().to_string();
    assert!(!epoch.is_empty());
    let ids: Vec<&Value> = hello["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!(r1), &json!(r2)]);
    let me = get(s.addr, "/api/v1/me", Some(&alice)).await.json();
    assert_eq!(
        hello["rooms"], me["rooms"],
        "hello's rooms are the REST Room objects"
    );

    // hello stays first while the user's room is busy.
    assert_eq!(join(s.addr, &bob, &r1).await.status, 200);
    let (mut wb, _) = ws_hello(s.addr, &bob).await;
    let r1c = r1.clone();
    let flood = tokio::spawn(async move {
        for i in 0..300 {
            wb.say(&r1c, &format!("flood {i}"), &format!("f{i}")).await;
        }
        for _ in 0..300 {
            next_message(&mut wb).await;
        }
    });
    for _ in 0..10 {
        let (mut w, h) = ws_hello(s.addr, &alice).await;
        assert_eq!(h["epoch"], json!(epoch), "one server, one epoch");
        w.inner.close(None).await.unwrap();
    }
    flood.await.unwrap();
    drop(wa);
    s.stop().await;

    // A restarted in-memory server lost its timelines: a new epoch.
    let s2 = start(&[]).await;
    let carol = user(s2.addr, "carol").await;
    let (_w, h2) = ws_hello(s2.addr, &carol).await;
    assert_ne!(h2["epoch"], json!(epoch));
    s2.stop().await;
}
