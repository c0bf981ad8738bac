//! Who may do what in a room: the contract's role table, and which error wins, in one place.
//!
//! | action | who may | on whom |
//! | --- | --- | --- |
//! | invite | any member of a public room; owner or moderator of a private room | a non-member |
//! | kick, mute, unmute, ban, unban, list bans | owner or moderator | a user of lower role |
//! | change topic or name | owner or moderator | |
//! | change visibility or roles, transfer ownership, delete | owner | |
//!
//! A non-member counts lowest. Server administrators may also delete any room. A DM room
//! takes none of these (`dm_room`), except that either side may change its topic.

use super::rooms::RoomState;
use super::ChatError;
use crate::protocol::{Role, Visibility as Seen};

/// What a member may ask of a room besides posting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Invite,
    Kick,
    Ban,
    Unban,
    Mute,
    Unmute,
    ListBans,
    Rename,
    Topic,
    Visibility,
    Roles,
    Delete,
}

impl Action {
    /// The lowest role that may take the action in a room of `visibility`.
    fn needs(self, visibility: Seen) -> Role {
        use Action::*;
        match self {
            Invite if visibility == Seen::Public => Role::Member,
            Invite | Kick | Ban | Unban | Mute | Unmute | ListBans | Rename | Topic => {
                Role::Moderator
            }
            Visibility | Roles | Delete => Role::Owner,
        }
    }

    /// Whether the action is done to another user, who must rank below the actor.
    fn on_lower(self) -> bool {
        use Action::*;
        matches!(self, Kick | Ban | Unban | Mute | Unmute)
    }
}

/// What a user who is not a member asks of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Its details (`GET /api/v1/rooms/{id}`).
    Details,
    Join,
    /// Anything else: history, moderation.
    Other,
}

/// Whether the user `key` may reach the room at all for `access`. A private room is open
/// only to its members, and to invited users for its details and their join; a banned
/// user's join gets `banned` whatever the visibility.
pub(crate) fn reach(rs: &RoomState, key: &str, access: Access) -> Result<(), ChatError> {
    if access == Access::Join && rs.gov.bans.contains_key(key) {
        return Err(ChatError::Banned);
    }
    if rs.gov.visibility == Seen::Public || rs.members.contains_key(key) {
        return Ok(());
    }
    let invited = rs.gov.invites.contains_key(key);
    match access {
        Access::Details | Access::Join if invited => Ok(()),
        _ => Err(ChatError::RoomRestricted),
    }
}

/// Whether `actor` may take `action`, on `target` when it names one. `Err(Forbidden)`
/// otherwise; a private room the actor cannot reach is `room_restricted` first.
pub(crate) fn check(
    rs: &RoomState,
    actor: &str,
    action: Action,
    target: Option<&str>,
) -> Result<(), ChatError> {
    reach(rs, actor, Access::Other)?;
    if rs.gov.dm.is_some() {
        // Either side may change a DM's topic; nothing else of the table applies.
        return match (action, rs.role(actor)) {
            (Action::Topic, Some(_)) => Ok(()),
            (Action::Topic, None) => Err(ChatError::Forbidden),
            _ => Err(ChatError::DmRoom),
        };
    }
    let role = rs.role(actor).ok_or(ChatError::Forbidden)?;
    if role < action.needs(rs.gov.visibility) {
        return Err(ChatError::Forbidden);
    }
    if let (true, Some(target)) = (action.on_lower(), target) {
        if rs.role(target) >= Some(role) {
            return Err(ChatError::Forbidden);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::rooms::Room;

    #[test]
    fn the_role_table() {
        use Action::*;
        let everything = [
            Invite, Kick, Ban, Unban, Mute, Unmute, ListBans, Rename, Topic, Visibility, Roles,
            Delete,
        ];
        for private in [false, true] {
            let v = if private { Seen::Private } else { Seen::Public };
            for action in everything {
                let owner = action.needs(v) <= Role::Owner;
                let moderator = action.needs(v) <= Role::Moderator;
                let member = action.needs(v) <= Role::Member;
                assert!(owner, "{action:?}");
                assert_eq!(
                    moderator,
                    !matches!(action, Visibility | Roles | Delete),
                    "{action:?}"
                );
                assert_eq!(member, action == Invite && !private, "{action:?}");
            }
        }
    }

    #[test]
    fn a_moderator_cannot_act_on_a_moderator() {
        let room = Room::new("r".into(), Default::default(), 10, 10);
        let rs = room.lock();
        // Nobody is a member: everyone is refused.
        assert_eq!(
            check(&rs, "al", Action::Kick, Some("bo")),
            Err(ChatError::Forbidden)
        );
    }
}
