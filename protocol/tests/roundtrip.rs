//! Every frame and body of the contract: shared type -> JSON -> shared type is the identity,
//! the borrowed encoding form writes the same bytes as the owned one, and decoding is as
//! lenient as the contract asks of a client.

use parley_protocol::{
    close, BanList, BanView, ClientFrame, Entry, EntryExtra, EntryKind, EntryPage, ErrorBody,
    ErrorCode, ErrorInfo, FileInfo, FileRef, InviteCode, InviteView, MemberView, Reaction, Role,
    Room, RoomChanges, RoomDetail, RoomList, ServerFrame, UserList, UserView, Visibility,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Debug;

/// `v` encodes to JSON that decodes back to `v`, and whose every field the type holds
/// (decoding then encoding the JSON text gives the same JSON).
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) -> String {
    let json = serde_json::to_string(v).expect("encodes");
    let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(&back, v, "{json}");
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    json
}

fn room(id: &str) -> Room {
    Room {
        id: id.into(),
        name: "lobby \"one\"".into(),
        owner: "al".into(),
        members: 2,
        capacity: 1000,
        last_seq: 7,
        kind: "room".into(),
        visibility: Visibility::Private,
        topic: "plans".into(),
        role: Some(Role::Moderator),
        read_seq: Some(3),
        unread: Some(2),
    }
}

/// An entry with every optional field set.
fn full_entry() -> Entry {
    Entry {
        room: "r1".into(),
        seq: 9,
        ts: 1_764_151_200_000,
        kind: EntryKind::Message,
        from: "al".into(),
        text: Some("hi @bo \u{1}\n\"x\"".into()),
        nonce: Some(json!({"n": [1, "two"]})),
        extra: EntryExtra {
            target: Some("bo".into()),
            until: Some(60_000),
            refers: Some(4),
            changes: Some(RoomChanges {
                name: Some("den".into()),
                topic: Some(String::new()),
                visibility: Some(Visibility::Public),
            }),
            mentions: Some(vec!["bo".into()]),
            action: Some(true),
            edited: Some(true),
            deleted: Some(false),
            reply_to: Some(2),
            replies: Some(5),
            last_reply_ts: Some(1_764_151_300_000),
            reactions: Some(vec![Reaction {
                emoji: ":ship:".into(),
                count: 12,
                users: vec!["al".into(), "bo".into()],
            }]),
            files: Some(vec![FileRef {
                id: "f1".into(),
                name: "a.png".into(),
                size: 10,
                content_type: "image/png".into(),
            }]),
            emoji: Some("👍".into()),
            on: Some(false),
            webhook: Some(true),
        },
    }
}

/// One of each server frame, each with its optional fields both set and unset.
fn server_frames() -> Vec<ServerFrame> {
    let plain = Entry {
        room: "r1".into(),
        seq: 1,
        ts: 5,
        kind: EntryKind::Join,
        from: "bo".into(),
        ..Entry::default()
    };
    vec![
        ServerFrame::Hello {
            username: "al".into(),
            epoch: "e1".into(),
            heartbeat_ms: 20_000,
            rooms: vec![
                room("r1"),
                Room {
                    role: None,
                    read_seq: None,
                    unread: None,
                    ..room("r2")
                },
            ],
        },
        ServerFrame::Entry(Box::new(full_entry())),
        ServerFrame::Entry(Box::new(plain.clone())),
        ServerFrame::History {
            room: "r1".into(),
            entries: vec![plain.clone(), full_entry()],
            complete: false,
            more: true,
        },
        ServerFrame::History {
            room: "r1".into(),
            entries: vec![],
            complete: true,
            more: false,
        },
        ServerFrame::Presence {
            username: "bo".into(),
            online: true,
        },
        ServerFrame::Reply {
            nonce: Some(json!("n2")),
            command: "rooms".into(),
            text: "2 rooms".into(),
            data: json!({"rooms": [], "next": null}),
        },
        ServerFrame::Reply {
            nonce: None,
            command: "kick".into(),
            text: "done".into(),
            data: Value::Null,
        },
        ServerFrame::Error {
            code: "rate_limited".into(),
            message: "slow down".into(),
            nonce: Some(json!(7)),
            retry_after_ms: Some(120),
        },
        ServerFrame::Error {
            code: "bad_frame".into(),
            message: "no".into(),
            nonce: None,
            retry_after_ms: None,
        },
        ServerFrame::Joined { room: room("r2") },
        ServerFrame::Invite {
            room: room("r2"),
            by: "al".into(),
        },
        ServerFrame::RoomDeleted {
            room: "r2".into(),
            by: "al".into(),
        },
        ServerFrame::Read {
            room: "r1".into(),
            seq: 12,
        },
        ServerFrame::Typing {
            room: "r1".into(),
            username: "bo".into(),
        },
    ]
}

#[test]
fn every_server_frame_round_trips() {
    let mut types = Vec::new();
    for f in server_frames() {
        let json = round_trip(&f);
        let v: Value = serde_json::from_str(&json).unwrap();
        types.push(v["type"].as_str().unwrap().to_owned());
    }
    types.dedup();
    let want = [
        "hello",
        "entry",
        "history",
        "presence",
        "reply",
        "error",
        "joined",
        "invite",
        "room_deleted",
        "read",
        "typing",
    ];
    assert_eq!(types, want);
}

/// What a server encodes through the borrowed form is byte for byte what the owned form
/// encodes, for every frame that has a borrowed form.
#[test]
fn the_borrowed_form_writes_the_owned_forms_bytes() {
    let mut borrowed = 0;
    for f in server_frames() {
        let Some(r) = f.as_ref() else {
            assert!(matches!(
                f,
                ServerFrame::Entry(_) | ServerFrame::History { .. } | ServerFrame::Presence { .. }
            ));
            continue;
        };
        borrowed += 1;
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            serde_json::to_string(&f).unwrap()
        );
    }
    assert_eq!(borrowed, 10);
}

#[test]
fn every_client_frame_round_trips() {
    let frames = [
        ClientFrame::send("r1", "hi", Some("n1")),
        ClientFrame::Send {
            room: String::new(),
            text: "/rooms".into(),
            nonce: Some(json!({"k": 1})),
            reply_to: Some(4),
            files: vec!["f1".into(), "f2".into()],
        },
        ClientFrame::send("r1", "hi", None),
        ClientFrame::sync("r1", 4),
        ClientFrame::Sync {
            room: "r1".into(),
            since: 0,
            nonce: Some(json!("s")),
        },
        ClientFrame::read("r1", 7),
        ClientFrame::typing("r1"),
        ClientFrame::edit("r1", 7, "new", Some("n1")),
        ClientFrame::delete("r1", 7, Some("n2")),
        ClientFrame::React {
            room: "r1".into(),
            seq: 7,
            emoji: ":ship:".into(),
            on: true,
            nonce: Some(json!("n3")),
        },
        ClientFrame::React {
            room: "r1".into(),
            seq: 7,
            emoji: "👍".into(),
            on: false,
            nonce: None,
        },
    ];
    let mut types = Vec::new();
    for f in &frames {
        let json = round_trip(f);
        let v: Value = serde_json::from_str(&json).unwrap();
        types.push(v["type"].as_str().unwrap().to_owned());
    }
    types.dedup();
    assert_eq!(
        types,
        ["send", "sync", "read", "typing", "edit", "delete", "react"]
    );
    // The contract's own examples, as a client writes them.
    let cases = [
        (
            &frames[0],
            r#"{"type":"send","room":"r1","text":"hi","nonce":"n1"}"#,
        ),
        (&frames[3], r#"{"type":"sync","room":"r1","since":4}"#),
        (&frames[5], r#"{"type":"read","room":"r1","seq":7}"#),
        (&frames[6], r#"{"type":"typing","room":"r1"}"#),
        (
            &frames[9],
            r#"{"type":"react","room":"r1","seq":7,"emoji":":ship:","on":true,"nonce":"n3"}"#,
        ),
    ];
    for (f, want) in cases {
        assert_eq!(f.to_json(), want);
    }
}

#[test]
fn client_frames_take_whole_numbers_written_as_floats() {
    let f: ClientFrame =
        serde_json::from_str(r#"{"type":"send","room":"r","text":"x","reply_to":3.0}"#).unwrap();
    assert!(
        matches!(
            f,
            ClientFrame::Send {
                reply_to: Some(3),
                ..
            }
        ),
        "{f:?}"
    );
    let f: ClientFrame =
        serde_json::from_str(r#"{"type":"react","room":"r","seq":2.0,"emoji":"x","on":true}"#)
            .unwrap();
    assert!(matches!(f, ClientFrame::React { seq: 2, .. }), "{f:?}");
    for bad in [
        r#"{"type":"send","room":"r","text":"x","reply_to":3.5}"#,
        r#"{"type":"send","room":"r","text":"x","reply_to":"3"}"#,
        r#"{"type":"read","room":"r","seq":-1}"#,
        r#"{"type":"shout","room":"r"}"#,
    ] {
        assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
    }
    let f: ClientFrame =
        serde_json::from_str(r#"{"type":"send","text":"/rooms","reply_to":null}"#).unwrap();
    assert_eq!(f, ClientFrame::send("", "/rooms", None));
}

#[test]
fn every_entry_kind_round_trips() {
    for kind in EntryKind::ALL {
        let e = Entry {
            kind,
            ..full_entry()
        };
        round_trip(&e);
        assert_eq!(EntryKind::parse(kind.as_str()), Some(kind));
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
    }
    assert_eq!(EntryKind::parse("other"), None);
}

#[test]
fn rest_bodies_round_trip() {
    let user = UserView {
        username: "al".into(),
        online: false,
        last_seen: Some(5),
    };
    let never = UserView {
        last_seen: None,
        ..user.clone()
    };
    round_trip(&room("r1"));
    round_trip(&RoomDetail {
        room: room("r1"),
        member_list: vec![MemberView {
            username: "al".into(),
            online: true,
            role: Role::Owner,
        }],
    });
    round_trip(&RoomList {
        rooms: vec![room("r1")],
        next: Some("r1".into()),
    });
    round_trip(&UserList {
        users: vec![user, never],
        next: None,
    });
    let ban = BanView {
        username: "bo".into(),
        by: "al".into(),
        ts: 9,
        reason: Some("spam".into()),
    };
    round_trip(&BanList {
        bans: vec![
            ban.clone(),
            BanView {
                reason: None,
                ..ban
            },
        ],
    });
    round_trip(&InviteView {
        room: room("r2"),
        by: "al".into(),
    });
    round_trip(&InviteCode {
        code: "c".into(),
        uses: 3,
        expires: 99,
    });
    round_trip(&EntryPage {
        entries: vec![full_entry()],
        first_seq: Some(1),
    });
    round_trip(&ErrorBody {
        error: ErrorInfo {
            code: "too_many_attempts".into(),
            message: "wait".into(),
            retry_after_ms: Some(900),
        },
    });
    let file = FileInfo {
        file: FileRef {
            id: "f".into(),
            name: "n".into(),
            size: 1,
            content_type: "text/plain".into(),
        },
        sha256: "ab".into(),
    };
    let json = round_trip(&file);
    assert_eq!(
        json,
        r#"{"id":"f","name":"n","size":1,"type":"text/plain","sha256":"ab"}"#
    );
}

/// A client ignores frame types, entry kinds and fields it does not know, and copes with a
/// v1 server's shorter `Room`.
#[test]
fn decoding_is_lenient_as_the_contract_asks() {
    let f: ServerFrame = serde_json::from_str(r#"{"type":"sparkle","x":1}"#).unwrap();
    assert_eq!(f, ServerFrame::Unknown);
    let e: Entry = serde_json::from_str(
        r#"{"room":"r","seq":1,"ts":0,"kind":"poll","from":"al","votes":3,"text":"x"}"#,
    )
    .unwrap();
    assert_eq!((e.kind, e.text.as_deref()), (EntryKind::Other, Some("x")));
    let r: Room = serde_json::from_str(r#"{"id":"r","name":"n"}"#).unwrap();
    assert!(!r.is_private() && r.topic.is_empty() && r.role.is_none());
    assert_eq!((r.read_marker(), r.unread_count()), (0, 0));
    let f: ServerFrame = serde_json::from_str(r#"{"type":"history","room":"r1"}"#).unwrap();
    assert_eq!(
        f,
        ServerFrame::History {
            room: "r1".into(),
            entries: vec![],
            complete: true,
            more: false
        }
    );
    let m: MemberView = serde_json::from_str(r#"{"username":"al","online":true}"#).unwrap();
    assert_eq!(m.role, Role::Member);
}

#[test]
fn error_codes_parse_back_and_are_distinct() {
    let mut seen = std::collections::BTreeSet::new();
    for &code in ErrorCode::ALL {
        let s = code.as_str();
        assert_eq!(ErrorCode::parse(s), Some(code), "{s}");
        assert!(seen.insert(s), "{s} twice");
        assert!(
            s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{s} is not snake_case"
        );
    }
    assert_eq!(ErrorCode::parse("no_such_code"), None);
    assert_eq!(ErrorCode::InvalidCapacity.to_string(), "invalid_capacity");
}

#[test]
fn close_codes_are_the_contracts() {
    assert_eq!(
        [
            close::NORMAL,
            close::GOING_AWAY,
            close::PROTOCOL,
            close::INVALID_DATA,
            close::POLICY,
            close::TOO_BIG,
            close::SESSION_ENDED,
            close::TOO_SLOW
        ],
        [1000, 1001, 1002, 1007, 1008, 1009, 4001, 4002]
    );
}
