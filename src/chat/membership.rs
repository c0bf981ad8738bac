//! Room membership and listings: creating, joining and leaving rooms, deleting them, and
//! the views of them (`rooms`, `my_rooms`, `room_detail`). Joins and leaves are timeline
//! entries, handed on through `submit_entry`.
//!
//! A room lives while it has members: the last member's leave is followed by a
//! [`Record::RoomDeleted`], and the room and its timeline leave the table at once. Its owner
//! (or an administrator) may also delete it. A user owns at most `--max-owned-rooms` rooms,
//! counted per owner in `Core::owned`. When the owner leaves, ownership passes to the
//! moderator who joined first, else to the member who joined first.

use std::sync::Arc;

use super::decide::{self, Joining, Leaving};
use super::history::history_frame;
use super::moderation::Act;
use super::policy::{self, Access, Action};
use super::rooms::{Governance, Room, RoomState, RoomTable};
use super::text;
use super::timeline::{Change, Delivery};
use super::{encode, users, ChatError, Commit, Core, Ctx, Record, User};
use crate::config;
use crate::protocol::{
    EntryExtra, EntryKind, InviteView, MemberView, Role, RoomDetail, RoomList, RoomView,
    ServerFrame, Visibility,
};
use crate::store::{KeptEntry, Slot};

/// What a new room is made of, as given (`POST /api/v1/rooms`, `/create`).
#[derive(Debug, Default)]
pub struct NewRoomSpec<'a> {
    pub name: &'a str,
    pub capacity: Option<i64>,
    pub visibility: Option<&'a str>,
    pub topic: Option<&'a str>,
}

/// A user's rooms as `--max-rooms-per-user` sees them (`Core::room_load`).
pub(super) struct RoomLoad {
    /// Rooms that count: every room but the DMs in `unanswered`.
    pub counted: usize,
    /// DMs the other side opened that the user has neither opened nor written in.
    pub unanswered: usize,
}

impl Core {
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// A page of the room listing as `user` sees it: rooms by name then id after the room
    /// `after`, whose name contains `q` case-insensitively; private rooms only if `user`
    /// is a member. `limit` is clamped to 1..=`LIST_PAGE_MAX`.
    pub fn rooms(
        &self,
        user: &User,
        q: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RoomList, ChatError> {
        let limit = limit.clamp(1, config::LIST_PAGE_MAX);
        let mine = user.lock().rooms.clone();
        let visible = |room: &Room| !room.is_private() || mine.contains(&room.id);
        let page = self
            .rooms
            .page(&q.to_lowercase(), after, limit, visible)
            .ok_or_else(|| ChatError::BadRequest("unknown cursor: no such room".into()))?;
        let rooms = page
            .rooms
            .iter()
            .map(|r| r.view(&r.lock(), &user.key))
            .collect();
        Ok(RoomList {
            rooms,
            next: page.next,
        })
    }

    pub(super) fn owned_by(&self, key: &str) -> usize {
        self.owned.of(key)
    }

    /// The rooms a user belongs to, in the order joined, as they see them.
    pub fn my_rooms(&self, user: &User) -> Vec<RoomView> {
        let ids = user.lock().rooms.clone();
        ids.iter()
            .filter_map(|id| self.rooms.get(id))
            .filter_map(|r| {
                let rs = r.lock();
                rs.members
                    .contains_key(&user.key)
                    .then(|| r.view(&rs, &user.key))
            })
            .collect()
    }

    /// `GET /api/v1/me`: the user, their rooms and their pending invitations.
    pub fn me(&self, user: &User) -> serde_json::Value {
        serde_json::json!({
            "username": user.name,
            "rooms": self.my_rooms(user),
            "invites": self.my_invites(user),
            "admin": self.is_admin(user),
        })
    }

    /// The user's pending invitations, oldest first. Forgets stale ones (the room was
    /// deleted, or the invitation used or cancelled).
    pub fn my_invites(&self, user: &User) -> Vec<InviteView> {
        let ids = user.lock().invites.clone();
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for id in ids {
            let invite = self.rooms.get(&id).and_then(|r| {
                let rs = r.lock();
                let by = rs.gov.invites.get(&user.key)?.clone();
                Some(InviteView {
                    room: r.view(&rs, &user.key),
                    by,
                })
            });
            match invite {
                Some(i) => out.push(i),
                None => stale.push(id),
            }
        }
        if !stale.is_empty() {
            user.lock().invites.retain(|id| !stale.contains(id));
        }
        out
    }

    /// A room's details with its members (in the order they joined) and their roles.
    /// A private room answers only its members and invited users.
    pub fn room_detail(&self, user: &User, id: &str) -> Result<RoomDetail, ChatError> {
        let room = self.room(id)?;
        let (view, members) = {
            let rs = room.lock();
            policy::reach(&rs, &user.key, Access::Details)?;
            let mut members: Vec<_> = rs
                .members
                .values()
                .map(|m| (m.since, m.user.clone(), rs.role(&m.user.key)))
                .collect();
            members.sort_by_key(|m| m.0);
            (room.view(&rs, &user.key), members)
        };
        let member_list = members
            .iter()
            .map(|(_, u, role)| MemberView {
                username: u.name.clone(),
                online: self.presence_of(u).0,
                role: role.unwrap_or(Role::Member),
            })
            .collect();
        Ok(RoomDetail {
            room: view,
            member_list,
        })
    }

    /// Creates a room owned by `user`, who joins it.
    pub(super) fn create_room(
        &self,
        cx: &mut Ctx,
        user: &Arc<User>,
        spec: &NewRoomSpec<'_>,
    ) -> Result<(RoomView, Commit), ChatError> {
        let name = text::valid_room_name(spec.name)?;
        let capacity = match spec.capacity {
            None => self.cfg.room_capacity,
            Some(c) if (1..=config::MAX_ROOM_CAPACITY as i64).contains(&c) => c as u32,
            Some(_) => return Err(ChatError::InvalidCapacity),
        };
        let visibility = match spec.visibility {
            None => Visibility::Public,
            Some(v) => Visibility::parse(v).ok_or(ChatError::InvalidVisibility)?,
        };
        let topic = text::valid_topic(spec.topic.unwrap_or_default())?;
        let gov = Governance {
            name: name.to_string(),
            owner: user.name.clone(),
            topic: topic.to_string(),
            visibility,
            ..Governance::default()
        };
        self.create_locked(cx, user, gov, capacity)
    }

    /// Forgets ids of deleted rooms in the user's list (a deletion does not lock members).
    pub(super) fn prune_rooms(&self, us: &mut users::UserState) {
        us.rooms.retain(|id| self.rooms.get(id).is_some());
    }

    /// The user's rooms, split into those that count toward `--max-rooms-per-user` and the
    /// DMs they were added to and have not acted in, which do not. Forgets deleted rooms
    /// first. Locks each of the user's rooms in turn: call it with the user's lock held
    /// and no room's.
    pub(super) fn room_load(&self, user: &User, us: &mut users::UserState) -> RoomLoad {
        self.prune_rooms(us);
        let unanswered = us
            .rooms
            .iter()
            .filter_map(|id| self.rooms.get(id))
            .filter(|r| {
                r.lock()
                    .members
                    .get(&user.key)
                    .is_some_and(|m| m.unanswered)
            })
            .count();
        RoomLoad {
            counted: us.rooms.len() - unanswered,
            unanswered,
        }
    }

    /// `Err(TooManyRooms)` when the user may not join or create one more room.
    pub(super) fn room_limit(
        &self,
        user: &User,
        us: &mut users::UserState,
    ) -> Result<(), ChatError> {
        if self.room_load(user, us).counted >= self.cfg.max_rooms_per_user {
            return Err(ChatError::TooManyRooms);
        }
        Ok(())
    }

    fn create_locked(
        &self,
        cx: &mut Ctx,
        user: &Arc<User>,
        gov: Governance,
        capacity: u32,
    ) -> Result<(RoomView, Commit), ChatError> {
        let mut us = user.lock();
        self.room_limit(user, &mut us)?;
        // The user's lock is held, so two creates of theirs cannot both pass this check.
        let max_owned = self.cfg.max_owned_rooms;
        if max_owned > 0 && self.owned_by(&user.key) >= max_owned {
            return Err(ChatError::TooManyOwnedRooms);
        }
        let (created_slot, join_slot) = (self.place(cx)?, self.place(cx)?);
        let room = self.insert_fresh_room(cx, &gov, capacity);
        let created = Record::RoomCreated {
            id: room.id.clone(),
            name: gov.name.clone(),
            owner: gov.owner.clone(),
            capacity,
            ts: cx.now,
            visibility: gov.visibility,
            topic: gov.topic.clone(),
            dm_with: None,
        };
        self.owned.count(&gov.owner, true);
        let (rooms, owned, id) = (self.rooms.clone(), self.owned.clone(), room.id.clone());
        let owner = gov.owner.clone();
        drop(self.commit(created_slot, &created, move || {
            if RoomTable::remove(&rooms, &id).is_some() {
                owned.count(&owner, false);
            }
        }));
        let mut rs = room.lock();
        let (view, commit) = self.join_locked(cx, join_slot, &room, &mut rs, user, &mut us);
        Ok((view, commit))
    }

    /// Makes a room of `gov` under a random id from `cx` that no room has, and puts it in the
    /// table.
    pub(super) fn insert_fresh_room(
        &self,
        cx: &mut Ctx,
        gov: &Governance,
        capacity: u32,
    ) -> Arc<Room> {
        loop {
            let room = self.new_room(&cx.random_id(10), gov.clone(), capacity);
            if self.rooms.insert(room.clone(), &gov.name) {
                return room;
            }
        }
    }

    /// Joins a room (a member already is answered the room as it is).
    pub(super) fn join_room(
        &self,
        cx: &mut Ctx,
        user: &Arc<User>,
        id: &str,
    ) -> Result<(RoomView, Commit), ChatError> {
        let room = self.room(id)?;
        {
            let mut us = user.lock();
            // Counted before the room is locked: counting locks the user's rooms.
            let full = self.room_limit(user, &mut us);
            let mut rs = room.lock();
            if decide::join(&rs, &user.key, room.capacity, full)? == Joining::Already {
                return Ok((room.view(&rs, &user.key), Commit::done()));
            }
            let slot = self.place(cx)?;
            Ok(self.join_locked(cx, slot, &room, &mut rs, user, &mut us))
        }
    }

    /// Appends `user`'s join entry (using their invitation, if any). Once it is published,
    /// the joiner's connections get a `joined` frame and the room's recent `history`, then
    /// the entry, like every other member. Returns the room as the joiner sees it.
    pub(super) fn join_locked(
        &self,
        cx: &Ctx,
        slot: Slot,
        room: &Arc<Room>,
        rs: &mut RoomState,
        user: &Arc<User>,
        us: &mut users::UserState,
    ) -> (RoomView, Commit) {
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
        // Served history like a page's: a member who joins and leaves over and over is held
        // to the same byte budget.
        self.charge_history_locked(us, history.len());
        let invited_by = rs.gov.invites.get(&user.key).cloned();
        let entry = KeptEntry::new(cx.now, EntryKind::Join, &user.name, None, None);
        let seq = rs.last_seq + 1;
        self.apply_entry(
            room,
            rs,
            seq,
            &entry,
            &EntryExtra::default(),
            Some((user, us)),
        );
        let mut view = room.view(rs, &user.key);
        view.last_seq = rs.last_seq;
        let joined = encode(&ServerFrame::Joined { room: &view });
        let delivery = Delivery {
            room: room.clone(),
            seq,
            entry,
            ack: None,
            change: Change::Join(user.clone(), [joined, history]),
            gov_token: None,
        };
        let (room, user) = (room.clone(), user.clone());
        let undo = move || {
            let mut us = user.lock();
            let mut rs = room.lock();
            Self::apply_membership(&room, &mut rs, &user, &mut us, None);
            if let Some(by) = invited_by {
                rs.gov.invites.insert(user.key.clone(), by);
            }
            rs.unsubscribe_user(&user.key);
        };
        let commit = self.submit_entry(slot, rs, Some(us), delivery, undo);
        (view, commit)
    }

    /// Leaves a room. The last member's leave deletes the room: its `leave` entry is
    /// published to the leaver's connections, then a [`Record::RoomDeleted`] follows it.
    /// The owner's leave passes ownership on, with a `role` entry after the `leave`.
    /// The answer waits for the ownership handover too, so the room is never left without
    /// an owner that a crash could lose. The deletion's fate does not change the answer:
    /// the leave itself is kept, and a deletion the store failed to keep is undone (the
    /// room stays, empty).
    pub(super) fn leave_room(
        &self,
        cx: &mut Ctx,
        user: &Arc<User>,
        id: &str,
    ) -> Result<Commit, ChatError> {
        let room = self.room(id)?;
        {
            let mut us = user.lock();
            let mut rs = room.lock();
            let Leaving { last, heir } = decide::leave(&rs, &user.key)?;
            let slot = self.place(cx)?;
            let next_slot = if last || heir.is_some() {
                Some(self.place(cx)?)
            } else {
                None
            };
            let (was, unanswered) = rs
                .members
                .get(&user.key)
                .map_or((0, false), |m| (m.since, m.unanswered));
            let moderator = rs.gov.moderators.contains(&user.key);
            let entry = KeptEntry::new(cx.now, EntryKind::Leave, &user.name, None, None);
            let seq = rs.last_seq + 1;
            let subject = Some((user, &mut *us));
            self.apply_entry(&room, &mut rs, seq, &entry, &EntryExtra::default(), subject);
            // The leaver's connections still get the entry: it tells them they left.
            let delivery = Delivery {
                room: room.clone(),
                seq,
                entry,
                ack: None,
                change: Change::Leave(user.clone()),
                gov_token: None,
            };
            let (room2, user2) = (room.clone(), user.clone());
            let undo = move || {
                let mut us = user2.lock();
                let mut rs = room2.lock();
                Self::apply_membership(&room2, &mut rs, &user2, &mut us, Some(was));
                rs.set_unanswered(&user2.key, unanswered);
                if moderator {
                    rs.gov.moderators.insert(user2.key.clone());
                }
                let conns = us.conns.clone();
                rs.subscribe(&conns);
            };
            let commit = self.submit_entry(slot, &mut rs, Some(&us), delivery, undo);
            let handover = match (next_slot, heir) {
                (Some(slot), Some(heir)) => {
                    let act = Act {
                        kind: EntryKind::Role,
                        text: Some(Role::Owner.as_str()),
                        extra: EntryExtra::target(&heir),
                    };
                    Some(self.govern_locked(cx, slot, &room, &mut rs, &user.name, act, None))
                }
                (Some(slot), None) => {
                    drop(self.delete_locked(slot, &room, &mut rs, None));
                    None
                }
                _ => None,
            };
            Ok(match handover {
                Some(h) => commit.and(h),
                None => commit,
            })
        }
    }

    /// Deletes a room at its owner's request, or an administrator's (`admin`): every
    /// member's connections get `room_deleted`, and the room, its timeline and its
    /// invitations are gone.
    pub(super) fn delete_room(
        &self,
        cx: &Ctx,
        user: &Arc<User>,
        id: &str,
        admin: bool,
    ) -> Result<Commit, ChatError> {
        let room = self.room(id)?;
        {
            let mut rs = room.lock();
            if rs.deleted {
                return Err(ChatError::RoomNotFound);
            }
            if !admin {
                policy::check(&rs, &user.key, Action::Delete, None)?;
            }
            let slot = self.place(cx)?;
            Ok(self.delete_locked(slot, &room, &mut rs, Some(&user.name)))
        }
    }

    /// Removes a room from the table and hands its `RoomDeleted` to the store. `by` names
    /// who deleted it; its members' connections are told once the store keeps the record.
    /// Members' own room lists forget it lazily (`prune_rooms`): a deletion locks no user.
    fn delete_locked(
        &self,
        slot: Slot,
        room: &Arc<Room>,
        rs: &mut RoomState,
        by: Option<&str>,
    ) -> Commit {
        rs.deleted = true;
        let members = std::mem::take(&mut rs.members);
        // DMs are nobody's to own: they do not count against `--max-owned-rooms`.
        let owner = if rs.gov.dm.is_some() {
            None
        } else {
            Some(rs.gov.owner.clone())
        };
        if self.rooms.remove(&room.id).is_some() {
            if let Some(owner) = &owner {
                self.owned.count(owner, false);
            }
        }
        let rec = Record::RoomDeleted {
            id: room.id.clone(),
            by: by.map(str::to_string),
        };
        let frame = by.map(|by| encode(&ServerFrame::RoomDeleted { room: &room.id, by }));
        let metrics = self.metrics.clone();
        let tell = move |subs: Arc<Vec<Arc<super::Conn>>>| {
            if let Some(frame) = &frame {
                for c in subs.iter() {
                    super::deliver_to(&metrics, c, frame);
                }
            }
        };
        if let Slot::Memory = slot {
            tell(std::mem::take(&mut rs.subscribers));
            return Commit::done();
        }
        let (rooms, owned, room) = (self.rooms.clone(), self.owned.clone(), room.clone());
        self.commit_then(slot, &rec, move |kept| {
            let mut rs = room.lock();
            if kept {
                let subs = std::mem::take(&mut rs.subscribers);
                drop(rs);
                tell(subs);
                return;
            }
            rs.deleted = false;
            // Added to, not replaced: a last member's leave failed before, and its undo put
            // the leaver back already (the deletion took no members then).
            rs.members.extend(members);
            let name = rs.gov.name.clone();
            drop(rs);
            if let (true, Some(owner)) = (rooms.insert(room.clone(), &name), &owner) {
                owned.count(owner, true);
            }
        })
    }
}
