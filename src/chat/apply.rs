//! The one function that applies records to memory ([`Core::apply`]), with the per-record
//! helpers the live path calls under the locks it already holds.
//!
//! Recovery replays the snapshot and the journal through `apply`; a cluster replica applies
//! the records of the shared log through it; the live path (`command`) applies each entry
//! it decides through [`Core::apply_entry`], the code replay runs for it. Applying a record
//! the state already holds changes nothing (see `store::record`).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::rooms::{self, Governance, Member, Room};
use super::{unhex, users, Core, LastRun, Record, Session, User};
use crate::protocol::{EntryExtra, EntryKind};
use crate::store::KeptEntry;

impl Core {
    /// Applies a record to memory. Recovery replays the snapshot and the journal through
    /// here; the live path calls the same per-record helpers under the locks it already
    /// holds. Applying a record the state already holds changes nothing (see
    /// `store::record`).
    pub fn apply(&self, rec: &Record) {
        match rec {
            Record::Epoch { epoch } => {
                *self.epoch.write().unwrap_or_else(|e| e.into_inner()) = epoch.clone();
            }
            Record::Started { boot_id, fsync } => {
                *self.last_run.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastRun {
                    boot_id: boot_id.clone(),
                    fsync: fsync.clone(),
                    stopped: false,
                });
            }
            Record::Stopped => {
                if let Some(run) = self
                    .last_run
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                {
                    run.stopped = true;
                }
            }
            Record::UserRegistered { username, hash, .. } => {
                let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
                if !users.contains_key(&username.to_ascii_lowercase()) {
                    self.apply_user(&mut users, username, hash.clone());
                }
            }
            Record::PasswordChanged { username, hash } => {
                if let Some(user) = self.user(&username.to_ascii_lowercase()) {
                    user.lock().hash = hash.clone();
                }
            }
            Record::SessionStarted {
                token_hash,
                username,
                created,
            } => {
                if let (Some(user), Some(hash)) =
                    (self.user(&username.to_ascii_lowercase()), unhex(token_hash))
                {
                    if let std::collections::hash_map::Entry::Vacant(slot) =
                        self.sessions().entry(hash)
                    {
                        user.lock().sessions.push(hash);
                        slot.insert(Session {
                            user,
                            created: *created,
                        });
                    }
                }
            }
            Record::SessionEnded { token_hash } => {
                if let Some(hash) = unhex(token_hash) {
                    if let Some(s) = self.sessions().remove(&hash) {
                        s.user.lock().sessions.retain(|h| *h != hash);
                    }
                }
            }
            Record::RoomCreated {
                id,
                name,
                owner,
                capacity,
                visibility,
                topic,
                dm_with,
                ..
            } => {
                let gov = Governance {
                    name: name.clone(),
                    owner: owner.clone(),
                    topic: topic.clone(),
                    visibility: *visibility,
                    dm: dm_with.as_ref().map(|w| (owner.clone(), w.clone())),
                    ..Governance::default()
                };
                let dm = gov.dm.clone();
                if self.rooms.insert(self.new_room(id, gov, *capacity), name) {
                    match dm {
                        Some((a, b)) => self.remember_dm(&a, &b, id),
                        None => Self::count_owned(&self.owned, owner, true),
                    }
                }
            }
            Record::Blocked {
                username,
                target,
                blocked,
            } => self.apply_block(username, target, *blocked),
            Record::ReadMarkers { room, markers } => {
                self.move_read_markers(room, markers);
            }
            Record::RoomDeleted { id, .. } => {
                if let Some(room) = self.rooms.remove(id) {
                    let (owner, dm) = {
                        let mut rs = room.lock();
                        rs.deleted = true;
                        rs.members.clear();
                        (rs.gov.owner.clone(), rs.gov.dm.is_some())
                    };
                    if !dm {
                        Self::count_owned(&self.owned, &owner, false);
                    }
                }
            }
            Record::Invited {
                room,
                username,
                by,
                at_seq,
            } => {
                if let (Some(room), Some(user)) = (
                    self.rooms.get(room),
                    self.user(&username.to_ascii_lowercase()),
                ) {
                    let mut us = user.lock();
                    let mut rs = room.lock();
                    if rs.last_seq <= *at_seq {
                        Self::apply_invite(&room, &mut rs, &user, &mut us, by);
                    }
                }
            }
            Record::RoomSnapshot {
                id,
                name,
                owner,
                capacity,
                last_seq,
                members,
                entries,
                kept,
                gov,
            } => {
                let saved = gov.as_deref().cloned().unwrap_or_default();
                let gov = Governance {
                    name: name.clone(),
                    owner: owner.clone(),
                    topic: saved.topic,
                    visibility: saved.visibility,
                    moderators: saved.moderators.into_iter().collect(),
                    bans: saved
                        .bans
                        .into_iter()
                        .map(|b| (b.username.to_ascii_lowercase(), b))
                        .collect(),
                    mutes: saved.mutes.into_iter().collect(),
                    invites: saved.invites.into_iter().collect(),
                    dm: saved.dm.clone(),
                };
                let room = self.new_room(id, gov, *capacity);
                if !self.rooms.insert(room.clone(), name) {
                    return;
                }
                match &saved.dm {
                    Some((a, b)) => self.remember_dm(a, b, id),
                    None => Self::count_owned(&self.owned, owner, true),
                }
                let mut rs = room.lock();
                // The kept entries follow (format 2) and bring `last_seq` up to date as they
                // are restored; a format-1 snapshot has them inline.
                rs.last_seq = last_seq.saturating_sub(*kept + entries.len() as u64);
                for e in entries {
                    rs.restore(e.seq, KeptEntry::from_entry(e));
                }
                rs.last_seq = rs.last_seq.max(last_seq.saturating_sub(*kept));
                room.set_committed(*last_seq);
                for (i, name) in members.iter().enumerate() {
                    if let Some(user) = self.user(&name.to_ascii_lowercase()) {
                        let since = saved.joined.get(i).copied().unwrap_or(i as u64);
                        let mut us = user.lock();
                        Self::apply_membership(&room, &mut rs, &user, &mut us, Some(since));
                        if let Some(m) = rs.members.get_mut(&user.key) {
                            m.read_seq = saved.read.get(i).copied().unwrap_or(0);
                        }
                    }
                }
                for name in &saved.unanswered {
                    rs.set_unanswered(&name.to_ascii_lowercase(), true);
                }
                let invited: Vec<String> = rs.gov.invites.keys().cloned().collect();
                drop(rs);
                for key in invited {
                    if let Some(user) = self.user(&key) {
                        user.lock().invites.push(id.clone());
                    }
                }
            }
            Record::DmUnanswered {
                room,
                username,
                unanswered,
                at_seq,
            } => {
                if let Some(room) = self.rooms.get(room) {
                    let mut rs = room.lock();
                    if rs.last_seq <= *at_seq {
                        rs.set_unanswered(&username.to_ascii_lowercase(), *unanswered);
                    }
                }
            }
            Record::KeptEntries { room, entries } => {
                let Some(room) = self.rooms.get(room) else {
                    return;
                };
                let mut rs = room.lock();
                for e in entries {
                    rs.append(e.clone());
                }
            }
            Record::InviteCodeCreated {
                hash,
                uses,
                expires,
            } => self.apply_invite_created(hash, *uses, *expires),
            Record::InviteCodeUsed { hash, remaining } => self.apply_invite_used(hash, *remaining),
            Record::UserDisabled { username, disabled } => self.apply_disabled(username, *disabled),
            Record::LastSeen { seen } => self.apply_last_seen(seen),
            Record::Entry(entry) => {
                let Some(room) = self.rooms.get(&entry.room) else {
                    return;
                };
                let facts = Facts {
                    kind: entry.kind,
                    from: &entry.from,
                    ts: entry.ts,
                    text: entry.text.as_deref(),
                    extra: &entry.extra,
                };
                let user = facts
                    .subject()
                    .and_then(|name| self.user(&name.to_ascii_lowercase()));
                let mut us = user.as_ref().map(|u| u.lock());
                let mut rs = room.lock();
                if rs.restore(entry.seq, KeptEntry::from_entry(entry)) {
                    let subject = user.as_ref().zip(us.as_deref_mut());
                    self.apply_effects(&room, &mut rs, entry.seq, &facts, subject);
                }
                room.set_committed(entry.seq);
            }
        }
    }

    /// Moves members' read markers up to the given seqs (clamped to the room's last seq; a
    /// lower one is ignored). Returns the members whose marker moved, with where to.
    pub(super) fn move_read_markers(
        &self,
        room_id: &str,
        markers: &[(String, u64)],
    ) -> Vec<(Arc<User>, u64)> {
        let Some(room) = self.rooms.get(room_id) else {
            return Vec::new();
        };
        let mut rs = room.lock();
        let top = rs.last_seq;
        markers
            .iter()
            .filter_map(|(name, seq)| {
                let m = rs.members.get_mut(&name.to_ascii_lowercase())?;
                let seq = (*seq).min(top);
                (seq > m.read_seq).then(|| {
                    m.read_seq = seq;
                    (m.user.clone(), seq)
                })
            })
            .collect()
    }

    pub(super) fn new_room(&self, id: &str, gov: Governance, capacity: u32) -> Arc<Room> {
        Arc::new(Room::new(id.to_string(), gov, capacity, self.cfg.history))
    }

    /// Counts a room created (`up`) or deleted for its owner.
    pub(super) fn count_owned(owned: &Mutex<HashMap<String, usize>>, owner: &str, up: bool) {
        let mut owned = owned.lock().unwrap_or_else(|e| e.into_inner());
        let key = owner.to_ascii_lowercase();
        if up {
            *owned.entry(key).or_default() += 1;
        } else if let Some(n) = owned.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                owned.remove(&key);
            }
        }
    }

    pub(super) fn apply_user(
        &self,
        users: &mut BTreeMap<String, Arc<User>>,
        name: &str,
        hash: String,
    ) {
        let user = User::new(name, hash, self.cfg.rate_burst, self.cfg.rest_rate_burst);
        users.insert(user.key.clone(), Arc::new(user));
    }

    /// Makes `user` a member since the join of seq `since`, or (`None`) removes them.
    /// Connections subscribe and unsubscribe when the entry is published (`timeline`), not
    /// here.
    pub(super) fn apply_membership(
        room: &Room,
        rs: &mut rooms::RoomState,
        user: &Arc<User>,
        us: &mut users::UserState,
        since: Option<u64>,
    ) {
        match since {
            Some(since) => {
                rs.members
                    .insert(user.key.clone(), Member::new(user.clone(), since));
                rs.gov.invites.remove(&user.key);
                if !us.rooms.contains(&room.id) {
                    us.rooms.push(room.id.clone());
                }
            }
            None => {
                rs.members.remove(&user.key);
                rs.gov.moderators.remove(&user.key);
                us.rooms.retain(|r| *r != room.id);
            }
        }
    }

    /// Records a pending invitation of `user` by `by`.
    pub(super) fn apply_invite(
        room: &Room,
        rs: &mut rooms::RoomState,
        user: &User,
        us: &mut users::UserState,
        by: &str,
    ) {
        if rs.members.contains_key(&user.key) || rs.gov.bans.contains_key(&user.key) {
            return;
        }
        rs.gov.invites.insert(user.key.clone(), by.to_string());
        us.invites.retain(|id| *id != room.id);
        us.invites.push(room.id.clone());
        if us.invites.len() > users::MAX_INVITES_KEPT {
            us.invites.remove(0);
        }
    }

    /// What an entry changes besides the timeline: membership, roles, bans, mutes and the
    /// room's fields. `subject` is the user a join, leave, kick or ban moves in or out of
    /// the room, with their state locked. The live path calls this right after appending
    /// the entry; replay calls it for each entry it restores.
    pub(super) fn apply_effects(
        &self,
        room: &Room,
        rs: &mut rooms::RoomState,
        seq: u64,
        f: &Facts<'_>,
        subject: Option<(&Arc<User>, &mut users::UserState)>,
    ) {
        let target = f.extra.target.as_deref().unwrap_or_default();
        let target_key = target.to_ascii_lowercase();
        match f.kind {
            EntryKind::Message => {
                // Writing in a DM is acting in it: it counts toward the writer's room limit.
                rs.set_unanswered(&f.from.to_ascii_lowercase(), false);
            }
            EntryKind::Join => {
                if let Some((user, us)) = subject {
                    Self::apply_membership(room, rs, user, us, Some(seq));
                }
            }
            EntryKind::Leave | EntryKind::Kick | EntryKind::Ban => {
                if let Some((user, us)) = subject {
                    Self::apply_membership(room, rs, user, us, None);
                }
                if f.kind != EntryKind::Leave {
                    rs.members.remove(&target_key);
                    rs.gov.moderators.remove(&target_key);
                    rs.gov.invites.remove(&target_key);
                }
                if f.kind == EntryKind::Ban {
                    rs.gov.mutes.remove(&target_key);
                    let ban = crate::protocol::BanView {
                        username: target.to_string(),
                        by: f.from.to_string(),
                        ts: f.ts,
                        reason: f.text.map(str::to_string),
                    };
                    rs.gov.bans.insert(target_key, ban);
                }
            }
            EntryKind::Unban => {
                rs.gov.bans.remove(&target_key);
            }
            EntryKind::Mute => {
                rs.gov.mutes.insert(target_key, f.extra.until.unwrap_or(0));
            }
            EntryKind::Unmute => {
                rs.gov.mutes.remove(&target_key);
            }
            EntryKind::Role => match f.text {
                Some("owner") => {
                    let old = std::mem::replace(&mut rs.gov.owner, target.to_string());
                    rs.gov.moderators.remove(&target_key);
                    Self::count_owned(&self.owned, &old, false);
                    Self::count_owned(&self.owned, target, true);
                }
                Some("moderator") => {
                    rs.gov.moderators.insert(target_key);
                }
                _ => {
                    rs.gov.moderators.remove(&target_key);
                }
            },
            EntryKind::Edit | EntryKind::Delete => {
                if let Some(target) = f.extra.refers {
                    let edit = (f.kind == EntryKind::Edit).then_some((f.text, f.extra));
                    Self::rewrite_message(rs, target, edit);
                }
            }
            EntryKind::Update => {
                let Some(changes) = &f.extra.changes else {
                    return;
                };
                if let Some(name) = &changes.name {
                    rs.gov.name = name.clone();
                    self.rooms.rename(&room.id, name);
                }
                if let Some(topic) = &changes.topic {
                    rs.gov.topic = topic.clone();
                }
                if let Some(v) = changes.visibility {
                    room.set_visibility(rs, v);
                }
            }
        }
    }
}

/// The parts of an entry that `Core::apply_effects` reads.
pub(crate) struct Facts<'a> {
    pub(crate) kind: EntryKind,
    pub(crate) from: &'a str,
    pub(crate) ts: u64,
    pub(crate) text: Option<&'a str>,
    pub(crate) extra: &'a EntryExtra,
}

impl Facts<'_> {
    /// The user whose membership the entry changes: the sender of a join or leave, the
    /// target of a kick or ban.
    pub(super) fn subject(&self) -> Option<&str> {
        match self.kind {
            EntryKind::Join | EntryKind::Leave => Some(self.from),
            EntryKind::Kick | EntryKind::Ban => self.extra.target.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
