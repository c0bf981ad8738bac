//! Every error code of a `send` or `sync` frame, and the answers to refused upgrades.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::raw::{try_upgrade, KEY};
use crate::{next_message, room_with};

/// Sends `frame` and returns the `error` frame it gets.
async fn error_for(w: &mut Ws, frame: Value) -> Value {
    w.send(frame.clone()).await;
    let e = w.next().await.expect("an error frame");
    assert_eq!(e["type"], "error", "{frame} got {e}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_frame_gets_its_error_and_the_connection_stays_open() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let carol = user(s.addr, "carol").await;
    let theirs = room(s.addr, &carol, "carol's").await;
    let (mut w, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;

    let send = |room: &str, text: &str, nonce: &str| json!({ "type": "send", "room": room, "text": text, "nonce": nonce });
    let cases = [
        (send(&theirs, "let me in", "1"), "not_a_member"),
        (send("no-such-room", "hello?", "2"), "room_not_found"),
        (send(&id, &"x".repeat(4097), "3"), "message_too_long"),
        // 2,049 two-byte characters: 4,098 bytes, the limit is in bytes.
        (send(&id, &"é".repeat(2049), "4"), "message_too_long"),
        (send(&id, "  \n\t  ", "5"), "empty_message"),
        (send(&id, "\u{7}\u{1b}", "6"), "empty_message"),
        (send(&id, "/frobnicate now", "7"), "unknown_command"),
        (send("", "/join no-such-room", "8"), "room_not_found"),
        (send("", "/who no-such-room", "9"), "room_not_found"),
        (
            json!({ "type": "sync", "room": "no-such-room", "since": 0, "nonce": "10" }),
            "room_not_found",
        ),
        (
            json!({ "type": "sync", "room": theirs, "since": 0, "nonce": "11" }),
            "not_a_member",
        ),
    ];
    for (frame, code) in cases {
        let e = error_for(&mut w, frame.clone()).await;
        assert_eq!(e["code"], code, "{frame}: {e}");
        assert_eq!(e["nonce"], frame["nonce"], "errors echo the nonce: {e}");
    }
    for bad in [
        "not json",
        r#"{"type":"shout","room":"x"}"#,
        r#"{"type":"send","room":"x"}"#,
        r#"{"type":"sync","room":"x","since":"yesterday"}"#,
        "[]",
    ] {
        w.inner.send(Message::text(bad)).await.unwrap();
        let e = w.next().await.expect("an error frame");
        assert_eq!(
            (&e["type"], &e["code"]),
            (&json!("error"), &json!("bad_frame")),
            "{bad}: {e}"
        );
    }
    w.inner
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    let e = w.next().await.expect("an error frame");
    assert_eq!(e["code"], "bad_frame", "binary frames: {e}");

    // Nothing above reached the room, and the connection still works: the largest message
    // allowed (4,096 bytes after trimming) goes through.
    let biggest = format!("  {}  ", "y".repeat(4096));
    w.say(&id, &biggest, "ok").await;
    let m = next_message(&mut w).await;
    assert_eq!((&m["seq"], &m["nonce"]), (&json!(3), &json!("ok")));
    assert_eq!(m["text"].as_str().unwrap().len(), 4096);
    let m = next_message(&mut wb).await;
    assert_eq!(m["seq"], 3, "bob saw nothing before it: {m}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_a_message_is_refused_with_retry_after() {
    let s = start(&["--rate-limit", "1", "--rate-burst", "2"]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut a1, _) = ws_hello(s.addr, &t[0]).await;
    let (mut a2, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;

    for i in 0..2 {
        a1.say(&id, &format!("burst {i}"), &format!("b{i}")).await;
        assert_eq!(next_message(&mut a1).await["nonce"], format!("b{i}"));
    }
    a1.say(&id, "one too many", "over").await;
    let e = a1.next_where("error", |_| true).await;
    assert_eq!(
        (&e["code"], &e["nonce"]),
        (&json!("rate_limited"), &json!("over"))
    );
    let wait = e["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(
        (1..=1000).contains(&wait),
        "at 1/s a token is at most 1 s away: {e}"
    );
    // The limit is per user: alice's other connection is refused too, bob is not.
    a2.say(&id, "from the other tab", "tab").await;
    let e = a2.next_where("error", |_| true).await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    wb.say(&id, "bob is fine", "bob").await;
    let m = wb.next_where("entry", |f| f.get("nonce").is_some()).await;
    assert_eq!(
        (&m["seq"], &m["nonce"]),
        (&json!(5), &json!("bob")),
        "refused messages take no seq"
    );

    // Waiting as told is enough.
    tokio::time::sleep(Duration::from_millis(wait)).await;
    a1.say(&id, "patient", "later").await;
    let m = a1.next_where("entry", |f| f.get("nonce").is_some()).await;
    assert_eq!(m["nonce"], "later", "{m}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrades_get_their_status_and_no_socket() {
    let s = start(&["--allowed-origin", "https://chat.example"]).await;
    let token = user(s.addr, "alice").await;
    let target = format!("/api/v1/ws?token={token}");
    let good_origin = "Origin: https://chat.example\r\n";

    let plain = get(s.addr, &target, None).await;
    assert_eq!(
        (plain.status, plain.code()),
        (426, "upgrade_required".into())
    );
    let r = try_upgrade(s.addr, &target, "too-short", good_origin).await;
    assert_eq!(r.status, 400, "bad Sec-WebSocket-Key");
    let r = try_upgrade(s.addr, "/api/v1/ws?token=nope", KEY, good_origin).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized".into()));
    let r = try_upgrade(s.addr, "/api/v1/ws", KEY, good_origin).await;
    assert_eq!(r.status, 401, "no token");
    let r = try_upgrade(s.addr, &target, KEY, "Origin: https://evil.example\r\n").await;
    assert_eq!(r.status, 403, "origin not listed");
    for r in [&plain, &r] {
        assert!(r.header("sec-websocket-accept").is_none());
    }
    // Two Origin headers, even both listed, are refused rather than the first believed.
    let two = format!("{good_origin}Origin: https://evil.example\r\n");
    let r = try_upgrade(s.addr, &target, KEY, &two).await;
    assert_eq!(r.status, 403, "two origins");
    let r = try_upgrade(s.addr, &target, KEY, &format!("{good_origin}{good_origin}")).await;
    assert_eq!(r.status, 403, "the listed origin twice");
    // No Origin at all is a client that is not a browser: allowed.
    let r = try_upgrade(s.addr, &target, KEY, "").await;
    assert_eq!(r.status, 101, "no origin");
    // The listed origin with the token in the Authorization header upgrades.
    let auth = format!("{good_origin}Authorization: Bearer {token}\r\n");
    let r = try_upgrade(s.addr, "/api/v1/ws", KEY, &auth).await;
    assert_eq!(r.status, 101);
    s.stop().await;
}
