//! The JSON shapes of `docs/PROTOCOL.md`: REST bodies and WebSocket frames, as serde types.
//!
//! Everything a client sees is built here, so the wire format is decided in one file.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `Room` of the contract. `members` is a count; `role` is the caller's, when a member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomView {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub members: usize,
    pub capacity: u32,
    pub last_seq: u64,
    pub kind: String,
    pub visibility: Visibility,
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// How far the caller has read (0 if never set), when a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<u64>,
    /// Kept, not deleted messages after `read_seq` that others posted, when a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<u64>,
}

/// Who may see and join a room.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Public,
    Private,
}

impl Visibility {
    pub fn parse(s: &str) -> Option<Visibility> {
        match s {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

/// A member's role in a room, lowest first.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Moderator,
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "moderator" => Some(Role::Moderator),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Owner => "owner",
        }
    }
}

/// A member as `GET /api/v1/rooms/{id}` lists them.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub username: String,
    pub online: bool,
    pub role: Role,
}

/// One ban as `GET /api/v1/rooms/{id}/bans` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BanView {
    pub username: String,
    pub by: String,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A pending invitation, as `GET /api/v1/me` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct InviteView {
    pub room: RoomView,
    pub by: String,
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
    Kick,
    Ban,
    Unban,
    Mute,
    Unmute,
    Role,
    Update,
    Edit,
    Delete,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Message => "message",
            EntryKind::Join => "join",
            EntryKind::Leave => "leave",
            EntryKind::Kick => "kick",
            EntryKind::Ban => "ban",
            EntryKind::Unban => "unban",
            EntryKind::Mute => "mute",
            EntryKind::Unmute => "unmute",
            EntryKind::Role => "role",
            EntryKind::Update => "update",
            EntryKind::Edit => "edit",
            EntryKind::Delete => "delete",
        }
    }
}

/// The optional fields of an entry beyond `text`: who a moderation entry acts on, a mute's
/// end, the entry an `edit` or `delete` refers to, the room fields an `update` changed, the
/// members a message mentions, whether it is an action, and whether it was edited or
/// deleted since.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryExtra {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub refers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<RoomChanges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

impl EntryExtra {
    pub fn is_empty(&self) -> bool {
        *self == EntryExtra::default()
    }

    pub fn target(name: &str) -> EntryExtra {
        EntryExtra {
            target: Some(name.to_string()),
            ..EntryExtra::default()
        }
    }
}

/// The room fields an `update` entry changed, with their new values.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
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
    #[serde(flatten)]
    pub extra: EntryExtra,
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
    /// This user became a member of `room`; its `history` follows.
    Joined { room: &'a RoomView },
    /// This user was invited to `room` by `by`.
    Invite { room: &'a RoomView, by: &'a str },
    /// The room `room` (its id) was deleted by `by`.
    #[serde(rename = "room_deleted")]
    RoomDeleted { room: &'a str, by: &'a str },
    /// This user read `room` up to `seq` (on another connection).
    Read { room: &'a str, seq: u64 },
    /// `username` is typing in `room`.
    Typing { room: &'a str, username: &'a str },
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
        #[serde(deserialize_with = "whole::u64")]
        since: u64,
        #[serde(default)]
        nonce: Option<Value>,
    },
    Read {
        room: String,
        #[serde(deserialize_with = "whole::u64")]
        seq: u64,
        #[serde(default)]
        nonce: Option<Value>,
    },
    Typing {
        room: String,
        #[serde(default)]
        nonce: Option<Value>,
    },
    Edit {
        room: String,
        #[serde(deserialize_with = "whole::u64")]
        seq: u64,
        text: String,
        #[serde(default)]
        nonce: Option<Value>,
    },
    Delete {
        room: String,
        #[serde(deserialize_with = "whole::u64")]
        seq: u64,
        #[serde(default)]
        nonce: Option<Value>,
    },
}

/// Whole numbers in REST bodies and frames as JSON writes them: `5` or `5.0`. JSON has one number type
/// and JSON Schema's `integer` includes `5.0` (which is what Python's `json` writes for a
/// float), so both are taken; a fraction or a value out of range is refused.
pub(crate) mod whole {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};
    use serde_json::Number;

    /// 2^63 and 2^64 as floats: the first values out of range.
    const I64_END: f64 = 9_223_372_036_854_775_808.0;
    const U64_END: f64 = 18_446_744_073_709_551_616.0;

    fn float(n: &Number, low: f64, end: f64) -> Option<f64> {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= low && *f < end)
    }

    pub fn as_u64(n: &Number) -> Option<u64> {
        n.as_u64()
            .or_else(|| float(n, 0.0, U64_END).map(|f| f as u64))
    }

    pub fn as_i64(n: &Number) -> Option<i64> {
        n.as_i64()
            .or_else(|| float(n, -I64_END, I64_END).map(|f| f as i64))
    }

    fn refuse<E: Error>(n: &Number) -> E {
        E::custom(format!("expected a whole number, not {n}"))
    }

    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let n = Number::deserialize(d)?;
        as_u64(&n).ok_or_else(|| refuse(&n))
    }
}

/// `PATCH /api/v1/rooms/{id}` body: the fields to change, as given (checked by the core).
#[derive(Debug, Default, Deserialize)]
pub struct RoomPatch {
    #[serde(default)]
    pub name: Option<Value>,
    #[serde(default)]
    pub topic: Option<Value>,
    #[serde(default)]
    pub visibility: Option<Value>,
}

/// A new invite code, shown once: the server keeps only its hash.
#[derive(Debug, Serialize)]
pub struct InviteCode {
    pub code: String,
    pub uses: u32,
    /// ts after which the code no longer works.
    pub expires: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WebSocket frames read whole numbers as the REST bodies do.
    #[test]
    fn frames_take_whole_numbers_written_as_floats() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"read","room":"r","seq":3.0}"#).unwrap();
        assert!(matches!(f, ClientFrame::Read { seq: 3, .. }), "{f:?}");
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"sync","room":"r","since":0.0}"#).unwrap();
        assert!(matches!(f, ClientFrame::Sync { since: 0, .. }), "{f:?}");
        let f = r#"{"type":"edit","room":"r","seq":2.0,"text":"x"}"#;
        assert!(matches!(
            serde_json::from_str(f).unwrap(),
            ClientFrame::Edit { seq: 2, .. }
        ));
        let f = r#"{"type":"delete","room":"r","seq":7}"#;
        assert!(matches!(
            serde_json::from_str(f).unwrap(),
            ClientFrame::Delete { seq: 7, .. }
        ));
        let bad = r#"{"type":"read","room":"r","seq":3.5}"#;
        assert!(serde_json::from_str::<ClientFrame>(bad).is_err());
    }
}
