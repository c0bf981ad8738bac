//! The chat core's errors, and their one mapping to the contract's status and `error.code`.

use std::fmt;

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
    /// A call the caller may not make: an admin-only call by someone else (403).
    Forbidden,
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
            NotAMember | Forbidden | InviteRequired | RegistrationClosed | AccountDisabled => 403,
            UserNotFound | RoomNotFound => 404,
            UsernameTaken | RoomFull | TooManyRooms | TooManyOwnedRooms | NotInRoom => 409,
            TooManyAttempts { .. } | RateLimited { .. } => 429,
            Busy { .. } | Unavailable => 503,
        }
    }

    /// The contract's `error.code`.
    pub fn code(&self) -> &'static str {
        use ChatError::*;
        match self {
            Unauthorized => "unauthorized",
            InvalidUsername => "invalid_username",
            InvalidPassword(_) => "invalid_password",
            UsernameTaken => "username_taken",
            InvalidCredentials => "invalid_credentials",
            TooManyAttempts { .. } => "too_many_attempts",
            UserNotFound => "user_not_found",
            InvalidRoomName => "invalid_room_name",
            InvalidCapacity => "invalid_capacity",
            RoomNotFound => "room_not_found",
            RoomFull => "room_full",
            TooManyRooms | TooManyOwnedRooms => "too_many_rooms",
            BadRequest(_) => "bad_request",
            NotAMember | NotInRoom => "not_a_member",
            EmptyMessage => "empty_message",
            MessageTooLong => "message_too_long",
            RateLimited { .. } => "rate_limited",
            UnknownCommand(_) => "unknown_command",
            BadCommand(_) => "bad_command",
            Busy { .. } => "server_busy",
            Unavailable => "unavailable",
            Forbidden => "forbidden",
            InviteRequired => "invite_required",
            RegistrationClosed => "registration_closed",
            AccountDisabled => "account_disabled",
        }
    }

    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ChatError::TooManyAttempts { retry_after_ms }
            | ChatError::RateLimited { retry_after_ms }
            | ChatError::Busy { retry_after_ms } => Some(*retry_after_ms),
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
            InviteRequired => write!(f, "registration needs a valid, unused invite code"),
            RegistrationClosed => write!(f, "registration is closed; ask an administrator"),
            AccountDisabled => write!(f, "this account is disabled"),
        }
    }
}

impl std::error::Error for ChatError {}
