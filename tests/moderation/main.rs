//! Private rooms, roles and moderation (issue 11), black-box against the contract
//! (`docs/PROTOCOL.md`, "Room fields, entry kinds" and "Private rooms, roles and moderation"):
//! real clients against a real server on 127.0.0.1:0.
//!
//! - `roles`: every row of the role table, allowed and refused.
//! - `errors`: each error code of those sections (`dm_room` too), and which one wins.
//! - `private`: private rooms are hidden and closed to all but members and invitees;
//!   invitations, room fields and roles in every `Room` view.
//! - `frames`: what each party receives (`invite`, `joined`, `room_deleted`, removal entries)
//!   and does not; ownership passing on transfer and on the owner's leave.
//! - `mutes`: a muted member's sends, edits and actions are refused until the mute ends, by
//!   itself or by an unmute.
//! - `entries`: moderation entries are numbered, delivered, kept and synced like others.
//! - `commands`: the v1.1 slash commands answer with the REST call's data or error code.
//! - `persistence`: roles, bans, mutes, invites, private rooms and topics survive a clean
//!   restart, a `kill -9` and a compaction of the built binary.

#[path = "../common/mod.rs"]
mod common;

mod commands;
mod entries;
mod errors;
mod frames;
mod mutes;
mod persistence;
mod private;
mod roles;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use common::*;
pub use common::{assert_204, assert_error};

/// `GET /api/v1/rooms/{id}`.
pub async fn details(addr: SocketAddr, token: &str, id: &str) -> Reply {
    get(addr, &format!("/api/v1/rooms/{id}"), Some(token)).await
}

/// `PATCH /api/v1/rooms/{id}`.
pub async fn patch(addr: SocketAddr, token: &str, id: &str, body: Value) -> Reply {
    request(
        addr,
        "PATCH",
        &format!("/api/v1/rooms/{id}"),
        Some(token),
        Some(&body),
    )
    .await
}

/// `POST /api/v1/rooms/{id}/invites`.
pub async fn invite(addr: SocketAddr, token: &str, id: &str, who: &str) -> Reply {
    post(
        addr,
        &format!("/api/v1/rooms/{id}/invites"),
        Some(token),
        json!({ "username": who }),
    )
    .await
}

/// `POST /api/v1/rooms/{id}/kick`, with a reason if given.
pub async fn kick(
    addr: SocketAddr,
    token: &str,
    id: &str,
    who: &str,
    reason: Option<&str>,
) -> Reply {
    let mut body = json!({ "username": who });
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    post(addr, &format!("/api/v1/rooms/{id}/kick"), Some(token), body).await
}

/// `POST /api/v1/rooms/{id}/bans`, with a reason if given.
pub async fn ban(
    addr: SocketAddr,
    token: &str,
    id: &str,
    who: &str,
    reason: Option<&str>,
) -> Reply {
    let mut body = json!({ "username": who });
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    post(addr, &format!("/api/v1/rooms/{id}/bans"), Some(token), body).await
}

/// `DELETE /api/v1/rooms/{id}/bans/{username}`.
pub async fn unban(addr: SocketAddr, token: &str, id: &str, who: &str) -> Reply {
    let path = format!("/api/v1/rooms/{id}/bans/{who}");
    request(addr, "DELETE", &path, Some(token), None).await
}

/// `POST /api/v1/rooms/{id}/mutes` with any JSON as `seconds`.
pub async fn mute(addr: SocketAddr, token: &str, id: &str, who: &str, seconds: Value) -> Reply {
    post(
        addr,
        &format!("/api/v1/rooms/{id}/mutes"),
        Some(token),
        json!({ "username": who, "seconds": seconds }),
    )
    .await
}

/// `DELETE /api/v1/rooms/{id}/mutes/{username}`.
pub async fn unmute(addr: SocketAddr, token: &str, id: &str, who: &str) -> Reply {
    let path = format!("/api/v1/rooms/{id}/mutes/{who}");
    request(addr, "DELETE", &path, Some(token), None).await
}

/// `POST /api/v1/rooms/{id}/roles`.
pub async fn set_role(addr: SocketAddr, token: &str, id: &str, who: &str, role: &str) -> Reply {
    post(
        addr,
        &format!("/api/v1/rooms/{id}/roles"),
        Some(token),
        json!({ "username": who, "role": role }),
    )
    .await
}

/// `DELETE /api/v1/rooms/{id}`.
pub async fn delete_room(addr: SocketAddr, token: &str, id: &str) -> Reply {
    request(
        addr,
        "DELETE",
        &format!("/api/v1/rooms/{id}"),
        Some(token),
        None,
    )
    .await
}

/// `GET /api/v1/rooms/{id}/bans`.
pub async fn bans(addr: SocketAddr, token: &str, id: &str) -> Reply {
    get(addr, &format!("/api/v1/rooms/{id}/bans"), Some(token)).await
}

/// `GET /api/v1/rooms/{id}/messages`, the raw reply.
pub async fn messages(addr: SocketAddr, token: &str, id: &str) -> Reply {
    get(addr, &format!("/api/v1/rooms/{id}/messages"), Some(token)).await
}

/// `GET /api/v1/me` as JSON, checking the status.
pub async fn me(addr: SocketAddr, token: &str) -> Value {
    let r = get(addr, "/api/v1/me", Some(token)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()
}

/// Creates a room with extra fields (`visibility`, `topic`); returns its `Room`.
pub async fn create(addr: SocketAddr, token: &str, body: Value) -> Value {
    let r = post(addr, "/api/v1/rooms", Some(token), body).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    r.json()
}

/// A room of `visibility` with an owner, a moderator, a plain member and an outsider who is
/// registered but not a member. The room's timeline is: the owner's join (1), the
/// moderator's join (2), the member's join (3), the moderator's `role` entry (4).
pub struct Cast {
    pub id: String,
    pub owner: String,
    pub moderator: String,
    pub member: String,
    pub outsider: String,
}

/// Registers `{prefix}own`, `{prefix}mod`, `{prefix}mem` and `{prefix}out` and builds the
/// [`Cast`] of a room of `visibility`.
pub async fn cast(addr: SocketAddr, prefix: &str, visibility: &str) -> Cast {
    let owner = user(addr, &format!("{prefix}own")).await;
    let moderator = user(addr, &format!("{prefix}mod")).await;
    let member = user(addr, &format!("{prefix}mem")).await;
    let outsider = user(addr, &format!("{prefix}out")).await;
    let room = create(
        addr,
        &owner,
        json!({ "name": format!("{prefix} room"), "visibility": visibility }),
    )
    .await;
    let id = room["id"].as_str().unwrap().to_string();
    for (token, name) in [(&moderator, "mod"), (&member, "mem")] {
        if visibility == "private" {
            assert_204(&invite(addr, &owner, &id, &format!("{prefix}{name}")).await);
        }
        let r = join(addr, token, &id).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
    }
    assert_204(&set_role(addr, &owner, &id, &format!("{prefix}mod"), "moderator").await);
    Cast {
        id,
        owner,
        moderator,
        member,
        outsider,
    }
}

/// The entries of a room after `after`, through the REST history call.
pub async fn entries_after(addr: SocketAddr, token: &str, id: &str, after: u64) -> Vec<Value> {
    history(addr, token, id)
        .await
        .0
        .into_iter()
        .filter(|e| seq(e) > after)
        .collect()
}

/// The room's newest seq as its details show it.
pub async fn last_seq(addr: SocketAddr, token: &str, id: &str) -> u64 {
    let r = details(addr, token, id).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["last_seq"].as_u64().expect("last_seq")
}

/// A `Room` as a frame or a listing carries it: the details answer without `member_list`.
pub fn without_member_list(mut room: Value) -> Value {
    if let Some(o) = room.as_object_mut() {
        o.remove("member_list");
    }
    room
}

/// `member_list` as sorted `(username, role)` pairs.
pub fn roles_of(detail: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = detail["member_list"]
        .as_array()
        .unwrap_or_else(|| panic!("member_list: {detail}"))
        .iter()
        .map(|m| {
            (
                m["username"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap_or("(none)").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Ids of the rooms `GET /api/v1/rooms` lists to `token`.
pub async fn listed(addr: SocketAddr, token: &str) -> Vec<String> {
    let r = get(addr, "/api/v1/rooms?limit=500", Some(token)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Sends a `send` frame with a nonce and returns the `reply` or `error` frame that echoes it,
/// which must be of type `kind`.
pub async fn ask(w: &mut Ws, room: &str, text: &str, kind: &str) -> Value {
    ask_seen(w, room, text, kind).await.0
}

/// [`ask`], also returning the frames that arrived before the answer.
pub async fn ask_seen(w: &mut Ws, room: &str, text: &str, kind: &str) -> (Value, Vec<Value>) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nonce = format!("ask-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    w.send(json!({ "type": "send", "room": room, "text": text, "nonce": nonce }))
        .await;
    let mut before = Vec::new();
    let f = loop {
        let f = w
            .next()
            .await
            .unwrap_or_else(|| panic!("no answer to {text:?}"));
        if (f["type"] == "reply" || f["type"] == "error") && f["nonce"] == nonce.as_str() {
            break f;
        }
        before.push(f);
    };
    assert_eq!(f["type"], kind, "answer to {text:?}: {f}");
    (f, before)
}

/// Skips frames until an `entry` of `kind` in `room` arrives.
pub async fn next_entry(w: &mut Ws, room: &str, kind: &str) -> Value {
    w.next_where("entry", |f| f["room"] == room && f["kind"] == kind)
        .await
}

/// A server for these tests: [`start`]'s fast settings, and no limit on registrations per
/// address, as every test registers a cast of users.
pub async fn server() -> Server {
    start(&["--register-per-ip-per-hour", "0"]).await
}

/// Sends `text` to `room` with a nonce and returns the answer: the acknowledging `entry` (the
/// copy carrying the nonce) or the `error` frame that echoes it.
pub async fn try_send(w: &mut Ws, room: &str, text: &str) -> Value {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nonce = format!("try-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    w.say(room, text, &nonce).await;
    loop {
        let f = w
            .next()
            .await
            .unwrap_or_else(|| panic!("no answer to sending {text:?}"));
        if (f["type"] == "entry" || f["type"] == "error") && f["nonce"] == nonce.as_str() {
            return f;
        }
    }
}

/// Every frame that reaches `w` before the reply to a `/rooms` command it sends now. Frames
/// are queued per connection in order, so whatever was going to reach `w` before this moment
/// is in the list: it shows what a connection did *not* receive without a clock.
pub async fn frames_until_reply(w: &mut Ws) -> Vec<Value> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nonce = format!("marker-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    w.send(json!({ "type": "send", "room": "", "text": "/rooms", "nonce": nonce }))
        .await;
    let mut before = Vec::new();
    loop {
        let f = w
            .next()
            .await
            .unwrap_or_else(|| panic!("marker {nonce} never answered"));
        if f["nonce"] == nonce.as_str() {
            assert_eq!(f["type"], "reply", "{f}");
            return before;
        }
        before.push(f);
    }
}
