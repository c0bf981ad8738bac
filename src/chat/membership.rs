//! Room membership and listings: creating, joining and leaving rooms, and the views of
//! them (`rooms`, `my_rooms`, `room_detail`). Joins and leaves are timeline entries,
//! handed on through `append_entry`.
//!
//! A room lives while it has members: the last member's leave is followed by a
//! [`Record::RoomDeleted`], and the room and its timeline leave the table at once. A user
//! owns at most `--max-owned-rooms` rooms, counted per owner in `Core::owned`.

use std::sync::Arc;

use super::rooms::{Room, RoomState, RoomTable};
use super::timeline::{history_frame, Change, Delivery};
use super::{now_ms, random_id, users, ChatError, Commit, Core, Record, User};
use crate::config;
use crate::protocol::{EntryKind, MemberView, RoomDetail, RoomList, RoomView};
use crate::store::{KeptEntry, Slot};

impl Core {
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// A page of the room listing: rooms by name then id after the room `after`, whose name
    /// contains `q` case-insensitively; `limit` is clamped to 1..=`LIST_PAGE_MAX`.
    pub fn rooms(&self, q: &str, after: Option<&str>, limit: usize) -> Result<RoomList, ChatError> {
        let limit = limit.clamp(1, config::LIST_PAGE_MAX);
        let page = self
            .rooms
            .page(&q.to_lowercase(), after, limit)
            .ok_or_else(|| ChatError::BadRequest("unknown cursor: no such room".into()))?;
        let rooms = page.rooms.iter().map(|r| r.view(&r.lock())).collect();
        Ok(RoomList {
            rooms,
            next: page.next,
        })
    }

    pub(super) fn owned_by(&self, key: &str) -> usize {
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        owned.get(key).copied().unwrap_or(0)
    }

    /// The rooms a user belongs to, in the order joined.
    pub fn my_rooms(&self, user: &User) -> Vec<RoomView> {
        let ids = user.lock().rooms.clone();
        ids.iter()
            .filter_map(|id| self.rooms.get(id))
            .map(|r| r.view(&r.lock()))
            .collect()
    }

    pub fn room_detail(&self, id: &str) -> Result<RoomDetail, ChatError> {
        let room = self.room(id)?;
        let (view, members) = {
            let rs = room.lock();
            (
                room.view(&rs),
                rs.members.values().cloned().collect::<Vec<_>>(),
            )
        };
        let now = now_ms();
        let timeout = self.presence_timeout_ms();
        let member_list = members
            .iter()
            .map(|u| MemberView {
                username: u.name.clone(),
                online: u.lock().is_online(now, timeout),
            })
            .collect();
        Ok(RoomDetail {
            room: view,
            member_list,
        })
    }

    pub async fn create_room(
        &self,
        user: &Arc<User>,
        name: &str,
        capacity: Option<i64>,
    ) -> Result<RoomView, ChatError> {
        let name = name.trim();
        let chars = name.chars().count();
        if !(1..=64).contains(&chars) || super::text::has_hidden_chars(name) {
            return Err(ChatError::InvalidRoomName);
        }
        let capacity = match capacity {
            None => self.cfg.room_capacity,
            Some(c) if (1..=config::MAX_ROOM_CAPACITY as i64).contains(&c) => c as u32,
            Some(_) => return Err(ChatError::InvalidCapacity),
        };
        let (view, commit) = self.create_locked(user, name, capacity)?;
        commit.wait().await?;
        Ok(view)
    }

    fn create_locked(
        &self,
        user: &Arc<User>,
        name: &str,
        capacity: u32,
    ) -> Result<(RoomView, Commit), ChatError> {
        let mut us = user.lock();
        if us.rooms.len() >= self.cfg.max_rooms_per_user {
            return Err(ChatError::TooManyRooms);
        }
        // The user's lock is held, so two creates of theirs cannot both pass this check.
        let max_owned = self.cfg.max_owned_rooms;
        if max_owned > 0 && self.owned_by(&user.key) >= max_owned {
            return Err(ChatError::TooManyOwnedRooms);
        }
        let (created_slot, join_slot) = (self.reserve()?, self.reserve()?);
        let room = loop {
            let room = self.new_room(&random_id(10), name, &user.name, capacity);
            if self.rooms.insert(room.clone()) {
                break room;
            }
        };
        let created = Record::RoomCreated {
            id: room.id.clone(),
            name: room.name.clone(),
            owner: room.owner.clone(),
            capacity,
            ts: now_ms(),
        };
        Self::count_owned(&self.owned, &room.owner, true);
        let (rooms, owned, id) = (self.rooms.clone(), self.owned.clone(), room.id.clone());
        drop(self.commit(created_slot, &created, move || {
            if let Some(room) = RoomTable::remove(&rooms, &id) {
                Self::count_owned(&owned, &room.owner, false);
            }
        }));
        let mut rs = room.lock();
        let commit = self.join_locked(join_slot, &room, &mut rs, user, &mut us);
        let mut view = room.view(&rs);
        view.last_seq = rs.last_seq;
        Ok((view, commit))
    }

    pub async fn join_room(&self, user: &Arc<User>, id: &str) -> Result<RoomView, ChatError> {
        let room = self.room(id)?;
        let (view, commit) = {
            let mut us = user.lock();
            let mut rs = room.lock();
            if rs.deleted {
                return Err(ChatError::RoomNotFound);
            }
            if rs.members.contains_key(&user.key) {
                return Ok(room.view(&rs));
            }
            if us.rooms.len() >= self.cfg.max_rooms_per_user {
                return Err(ChatError::TooManyRooms);
            }
            if rs.members.len() >= room.capacity as usize {
                return Err(ChatError::RoomFull);
            }
            let slot = self.reserve()?;
            let commit = self.join_locked(slot, &room, &mut rs, user, &mut us);
            let mut view = room.view(&rs);
            view.last_seq = rs.last_seq;
            (view, commit)
        };
        commit.wait().await?;
        Ok(view)
    }

    /// Appends `user`'s join entry. Once it is published, the joiner's connections get the
    /// room's recent `history` and then the entry, like every other member.
    fn join_locked(
        &self,
        slot: Slot,
        room: &Arc<Room>,
        rs: &mut RoomState,
        user: &Arc<User>,
        us: &mut users::UserState,
    ) -> Commit {
        let since = rs.last_seq.saturating_sub(config::JOIN_HISTORY as u64);
        // Complete when it reaches back to the room's first entry.
        let complete = rs.last_seq == since || (since == 0 && rs.first_seq() <= 1);
        let history = history_frame(
            room,
            rs,
            &user.name,
            since,
            rs.last_seq,
            complete,
            usize::MAX,
        );
        let entry = KeptEntry::new(now_ms(), EntryKind::Join, &user.name, None, None);
        let seq = rs.append(entry.clone());
        Self::apply_membership(room, rs, user, us, EntryKind::Join);
        let delivery = Delivery {
            room: room.clone(),
            seq,
            entry,
            ack: None,
            change: Change::Join(user.clone(), history),
        };
        let (room, user) = (room.clone(), user.clone());
        let undo = move || {
            let mut us = user.lock();
            let mut rs = room.lock();
            Self::apply_membership(&room, &mut rs, &user, &mut us, EntryKind::Leave);
            rs.unsubscribe_user(&user.key);
        };
        self.submit_entry(slot, rs, Some(us), delivery, undo)
    }

    /// Leaves a room. The last member's leave deletes the room: its `leave` entry is
    /// published to the leaver's connections, then a [`Record::RoomDeleted`] follows it.
    pub async fn leave_room(&self, user: &Arc<User>, id: &str) -> Result<(), ChatError> {
        let room = self.room(id)?;
        let commit = {
            let mut us = user.lock();
            let mut rs = room.lock();
            if rs.deleted || !rs.members.contains_key(&user.key) {
                return Err(ChatError::NotInRoom);
            }
            let last = rs.members.len() == 1;
            let slot = self.reserve()?;
            let delete_slot = if last { Some(self.reserve()?) } else { None };
            let entry = KeptEntry::new(now_ms(), EntryKind::Leave, &user.name, None, None);
            let seq = rs.append(entry.clone());
            Self::apply_membership(&room, &mut rs, user, &mut us, EntryKind::Leave);
            // The leaver's connections still get the entry: it tells them they left.
            let delivery = Delivery {
                room: room.clone(),
                seq,
                entry,
                ack: None,
                change: Change::Leave(user.clone()),
            };
            let (room2, user2) = (room.clone(), user.clone());
            let undo = move || {
                let mut us = user2.lock();
                let mut rs = room2.lock();
                Self::apply_membership(&room2, &mut rs, &user2, &mut us, EntryKind::Join);
                let conns = us.conns.clone();
                rs.subscribe(&conns);
            };
            let commit = self.submit_entry(slot, &mut rs, Some(&us), delivery, undo);
            if let Some(slot) = delete_slot {
                self.delete_locked(slot, &room, &mut rs);
            }
            commit
        };
        // The deletion's fate does not change the answer: the leave itself is kept, and a
        // deletion the store failed to keep is undone (the room stays, empty).
        commit.wait().await
    }

    /// Removes an empty room from the table and hands its `RoomDeleted` to the store.
    fn delete_locked(&self, slot: Slot, room: &Arc<Room>, rs: &mut RoomState) {
        rs.deleted = true;
        if self.rooms.remove(&room.id).is_some() {
            Self::count_owned(&self.owned, &room.owner, false);
        }
        let rec = Record::RoomDeleted {
            id: room.id.clone(),
        };
        let (rooms, owned, room) = (self.rooms.clone(), self.owned.clone(), room.clone());
        drop(self.commit(slot, &rec, move || {
            room.lock().deleted = false;
            if rooms.insert(room.clone()) {
                Self::count_owned(&owned, &room.owner, true);
            }
        }));
    }
}
