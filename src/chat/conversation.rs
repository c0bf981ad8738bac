//! What people expect of a conversation: direct messages, blocks, mentions, read markers,
//! typing, edits and deletions.
//!
//! DMs themselves are made and found in `dm`.
//! Blocks are kept per blocker (`Core::blocks`) and refuse only the blocked side's
//! messages in a DM.
//! Edits and deletions are timeline entries that also rewrite the message they refer to in
//! the room's ring, so whatever serves it again serves its latest state, and a deleted text
//! is gone from memory at once and from the data directory at the next compaction.
//!
//! Read markers live on each member and are written to the store at most once a second per
//! room (`flush_read_markers`), one record for every marker that moved: a busy room where
//! everyone reads everything costs one small record a second, not one per reader per
//! message. A crash may lose up to a second of marker moves.

use std::sync::Arc;

use serde_json::Value;

use super::decide::{self, Decided};
use super::policy::{self, Access};
use super::rooms::RoomState;
use super::timeline::{entry_bytes, Change, Delivery};
use super::{deliver_to, encode, now_ms, ChatError, Commit, Conn, Core, Ctx, Record, User};
use crate::protocol::{Entry, EntryExtra, EntryKind, ServerFrame};
use crate::store::KeptEntry;

/// Typing events forwarded per user and room: one every this many milliseconds.
pub const TYPING_EVERY_MS: u64 = 2000;

impl Core {
    /// Rewrites the kept message `seq` after an edit (`Some((text, extra))`, the edit's new
    /// text and mentions) or a deletion (`None`: the text goes, and so does the text of every
    /// kept edit of it).
    pub(super) fn rewrite_message(
        rs: &mut RoomState,
        seq: u64,
        edit: Option<(Option<&str>, &EntryExtra)>,
    ) {
        let Some(e) = rs.entry_mut(seq) else {
            // A deletion whose own entry pushed the oldest kept message out of the ring: the
            // kept edits of it still lose their text.
            if edit.is_none() {
                Self::clear_edits(rs, seq);
            }
            return;
        };
        if e.kind() != EntryKind::Message || e.is_deleted() {
            return;
        }
        let old = e.extra();
        let (text, extra) = match edit {
            Some((text, new)) => (
                text,
                EntryExtra {
                    mentions: new.mentions.clone(),
                    action: old.action,
                    edited: Some(true),
                    ..EntryExtra::default()
                },
            ),
            None => (
                None,
                EntryExtra {
                    action: old.action,
                    edited: old.edited,
                    deleted: Some(true),
                    ..EntryExtra::default()
                },
            ),
        };
        *e = KeptEntry::with_extra(
            e.ts(),
            EntryKind::Message,
            e.from(),
            text,
            e.nonce(),
            &extra,
        );
        if edit.is_some() {
            return;
        }
        rs.note_deleted(seq);
        Self::clear_edits(rs, seq);
    }

    /// Takes the text out of every kept `edit` entry of the message `seq`.
    fn clear_edits(rs: &mut RoomState, seq: u64) {
        let (first, last) = (rs.first_seq(), rs.last_seq);
        for s in seq + 1..=last.max(first) {
            let Some(e) = rs.entry_mut(s) else {
                continue;
            };
            let extra = e.extra();
            if e.kind() == EntryKind::Edit && extra.refers == Some(seq) && e.text().is_some() {
                let extra = EntryExtra {
                    refers: Some(seq),
                    ..EntryExtra::default()
                };
                *e = KeptEntry::with_extra(e.ts(), EntryKind::Edit, e.from(), None, None, &extra);
            }
        }
    }

    /// Blocks or unblocks `username` for `user`.
    pub(super) fn set_block(
        &self,
        cx: &Ctx,
        user: &Arc<User>,
        username: &str,
        blocked: bool,
    ) -> Result<Commit, ChatError> {
        let target = self
            .user(&username.trim().to_ascii_lowercase())
            .ok_or(ChatError::UserNotFound)?;
        if target.key == user.key && blocked {
            return Err(ChatError::InvalidTarget);
        }
        {
            // The user's lock orders their block changes with the store.
            let _us = user.lock();
            let was = self.blocks.blocks(&user.key, &target.key);
            if was == blocked {
                if blocked {
                    return Ok(Commit::done());
                }
                return Err(ChatError::NotBlocked);
            }
            let slot = self.place(cx)?;
            self.blocks.apply(&user.name, &target.name, blocked);
            let rec = Record::Blocked {
                username: user.name.clone(),
                target: target.name.clone(),
                blocked,
            };
            let (blocks, u, t) = (self.blocks.clone(), user.name.clone(), target.name.clone());
            Ok(self.commit(slot, &rec, move || blocks.apply(&u, &t, !blocked)))
        }
    }

    /// The users `user` blocks, as registered, by name.
    pub fn blocked_users(&self, user: &User) -> Vec<String> {
        self.blocks
            .of(&user.key)
            .iter()
            .map(|k| self.user(k).map_or_else(|| k.clone(), |u| u.name.clone()))
            .collect()
    }

    /// Moves `user`'s read marker in a room up to `seq` (clamped to `last_seq`; a lower
    /// one is ignored). Their other connections (all, for REST: `from` is `None`) get a
    /// `read` frame.
    pub(super) fn mark_read(
        &self,
        user: &User,
        room_id: &str,
        seq: u64,
        from: Option<&Conn>,
    ) -> Result<Commit, ChatError> {
        let room = self.room(room_id)?;
        let moved = {
            let mut rs = room.lock();
            policy::reach(&rs, &user.key, Access::Other)?;
            let top = room.committed().min(rs.last_seq);
            let Some(m) = rs.members.get_mut(&user.key) else {
                return Err(ChatError::NotAMember);
            };
            let seq = seq.min(top);
            if seq <= m.read_seq {
                return Ok(Commit::done());
            }
            m.read_seq = seq;
            let first = !m.read_dirty;
            m.read_dirty = true;
            if first {
                self.note_read_dirty(&room.id);
            }
            seq
        };
        self.send_read(user, &room.id, moved, from);
        Ok(Commit::done())
    }

    /// Tells `user`'s connections, but `except`, that their read marker in a room is at `seq`.
    pub(super) fn send_read(&self, user: &User, room_id: &str, seq: u64, except: Option<&Conn>) {
        let f = encode(&ServerFrame::Read { room: room_id, seq });
        let conns = user.lock().conns.clone();
        for c in conns.iter().filter(|c| except.is_none_or(|e| e.id != c.id)) {
            deliver_to(&self.metrics, c, &f);
        }
    }

    pub(super) fn note_read_dirty(&self, room: &str) {
        let mut dirty = self.read_dirty.lock().unwrap_or_else(|e| e.into_inner());
        if !dirty.contains(room) {
            dirty.insert(room.to_string());
        }
    }

    /// Writes every read marker that moved since the last call: one record per room.
    /// Runs once a second, and before a clean stop.
    pub fn flush_read_markers(&self) {
        let rooms: Vec<String> = {
            let mut dirty = self.read_dirty.lock().unwrap_or_else(|e| e.into_inner());
            dirty.drain().collect()
        };
        for id in rooms {
            let Some(room) = self.rooms.get(&id) else {
                continue;
            };
            let mut rs = room.lock();
            let markers: Vec<(String, u64)> = rs
                .members
                .values_mut()
                .filter(|m| m.read_dirty)
                .map(|m| {
                    m.read_dirty = false;
                    (m.user.name.clone(), m.read_seq)
                })
                .collect();
            if markers.is_empty() {
                continue;
            }
            // A full or failed store loses these moves; the markers stay in memory.
            if let Ok(slot) = self.reserve() {
                let rec = Record::ReadMarkers { room: id, markers };
                drop(self.commit(slot, &rec, || {}));
            }
        }
    }

    /// Forwards that `conn`'s user is typing in a room to the other members' connections,
    /// at most once every [`TYPING_EVERY_MS`] per user and room; extra ones are dropped.
    pub fn typing(&self, conn: &Conn, room_id: &str) -> Result<(), ChatError> {
        let user = &conn.user;
        let room = self.room(room_id)?;
        let subs = {
            let mut rs = room.lock();
            policy::reach(&rs, &user.key, Access::Other)?;
            let Some(m) = rs.members.get_mut(&user.key) else {
                return Err(ChatError::NotAMember);
            };
            let now = now_ms();
            if m.last_typing != 0 && now.saturating_sub(m.last_typing) < TYPING_EVERY_MS {
                return Ok(());
            }
            m.last_typing = now;
            rs.subscribers.clone()
        };
        self.send_typing(&room.id, user, &subs);
        self.share_typing(&room.id, user);
        Ok(())
    }

    /// Tells the connections in `subs`, but `user`'s own and those of users who block
    /// `user`, that `user` is typing in a room.
    pub(super) fn send_typing(&self, room_id: &str, user: &User, subs: &[Arc<Conn>]) {
        let f = encode(&ServerFrame::Typing {
            room: room_id,
            username: &user.name,
        });
        let others = subs.iter().filter(|c| c.user.key != user.key);
        let to = self
            .blocks
            .retain_unblocking(others, |c| &c.user.key, &user.key);
        for c in to {
            deliver_to(&self.metrics, c, &f);
        }
    }

    /// Edits `user`'s kept message `seq` to `text` (cleaned already): appends an `edit`
    /// entry (with `ref`, the new text and its mentions) and rewrites the message. Or, with
    /// no text, deletes it: its author, or the room's owner or a moderator, may. `ack` is the
    /// connection and nonce of an `edit` or `delete` frame, whose copy of the entry carries
    /// the nonce. Returns the new entry.
    pub(super) fn change_message(
        &self,
        cx: &Ctx,
        user: &Arc<User>,
        room_id: &str,
        seq: u64,
        text: Option<&str>,
        ack: Option<(&Arc<Conn>, Value)>,
    ) -> Result<(Entry, Commit), ChatError> {
        let room = self.room(room_id)?;
        {
            let mut rs = room.lock();
            policy::reach(&rs, &user.key, Access::Other)?;
            let at = (seq, room.committed());
            let decided = decide::change(&rs, &self.blocks, user, at, text, cx.now)?;
            let Decided { entry: kept, extra } = decided;
            let nonce_json: Option<Box<str>> = ack.as_ref().map(|(_, n)| n.to_string().into());
            // Edits and deletions draw on the room's budgets like messages (in cluster mode
            // the proposer took it: time is not the log's).
            if !cx.is_from_log() {
                let bytes = entry_bytes(&room.id, &user.name, text, nonce_json.as_deref(), &extra);
                self.charge_entry(&mut rs, bytes)?;
            }
            let slot = self.place(cx)?;
            let new_seq = rs.last_seq + 1;
            // What the message was, to put back should the store fail.
            let before = rs.entry_mut(seq).cloned();
            let edits_before: Vec<(u64, KeptEntry)> = if text.is_none() {
                rs.entries_between(seq, new_seq)
                    .filter(|(_, e)| e.kind() == EntryKind::Edit)
                    .map(|(s, e)| (s, e.clone()))
                    .collect()
            } else {
                Vec::new()
            };
            self.apply_entry(&room, &mut rs, new_seq, &kept, &extra, None);
            let entry = kept.to_entry(&room.id, new_seq, false);
            let delivery = Delivery {
                room: room.clone(),
                seq: new_seq,
                entry: kept,
                ack: ack.as_ref().zip(nonce_json).map(|((c, _), n)| (c.id, n)),
                change: Change::None,
                gov_token: None,
            };
            let room2 = room.clone();
            let undo = move || {
                let mut rs = room2.lock();
                for (s, e) in edits_before.into_iter().chain(before.map(|e| (seq, e))) {
                    if let Some(slot) = rs.entry_mut(s) {
                        *slot = e;
                    }
                }
            };
            let commit = self.submit_entry(slot, &mut rs, None, delivery, undo);
            Ok((entry, commit))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::rooms::{Governance, Member, Room};

    fn room_with(names: &[&str]) -> Room {
        let room = Room::new("r".into(), Governance::default(), 10, 10);
        {
            let mut rs = room.lock();
            for (i, n) in names.iter().enumerate() {
                let user = Arc::new(User::new(n, String::new(), 1, 1));
                rs.members
                    .insert(n.to_ascii_lowercase(), Member::new(user, i as u64));
            }
        }
        room
    }

    #[test]
    fn mentions_follow_the_contract() {
        let room = room_with(&["Alice", "bob", "carol-x"]);
        let rs = room.lock();
        let m = |t: &str| rs.mentions(t);
        assert_eq!(
            m("hi @bob and @ALICE"),
            Some(vec!["bob".into(), "Alice".into()])
        );
        assert_eq!(m("@bob @bob @Bob"), Some(vec!["bob".into()]));
        // Inside a word, or followed by more name characters: not a mention.
        assert_eq!(m("mail@bob.com"), None);
        assert_eq!(m("@bobby @carol"), None);
        assert_eq!(
            m("(@carol-x), @alice."),
            Some(vec!["carol-x".into(), "Alice".into()])
        );
        assert_eq!(m("@dave no such member"), None);
        assert_eq!(m("no at sign"), None);
    }
}
