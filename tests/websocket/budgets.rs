//! Room budgets (`--room-rate-limit`, `--room-byte-rate`): many senders bursting into one room
//! are told to wait, and readers that keep up are never cut with 4002.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::{watch, Barrier};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::room_with;

const SENDERS: usize = 20;
const READERS: usize = 4;
const BURST: usize = 30;
/// A realistic receive buffer: loopback's default would absorb a good part of the burst.
const RECV_BUFFER: u32 = 64 * 1024;

/// How a reader ended: the message seqs it got, and the close code if it was closed.
struct Read {
    seqs: BTreeMap<u64, String>,
    closed: Option<u16>,
}

/// Reads every frame until it has seen the entry of `kind` with seq `last` (once known) or is
/// closed.
async fn reader(mut w: Ws, mut last: watch::Receiver<u64>, kind: &'static str) -> Read {
    let mut read = Read {
        seqs: BTreeMap::new(),
        closed: None,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let want = *last.borrow_and_update();
        if want > 0 && read.seqs.keys().next_back() >= Some(&want) {
            return read;
        }
        let frame = tokio::select! {
            f = w.inner.next() => f,
            _ = last.changed() => continue,
            _ = tokio::time::sleep_until(deadline) => return read,
        };
        match frame {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("json frame");
                if v["type"] == "entry" && v["kind"] == kind {
                    let text = v["text"].as_str().unwrap_or_default().to_string();
                    read.seqs.insert(seq(&v), text);
                }
            }
            Some(Ok(Message::Close(f))) => {
                read.closed = Some(f.map_or(1005, |f| u16::from(f.code)));
                return read;
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => {
                read.closed.get_or_insert(1006);
                return read;
            }
        }
    }
}

/// What one sender was told: the seq and text of each acknowledged message, and the
/// `retry_after_ms` of each refusal.
#[derive(Default)]
struct Told {
    acked: Vec<(u64, String)>,
    refused: Vec<u64>,
    other: Vec<Value>,
    /// The connection ended before every send was answered.
    ended: bool,
}

/// Sends `BURST` messages of ~4 KB as fast as it can, then reads until each has an answer.
async fn sender(mut w: Ws, room: String, who: usize, go: Arc<Barrier>) -> Told {
    go.wait().await;
    for k in 0..BURST {
        let text = format!("{who}-{k} {}", "x".repeat(4000));
        let f =
            json!({ "type": "send", "room": room, "text": text, "nonce": format!("{who}-{k}") });
        w.inner.feed(Message::text(f.to_string())).await.unwrap();
    }
    w.inner.flush().await.unwrap();
    answers(w, who, BURST).await
}

/// What `who`'s connection is told about its `n` nonced frames: the acknowledged entries,
/// the `rate_limited` refusals, other errors, or that it ended first.
async fn answers(mut w: Ws, who: usize, n: usize) -> Told {
    let mut told = Told::default();
    while told.acked.len() + told.refused.len() + told.other.len() < n {
        let Some(f) = w.next().await else {
            told.ended = true;
            break;
        };
        let mine = f["nonce"]
            .as_str()
            .is_some_and(|n| n.starts_with(&format!("{who}-")));
        match f["type"].as_str() {
            Some("entry") if mine => {
                let text = f["text"].as_str().unwrap_or_default().to_string();
                told.acked.push((seq(&f), text));
            }
            Some("error") if mine && f["code"] == "rate_limited" => {
                told.refused.push(f["retry_after_ms"].as_u64().unwrap_or(0));
            }
            Some("error") if mine => told.other.push(f),
            _ => {}
        }
    }
    told
}

/// Issue 10, item 2: twenty accounts, each within its own rate limit (30 messages is its
/// burst), burst 30 messages of 4 KB into one room at once, 2.3 MiB, while four readers with
/// ordinary receive buffers read as fast as they can. The room's budget must refuse what
/// would not fit in a reader's outbound limit, with `rate_limited` and a `retry_after_ms`,
/// and every reader must get every acknowledged message without being cut.
///
/// What a user notices when this breaks: a busy minute in a room closes healthy clients
/// with 4002 ("too slow") though they read everything, or senders are silently not heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_bursting_into_a_room_are_refused_and_no_reader_is_cut() {
    let s = start(&[]).await;
    let addr = s.addr;
    let names: Vec<String> = (0..READERS)
        .map(|i| format!("reader{i}"))
        .chain((0..SENDERS).map(|i| format!("sender{i}")))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (id, tokens) = room_with(addr, &names).await;

    let (last_tx, last_rx) = watch::channel(0u64);
    let mut readers = Vec::new();
    for token in &tokens[..READERS] {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(RECV_BUFFER).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let mut w = ws_on(stream, addr, token).await;
        assert_eq!(w.next().await.expect("hello")["type"], "hello");
        readers.push(tokio::spawn(reader(w, last_rx.clone(), "message")));
    }
    let go = Arc::new(Barrier::new(SENDERS));
    let mut senders = Vec::new();
    for (who, token) in tokens[READERS..].iter().enumerate() {
        let (w, _) = ws_hello(addr, token).await;
        senders.push(tokio::spawn(sender(w, id.clone(), who, go.clone())));
    }
    let mut acked = BTreeMap::new();
    let mut refused = Vec::new();
    let mut senders_ended = 0;
    for t in senders {
        let told = t.await.unwrap();
        assert!(told.other.is_empty(), "only rate_limited: {:?}", told.other);
        senders_ended += usize::from(told.ended);
        acked.extend(told.acked);
        refused.extend(told.refused);
    }
    last_tx
        .send(*acked.keys().next_back().unwrap_or(&0))
        .unwrap();
    let mut ends = Vec::new();
    for t in readers {
        let read = t.await.unwrap();
        let missing = acked
            .iter()
            .filter(|(seq, text)| read.seqs.get(seq) != Some(text))
            .count();
        ends.push((read.closed, missing));
    }
    let cut = ends.iter().filter(|(c, _)| *c == Some(4002)).count();
    println!(
        "{SENDERS} senders x {BURST} messages: {} accepted, {} refused; \
         {cut} of {READERS} readers cut with 4002; (close, missing) per reader: {ends:?}; \
         {senders_ended} senders' connections ended",
        acked.len(),
        refused.len()
    );
    for (i, (closed, missing)) in ends.iter().enumerate() {
        assert_eq!(*closed, None, "reader {i} was closed");
        assert_eq!(*missing, 0, "reader {i} lacks acknowledged messages");
    }
    assert_eq!(senders_ended, 0, "senders read their room too and keep up");
    assert_eq!(acked.len() + refused.len(), SENDERS * BURST);
    assert!(
        !refused.is_empty(),
        "2.3 MiB at once is over the room's budget"
    );
    assert!(refused.iter().all(|&ms| ms > 0), "{refused:?}");
    s.stop().await;
}

/// `--rate-limit 0` turns off every message rate limit, the room's too: one sender posts
/// 100 messages of 4 KB at once (400 KB, over the default room burst of 256 KiB and the
/// message burst of 100 with the 2 joins) and every one is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_0_turns_room_budgets_off() {
    let s = start(&["--rate-limit", "0"]).await;
    let (id, tokens) = room_with(s.addr, &["ann", "bob"]).await;
    let (mut reader, _) = ws_hello(s.addr, &tokens[1]).await;
    let (mut w, _) = ws_hello(s.addr, &tokens[0]).await;
    for k in 0..100 {
        let text = format!("{k} {}", "x".repeat(4000));
        let f = json!({ "type": "send", "room": id, "text": text, "nonce": format!("n{k}") });
        w.inner.feed(Message::text(f.to_string())).await.unwrap();
    }
    w.inner.flush().await.unwrap();
    for k in 0..100 {
        let f = loop {
            let f = w.next().await.expect("an answer to every send");
            if f["type"] == "error" || f["kind"] == "message" {
                break f;
            }
        };
        assert_eq!(f["type"], "entry", "{f}");
        assert_eq!(f["nonce"], format!("n{k}"));
        let got = reader.next_where("entry", |f| f["kind"] == "message").await;
        assert!(got["text"].as_str().unwrap().starts_with(&format!("{k} ")));
    }
    s.stop().await;
}

/// Issue 20, item 3: the same burst as above made of edits. Each sender posts one short
/// message, then edits it 29 times with 4 KB texts as fast as it can (its rate-limit burst
/// holds them all). Edits are entries every reader gets, so they draw on the room's budgets
/// like messages: the excess is refused with `rate_limited` and a `retry_after_ms`, and no
/// reader is cut. Before, edits skipped the room's budget and every reader was cut with 4002.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_bursting_edits_into_a_room_are_refused_and_no_reader_is_cut() {
    let s = start(&[]).await;
    let addr = s.addr;
    let names: Vec<String> = (0..READERS)
        .map(|i| format!("reader{i}"))
        .chain((0..SENDERS).map(|i| format!("sender{i}")))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (id, tokens) = room_with(addr, &names).await;

    let (last_tx, last_rx) = watch::channel(0u64);
    let mut readers = Vec::new();
    for token in &tokens[..READERS] {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(RECV_BUFFER).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let mut w = ws_on(stream, addr, token).await;
        assert_eq!(w.next().await.expect("hello")["type"], "hello");
        readers.push(tokio::spawn(reader(w, last_rx.clone(), "edit")));
    }
    let go = Arc::new(Barrier::new(SENDERS));
    let mut senders = Vec::new();
    for (who, token) in tokens[READERS..].iter().enumerate() {
        let (mut w, _) = ws_hello(addr, token).await;
        let target = seq(&say_acked(&mut w, &id, &format!("first from {who}")).await);
        senders.push(tokio::spawn(editor(w, id.clone(), who, target, go.clone())));
    }
    let mut acked = BTreeMap::new();
    let mut refused = Vec::new();
    let mut senders_ended = 0;
    for t in senders {
        let told = t.await.unwrap();
        assert!(told.other.is_empty(), "only rate_limited: {:?}", told.other);
        senders_ended += usize::from(told.ended);
        acked.extend(told.acked);
        refused.extend(told.refused);
    }
    last_tx
        .send(*acked.keys().next_back().unwrap_or(&0))
        .unwrap();
    let mut ends = Vec::new();
    for t in readers {
        let read = t.await.unwrap();
        let missing = acked
            .iter()
            .filter(|(seq, text)| read.seqs.get(seq) != Some(text))
            .count();
        ends.push((read.closed, missing));
    }
    let cut = ends.iter().filter(|(c, _)| *c == Some(4002)).count();
    println!(
        "{SENDERS} senders x {} edits: {} accepted, {} refused; \
         {cut} of {READERS} readers cut with 4002; (close, missing) per reader: {ends:?}; \
         {senders_ended} senders' connections ended",
        BURST - 1,
        acked.len(),
        refused.len()
    );
    for (i, (closed, missing)) in ends.iter().enumerate() {
        assert_eq!(*closed, None, "reader {i} was closed");
        assert_eq!(*missing, 0, "reader {i} lacks acknowledged edits");
    }
    assert_eq!(senders_ended, 0, "senders read their room too and keep up");
    assert_eq!(acked.len() + refused.len(), SENDERS * (BURST - 1));
    assert!(!refused.is_empty(), "2.3 MiB of edits is over the budget");
    assert!(refused.iter().all(|&ms| ms > 0), "{refused:?}");
    s.stop().await;
}

/// Edits message `target` `BURST - 1` times with ~4 KB texts as fast as it can, then reads
/// until each edit has an answer.
async fn editor(mut w: Ws, room: String, who: usize, target: u64, go: Arc<Barrier>) -> Told {
    go.wait().await;
    let edits = BURST - 1;
    for k in 0..edits {
        let text = format!("{who}-{k} {}", "y".repeat(4000));
        let nonce = format!("{who}-{k}");
        let f =
            json!({ "type": "edit", "room": room, "seq": target, "text": text, "nonce": nonce });
        w.inner.feed(Message::text(f.to_string())).await.unwrap();
    }
    w.inner.flush().await.unwrap();
    answers(w, who, edits).await
}

/// Issue 20, item 3, by REST: `PATCH /rooms/{id}/messages/{seq}` draws on the room's byte
/// budget like a message. With the REST bucket off and a room burst of 20,000 bytes, 4 KB
/// edits are refused with `429 rate_limited`, `retry_after_ms` and `Retry-After` after a few,
/// and a message sent over WebSocket then is refused too: it is one budget. Before, REST edits
/// went through without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_edits_draw_on_the_room_budget_and_get_429() {
    let s = start(&[
        "--rest-rate-limit",
        "0",
        "--room-byte-rate",
        "1000",
        "--room-byte-burst",
        "20000",
    ])
    .await;
    let (id, tokens) = room_with(s.addr, &["ann", "bob"]).await;
    let (mut w, _) = ws_hello(s.addr, &tokens[0]).await;
    let target = seq(&say_acked(&mut w, &id, "to be edited").await);
    let path = format!("/api/v1/rooms/{id}/messages/{target}");
    let mut ok = 0;
    let mut refusal = None;
    for k in 0..20 {
        let body = json!({ "text": format!("{k} {}", "z".repeat(4000)) });
        let r = request(s.addr, "PATCH", &path, Some(&tokens[0]), Some(&body)).await;
        if r.status == 200 {
            ok += 1;
            continue;
        }
        refusal = Some(r);
        break;
    }
    let r = refusal.expect("4 KB edits past a 20,000-byte room burst are refused");
    assert_error(&r, 429, "rate_limited");
    assert!(r.retry_after_ms() > 0);
    assert!(r.header("retry-after").is_some());
    assert!(
        (1..=5).contains(&ok),
        "{ok} edits passed before the refusal"
    );
    let f = json!({ "type": "send", "room": id, "text": "x".repeat(4000), "nonce": "after" });
    w.send(f).await;
    let e = w.next_where("error", |_| true).await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    assert_eq!(e["nonce"], "after");
    s.stop().await;
}
