//! Governing a room: invitations, kicks, bans, mutes, roles and its fields. Each action is
//! one core method that both its REST call and its slash command run; who may do it is
//! decided by `policy`, and what it changes by `Core::apply_entry`, which replay runs too.
//!
//! Every action but an invitation is a timeline entry. Its effects apply at once, under the
//! room's lock, so the next request sees them. Should the store fail before keeping the
//! entry, the room's governance goes back to what it was before the oldest change the store
//! has not kept (`RoomState::gov_pending`): the store fails for good, so every later change
//! fails too, and the oldest saved state is the last one the journal holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::Value;

use super::decide;
use super::policy::{self, Access, Action};
use super::rooms::{Governance, Room, RoomState, RoomTable};
use super::timeline::{Change, Delivery};
use super::users::UserState;
use super::{encode, ChatError, Commit, Core, Ctx, Owned, Record, User};
use crate::protocol::{
    BanView, EntryExtra, EntryKind, Role, RoomChanges, RoomPatch, RoomView, ServerFrame, Visibility,
};
use crate::store::{KeptEntry, Slot};

/// The longest mute, in seconds (30 days).
pub const MAX_MUTE_SECONDS: i64 = 2_592_000;
/// The longest kick or ban reason, in characters.
pub const MAX_REASON_CHARS: usize = 256;
/// Pending invitations one room may hold.
pub const MAX_PENDING_INVITES: usize = 1000;

/// A governance entry to append: its kind, text and extra fields.
pub(super) struct Act<'a> {
    pub(super) kind: EntryKind,
    pub(super) text: Option<&'a str>,
    pub(super) extra: EntryExtra,
}

/// A reason as given: trimmed; empty is none; at most `MAX_REASON_CHARS`, no control
/// characters.
fn valid_reason(reason: Option<&str>) -> Result<Option<&str>, ChatError> {
    let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    if reason.chars().count() > MAX_REASON_CHARS || super::text::has_hidden_chars(reason) {
        return Err(ChatError::BadRequest(format!(
            "a reason is at most {MAX_REASON_CHARS} characters without control characters"
        )));
    }
    Ok(Some(reason))
}

/// A mute's length in seconds, as given: a whole JSON number (REST) or a command's word
/// (`/mute USER SECONDS`), from 1 to `MAX_MUTE_SECONDS`.
#[derive(Debug, Clone, Copy)]
pub enum Seconds<'a> {
    Json(Option<&'a Value>),
    Word(&'a str),
}

impl Seconds<'_> {
    pub fn get(self) -> Result<u64, ChatError> {
        let n = match self {
            Seconds::Json(Some(Value::Number(n))) => crate::protocol::whole::as_i64(n),
            Seconds::Word(w) => w.trim().parse::<i64>().ok(),
            Seconds::Json(_) => None,
        };
        match n {
            Some(n) if (1..=MAX_MUTE_SECONDS).contains(&n) => Ok(n as u64),
            _ => Err(ChatError::InvalidDuration),
        }
    }
}

/// Puts back governance saved before a change the store did not keep, with what mirrors
/// it outside the room's state (the listing's name, the private flag, owned counts).
fn restore_gov(
    rooms: &RoomTable,
    owned: &Owned,
    room: &Room,
    rs: &mut RoomState,
    saved: Governance,
) {
    if saved.name != rs.gov.name {
        rooms.rename(&room.id, &saved.name);
    }
    if saved.owner != rs.gov.owner {
        owned.count(&rs.gov.owner, false);
        owned.count(&saved.owner, true);
    }
    room.set_visibility(rs, saved.visibility);
    rs.gov = saved;
}

/// Undoes the governance changes the store failed to keep: back to the state before the
/// oldest of them (the store fails for good, so all later ones failed too).
fn undo_gov(rooms: &RoomTable, owned: &Owned, room: &Room, rs: &mut RoomState) {
    if let Some((_, saved)) = rs.gov_pending.pop_front() {
        restore_gov(rooms, owned, room, rs, saved);
    }
    rs.gov_pending.clear();
}

impl Core {
    /// Saves the room's governance before a change the store has yet to keep; returns the
    /// token that `RoomState::gov_kept` forgets it by. Nothing to save in memory.
    fn hold_gov(&self, slot: &Slot, rs: &mut RoomState) -> Option<u64> {
        if let Slot::Memory = slot {
            return None;
        }
        let token = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let saved = rs.gov.clone();
        rs.gov_pending.push_back((token, saved));
        Some(token)
    }

    /// `Err(RoomRestricted)` (or `RoomNotFound`) before anything else is checked: a private
    /// room tells an outsider nothing, not even that an argument was malformed.
    fn reach_room(&self, actor: &User, room_id: &str) -> Result<(), ChatError> {
        let room = self.room(room_id)?;
        let rs = room.lock();
        policy::reach(&rs, &actor.key, Access::Other)
    }

    /// The room, the named user (looked up before any lock, as lock order wants the user
    /// first) and whether the room exists.
    fn room_and_target(
        &self,
        room_id: &str,
        username: &str,
    ) -> Result<(Arc<Room>, Option<Arc<User>>), ChatError> {
        let room = self.room(room_id)?;
        Ok((room, self.user(&username.trim().to_ascii_lowercase())))
    }

    /// Appends a governance entry by `actor` and applies it. `subject` is the member a kick
    /// or ban removes, with their state locked; their connections get the entry and then
    /// nothing more from the room.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn govern_locked(
        &self,
        cx: &Ctx,
        slot: Slot,
        room: &Arc<Room>,
        rs: &mut RoomState,
        actor: &str,
        act: Act<'_>,
        subject: Option<(&Arc<User>, &mut UserState)>,
    ) -> Commit {
        let now = cx.now;
        let entry = KeptEntry::with_extra(now, act.kind, actor, act.text, None, &act.extra);
        let gov_token = self.hold_gov(&slot, rs);
        let subject_user = subject.as_ref().map(|(u, _)| Arc::clone(u));
        let removed = subject_user
            .as_ref()
            .and_then(|u| rs.members.get(&u.key).cloned());
        let seq = rs.last_seq + 1;
        self.apply_entry(room, rs, seq, &entry, &act.extra, subject);
        let change = match (&removed, &subject_user) {
            (Some(_), Some(user)) => Change::Leave(user.clone()),
            _ => Change::None,
        };
        let delivery = Delivery {
            room: room.clone(),
            seq,
            entry,
            ack: None,
            change,
            gov_token,
        };
        let (room2, rooms, owned) = (room.clone(), self.rooms.clone(), self.owned.clone());
        let undo = move || {
            let mut us = subject_user.as_ref().map(|u| u.lock());
            let mut rs = room2.lock();
            if let (Some(m), Some(us)) = (removed, us.as_deref_mut()) {
                Self::apply_membership(&room2, &mut rs, &m.user, us, Some(m.since));
                let conns = us.conns.clone();
                rs.subscribe(&conns);
            }
            undo_gov(&rooms, &owned, &room2, &mut rs);
        };
        self.submit_entry(slot, rs, None, delivery, undo)
    }

    /// Invites `username` to a room; their connections get an `invite` frame.
    pub(super) fn invite(
        &self,
        cx: &Ctx,
        actor: &Arc<User>,
        room_id: &str,
        username: &str,
    ) -> Result<Commit, ChatError> {
        let (room, target) = self.room_and_target(room_id, username)?;
        {
            let mut us = target.as_ref().map(|u| u.lock());
            let mut rs = room.lock();
            policy::reach(&rs, &actor.key, Access::Other)?;
            let (Some(target), Some(us)) = (target.as_ref(), us.as_deref_mut()) else {
                return Err(ChatError::UserNotFound);
            };
            policy::check(&rs, &actor.key, Action::Invite, Some(&target.key))?;
            // Invited already and not yet acted on: the invitation stands as it was, and the
            // invitee gets no second `invite` frame they could do nothing new with.
            if !decide::invite(&rs, &target.key)? {
                return Ok(Commit::done());
            }
            let slot = self.place(cx)?;
            let rec = Record::Invited {
                room: room.id.clone(),
                username: target.name.clone(),
                by: actor.name.clone(),
                at_seq: rs.last_seq,
            };
            let token = self.hold_gov(&slot, &mut rs);
            Self::apply_invite(&room, &mut rs, target, us, &actor.name);
            let view = room.view(&rs, &target.key);
            let frame = encode(&ServerFrame::Invite {
                room: &view,
                by: &actor.name,
            });
            // An invitation by someone the invitee blocked stands (`me` lists it), but is not
            // pushed to them.
            let conns = if self.blocks.blocks(&target.key, &actor.key) {
                Vec::new()
            } else {
                us.conns.clone()
            };
            let (metrics, room2) = (self.metrics.clone(), room.clone());
            let (rooms, owned) = (self.rooms.clone(), self.owned.clone());
            let done = move |kept: bool| {
                if let Some(token) = token {
                    let mut rs = room2.lock();
                    if !kept {
                        undo_gov(&rooms, &owned, &room2, &mut rs);
                        return;
                    }
                    rs.gov_kept(token);
                }
                for c in &conns {
                    super::deliver_to(&metrics, c, &frame);
                }
            };
            Ok(self.commit_then(slot, &rec, done))
        }
    }

    /// Removes a member (`Kick`) or bans a user (`Ban`, a member or not), with an optional
    /// reason.
    pub(super) fn remove_member(
        &self,
        cx: &Ctx,
        actor: &Arc<User>,
        room_id: &str,
        username: &str,
        reason: Option<&str>,
        ban: bool,
    ) -> Result<Commit, ChatError> {
        self.reach_room(actor, room_id)?;
        let reason = valid_reason(reason)?;
        let (room, target) = self.room_and_target(room_id, username)?;
        {
            let mut us = target.as_ref().map(|u| u.lock());
            let mut rs = room.lock();
            policy::reach(&rs, &actor.key, Access::Other)?;
            let (Some(target), Some(us)) = (target.as_ref(), us.as_deref_mut()) else {
                return Err(ChatError::UserNotFound);
            };
            let action = if ban { Action::Ban } else { Action::Kick };
            policy::check(&rs, &actor.key, action, Some(&target.key))?;
            let member = decide::remove(&rs, &target.key, ban)?;
            let slot = self.place(cx)?;
            let act = Act {
                kind: if ban { EntryKind::Ban } else { EntryKind::Kick },
                text: reason,
                extra: EntryExtra::target(&target.name),
            };
            let subject = member.then_some((target, us));
            Ok(self.govern_locked(cx, slot, &room, &mut rs, &actor.name, act, subject))
        }
    }

    /// The common part of an action on a named user that does not lock them: finds the
    /// room and the user, checks the room can be reached and the role table allows
    /// `action` (on the user, when `on_target`), then runs `act` under the room's lock.
    fn on_user(
        &self,
        actor: &User,
        room_id: &str,
        username: &str,
        (action, on_target): (Action, bool),
        act: impl FnOnce(&mut RoomState, &Arc<Room>, &Arc<User>) -> Result<Commit, ChatError>,
    ) -> Result<Commit, ChatError> {
        let (room, target) = self.room_and_target(room_id, username)?;
        let mut rs = room.lock();
        policy::reach(&rs, &actor.key, Access::Other)?;
        let target = target.ok_or(ChatError::UserNotFound)?;
        let on = on_target.then_some(target.key.as_str());
        policy::check(&rs, &actor.key, action, on)?;
        act(&mut rs, &room, &target)
    }

    /// Lifts a ban (`Unban`) or a mute (`Unmute`).
    pub(super) fn lift(
        &self,
        cx: &Ctx,
        actor: &Arc<User>,
        room_id: &str,
        username: &str,
        kind: EntryKind,
    ) -> Result<Commit, ChatError> {
        let unban = kind == EntryKind::Unban;
        let action = if unban { Action::Unban } else { Action::Unmute };
        self.on_user(
            actor,
            room_id,
            username,
            (action, true),
            |rs, room, target| {
                decide::lift(rs, &target.key, unban, cx.now)?;
                let slot = self.place(cx)?;
                let act = Act {
                    kind,
                    text: None,
                    extra: EntryExtra::target(&target.name),
                };
                Ok(self.govern_locked(cx, slot, room, rs, &actor.name, act, None))
            },
        )
    }

    /// Mutes a member for `seconds`: their messages to the room are refused until then.
    /// `None`: the length given was not valid (`invalid_duration`, once the room's access
    /// is checked).
    pub(super) fn mute(
        &self,
        cx: &Ctx,
        actor: &Arc<User>,
        room_id: &str,
        username: &str,
        seconds: Option<u64>,
    ) -> Result<Commit, ChatError> {
        self.reach_room(actor, room_id)?;
        let seconds = seconds.ok_or(ChatError::InvalidDuration)?;
        let mute = (Action::Mute, true);
        self.on_user(actor, room_id, username, mute, |rs, room, target| {
            decide::mute(rs, &target.key)?;
            let slot = self.place(cx)?;
            let act = Act {
                kind: EntryKind::Mute,
                text: None,
                extra: EntryExtra {
                    until: Some(cx.now + seconds * 1000),
                    ..EntryExtra::target(&target.name)
                },
            };
            Ok(self.govern_locked(cx, slot, room, rs, &actor.name, act, None))
        })
    }

    /// Gives a member a role. `"owner"` transfers ownership: a `role` entry for the new
    /// owner, then one making the old owner a moderator. Giving the role someone has
    /// already changes nothing.
    pub(super) fn set_role(
        &self,
        cx: &Ctx,
        actor: &Arc<User>,
        room_id: &str,
        username: &str,
        role: Option<&str>,
    ) -> Result<Commit, ChatError> {
        self.reach_room(actor, room_id)?;
        let role = role.and_then(Role::parse).ok_or(ChatError::InvalidRole)?;
        let roles = (Action::Roles, false);
        self.on_user(actor, room_id, username, roles, |rs, room, target| {
            let Some(transfer) = decide::role(rs, &target.key, role)? else {
                return Ok(Commit::done());
            };
            let slot = self.place(cx)?;
            let demote_slot = if transfer {
                Some(self.place(cx)?)
            } else {
                None
            };
            let act = Act {
                kind: EntryKind::Role,
                text: Some(role.as_str()),
                extra: EntryExtra::target(&target.name),
            };
            let commit = self.govern_locked(cx, slot, room, rs, &actor.name, act, None);
            Ok(match demote_slot {
                Some(slot) => {
                    let act = Act {
                        kind: EntryKind::Role,
                        text: Some(Role::Moderator.as_str()),
                        extra: EntryExtra::target(&actor.name),
                    };
                    commit.and(self.govern_locked(cx, slot, room, rs, &actor.name, act, None))
                }
                None => commit,
            })
        })
    }

    /// Changes a room's name, topic or visibility; appends an `update` entry with the
    /// fields that changed, or nothing when none did. Returns the room as `actor` sees it.
    pub(super) fn update_room(
        &self,
        cx: &Ctx,
        actor: &Arc<User>,
        room_id: &str,
        patch: &RoomPatch,
    ) -> Result<(RoomView, Commit), ChatError> {
        self.reach_room(actor, room_id)?;
        let as_str = |v: &Option<Value>, e: ChatError| match v {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(e),
        };
        let name = as_str(&patch.name, ChatError::InvalidRoomName)?;
        let topic = as_str(&patch.topic, ChatError::InvalidTopic)?;
        let visibility = as_str(&patch.visibility, ChatError::InvalidVisibility)?;
        let room = self.room(room_id)?;
        {
            let mut rs = room.lock();
            policy::reach(&rs, &actor.key, Access::Other)?;
            let name = name.as_deref().map(super::text::valid_room_name);
            let topic = topic.as_deref().map(super::text::valid_topic);
            let visibility = visibility
                .as_deref()
                .map(|v| Visibility::parse(v).ok_or(ChatError::InvalidVisibility));
            let (name, topic, visibility) = (
                name.transpose()?,
                topic.transpose()?,
                visibility.transpose()?,
            );
            if name.is_some() {
                policy::check(&rs, &actor.key, Action::Rename, None)?;
            }
            if topic.is_some() {
                policy::check(&rs, &actor.key, Action::Topic, None)?;
            }
            if visibility.is_some() {
                policy::check(&rs, &actor.key, Action::Visibility, None)?;
            }
            if name.is_none() && topic.is_none() && visibility.is_none() {
                policy::check(&rs, &actor.key, Action::Topic, None)?;
            }
            let changes = RoomChanges {
                name: name.filter(|n| *n != rs.gov.name).map(str::to_string),
                topic: topic.filter(|t| *t != rs.gov.topic).map(str::to_string),
                visibility: visibility.filter(|v| *v != rs.gov.visibility),
            };
            if changes == RoomChanges::default() {
                Ok((room.view(&rs, &actor.key), Commit::done()))
            } else {
                let slot = self.place(cx)?;
                let act = Act {
                    kind: EntryKind::Update,
                    text: None,
                    extra: EntryExtra {
                        changes: Some(changes),
                        ..EntryExtra::default()
                    },
                };
                let commit = self.govern_locked(cx, slot, &room, &mut rs, &actor.name, act, None);
                let mut view = room.view(&rs, &actor.key);
                view.last_seq = rs.last_seq;
                Ok((view, commit))
            }
        }
    }

    /// The room's bans, for its owner and moderators, oldest first.
    pub fn bans(&self, actor: &User, room_id: &str) -> Result<Vec<BanView>, ChatError> {
        let room = self.room(room_id)?;
        let rs = room.lock();
        policy::check(&rs, &actor.key, Action::ListBans, None)?;
        let mut bans: Vec<BanView> = rs.gov.bans.values().cloned().collect();
        bans.sort_by_key(|b| b.ts);
        Ok(bans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mute_takes_whole_seconds_from_1_to_30_days() {
        let json = |v: Value| Seconds::Json(Some(&v)).get();
        assert_eq!(json(json!(127)), Ok(127));
        assert_eq!(
            json(json!(127.0)),
            Ok(127),
            "a whole number written as a float"
        );
        assert_eq!(json(json!(2_592_000)), Ok(2_592_000));
        for bad in [
            json!(0),
            json!(2_592_001),
            json!(1.5),
            json!("60"),
            json!(null),
        ] {
            assert_eq!(json(bad.clone()), Err(ChatError::InvalidDuration), "{bad}");
        }
        assert_eq!(Seconds::Json(None).get(), Err(ChatError::InvalidDuration));
        assert_eq!(Seconds::Word(" 60 ").get(), Ok(60));
        assert_eq!(Seconds::Word("soon").get(), Err(ChatError::InvalidDuration));
    }
}
