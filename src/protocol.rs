//! The JSON shapes of `docs/PROTOCOL.md`: REST bodies and WebSocket frames, as serde types.
//!
//! Everything a client sees is built here, so the wire format is decided in one file.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `Room` of the contract. `members` is a count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomView {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub members: usize,
    pub capacity: u32,
    pub last_seq: u64,
}

/// A member as `GET /api/v1/rooms/{id}` lists them.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub username: String,
    pub online: bool,
}

/// `Room` plus its `member_list`.
#[derive(Debug, Clone, Serialize)]
pub struct RoomDetail {
    #[serde(flatten)]
    pub room: RoomView,
    pub member_list: Vec<MemberView>,
}

/// A user as `/api/v1/users` lists them. `last_seen` is null until they were first online.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub username: String,
    pub online: bool,
    pub last_seen: Option<u64>,
}

/// A page of `GET /api/v1/rooms` (and `/rooms`): `next` is the `after` of the following
/// page, `None` on the last.
#[derive(Debug, Clone, Serialize)]
pub struct RoomList {
    pub rooms: Vec<RoomView>,
    pub next: Option<String>,
}

/// A page of `GET /api/v1/users` (and `/users`).
#[derive(Debug, Clone, Serialize)]
pub struct UserList {
    pub users: Vec<UserView>,
    pub next: Option<String>,
}

/// The kinds of timeline entry.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Message,
    Join,
    Leave,
}

/// One timeline entry, as the journal keeps it and the history call returns it. Rooms keep
/// their entries in a compact form (`store::KeptEntry`); this is the readable one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub room: String,
    pub seq: u64,
    pub ts: u64,
    pub kind: EntryKind,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The nonce the sender gave. Kept with the entry and shown only to the sender's own
    /// reads (`history`, `sync`), so a client can tell which of its sends arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Value>,
}

/// Frames the server sends, other than `entry` and `history` (written from kept entries by
/// `chat::timeline`) and `presence` (written by the outbound queue, which coalesces them).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    Hello {
        username: &'a str,
        epoch: &'a str,
        heartbeat_ms: u64,
        rooms: Vec<RoomView>,
    },
    Reply {
        #[serde(skip_serializing_if = "Option::is_none")]
        nonce: Option<&'a Value>,
        command: &'a str,
        text: String,
        data: Value,
    },
    Error {
        code: &'a str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        nonce: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

/// Frames a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    Send {
        #[serde(default)]
        room: String,
        text: String,
        #[serde(default)]
        nonce: Option<Value>,
    },
    Sync {
        room: String,
        since: u64,
        #[serde(default)]
        nonce: Option<Value>,
    },
}

/// `POST /api/v1/register` and `/login` bodies.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Needed to register under `--registration invite`; ignored elsewhere.
    #[serde(default)]
    pub invite_code: Option<String>,
}

/// `POST /api/v1/rooms` body.
#[derive(Debug, Deserialize)]
pub struct NewRoom {
    pub name: String,
    #[serde(default)]
    pub capacity: Option<i64>,
}

/// `POST /api/v1/admin/invite-codes` body; both optional.
#[derive(Debug, Default, Deserialize)]
pub struct NewInviteCode {
    pub uses: Option<u64>,
    /// Seconds from now.
    pub expires_in: Option<u64>,
}

/// A new invite code, shown once: the server keeps only its hash.
#[derive(Debug, Serialize)]
pub struct InviteCode {
    pub code: String,
    pub uses: u32,
    /// ts after which the code no longer works.
    pub expires: u64,
}

/// `POST /api/v1/password` body.
#[derive(Debug, Deserialize)]
pub struct PasswordChange {
    pub old: String,
    pub new: String,
}
