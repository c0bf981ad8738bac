//! Rooms, members and users as the REST calls and frames show them.

use serde::{Deserialize, Serialize};

/// `Room` of the contract. `members` is a count; `role`, `read_seq` and `unread` are the
/// caller's, when a member.
///
/// Decoding is lenient: every field but `id` and `name` defaults when absent (a v1 server
/// sends none of the v1.1 fields).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Room {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub members: usize,
    #[serde(default)]
    pub capacity: u32,
    #[serde(default)]
    pub last_seq: u64,
    /// `"room"` or `"dm"` ([`ROOM`], [`DM`]).
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub visibility: Visibility,
    /// `""` when unset.
    #[serde(default)]
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// How far the caller has read (0 if never set), when a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<u64>,
    /// Kept, not deleted messages after `read_seq` that others posted, when a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<u64>,
}

/// `Room.kind` of an ordinary room.
pub const ROOM: &str = "room";
/// `Room.kind` of a direct-message room.
pub const DM: &str = "dm";

impl Room {
    /// Joined only by invitation, listed only to members.
    pub fn is_private(&self) -> bool {
        self.visibility == Visibility::Private
    }

    /// A direct-message room between two users.
    pub fn is_dm(&self) -> bool {
        self.kind == DM
    }

    /// The caller's read marker: 0 if never set (or not a member).
    pub fn read_marker(&self) -> u64 {
        self.read_seq.unwrap_or(0)
    }

    /// Unread messages for the caller: 0 when not a member.
    pub fn unread_count(&self) -> u64 {
        self.unread.unwrap_or(0)
    }

    /// The other side of a DM, from its name (`"alice, bob"`: both names, sorted);
    /// `None` for a room that is not a DM.
    pub fn dm_peer(&self, me: &str) -> Option<String> {
        if !self.is_dm() {
            return None;
        }
        let mut names = self.name.split(", ");
        let (a, b) = (names.next()?, names.next().unwrap_or_default());
        let peer = if a.eq_ignore_ascii_case(me) { b } else { a };
        (!peer.is_empty()).then(|| peer.to_owned())
    }
}

/// Who may see and join a room.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Public,
    Private,
}

impl Visibility {
    pub fn parse(s: &str) -> Option<Visibility> {
        match s {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

/// A member's role in a room, lowest first.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Moderator,
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "moderator" => Some(Role::Moderator),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Owner => "owner",
        }
    }

    /// What a member list item without `role` (a v1 server) means.
    fn absent() -> Role {
        Role::Member
    }
}

/// A member as `GET /api/v1/rooms/{id}` lists them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberView {
    pub username: String,
    #[serde(default)]
    pub online: bool,
    #[serde(default = "Role::absent")]
    pub role: Role,
}

/// `Room` plus its `member_list`: `GET /api/v1/rooms/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomDetail {
    #[serde(flatten)]
    pub room: Room,
    #[serde(default)]
    pub member_list: Vec<MemberView>,
}

/// One ban as `GET /api/v1/rooms/{id}/bans` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BanView {
    pub username: String,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/v1/rooms/{id}/bans`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BanList {
    #[serde(default)]
    pub bans: Vec<BanView>,
}

/// A pending invitation, as `GET /api/v1/me` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InviteView {
    pub room: Room,
    #[serde(default)]
    pub by: String,
}

/// A user as `/api/v1/users` lists them. `last_seen` is null until they were first online.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserView {
    pub username: String,
    #[serde(default)]
    pub online: bool,
    #[serde(default)]
    pub last_seen: Option<u64>,
}

/// A page of `GET /api/v1/rooms` (and `/rooms`): `next` is the `after` of the following
/// page, `None` on the last.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomList {
    #[serde(default)]
    pub rooms: Vec<Room>,
    #[serde(default)]
    pub next: Option<String>,
}

/// A page of `GET /api/v1/users` (and `/users`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserList {
    #[serde(default)]
    pub users: Vec<UserView>,
    #[serde(default)]
    pub next: Option<String>,
}

/// A new invite code (`POST /api/v1/admin/invite-codes`), shown once: the server keeps only
/// its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InviteCode {
    pub code: String,
    #[serde(default)]
    pub uses: u32,
    /// ts after which the code no longer works.
    #[serde(default)]
    pub expires: u64,
}
