//! The rules of a room's entries as pure functions: messages, edits, deletions, joins,
//! leaves and governance. From the room's state (locked by the
//! caller), the blocks, who asks and the command's time, each decides the entry to append,
//! or the error the client gets. No I/O, no clock, no randomness, no change: the caller
//! applies what is decided through `Core::apply_entry`, the code replay runs for the same
//! entry, and the same inputs always decide the same.

use super::blocks::Blocks;
use super::policy::{self, Access};
use super::rooms::RoomState;
use super::{ChatError, User};
use crate::protocol::{EntryExtra, EntryKind, Role};
use crate::store::KeptEntry;

/// An entry decided: append it with these extra fields (the kept entry holds them encoded;
/// applying reads them from here).
pub(super) struct Decided {
    pub(super) entry: KeptEntry,
    pub(super) extra: EntryExtra,
}

/// `Err(Muted)` while `key` is muted in the room at `now`.
fn not_muted(rs: &RoomState, key: &str, now: u64) -> Result<(), ChatError> {
    match rs.muted_until(key, now) {
        Some(until) => Err(ChatError::Muted {
            retry_after_ms: until - now,
        }),
        None => Ok(()),
    }
}

/// `Err(Blocked)` when the room is a DM whose other side blocks `sender` (lowercase).
fn dm_open(rs: &RoomState, blocks: &Blocks, sender: &str) -> Result<(), ChatError> {
    let Some((a, b)) = &rs.gov.dm else {
        return Ok(());
    };
    let other = if a.eq_ignore_ascii_case(sender) { b } else { a };
    if blocks.blocks(&other.to_ascii_lowercase(), sender) {
        return Err(ChatError::Blocked);
    }
    Ok(())
}

/// A message (an action when `action`) of `text`, already cleaned, with the sender's nonce
/// (its JSON text) kept beside it: a member who is not muted, in a room that is not a DM
/// whose other side blocks them.
pub(super) fn post(
    rs: &RoomState,
    blocks: &Blocks,
    user: &User,
    (text, action): (&str, bool),
    nonce: Option<&str>,
    now: u64,
) -> Result<Decided, ChatError> {
    if !rs.members.contains_key(&user.key) {
        return Err(ChatError::NotAMember);
    }
    not_muted(rs, &user.key, now)?;
    dm_open(rs, blocks, &user.key)?;
    let extra = EntryExtra {
        mentions: rs.mentions(text),
        action: action.then_some(true),
        ..EntryExtra::default()
    };
    let entry = KeptEntry::with_extra(
        now,
        EntryKind::Message,
        &user.name,
        Some(text),
        nonce,
        &extra,
    );
    Ok(Decided { entry, extra })
}

/// An edit of the kept message `seq` to `text` (cleaned already), or with no text its
/// deletion. The message must be committed (`seq <= committed`), not deleted, and the
/// caller a member: its author edits it (unless muted, or blocked in a DM); its author, the
/// owner or a moderator deletes it.
pub(super) fn change(
    rs: &RoomState,
    blocks: &Blocks,
    user: &User,
    (seq, committed): (u64, u64),
    text: Option<&str>,
    now: u64,
) -> Result<Decided, ChatError> {
    let Some(role) = rs.role(&user.key) else {
        return Err(ChatError::NotAMember);
    };
    let author = rs
        .entry(seq)
        .filter(|e| seq <= committed && e.kind() == EntryKind::Message)
        .filter(|e| !e.is_deleted())
        .map(|e| e.from().eq_ignore_ascii_case(&user.key))
        .ok_or(ChatError::EntryNotFound)?;
    let (kind, extra) = match text {
        Some(text) => {
            if !author {
                return Err(ChatError::Forbidden);
            }
            not_muted(rs, &user.key, now)?;
            dm_open(rs, blocks, &user.key)?;
            let extra = EntryExtra {
                refers: Some(seq),
                mentions: rs.mentions(text),
                ..EntryExtra::default()
            };
            (EntryKind::Edit, extra)
        }
        None => {
            if !author && role < Role::Moderator {
                return Err(ChatError::Forbidden);
            }
            let extra = EntryExtra {
                refers: Some(seq),
                ..EntryExtra::default()
            };
            (EntryKind::Delete, extra)
        }
    };
    let entry = KeptEntry::with_extra(now, kind, &user.name, text, None, &extra);
    Ok(Decided { entry, extra })
}

/// What a join decides.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Joining {
    /// A member already: nothing to append.
    Already,
    /// Append the join.
    Join,
}

/// A join of `key` (lowercase): a room that still exists and lets them in (public, or
/// private with their invitation), with room for one more member; `limit` is their own room
/// limit's verdict, which does not stop a member from joining again.
pub(super) fn join(
    rs: &RoomState,
    key: &str,
    capacity: u32,
    limit: Result<(), ChatError>,
) -> Result<Joining, ChatError> {
    if rs.deleted {
        return Err(ChatError::RoomNotFound);
    }
    policy::reach(rs, key, Access::Join)?;
    if rs.members.contains_key(key) {
        return Ok(Joining::Already);
    }
    limit?;
    if rs.members.len() >= capacity as usize {
        return Err(ChatError::RoomFull);
    }
    Ok(Joining::Join)
}

/// What a leave decides: whether it is the last member's (the room is deleted after it), and
/// who inherits the room when its owner leaves others behind.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Leaving {
    pub(super) last: bool,
    pub(super) heir: Option<String>,
}

/// A leave of the member `key` (lowercase).
pub(super) fn leave(rs: &RoomState, key: &str) -> Result<Leaving, ChatError> {
    if rs.deleted {
        return Err(ChatError::RoomNotFound);
    }
    policy::reach(rs, key, Access::Other)?;
    if !rs.members.contains_key(key) {
        return Err(ChatError::NotInRoom);
    }
    let last = rs.members.len() == 1;
    let heir = if rs.role(key) == Some(Role::Owner) && !last {
        heir(rs, key)
    } else {
        None
    };
    Ok(Leaving { last, heir })
}

/// Who inherits the room when its owner `leaver` goes: the moderator who joined first, else
/// the member who joined first.
fn heir(rs: &RoomState, leaver: &str) -> Option<String> {
    let others = rs.members.iter().filter(|(k, _)| *k != leaver);
    let first = |moderators: bool| {
        others
            .clone()
            .filter(|(k, _)| rs.gov.moderators.contains(*k) == moderators)
            .min_by_key(|(_, m)| m.since)
            .map(|(_, m)| m.user.name.clone())
    };
    first(true).or_else(|| first(false))
}

// ----- governance: what an action on `target` (lowercase) decides once the role table
// (`policy::check`) allowed the actor -----

/// An invitation: `Ok(false)` when one stands already (nothing to do, no second frame).
pub(super) fn invite(rs: &RoomState, target: &str) -> Result<bool, ChatError> {
    if rs.members.contains_key(target) {
        return Err(ChatError::AlreadyMember);
    }
    if rs.gov.bans.contains_key(target) {
        return Err(ChatError::InviteeBanned);
    }
    if rs.gov.invites.contains_key(target) {
        return Ok(false);
    }
    if rs.gov.invites.len() >= super::moderation::MAX_PENDING_INVITES {
        return Err(ChatError::TooManyInvites);
    }
    Ok(true)
}

/// A kick (of a member only) or a ban (of anyone); whether the target is a member, whom it
/// takes out of the room.
pub(super) fn remove(rs: &RoomState, target: &str, ban: bool) -> Result<bool, ChatError> {
    let member = rs.members.contains_key(target);
    if !ban && !member {
        return Err(ChatError::NotInRoom);
    }
    Ok(member)
}

/// Lifting a ban (`unban`) or a mute in force at `now`.
pub(super) fn lift(rs: &RoomState, target: &str, unban: bool, now: u64) -> Result<(), ChatError> {
    match unban {
        true if !rs.gov.bans.contains_key(target) => Err(ChatError::NotBanned),
        false if rs.muted_until(target, now).is_none() => Err(ChatError::NotMuted),
        _ => Ok(()),
    }
}

/// A mute, of a member only.
pub(super) fn mute(rs: &RoomState, target: &str) -> Result<(), ChatError> {
    if !rs.members.contains_key(target) {
        return Err(ChatError::NotInRoom);
    }
    Ok(())
}

/// Giving a member `role`: `Ok(None)` when they have it already, else whether it hands the
/// room on (`Some(true)`: the owner role, and the old owner becomes a moderator). The owner's
/// own role changes only by handing the room on.
pub(super) fn role(rs: &RoomState, target: &str, role: Role) -> Result<Option<bool>, ChatError> {
    let current = rs.role(target).ok_or(ChatError::NotInRoom)?;
    if current == role {
        return Ok(None);
    }
    if current == Role::Owner {
        return Err(ChatError::Forbidden);
    }
    Ok(Some(role == Role::Owner))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chat::rooms::{Governance, Member, Room};

    fn user(name: &str) -> Arc<User> {
        Arc::new(User::new(name, String::new(), 1, 1))
    }

    /// A room whose members are `names`, the first its owner, with one message by the
    /// second member at seq 2 (after a join at 1).
    fn room(names: &[&str]) -> Room {
        let gov = Governance {
            owner: names[0].into(),
            ..Governance::default()
        };
        let room = Room::new("r".into(), gov, 10, 10);
        {
            let mut rs = room.lock();
            for (i, n) in names.iter().enumerate() {
                rs.members
                    .insert(n.to_ascii_lowercase(), Member::new(user(n), i as u64));
            }
            rs.append(KeptEntry::new(1, EntryKind::Join, names[0], None, None));
            rs.append(KeptEntry::new(
                2,
                EntryKind::Message,
                names[1],
                Some("hi"),
                None,
            ));
        }
        room
    }

    #[test]
    fn the_same_inputs_decide_the_same_entry_byte_for_byte() {
        let (room, blocks, bo) = (room(&["Al", "Bo"]), Blocks::default(), user("Bo"));
        let rs = room.lock();
        let decide = || post(&rs, &blocks, &bo, ("hey @Al", false), Some("7"), 1_000);
        let (a, b) = (decide().unwrap(), decide().unwrap());
        assert_eq!(a.entry.as_bytes(), b.entry.as_bytes());
        assert_eq!(a.extra.mentions, Some(vec!["Al".to_string()]));
        assert_eq!(a.entry.ts(), 1_000, "the command's time, not the clock's");
    }

    #[test]
    fn a_muted_member_is_refused_until_the_mute_ends() {
        let (room, blocks, bo) = (room(&["Al", "Bo"]), Blocks::default(), user("Bo"));
        let mut rs = room.lock();
        rs.gov.mutes.insert("bo".into(), 5_000);
        let at = |now| post(&rs, &blocks, &bo, ("x", false), None, now).err();
        assert_eq!(
            at(4_000),
            Some(ChatError::Muted {
                retry_after_ms: 1_000
            })
        );
        assert_eq!(at(5_000), None);
        assert_eq!(
            post(&rs, &blocks, &user("Cy"), ("x", false), None, 0).err(),
            Some(ChatError::NotAMember)
        );
    }

    #[test]
    fn only_its_author_edits_a_message_and_a_moderator_may_delete_it() {
        let (room, blocks) = (room(&["Al", "Bo", "Cy"]), Blocks::default());
        let mut rs = room.lock();
        let (al, bo, cy) = (user("Al"), user("Bo"), user("Cy"));
        let edit = |u: &User, rs: &RoomState| change(rs, &blocks, u, (2, 2), Some("new"), 9).err();
        assert_eq!(edit(&bo, &rs), None);
        assert_eq!(
            edit(&al, &rs),
            Some(ChatError::Forbidden),
            "the owner does not edit"
        );
        let delete = |u: &User, rs: &RoomState| change(rs, &blocks, u, (2, 2), None, 9).err();
        assert_eq!(delete(&cy, &rs), Some(ChatError::Forbidden));
        assert_eq!(delete(&al, &rs), None, "the owner deletes");
        rs.gov.moderators.insert("cy".into());
        assert_eq!(delete(&cy, &rs), None, "a moderator deletes");
        // Not committed yet, or not a message: nothing to change.
        let uncommitted = change(&rs, &blocks, &bo, (2, 1), None, 9).err();
        assert_eq!(uncommitted, Some(ChatError::EntryNotFound));
        let join = change(&rs, &blocks, &al, (1, 2), None, 9).err();
        assert_eq!(join, Some(ChatError::EntryNotFound));
    }

    #[test]
    fn a_dm_side_blocked_by_the_other_cannot_write_or_edit() {
        let (room, blocks) = (room(&["Al", "Bo"]), Blocks::default());
        let mut rs = room.lock();
        rs.gov.dm = Some(("Al".into(), "Bo".into()));
        let bo = user("Bo");
        assert!(post(&rs, &blocks, &bo, ("x", false), None, 0).is_ok());
        blocks.apply("Al", "Bo", true);
        let refused = Some(ChatError::Blocked);
        assert_eq!(
            post(&rs, &blocks, &bo, ("x", false), None, 0).err(),
            refused
        );
        let edit = change(&rs, &blocks, &bo, (2, 2), Some("y"), 0).err();
        assert_eq!(edit, Some(ChatError::Blocked));
        assert!(post(&rs, &blocks, &user("Al"), ("x", false), None, 0).is_ok());
    }

    #[test]
    fn an_owner_leaving_hands_the_room_to_the_first_moderator_else_the_first_member() {
        let room = room(&["Al", "Bo", "Cy"]);
        let mut rs = room.lock();
        let heir = |rs: &RoomState| leave(rs, "al").map(|l| l.heir);
        assert_eq!(heir(&rs), Ok(Some("Bo".into())));
        rs.gov.moderators.insert("cy".into());
        assert_eq!(heir(&rs), Ok(Some("Cy".into())));
        assert_eq!(
            leave(&rs, "bo"),
            Ok(Leaving {
                last: false,
                heir: None
            })
        );
        assert_eq!(leave(&rs, "dan").err(), Some(ChatError::NotInRoom));
        rs.members.retain(|k, _| k == "al");
        assert_eq!(
            leave(&rs, "al"),
            Ok(Leaving {
                last: true,
                heir: None
            })
        );
    }

    #[test]
    fn a_join_needs_room_and_a_member_joins_again_whatever_their_limit() {
        let room = room(&["Al", "Bo"]);
        let rs = room.lock();
        let over = || Err(ChatError::TooManyRooms);
        assert_eq!(join(&rs, "al", 2, over()), Ok(Joining::Already));
        assert_eq!(join(&rs, "cy", 2, Ok(())).err(), Some(ChatError::RoomFull));
        assert_eq!(join(&rs, "cy", 3, Ok(())), Ok(Joining::Join));
        assert_eq!(
            join(&rs, "cy", 3, over()).err(),
            Some(ChatError::TooManyRooms)
        );
    }

    #[test]
    fn governance_decisions_follow_the_room_state() {
        let room = room(&["Al", "Bo"]);
        let mut rs = room.lock();
        assert_eq!(invite(&rs, "bo").err(), Some(ChatError::AlreadyMember));
        assert_eq!(invite(&rs, "cy"), Ok(true));
        rs.gov.invites.insert("cy".into(), "Al".into());
        assert_eq!(invite(&rs, "cy"), Ok(false), "an invitation stands already");
        assert_eq!(remove(&rs, "cy", false).err(), Some(ChatError::NotInRoom));
        assert_eq!(remove(&rs, "cy", true), Ok(false), "a ban needs no member");
        assert_eq!(remove(&rs, "bo", false), Ok(true));
        assert_eq!(lift(&rs, "bo", true, 0).err(), Some(ChatError::NotBanned));
        rs.gov.mutes.insert("bo".into(), 100);
        assert_eq!(lift(&rs, "bo", false, 99), Ok(()));
        assert_eq!(
            lift(&rs, "bo", false, 100).err(),
            Some(ChatError::NotMuted),
            "it ended"
        );
        assert_eq!(mute(&rs, "cy").err(), Some(ChatError::NotInRoom));
        assert_eq!(role(&rs, "bo", Role::Member), Ok(None));
        assert_eq!(role(&rs, "bo", Role::Moderator), Ok(Some(false)));
        assert_eq!(role(&rs, "bo", Role::Owner), Ok(Some(true)));
        assert_eq!(
            role(&rs, "al", Role::Member).err(),
            Some(ChatError::Forbidden)
        );
    }
}
