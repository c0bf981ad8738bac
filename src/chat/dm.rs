//! Direct messages: a private room of `kind` `dm` for a pair of users, found again by the
//! pair (`Core::dms`). The opener joins it; the other side is added only when it is made, as
//! a side who has not acted (`Member::unanswered`): such a DM does not count toward their
//! `--max-rooms-per-user`, and they have at most that many (`Core::room_load`). Opening it
//! or writing in it is acting. A side who left comes back only by opening it themselves:
//! nobody can fill someone else's room list, or pull them back into a DM they left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::rooms::{Governance, RoomState};
use super::{ChatError, Commit, Core, Ctx, Record, User};
use crate::protocol::{RoomView, Visibility};

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

/// DM rooms by their pair of lowercase names (`pair_key`): one piece of the state, moved by
/// the `RoomCreated` of a DM. An id whose room was deleted may linger; lookups check the
/// room table. Its lock is the pair's: locked before a user, so two opens of one pair make
/// one room.
#[derive(Debug, Default)]
pub(crate) struct DmIndex(Mutex<HashMap<String, String>>);

impl DmIndex {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every pair's key and room id.
    pub(crate) fn pairs(&self) -> Vec<(String, String)> {
        let dms = self.lock();
        dms.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Applies a DM's `RoomCreated`: the pair `a`, `b` has the room `id`.
    pub(crate) fn remember(&self, a: &str, b: &str, id: &str) {
        self.lock().insert(pair_key(a, b), id.to_string());
    }
}

impl Core {
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
        if self.blocks.blocks(&other.key, &user.key) {
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
        let mut dms = self.dms.lock();
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
        let room = self.insert_fresh_room(cx, &gov, 2);
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

    #[test]
    fn dm_names_and_pairs_ignore_case_and_order() {
        assert_eq!(dm_name("bob", "Alice"), "Alice, bob");
        assert_eq!(pair_key("bob", "Alice"), pair_key("alice", "BOB"));
    }
}
