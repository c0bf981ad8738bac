//! The chat core's errors, and their one mapping to the contract's status and `error.code`.

use std::fmt;

use parley_protocol::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatError {
    Unauthorized,
    InvalidUsername,
    InvalidPassword(String),
    UsernameTaken,
    InvalidCredentials,
    TooManyAttempts {
        retry_after_ms: u64,
    },
    UserNotFound,
    InvalidRoomName,
    InvalidCapacity,
    RoomNotFound,
    RoomFull,
    TooManyRooms,
    /// Creating a room beyond `--max-owned-rooms`.
    TooManyOwnedRooms,
    /// A malformed query or cursor (400 `bad_request`).
    BadRequest(String),
    /// Reading or posting to a room one is not in (403).
    NotAMember,
    /// Leaving a room one is not in (409: the request conflicts with the membership).
    NotInRoom,
    EmptyMessage,
    MessageTooLong,
    RateLimited {
        retry_after_ms: u64,
    },
    UnknownCommand(String),
    BadCommand(String),
    /// The hashing queue is full; try again shortly.
    Busy {
        retry_after_ms: u64,
    },
    /// The journal failed; nothing can be acknowledged.
    Unavailable,
    /// The role table or admin-only call does not allow it (403).
    Forbidden,
    /// A private room the user is neither a member of nor invited to (403).
    RoomRestricted,
    /// A banned user's join (403).
    Banned,
    /// Inviting a banned user (409).
    InviteeBanned,
    AlreadyMember,
    InvalidDuration,
    InvalidRole,
    InvalidVisibility,
    InvalidTopic,
    /// Posting while muted (403).
    Muted {
        retry_after_ms: u64,
    },
    /// Unbanning a user who is not banned (404).
    NotBanned,
    /// Unmuting a user who is not muted (404).
    NotMuted,
    /// A room with as many pending invitations as it may hold (409).
    TooManyInvites,
    /// A DM with oneself, or blocking oneself (400).
    InvalidTarget,
    /// A DM refused by a block, or a blocked side's message in it (403).
    Blocked,
    /// Unblocking a user who is not blocked (404).
    NotBlocked,
    /// No such kept message, or it was deleted (404).
    EntryNotFound,
    /// A room action a DM does not take (409).
    DmRoom,
    /// Registering under `--registration invite` without a live invite code (403).
    InviteRequired,
    /// Registering under `--registration closed` (403).
    RegistrationClosed,
    /// Logging in to an account an admin disabled (403), told only after the password
    /// verified.
    AccountDisabled,
}

impl ChatError {
    /// The HTTP status of the REST answer.
    pub fn status(&self) -> u16 {
        use ChatError::*;
        match self {
            Unauthorized | InvalidCredentials => 401,
            InvalidUsername | InvalidPassword(_) | InvalidRoomName | InvalidCapacity
            | EmptyMessage | MessageTooLong | UnknownCommand(_) | BadCommand(_) | BadRequest(_) => {
                400
            }
            InvalidDuration | InvalidRole | InvalidVisibility | InvalidTopic | InvalidTarget => 400,
            Blocked => 403,
            NotBlocked | EntryNotFound => 404,
            DmRoom => 409,
            NotAMember
            | Forbidden
            | RoomRestricted
            | Muted { .. }
            | Banned
            | InviteRequired
            | RegistrationClosed
            | AccountDisabled => 403,
            UserNotFound | RoomNotFound | NotBanned | NotMuted => 404,
            UsernameTaken | RoomFull | TooManyRooms | TooManyOwnedRooms | NotInRoom
            | AlreadyMember | TooManyInvites | InviteeBanned => 409,
            TooManyAttempts { .. } | RateLimited { .. } => 429,
            Busy { .. } | Unavailable => 503,
        }
    }

    /// The contract's `error.code`.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The contract's `error.code`, as the shared code of `parley-protocol`.
    pub fn error_code(&self) -> ErrorCode {
        use ChatError::*;
        use ErrorCode as C;
        match self {
            Unauthorized => C::Unauthorized,
            InvalidUsername => C::InvalidUsername,
            InvalidPassword(_) => C::InvalidPassword,
            UsernameTaken => C::UsernameTaken,
            InvalidCredentials => C::InvalidCredentials,
            TooManyAttempts { .. } => C::TooManyAttempts,
            UserNotFound => C::UserNotFound,
            InvalidRoomName => C::InvalidRoomName,
            InvalidCapacity => C::InvalidCapacity,
            RoomNotFound => C::RoomNotFound,
            RoomFull => C::RoomFull,
            TooManyRooms | TooManyOwnedRooms => C::TooManyRooms,
            BadRequest(_) => C::BadRequest,
            NotAMember | NotInRoom => C::NotAMember,
            EmptyMessage => C::EmptyMessage,
            MessageTooLong => C::MessageTooLong,
            RateLimited { .. } => C::RateLimited,
            UnknownCommand(_) => C::UnknownCommand,
            BadCommand(_) => C::BadCommand,
            Busy { .. } => C::ServerBusy,
            Unavailable => C::Unavailable,
            Forbidden => C::Forbidden,
            RoomRestricted => C::RoomRestricted,
            Banned | InviteeBanned => C::Banned,
            AlreadyMember => C::AlreadyMember,
            InvalidDuration => C::InvalidDuration,
            InvalidRole => C::InvalidRole,
            InvalidVisibility => C::InvalidVisibility,
            InvalidTopic => C::InvalidTopic,
            Muted { .. } => C::Muted,
            NotBanned => C::NotBanned,
            NotMuted => C::NotMuted,
            TooManyInvites => C::TooManyInvites,
            InvalidTarget => C::InvalidTarget,
            Blocked => C::Blocked,
            NotBlocked => C::NotBlocked,
            EntryNotFound => C::EntryNotFound,
            DmRoom => C::DmRoom,
            InviteRequired => C::InviteRequired,
            RegistrationClosed => C::RegistrationClosed,
            AccountDisabled => C::AccountDisabled,
        }
    }

    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ChatError::TooManyAttempts { retry_after_ms }
            | ChatError::RateLimited { retry_after_ms }
            | ChatError::Busy { retry_after_ms }
            | ChatError::Muted { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        }
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ChatError::*;
        match self {
            Unauthorized => write!(f, "missing, malformed, expired or revoked token"),
            InvalidUsername => write!(f, "usernames are 3-32 characters of A-Z, a-z, 0-9, _ and -"),
            InvalidPassword(why) => write!(f, "{why}"),
            UsernameTaken => write!(f, "that username is taken"),
            InvalidCredentials => write!(f, "wrong username or password"),
            TooManyAttempts { .. } => write!(f, "too many failed logins for this account; wait"),
            UserNotFound => write!(f, "no such user"),
            InvalidRoomName => write!(
                f,
                "room names are 1-64 characters without control characters"
            ),
            InvalidCapacity => write!(f, "capacity must be a whole number from 1 to 100000"),
            RoomNotFound => write!(f, "no such room"),
            RoomFull => write!(f, "the room is full"),
            TooManyRooms => write!(f, "you are in as many rooms as allowed; leave one first"),
            TooManyOwnedRooms => write!(f, "you own as many rooms as allowed; leave one first"),
            BadRequest(why) => write!(f, "{why}"),
            NotAMember | NotInRoom => write!(f, "you are not a member of that room"),
            EmptyMessage => write!(f, "the message is empty"),
            MessageTooLong => write!(f, "messages are at most 4096 bytes"),
            RateLimited { .. } => write!(f, "slow down: too many requests"),
            UnknownCommand(c) => write!(f, "unknown command '{c}'; try /help"),
            BadCommand(usage) => write!(f, "usage: {usage}"),
            Busy { .. } => write!(f, "the server is busy; try again shortly"),
            Unavailable => write!(f, "the server cannot store data right now"),
            Forbidden => write!(f, "you are not allowed to do that"),
            RoomRestricted => write!(f, "this room is private: it needs an invitation"),
            Banned => write!(f, "banned from this room"),
            InviteeBanned => write!(f, "that user is banned from this room"),
            AlreadyMember => write!(f, "already a member of this room"),
            InvalidDuration => write!(f, "seconds must be a whole number from 1 to 2592000"),
            InvalidRole => write!(f, "role must be owner, moderator or member"),
            InvalidVisibility => write!(f, "visibility must be public or private"),
            InvalidTopic => write!(
                f,
                "topics are at most 256 characters without control characters"
            ),
            Muted { .. } => write!(f, "you are muted in this room"),
            NotBanned => write!(f, "that user is not banned here"),
            NotMuted => write!(f, "that user is not muted here"),
            TooManyInvites => write!(f, "this room has as many pending invitations as it may"),
            InvalidTarget => write!(f, "you cannot do that to yourself"),
            Blocked => write!(f, "blocked by that user"),
            NotBlocked => write!(f, "that user is not blocked"),
            EntryNotFound => write!(f, "no such message is kept, or it was deleted"),
            DmRoom => write!(f, "a direct-message room does not take that"),
            InviteRequired => write!(f, "registration needs a valid, unused invite code"),
            RegistrationClosed => write!(f, "registration is closed; ask an administrator"),
            AccountDisabled => write!(f, "this account is disabled"),
        }
    }
}

impl std::error::Error for ChatError {}
