//! A room's timeline: appending entries and broadcasting them once acknowledged, checking
//! and posting messages under the rate limits, and reading entries back (`sync`,
//! `history`).

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::oneshot;

use super::filter::Filter;
use super::rooms::{Room, RoomState};
use super::{
    deliver_to, encode_entry, ChatError, Commit, Conn, Core, Fanout, Posted, Record, User,
};
use crate::config;
use crate::metrics::Metrics;
use crate::protocol::{Entry, EntryKind};

impl Core {
    /// Hands an entry the caller has already applied to the store, and broadcasts it once the
    /// store acknowledges it. Called under the room's lock, so the store sees each room's
    /// entries in seq order and so do subscribers. `fanout` overrides the recipients, and names the
    /// sender's connection and nonce for the acknowledging copy.
    pub(super) fn append_entry(
        &self,
        room: &Arc<Room>,
        rs: &mut RoomState,
        entry: Entry,
        fanout: Option<Fanout>,
    ) -> Commit {
        let Fanout {
            subscribers,
            ack,
            preface,
        } = fanout.unwrap_or_else(|| Fanout {
            subscribers: rs.subscribers.clone(),
            ack: None,
            preface: None,
        });
        let rec = Record::Entry(entry);
        let room = room.clone();
        let metrics = self.metrics.clone();
        let (tx, rx) = oneshot::channel();
        // Building the frame from the record after the store has it keeps one copy of the text.
        let deliver = move |rec: &Record| {
            let Record::Entry(entry) = rec else { return };
            room.set_committed(entry.seq);
            let mut delivered = 0;
            if let Some((conns, frame)) = &preface {
                for c in conns {
                    delivered += deliver_to(&metrics, c, frame);
                }
            }
            let shared = encode_entry(entry, None);
            for c in subscribers.iter() {
                let frame = match &ack {
                    Some((id, nonce)) if *id == c.id => encode_entry(entry, Some(nonce)),
                    _ => shared.clone(),
                };
                delivered += deliver_to(&metrics, c, &frame);
            }
            Metrics::add(&metrics.frames_delivered_total, delivered);
            Metrics::add(&metrics.entries_appended_total, 1);
            let _ = tx.send(());
        };
        self.store.append_entry(rec, Box::new(deliver));
        Commit(rx)
    }

    /// Validates the text of a `send` frame: a command, or a filtered message.
    pub fn parse_send<'a>(&self, text: &'a str) -> Result<Posted<'a>, ChatError> {
        if text.starts_with('/') && !text.starts_with("//") {
            return Ok(Posted::Command(text));
        }
        let text = text.strip_prefix('/').unwrap_or(text);
        let clean = Filter::strip_controls(text);
        let trimmed = clean.trim();
        if trimmed.is_empty() {
            return Err(ChatError::EmptyMessage);
        }
        if trimmed.len() > config::MAX_MESSAGE_BYTES {
            return Err(ChatError::MessageTooLong);
        }
        Ok(Posted::Message(self.filter.mask(trimmed)))
    }

    /// The per-user rate limit, and the per-connection abuse limit at three times it.
    /// `Err(None)` means close the connection with 1008.
    pub fn rate_check(&self, conn: &Conn) -> Result<(), Option<ChatError>> {
        let (rate, burst) = (self.cfg.rate_limit, self.cfg.rate_burst);
        if rate == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let abused = conn
            .abuse
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(rate * 3, burst * 3, now)
            .is_err();
        if abused {
            return Err(None);
        }
        let taken = conn.user.lock().bucket.take(rate, burst, now);
        taken.map_err(|retry_after_ms| {
            Metrics::add(&self.metrics.rate_limited_total, 1);
            Some(ChatError::RateLimited { retry_after_ms })
        })
    }

    /// Posts a message. The sender's connection gets its copy with `nonce`; that is the ack.
    pub fn post(
        &self,
        conn: &Arc<Conn>,
        room_id: &str,
        text: String,
        nonce: Option<Value>,
    ) -> Result<(), ChatError> {
        let room = self.room(room_id)?;
        let _gate = self.store.gate();
        let mut rs = room.lock();
        if !rs.members.contains_key(&conn.user.key) {
            return Err(ChatError::NotAMember);
        }
        let entry = rs.next_entry(&room, EntryKind::Message, &conn.user.name, Some(text));
        Self::apply_entry(&room, &mut rs, None, &entry);
        // Membership subscribes every connection of the user, the sender's included; without a
        // nonce the sender gets the plain copy like everyone else.
        let fanout = Fanout {
            subscribers: rs.subscribers.clone(),
            ack: nonce.map(|n| (conn.id, n)),
            preface: None,
        };
        drop(self.append_entry(&room, &mut rs, entry, Some(fanout)));
        Ok(())
    }

    /// Kept entries after `since`, for `sync`: `(entries, complete, more)`. Entries are cut
    /// at a byte budget (half the outbound limit) so one answer cannot overflow the
    /// connection; `more` then says to sync again from the last entry returned.
    pub fn sync(
        &self,
        user: &User,
        room_id: &str,
        since: u64,
    ) -> Result<(Vec<Entry>, bool, bool), ChatError> {
        let room = self.room(room_id)?;
        let rs = room.lock();
        if !rs.members.contains_key(&user.key) {
            return Err(ChatError::NotAMember);
        }
        let last = room.committed().min(rs.last_seq);
        let complete = since >= last || since + 1 >= rs.first_seq();
        let budget = self.cfg.max_outbound_bytes / 2;
        let mut used = 0;
        let mut out = Vec::new();
        let mut more = false;
        for e in rs.entries_between(since, last) {
            used += 96 + e.from.len() + e.text.as_ref().map_or(0, |t| t.len() * 2);
            if used > budget && !out.is_empty() {
                more = true;
                break;
            }
            out.push((**e).clone());
        }
        Ok((out, complete, more))
    }

    /// A page of history: at most `limit` entries with `seq < before`, oldest first, and the
    /// oldest kept seq.
    pub fn history(
        &self,
        user: &User,
        room_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Entry>, u64), ChatError> {
        let room = self.room(room_id)?;
        let rs = room.lock();
        if !rs.members.contains_key(&user.key) {
            return Err(ChatError::NotAMember);
        }
        let last = room.committed().min(rs.last_seq);
        let upto = before.map_or(last, |b| b.saturating_sub(1).min(last));
        let from = upto.saturating_sub(limit as u64);
        let entries = rs
            .entries_between(from, upto)
            .map(|e| (**e).clone())
            .collect();
        Ok((entries, rs.first_seq()))
    }
}
