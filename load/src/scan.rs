//! Building the generator's message texts and finding them again in server frames, without
//! JSON parsing.
//!
//! Every text the generator posts starts with a stamp, `~p<phase>t<nanos>~`, where `nanos` is
//! the send time on the generator's monotonic clock ([`crate::stats::Clock`]) and `phase`
//! says which measurement the message belongs to; the rest is padding up to the wanted
//! length. The characters of the stamp need no JSON escaping and survive the server's
//! filtering (no control characters), so the stamp appears verbatim in every `entry` frame.

use memchr::memmem;
use std::sync::LazyLock;

static TYPE_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"type\":\""));
static STAMP_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"~p"));
static USERNAME_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"username\":\""));
static ONLINE_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"online\":"));
static ROOM_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"room\":\""));
static SEQ_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"seq\":"));

/// The server frame types of the contract, told apart by a scan for `"type":"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    Hello,
    Entry,
    History,
    Presence,
    Reply,
    Error,
    Other,
}

/// Finds the frame's `type` without parsing the JSON.
///
/// The first `"type":"` in a contract frame is its own: entries carry `kind`, not `type`, and
/// a `"` inside any string value is escaped, so no string value can contain the needle.
pub fn frame_type(payload: &[u8]) -> FrameType {
    let Some(at) = TYPE_FINDER.find(payload) else {
        return FrameType::Other;
    };
    let rest = &payload[at + 8..];
    let is =
        |word: &[u8]| rest.len() > word.len() && rest.starts_with(word) && rest[word.len()] == b'"';
    if is(b"entry") {
        FrameType::Entry
    } else if is(b"hello") {
        FrameType::Hello
    } else if is(b"history") {
        FrameType::History
    } else if is(b"presence") {
        FrameType::Presence
    } else if is(b"reply") {
        FrameType::Reply
    } else if is(b"error") {
        FrameType::Error
    } else {
        FrameType::Other
    }
}

/// A stamp found in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub phase: u32,
    pub sent_ns: u64,
}

/// One server `entry` frame (unmasked, final) carrying a stamped text of `len` bytes, shaped
/// like the server's: for the generator's own speed checks against stand-in servers.
pub fn sample_entry_frame(stamp: Stamp, len: usize) -> Vec<u8> {
    let mut text = Vec::new();
    write_text(&mut text, stamp, len);
    let text = String::from_utf8(text).unwrap_or_default();
    let payload = format!(
        r#"{{"type":"entry","room":"r7Hc2kQ9","seq":123456,"ts":1764151200000,"kind":"message","from":"ld7f3k2a_123","text":"{text}"}}"#
    );
    let mut frame = vec![0x81u8, 126];
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload.as_bytes());
    frame
}

/// Appends a message text of exactly `len` bytes (or just the stamp, if that is longer).
pub fn write_text(out: &mut Vec<u8>, stamp: Stamp, len: usize) {
    let start = out.len();
    out.extend_from_slice(b"~p");
    push_u64(out, u64::from(stamp.phase));
    out.push(b't');
    push_u64(out, stamp.sent_ns);
    out.push(b'~');
    let written = out.len() - start;
    if written < len {
        out.resize(start + len, b'x');
    }
}

/// Appends the decimal digits of `v`.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Finds the first well-formed stamp in `payload`.
pub fn find_stamp(payload: &[u8]) -> Option<Stamp> {
    let mut from = 0;
    while let Some(at) = STAMP_FINDER.find(&payload[from..]) {
        let start = from + at + 2;
        if let Some(stamp) = parse_stamp(&payload[start..]) {
            return Some(stamp);
        }
        from = start;
    }
    None
}

/// The first `username` string of a frame, without its quotes: in `hello` and `presence`
/// frames, the frame's own. Usernames are `[A-Za-z0-9_-]`, so they never carry an escape.
pub fn username(payload: &[u8]) -> Option<&[u8]> {
    let start = USERNAME_FINDER.find(payload)? + 12;
    let len = memchr::memchr(b'"', &payload[start..])?;
    Some(&payload[start..start + len])
}

/// The user and state of a `presence` frame, `{"type":"presence","username","online"}`.
pub fn presence(payload: &[u8]) -> Option<(&[u8], bool)> {
    let name = username(payload)?;
    let at = ONLINE_FINDER.find(payload)? + 9;
    match payload
        .get(at..)?
        .iter()
        .find(|b| !b.is_ascii_whitespace())?
    {
        b't' => Some((name, true)),
        b'f' => Some((name, false)),
        _ => None,
    }
}

/// The room id (without quotes) and seq of an `entry` frame,
/// `{"type":"entry","room","seq",...}`. The first `"room":"` and `"seq":` of an entry frame
/// are its own: a string value cannot hold an unescaped `"`, and room ids are URL-safe, so
/// they never carry an escape.
pub fn entry_room_seq(payload: &[u8]) -> Option<(&[u8], u64)> {
    let start = ROOM_FINDER.find(payload)? + 8;
    let len = memchr::memchr(b'"', &payload[start..])?;
    let room = &payload[start..start + len];
    let at = SEQ_FINDER.find(payload)? + 6;
    let rest = payload.get(at..)?;
    let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let (seq, _) = parse_digits(&rest[skip..])?;
    Some((room, seq))
}

fn parse_stamp(s: &[u8]) -> Option<Stamp> {
    let (phase, used) = parse_digits(s)?;
    let s = s.get(used..)?;
    if s.first() != Some(&b't') {
        return None;
    }
    let (sent_ns, used) = parse_digits(&s[1..])?;
    if s.get(1 + used) != Some(&b'~') {
        return None;
    }
    Some(Stamp {
        phase: u32::try_from(phase).ok()?,
        sent_ns,
    })
}

fn parse_digits(s: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in s.iter().take(20) {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        n += 1;
    }
    (n > 0).then_some((v, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_protocol::{Entry, EntryKind, Room, ServerFrame};

    /// The scans read what the shared frame types write (the server's JSON), and the
    /// generator's sample entry frame is a contract `entry` frame.
    #[test]
    fn scans_agree_with_the_shared_frame_types() {
        let entry = Entry {
            room: "r7Hc2kQ9".into(),
            seq: 41,
            ts: 1_764_151_200_000,
            kind: EntryKind::Message,
            from: "ld_1".into(),
            text: Some("~p3t99~xx \"q\" \"room\":\"no\"".into()),
            ..Entry::default()
        };
        let room = Room {
            id: "r1".into(),
            name: "lobby".into(),
            owner: "ld_1".into(),
            members: 1,
            capacity: 9,
            last_seq: 0,
            kind: "room".into(),
            visibility: Default::default(),
            topic: String::new(),
            role: None,
            read_seq: None,
            unread: None,
        };
        let cases = [
            (
                ServerFrame::Hello {
                    username: "ld_1".into(),
                    epoch: "e".into(),
                    heartbeat_ms: 20_000,
                    rooms: vec![room.clone()],
                },
                FrameType::Hello,
            ),
            (
                ServerFrame::Entry(Box::new(entry.clone())),
                FrameType::Entry,
            ),
            (
                ServerFrame::History {
                    room: "r1".into(),
                    entries: vec![entry.clone()],
                    complete: true,
                    more: false,
                },
                FrameType::History,
            ),
            (
                ServerFrame::Presence {
                    username: "ld_2".into(),
                    online: false,
                },
                FrameType::Presence,
            ),
            (
                ServerFrame::Reply {
                    nonce: None,
                    command: "me".into(),
                    text: "t".into(),
                    data: serde_json::Value::Null,
                },
                FrameType::Reply,
            ),
            (
                ServerFrame::Error {
                    code: "rate_limited".into(),
                    message: "m".into(),
                    nonce: None,
                    retry_after_ms: Some(5),
                },
                FrameType::Error,
            ),
            (ServerFrame::Joined { room }, FrameType::Other),
            (
                ServerFrame::Typing {
                    room: "r1".into(),
                    username: "ld_2".into(),
                },
                FrameType::Other,
            ),
        ];
        for (frame, want) in cases {
            let json = serde_json::to_vec(&frame).unwrap();
            assert_eq!(
                frame_type(&json),
                want,
                "{}",
                String::from_utf8_lossy(&json)
            );
            match frame {
                ServerFrame::Hello { username: u, .. } => {
                    assert_eq!(username(&json), Some(u.as_bytes()));
                }
                ServerFrame::Presence {
                    username: u,
                    online,
                } => assert_eq!(presence(&json), Some((u.as_bytes(), online))),
                ServerFrame::Entry(e) => {
                    assert_eq!(entry_room_seq(&json), Some((e.room.as_bytes(), e.seq)));
                    let stamp = Stamp {
                        phase: 3,
                        sent_ns: 99,
                    };
                    assert_eq!(find_stamp(&json), Some(stamp));
                }
                _ => {}
            }
        }
        let stamp = Stamp {
            phase: 2,
            sent_ns: 7,
        };
        let sample = sample_entry_frame(stamp, 100);
        let decoded: ServerFrame = serde_json::from_slice(&sample[4..]).unwrap();
        let ServerFrame::Entry(e) = decoded else {
            panic!("not an entry: {decoded:?}");
        };
        assert_eq!(
            (e.kind, e.text.as_ref().map(String::len)),
            (EntryKind::Message, Some(100))
        );
        assert_eq!(find_stamp(e.text.unwrap().as_bytes()), Some(stamp));
    }

    #[test]
    fn texts_have_the_asked_length_and_scan_back() {
        for (phase, ns, len) in [(0, 0, 100), (7, 123_456_789_012, 100), (31, u64::MAX, 10)] {
            let stamp = Stamp { phase, sent_ns: ns };
            let mut text = Vec::new();
            write_text(&mut text, stamp, len);
            let stamp_len = format!("~p{phase}t{ns}~").len();
            assert_eq!(text.len(), len.max(stamp_len));
            assert_eq!(find_stamp(&text), Some(stamp));
        }
    }

    #[test]
    fn finds_stamps_inside_entry_frames() {
        let mut text = Vec::new();
        write_text(
            &mut text,
            Stamp {
                phase: 3,
                sent_ns: 42,
            },
            100,
        );
        let text = String::from_utf8(text).unwrap();
        let frame = format!(
            r#"{{"type":"entry","room":"r~p1","seq":9,"ts":1,"kind":"message","from":"u~p","text":"{text}","nonce":"n1"}}"#
        );
        assert_eq!(frame_type(frame.as_bytes()), FrameType::Entry);
        assert_eq!(
            find_stamp(frame.as_bytes()),
            Some(Stamp {
                phase: 3,
                sent_ns: 42
            })
        );
        assert_eq!(find_stamp(br#"{"text":"~p12x~p3t~ ~p4t5"}"#), None);
        assert_eq!(find_stamp(b"~p99999999999999999999999t1~"), None);
    }

    #[test]
    fn classifies_frame_types() {
        let cases: [(&[u8], FrameType); 9] = [
            (br#"{"type":"hello","username":"a"}"#, FrameType::Hello),
            (br#"{"type":"entry","room":"x"}"#, FrameType::Entry),
            (br#"{"room":"x","type":"entry"}"#, FrameType::Entry),
            (br#"{"type":"history","entries":[]}"#, FrameType::History),
            (br#"{"type":"presence"}"#, FrameType::Presence),
            (br#"{"type":"reply"}"#, FrameType::Reply),
            (br#"{"type":"error","code":"bad_frame"}"#, FrameType::Error),
            (br#"{"type":"entryx"}"#, FrameType::Other),
            (br#"{"kind":"entry"}"#, FrameType::Other),
        ];
        for (payload, want) in cases {
            assert_eq!(
                frame_type(payload),
                want,
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn reads_presence_frames() {
        type Case<'a> = (&'a [u8], Option<(&'a [u8], bool)>);
        let cases: [Case; 5] = [
            (
                br#"{"type":"presence","username":"ld0a1b2c_17","online":true}"#,
                Some((b"ld0a1b2c_17", true)),
            ),
            (
                br#"{"type":"presence","online": false,"username":"a-b"}"#,
                Some((b"a-b", false)),
            ),
            (br#"{"type":"presence","username":"x"}"#, None),
            (br#"{"type":"presence","username":"x","online":null}"#, None),
            (br#"{"type":"presence","online":true}"#, None),
        ];
        for (payload, want) in cases {
            assert_eq!(
                presence(payload),
                want,
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
        assert_eq!(
            username(br#"{"type":"hello","username":"me","rooms":[]}"#),
            Some(&b"me"[..])
        );
    }

    #[test]
    fn finds_room_and_seq_of_entries() {
        let frame = sample_entry_frame(
            Stamp {
                phase: 1,
                sent_ns: 5,
            },
            100,
        );
        // Skip the 4-byte frame header of the sample.
        assert_eq!(
            entry_room_seq(&frame[4..]),
            Some((&b"r7Hc2kQ9"[..], 123_456))
        );
        let spaced = br#"{"type": "entry", "room": "x", "seq": 9}"#;
        assert_eq!(
            entry_room_seq(spaced),
            None,
            "the scan expects the server's compact JSON"
        );
        let text_first =
            br#"{"type":"entry","room":"r1","seq":42,"text":"\"room\":\"r2\",\"seq\":7"}"#;
        assert_eq!(entry_room_seq(text_first), Some((&b"r1"[..], 42)));
        assert_eq!(entry_room_seq(br#"{"type":"entry","room":"r1"}"#), None);
    }

    #[test]
    fn push_u64_writes_decimal() {
        for v in [0u64, 9, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }
}
