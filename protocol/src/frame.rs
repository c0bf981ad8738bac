//! WebSocket frames: what the server sends ([`ServerFrame`], and [`ServerFrameRef`] for
//! encoding without copies) and what a client sends ([`ClientFrame`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entry::Entry;
use crate::room::Room;
use crate::whole;

/// Frames the server sends, owned: what a client decodes.
///
/// Decoding is lenient where leniency costs nothing: unknown fields are ignored, an unknown
/// frame type decodes as [`ServerFrame::Unknown`], and fields an older server might omit
/// default. Encoding one gives the JSON the server sends (field for field; the server's own
/// encoders may order the fields of `entry` and `history` differently).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    /// Always the first frame.
    Hello {
        username: String,
        /// Changes only when the server's stored timelines were lost: a client that sees a
        /// new epoch drops its remembered seqs.
        epoch: String,
        #[serde(default)]
        heartbeat_ms: u64,
        #[serde(default)]
        rooms: Vec<Room>,
    },
    /// A new timeline entry; its `nonce` (on the sender's copy) acknowledges the `send`.
    /// Boxed: an entry with all its optional fields is several times larger than any other
    /// frame.
    Entry(Box<Entry>),
    /// After a join (the last entries) and in answer to `sync`.
    History {
        room: String,
        #[serde(default)]
        entries: Vec<Entry>,
        /// False when entries the client asked for are no longer kept.
        #[serde(default = "yes")]
        complete: bool,
        /// Extension: the answer was cut to fit the connection's output budget; sync again
        /// from the last entry's seq for the rest.
        #[serde(default, skip_serializing_if = "is_false")]
        more: bool,
    },
    Presence {
        username: String,
        online: bool,
    },
    /// The answer to a slash command: `text` for humans, `data` the REST call's JSON.
    Reply {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Value>,
        #[serde(default)]
        command: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        data: Value,
    },
    Error {
        /// An [`ErrorCode`](crate::ErrorCode) as sent.
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// This user became a member of `room`, by any door; just before its `history`.
    Joined {
        room: Room,
    },
    /// This user was invited to `room` by `by`.
    Invite {
        room: Room,
        #[serde(default)]
        by: String,
    },
    /// The room `room` (its id) was deleted by `by`.
    #[serde(rename = "room_deleted")]
    RoomDeleted {
        room: String,
        #[serde(default)]
        by: String,
    },
    /// This user read `room` up to `seq` (on another connection).
    Read {
        room: String,
        seq: u64,
    },
    /// `username` is typing in `room`.
    Typing {
        room: String,
        username: String,
    },
    /// A frame type this crate does not know.
    #[serde(other)]
    Unknown,
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The server frames a server encodes through serde, borrowing what it has: the same JSON
/// as the matching [`ServerFrame`], field for field. `entry`, `history` and `presence`
/// frames are not here: a server writes those from its kept entries and caches them.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrameRef<'a> {
    Hello {
        username: &'a str,
        epoch: &'a str,
        heartbeat_ms: u64,
        rooms: Vec<Room>,
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
    /// This user became a member of `room`; its `history` follows.
    Joined { room: &'a Room },
    /// This user was invited to `room` by `by`.
    Invite { room: &'a Room, by: &'a str },
    /// The room `room` (its id) was deleted by `by`.
    #[serde(rename = "room_deleted")]
    RoomDeleted { room: &'a str, by: &'a str },
    /// This user read `room` up to `seq` (on another connection).
    Read { room: &'a str, seq: u64 },
    /// `username` is typing in `room`.
    Typing { room: &'a str, username: &'a str },
}

impl ServerFrame {
    /// The borrowed form of this frame, for the types a server encodes through serde;
    /// `None` for `entry`, `history`, `presence` and `Unknown`.
    pub fn as_ref(&self) -> Option<ServerFrameRef<'_>> {
        Some(match self {
            ServerFrame::Hello {
                username,
                epoch,
                heartbeat_ms,
                rooms,
            } => ServerFrameRef::Hello {
                username,
                epoch,
                heartbeat_ms: *heartbeat_ms,
                rooms: rooms.clone(),
            },
            ServerFrame::Reply {
                nonce,
                command,
                text,
                data,
            } => ServerFrameRef::Reply {
                nonce: nonce.as_ref(),
                command,
                text: text.clone(),
                data: data.clone(),
            },
            ServerFrame::Error {
                code,
                message,
                nonce,
                retry_after_ms,
            } => ServerFrameRef::Error {
                code,
                message: message.clone(),
                nonce: nonce.as_ref(),
                retry_after_ms: *retry_after_ms,
            },
            ServerFrame::Joined { room } => ServerFrameRef::Joined { room },
            ServerFrame::Invite { room, by } => ServerFrameRef::Invite { room, by },
            ServerFrame::RoomDeleted { room, by } => ServerFrameRef::RoomDeleted { room, by },
            ServerFrame::Read { room, seq } => ServerFrameRef::Read { room, seq: *seq },
            ServerFrame::Typing { room, username } => ServerFrameRef::Typing { room, username },
            ServerFrame::Entry(_)
            | ServerFrame::History { .. }
            | ServerFrame::Presence { .. }
            | ServerFrame::Unknown => return None,
        })
    }
}

/// Frames a client may send.
///
/// Whole numbers are taken as JSON writes them (`3` or `3.0`, see [`whole`]). Optional
/// fields are left out of the JSON when `None` or empty.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    /// Post to a room, or run a slash command (then `room` is the default room and may be
    /// empty).
    Send {
        #[serde(default)]
        room: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Value>,
        /// (v1.2) The message this one replies to.
        #[serde(
            default,
            deserialize_with = "whole::opt_u64",
            skip_serializing_if = "Option::is_none"
        )]
        reply_to: Option<u64>,
        /// (v1.2) Uploaded file ids to post with the message (at most 10).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<String>,
    },
    /// Every kept entry of `room` with `seq > since`.
    Sync {
        room: String,
        #[serde(deserialize_with = "whole::u64")]
        since: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Value>,
    },
    /// This user has read `room` up to `seq`.
    Read {
        room: String,
        #[serde(deserialize_with = "whole::u64")]
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Value>,
    },
    /// This user is typing in `room`.
    Typing {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Value>,
    },
    /// Replace the text of this user's message `seq`.
    Edit {
        room: String,
        #[serde(deserialize_with = "whole::u64")]
        seq: u64,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Value>,
    },
    /// Delete message `seq` (one's own, or any as owner or moderator).
    Delete {
        room: String,
        #[serde(deserialize_with = "whole::u64")]
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Value>,
    },
    /// (v1.2) Add (`on`) or remove `emoji` on message `seq`.
    React {
        room: String,
        #[serde(deserialize_with = "whole::u64")]
        seq: u64,
        emoji: String,
        on: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Value>,
    },
}

impl ClientFrame {
    /// A plain `send` (no reply, no files); `nonce`, if any, as a JSON string.
    pub fn send(room: &str, text: &str, nonce: Option<&str>) -> ClientFrame {
        ClientFrame::Send {
            room: room.to_owned(),
            text: text.to_owned(),
            nonce: nonce.map(Value::from),
            reply_to: None,
            files: Vec::new(),
        }
    }

    /// Every kept entry of `room` after `since`.
    pub fn sync(room: &str, since: u64) -> ClientFrame {
        ClientFrame::Sync {
            room: room.to_owned(),
            since,
            nonce: None,
        }
    }

    /// Read up to `seq`.
    pub fn read(room: &str, seq: u64) -> ClientFrame {
        ClientFrame::Read {
            room: room.to_owned(),
            seq,
            nonce: None,
        }
    }

    /// Typing in `room`.
    pub fn typing(room: &str) -> ClientFrame {
        ClientFrame::Typing {
            room: room.to_owned(),
            nonce: None,
        }
    }

    /// A new text for message `seq`.
    pub fn edit(room: &str, seq: u64, text: &str, nonce: Option<&str>) -> ClientFrame {
        ClientFrame::Edit {
            room: room.to_owned(),
            seq,
            text: text.to_owned(),
            nonce: nonce.map(Value::from),
        }
    }

    /// Delete message `seq`.
    pub fn delete(room: &str, seq: u64, nonce: Option<&str>) -> ClientFrame {
        ClientFrame::Delete {
            room: room.to_owned(),
            seq,
            nonce: nonce.map(Value::from),
        }
    }

    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these plain values cannot fail; an empty object rather than a panic
        // anyway.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The frame's `nonce`, if it has one.
    pub fn nonce(&self) -> Option<&Value> {
        match self {
            ClientFrame::Send { nonce, .. }
            | ClientFrame::Sync { nonce, .. }
            | ClientFrame::Read { nonce, .. }
            | ClientFrame::Typing { nonce, .. }
            | ClientFrame::Edit { nonce, .. }
            | ClientFrame::Delete { nonce, .. }
            | ClientFrame::React { nonce, .. } => nonce.as_ref(),
        }
    }
}
