//! The close codes of the contract, each with the server still serving others afterwards.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::raw::{try_upgrade, End, Raw, CLOSE, CONTINUATION, PING, TEXT};
use crate::{metric, next_message, room_with, seqs, sync};

/// Bob posts and gets his ack: the server still serves others.
async fn still_serving(w: &mut Ws, room: &str, marker: &str) {
    w.say(room, marker, marker).await;
    let m = next_message(w).await;
    assert_eq!(m["nonce"], marker, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_64_kib_closes_1009() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;

    // Exactly 64 KiB is a frame the server reads: it answers with an error, not a close.
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let text = format!("{{\"type\":\"send\",\"room\":\"{id}\",\"text\":\"");
    let fill = 64 * 1024 - text.len() - 2;
    let at_limit = format!("{text}{}\"}}", "x".repeat(fill));
    assert_eq!(at_limit.len(), 64 * 1024);
    wa.inner.send(Message::text(at_limit)).await.unwrap();
    let e = wa.next_where("error", |_| true).await;
    assert_eq!(e["code"], "message_too_long");

    // One byte more closes.
    let over = "y".repeat(64 * 1024 + 1);
    wa.inner.send(Message::text(over)).await.unwrap();
    assert_eq!(wa.closed().await, Ended::Close(1009));

    // So does a message whose fragments add up to more than 64 KiB.
    let mut raw = Raw::connect(s.addr, &t[0]).await;
    let part = vec![b'z'; 40 * 1024];
    raw.write_frame(false, TEXT, &part, true).await;
    raw.write_frame(true, CONTINUATION, &part, true).await;
    let (end, _) = raw.ended().await;
    assert!(matches!(end, End::Close(1009, _)), "{end:?}");

    still_serving(&mut wb, &id, "after 1009").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_closes_1007_and_an_unmasked_frame_1002() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;

    let mut raw = Raw::connect(s.addr, &t[0]).await;
    assert_eq!(raw.json().await.unwrap()["type"], "hello");
    raw.write_frame(true, TEXT, &[b'"', 0xff, 0xfe, b'"'], true)
        .await;
    let (end, _) = raw.ended().await;
    assert!(matches!(end, End::Close(1007, _)), "{end:?}");

    let mut raw = Raw::connect(s.addr, &t[0]).await;
    raw.write_frame(
        true,
        TEXT,
        br#"{"type":"sync","room":"x","since":0}"#,
        false,
    )
    .await;
    let (end, _) = raw.ended().await;
    assert!(matches!(end, End::Close(1002, _)), "{end:?}");

    still_serving(&mut wb, &id, "after 1007 and 1002").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_far_over_the_rate_limit_is_closed_1008() {
    let s = start(&["--rate-limit", "1", "--rate-burst", "2"]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    // Twenty messages at once, far over three times 1/s with a burst of 2.
    for i in 0..20 {
        let f = json!({ "type": "send", "room": id, "text": format!("spam {i}"), "nonce": i });
        wa.inner.feed(Message::text(f.to_string())).await.unwrap();
    }
    wa.inner.flush().await.unwrap();
    let mut acks = 0;
    let mut refused = 0;
    let end = loop {
        match tokio::time::timeout(WAIT, wa.inner.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Text(t))) => {
                let f: serde_json::Value = serde_json::from_str(&t).unwrap();
                match f["type"].as_str() {
                    Some("entry") if f["kind"] == "message" => acks += 1,
                    Some("error") => {
                        assert_eq!(f["code"], "rate_limited", "{f}");
                        refused += 1;
                    }
                    _ => {}
                }
            }
            Some(Ok(Message::Close(c))) => break c.map(|c| u16::from(c.code)),
            Some(Ok(_)) => {}
            other => panic!("ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(end, Some(1008));
    assert_eq!(acks, 2, "the burst went through");
    assert!(refused >= 1, "refusals come before the close");
    let m = next_message(&mut wb).await;
    assert_eq!(m["text"], "spam 0");
    let m = next_message(&mut wb).await;
    assert_eq!(m["text"], "spam 1");
    still_serving(&mut wb, &id, "after 1008").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_that_sessions_sockets_with_4001_and_no_others() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let creds = json!({ "username": "alice", "password": PASSWORD });
    let other = post(s.addr, "/api/v1/login", None, creds).await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut a1, _) = ws_hello(s.addr, &t[0]).await;
    let (mut a1b, _) = ws_hello(s.addr, &t[0]).await;
    let (mut a2, _) = ws_hello(s.addr, &other).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;

    let r = post(s.addr, "/api/v1/logout", Some(&t[0]), json!({})).await;
    assert_eq!(r.status, 204);
    assert_eq!(a1.closed().await, Ended::Close(4001));
    assert_eq!(a1b.closed().await, Ended::Close(4001));
    let r = try_upgrade(
        s.addr,
        &format!("/api/v1/ws?token={}", t[0]),
        crate::raw::KEY,
        "",
    )
    .await;
    assert_eq!(r.status, 401, "the ended session cannot reconnect");

    still_serving(&mut wb, &id, "after 4001").await;
    let m = next_message(&mut a2).await;
    assert_eq!(
        m["text"], "after 4001",
        "alice's other session still receives"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_socket_with_1001() {
    let s = start(&[]).await;
    let (_id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let addr = s.addr;
    let (mut wa, _) = ws_hello(addr, &t[0]).await;
    let (mut wa2, _) = ws_hello(addr, &t[0]).await;
    let (mut wb, _) = ws_hello(addr, &t[1]).await;
    let stopping = tokio::spawn(s.stop());
    for w in [&mut wa, &mut wa2, &mut wb] {
        assert_eq!(w.closed().await, Ended::Close(1001));
    }
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the server stops once its sockets closed")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

/// Resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Two chatters each post `EACH` messages of `TEXT_BYTES` while reading everything.
const EACH: usize = 6000;
const TEXT_BYTES: usize = 2000;
/// Messages posted but not yet read by both chatters. It keeps what the server owes a reader
/// that keeps up (at most 10 x 2 KB) well under the 64 KiB limit, however the threads are
/// scheduled. "Well under": the server credits written bytes just after its `write` call, so
/// a session thread descheduled right there makes a connection look as if it owed up to twice
/// what it does.
const WINDOW: usize = 10;

/// Flow control between the chatters: a permit to post comes back once both have read it.
struct Pace {
    permits: Semaphore,
    /// Messages read by each chatter, and how many permits were given back.
    read: std::sync::Mutex<([usize; 2], usize)>,
}

impl Pace {
    fn read_one(&self, who: usize) {
        let mut r = self.read.lock().unwrap();
        r.0[who] += 1;
        let both = r.0[0].min(r.0[1]);
        if both > r.1 {
            self.permits.add_permits(both - r.1);
            r.1 = both;
        }
    }
}

async fn chatter(w: Ws, room: String, who: usize, pace: Arc<Pace>, total: usize) -> Vec<u64> {
    let me = ["alice", "bob"][who];
    let (mut sink, mut stream) = w.inner.split();
    let writer_pace = pace.clone();
    let writer = tokio::spawn(async move {
        let text = me.repeat(TEXT_BYTES / me.len());
        for i in 0..EACH {
            writer_pace.permits.acquire().await.unwrap().forget();
            let nonce = format!("{me}-{i}");
            let f = json!({ "type": "send", "room": room, "text": text, "nonce": nonce });
            sink.send(Message::text(f.to_string())).await.unwrap();
        }
        sink
    });
    let mut got = Vec::with_capacity(total);
    while got.len() < total {
        let msg = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{me} stalled after {} entries", got.len()))
            .unwrap_or_else(|| panic!("{me}'s connection ended after {} entries", got.len()))
            .unwrap_or_else(|e| panic!("{me} after {} entries: {e}", got.len()));
        if let Message::Close(c) = &msg {
            panic!("{me} closed after {} entries: {c:?}", got.len());
        }
        let Message::Text(t) = msg else { continue };
        let f: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_ne!(f["type"], "error", "{me}: {f}");
        if f["type"] == "entry" && f["kind"] == "message" {
            got.push(f["seq"].as_u64().unwrap());
            pace.read_one(who);
        }
    }
    let _sink = writer.await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_is_closed_4002_while_the_others_lose_nothing() {
    let s = start(&["--rate-limit", "0", "--max-outbound-bytes", "65536"]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob", "slow"]).await;
    // A tiny receive buffer, so the kernel cannot soak up megabytes on the client's behalf.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(s.addr).await.unwrap();
    let mut slow = Raw::over(stream, &t[2]).await;
    let rss_before = rss_kib();

    // The slow client reads again only once the server has given up on it, to see why.
    let core = s.core.clone();
    let watcher = tokio::spawn(async move {
        let closes = &core.metrics.slow_consumer_closes_total;
        let deadline = tokio::time::Instant::now() + 3 * WAIT;
        while closes.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never closed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        slow.ended().await
    });

    let total = 2 * EACH;
    let (wa, _) = ws_hello(s.addr, &t[0]).await;
    let (wb, _) = ws_hello(s.addr, &t[1]).await;
    let pace = Arc::new(Pace {
        permits: Semaphore::new(WINDOW),
        read: Default::default(),
    });
    let a = tokio::spawn(chatter(wa, id.clone(), 0, pace.clone(), total));
    let b = tokio::spawn(chatter(wb, id.clone(), 1, pace, total));
    let want: Vec<u64> = (4..4 + total as u64).collect();
    assert_eq!(a.await.unwrap(), want, "alice lost or reordered entries");
    assert_eq!(b.await.unwrap(), want, "bob lost or reordered entries");

    let (end, frames) = watcher.await.unwrap();
    assert!(matches!(end, End::Close(4002, _)), "{end:?}");
    let delivered = frames.iter().filter(|f| f.opcode == TEXT).count();
    assert!(
        delivered < total / 2,
        "it was cut off, not fed: {delivered} frames"
    );
    assert!(frames
        .iter()
        .all(|f| f.fin && (f.opcode == TEXT || f.opcode == PING)));
    assert_eq!(metric(s.addr, "parley_slow_consumer_closes_total").await, 1);
    // Had the server kept queueing for the slow client, it would hold most of the room's
    // traffic (about 20 MiB); bounded, the process grows by a few MiB of buffers.
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    let room_mib = ((total * TEXT_BYTES) >> 20) as u64;
    assert!(
        grown_mib < room_mib / 2,
        "{grown_mib} MiB more resident after {room_mib} MiB of room traffic"
    );

    // It may reconnect and catch up with sync.
    let (mut again, _) = ws_hello(s.addr, &t[2]).await;
    let last = 3 + total as u64;
    let h = sync(&mut again, &id, last - 5).await;
    assert_eq!(seqs(&h), (last - 4..=last).collect::<Vec<u64>>());
    still_serving(&mut again, &id, "back again").await;
    s.stop().await;
}

/// A client's close frame is answered as RFC 6455 §7.4 says: its code is echoed only when a
/// peer may send it; otherwise 1002, or 1007 for a reason that is not UTF-8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_echoed_only_when_its_code_may_be_sent() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;

    let with_code = |code: u16, reason: &[u8]| [&code.to_be_bytes()[..], reason].concat();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![], 1000),
        (with_code(1000, b"bye"), 1000),
        (with_code(1001, b""), 1001),
        (with_code(1003, b""), 1003),
        (with_code(1007, b""), 1007),
        (with_code(1011, b""), 1011),
        (with_code(1012, b""), 1012),
        (with_code(1014, b""), 1014),
        (with_code(3000, b""), 3000),
        (with_code(4999, b"app"), 4999),
        (vec![0x03], 1002),
        (with_code(0, b""), 1002),
        (with_code(999, b""), 1002),
        (with_code(1004, b""), 1002),
        (with_code(1005, b""), 1002),
        (with_code(1006, b""), 1002),
        (with_code(1015, b""), 1002),
        (with_code(1016, b""), 1002),
        (with_code(2999, b""), 1002),
        (with_code(5000, b""), 1002),
        (with_code(1000, &[0xff, 0xfe]), 1007),
    ];
    for (payload, want) in cases {
        let mut raw = Raw::connect(s.addr, &t[0]).await;
        assert_eq!(raw.json().await.unwrap()["type"], "hello");
        raw.write_frame(true, CLOSE, &payload, true).await;
        let (end, _) = raw.ended().await;
        assert!(
            matches!(end, End::Close(c, _) if c == want),
            "close payload {payload:?}: want {want}, got {end:?}"
        );
    }
    still_serving(&mut wb, &id, "after the closes").await;
    s.stop().await;
}
