//! The rules of a room's messages as pure functions. From the room's state (locked by the
//! caller), the blocks, who asks and the command's time, each decides the entry to append,
//! or the error the client gets. No I/O, no clock, no randomness, no change: the caller
//! applies what is decided through `Core::apply_entry`, the code replay runs for the same
//! entry, and the same inputs always decide the same.

use super::blocks::Blocks;
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
}
