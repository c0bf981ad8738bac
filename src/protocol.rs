//! The JSON shapes of `docs/PROTOCOL.md`: REST bodies and WebSocket frames, as serde types.
//!
//! The shapes themselves live in the `parley-protocol` crate (`protocol/`), shared with
//! `parley-cli` and `parley-load`; this module re-exports them under the names the server
//! uses, and keeps the request bodies only the server decodes. `entry`, `history` and
//! `presence` frames and the history page are written by hand from kept bytes
//! (`store::record`, `chat::timeline`, `chat::outbound`); the tests below check them against
//! the shared types.

use serde::Deserialize;
use serde_json::Value;

pub(crate) use parley_protocol::whole;
/// `Room` of the contract, as the server builds it for a viewer.
pub use parley_protocol::Room as RoomView;
/// Server frames the server encodes through serde (borrowing what it holds).
pub use parley_protocol::ServerFrameRef as ServerFrame;
pub use parley_protocol::{
    BanView, ClientFrame, Entry, EntryExtra, EntryKind, InviteCode, InviteView, MemberView, Role,
    RoomChanges, RoomDetail, RoomList, UserList, UserView, Visibility,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{self, wire, ChatError, Record};
    use crate::store::record::ENTRY_HEAD;
    use crate::store::KeptEntry;
    use parley_protocol::{EntryPage, ErrorBody, ErrorCode, ServerFrame as Decoded};
    use serde_json::json;

    /// The JSON of a server's WebSocket text frame (final, unmasked).
    fn payload(frame: &[u8]) -> &[u8] {
        assert_eq!(frame[0], 0x81, "a final text frame");
        match frame[1] {
            126 => &frame[4..],
            127 => &frame[10..],
            n => {
                assert_eq!(frame.len(), 2 + n as usize);
                &frame[2..]
            }
        }
    }

    /// `json` decodes as a known shared type `T`, which encodes the same JSON value again:
    /// no field was lost, changed or added on the way.
    fn decoded<T: serde::de::DeserializeOwned + serde::Serialize>(json: &[u8]) -> T {
        let text = String::from_utf8_lossy(json);
        let f: T = serde_json::from_slice(json).unwrap_or_else(|e| panic!("{text}: {e}"));
        let want: Value = serde_json::from_slice(json).unwrap();
        assert_eq!(serde_json::to_value(&f).unwrap(), want, "{text}");
        f
    }

    fn frame(bytes: &[u8]) -> Decoded {
        let f: Decoded = decoded(payload(bytes));
        assert_ne!(f, Decoded::Unknown);
        f
    }

    /// Kept entries of every kind and optional field, with awkward text.
    fn kept_entries() -> Vec<KeptEntry> {
        let extras = [
            EntryExtra::default(),
            EntryExtra::target("bo"),
            EntryExtra {
                until: Some(1_764_600_060_000),
                ..EntryExtra::target("bo")
            },
            EntryExtra {
                refers: Some(3),
                mentions: Some(vec!["bo".into(), "Cy".into()]),
                ..EntryExtra::default()
            },
            EntryExtra {
                changes: Some(RoomChanges {
                    name: Some("new \"name\"".into()),
                    topic: Some(String::new()),
                    visibility: Some(Visibility::Private),
                }),
                ..EntryExtra::default()
            },
            EntryExtra {
                action: Some(true),
                edited: Some(true),
                ..EntryExtra::default()
            },
            EntryExtra {
                deleted: Some(true),
                ..EntryExtra::default()
            },
        ];
        let texts = [None, Some(""), Some("hi @bo \"\\\n\t\u{1}é</script>")];
        let nonces = [None, Some("\"n1\""), Some("{\"k\":[1,null]}")];
        let mut out = Vec::new();
        for (i, kind) in EntryKind::ALL.into_iter().enumerate() {
            for (j, extra) in extras.iter().enumerate() {
                let (text, nonce) = (texts[(i + j) % 3], nonces[(i + 2 * j) % 3]);
                let ts = 1_764_151_200_000 + i as u64;
                out.push(KeptEntry::with_extra(ts, kind, "al_1", text, nonce, extra));
            }
        }
        out
    }

    /// `entry` frames, written from kept bytes for every recipient (the sender's copy with
    /// its nonce), are the shared `Entry` the kept entry stands for.
    #[test]
    fn entry_frames_decode_as_the_shared_entry() {
        for kept in kept_entries() {
            for with_nonce in [false, true] {
                let nonce = kept.nonce().filter(|_| with_nonce);
                let mut json = Vec::new();
                kept.write_json(&mut json, ENTRY_HEAD, "r7", 41, nonce);
                let Decoded::Entry(e) = frame(&wire::text(&json)) else {
                    panic!("not an entry frame");
                };
                assert_eq!(*e, kept.to_entry("r7", 41, with_nonce));
                // The same entry inside `history` and the history page.
                let mut plain = Vec::new();
                kept.write_json(&mut plain, b"", "r7", 41, nonce);
                assert_eq!(decoded::<Entry>(&plain), *e);
            }
        }
    }

    #[test]
    fn presence_frames_decode_as_the_shared_frame() {
        let frames = chat::outbound::PresenceFrames::new("al_1");
        for online in [true, false] {
            let want = Decoded::Presence {
                username: "al_1".into(),
                online,
            };
            assert_eq!(frame(frames.get(online)), want);
            let mut coalesced = Vec::new();
            chat::outbound::presence_frame(&mut coalesced, "al_1", online);
            assert_eq!(frame(&coalesced), want);
        }
    }

    /// Every frame the server encodes through serde (`chat::encode` of the borrowed
    /// frames) is the owned frame it was made from.
    #[test]
    fn encoded_frames_decode_as_the_shared_frames() {
        let room = RoomView {
            id: "r1".into(),
            name: "a \"b\"".into(),
            owner: "al".into(),
            members: 3,
            capacity: 9,
            last_seq: 4,
            kind: "room".into(),
            visibility: Visibility::Private,
            topic: "t".into(),
            role: Some(Role::Owner),
            read_seq: Some(2),
            unread: Some(1),
        };
        let owned = [
            Decoded::Hello {
                username: "al".into(),
                epoch: "e1".into(),
                heartbeat_ms: 20_000,
                rooms: vec![room.clone()],
            },
            Decoded::Reply {
                nonce: Some(json!("n")),
                command: "rooms".into(),
                text: "1 room".into(),
                data: json!({"rooms": [room.clone()], "next": null}),
            },
            Decoded::Reply {
                nonce: None,
                command: "kick".into(),
                text: String::new(),
                data: Value::Null,
            },
            Decoded::Error {
                code: ChatError::Muted { retry_after_ms: 5 }.code().into(),
                message: "m".into(),
                nonce: Some(json!({"a": 1})),
                retry_after_ms: Some(5),
            },
            Decoded::Error {
                code: "bad_frame".into(),
                message: "m".into(),
                nonce: None,
                retry_after_ms: None,
            },
            Decoded::Joined { room: room.clone() },
            Decoded::Invite {
                room,
                by: "al".into(),
            },
            Decoded::RoomDeleted {
                room: "r1".into(),
                by: "al".into(),
            },
            Decoded::Read {
                room: "r1".into(),
                seq: 4,
            },
            Decoded::Typing {
                room: "r1".into(),
                username: "bo".into(),
            },
        ];
        for f in owned {
            let bytes = chat::encode(&f.as_ref().expect("a borrowed form"));
            assert_eq!(frame(&bytes), f);
        }
    }

    /// A core with one room: al's and bo's joins, messages (al's with a nonce), an edit and
    /// a deletion; returns it with al.
    fn core_with_a_timeline() -> (chat::Core, std::sync::Arc<chat::User>) {
        let core = chat::Core::new(
            Default::default(),
            Default::default(),
            crate::store::Store::memory(),
            Default::default(),
        );
        let now = crate::chat::now_ms();
        for name in ["al", "bo"] {
            core.apply(&Record::UserRegistered {
                username: name.into(),
                hash: String::new(),
                ts: now,
            });
        }
        core.apply(&Record::SessionStarted {
            token_hash: chat::hex(&chat::token_hash("t")),
            username: "al".into(),
            created: now,
        });
        core.apply(&Record::RoomCreated {
            id: "r1".into(),
            name: "lobby".into(),
            owner: "al".into(),
            capacity: 10,
            ts: now,
            visibility: Visibility::Public,
            topic: String::new(),
            dm_with: None,
        });
        let entry = |seq, kind, from: &str, text: Option<&str>, nonce, extra| {
            Record::Entry(Entry {
                room: "r1".into(),
                seq,
                ts: now + seq,
                kind,
                from: from.into(),
                text: text.map(str::to_string),
                nonce,
                extra,
            })
        };
        let refers = |seq| EntryExtra {
            refers: Some(seq),
            ..EntryExtra::default()
        };
        let mentions = EntryExtra {
            mentions: Some(vec!["bo".into()]),
            ..EntryExtra::default()
        };
        let records = [
            entry(1, EntryKind::Join, "al", None, None, EntryExtra::default()),
            entry(2, EntryKind::Join, "bo", None, None, EntryExtra::default()),
            entry(
                3,
                EntryKind::Message,
                "al",
                Some("hi @bo"),
                Some(json!("n3")),
                mentions,
            ),
            entry(
                4,
                EntryKind::Message,
                "bo",
                Some("yo \"al\"\n"),
                None,
                EntryExtra::default(),
            ),
            entry(
                5,
                EntryKind::Message,
                "al",
                Some("oops"),
                Some(json!(5)),
                EntryExtra::default(),
            ),
            entry(
                6,
                EntryKind::Edit,
                "al",
                Some("hi all"),
                Some(json!("n6")),
                refers(3),
            ),
            entry(7, EntryKind::Delete, "bo", None, None, refers(5)),
        ];
        for r in &records {
            core.apply(r);
        }
        let user = core.authenticate(chat::token_hash("t")).expect("al").user;
        (core, user)
    }

    /// `history` frames (`sync` and after a join) and the history page, written from kept
    /// bytes, decode as the shared types; al's own entries carry their nonces.
    #[test]
    fn history_frames_and_pages_decode_as_the_shared_types() {
        let (core, al) = core_with_a_timeline();
        let Decoded::History {
            room,
            entries,
            complete,
            more,
        } = frame(&core.sync_frame(&al, "r1", 0).expect("sync"))
        else {
            panic!("not a history frame");
        };
        assert_eq!((room.as_str(), complete, more), ("r1", true, false));
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
        let nonces: Vec<Option<Value>> = entries.iter().map(|e| e.nonce.clone()).collect();
        let none = None;
        assert_eq!(
            nonces,
            [
                none.clone(),
                none.clone(),
                Some(json!("n3")),
                none.clone(),
                Some(json!(5)),
                Some(json!("n6")),
                none
            ]
        );
        assert!(entries[2].is_edited() && entries[2].text.as_deref() == Some("hi all"));
        assert!(entries[4].is_deleted() && entries[4].text.is_none());

        let page = core.history_page(&al, "r1", None, 50).expect("page");
        let mut body = Vec::new();
        let mut i = 0;
        while page.write_piece(i, &mut body) {
            i += 1;
        }
        assert_eq!(body.len(), page.len());
        let page: EntryPage = decoded(&body);
        assert_eq!(page.entries, entries);
        assert_eq!(page.first_seq, Some(1));
    }

    /// The REST error body is the shared `ErrorBody`.
    #[test]
    fn error_bodies_decode_as_the_shared_body() {
        for retry in [None, Some(1500)] {
            let r = crate::http::response::Response::error(429, "rate_limited", "slow", retry);
            let body: ErrorBody = decoded(&r.body);
            assert_eq!(body.error.code, "rate_limited");
            assert_eq!(body.error.retry_after_ms, retry);
        }
    }

    /// Every code the core answers with is one of the shared codes, and the close codes
    /// the WebSocket layer uses are the shared ones.
    #[test]
    fn error_and_close_codes_are_the_shared_ones() {
        use ChatError::*;
        let errors = [
            Unauthorized,
            InvalidUsername,
            InvalidPassword(String::new()),
            UsernameTaken,
            InvalidCredentials,
            TooManyAttempts { retry_after_ms: 1 },
            UserNotFound,
            InvalidRoomName,
            InvalidCapacity,
            RoomNotFound,
            RoomFull,
            TooManyRooms,
            TooManyOwnedRooms,
            BadRequest(String::new()),
            NotAMember,
            NotInRoom,
            EmptyMessage,
            MessageTooLong,
            RateLimited { retry_after_ms: 1 },
            UnknownCommand(String::new()),
            BadCommand(String::new()),
            Busy { retry_after_ms: 1 },
            Unavailable,
            Forbidden,
            RoomRestricted,
            Banned,
            InviteeBanned,
            AlreadyMember,
            InvalidDuration,
            InvalidRole,
            InvalidVisibility,
            InvalidTopic,
            Muted { retry_after_ms: 1 },
            NotBanned,
            NotMuted,
            TooManyInvites,
            InvalidTarget,
            Blocked,
            NotBlocked,
            EntryNotFound,
            DmRoom,
            InviteRequired,
            RegistrationClosed,
            AccountDisabled,
        ];
        for e in errors {
            assert!(ErrorCode::parse(e.code()).is_some(), "{e:?}: {}", e.code());
        }
        use parley_protocol::close as shared;
        assert_eq!(
            [
                wire::close::NORMAL,
                wire::close::GOING_AWAY,
                wire::close::PROTOCOL,
                wire::close::INVALID_DATA,
                wire::close::POLICY,
                wire::close::TOO_BIG,
                wire::close::SESSION_ENDED,
                wire::close::TOO_SLOW,
            ],
            [
                shared::NORMAL,
                shared::GOING_AWAY,
                shared::PROTOCOL,
                shared::INVALID_DATA,
                shared::POLICY,
                shared::TOO_BIG,
                shared::SESSION_ENDED,
                shared::TOO_SLOW,
            ]
        );
    }

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
