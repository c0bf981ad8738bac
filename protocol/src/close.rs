//! WebSocket close codes of the contract (RFC 6455 section 7.4, and Parley's own 4xxx).

/// Normal closure: the client's goodbye, echoed.
pub const NORMAL: u16 = 1000;
/// The server is shutting down.
pub const GOING_AWAY: u16 = 1001;
/// A protocol error (e.g. a close frame a peer may not send).
pub const PROTOCOL: u16 = 1002;
/// A text frame or close reason that is not UTF-8.
pub const INVALID_DATA: u16 = 1007;
/// Policy: e.g. a client that keeps sending far over its rate limit.
pub const POLICY: u16 = 1008;
/// A frame or message over the size limit (64 KiB).
pub const TOO_BIG: u16 = 1009;
/// The session ended: logout, expiry, a password change or a disabled account.
pub const SESSION_ENDED: u16 = 4001;
/// The connection's unsent output went over its limit; reconnect and `sync`.
pub const TOO_SLOW: u16 = 4002;
