//! The JSON shapes of the Parley wire contract (`docs/PROTOCOL.md`) that the client
//! reads and writes: REST bodies and WebSocket frames.
//!
//! They are the workspace's shared `parley-protocol` types, the ones the server encodes;
//! this module re-exports them under the names the client uses. Decoding is lenient where
//! leniency costs nothing: unknown fields are ignored, unknown frame types decode to
//! [`ServerFrame::Unknown`], unknown entry kinds to [`EntryKind::Other`], and fields an
//! older server might omit default. A frame that does not decode at all is reported,
//! never unwrapped.

pub use parley_protocol::{
    close, nonce_str, BanList, BanView, ClientFrame, Entry, EntryExtra, EntryKind, EntryPage,
    ErrorBody, ErrorCode, InviteCode, InviteView, MemberView, Role, Room, RoomChanges, RoomDetail,
    RoomList, ServerFrame, UserList, UserView, Visibility,
};

/// A member as `GET /api/v1/rooms/{id}` lists them.
pub type Member = MemberView;
/// One entry of `GET /api/v1/users`, or `GET /api/v1/users/{name}`.
pub type UserInfo = UserView;

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
            ServerFrame::Entry(entry) => {
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
        let send = ClientFrame::send("r1", "hi", Some("n1"));
        assert_eq!(
            send.to_json(),
            r#"{"type":"send","room":"r1","text":"hi","nonce":"n1"}"#
        );
        let sync = ClientFrame::sync("r1", 4);
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
                assert_eq!(room.role, Some(Role::Owner));
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
        assert_eq!(
            (e.extra.target.as_deref(), e.extra.until),
            (Some("bo"), Some(60_000))
        );
        let e: Entry = serde_json::from_str(cases[6].0).expect("decodes");
        let c = e.extra.changes.expect("changes");
        assert_eq!(c.topic.as_deref(), Some("x"));
        assert_eq!(c.visibility, Some(Visibility::Private));
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
            assert_eq!(e.extra.refers, refers, "{json}");
            assert_eq!(e.mentions(), mentions, "{json}");
            assert_eq!(
                (e.is_action(), e.is_edited(), e.is_deleted()),
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
        assert_eq!((r.read_marker(), r.unread_count()), (3, 2));
        assert!(r.is_dm());
        assert_eq!(r.dm_peer("ALICE").as_deref(), Some("Bob"));
        assert_eq!(r.dm_peer("bob").as_deref(), Some("alice"));
        let plain: Room = serde_json::from_str(r#"{"id":"r","name":"a, b"}"#).expect("decodes");
        assert_eq!(plain.dm_peer("a"), None);
        assert_eq!((plain.read_marker(), plain.unread_count()), (0, 0));
    }

    #[test]
    fn conversation_client_frames_encode_as_contract() {
        let cases = [
            (
                ClientFrame::read("r1", 7),
                r#"{"type":"read","room":"r1","seq":7}"#,
            ),
            (
                ClientFrame::typing("r1"),
                r#"{"type":"typing","room":"r1"}"#,
            ),
            (
                ClientFrame::edit("r1", 7, "new", Some("n1")),
                r#"{"type":"edit","room":"r1","seq":7,"text":"new","nonce":"n1"}"#,
            ),
            (
                ClientFrame::delete("r1", 7, Some("n2")),
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
