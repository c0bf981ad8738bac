//! The state-change records of the chat core.
//!
//! Every change that must survive a restart is one [`Record`]. The live path builds the
//! record, applies it and hands it to the store; recovery replays the same records through
//! the same `Core::apply`. Records live here, below both the core and the journal, so the
//! store can encode them without knowing the core.
//!
//! # Replay is idempotent
//! A snapshot is taken while the server keeps running (see `store::snapshot`), so it may
//! already reflect some records of the journal that follows it. Applying a record to a state
//! that already holds it must change nothing: a user, session or room that exists is kept,
//! and an entry whose seq is not above its room's `last_seq` is skipped. Every new record
//! kind must keep this rule.
//!
//! The compact form of a kept timeline entry is `kept`'s, re-exported here with its JSON
//! writers.

use serde::{Deserialize, Serialize};

use crate::protocol::{Entry, EntryKind, Visibility};

pub use super::kept::{json_str_len, write_str, KeptEntry, ENTRY_HEAD};

// `Entry` is the largest variant (its optional fields, v1.2's among them) and also the most
// common record: boxing it would add an allocation to nearly every record for no saving.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// The data directory's identity; written when it is created, and anew when timelines
    /// may have been lost.
    Epoch { epoch: String },
    /// A server started on this data directory: the machine's boot id and its `--fsync`.
    Started { boot_id: String, fsync: String },
    /// The server stopped cleanly: everything before this is on disk.
    Stopped,
    /// A new account. `hash` is the self-describing PBKDF2 string of `chat::password`.
    UserRegistered {
        username: String,
        hash: String,
        ts: u64,
    },
    /// A user's password hash, re-made (at another iteration count) or changed.
    PasswordChanged { username: String, hash: String },
    /// A login. Only the SHA-256 of the token is kept, as hex.
    SessionStarted {
        token_hash: String,
        username: String,
        created: u64,
    },
    /// Logout or expiry.
    SessionEnded { token_hash: String },
    /// A new room; its owner's join follows as an entry.
    RoomCreated {
        id: String,
        name: String,
        owner: String,
        capacity: u32,
        ts: u64,
        #[serde(default, skip_serializing_if = "is_public")]
        visibility: Visibility,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        topic: String,
        /// A direct-message room between the owner and this user (`POST /api/v1/dms`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dm_with: Option<String>,
    },
    /// A room is gone with its timeline: its last member left (written after that `leave`
    /// entry; `by` is absent), or its owner or an administrator deleted it (`by`).
    /// Applying it to a state without the room changes nothing.
    RoomDeleted {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A timeline entry. `join` and `leave` entries also change membership.
    #[serde(deserialize_with = "known_entry")]
    Entry(Entry),
    /// A room as a snapshot keeps it. Since snapshot format 2 its kept entries follow as
    /// [`Record::KeptEntries`] (`kept` of them); a format-1 snapshot carries them inline.
    RoomSnapshot {
        id: String,
        name: String,
        owner: String,
        capacity: u32,
        last_seq: u64,
        members: Vec<String>,
        #[serde(
            default,
            deserialize_with = "known_entries",
            skip_serializing_if = "Vec::is_empty"
        )]
        entries: Vec<Entry>,
        #[serde(default)]
        kept: u64,
        /// Governance (v1.1); absent in older snapshots.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gov: Option<Box<GovernanceRecord>>,
    },
    /// `username` blocked (`blocked`) or unblocked `target`. An absolute state: replaying
    /// it again changes nothing.
    Blocked {
        username: String,
        target: String,
        blocked: bool,
    },
    /// Read markers of a room, written at most once a second per user and room: each
    /// user's marker moves up to the seq given (never back).
    ReadMarkers {
        room: String,
        markers: Vec<(String, u64)>,
    },
    /// `username` was invited to `room` by `by` while the room's last seq was `at_seq`.
    /// Later entries (a join, kick or ban) cancel it, so replay skips it when the room has
    /// already gone past `at_seq`: the snapshot then holds the invitation if it still stands.
    Invited {
        room: String,
        username: String,
        by: String,
        at_seq: u64,
    },
    /// In the DM `room`, the member `username` has not acted yet (`unanswered`: the other
    /// side's open added them, so the DM does not count toward their
    /// `--max-rooms-per-user`), or now has, by opening it (`false`; a message of theirs says
    /// so by itself), while the room's last seq was `at_seq`. Written after the join it
    /// marks. Later entries (their message, their leave) supersede it, so replay skips it when
    /// the room has already gone past `at_seq`: the snapshot then holds the flag.
    DmUnanswered {
        room: String,
        username: String,
        unanswered: bool,
        at_seq: u64,
    },
    /// The next kept entries of a room restored from a snapshot, oldest first, in the
    /// snapshot's binary encoding (never JSON).
    #[serde(skip)]
    KeptEntries {
        room: String,
        entries: Vec<KeptEntry>,
    },
    /// An invite code (`--registration invite`). Only the SHA-256 of the code is kept, as
    /// hex; `expires` is a ts. Applying it to a state that has the code changes nothing.
    InviteCodeCreated {
        hash: String,
        uses: u32,
        expires: u64,
    },
    /// A registration spent one use of an invite code: `remaining` uses are left (absolute,
    /// and never raises what the state holds, so a repeated record changes nothing). At 0 the
    /// code is gone.
    InviteCodeUsed { hash: String, remaining: u32 },
    /// An admin disabled (or enabled again) an account.
    UserDisabled { username: String, disabled: bool },
    /// Users last seen online at these times (ms since the epoch), written at most once a
    /// second for everyone who went offline meanwhile, and for everyone online at a clean
    /// stop. Each user's `last_seen` moves up to the time given, never back.
    LastSeen { seen: Vec<(String, u64)> },
}

/// A room's governance as a snapshot keeps it: what its moderation entries made of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GovernanceRecord {
    #[serde(default, skip_serializing_if = "is_public")]
    pub visibility: Visibility,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    /// The seq of each member's join, in the order of `members`.
    #[serde(default)]
    pub joined: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moderators: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bans: Vec<crate::protocol::BanView>,
    /// Mutes still running: username and end (ts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mutes: Vec<(String, u64)>,
    /// Pending invitations: username and who invited them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invites: Vec<(String, String)>,
    /// A DM room: its two sides, as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm: Option<(String, String)>,
    /// Each member's read marker, in the order of `members` (0 if never set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<u64>,
    /// A DM's members who have not acted in it (see [`Record::DmUnanswered`]); absent in
    /// older snapshots, whose members all count as having acted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unanswered: Vec<String>,
}

fn is_public(v: &Visibility) -> bool {
    *v == Visibility::Public
}

/// An entry read back from the journal, a snapshot or the cluster's stream: its kind must be
/// one this server knows. The shared `Entry` decodes any other kind as `EntryKind::Other`
/// (clients ignore kinds they do not know); stored data with one is refused, as it was
/// before the types were shared.
fn known_entry<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
    let e = Entry::deserialize(d)?;
    if e.kind == EntryKind::Other {
        return Err(serde::de::Error::custom("unknown entry kind"));
    }
    Ok(e)
}

fn known_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
    let entries = Vec::<Entry>::deserialize(d)?;
    if entries.iter().any(|e| e.kind == EntryKind::Other) {
        return Err(serde::de::Error::custom("unknown entry kind"));
    }
    Ok(entries)
}
