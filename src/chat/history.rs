//! Serving a room's history: `sync` answers over WebSocket, pages of `GET
//! /api/v1/rooms/{id}/messages`, and the recent history a joiner gets. Entries are copied
//! out of the ring under the room's lock (shared bytes, not copies) and encoded after it;
//! every answer draws on the user's history budget (`--history-byte-rate`).

use tungstenite::Bytes;

use super::policy::Access;
use super::rooms::{Room, RoomState};
use super::wire as frame;
use super::{ChatError, Core, User};
use crate::store::KeptEntry;

impl Core {
    /// The `history` frame answering `sync` from `since`. Entries are cut at a byte budget
    /// (half the outbound limit) so one answer cannot overflow the connection; `"more": true`
    /// then says to sync again from the last entry returned. The user's own entries carry
    /// the nonce they were sent with. The answer takes from the user's history budget
    /// (`--history-byte-rate`); the entries are copied out of the ring (shared, not copied)
    /// under the room's lock and encoded after it.
    pub fn sync_frame(&self, user: &User, room_id: &str, since: u64) -> Result<Bytes, ChatError> {
        self.history_ready(user)?;
        let room = self.room(room_id)?;
        let budget = self.cfg.max_outbound_bytes / 2;
        let (entries, complete, cut_short) = {
            let rs = room.lock();
            super::policy::reach(&rs, &user.key, Access::Other)?;
            if !rs.members.contains_key(&user.key) {
                return Err(ChatError::NotAMember);
            }
            let last = room.committed().min(rs.last_seq);
            let complete = since >= last || since + 1 >= rs.first_seq();
            // A kept entry is hardly larger than its JSON, so entries past the budget in kept
            // bytes would be cut anyway; more than that is not copied out.
            let (mut entries, mut kept, mut cut_short) = (Vec::new(), 0, false);
            for (seq, e) in rs.entries_between(since, last) {
                if !entries.is_empty() && kept > budget {
                    cut_short = true;
                    break;
                }
                kept += e.as_bytes().len();
                entries.push((seq, e.clone()));
            }
            (entries, complete, cut_short)
        };
        let entries = entries.iter().map(|(seq, e)| (*seq, e));
        let f = history_frame_of(&room.id, entries, &user.name, complete, budget, cut_short);
        self.charge_history(user, f.len());
        Ok(f)
    }

    /// A page of history: at most `limit` entries with `seq < before`, oldest first, and the
    /// oldest kept seq; the user's own entries carry their nonce. The entries are copied out
    /// of the ring under the room's lock (shared, not copied: at most `limit` reference
    /// counts) and written after it, piece by piece ([`HistoryPage::write_piece`]). The page
    /// takes its bytes from the user's history budget (`--history-byte-rate`): over it,
    /// `rate_limited` before anything is read.
    pub fn history_page(
        &self,
        user: &User,
        room_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<HistoryPage, ChatError> {
        self.history_ready(user)?;
        let room = self.room(room_id)?;
        let page = {
            let rs = room.lock();
            super::policy::reach(&rs, &user.key, Access::Other)?;
            if !rs.members.contains_key(&user.key) {
                return Err(ChatError::NotAMember);
            }
            let last = room.committed().min(rs.last_seq);
            let upto = before.map_or(last, |b| b.saturating_sub(1).min(last));
            let from = upto.saturating_sub(limit as u64);
            HistoryPage {
                room: room.id.clone(),
                own: user.name.clone(),
                entries: rs
                    .entries_between(from, upto)
                    .map(|(seq, e)| (seq, e.clone()))
                    .collect(),
                first_seq: rs.first_seq(),
            }
        };
        self.charge_history(user, page.len());
        Ok(page)
    }
}

/// A page of history (`GET /rooms/{id}/messages`) copied out of a room's ring, written as
/// `{"entries":[Entry],"first_seq"}` in pieces of [`PIECE_ENTRIES`] entries, so that a large
/// page is encoded outside the room's lock and a client that went away stops its writing.
pub struct HistoryPage {
    room: String,
    /// Whose entries carry their nonce.
    own: String,
    entries: Vec<(u64, KeptEntry)>,
    first_seq: u64,
}

/// Entries per piece of a [`HistoryPage`]: about 128 KiB at 4 KB an entry.
const PIECE_ENTRIES: usize = 32;

const PAGE_OPEN: &[u8] = b"{\"entries\":[";
const PAGE_CLOSE: &[u8] = b"],\"first_seq\":";

impl HistoryPage {
    fn nonce<'a>(&self, e: &'a KeptEntry) -> Option<&'a str> {
        e.nonce().filter(|_| e.from() == self.own)
    }

    /// The page's length in bytes, before any of it is written.
    pub fn len(&self) -> usize {
        let entries: usize = self
            .entries
            .iter()
            .map(|(seq, e)| e.json_len(0, &self.room, *seq, self.nonce(e)))
            .sum();
        let commas = self.entries.len().saturating_sub(1);
        let first = self.first_seq.to_string().len();
        PAGE_OPEN.len() + entries + commas + PAGE_CLOSE.len() + first + 1
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends piece `i` of the page to `out`; false, appending nothing, past the last piece.
    pub fn write_piece(&self, i: usize, out: &mut Vec<u8>) -> bool {
        let pieces = self.entries.len().div_ceil(PIECE_ENTRIES);
        if i > pieces {
            return false;
        }
        if i == 0 {
            out.extend_from_slice(PAGE_OPEN);
        }
        let from = i * PIECE_ENTRIES;
        for (n, (seq, e)) in self
            .entries
            .iter()
            .enumerate()
            .skip(from)
            .take(PIECE_ENTRIES)
        {
            if n > 0 {
                out.push(b',');
            }
            e.write_json(out, b"", &self.room, *seq, self.nonce(e));
        }
        if i == pieces {
            out.extend_from_slice(PAGE_CLOSE);
            out.extend_from_slice(self.first_seq.to_string().as_bytes());
            out.push(b'}');
        }
        true
    }
}

/// A `history` frame of the kept entries with `since < seq <= upto`, at most `budget` bytes
/// of entries (at least one), written straight from the kept bytes. `own` names the user
/// whose entries carry their nonce.
pub(super) fn history_frame(
    room: &Room,
    rs: &RoomState,
    own: &str,
    since: u64,
    upto: u64,
    complete: bool,
    budget: usize,
) -> Bytes {
    let entries = rs.entries_between(since, upto);
    history_frame_of(&room.id, entries, own, complete, budget, false)
}

/// A `history` frame of `entries` of room `room_id`, cut after `budget` bytes of entries (at
/// least one). `cut_short` says `entries` stop before the end: the frame says `more` even
/// when the budget did not cut it.
fn history_frame_of<'a>(
    room_id: &str,
    entries: impl Iterator<Item = (u64, &'a KeptEntry)>,
    own: &str,
    complete: bool,
    budget: usize,
    cut_short: bool,
) -> Bytes {
    let mut json = Vec::with_capacity(256);
    json.extend_from_slice(b"{\"type\":\"history\",\"room\":");
    crate::store::record::write_str(&mut json, room_id);
    json.extend_from_slice(b",\"entries\":[");
    let start = json.len();
    let mut more = cut_short;
    for (n, (seq, e)) in entries.enumerate() {
        if n > 0 && json.len() - start > budget {
            more = true;
            break;
        }
        if n > 0 {
            json.push(b',');
        }
        let nonce = e.nonce().filter(|_| e.from() == own);
        e.write_json(&mut json, b"", room_id, seq, nonce);
    }
    json.extend_from_slice(b"],\"complete\":");
    json.extend_from_slice(if complete { b"true" } else { b"false" });
    if more {
        // Extension: the answer was cut to fit the connection's output budget; sync again
        // from the last entry's seq for the rest.
        json.extend_from_slice(b",\"more\":true");
    }
    json.push(b'}');
    frame::text(&json)
}
