//! The JSON shapes of the Parley wire contract (`docs/PROTOCOL.md`) that the client
//! reads and writes: REST bodies and WebSocket frames.
//!
//! Decoding is lenient where leniency costs nothing: unknown fields are ignored, unknown
//! frame types decode to [`ServerFrame::Unknown`], and counters a server might omit
//! default to zero. A frame that does not decode at all is reported, never unwrapped.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `Room = {"id","name","owner","members","capacity","last_seq"}`, and from v1.1
/// `"kind","visibility","topic"` and, for a member, `"role"`, `"read_seq"` and `"unread"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Room {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub owner: String,
    /// A count of members, not a list.
    #[serde(default)]
    pub members: u64,
    #[serde(default)]
    pub capacity: u64,
    #[serde(default)]
    pub last_seq: u64,
    /// `"room"` or `"dm"`; empty from a v1 server.
    #[serde(default)]
    pub kind: String,
    /// `"public"` or `"private"`; empty (public) from a v1 server.
    #[serde(default)]
    pub visibility: String,
    /// `""` when unset.
    #[serde(default)]
    pub topic: String,
    /// The caller's role (`"owner"`, `"moderator"`, `"member"`) when a member.
    #[serde(default)]
    pub role: Option<String>,
    /// How far the caller has read (their read marker), 0 if never set.
    #[serde(default)]
    pub read_seq: u64,
    /// Kept, not deleted messages by others after `read_seq`.
    #[serde(default)]
    pub unread: u64,
}

impl Room {
    /// Joined only by invitation, listed only to members.
    pub fn is_private(&self) -> bool {
        self.visibility == "private"
    }

    /// A direct-message room between two users.
    pub fn is_dm(&self) -> bool {
        self.kind == "dm"
    }

    /// The other side of a DM, from its name (`"alice, bob"`: both names, sorted);
    /// `None` for a room that is not a DM.
    pub fn dm_peer(&self, me: &str) -> Option<String> {
        if !self.is_dm() {
            return None;
        }
        let mut names = self.name.split(", ");
        let (a, b) = (names.next()?, names.next().unwrap_or_default());
        let peer = if a.eq_ignore_ascii_case(me) { b } else { a };
        (!peer.is_empty()).then(|| peer.to_owned())
    }
}

/// `GET /api/v1/rooms/{id}`: a room plus its member list.
#[derive(Debug, Clone, Deserialize)]
pub struct RoomDetail {
    #[serde(flatten)]
    pub room: Room,
    #[serde(default)]
    pub member_list: Vec<Member>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub username: String,
    #[serde(default)]
    pub online: bool,
    /// `"owner"`, `"moderator"` or `"member"`; absent from a v1 server.
    #[serde(default)]
    pub role: Option<String>,
}

/// One entry of `GET /api/v1/users`, or `GET /api/v1/users/{name}`.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    pub username: String,
    #[serde(default)]
    pub online: bool,
    /// Milliseconds since the epoch when the user went offline; `None` if never online.
    #[serde(default)]
    pub last_seen: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
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
    /// `from` edited the message `ref`; `text` is its new text (absent once that
    /// message was deleted).
    Edit,
    /// `from` deleted the message `ref`.
    Delete,
    /// A kind this client does not know; shown plainly rather than dropped.
    #[serde(other)]
    Other,
}

/// `Entry = {"room","seq","ts","kind","from","text"?,"nonce"?}`: one numbered timeline
/// entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Entry {
    pub room: String,
    pub seq: u64,
    pub ts: i64,
    pub kind: EntryKind,
    pub from: String,
    #[serde(default)]
    pub text: Option<String>,
    /// The nonce the entry was sent with. On a live `entry` it is on the sending
    /// connection's copy (the acknowledgement); in `history` frames and REST history the
    /// server keeps it on entries the requesting user sent with one, so a message whose
    /// fate was unknown across a reconnect is recognised whatever the server made of its
    /// text. Never on other users' entries; absent everywhere from older servers.
    #[serde(default)]
    pub nonce: Option<Value>,
    /// The username a moderation or role entry acts on.
    #[serde(default)]
    pub target: Option<String>,
    /// A mute's end, ms since the epoch.
    #[serde(default)]
    pub until: Option<i64>,
    /// The room fields an `update` changed, with their new values.
    #[serde(default)]
    pub changes: Option<RoomChanges>,
    /// The seq an `edit` or `delete` entry refers to.
    #[serde(default, rename = "ref")]
    pub refers: Option<u64>,
    /// Members named as `@username` in a message's (latest) text, as registered.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// A `/me` action: shown as `* alice waves`.
    #[serde(default)]
    pub action: bool,
    /// Served again after an edit: `text` is the latest.
    #[serde(default)]
    pub edited: bool,
    /// Served again after a deletion: there is no `text`.
    #[serde(default)]
    pub deleted: bool,
}

impl Entry {
    /// Whether this entry names `user` in its mentions.
    pub fn mentions_user(&self, user: &str) -> bool {
        !user.is_empty() && self.mentions.iter().any(|m| m.eq_ignore_ascii_case(user))
    }
}

/// `changes` of an `update` entry: any of the room's name, topic and visibility.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RoomChanges {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
}

/// Frames the server sends on the WebSocket.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    Hello {
        username: String,
        /// Compared for equality only: a new value means the server lost its timelines.
        epoch: Value,
        #[serde(default)]
        heartbeat_ms: u64,
        #[serde(default)]
        rooms: Vec<Room>,
    },
    /// A new timeline entry; its `nonce` is the acknowledgement of our `send`.
    Entry {
        #[serde(flatten)]
        entry: Entry,
    },
    History {
        room: String,
        #[serde(default)]
        entries: Vec<Entry>,
        #[serde(default = "yes")]
        complete: bool,
        /// Server extension: the answer was cut to fit the connection's output budget;
        /// sync again from the last entry's seq for the rest.
        #[serde(default)]
        more: bool,
    },
    Presence {
        username: String,
        online: bool,
    },
    Reply {
        #[serde(default)]
        nonce: Option<Value>,
        #[serde(default)]
        command: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        data: Value,
    },
    Error {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        nonce: Option<Value>,
        #[serde(default)]
        retry_after_ms: Option<u64>,
    },
    /// This user became a member of `room`, by any door; just before its `history`.
    Joined {
        room: Room,
    },
    /// `by` invited this user to `room`; `/join` accepts.
    Invite {
        room: Room,
        #[serde(default)]
        by: String,
    },
    /// The room with id `room` was deleted by `by`.
    #[serde(rename = "room_deleted")]
    RoomDeleted {
        room: String,
        #[serde(default)]
        by: String,
    },
    /// This user's other connection read `room` up to `seq`.
    Read {
        room: String,
        seq: u64,
    },
    /// `username` is typing in `room`.
    Typing {
        room: String,
        username: String,
    },
    #[serde(other)]
    Unknown,
}

fn yes() -> bool {
    true
}

/// Frames the client sends on the WebSocket.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame<'a> {
    /// A message, or a slash command the server handles (`/me`).
    Send {
        room: &'a str,
        text: &'a str,
        nonce: &'a str,
    },
    /// Ask for every kept entry of `room` with `seq > since`.
    Sync { room: &'a str, since: u64 },
    /// This user has read `room` up to `seq`.
    Read { room: &'a str, seq: u64 },
    /// This user is typing in `room`.
    Typing { room: &'a str },
    /// Replace the text of this user's message `seq`.
    Edit {
        room: &'a str,
        seq: u64,
        text: &'a str,
        nonce: &'a str,
    },
    /// Delete message `seq` (one's own, or any as owner or moderator).
    Delete {
        room: &'a str,
        seq: u64,
        nonce: &'a str,
    },
}

impl ClientFrame<'_> {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail; fall back to an empty object anyway
        // rather than panic.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Nonces are sent as strings; a server that echoes them as another JSON type still
/// matches by its textual form.
pub fn nonce_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_server_frame() {
        let cases = [
            r#"{"type":"hello","username":"al","epoch":"e1","heartbeat_ms":20000,"rooms":[{"id":"r1","name":"lobby","owner":"al","members":2,"capacity":1000,"last_seq":7}]}"#,
            r#"{"type":"entry","room":"r1","seq":8,"ts":1700000000000,"kind":"message","from":"al","text":"hi","nonce":"n1"}"#,
            r#"{"type":"entry","room":"r1","seq":9,"ts":1700000000000,"kind":"join","from":"bo"}"#,
            r#"{"type":"history","room":"r1","entries":[],"complete":false}"#,
            r#"{"type":"presence","username":"bo","online":true}"#,
            r#"{"type":"reply","nonce":"n2","command":"me","text":"you are al","data":{}}"#,
            r#"{"type":"error","code":"rate_limited","message":"slow down","nonce":"n3","retry_after_ms":120}"#,
            r#"{"type":"something_new","x":1}"#,
            r#"{"type":"joined","room":{"id":"r2","name":"den","visibility":"private","topic":"t","role":"member"}}"#,
            r#"{"type":"invite","room":{"id":"r2","name":"den"},"by":"al"}"#,
            r#"{"type":"room_deleted","room":"r2","by":"al"}"#,
            r#"{"type":"typing","room":"r2","username":"al"}"#,
        ];
        for case in cases {
            let frame: Result<ServerFrame, _> = serde_json::from_str(case);
            assert!(frame.is_ok(), "{case}: {frame:?}");
        }
    }

    #[test]
    fn entry_frame_keeps_nonce_and_entry() {
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"entry","room":"r1","seq":8,"ts":5,"kind":"message","from":"al","text":"hi","nonce":"n1"}"#,
        )
        .expect("decodes");
        match f {
            ServerFrame::Entry { entry } => {
                assert_eq!(entry.seq, 8);
                assert_eq!(entry.text.as_deref(), Some("hi"));
                assert_eq!(entry.nonce.as_ref().map(nonce_str).as_deref(), Some("n1"));
            }
            other => panic!("not an entry: {other:?}"),
        }
    }

    #[test]
    fn history_frame_keeps_nonces_and_more() {
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"history","room":"r1","complete":true,"more":true,"entries":[
                {"room":"r1","seq":3,"ts":5,"kind":"message","from":"al","text":"/x","nonce":"n7"},
                {"room":"r1","seq":4,"ts":5,"kind":"message","from":"bo","text":"y"}]}"#,
        )
        .expect("decodes");
        match f {
            ServerFrame::History {
                entries,
                complete,
                more,
                ..
            } => {
                assert!(complete && more);
                let nonces: Vec<Option<String>> = entries
                    .iter()
                    .map(|e| e.nonce.as_ref().map(nonce_str))
                    .collect();
                assert_eq!(nonces, [Some("n7".to_owned()), None]);
            }
            other => panic!("not a history: {other:?}"),
        }
        // An older server sends neither field.
        let f: ServerFrame = serde_json::from_str(r#"{"type":"history","room":"r1","entries":[]}"#)
            .expect("decodes");
        assert!(matches!(
            f,
            ServerFrame::History {
                complete: true,
                more: false,
                ..
            }
        ));
    }

    #[test]
    fn client_frames_encode_as_contract() {
        let send = ClientFrame::Send {
            room: "r1",
            text: "hi",
            nonce: "n1",
        };
        assert_eq!(
            send.to_json(),
            r#"{"type":"send","room":"r1","text":"hi","nonce":"n1"}"#
        );
        let sync = ClientFrame::Sync {
            room: "r1",
            since: 4,
        };
        assert_eq!(sync.to_json(), r#"{"type":"sync","room":"r1","since":4}"#);
    }

    #[test]
    fn v1_1_frames_decode() {
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"joined","room":{"id":"r2","name":"den","owner":"al","members":1,"capacity":9,"last_seq":3,"kind":"room","visibility":"private","topic":"plans","role":"owner"}}"#,
        )
        .expect("decodes");
        match f {
            ServerFrame::Joined { room } => {
                assert!(room.is_private());
                assert_eq!(room.topic, "plans");
                assert_eq!(room.role.as_deref(), Some("owner"));
            }
            other => panic!("not joined: {other:?}"),
        }
        let f: ServerFrame =
            serde_json::from_str(r#"{"type":"room_deleted","room":"r2","by":"al"}"#)
                .expect("decodes");
        assert!(matches!(f, ServerFrame::RoomDeleted { room, by } if room == "r2" && by == "al"));
        let f: ServerFrame =
            serde_json::from_str(r#"{"type":"invite","room":{"id":"r2","name":"den"},"by":"al"}"#)
                .expect("decodes");
        assert!(matches!(f, ServerFrame::Invite { room, by } if room.id == "r2" && by == "al"));
        // A v1 room has none of the new fields.
        let r: Room = serde_json::from_str(r#"{"id":"r","name":"n"}"#).expect("decodes");
        assert!(!r.is_private() && r.topic.is_empty() && r.role.is_none());
    }

    #[test]
    fn moderation_entries_decode() {
        let cases = [
            (
                r#"{"room":"r","seq":1,"ts":0,"kind":"kick","from":"al","target":"bo","text":"spam"}"#,
                EntryKind::Kick,
            ),
            (
                r#"{"room":"r","seq":1,"ts":0,"kind":"ban","from":"al","target":"bo"}"#,
                EntryKind::Ban,
            ),
            (
                r#"{"room":"r","seq":1,"ts":0,"kind":"unban","from":"al","target":"bo"}"#,
                EntryKind::Unban,
            ),
            (
                r#"{"room":"r","seq":1,"ts":0,"kind":"mute","from":"al","target":"bo","until":60000}"#,
                EntryKind::Mute,
            ),
            (
                r#"{"room":"r","seq":1,"ts":0,"kind":"unmute","from":"al","target":"bo"}"#,
                EntryKind::Unmute,
            ),
            (
                r#"{"room":"r","seq":1,"ts":0,"kind":"role","from":"al","target":"bo","text":"moderator"}"#,
                EntryKind::Role,
            ),
            (
                r#"{"room":"r","seq":1,"ts":0,"kind":"update","from":"al","changes":{"topic":"x","visibility":"private"}}"#,
                EntryKind::Update,
            ),
            (
                r#"{"room":"r","seq":1,"ts":0,"kind":"edit","from":"al","ref":3,"text":"y"}"#,
                EntryKind::Edit,
            ),
        ];
        for (json, kind) in cases {
            let e: Entry = serde_json::from_str(json).unwrap_or_else(|err| panic!("{json}: {err}"));
            assert_eq!(e.kind, kind, "{json}");
        }
        let e: Entry = serde_json::from_str(cases[3].0).expect("decodes");
        assert_eq!((e.target.as_deref(), e.until), (Some("bo"), Some(60_000)));
        let e: Entry = serde_json::from_str(cases[6].0).expect("decodes");
        let c = e.changes.expect("changes");
        assert_eq!(c.topic.as_deref(), Some("x"));
        assert_eq!(c.visibility.as_deref(), Some("private"));
        assert_eq!(c.name, None);
    }

    #[test]
    fn conversation_fields_decode() {
        // Table: an entry, then what its new fields say.
        /// JSON, kind, ref, mentions, action, edited, deleted.
        type Case = (
            &'static str,
            EntryKind,
            Option<u64>,
            &'static [&'static str],
            bool,
            bool,
            bool,
        );
        let cases: [Case; 6] = [
            (
                r#"{"room":"r","seq":4,"ts":0,"kind":"message","from":"al","text":"hi @Bo","mentions":["bo"]}"#,
                EntryKind::Message,
                None,
                &["bo"],
                false,
                false,
                false,
            ),
            (
                r#"{"room":"r","seq":4,"ts":0,"kind":"message","from":"al","text":"waves","action":true}"#,
                EntryKind::Message,
                None,
                &[],
                true,
                false,
                false,
            ),
            (
                r#"{"room":"r","seq":4,"ts":0,"kind":"message","from":"al","text":"v2","edited":true}"#,
                EntryKind::Message,
                None,
                &[],
                false,
                true,
                false,
            ),
            (
                r#"{"room":"r","seq":4,"ts":0,"kind":"message","from":"al","deleted":true}"#,
                EntryKind::Message,
                None,
                &[],
                false,
                false,
                true,
            ),
            (
                r#"{"room":"r","seq":9,"ts":0,"kind":"edit","from":"al","ref":4,"text":"v2","mentions":["bo"]}"#,
                EntryKind::Edit,
                Some(4),
                &["bo"],
                false,
                false,
                false,
            ),
            (
                r#"{"room":"r","seq":10,"ts":0,"kind":"delete","from":"bo","ref":4}"#,
                EntryKind::Delete,
                Some(4),
                &[],
                false,
                false,
                false,
            ),
        ];
        for (json, kind, refers, mentions, action, edited, deleted) in cases {
            let e: Entry = serde_json::from_str(json).unwrap_or_else(|err| panic!("{json}: {err}"));
            assert_eq!(e.kind, kind, "{json}");
            assert_eq!(e.refers, refers, "{json}");
            assert_eq!(e.mentions, mentions, "{json}");
            assert_eq!(
                (e.action, e.edited, e.deleted),
                (action, edited, deleted),
                "{json}"
            );
        }
        let e: Entry = serde_json::from_str(cases[0].0).expect("decodes");
        assert!(e.mentions_user("BO") && !e.mentions_user("al") && !e.mentions_user(""));
    }

    #[test]
    fn read_and_typing_frames_and_unread_counts() {
        let f: ServerFrame =
            serde_json::from_str(r#"{"type":"read","room":"r1","seq":12}"#).expect("decodes");
        assert!(matches!(f, ServerFrame::Read { room, seq: 12 } if room == "r1"));
        let f: ServerFrame =
            serde_json::from_str(r#"{"type":"typing","room":"r1","username":"bo"}"#)
                .expect("decodes");
        assert!(
            matches!(f, ServerFrame::Typing { room, username } if room == "r1" && username == "bo")
        );
        let r: Room = serde_json::from_str(
            r#"{"id":"d1","name":"alice, Bob","kind":"dm","read_seq":3,"unread":2}"#,
        )
        .expect("decodes");
        assert_eq!((r.read_seq, r.unread), (3, 2));
        assert!(r.is_dm());
        assert_eq!(r.dm_peer("ALICE").as_deref(), Some("Bob"));
        assert_eq!(r.dm_peer("bob").as_deref(), Some("alice"));
        let plain: Room = serde_json::from_str(r#"{"id":"r","name":"a, b"}"#).expect("decodes");
        assert_eq!(plain.dm_peer("a"), None);
        assert_eq!((plain.read_seq, plain.unread), (0, 0));
    }

    #[test]
    fn conversation_client_frames_encode_as_contract() {
        let cases = [
            (
                ClientFrame::Read { room: "r1", seq: 7 },
                r#"{"type":"read","room":"r1","seq":7}"#,
            ),
            (
                ClientFrame::Typing { room: "r1" },
                r#"{"type":"typing","room":"r1"}"#,
            ),
            (
                ClientFrame::Edit {
                    room: "r1",
                    seq: 7,
                    text: "new",
                    nonce: "n1",
                },
                r#"{"type":"edit","room":"r1","seq":7,"text":"new","nonce":"n1"}"#,
            ),
            (
                ClientFrame::Delete {
                    room: "r1",
                    seq: 7,
                    nonce: "n2",
                },
                r#"{"type":"delete","room":"r1","seq":7,"nonce":"n2"}"#,
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(frame.to_json(), want);
        }
    }

    #[test]
    fn unknown_entry_kind_is_kept() {
        let e: Entry = serde_json::from_str(
            r#"{"room":"r","seq":1,"ts":0,"kind":"topic","from":"al","text":"x"}"#,
        )
        .expect("decodes");
        assert_eq!(e.kind, EntryKind::Other);
    }
}
