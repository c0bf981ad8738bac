//! Black-box tests of the conversation features of the contract (`shared/PROTOCOL.md`,
//! "Direct messages, blocks, mentions, actions" and "Read markers, typing, edits and
//! deletions"): real clients against a real server on 127.0.0.1:0.
//!
//! - `dms`: opening a DM, its name and shape, reuse, a side coming back, `dm_room`, `/msg`.
//! - `dm_limits`: DMs and `--max-rooms-per-user`: unanswered DMs do not count, and are capped;
//!   a side who left comes back only by opening the DM.
//! - `blocks`: the block list calls, and what a block refuses (only in the DM, only one side).
//! - `mentions`: the `@username` rule, and `/me` actions.
//! - `reads`: read markers (frame and REST), unread counts, and typing.
//! - `edits`: edits and deletions, their errors, and how edited or deleted entries are served.
//! - `restarts`: the built binary stopped cleanly or killed with `kill -9`: markers, unread
//!   counts, DMs, blocks, edits and deletions come back.
//! - `on_disk`: the data directory itself: coalesced marker writes in the journal, deleted
//!   text gone after a compaction, recovery from a snapshot.

#[path = "../common/mod.rs"]
mod common;

mod blocks;
mod dm_limits;
mod dms;
mod edits;
mod mentions;
mod on_disk;
mod reads;
mod restarts;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use serde_json::{json, Value};

/// Registers `names`; the first creates a room and the others join it, in order.
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

/// A fresh nonce.
pub fn nonce() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("cv-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `POST /api/v1/dms {"username"}`.
pub async fn open_dm(addr: SocketAddr, token: &str, username: &str) -> Reply {
    post(
        addr,
        "/api/v1/dms",
        Some(token),
        json!({ "username": username }),
    )
    .await
}

/// Opens a DM that must succeed; returns its id.
pub async fn dm_id(addr: SocketAddr, token: &str, username: &str) -> String {
    let r = open_dm(addr, token, username).await;
    assert_eq!(r.status, 200, "open a DM with {username}: {:?}", r.json());
    r.json()["id"].as_str().expect("DM id").to_string()
}

/// `POST /api/v1/blocks {"username"}`.
pub async fn block(addr: SocketAddr, token: &str, username: &str) -> Reply {
    post(
        addr,
        "/api/v1/blocks",
        Some(token),
        json!({ "username": username }),
    )
    .await
}

/// `DELETE /api/v1/blocks/{username}`.
pub async fn unblock(addr: SocketAddr, token: &str, username: &str) -> Reply {
    request(
        addr,
        "DELETE",
        &format!("/api/v1/blocks/{username}"),
        Some(token),
        None,
    )
    .await
}

/// `PATCH /api/v1/rooms/{id}/messages/{seq} {"text"}`.
pub async fn edit(addr: SocketAddr, token: &str, room: &str, seq: u64, text: &str) -> Reply {
    request(
        addr,
        "PATCH",
        &format!("/api/v1/rooms/{room}/messages/{seq}"),
        Some(token),
        Some(&json!({ "text": text })),
    )
    .await
}

/// `DELETE /api/v1/rooms/{id}/messages/{seq}`.
pub async fn delete(addr: SocketAddr, token: &str, room: &str, seq: u64) -> Reply {
    request(
        addr,
        "DELETE",
        &format!("/api/v1/rooms/{room}/messages/{seq}"),
        Some(token),
        None,
    )
    .await
}

/// `POST /api/v1/rooms/{id}/read {"seq"}`.
pub async fn mark_read(addr: SocketAddr, token: &str, room: &str, seq: u64) -> Reply {
    post(
        addr,
        &format!("/api/v1/rooms/{room}/read"),
        Some(token),
        json!({ "seq": seq }),
    )
    .await
}

/// `GET /api/v1/rooms/{id}` as `token`, which must succeed.
pub async fn room_info(addr: SocketAddr, token: &str, room: &str) -> Value {
    let r = get(addr, &format!("/api/v1/rooms/{room}"), Some(token)).await;
    assert_eq!(r.status, 200, "room {room}: {:?}", r.json());
    r.json()
}

/// The room `id` in `GET /api/v1/me`'s `rooms`.
pub async fn room_in_me(addr: SocketAddr, token: &str, id: &str) -> Value {
    let r = get(addr, "/api/v1/me", Some(token)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("room {id} not in /me: {}", r.json()))
        .clone()
}

/// Posts `text` with a nonce and returns the acknowledging `entry` frame; panics on an error.
pub async fn post_msg(w: &mut Ws, room: &str, text: &str) -> Value {
    let n = nonce();
    w.say(room, text, &n).await;
    let f = answer(w, &n).await;
    assert_eq!(f["type"], "entry", "posting {text:?}: {f}");
    f
}

/// The first frame that carries nonce `n` (an acknowledging entry, a reply or an error).
pub async fn answer(w: &mut Ws, n: &str) -> Value {
    loop {
        let f = w
            .next()
            .await
            .unwrap_or_else(|| panic!("nothing answered nonce {n}"));
        if f["nonce"] == n {
            return f;
        }
    }
}

/// Sends `frame` with a fresh nonce added and returns the first frame carrying it.
pub async fn ask_frame(w: &mut Ws, mut frame: Value) -> Value {
    let n = nonce();
    frame["nonce"] = json!(n);
    w.send(frame).await;
    answer(w, &n).await
}

/// Sends the `send` frame `text` to `room` and returns the first frame with its nonce.
pub async fn ask(w: &mut Ws, room: &str, text: &str) -> Value {
    ask_frame(w, json!({ "type": "send", "room": room, "text": text })).await
}

/// The error code of an error frame, checked to be one.
pub fn error_code(f: &Value) -> &str {
    assert_eq!(f["type"], "error", "expected an error frame: {f}");
    f["code"].as_str().expect("code")
}

/// The entry with `seq` in a list of entries.
pub fn entry_at(entries: &[Value], seq: u64) -> &Value {
    entries
        .iter()
        .find(|e| e["seq"] == seq)
        .unwrap_or_else(|| panic!("no entry {seq} in {entries:?}"))
}

/// Waits until the connection has handled everything sent before: a `sync` from the newest
/// seq answers with a `history` frame after all earlier frames of this connection.
pub async fn settle(w: &mut Ws, room: &str, last_seq: u64) {
    w.send(json!({ "type": "sync", "room": room, "since": last_seq }))
        .await;
    w.next_where("history", |f| f["room"] == room).await;
}
