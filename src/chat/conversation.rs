//! What people expect of a conversation: direct messages, blocks, mentions, read markers,
//! typing, edits and deletions.
//!
//! A DM is a private room of `kind` `dm` for a pair of users, found again by the pair
//! (`Core::dms`). The opener joins it; the other side is added only when it is made, as a
//! side who has not acted (`Member::unanswered`): such a DM does not count toward their
//! `--max-rooms-per-user`, and they have at most that many (`Core::room_load`). Opening it
//! or writing in it is acting. A side who left comes back only by opening it themselves:
//! nobody can fill someone else's room list, or pull them back into a DM they left.
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

use super::policy::{self, Access};
use super::rooms::{Governance, RoomState};
use super::timeline::{entry_bytes, Change, Delivery};
use super::{
    deliver_to, encode, now_ms, Blocks, ChatError, Commit, Conn, Core, Ctx, Facts, Record, User,
};
use crate::protocol::{Entry, EntryExtra, EntryKind, Role, RoomView, ServerFrame, Visibility};
use crate::store::KeptEntry;

/// Typing events forwarded per user and room: one every this many milliseconds.
pub const TYPING_EVERY_MS: u64 = 2000;

/// The key of a pair of users in `Core::dms`: their lowercase names, sorted.
fn pair_key(a: &str, b: &str) -> String {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    if a <= b {
        format!("{a}\n{b}")
    } else {
        format!("{b}\n{a}")
    }
}

/// A DM's name: the two usernames, sorted case-insensitively, joined by ", ".
fn dm_name(a: &str, b: &str) -> String {
    if a.to_ascii_lowercase() <= b.to_ascii_lowercase() {
        format!("{a}, {b}")
    } else {
        format!("{b}, {a}")
    }
}

/// Records that `username` blocks (or no longer blocks) `target`.
fn apply_block(blocks: &Blocks, username: &str, target: &str, blocked: bool) {
    let mut blocks = blocks.write().unwrap_or_else(|e| e.into_inner());
    let key = username.to_ascii_lowercase();
    let target = target.to_ascii_lowercase();
    if blocked {
        blocks.entry(key).or_default().insert(target);
    } else if let Some(set) = blocks.get_mut(&key) {
        set.remove(&target);
        if set.is_empty() {
            blocks.remove(&key);
        }
    }
}

impl Core {
    pub(super) fn remember_dm(&self, a: &str, b: &str, id: &str) {
        let mut dms = self.dms.lock().unwrap_or_else(|e| e.into_inner());
        dms.insert(pair_key(a, b), id.to_string());
    }

    pub(super) fn apply_block(&self, username: &str, target: &str, blocked: bool) {
        apply_block(&self.blocks, username, target, blocked);
    }

    /// Whether `blocker` (lowercase) blocks `blocked` (lowercase).
    pub(super) fn blocks(&self, blocker: &str, blocked: &str) -> bool {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        blocks.get(blocker).is_some_and(|s| s.contains(blocked))
    }

    /// `Err(Blocked)` when `sender` may not post to a DM room whose other side blocks them.
    pub(super) fn dm_check(&self, rs: &RoomState, sender: &str) -> Result<(), ChatError> {
        let Some((a, b)) = &rs.gov.dm else {
            return Ok(());
        };
        let other = if a.eq_ignore_ascii_case(sender) { b } else { a };
        if self.blocks(&other.to_ascii_lowercase(), sender) {
            return Err(ChatError::Blocked);
        }
        Ok(())
    }

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

    /// Opens (or finds again) the DM between `user` and `username` (see
    /// `open_dm_locked` for who is added). Answers the room as `user` sees it.
    pub(super) fn open_dm(
        &self,
        cx: &mut Ctx,
        user: &Arc<User>,
        username: &str,
    ) -> Result<(RoomView, Commit), ChatError> {
        let other = self
            .user(&username.trim().to_ascii_lowercase())
            .ok_or(ChatError::UserNotFound)?;
        if other.key == user.key {
            return Err(ChatError::InvalidTarget);
        }
        if self.blocks(&other.key, &user.key) {
            return Err(ChatError::Blocked);
        }
        let (room, commit) = self.open_dm_locked(cx, user, &other)?;
        let rs = room.lock();
        let mut view = room.view(&rs, &user.key);
        view.last_seq = rs.last_seq;
        Ok((view, commit))
    }

    /// Finds or makes the pair's room. The opener joins it if they are not in it (a join
    /// their room limit allows) and has acted in it either way. The other side is added only
    /// to a room made just now, as a side who has not acted, and only while they have fewer
    /// than `--max-rooms-per-user` such DMs (and fewer than twice that many rooms in all);
    /// a side who left, or was not added, comes back only by opening it themselves.
    fn open_dm_locked(
        &self,
        cx: &mut Ctx,
        user: &Arc<User>,
        other: &Arc<User>,
    ) -> Result<(Arc<super::rooms::Room>, Commit), ChatError> {
        // The pair's lock: two opens of the same pair make one room.
        let mut dms = self.dms.lock().unwrap_or_else(|e| e.into_inner());
        let key = pair_key(&user.name, &other.name);
        let existing = dms.get(&key).and_then(|id| self.rooms.get(id));
        let mut us = user.lock();
        let is_member = existing
            .as_ref()
            .is_some_and(|r| r.lock().members.contains_key(&user.key));
        if !is_member {
            self.room_limit(user, &mut us)?;
        }
        let mut commits = Commit::done();
        let fresh = existing.is_none();
        let room = match existing {
            Some(room) => room,
            None => {
                let gov = Governance {
                    name: dm_name(&user.name, &other.name),
                    owner: user.name.clone(),
                    visibility: Visibility::Private,
                    dm: Some((user.name.clone(), other.name.clone())),
                    ..Governance::default()
                };
                let (room, commit) = self.create_dm_locked(cx, user, gov)?;
                dms.insert(key, room.id.clone());
                commits = commits.and(commit);
                room
            }
        };
        {
            let mut rs = room.lock();
            if !rs.deleted {
                if !rs.members.contains_key(&user.key) {
                    let slot = self.place(cx)?;
                    let joined = self.join_locked(cx, slot, &room, &mut rs, user, &mut us).1;
                    commits = commits.and(joined);
                } else if rs.members.get(&user.key).is_some_and(|m| m.unanswered) {
                    let slot = self.place(cx)?;
                    commits = commits.and(self.mark_unanswered(slot, &room, &mut rs, user, false));
                }
            }
        }
        drop(us);
        if fresh {
            let mut them = other.lock();
            let load = self.room_load(other, &mut them);
            let max = self.cfg.max_rooms_per_user;
            let mut rs = room.lock();
            let room_for_them = load.unanswered < max && load.counted + load.unanswered < 2 * max;
            if room_for_them && !rs.deleted && !rs.members.contains_key(&other.key) {
                let (slot, mark) = (self.place(cx)?, self.place(cx)?);
                let joined = self
                    .join_locked(cx, slot, &room, &mut rs, other, &mut them)
                    .1;
                commits = commits.and(joined);
                commits = commits.and(self.mark_unanswered(mark, &room, &mut rs, other, true));
            }
        }
        Ok((room, commits))
    }

    /// Marks a DM member as not having acted in it (`true`, just after the other side's
    /// open added them) or as having acted (`false`: they opened it), and hands the
    /// [`Record::DmUnanswered`] to the store; should it fail, the flag goes back.
    fn mark_unanswered(
        &self,
        slot: crate::store::Slot,
        room: &Arc<super::rooms::Room>,
        rs: &mut RoomState,
        user: &User,
        unanswered: bool,
    ) -> super::Commit {
        rs.set_unanswered(&user.key, unanswered);
        let rec = Record::DmUnanswered {
            room: room.id.clone(),
            username: user.name.clone(),
            unanswered,
            at_seq: rs.last_seq,
        };
        let (room, key) = (room.clone(), user.key.clone());
        self.commit(slot, &rec, move || {
            room.lock().set_unanswered(&key, !unanswered);
        })
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
            let was = self.blocks(&user.key, &target.key);
            if was == blocked {
                if blocked {
                    return Ok(Commit::done());
                }
                return Err(ChatError::NotBlocked);
            }
            let slot = self.place(cx)?;
            apply_block(&self.blocks, &user.name, &target.name, blocked);
            let rec = Record::Blocked {
                username: user.name.clone(),
                target: target.name.clone(),
                blocked,
            };
            let (blocks, u, t) = (self.blocks.clone(), user.name.clone(), target.name.clone());
            Ok(self.commit(slot, &rec, move || apply_block(&blocks, &u, &t, !blocked)))
        }
    }

    /// The users `user` blocks, as registered, by name.
    pub fn blocked_users(&self, user: &User) -> Vec<String> {
        let keys: Vec<String> = {
            let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
            blocks
                .get(&user.key)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        keys.iter()
            .map(|k| self.user(k).map_or_else(|| k.clone(), |u| u.name.clone()))
            .collect()
    }

    /// Moves `user`'s read marker in a room up to `seq` (clamped to `last_seq`; a lower
    /// one is ignored). Their other connections (all, for REST: `from` is `None`) get a
    /// `read` frame.
    pub fn mark_read(
        &self,
        user: &User,
        room_id: &str,
        seq: u64,
        from: Option<&Conn>,
    ) -> Result<(), ChatError> {
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
                return Ok(());
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
        Ok(())
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
        let to: Vec<&Arc<Conn>> = {
            let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
            subs.iter()
                .filter(|c| c.user.key != user.key)
                .filter(|c| {
                    !blocks
                        .get(&c.user.key)
                        .is_some_and(|s| s.contains(&user.key))
                })
                .collect()
        };
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
            let Some(role) = rs.role(&user.key) else {
                return Err(ChatError::NotAMember);
            };
            let committed = room.committed();
            let target = rs
                .entry_mut(seq)
                .filter(|e| seq <= committed && e.kind() == EntryKind::Message)
                .filter(|e| !e.is_deleted())
                .map(|e| e.from().to_ascii_lowercase())
                .ok_or(ChatError::EntryNotFound)?;
            let author = target == user.key;
            let now = cx.now;
            let extra = match text {
                Some(text) => {
                    if !author {
                        return Err(ChatError::Forbidden);
                    }
                    if let Some(until) = rs.muted_until(&user.key, now) {
                        return Err(ChatError::Muted {
                            retry_after_ms: until - now,
                        });
                    }
                    self.dm_check(&rs, &user.key)?;
                    EntryExtra {
                        refers: Some(seq),
                        mentions: rs.mentions(text),
                        ..EntryExtra::default()
                    }
                }
                None => {
                    if !author && role < Role::Moderator {
                        return Err(ChatError::Forbidden);
                    }
                    EntryExtra {
                        refers: Some(seq),
                        ..EntryExtra::default()
                    }
                }
            };
            let kind = if text.is_some() {
                EntryKind::Edit
            } else {
                EntryKind::Delete
            };
            let nonce_json: Option<Box<str>> = ack.as_ref().map(|(_, n)| n.to_string().into());
            // Edits and deletions draw on the room's budgets like messages (in cluster mode
            // the proposer took it: time is not the log's).
            if !cx.is_from_log() {
                let bytes = entry_bytes(&room.id, &user.name, text, nonce_json.as_deref(), &extra);
                self.charge_entry(&mut rs, bytes)?;
            }
            let slot = self.place(cx)?;
            let kept = KeptEntry::with_extra(now, kind, &user.name, text, None, &extra);
            let new_seq = rs.append(kept.clone());
            let facts = Facts {
                kind,
                from: &user.name,
                ts: now,
                text,
                extra: &extra,
            };
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
            self.apply_effects(&room, &mut rs, new_seq, &facts, None);
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

impl Core {
    /// Makes a DM room with its creator as `gov.owner` (a plain member like the other side)
    /// and hands its record to the store; the sides join next. DMs do not count as owned.
    fn create_dm_locked(
        &self,
        cx: &mut Ctx,
        user: &Arc<User>,
        gov: Governance,
    ) -> Result<(Arc<super::rooms::Room>, super::Commit), ChatError> {
        let slot = self.place(cx)?;
        let room = loop {
            let room = self.new_room(&cx.random_id(10), gov.clone(), 2);
            if self.rooms.insert(room.clone(), &gov.name) {
                break room;
            }
        };
        let other = gov.dm.as_ref().map(|(_, b)| b.clone());
        let rec = Record::RoomCreated {
            id: room.id.clone(),
            name: gov.name.clone(),
            owner: user.name.clone(),
            capacity: 2,
            ts: cx.now,
            visibility: Visibility::Private,
            topic: String::new(),
            dm_with: other,
        };
        let (rooms, id) = (self.rooms.clone(), room.id.clone());
        let commit = self.commit(slot, &rec, move || {
            super::rooms::RoomTable::remove(&rooms, &id);
        });
        Ok((room, commit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::rooms::{Member, Room};

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

    #[test]
    fn dm_names_and_pairs_ignore_case_and_order() {
        assert_eq!(dm_name("bob", "Alice"), "Alice, bob");
        assert_eq!(pair_key("bob", "Alice"), pair_key("alice", "BOB"));
    }
}
