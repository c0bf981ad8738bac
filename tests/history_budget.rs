//! History reads (`GET /rooms/{id}/messages`, `sync`) are budgeted per user in bytes served
//! (`--history-byte-rate`, `--history-byte-burst`), are written in pieces outside the room's
//! lock, and stop being written when the client has gone (issue 20, item 4).

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Registers `names`, makes a room owned by the first, joins the rest; the room's id and
/// the tokens.
async fn room_with(addr: SocketAddr, names: &[&str]) -> (String, Vec<String>) {
    let mut tokens = Vec::new();
    for n in names {
        tokens.push(user(addr, n).await);
    }
    let id = room(addr, &tokens[0], &format!("room-of-{}", names[0])).await;
    for t in &tokens[1..] {
        assert_eq!(join(addr, t, &id).await.status, 200);
    }
    (id, tokens)
}

/// Posts `n` messages of about 4 KB to `room` over `w`.
async fn fill(w: &mut Ws, room: &str, n: usize) {
    for k in 0..n {
        say_acked(w, room, &format!("{k} {}", "h".repeat(4000))).await;
    }
}

/// A counter from `/metrics`, 0 if absent.
async fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let text = String::from_utf8(get(addr, "/metrics", None).await.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A user pulling large pages is refused with the contract's 429 once they have been served
/// the burst, and so is their `sync`; another user is still served. Before, history reads
/// were not limited at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_take_bytes_from_a_budget_and_get_429_past_it() {
    let s = start(&["--history-byte-rate", "1", "--history-byte-burst", "100000"]).await;
    let (id, tokens) = room_with(s.addr, &["ann", "bob"]).await;
    let (mut w, _) = ws_hello(s.addr, &tokens[0]).await;
    fill(&mut w, &id, 20).await;
    let path = format!("/api/v1/rooms/{id}/messages?limit=500");
    // 22 entries, 20 of 4 KB, are ~82 KB a page: the first leaves ~18 KB of the burst, the second
    // runs it into debt, the third is refused.
    let mut served = 0;
    let refusal = loop {
        let r = get(s.addr, &path, Some(&tokens[0])).await;
        if r.status != 200 {
            break r;
        }
        let page = r.json();
        // Two joins and the 20 messages.
        assert_eq!(page["entries"].as_array().map(Vec::len), Some(22));
        assert_eq!(page["first_seq"], 1);
        served += 1;
        assert!(
            served <= 2,
            "a third page of 82 KB is past a 100,000-byte burst"
        );
    };
    assert_eq!(served, 2);
    assert_error(&refusal, 429, "rate_limited");
    assert!(refusal.retry_after_ms() > 0);
    // The WebSocket door draws on the same budget.
    w.send(json!({ "type": "sync", "room": id, "since": 0, "nonce": "s1" }))
        .await;
    let e = w.next_where("error", |_| true).await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    assert_eq!(e["nonce"], "s1");
    assert!(e["retry_after_ms"].as_u64().unwrap_or(0) > 0, "{e}");
    // The budget is the user's: bob is served.
    let r = get(s.addr, &path, Some(&tokens[1])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["entries"].as_array().map(Vec::len), Some(22));
    s.stop().await;
}

/// A member floods the server with requests for the largest pages and closes each
/// connection without reading the answer. Meanwhile messages in another room still arrive,
/// the pages of those who read are whole, and the server stops writing the abandoned pages
/// part way (`parley_history_abandoned_total`). Before, each page was written whole to a
/// client that had gone, and nothing counted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_requests_whose_clients_vanish_stop_and_do_not_block_others() {
    let s = start(&["--rate-limit", "0", "--history-byte-rate", "0"]).await;
    let addr = s.addr;
    let (big, tokens) = room_with(addr, &["ann"]).await;
    let (mut w, _) = ws_hello(addr, &tokens[0]).await;
    fill(&mut w, &big, 200).await;
    let (other, others) = room_with(addr, &["carol", "dave"]).await;
    let (mut carol, _) = ws_hello(addr, &others[0]).await;
    let (mut dave, _) = ws_hello(addr, &others[1]).await;

    let token = tokens[0].clone();
    let path = format!("/api/v1/rooms/{big}/messages?limit=500");
    let flood = tokio::spawn(async move {
        for _ in 0..40 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n"
            );
            c.write_all(req.as_bytes()).await.unwrap();
            drop(c);
        }
    });
    for k in 0..20 {
        let text = format!("still here {k}");
        say_acked(&mut carol, &other, &text).await;
        let got = dave.next_where("entry", |f| f["kind"] == "message").await;
        assert_eq!(got["text"], text);
    }
    flood.await.unwrap();
    let page = get(
        addr,
        &format!("/api/v1/rooms/{big}/messages?limit=500"),
        Some(&tokens[0]),
    )
    .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.json()["entries"].as_array().map(Vec::len), Some(201));
    let abandoned = within(std::time::Duration::from_secs(10), || async {
        metric(addr, "parley_history_abandoned_total")
            .await
            .unwrap_or(0)
            > 0
    })
    .await;
    assert!(
        abandoned,
        "pages to clients that went away are not written to the end"
    );
    s.stop().await;
}

/// The history a join sends (the room's last 50 entries) is served history too: it takes its
/// bytes from the joiner's budget, so joining and leaving over and over is no way around it.
/// Before, a join's history cost nothing and bob got two pages here, not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joins_history_takes_from_the_same_budget() {
    let s = start(&["--history-byte-rate", "1", "--history-byte-burst", "100000"]).await;
    let (id, tokens) = room_with(s.addr, &["cyd"]).await;
    let (mut w, _) = ws_hello(s.addr, &tokens[0]).await;
    fill(&mut w, &id, 20).await;
    let bob = user(s.addr, "bob").await;
    // ~82 KB of join history leaves ~18 KB of bob's 100,000-byte burst.
    assert_eq!(join(s.addr, &bob, &id).await.status, 200);
    let path = format!("/api/v1/rooms/{id}/messages?limit=500");
    let mut served = 0;
    let refusal = loop {
        let r = get(s.addr, &path, Some(&bob)).await;
        if r.status != 200 {
            break r;
        }
        served += 1;
        assert!(served <= 2, "pages kept coming past the budget");
    };
    assert_eq!(served, 1, "one ~82 KB page after an ~82 KB join history");
    assert_error(&refusal, 429, "rate_limited");
    s.stop().await;
}
