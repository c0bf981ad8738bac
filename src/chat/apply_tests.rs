//! Replay through `Core::apply`: idempotence and what snapshots restore.

use std::sync::Arc;

use super::*;
use crate::chat::filter::Filter;
use crate::protocol::Entry;
use crate::store::Store;

fn core() -> Core {
    Core::new(
        Arc::default(),
        Arc::default(),
        Store::memory(),
        Filter::default(),
    )
}

fn entry(room: &str, seq: u64, kind: EntryKind, from: &str, text: Option<&str>) -> Entry {
    Entry {
        room: room.into(),
        seq,
        ts: seq,
        kind,
        from: from.into(),
        text: text.map(str::to_string),
        nonce: None,
        extra: EntryExtra::default(),
    }
}

fn kept_seqs(c: &Core, room: &str) -> (Vec<u64>, u64) {
    let room = c.rooms.get(room).expect("room");
    let rs = room.lock();
    let seqs = rs.entries_between(0, rs.last_seq).map(|(s, _)| s).collect();
    (seqs, rs.last_seq)
}

#[test]
fn a_format_1_room_snapshot_restores_its_inline_entries() {
    let c = core();
    c.apply(&Record::UserRegistered {
        username: "Al".into(),
        hash: String::new(),
        ts: 0,
    });
    c.apply(&Record::RoomSnapshot {
        id: "r".into(),
        name: "general".into(),
        owner: "Al".into(),
        capacity: 10,
        last_seq: 7,
        members: vec!["Al".into()],
        entries: (5..=7)
            .map(|s| entry("r", s, EntryKind::Message, "Al", Some("hi")))
            .collect(),
        kept: 0,
        gov: None,
    });
    assert_eq!(kept_seqs(&c, "r"), (vec![5, 6, 7], 7));
}

#[test]
fn replaying_a_room_deletion_is_idempotent_and_keeps_the_owned_count() {
    let c = core();
    c.apply(&Record::UserRegistered {
        username: "Al".into(),
        hash: String::new(),
        ts: 0,
    });
    let created = |id: &str| Record::RoomCreated {
        id: id.into(),
        name: "n".into(),
        owner: "Al".into(),
        capacity: 5,
        ts: 0,
        visibility: Default::default(),
        topic: String::new(),
        dm_with: None,
    };
    let deleted = |id: &str| Record::RoomDeleted {
        id: id.into(),
        by: None,
    };
    for rec in [created("r"), created("r"), created("s"), deleted("r")] {
        c.apply(&rec);
    }
    assert_eq!(c.owned_by("al"), 1);
    // Again, and of a room never seen: nothing changes.
    c.apply(&deleted("r"));
    c.apply(&deleted("nowhere"));
    c.apply(&Record::Entry(entry("r", 2, EntryKind::Join, "Al", None)));
    assert!(c.rooms.get("r").is_none());
    assert!(c.rooms.get("s").is_some());
    assert_eq!(c.owned_by("al"), 1);
    assert!(c.user("al").unwrap().lock().rooms.is_empty());
    let al = c.user("al").unwrap();
    let listed = c.rooms(&al, "", None, 10).unwrap();
    assert_eq!(listed.rooms.len(), 1);
}

#[test]
fn a_dm_side_added_unanswered_answers_by_writing_and_a_repeated_mark_is_skipped() {
    let c = core();
    for name in ["Al", "Bo"] {
        c.apply(&Record::UserRegistered {
            username: name.into(),
            hash: String::new(),
            ts: 0,
        });
    }
    c.apply(&Record::RoomCreated {
        id: "d".into(),
        name: "Al, Bo".into(),
        owner: "Al".into(),
        capacity: 2,
        ts: 0,
        visibility: crate::protocol::Visibility::Private,
        topic: String::new(),
        dm_with: Some("Bo".into()),
    });
    let mark = Record::DmUnanswered {
        room: "d".into(),
        username: "Bo".into(),
        unanswered: true,
        at_seq: 2,
    };
    c.apply(&Record::Entry(entry("d", 1, EntryKind::Join, "Al", None)));
    c.apply(&Record::Entry(entry("d", 2, EntryKind::Join, "Bo", None)));
    c.apply(&mark);
    let unanswered = |who: &str| {
        let user = c.user(who).unwrap();
        let mut us = user.lock();
        c.room_load(&user, &mut us).unanswered
    };
    assert_eq!((unanswered("al"), unanswered("bo")), (0, 1));
    c.apply(&Record::Entry(entry(
        "d",
        3,
        EntryKind::Message,
        "Bo",
        Some("hi"),
    )));
    assert_eq!(unanswered("bo"), 0, "writing is answering");
    // The journal after a snapshot may repeat the mark: the room has gone past it.
    c.apply(&mark);
    assert_eq!(unanswered("bo"), 0);
}

#[test]
fn replaying_what_a_snapshot_holds_changes_nothing() {
    let c = core();
    let user = Record::UserRegistered {
        username: "Al".into(),
        hash: "h".into(),
        ts: 0,
    };
    c.apply(&user);
    c.apply(&Record::RoomSnapshot {
        id: "r".into(),
        name: "general".into(),
        owner: "Al".into(),
        capacity: 10,
        last_seq: 3,
        members: vec!["Al".into()],
        entries: Vec::new(),
        kept: 2,
        gov: None,
    });
    c.apply(&Record::KeptEntries {
        room: "r".into(),
        entries: vec![
            KeptEntry::new(2, EntryKind::Message, "Al", Some("two"), None),
            KeptEntry::new(3, EntryKind::Message, "Al", Some("three"), None),
        ],
    });
    // The journal after the snapshot repeats some of it, then goes on.
    c.apply(&user);
    c.apply(&Record::RoomCreated {
        id: "r".into(),
        name: "other".into(),
        owner: "Al".into(),
        capacity: 1,
        ts: 0,
        visibility: Default::default(),
        topic: String::new(),
        dm_with: None,
    });
    c.apply(&Record::Entry(entry("r", 3, EntryKind::Leave, "Al", None)));
    c.apply(&Record::Entry(entry(
        "r",
        4,
        EntryKind::Message,
        "Al",
        Some("four"),
    )));
    assert_eq!(kept_seqs(&c, "r"), (vec![2, 3, 4], 4));
    let room = c.rooms.get("r").unwrap();
    let rs = room.lock();
    assert_eq!(rs.gov.name, "general");
    assert!(
        rs.members.contains_key("al"),
        "the repeated leave was skipped"
    );
    let texts: Vec<_> = rs
        .ring
        .iter()
        .map(|e| e.text().map(str::to_string))
        .collect();
    assert_eq!(
        texts,
        [
            Some("two".into()),
            Some("three".into()),
            Some("four".into())
        ]
    );
    drop(rs);
    assert_eq!(c.user("al").unwrap().lock().hash, "h");
}
