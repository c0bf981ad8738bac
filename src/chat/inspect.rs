//! Read-only views of the core's state for the deterministic simulation (`crate::sim`), and
//! the hooks its mutation checks plant a violation with. Nothing on a request path calls
//! them.
//!
//! [`Core::sim_render`] is the state as a canonical text: everything a recovery must bring
//! back (users, sessions, rooms with their members, roles, bans, live mutes, invitations and
//! kept entries, DMs, blocks, invite codes, disabled accounts), sorted, so that two cores
//! holding the same state render the same whatever their hash maps' order. What is not
//! durable by design is left out: presence, last-seen times, read markers (written in
//! batches, `flush_read_markers`), rate-limit budgets, connections and the commit point.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::rooms::Member;
use super::{hex, now_ms, Core, Record, User};
use crate::protocol::{Entry, EntryKind};
use crate::store::KeptEntry;

/// A room as the simulation's invariants read it.
#[derive(Debug, Clone)]
pub struct RoomFacts {
    pub id: String,
    pub capacity: u32,
    /// The owner's name as registered, and the moderators' lowercase names.
    pub owner: String,
    pub moderators: Vec<String>,
    pub dm: bool,
    /// Members' lowercase names.
    pub members: Vec<String>,
    /// Banned users' lowercase names.
    pub bans: Vec<String>,
    pub first_seq: u64,
    /// The last committed seq: an entry the store failed to keep stays in the ring past it,
    /// unseen, until the restart the failed store needs.
    pub last_seq: u64,
    /// The committed entries with seq above the `since` asked for, as history and sync serve
    /// them (`KeptEntry::to_entry`), oldest first.
    pub entries: Vec<Entry>,
}

/// A violation a mutation check plants in the state, behind the core's back.
#[derive(Debug, Clone)]
pub enum Plant {
    /// Adds `user` to `room`'s members, whatever its capacity.
    Member { room: String, user: String },
    /// Bans the member `user` of `room` without removing them.
    Ban { room: String, user: String },
    /// Lifts `user`'s mute in `room` without an `unmute` entry.
    Unmute { room: String, user: String },
    /// Puts `text` back into the deleted message `seq` of `room`.
    Undelete {
        room: String,
        seq: u64,
        text: String,
    },
    /// Moves `room`'s seqs on by one without an entry: every kept entry's seq shifts.
    SkipSeq { room: String },
    /// Changes `room`'s topic in memory only (no record).
    Topic { room: String, topic: String },
}

impl Core {
    /// Ids of every room, sorted.
    pub fn sim_room_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.rooms.all().iter().map(|r| r.id.clone()).collect();
        ids.sort();
        ids
    }

    /// The user named `name` (any case).
    pub fn sim_user(&self, name: &str) -> Option<Arc<User>> {
        self.user(&name.to_ascii_lowercase())
    }

    /// A member of `room`, if it has one, to read it as they would.
    pub fn sim_some_member(&self, room: &str) -> Option<Arc<User>> {
        let room = self.rooms.get(room)?;
        let rs = room.lock();
        rs.members.values().next().map(|m| m.user.clone())
    }

    /// `room` as the invariants read it, with its committed entries after `since`.
    pub fn sim_room(&self, id: &str, since: u64) -> Option<RoomFacts> {
        let room = self.rooms.get(id)?;
        let committed = room.committed();
        let rs = room.lock();
        let entries = rs
            .entries_between(since, committed)
            .map(|(seq, e)| e.to_entry(id, seq, false))
            .collect();
        Some(RoomFacts {
            id: id.to_string(),
            capacity: room.capacity,
            owner: rs.gov.owner.clone(),
            moderators: rs.gov.moderators.iter().cloned().collect(),
            dm: rs.gov.dm.is_some(),
            members: rs.members.keys().cloned().collect(),
            bans: rs.gov.bans.keys().cloned().collect(),
            first_seq: rs.first_seq(),
            last_seq: committed.min(rs.last_seq),
            entries,
        })
    }

    /// SHA-256 (hex) of [`Core::sim_render`].
    pub fn sim_digest(&self, now: u64, wall: u64) -> String {
        hex(&Sha256::digest(self.sim_render(now, wall).as_bytes()))
    }

    /// The durable state as a canonical text at `now` (mutes that ended by then are left
    /// out; see the module's comment), and at the wall clock's `wall` for invite codes, which
    /// live on the wall clock (one `wall` for the two states compared, so that none expires
    /// between the two renderings).
    pub fn sim_render(&self, now: u64, wall: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "epoch {}", self.epoch());
        let room_ids: std::collections::BTreeSet<String> =
            self.sim_room_ids().into_iter().collect();
        for u in self.all_users() {
            let us = u.lock();
            let mut rooms: Vec<&String> =
                us.rooms.iter().filter(|r| room_ids.contains(*r)).collect();
            rooms.sort();
            let _ = writeln!(
                out,
                "user {} hash={} disabled={} rooms={rooms:?} owned={}",
                u.name,
                us.hash,
                us.disabled,
                self.owned_by(&u.key)
            );
        }
        let sessions: BTreeMap<String, (String, u64)> = self
            .sessions
            .records()
            .into_iter()
            .filter_map(|r| match r {
                Record::SessionStarted {
                    token_hash,
                    username,
                    created,
                } => Some((token_hash, (username, created))),
                _ => None,
            })
            .collect();
        for (h, (user, created)) in &sessions {
            let _ = writeln!(out, "session {h} {user} {created}");
        }
        let dms: BTreeMap<String, String> = self
            .dms
            .pairs()
            .into_iter()
            .filter(|(_, id)| room_ids.contains(id))
            .collect();
        for (pair, id) in &dms {
            let _ = writeln!(out, "dm {pair} {id}");
        }
        let mut blocks: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.blocks.records() {
            if let Record::Blocked {
                username, target, ..
            } = r
            {
                blocks.entry(username).or_default().push(target);
            }
        }
        blocks.values_mut().for_each(|t| t.sort());
        for (who, targets) in &blocks {
            let _ = writeln!(out, "blocks {who} {targets:?}");
        }
        let invites: BTreeMap<String, (u32, u64)> = self
            .invites
            .records(wall)
            .into_iter()
            .filter_map(|r| match r {
                Record::InviteCodeCreated {
                    hash,
                    uses,
                    expires,
                } => Some((hash, (uses, expires))),
                _ => None,
            })
            .collect();
        for (h, (remaining, expires)) in &invites {
            let _ = writeln!(
                out,
                "invite code {h} remaining={remaining} expires={expires}"
            );
        }
        for id in &room_ids {
            if let Some(room) = self.rooms.get(id) {
                render_room(&mut out, &room, now, self.cfg.history);
            }
        }
        out
    }

    /// Plants `p` in the state (mutation checks only); false if its room or user is missing.
    pub fn sim_plant(&self, p: &Plant) -> bool {
        let room_of = |id: &str| self.rooms.get(id);
        match p {
            Plant::Member { room, user } => {
                let (Some(room), Some(user)) = (room_of(room), self.sim_user(user)) else {
                    return false;
                };
                let mut rs = room.lock();
                let since = rs.last_seq;
                rs.members
                    .insert(user.key.clone(), Member::new(user.clone(), since));
            }
            Plant::Ban { room, user } => {
                let Some(room) = room_of(room) else {
                    return false;
                };
                let key = user.to_ascii_lowercase();
                let ban = crate::protocol::BanView {
                    username: user.clone(),
                    by: "sim".into(),
                    ts: now_ms(),
                    reason: None,
                };
                room.lock().gov.bans.insert(key, ban);
            }
            Plant::Unmute { room, user } => {
                let Some(room) = room_of(room) else {
                    return false;
                };
                room.lock().gov.mutes.remove(&user.to_ascii_lowercase());
            }
            Plant::Undelete { room, seq, text } => {
                let Some(room) = room_of(room) else {
                    return false;
                };
                let mut rs = room.lock();
                let Some(e) = rs.entry_mut(*seq) else {
                    return false;
                };
                *e = KeptEntry::new(e.ts(), EntryKind::Message, e.from(), Some(text), None);
            }
            Plant::SkipSeq { room } => {
                let Some(room) = room_of(room) else {
                    return false;
                };
                let mut rs = room.lock();
                rs.last_seq += 1;
                room.set_committed(rs.last_seq);
            }
            Plant::Topic { room, topic } => {
                let Some(room) = room_of(room) else {
                    return false;
                };
                room.lock().gov.topic = topic.clone();
            }
        }
        true
    }
}

/// Entries past the committed seq (written, but failed by the store) push as many old ones
/// out of a live ring until the restart; a recovered ring lacks them. At most this many are
/// left out of a rendering's window, so both render the same entries.
const UNCOMMITTED_MARGIN: u64 = 4;

fn render_room(out: &mut String, room: &super::rooms::Room, now: u64, history: usize) {
    let committed = room.committed();
    let rs = room.lock();
    let last = committed.min(rs.last_seq);
    let g = &rs.gov;
    let _ = writeln!(
        out,
        "room {} name={:?} owner={} topic={:?} visibility={:?} capacity={} dm={:?} last={}",
        room.id, g.name, g.owner, g.topic, g.visibility, room.capacity, g.dm, last
    );
    for (k, m) in &rs.members {
        let _ = writeln!(
            out,
            " member {k} since={} unanswered={}",
            m.since, m.unanswered
        );
    }
    let _ = writeln!(out, " moderators {:?}", g.moderators);
    for (k, b) in &g.bans {
        let _ = writeln!(
            out,
            " ban {k} by={} ts={} reason={:?}",
            b.by, b.ts, b.reason
        );
    }
    let mutes: BTreeMap<&String, &u64> = g.mutes.iter().filter(|(_, u)| **u > now).collect();
    let _ = writeln!(out, " mutes {mutes:?}");
    let _ = writeln!(out, " invites {:?}", g.invites);
    let from = last.saturating_sub((history as u64).saturating_sub(UNCOMMITTED_MARGIN));
    for (seq, e) in rs.entries_between(from, last) {
        let json = serde_json::to_string(&e.to_entry(&room.id, seq, false)).unwrap_or_default();
        let _ = writeln!(out, " entry {json}");
    }
}
