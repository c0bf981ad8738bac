//! The kept encoding reads back what it was given, refuses malformed bytes, and writes the
//! contract's JSON and a journal record that reads back as the entry.

use super::*;
use crate::store::Record;
use serde_json::{json, Value};

#[test]
fn json_len_is_the_length_write_json_writes() {
    let extra = EntryExtra {
        mentions: Some(vec!["bob".into()]),
        refers: Some(7),
        ..EntryExtra::default()
    };
    let texts = [
        None,
        Some(""),
        Some("plain"),
        Some("\"\\\n\t\r\u{8}\u{c}\u{1}\u{1f}é\u{7f}/"),
    ];
    for text in texts {
        for (ts, seq) in [(0, 0), (9, 10), (1_700_000_000_000, u64::MAX)] {
            let e = KeptEntry::with_extra(ts, EntryKind::Edit, "a\"b", text, Some("\"n\""), &extra);
            let plain = KeptEntry::new(ts, EntryKind::Message, "al", text, None);
            for (e, nonce) in [(&e, Some("\"n\"")), (&e, None), (&plain, None)] {
                for head in [&b""[..], ENTRY_HEAD] {
                    let mut out = Vec::new();
                    e.write_json(&mut out, head, "r\u{1}", seq, nonce);
                    assert_eq!(e.json_len(head.len(), "r\u{1}", seq, nonce), out.len());
                }
            }
        }
    }
}

#[test]
fn kept_entries_read_back_what_they_were_given() {
    let cases = [
        (
            EntryKind::Message,
            "alice",
            Some("hello \"there\"\n"),
            Some("\"n-1\""),
        ),
        (EntryKind::Join, "bob", None, None),
        (EntryKind::Leave, "carol_x", None, Some("42")),
        (EntryKind::Message, "dave", Some(""), None),
        (
            EntryKind::Message,
            "eve",
            Some("ünïcødé ✓"),
            Some("{\"a\":[1,2]}"),
        ),
    ];
    for (kind, from, text, nonce) in cases {
        let e = KeptEntry::new(1_764_600_000_123, kind, from, text, nonce);
        assert_eq!(e.ts(), 1_764_600_000_123);
        assert_eq!(e.kind(), kind);
        assert_eq!(e.from(), from);
        assert_eq!(e.text(), text);
        assert_eq!(e.nonce(), nonce);
        let again = KeptEntry::from_bytes(e.as_bytes()).expect("valid bytes");
        assert_eq!(again, e);
    }
}

#[test]
fn an_overlong_nonce_is_not_kept() {
    let long = format!("\"{}\"", "x".repeat(MAX_KEPT_NONCE));
    let e = KeptEntry::new(1, EntryKind::Message, "a", Some("t"), Some(&long));
    assert_eq!(e.nonce(), None);
    assert_eq!(e.text(), Some("t"));
}

#[test]
fn malformed_bytes_are_refused() {
    let good = KeptEntry::new(1, EntryKind::Message, "abc", Some("hi"), Some("1"));
    let bytes = good.as_bytes();
    assert!(KeptEntry::from_bytes(&bytes[..FIXED - 1]).is_none());
    assert!(KeptEntry::from_bytes(&bytes[..FIXED + 2]).is_none());
    let mut bad_kind = bytes.to_vec();
    bad_kind[8] = 200;
    assert!(KeptEntry::from_bytes(&bad_kind).is_none());
    let mut bad_utf8 = bytes.to_vec();
    bad_utf8[FIXED] = 0xff;
    assert!(KeptEntry::from_bytes(&bad_utf8).is_none());
}

/// Found by `fuzz/` (journal_records): a nonce that is UTF-8 but not JSON text was
/// accepted, and `write_record` then wrote a journal record that cannot be read back.
#[test]
fn a_nonce_that_is_not_json_is_refused() {
    let mut crash = vec![7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 0];
    crash.extend_from_slice(&[0; 88]);
    crash.extend_from_slice(b"al\"n0\"hsllo");
    assert!(KeptEntry::from_bytes(&crash).is_none());
    // A nonce that is JSON text but a number no `Value` holds.
    let crash =
        b"\x07\0\0\0\0\0\0\x57\0\x01\x02\x14\0\r\r5e887777777777777788777777\0\0\0\0\0\0\0mlo";
    assert_eq!(crash.len(), 51);
    assert!(KeptEntry::from_bytes(crash).is_none());
    for nonce in ["\"n", "1 2", "{", "nul", "5e887777777777777788"] {
        let e = KeptEntry::new(1, EntryKind::Message, "a", Some("t"), Some(nonce));
        assert!(KeptEntry::from_bytes(e.as_bytes()).is_none(), "{nonce}");
    }
    for nonce in ["\"n\"", " 1 ", "{\"a\":[null]}"] {
        let e = KeptEntry::new(1, EntryKind::Message, "a", Some("t"), Some(nonce));
        let again = KeptEntry::from_bytes(e.as_bytes()).expect(nonce);
        let mut out = Vec::new();
        again.write_record(&mut out, "r", 1);
        assert!(serde_json::from_slice::<Record>(&out).is_ok(), "{nonce}");
    }
}

/// The shared `Entry` decodes a kind it does not know as `Other` (for clients); the
/// server's stored records still refuse one, and keep every kind of the contract.
#[test]
fn stored_entries_of_unknown_kinds_are_refused() {
    let rec = |kind: &str| {
        format!(r#"{{"t":"entry","room":"r","seq":1,"ts":2,"kind":"{kind}","from":"al"}}"#)
    };
    assert!(serde_json::from_str::<Record>(&rec("sparkle")).is_err());
    let snap = r#"{"t":"room_snapshot","id":"r","name":"n","owner":"al","capacity":9,"last_seq":1,"members":[],"entries":[{"room":"r","seq":1,"ts":2,"kind":"sparkle","from":"al"}]}"#;
    assert!(serde_json::from_str::<Record>(snap).is_err());
    assert!(serde_json::from_str::<Record>(&snap.replace("sparkle", "join")).is_ok());
    for kind in EntryKind::ALL {
        let json = rec(kind.as_str());
        let Ok(Record::Entry(e)) = serde_json::from_str(&json) else {
            panic!("{kind:?} is not an entry record");
        };
        let kept = KeptEntry::from_entry(&e);
        assert_eq!(kept.kind(), kind);
        assert_eq!(KeptEntry::from_bytes(kept.as_bytes()), Some(kept));
    }
}

#[test]
fn json_matches_the_contract_entry() {
    let e = KeptEntry::new(7, EntryKind::Message, "al", Some("a\u{1}b"), Some("\"n\""));
    let mut out = Vec::new();
    e.write_json(&mut out, ENTRY_HEAD, "r1", 9, e.nonce());
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({"type":"entry","room":"r1","seq":9,"ts":7,"kind":"message","from":"al","text":"a\u{1}b","nonce":"n"})
    );
    let entry = e.to_entry("r1", 9, true);
    let mut plain = Vec::new();
    e.write_json(&mut plain, b"", "r1", 9, e.nonce());
    assert_eq!(
        serde_json::from_slice::<Value>(&plain).unwrap(),
        serde_json::to_value(&entry).unwrap()
    );
    let join = KeptEntry::new(7, EntryKind::Join, "al", None, None);
    let mut out = Vec::new();
    join.write_json(&mut out, b"", "r1", 1, None);
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({"room":"r1","seq":1,"ts":7,"kind":"join","from":"al"})
    );
}

#[test]
fn the_journal_record_reads_back_as_the_entry() {
    let e = KeptEntry::new(5, EntryKind::Message, "al", Some("x"), Some("[1]"));
    let mut out = Vec::new();
    e.write_record(&mut out, "r", 3);
    let rec: Record = serde_json::from_slice(&out).unwrap();
    assert_eq!(rec, Record::Entry(e.to_entry("r", 3, true)));
    assert_eq!(KeptEntry::from_entry(&e.to_entry("r", 3, true)), e);
}

#[test]
fn moderation_entries_keep_their_extra_fields_through_the_journal() {
    use crate::protocol::{RoomChanges, Visibility};
    let cases = [
        (EntryKind::Kick, Some("spam"), EntryExtra::target("carol")),
        (
            EntryKind::Mute,
            None,
            EntryExtra {
                until: Some(1_764_600_060_000),
                ..EntryExtra::target("dave")
            },
        ),
        (
            EntryKind::Update,
            None,
            EntryExtra {
                changes: Some(RoomChanges {
                    name: Some("new \"name\"".into()),
                    topic: Some(String::new()),
                    visibility: Some(Visibility::Private),
                }),
                ..EntryExtra::default()
            },
        ),
    ];
    for (kind, text, extra) in cases {
        let e = KeptEntry::with_extra(9, kind, "alice", text, None, &extra);
        assert_eq!((e.kind(), e.text(), e.extra()), (kind, text, extra.clone()));
        assert_eq!(KeptEntry::from_bytes(e.as_bytes()).as_ref(), Some(&e));
        let mut out = Vec::new();
        e.write_record(&mut out, "r", 4);
        let rec: Record = serde_json::from_slice(&out).unwrap();
        let Record::Entry(entry) = &rec else {
            panic!("{rec:?}")
        };
        assert_eq!(entry.extra, extra);
        assert_eq!(KeptEntry::from_entry(entry), e);
        let mut frame = Vec::new();
        e.write_json(&mut frame, ENTRY_HEAD, "r", 4, None);
        let v: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(v["kind"], kind.as_str());
        if let Some(target) = &extra.target {
            assert_eq!(v["target"], json!(target));
        }
    }
    // Extra members that are not what `with_extra` writes are refused: unknown or
    // repeated keys would make the entry's JSON ambiguous.
    for members in [
        r#""room":"x""#,
        r#""target":"b","target":"c""#,
        r#""target": "b""#,
    ] {
        let mut bytes = KeptEntry::new(1, EntryKind::Ban, "a", None, None)
            .as_bytes()
            .to_vec();
        bytes[9] |= HAS_EXTRA;
        bytes.extend_from_slice(&(members.len() as u16).to_le_bytes());
        bytes.extend_from_slice(members.as_bytes());
        assert!(KeptEntry::from_bytes(&bytes).is_none(), "{members}");
    }
    // Extra bytes that are not object members are refused.
    let mut bad =
        KeptEntry::with_extra(1, EntryKind::Ban, "a", None, None, &EntryExtra::target("b"))
            .as_bytes()
            .to_vec();
    let at = bad.len() - 3;
    bad[at] = b'{';
    assert!(KeptEntry::from_bytes(&bad).is_none());
}
