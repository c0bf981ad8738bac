//! Every limit and default of the server in one place: [`Config`], its `Default`, and the
//! constants the contract fixes. The flags that fill a `Config` (and `--help`) are parsed in
//! `flags`, re-exported here.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::store::journal::FsyncPolicy;

mod flags;

pub use flags::{help, parse_args, version, Parsed};

/// How much the server logs (`--log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// The server's configuration. `Config::default()` is what a bare `parley-server` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening address. Default is `127.0.0.1:7878`.
    pub bind: String,
    /// Where the journal and snapshots live. Default is `./parley-data`.
    pub data_dir: PathBuf,
    /// Keep nothing on disk. Default is off.
    pub ephemeral: bool,
    /// Default is `interval`.
    pub fsync: FsyncPolicy,
    /// Total open connections (HTTP and WebSocket). Default is the open-file limit less 64 for
    /// the journal, the listener and the hashing threads.
    pub max_connections: usize,
    /// Open connections from one IP address; 0 turns the cap off. Default is 1,000.
    pub max_connections_per_ip: usize,
    /// Default is 15 bytes; a password may be at most 1,024 bytes.
    pub min_password_length: usize,
    /// PBKDF2-HMAC-SHA256 rounds for new hashes. Default is 600,000 (OWASP 2023).
    pub pbkdf2_iterations: u32,
    /// Threads that run PBKDF2, away from the async workers. Default is 1, so a login flood
    /// can take at most one of the two cores this server is sized for.
    pub hash_threads: usize,
    /// Logins and registrations waiting for a hashing thread; beyond it they get 503.
    /// Default is 256.
    pub max_pending_hashes: usize,
    /// How long request activity keeps a user online. Default is 60 s.
    pub presence_timeout: Duration,
    /// A session whose user stays offline this long ends. Default is 30 min.
    pub session_idle_timeout: Duration,
    /// No session lives longer. Default is 24 h.
    pub session_max_age: Duration,
    /// Capacity of a room created without one. Default is 1,000; at most 100,000
    /// (`MAX_ROOM_CAPACITY`).
    pub room_capacity: u32,
    /// Default is 100.
    pub max_rooms_per_user: usize,
    /// Rooms one user may own; 0 turns the cap off. Default is 100.
    pub max_owned_rooms: usize,
    /// State-changing REST calls per second per user; 0 turns the bucket off. Default is 5.
    pub rest_rate_limit: u32,
    /// Burst size of the per-user REST bucket. Default is 20.
    pub rest_rate_burst: u32,
    /// Bytes of history served per second per user (REST pages and `sync` answers); 0 turns
    /// the budget off. Default is 1 MiB: a client catching up reads 2,000 entries of 500
    /// bytes a second, and a user pulling 500-entry pages of 4 KB entries in a loop costs the
    /// server one such page every few seconds, not one per request.
    pub history_byte_rate: u32,
    /// Burst size of the per-user history budget. Default is 8 MiB: two of the largest
    /// pages at once, and a reconnect's `sync` of every room it is in.
    pub history_byte_burst: u32,
    /// Entries kept per room. Default is 1,000.
    pub history: usize,
    /// Server ping interval; three silent intervals close a connection. Default is 20 s.
    pub heartbeat_interval: Duration,
    /// Allowed `Origin` values for the WebSocket upgrade; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Messages per second per user; 0 turns rate limiting off. Default is 10.
    pub rate_limit: u32,
    /// Burst size of the per-user token bucket. Default is 30.
    pub rate_burst: u32,
    /// Room budgets, all senders together: messages a second and their burst (defaults 50
    /// and 100), bytes of `entry` frames a second and their burst (see `ROOM_BYTE_RATE`).
    /// `rate_limit` 0 turns them off too.
    pub room_rate_limit: u32,
    pub room_rate_burst: u32,
    pub room_byte_rate: u32,
    pub room_byte_burst: u32,
    /// File of words to mask, one per line.
    pub blocked_words: Option<PathBuf>,
    /// Unsent output after which a WebSocket is closed with 4002. Default is 1 MiB.
    pub max_outbound_bytes: usize,
    /// Largest request body. Default is 64 KiB.
    pub max_body_bytes: usize,
    /// Time allowed for a request head to arrive. Default is 10 s.
    pub header_timeout: Duration,
    /// Idle keep-alive connections close after this. Default is 60 s.
    pub keepalive_timeout: Duration,
    /// Journal size that triggers a snapshot and a fresh journal. Default is 64 MiB.
    pub compact_bytes: u64,
    /// Successful registrations per client IP per hour; 0 turns the limit off. Default is 60.
    pub register_per_ip_per_hour: usize,
    /// Failed logins for one account from all addresses within `LOGIN_WINDOW` before every
    /// address gets 429. Default is 100.
    pub login_account_failures: usize,
    /// Server administrators (`--admin`, repeatable), lowercase: names are matched ignoring
    /// case. One without an account registers only with the admin setup code the server logs
    /// at start (`chat::admin`). Default is none.
    pub admins: Vec<String>,
    /// Least severe log events written. Default is `info`.
    pub log_level: LogLevel,
    /// Default is text.
    pub log_json: bool,
    /// Who may register. Default is [`Registration::Open`].
    pub registration: Registration,
    /// PEM certificate chain and private key (`--tls-cert`, `--tls-key`, given together):
    /// HTTPS and WSS instead of plain HTTP. Default is none.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Proxies whose connections' client address is the last `X-Forwarded-For` entry
    /// (`--trusted-proxy`, repeatable). Default is none.
    pub trusted_proxies: Vec<IpAddr>,
    /// NATS servers of cluster mode (`--cluster-nats`, repeatable or comma-separated). Empty
    /// (the default) is single-node mode with its own journal.
    pub cluster_nats: Vec<String>,
    /// This node's name in logs and metrics (`--node-name`). Default: host name and port.
    pub node_name: Option<String>,
    /// The JetStream stream the nodes share (`--cluster-stream`). Default `parley`.
    pub cluster_stream: String,
    /// Replicas of that stream in the NATS cluster (`--cluster-replicas`). Default 1.
    pub cluster_replicas: usize,
    /// Changes in the stream between two snapshots (`--cluster-snapshot-every`); the stream
    /// keeps about two such stretches. Default 100,000.
    pub cluster_snapshot_every: u64,
    /// How often a node saves the copy of its replica in `--data-dir`, when anything changed
    /// (`--cluster-save-every`). Default 30 s.
    pub cluster_save_every: Duration,
}

/// `--registration`: who may create an account through `POST /api/v1/register`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Registration {
    /// Anyone (but a name given to `--admin` needs the admin setup code).
    #[default]
    Open,
    /// Whoever brings a live invite code (and the names given to `--admin`, with the admin
    /// setup code).
    Invite,
    /// Only the names given to `--admin`, with the admin setup code; admins create the other
    /// accounts.
    Closed,
}

impl std::str::FromStr for Registration {
    type Err = ();

    fn from_str(s: &str) -> Result<Registration, ()> {
        match s {
            "open" => Ok(Registration::Open),
            "invite" => Ok(Registration::Invite),
            "closed" => Ok(Registration::Closed),
            _ => Err(()),
        }
    }
}

/// Usernames: 3-32 characters of `[A-Za-z0-9_-]`. Here, below the chat core, so that
/// `--admin` names are checked by the same rule as registrations.
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Rooms may hold at most this many members, whatever `--room-capacity` says.
pub(crate) const MAX_ROOM_CAPACITY: u32 = 100_000;
/// Longest password accepted, in bytes.
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;
/// Failed logins per account and client address within [`LOGIN_WINDOW`] before further
/// attempts from that address get 429.
pub(crate) const LOGIN_FAILURES_ALLOWED: usize = 5;
/// The login-throttling window.
pub(crate) const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The window of `--register-per-ip-per-hour`.
pub(crate) const REGISTER_WINDOW: Duration = Duration::from_secs(3600);
/// Sessions one user may hold; a login beyond it ends their oldest session.
pub(crate) const MAX_SESSIONS_PER_USER: usize = 100;
/// Longest message text in bytes, after trimming.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4096;
/// Largest WebSocket frame or reassembled message.
pub(crate) const MAX_WS_MESSAGE: usize = 64 * 1024;
/// Default `--room-byte-rate`: 64 KiB/s (512 kbit/s), below what any reader on a real network
/// (a weak mobile link) takes, so a reader that keeps up drains a room faster than it fills.
/// Default `--room-byte-burst` is a quarter of `--max-outbound-bytes` (256 KiB of 1 MiB),
/// and no more is allowed, so a reader's unsent output stays under the limit: a `sync`
/// answer takes at most half (plus one entry; a join's history of 50 entries is less), the
/// room's burst a quarter, and the last quarter is left for one more entry, presence and
/// replies. A message counts as its `entry` frame: the text with every byte escaped in the
/// worst case (control characters are stripped; `"`, `\`, newline and tab escape to two
/// bytes), so at most 2 × 4,096 + ~200 bytes of keys, names and header ≈ 8.4 KiB, plus the
/// nonce its sender's copy carries. So a room's burst is 31 of the largest messages and it
/// sustains 7 a second; short messages meet the message budget (50 a second, bursts of 100)
/// first. A reader in several rooms takes each one's budget.
pub(crate) const ROOM_BYTE_RATE: u32 = 64 * 1024;

/// Invite codes: default lifetime (7 days), the longest `expires_in` accepted (a year), the
/// most uses one code may have, and the most codes alive at once (each costs ~100 bytes; an
/// admin who needs more lets some expire).
pub(crate) const INVITE_LIFETIME_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);
pub(crate) const INVITE_LIFETIME_MAX: Duration = Duration::from_secs(365 * 24 * 3600);
pub(crate) const INVITE_USES_MAX: u32 = 100_000;
pub(crate) const MAX_INVITE_CODES: usize = 10_000;

/// Entries sent in the `history` frame after a join.
pub(crate) const JOIN_HISTORY: usize = 50;
/// Default and largest `limit` of the history call.
pub(crate) const HISTORY_PAGE_DEFAULT: usize = 50;
pub(crate) const HISTORY_PAGE_MAX: usize = 500;
/// Default and largest `limit` of the room and user listings: a page is bounded whatever
/// the number of rooms or users.
pub(crate) const LIST_PAGE_DEFAULT: usize = 100;
pub(crate) const LIST_PAGE_MAX: usize = 500;

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1:7878".into(),
            data_dir: PathBuf::from("./parley-data"),
            ephemeral: false,
            fsync: FsyncPolicy::Interval,
            max_connections: default_max_connections(),
            max_connections_per_ip: 1000,
            min_password_length: 15,
            pbkdf2_iterations: 600_000,
            hash_threads: 1,
            max_pending_hashes: 256,
            presence_timeout: Duration::from_secs(60),
            session_idle_timeout: Duration::from_secs(30 * 60),
            session_max_age: Duration::from_secs(24 * 3600),
            room_capacity: 1000,
            max_rooms_per_user: 100,
            max_owned_rooms: 100,
            rest_rate_limit: 5,
            rest_rate_burst: 20,
            history_byte_rate: 1 << 20,
            history_byte_burst: 8 << 20,
            history: 1000,
            heartbeat_interval: Duration::from_secs(20),
            allowed_origins: Vec::new(),
            rate_limit: 10,
            rate_burst: 30,
            room_rate_limit: 50,
            room_rate_burst: 100,
            room_byte_rate: ROOM_BYTE_RATE,
            room_byte_burst: 1 << 18,
            blocked_words: None,
            max_outbound_bytes: 1 << 20,
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            compact_bytes: crate::store::journal::DEFAULT_COMPACT_BYTES,
            register_per_ip_per_hour: 60,
            login_account_failures: 100,
            admins: Vec::new(),
            log_level: LogLevel::Info,
            log_json: false,
            registration: Registration::Open,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            cluster_nats: Vec::new(),
            node_name: None,
            cluster_stream: "parley".into(),
            cluster_replicas: 1,
            cluster_snapshot_every: 100_000,
            cluster_save_every: Duration::from_secs(30),
        }
    }
}

/// File descriptors kept back from `--max-connections`'s default.
const FD_HEADROOM: usize = 64;

/// The soft open-file limit, read from `/proc/self/limits` (no libc call needed).
pub(crate) fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn default_max_connections() -> usize {
    open_file_limit()
        .unwrap_or(1024)
        .saturating_sub(FD_HEADROOM)
        .max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::default();
        assert_eq!(c.bind, "127.0.0.1:7878");
        assert_eq!(c.pbkdf2_iterations, 600_000);
        assert_eq!(c.fsync, FsyncPolicy::Interval);
        assert_eq!(c.history, 1000);
        assert_eq!(c.max_outbound_bytes, 1 << 20);
        assert_eq!(
            (c.register_per_ip_per_hour, c.login_account_failures),
            (60, 100)
        );
        assert_eq!(c.max_owned_rooms, 100);
        assert_eq!((c.rest_rate_limit, c.rest_rate_burst), (5, 20));
        assert_eq!(c.room_byte_burst as usize, c.max_outbound_bytes / 4);
    }
}
