//! Timeline entries: `Entry`, its kinds and its optional fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::room::Visibility;

/// The kinds of timeline entry.
///
/// A kind this crate does not know decodes as [`EntryKind::Other`] (the contract says a
/// client ignores kinds it does not know, rather than failing on the frame that holds one);
/// `Other` encodes as `"other"`, so only known kinds survive a round trip. A server that
/// reads entries back from its own storage refuses `Other`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    #[default]
    Message,
    Join,
    Leave,
    /// A member removed by `from`; `target` is who, `text` the reason if any.
    Kick,
    /// A user banned by `from` (and removed if a member).
    Ban,
    Unban,
    /// `target` muted by `from` until `until`.
    Mute,
    Unmute,
    /// `target` given the role in `text` by `from`.
    Role,
    /// `from` changed the room fields in `changes`.
    Update,
    /// `from` edited the message `ref`; `text` is its new text (absent once that message
    /// was deleted).
    Edit,
    /// `from` deleted the message `ref`.
    Delete,
    /// (v1.2) `from` added (`on`) or removed `emoji` on the message `ref`.
    Reaction,
    /// A kind this crate does not know.
    #[serde(other)]
    Other,
}

impl EntryKind {
    /// Every kind of the contract (not [`EntryKind::Other`]).
    pub const ALL: [EntryKind; 13] = [
        EntryKind::Message,
        EntryKind::Join,
        EntryKind::Leave,
        EntryKind::Kick,
        EntryKind::Ban,
        EntryKind::Unban,
        EntryKind::Mute,
        EntryKind::Unmute,
        EntryKind::Role,
        EntryKind::Update,
        EntryKind::Edit,
        EntryKind::Delete,
        EntryKind::Reaction,
    ];

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
            EntryKind::Reaction => "reaction",
            EntryKind::Other => "other",
        }
    }

    /// The kind named `s`, if the contract has it.
    pub fn parse(s: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The optional fields of an entry beyond `text` and `nonce`: who a moderation entry acts
/// on, a mute's end, the entry an `edit`, `delete` or `reaction` refers to, the room fields
/// an `update` changed, the members a message mentions, whether it is an action, whether it
/// was edited or deleted since, and the v1.2 fields (replies, reactions, files, webhooks).
///
/// Every field is optional and absent when `None`, so an entry that has none of them is the
/// v1 `Entry`.
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
    /// (v1.2) The thread root this message replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// (v1.2) Kept, not deleted replies to this message, when served again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies: Option<u64>,
    /// (v1.2) The ts of the newest of those replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply_ts: Option<u64>,
    /// (v1.2) This message's reactions, in first-reaction order, when served again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactions: Option<Vec<Reaction>>,
    /// (v1.2) The files posted with this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileRef>>,
    /// (v1.2) A `reaction` entry's emoji.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// (v1.2) A `reaction` entry: added (`true`) or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<bool>,
    /// (v1.2) Posted through an incoming webhook (`from` is the webhook's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<bool>,
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

/// (v1.2) One emoji on a message: how many reacted with it and the first ten of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: String,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub users: Vec<String>,
}

/// (v1.2) A file as a message entry lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRef {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub size: u64,
    /// Its `Content-Type`.
    #[serde(default, rename = "type")]
    pub content_type: String,
}

/// (v1.2) `POST /api/v1/rooms/{id}/files`: the stored upload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileInfo {
    #[serde(flatten)]
    pub file: FileRef,
    /// Hex SHA-256 of the bytes.
    #[serde(default)]
    pub sha256: String,
}

/// One timeline entry: `{"room","seq","ts","kind","from","text"?,"nonce"?}` and the
/// optional fields of [`EntryExtra`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub room: String,
    pub seq: u64,
    pub ts: u64,
    pub kind: EntryKind,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The nonce the sender gave. On a live `entry` frame it is on the sending connection's
    /// copy (the acknowledgement); in `history` frames, `sync` answers and the history call
    /// it is on the requesting user's own entries, so a client can tell which of its sends
    /// arrived. Never on other users' entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Value>,
    #[serde(flatten)]
    pub extra: EntryExtra,
}

impl Entry {
    /// The members named as `@username` in a message's (latest) text.
    pub fn mentions(&self) -> &[String] {
        self.extra.mentions.as_deref().unwrap_or_default()
    }

    /// Whether this entry names `user` in its mentions.
    pub fn mentions_user(&self, user: &str) -> bool {
        !user.is_empty() && self.mentions().iter().any(|m| m.eq_ignore_ascii_case(user))
    }

    /// A `/me` action.
    pub fn is_action(&self) -> bool {
        self.extra.action == Some(true)
    }

    /// Served again after an edit: `text` is the latest.
    pub fn is_edited(&self) -> bool {
        self.extra.edited == Some(true)
    }

    /// Served again after a deletion: there is no `text`.
    pub fn is_deleted(&self) -> bool {
        self.extra.deleted == Some(true)
    }
}

/// `GET /api/v1/rooms/{id}/messages`: a page of entries, oldest first, and the oldest seq
/// still kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryPage {
    #[serde(default)]
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub first_seq: Option<u64>,
}

/// Nonces as text: a nonce sent as a string is that string; a server that echoes another
/// JSON type still matches by its textual form.
pub fn nonce_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
