//! The state-change records of the chat core.
//!
//! Every change that must survive a restart is one [`Record`]. The live path builds the
//! record, applies it through `Core::apply` and hands it to the store; recovery replays the
//! same records through the same function.

use serde::{Deserialize, Serialize};

use crate::protocol::Entry;

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
    },
    /// A timeline entry. `join` and `leave` entries also change membership.
    Entry(Entry),
    /// A whole room as a snapshot keeps it: members and the entries its ring still holds.
    RoomSnapshot {
        id: String,
        name: String,
        owner: String,
        capacity: u32,
        last_seq: u64,
        members: Vec<String>,
        entries: Vec<Entry>,
    },
}
