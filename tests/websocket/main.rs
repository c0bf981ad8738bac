//! Black-box tests of the WebSocket side of the contract (`docs/PROTOCOL.md`, "Rooms" and
//! "WebSocket"): several real clients against a real in-process server on 127.0.0.1:0.
//!
//! - `delivery`: fan-out, ordering, join/leave entries, history on join, `sync`, `hello`.
//! - `errors`: every error code of a `send`/`sync` frame, and refused upgrades.
//! - `closes`: the close codes (1001, 1002, 1007, 1008, 1009, 4001, 4002).
//! - `budgets`: room budgets refuse a burst of senders before readers would be cut.
//! - `presence`: online/offline events, including through the heartbeat timeout.
//! - `commands`: slash commands, `//` escaping and message filtering.
//! - `shared_types`: every frame and body decodes as the shared `parley-protocol` types.
//!
//! `raw` is a hand-rolled client for what tungstenite will not do: stop reading, send
//! unmasked or invalid frames, or shrink its receive buffer.

#[path = "../common/mod.rs"]
mod common;

mod budgets;
mod closes;
mod commands;
mod delivery;
mod errors;
mod presence;
mod raw;
mod shared_types;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use serde_json::{json, Value};

/// Registers `names`; the first creates a room and the others join it, in order, so the
/// room's timeline starts with one `join` entry each (seqs 1..=names.len()).
/// Returns the room id and each user's token.
pub async fn room_with(addr: SocketAddr, names: &[&str]) -> (String, Vec<String>) {
    let mut tokens = Vec::new();
    for n in names {
        tokens.push(user(addr, n).await);
    }
    let id = room(addr, &tokens[0], "lobby").await;
    for t in &tokens[1..] {
        let r = join(addr, t, &id).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
    }
    (id, tokens)
}

/// The next `entry` frame of kind `message`, skipping anything else.
pub async fn next_message(w: &mut Ws) -> Value {
    w.next_where("entry", |f| f["kind"] == "message").await
}

/// Sends a `send` frame and returns the next frame of type `kind` (`reply` or `error`).
pub async fn ask(w: &mut Ws, room: &str, text: &str, kind: &str) -> Value {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nonce = format!("ask-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    w.send(json!({ "type": "send", "room": room, "text": text, "nonce": nonce }))
        .await;
    let f = w.next_where(kind, |_| true).await;
    assert_eq!(
        f["nonce"],
        json!(nonce),
        "{kind} for {text:?} echoes the nonce: {f}"
    );
    f
}

/// Sends `sync` and returns the `history` answer.
pub async fn sync(w: &mut Ws, room: &str, since: u64) -> Value {
    w.send(json!({ "type": "sync", "room": room, "since": since }))
        .await;
    w.next_where("history", |f| f["room"] == room).await
}

/// The seqs of a `history` frame's entries.
pub fn seqs(history: &Value) -> Vec<u64> {
    history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

/// One counter or gauge from `GET /metrics`.
pub async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let r = get(addr, "/metrics", None).await;
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&r.body).to_string();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}
