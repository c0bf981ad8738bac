//! A room's timeline: appending entries and publishing them once acknowledged, checking and
//! posting messages under the rate limits, and reading entries back (`sync`, `history`).
//!
//! # Publishing
//! An entry is applied to the room (its ring and `last_seq`) when it is made, under the room's
//! lock, and handed to the store in the same critical section. It is *published* once the
//! store acknowledges it: [`Delivery::publish`] marks it committed, applies the subscription
//! change a join or leave makes, and takes the room's subscribers, all under the room's lock;
//! then the frame goes to each of them. Opening a connection subscribes it and reads
//! `last_seq` for its `hello` under the same lock, so a connection either is subscribed when
//! an entry is published or its `hello` already counts that entry: it never misses one.
//! Publishing happens in seq order per room: in memory, inline under the room's lock; with a
//! journal, on its one delivery thread, in journal order.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::oneshot;
use tungstenite::Bytes;

use super::decide::{self, Decided};
use super::filter::Filter;
use super::ratelimit::RoomLimits;
use super::rooms::{Room, RoomState};
use super::users::UserState;
use super::wire as frame;
use super::{deliver_to, Caller, ChatError, Commit, Conn, Core, Ctx, Posted, User};
use crate::config;
use crate::metrics::Metrics;
use crate::protocol::{EntryExtra, ServerFrame};
use crate::store::record::{json_str_len, ENTRY_HEAD};
use crate::store::{KeptEntry, Slot};

/// What publishing an entry changes about who is subscribed to its room.
pub(super) enum Change {
    None,
    /// The user's connections subscribe, and those not yet subscribed get these frames
    /// (`joined`, then `history`) just before the entry.
    Join(Arc<User>, [Bytes; 2]),
    /// The user's connections get the entry, then unsubscribe.
    Leave(Arc<User>),
}

/// An applied entry waiting to be published.
pub(super) struct Delivery {
    pub(super) room: Arc<Room>,
    pub(super) seq: u64,
    pub(super) entry: KeptEntry,
    /// The sending connection and its nonce (JSON): its copy carries the nonce.
    pub(super) ack: Option<(u64, Box<str>)>,
    pub(super) change: Change,
    /// A governance change waiting for the store (see `moderation`): forgotten once kept.
    pub(super) gov_token: Option<u64>,
}

impl Delivery {
    /// Marks the entry committed and applies the subscription change. Returns the
    /// subscribers that get the entry and the connections that get the `history` first.
    fn publish(
        &self,
        rs: &mut RoomState,
        us: Option<&UserState>,
    ) -> (Arc<Vec<Arc<Conn>>>, Vec<Arc<Conn>>) {
        self.room.set_committed(self.seq);
        if let Some(token) = self.gov_token {
            rs.gov_kept(token);
        }
        match &self.change {
            Change::None => (rs.subscribers.clone(), Vec::new()),
            Change::Join(user, _) => {
                let newcomers: Vec<Arc<Conn>> = us
                    .map(|us| {
                        us.conns
                            .iter()
                            .filter(|c| !rs.subscribers.iter().any(|s| s.id == c.id))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                // Still a member: a leave made before this join was published has not
                // removed the user yet, or has, and then there is nothing to subscribe.
                if rs.members.contains_key(&user.key) {
                    rs.subscribe(&newcomers);
                    (rs.subscribers.clone(), newcomers)
                } else {
                    (rs.subscribers.clone(), Vec::new())
                }
            }
            Change::Leave(user) => {
                let subs = rs.subscribers.clone();
                if !rs.members.contains_key(&user.key) {
                    rs.unsubscribe_user(&user.key);
                }
                (subs, Vec::new())
            }
        }
    }

    /// Queues the frames: the `history` for newcomers, then the entry for everyone.
    fn push(&self, metrics: &Metrics, subs: &[Arc<Conn>], newcomers: &[Arc<Conn>]) {
        let mut delivered = 0;
        if let Change::Join(_, frames) = &self.change {
            for c in newcomers {
                for f in frames {
                    delivered += deliver_to(metrics, c, f);
                }
            }
        }
        let room = &self.room.id;
        let mut json = Vec::with_capacity(160 + self.entry.as_bytes().len());
        self.entry
            .write_json(&mut json, ENTRY_HEAD, room, self.seq, None);
        let shared = frame::text(&json);
        for c in subs {
            let f = match &self.ack {
                Some((id, nonce)) if *id == c.id => {
                    json.clear();
                    self.entry
                        .write_json(&mut json, ENTRY_HEAD, room, self.seq, Some(nonce));
                    frame::text(&json)
                }
                _ => shared.clone(),
            };
            delivered += deliver_to(metrics, c, &f);
        }
        Metrics::add(&metrics.frames_delivered_total, delivered);
        Metrics::add(&metrics.entries_appended_total, 1);
    }

    /// Publishes from the journal's delivery thread: takes the joiner's lock (for a join),
    /// then the room's, and pushes outside them.
    fn run(self, metrics: &Metrics) {
        let (subs, newcomers) = {
            let joiner = match &self.change {
                Change::Join(user, _) => Some(user.clone()),
                _ => None,
            };
            let us = joiner.as_ref().map(|u| u.lock());
            let mut rs = self.room.lock();
            self.publish(&mut rs, us.as_deref())
        };
        self.push(metrics, &subs, &newcomers);
    }
}

impl Core {
    /// Hands an entry the caller has already applied to the store, and publishes it once the
    /// store acknowledges it; `on_fail` runs instead if the store never will. Called under
    /// the room's lock (and, for a join, the joiner's), so the store sees each room's entries
    /// in seq order. In memory the entry is published right here.
    pub(super) fn submit_entry(
        &self,
        slot: Slot,
        rs: &mut RoomState,
        us: Option<&UserState>,
        delivery: Delivery,
        on_fail: impl FnOnce() + Send + 'static,
    ) -> Commit {
        if let Slot::Memory = slot {
            let (subs, newcomers) = delivery.publish(rs, us);
            delivery.push(&self.metrics, &subs, &newcomers);
            return Commit::done();
        }
        let mut record = Vec::with_capacity(160 + delivery.entry.as_bytes().len());
        delivery
            .entry
            .write_record(&mut record, &delivery.room.id, delivery.seq);
        let metrics = self.metrics.clone();
        let (tx, rx) = oneshot::channel();
        slot.append(
            record,
            Box::new(move |written| {
                if written {
                    delivery.run(&metrics);
                } else {
                    on_fail();
                }
                let _ = tx.send(written);
            }),
        );
        Commit::one(rx)
    }

    /// Validates the text of a `send` frame: a command, an action (`/me TEXT`), or a
    /// filtered message.
    pub fn parse_send<'a>(&self, text: &'a str) -> Result<Posted<'a>, ChatError> {
        if let Some(action) = text.strip_prefix("/me ").filter(|a| !a.trim().is_empty()) {
            return Ok(Posted::Action(self.clean_message(action)?));
        }
        if text.starts_with('/') && !text.starts_with("//") {
            return Ok(Posted::Command(text));
        }
        let text = text.strip_prefix('/').unwrap_or(text);
        Ok(Posted::Message(self.clean_message(text)?))
    }

    /// A message's text as it is kept: control characters and format characters removed
    /// (but for emoji sequences' joiners and tags, see [`super::text::strip_format`]),
    /// trimmed, 1 to 4,096 bytes, blocked words masked.
    pub fn clean_message(&self, text: &str) -> Result<String, ChatError> {
        let clean = super::text::strip_format(&Filter::strip_controls(text));
        let trimmed = clean.trim();
        if trimmed.is_empty() {
            return Err(ChatError::EmptyMessage);
        }
        if trimmed.len() > config::MAX_MESSAGE_BYTES {
            return Err(ChatError::MessageTooLong);
        }
        Ok(self.filter.mask(trimmed))
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

    /// The one budget check of every entry a member makes (a message, an action, an edit, a
    /// deletion): takes an entry of `bytes` (its `entry` frame, see [`entry_bytes`]) from the
    /// room's message and byte budgets (see `config::ROOM_BYTE_RATE`). Called under the
    /// room's lock, once per entry, never per recipient.
    pub(super) fn charge_entry(&self, rs: &mut RoomState, bytes: usize) -> Result<(), ChatError> {
        let cfg = &self.cfg;
        if cfg.rate_limit == 0 {
            return Ok(());
        }
        let limits = RoomLimits {
            rate: cfg.room_rate_limit,
            burst: cfg.room_rate_burst,
            byte_rate: cfg.room_byte_rate,
            byte_burst: cfg.room_byte_burst,
        };
        rs.budget
            .take(limits, bytes, Instant::now())
            .map_err(|retry_after_ms| {
                Metrics::add(&self.metrics.rate_limited_total, 1);
                ChatError::RateLimited { retry_after_ms }
            })
    }

    /// Cluster mode: takes an entry from the room's budget on the node that proposes it,
    /// counting its frame without the extras the log decides (mentions).
    pub(super) fn propose_budget(
        &self,
        room_id: &str,
        from: &str,
        text: Option<&str>,
    ) -> Result<(), ChatError> {
        let Some(room) = self.rooms.get(room_id) else {
            return Ok(());
        };
        let mut rs = room.lock();
        let bytes = entry_bytes(&room.id, from, text, None, &EntryExtra::default());
        self.charge_entry(&mut rs, bytes)
    }

    /// Posts a message (an action when `action`) from the caller, within the room's budget,
    /// and moves their read marker to it. The caller's connection, if a `send` frame came
    /// over it, gets the copy with `nonce`, which is the ack; if the store fails before
    /// keeping the entry it gets error `unavailable` with the nonce instead. In cluster mode
    /// the nonce is kept with the entry on every node, and only the proposer knows the
    /// connection.
    pub(super) fn post(
        &self,
        cx: &Ctx,
        caller: Caller<'_>,
        room_id: &str,
        text: &str,
        action: bool,
        nonce: Option<&Value>,
    ) -> Result<Commit, ChatError> {
        let user = caller.user.ok_or(ChatError::Unauthorized)?;
        let (conn, nonce) = (caller.conn.cloned(), nonce.cloned());
        let nonce_json: Option<Box<str>> = nonce.as_ref().map(|n| n.to_string().into());
        let room = self.room(room_id)?;
        let mut rs = room.lock();
        let what = (text, action);
        let decided = decide::post(&rs, &self.blocks, user, what, nonce_json.as_deref(), cx.now)?;
        let Decided { entry, extra } = decided;
        // In cluster mode the proposer took it (`propose_budget`): time is not the log's.
        if !cx.is_from_log() {
            let nonce = nonce_json.as_deref();
            let bytes = entry_bytes(&room.id, &user.name, Some(text), nonce, &extra);
            self.charge_entry(&mut rs, bytes)?;
        }
        let slot = self.place(cx)?;
        let seq = rs.last_seq + 1;
        // Writing in a DM is acting in it (`apply_entry` marks it); undone if the store fails
        // the entry.
        let answered =
            rs.gov.dm.is_some() && rs.members.get(&user.key).is_some_and(|m| m.unanswered);
        self.apply_entry(&room, &mut rs, seq, &entry, &extra, None);
        if let Some(m) = rs.members.get_mut(&user.key) {
            m.read_seq = seq;
            if !m.read_dirty {
                m.read_dirty = true;
                self.note_read_dirty(&room.id);
            }
        }
        // Membership subscribes every connection of the user, the sender's included; without a
        // nonce the sender gets the plain copy like everyone else.
        let delivery = Delivery {
            room: room.clone(),
            seq,
            entry,
            ack: conn.as_ref().zip(nonce_json).map(|(c, n)| (c.id, n)),
            change: Change::None,
            gov_token: None,
        };
        let metrics = self.metrics.clone();
        let (dm, key) = (room.clone(), user.key.clone());
        let on_fail = move || {
            if answered {
                dm.lock().set_unanswered(&key, true);
            }
            let Some(sender) = conn else {
                return;
            };
            let e = ChatError::Unavailable;
            let f = super::encode(&ServerFrame::Error {
                code: e.code(),
                message: e.to_string(),
                nonce: nonce.as_ref(),
                retry_after_ms: None,
            });
            deliver_to(&metrics, &sender, &f);
        };
        Ok(self.submit_entry(slot, &mut rs, None, delivery, on_fail))
    }
}

/// At least the bytes of the `entry` frame (header included) that a message of `text` from
/// `from` makes in `room`, without a nonce: the strings as JSON escapes them, and the keys
/// and two numbers of up to 20 digits in [`ENTRY_FRAME_FIXED`].
pub(crate) fn entry_frame_bound(room: &str, from: &str, text: &str) -> usize {
    ENTRY_FRAME_FIXED + json_str_len(room) + json_str_len(from) + json_str_len(text)
}

/// The bytes an entry counts against its room's budget: its `entry` frame as a reader gets
/// it (see [`entry_frame_bound`]), with the sender's nonce (JSON) and the entry's extras
/// (mentions, `ref`, `action`).
pub(super) fn entry_bytes(
    room: &str,
    from: &str,
    text: Option<&str>,
    nonce_json: Option<&str>,
    extra: &EntryExtra,
) -> usize {
    let mut bytes =
        entry_frame_bound(room, from, text.unwrap_or_default()) + nonce_json.map_or(0, str::len);
    if !extra.is_empty() {
        bytes += serde_json::to_vec(extra).map_or(0, |v| v.len());
    }
    bytes
}

/// Keys and punctuation (72), `seq` and `ts` at 20 digits each, and the longest frame header
/// (10).
const ENTRY_FRAME_FIXED: usize = 122;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EntryKind;

    #[test]
    fn the_entry_bound_covers_the_frame_in_the_worst_case() {
        let texts = [
            "x".to_string(),
            "\"\\\n\t".repeat(config::MAX_MESSAGE_BYTES / 4),
            "é".repeat(config::MAX_MESSAGE_BYTES / 2),
            "\u{1}".repeat(100),
        ];
        for text in &texts {
            let (room, from) = ("r0123456789", "a_user_name_of_thirty_two_bytes_");
            let e = KeptEntry::new(u64::MAX, EntryKind::Message, from, Some(text), None);
            let mut json = Vec::new();
            e.write_json(&mut json, ENTRY_HEAD, room, u64::MAX, None);
            let frame = frame::text(&json).len();
            let bound = entry_frame_bound(room, from, text);
            assert!(bound >= frame, "{bound} < {frame}");
            assert!(bound <= frame + 16, "{bound} is far over {frame}");
        }
    }
}
