//! The `error.code` strings of the contract, and the error body that carries them.
//!
//! One enum names every code a Parley server sends, in REST error bodies and `error`
//! frames. The frames and bodies keep the code as a string (a client must cope with codes
//! newer than it), and [`ErrorCode::parse`] tells a known one apart.

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $s:literal,)*) => {
        /// An `error.code` of the contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code, in the order of the contract's sections.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code as it is sent.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $s,)*
                }
            }

            /// The code sent as `s`, if the contract has it.
            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s {
                    $($s => Some(ErrorCode::$name),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    // Accounts and sessions.
    Unauthorized = "unauthorized",
    InvalidUsername = "invalid_username",
    InvalidPassword = "invalid_password",
    /// A body that is not the expected JSON, a malformed query or cursor.
    BadRequest = "bad_request",
    UsernameTaken = "username_taken",
    InvalidCredentials = "invalid_credentials",
    TooManyAttempts = "too_many_attempts",
    /// The password-hashing queue is full (503).
    ServerBusy = "server_busy",
    UserNotFound = "user_not_found",
    // Rooms.
    InvalidRoomName = "invalid_room_name",
    InvalidCapacity = "invalid_capacity",
    InvalidVisibility = "invalid_visibility",
    InvalidTopic = "invalid_topic",
    RoomNotFound = "room_not_found",
    RoomFull = "room_full",
    TooManyRooms = "too_many_rooms",
    NotAMember = "not_a_member",
    RateLimited = "rate_limited",
    // Private rooms, roles and moderation.
    RoomRestricted = "room_restricted",
    Forbidden = "forbidden",
    DmRoom = "dm_room",
    AlreadyMember = "already_member",
    Banned = "banned",
    InvalidDuration = "invalid_duration",
    InvalidRole = "invalid_role",
    Muted = "muted",
    /// Extension: unbanning a user who is not banned (404).
    NotBanned = "not_banned",
    /// Extension: unmuting a user who is not muted (404).
    NotMuted = "not_muted",
    /// Extension: a room with as many pending invitations as it may hold (409).
    TooManyInvites = "too_many_invites",
    // Direct messages and blocks.
    InvalidTarget = "invalid_target",
    Blocked = "blocked",
    /// Extension: unblocking a user who is not blocked (404).
    NotBlocked = "not_blocked",
    // Edits and deletions.
    EntryNotFound = "entry_not_found",
    EmptyMessage = "empty_message",
    MessageTooLong = "message_too_long",
    // Administration and registration.
    InviteRequired = "invite_required",
    RegistrationClosed = "registration_closed",
    AccountDisabled = "account_disabled",
    // WebSocket.
    /// A frame that is not valid JSON, or not one of the client frame types.
    BadFrame = "bad_frame",
    UnknownCommand = "unknown_command",
    /// Extension: a slash command with bad arguments.
    BadCommand = "bad_command",
    // Cluster mode and storage.
    Unavailable = "unavailable",
    // HTTP.
    NotFound = "not_found",
    MethodNotAllowed = "method_not_allowed",
    RequestTimeout = "request_timeout",
    UriTooLong = "uri_too_long",
    HeadersTooLarge = "headers_too_large",
    BodyTooLarge = "body_too_large",
    NotImplemented = "not_implemented",
    UpgradeRequired = "upgrade_required",
    ForbiddenOrigin = "forbidden_origin",
    // v1.2: reactions, files, search.
    InvalidEmoji = "invalid_emoji",
    TooManyReactions = "too_many_reactions",
    InvalidFileName = "invalid_file_name",
    FileTooLarge = "file_too_large",
    StorageFull = "storage_full",
    FileNotFound = "file_not_found",
    InvalidQuery = "invalid_query",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every REST error: `{"error":{"code","message","retry_after_ms"?}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

/// The inside of an [`ErrorBody`]; `retry_after_ms` comes with a 429 or 503.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorInfo {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}
