//! The compact form of a kept timeline entry ([`KeptEntry`]: one allocation per entry, what a
//! room's history ring holds) and the JSON writers that turn it into an `entry` frame or a
//! journal record without building an `Entry`.

use std::sync::Arc;

use crate::protocol::{Entry, EntryExtra, EntryKind};

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
mod tests;
