//! The state-change records of the chat core, and the compact form of a kept timeline entry.
//!
//! Every change that must survive a restart is one [`Record`]. The live path builds the
//! record, applies it and hands it to the store; recovery replays the same records through
//! the same `Core::apply`. Records live here, below both the core and the journal, so the
//! store can encode them without knowing the core.
//!
//! # Replay is idempotent
//! A snapshot is taken while the server keeps running (see `store::snapshot`), so it may
//! already reflect some records of the journal that follows it. Applying a record to a state
//! that already holds it must change nothing: a user, session or room that exists is kept,
//! and an entry whose seq is not above its room's `last_seq` is skipped. Every new record
//! kind must keep this rule.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::protocol::{Entry, EntryExtra, EntryKind, Visibility};

// `Entry` is the largest variant (its optional fields, v1.2's among them) and also the most
// common record: boxing it would add an allocation to nearly every record for no saving.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// The data directory's identity; written when it is created, and anew when timelines
    /// may have been lost.
    Epoch { epoch: String },
    /// A server started on this data directory: the machine's boot id and its `--fsync`.
    Started { boot_id: String, fsync: String },
    /// The server stopped cleanly: everything before this is on disk.
    Stopped,
    /// A new account. `hash` is the self-describing PBKDF2 string of `chat::password`.
    UserRegistered {
        username: String,
        hash: String,
        ts: u64,
    },
    /// A user's password hash, re-made (at another iteration count) or changed.
    PasswordChanged { username: String, hash: String },
    /// A login. Only the SHA-256 of the token is kept, as hex.
    SessionStarted {
        token_hash: String,
        username: String,
        created: u64,
    },
    /// Logout or expiry.
    SessionEnded { token_hash: String },
    /// A new room; its owner's join follows as an entry.
    RoomCreated {
        id: String,
        name: String,
        owner: String,
        capacity: u32,
        ts: u64,
        #[serde(default, skip_serializing_if = "is_public")]
        visibility: Visibility,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        topic: String,
        /// A direct-message room between the owner and this user (`POST /api/v1/dms`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dm_with: Option<String>,
    },
    /// A room is gone with its timeline: its last member left (written after that `leave`
    /// entry; `by` is absent), or its owner or an administrator deleted it (`by`).
    /// Applying it to a state without the room changes nothing.
    RoomDeleted {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A timeline entry. `join` and `leave` entries also change membership.
    #[serde(deserialize_with = "known_entry")]
    Entry(Entry),
    /// A room as a snapshot keeps it. Since snapshot format 2 its kept entries follow as
    /// [`Record::KeptEntries`] (`kept` of them); a format-1 snapshot carries them inline.
    RoomSnapshot {
        id: String,
        name: String,
        owner: String,
        capacity: u32,
        last_seq: u64,
        members: Vec<String>,
        #[serde(
            default,
            deserialize_with = "known_entries",
            skip_serializing_if = "Vec::is_empty"
        )]
        entries: Vec<Entry>,
        #[serde(default)]
        kept: u64,
        /// Governance (v1.1); absent in older snapshots.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gov: Option<Box<GovernanceRecord>>,
    },
    /// `username` blocked (`blocked`) or unblocked `target`. An absolute state: replaying
    /// it again changes nothing.
    Blocked {
        username: String,
        target: String,
        blocked: bool,
    },
    /// Read markers of a room, written at most once a second per user and room: each
    /// user's marker moves up to the seq given (never back).
    ReadMarkers {
        room: String,
        markers: Vec<(String, u64)>,
    },
    /// `username` was invited to `room` by `by` while the room's last seq was `at_seq`.
    /// Later entries (a join, kick or ban) cancel it, so replay skips it when the room has
    /// already gone past `at_seq`: the snapshot then holds the invitation if it still stands.
    Invited {
        room: String,
        username: String,
        by: String,
        at_seq: u64,
    },
    /// In the DM `room`, the member `username` has not acted yet (`unanswered`: the other
    /// side's open added them, so the DM does not count toward their
    /// `--max-rooms-per-user`), or now has, by opening it (`false`; a message of theirs says
    /// so by itself), while the room's last seq was `at_seq`. Written after the join it
    /// marks. Later entries (their message, their leave) supersede it, so replay skips it when
    /// the room has already gone past `at_seq`: the snapshot then holds the flag.
    DmUnanswered {
        room: String,
        username: String,
        unanswered: bool,
        at_seq: u64,
    },
    /// The next kept entries of a room restored from a snapshot, oldest first, in the
    /// snapshot's binary encoding (never JSON).
    #[serde(skip)]
    KeptEntries {
        room: String,
        entries: Vec<KeptEntry>,
    },
    /// An invite code (`--registration invite`). Only the SHA-256 of the code is kept, as
    /// hex; `expires` is a ts. Applying it to a state that has the code changes nothing.
    InviteCodeCreated {
        hash: String,
        uses: u32,
        expires: u64,
    },
    /// A registration spent one use of an invite code: `remaining` uses are left (absolute,
    /// and never raises what the state holds, so a repeated record changes nothing). At 0 the
    /// code is gone.
    InviteCodeUsed { hash: String, remaining: u32 },
    /// An admin disabled (or enabled again) an account.
    UserDisabled { username: String, disabled: bool },
    /// Users last seen online at these times (ms since the epoch), written at most once a
    /// second for everyone who went offline meanwhile, and for everyone online at a clean
    /// stop. Each user's `last_seen` moves up to the time given, never back.
    LastSeen { seen: Vec<(String, u64)> },
}

/// A room's governance as a snapshot keeps it: what its moderation entries made of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GovernanceRecord {
    #[serde(default, skip_serializing_if = "is_public")]
    pub visibility: Visibility,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    /// The seq of each member's join, in the order of `members`.
    #[serde(default)]
    pub joined: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moderators: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bans: Vec<crate::protocol::BanView>,
    /// Mutes still running: username and end (ts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mutes: Vec<(String, u64)>,
    /// Pending invitations: username and who invited them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invites: Vec<(String, String)>,
    /// A DM room: its two sides, as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm: Option<(String, String)>,
    /// Each member's read marker, in the order of `members` (0 if never set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<u64>,
    /// A DM's members who have not acted in it (see [`Record::DmUnanswered`]); absent in
    /// older snapshots, whose members all count as having acted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unanswered: Vec<String>,
}

fn is_public(v: &Visibility) -> bool {
    *v == Visibility::Public
}

/// One kept timeline entry in one allocation: what a room's history ring holds.
///
/// The room and the seq are not stored: the ring knows both. Layout: `ts` (u64 LE), kind
/// (u8), flags (u8: bit 0 = has text, bit 1 = has extra fields), sender length (u8), nonce
/// length (u16 LE), then the sender, the nonce (its JSON text), with extra fields their
/// length (u16 LE) and their JSON (the members of an [`EntryExtra`] object, without braces),
/// and the text. A 100-byte message from a 7-character name costs 136 bytes plus the
/// allocation's header.
#[derive(Clone, PartialEq, Eq)]
pub struct KeptEntry(Arc<[u8]>);

const FIXED: usize = 13;
const HAS_TEXT: u8 = 1;
const HAS_EXTRA: u8 = 2;

/// Longest nonce kept with an entry, as JSON text. A longer one still acknowledges the live
/// `send`; it is just not echoed again in `history` answers.
pub const MAX_KEPT_NONCE: usize = 256;

impl std::fmt::Debug for KeptEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptEntry")
            .field("ts", &self.ts())
            .field("kind", &self.kind())
            .field("from", &self.from())
            .field("text", &self.text())
            .field("nonce", &self.nonce())
            .field("extra", &self.extra_json())
            .finish()
    }
}

/// An entry read back from the journal, a snapshot or the cluster's stream: its kind must be
/// one this server knows. The shared `Entry` decodes any other kind as `EntryKind::Other`
/// (clients ignore kinds they do not know); stored data with one is refused, as it was
/// before the types were shared.
fn known_entry<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
    let e = Entry::deserialize(d)?;
    if e.kind == EntryKind::Other {
        return Err(serde::de::Error::custom("unknown entry kind"));
    }
    Ok(e)
}

fn known_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
    let entries = Vec::<Entry>::deserialize(d)?;
    if entries.iter().any(|e| e.kind == EntryKind::Other) {
        return Err(serde::de::Error::custom("unknown entry kind"));
    }
    Ok(entries)
}

/// Entry kinds by their code in the kept encoding; a code never changes meaning.
const KINDS: [EntryKind; 13] = [
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

fn kind_code(kind: EntryKind) -> u8 {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

fn kind_of(code: u8) -> Option<EntryKind> {
    KINDS.get(code as usize).copied()
}

/// The members of `extra` as JSON, without the braces; empty when it has none.
fn extra_members(extra: &EntryExtra) -> String {
    if extra.is_empty() {
        return String::new();
    }
    let json = serde_json::to_string(extra).unwrap_or_default();
    json.get(1..json.len().saturating_sub(1))
        .unwrap_or_default()
        .to_string()
}

impl KeptEntry {
    /// `nonce` is the JSON text of the sender's nonce; one over `MAX_KEPT_NONCE` bytes is
    /// not kept. A sender name over 255 bytes is cut (usernames are at most 32).
    pub fn new(
        ts: u64,
        kind: EntryKind,
        from: &str,
        text: Option<&str>,
        nonce: Option<&str>,
    ) -> KeptEntry {
        KeptEntry::with_extra(ts, kind, from, text, nonce, &EntryExtra::default())
    }

    /// An entry with the optional fields of `extra` (a moderation entry's target, …).
    pub fn with_extra(
        ts: u64,
        kind: EntryKind,
        from: &str,
        text: Option<&str>,
        nonce: Option<&str>,
        extra: &EntryExtra,
    ) -> KeptEntry {
        let from = &from.as_bytes()[..from.len().min(255)];
        let nonce = nonce.filter(|n| n.len() <= MAX_KEPT_NONCE).unwrap_or("");
        let text = text.map(str::as_bytes);
        let extra = extra_members(extra);
        let extra = &extra.as_bytes()[..extra.len().min(u16::MAX as usize)];
        let len = FIXED + from.len() + nonce.len() + 2 + extra.len() + text.map_or(0, <[u8]>::len);
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(&ts.to_le_bytes());
        buf.push(kind_code(kind));
        let mut flags = if text.is_some() { HAS_TEXT } else { 0 };
        if !extra.is_empty() {
            flags |= HAS_EXTRA;
        }
        buf.push(flags);
        buf.push(from.len() as u8);
        buf.extend_from_slice(&(nonce.len() as u16).to_le_bytes());
        buf.extend_from_slice(from);
        buf.extend_from_slice(nonce.as_bytes());
        if !extra.is_empty() {
            buf.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            buf.extend_from_slice(extra);
        }
        if let Some(t) = text {
            buf.extend_from_slice(t);
        }
        KeptEntry(Arc::from(buf))
    }

    /// The entry of a journal record.
    pub fn from_entry(e: &Entry) -> KeptEntry {
        let nonce = e.nonce.as_ref().map(|n| n.to_string());
        let (text, nonce) = (e.text.as_deref(), nonce.as_deref());
        KeptEntry::with_extra(e.ts, e.kind, &e.from, text, nonce, &e.extra)
    }

    /// Reads the encoding of [`KeptEntry::as_bytes`] back; `None` if it is malformed.
    pub fn from_bytes(bytes: &[u8]) -> Option<KeptEntry> {
        let e = KeptEntry(Arc::from(bytes));
        let (from_end, nonce_end) = e.bounds()?;
        let text_start = e.text_start()?;
        kind_of(bytes[8])?;
        std::str::from_utf8(&bytes[FIXED..from_end]).ok()?;
        let nonce = std::str::from_utf8(&bytes[from_end..nonce_end]).ok()?;
        std::str::from_utf8(&bytes[text_start..]).ok()?;
        if let Some(extra) = e.extra_json() {
            // Written into JSON as it is, so it must be exactly what `with_extra` writes:
            // known fields, each once, none of them the entry's own keys.
            let parsed = serde_json::from_str::<EntryExtra>(&format!("{{{extra}}}")).ok()?;
            if extra.is_empty() || extra_members(&parsed) != extra {
                return None;
            }
        }
        // The nonce is written into JSON as it is (`write_json`), so it must read back as the
        // `Value` a record holds (`5e999` is JSON text, but no `Value`).
        if !nonce.is_empty() && serde_json::from_str::<serde_json::Value>(nonce).is_err() {
            return None;
        }
        if bytes[9] & HAS_TEXT == 0 && text_start != bytes.len() {
            return None;
        }
        Some(e)
    }

    /// Where the text starts: after the nonce, and the extra fields if any.
    fn text_start(&self) -> Option<usize> {
        let (_, nonce_end) = self.bounds()?;
        if self.0[9] & HAS_EXTRA == 0 {
            return Some(nonce_end);
        }
        let len = self.0.get(nonce_end..nonce_end + 2)?;
        let end = nonce_end + 2 + u16::from_le_bytes([len[0], len[1]]) as usize;
        (end <= self.0.len()).then_some(end)
    }

    /// The extra fields as JSON object members (no braces), if any.
    pub fn extra_json(&self) -> Option<&str> {
        if self.0[9] & HAS_EXTRA == 0 {
            return None;
        }
        let (_, nonce_end) = self.bounds()?;
        Some(self.str_at(nonce_end + 2, self.text_start()?))
    }

    /// Whether this is a message that was deleted since (it keeps no text).
    pub fn is_deleted(&self) -> bool {
        self.extra_json()
            .is_some_and(|e| e.contains("\"deleted\":true"))
    }

    /// The extra fields (a moderation entry's target, a mute's end, an update's changes).
    pub fn extra(&self) -> EntryExtra {
        self.extra_json()
            .and_then(|m| serde_json::from_str(&format!("{{{m}}}")).ok())
            .unwrap_or_default()
    }

    fn bounds(&self) -> Option<(usize, usize)> {
        let b = &self.0;
        if b.len() < FIXED {
            return None;
        }
        let from_end = FIXED + b[10] as usize;
        let nonce_end = from_end + u16::from_le_bytes([b[11], b[12]]) as usize;
        (nonce_end <= b.len()).then_some((from_end, nonce_end))
    }

    fn str_at(&self, from: usize, to: usize) -> &str {
        // Built from `&str`s or checked by `from_bytes`.
        std::str::from_utf8(self.0.get(from..to).unwrap_or_default()).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn ts(&self) -> u64 {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(ts)
    }

    pub fn kind(&self) -> EntryKind {
        kind_of(self.0[8]).unwrap_or(EntryKind::Message)
    }

    pub fn from(&self) -> &str {
        let (from_end, _) = self.bounds().unwrap_or((FIXED, FIXED));
        self.str_at(FIXED, from_end)
    }

    /// The sender's nonce as JSON text, if one was kept.
    pub fn nonce(&self) -> Option<&str> {
        let (from_end, nonce_end) = self.bounds()?;
        (nonce_end > from_end).then(|| self.str_at(from_end, nonce_end))
    }

    pub fn text(&self) -> Option<&str> {
        if self.0[9] & HAS_TEXT == 0 {
            return None;
        }
        Some(self.str_at(self.text_start()?, self.0.len()))
    }

    /// The contract's `Entry`; the nonce only if `with_nonce`.
    pub fn to_entry(&self, room: &str, seq: u64, with_nonce: bool) -> Entry {
        Entry {
            room: room.to_string(),
            seq,
            ts: self.ts(),
            kind: self.kind(),
            from: self.from().to_string(),
            text: self.text().map(str::to_string),
            nonce: self
                .nonce()
                .filter(|_| with_nonce)
                .and_then(|n| serde_json::from_str(n).ok()),
            extra: self.extra(),
        }
    }

    /// Appends the entry's JSON object (`{"room":…}`). `head` goes right after the opening
    /// brace (an `entry` frame's `"type":"entry",`); `nonce` is added as given (JSON text).
    pub fn write_json(
        &self,
        out: &mut Vec<u8>,
        head: &[u8],
        room: &str,
        seq: u64,
        nonce: Option<&str>,
    ) {
        out.push(b'{');
        out.extend_from_slice(head);
        out.extend_from_slice(b"\"room\":");
        write_str(out, room);
        out.extend_from_slice(b",\"seq\":");
        write_u64(out, seq);
        out.extend_from_slice(b",\"ts\":");
        write_u64(out, self.ts());
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(self.kind().as_str().as_bytes());
        out.extend_from_slice(b"\",\"from\":");
        write_str(out, self.from());
        if let Some(extra) = self.extra_json() {
            out.push(b',');
            out.extend_from_slice(extra.as_bytes());
        }
        if let Some(text) = self.text() {
            out.extend_from_slice(b",\"text\":");
            write_str(out, text);
        }
        if let Some(n) = nonce {
            out.extend_from_slice(b",\"nonce\":");
            out.extend_from_slice(n.as_bytes());
        }
        out.push(b'}');
    }

    /// The length of what [`KeptEntry::write_json`] appends with the same arguments (`head`
    /// given by its length), found without writing it: a streamed answer states its
    /// `Content-Length` before its body is put together.
    pub fn json_len(&self, head: usize, room: &str, seq: u64, nonce: Option<&str>) -> usize {
        // `{"room":` `,"seq":` `,"ts":` `,"kind":"` `","from":` `}`
        let mut n = 1 + head + 7 + json_str_len(room) + 7 + digits(seq) + 6 + digits(self.ts());
        n += 9 + self.kind().as_str().len() + 9 + json_str_len(self.from()) + 1;
        if let Some(extra) = self.extra_json() {
            n += 1 + extra.len();
        }
        if let Some(text) = self.text() {
            n += 8 + json_str_len(text);
        }
        if let Some(nonce) = nonce {
            n += 9 + nonce.len();
        }
        n
    }

    /// The journal record of this entry (`Record::Entry` as JSON), written without building
    /// an `Entry`.
    pub fn write_record(&self, out: &mut Vec<u8>, room: &str, seq: u64) {
        self.write_json(out, b"\"t\":\"entry\",", room, seq, self.nonce());
    }
}

/// What an `entry` frame's JSON starts with, for [`KeptEntry::write_json`].
pub const ENTRY_HEAD: &[u8] = b"\"type\":\"entry\",";

/// A JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing a `str` to a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Length of `s` as a JSON string literal, quotes included, as [`write_str`] writes it.
pub fn json_str_len(s: &str) -> usize {
    let escapes: usize = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\t' | b'\r' | 0x08 | 0x0c => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    s.len() + escapes + 2
}

/// Digits of `n` in decimal.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
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
                let e =
                    KeptEntry::with_extra(ts, EntryKind::Edit, "a\"b", text, Some("\"n\""), &extra);
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
}
