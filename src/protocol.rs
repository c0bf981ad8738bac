//! The JSON shapes of `shared/PROTOCOL.md`: REST bodies and WebSocket frames, as serde types.
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

/// The kinds of timeline entry.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Message,
    Join,
    Leave,
}

/// One timeline entry, as kept in a room's ring and as the history call returns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub room: String,
    pub seq: u64,
    pub ts: u64,
    pub kind: EntryKind,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The `entry` frame: the entry with a type tag, and the nonce on the sender's copy only.
#[derive(Serialize)]
pub struct EntryFrame<'a> {
    #[serde(rename = "type")]
    pub kind_tag: &'static str,
    #[serde(flatten)]
    pub entry: &'a Entry,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a Value>,
}

/// Frames the server sends, other than `entry` (see [`EntryFrame`]).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    Hello {
        username: &'a str,
        epoch: &'a str,
        heartbeat_ms: u64,
        rooms: Vec<RoomView>,
    },
    History {
        room: &'a str,
        entries: Vec<Entry>,
        complete: bool,
        /// Extension: the answer to `sync` was cut to fit the connection's output budget;
        /// sync again from the last entry's seq for the rest.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    Presence {
        username: &'a str,
        online: bool,
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
}

/// `POST /api/v1/rooms` body.
#[derive(Debug, Deserialize)]
pub struct NewRoom {
    pub name: String,
    #[serde(default)]
    pub capacity: Option<i64>,
}
