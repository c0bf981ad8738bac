//! Every limit and default of the server in one place, and the hand-written flag parser.
//!
//! Flags are parsed in two steps, as ripgrep does: the raw `--name value` pairs are matched
//! against the `FLAGS` table, then each value is validated into a typed [`Config`] field.
//! The same table produces `--help`, so a flag cannot exist without its help line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::store::journal::FsyncPolicy;

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

/// One flag: its name, value placeholder (empty for switches) and help text.
struct Flag {
    name: &'static str,
    value: &'static str,
    help: &'static str,
}

#[rustfmt::skip]
const FLAGS: &[Flag] = &[
    Flag { name: "bind", value: "ADDR", help: "address to listen on [default: 127.0.0.1:7878]" },
    Flag { name: "data-dir", value: "DIR", help: "journal and snapshot directory; in cluster mode the node's copy of its state [default: ./parley-data]" },
    Flag { name: "ephemeral", value: "", help: "keep nothing on disk; a new epoch every start [default: off]" },
    Flag { name: "fsync", value: "POLICY", help: "always | interval | never [default: interval]" },
    Flag { name: "max-connections", value: "N", help: "total open connections [default: open-file limit less 64]" },
    Flag { name: "max-connections-per-ip", value: "N", help: "open connections per IP, 0 = off [default: 1000]" },
    Flag { name: "min-password-length", value: "N", help: "shortest password in bytes [default: 15]" },
    Flag { name: "pbkdf2-iterations", value: "N", help: "PBKDF2-HMAC-SHA256 rounds for new hashes [default: 600000]" },
    Flag { name: "hash-threads", value: "N", help: "threads that hash passwords [default: 1]" },
    Flag { name: "max-pending-hashes", value: "N", help: "logins waiting for a hashing thread before 503 [default: 256]" },
    Flag { name: "presence-timeout", value: "SECS", help: "request activity keeps a user online this long [default: 60]" },
    Flag { name: "session-idle-timeout", value: "SECS", help: "end sessions of users offline this long [default: 1800]" },
    Flag { name: "session-max-age", value: "SECS", help: "longest session life [default: 86400]" },
    Flag { name: "room-capacity", value: "N", help: "capacity of new rooms, at most 100000 [default: 1000]" },
    Flag { name: "max-rooms-per-user", value: "N", help: "rooms one user may be in (a DM once they opened or wrote in it), and DMs left unanswered [default: 100]" },
    Flag { name: "max-owned-rooms", value: "N", help: "rooms one user may own, 0 = off [default: 100]" },
    Flag { name: "rest-rate-limit", value: "N", help: "state-changing REST calls per second per user, 0 = off [default: 5]" },
    Flag { name: "rest-rate-burst", value: "N", help: "REST call burst per user [default: 20]" },
    Flag { name: "history-byte-rate", value: "N", help: "bytes of history (REST pages, sync answers) served per second per user, 0 = off [default: 1048576]" },
    Flag { name: "history-byte-burst", value: "N", help: "burst of history bytes per user [default: 8388608]" },
    Flag { name: "history", value: "N", help: "entries kept per room [default: 1000]" },
    Flag { name: "heartbeat-interval", value: "SECS", help: "WebSocket ping interval [default: 20]" },
    Flag { name: "allowed-origin", value: "ORIGIN", help: "allowed WebSocket Origin, repeatable [default: any]" },
    Flag { name: "rate-limit", value: "N", help: "messages per second per user, 0 = off (room budgets too) [default: 10]" },
    Flag { name: "rate-burst", value: "N", help: "message burst per user [default: 30]" },
    Flag { name: "room-rate-limit", value: "N", help: "messages per second into one room [default: 50]" },
    Flag { name: "room-rate-burst", value: "N", help: "message burst per room [default: 100]" },
    Flag { name: "room-byte-rate", value: "N", help: "entry bytes per second out of one room [default: 65536]" },
    Flag { name: "room-byte-burst", value: "N", help: "byte burst per room, at most max-outbound-bytes / 4 [default: that quarter, 262144]" },
    Flag { name: "blocked-words", value: "FILE", help: "words to mask, one per line (matched ignoring case, invisible characters and Cyrillic/Greek lookalikes) [default: none]" },
    Flag { name: "max-outbound-bytes", value: "N", help: "unsent bytes before a 4002 close [default: 1048576]" },
    Flag { name: "max-body-bytes", value: "N", help: "largest request body [default: 65536]" },
    Flag { name: "header-timeout", value: "SECS", help: "time allowed for a request head [default: 10]" },
    Flag { name: "keepalive-timeout", value: "SECS", help: "idle keep-alive close [default: 60]" },
    Flag { name: "compact-bytes", value: "N", help: "journal size that triggers a snapshot [default: 67108864]" },
    Flag { name: "register-per-ip-per-hour", value: "N", help: "successful registrations per client IP per hour, 0 = off [default: 60]" },
    Flag { name: "login-account-failures", value: "N", help: "failed logins per account from all addresses per 15 min [default: 100]" },
    Flag { name: "admin", value: "NAME", help: "a server administrator, repeatable; a name without an account registers only with the admin setup code logged at WARN at start [default: none]" },
    Flag { name: "registration", value: "MODE", help: "who may register: open | invite | closed [default: open]" },
    Flag { name: "tls-cert", value: "FILE", help: "PEM certificate chain: serve HTTPS and WSS (with --tls-key; SIGHUP reloads both) [default: none, plain HTTP]" },
    Flag { name: "tls-key", value: "FILE", help: "PEM private key of --tls-cert [default: none]" },
    Flag { name: "trusted-proxy", value: "IP", help: "a proxy whose X-Forwarded-For names the client, repeatable [default: none]" },
    Flag { name: "cluster-nats", value: "URL", help: "cluster mode: NATS server(s) with JetStream, repeatable or comma-separated [default: none, one node]" },
    Flag { name: "node-name", value: "NAME", help: "this node's name in cluster mode [default: host name and port]" },
    Flag { name: "cluster-stream", value: "NAME", help: "the JetStream stream the nodes share [default: parley]" },
    Flag { name: "cluster-replicas", value: "N", help: "replicas of that stream, at most 5 [default: 1]" },
    Flag { name: "cluster-snapshot-every", value: "N", help: "changes between two snapshots of the shared state; the stream keeps about twice this [default: 100000]" },
    Flag { name: "cluster-save-every", value: "SECS", help: "how often a node saves its copy of the state in --data-dir, for a quick restart [default: 30]" },
    Flag { name: "log-level", value: "LEVEL", help: "error | warn | info | debug [default: info]" },
    Flag { name: "log-format", value: "FORMAT", help: "text | json, one event a line on stderr [default: text]" },
    Flag { name: "config", value: "FILE", help: "read flags from a TOML file (keys are flag names); the command line wins" },
    Flag { name: "version", value: "", help: "print the version and exit" },
    Flag { name: "help", value: "", help: "print this help (also -h)" },
];

/// Flags that may be given more than once; in a config file they take an array.
const REPEATABLE: &[&str] = &["allowed-origin", "admin", "trusted-proxy", "cluster-nats"];

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    Help,
    Version,
}

/// The `--version` line.
pub fn version() -> String {
    format!("parley-server {}", env!("CARGO_PKG_VERSION"))
}

/// The `--help` text, generated from the `FLAGS` table.
pub fn help() -> String {
    let mut out = String::from(
        "parley-server: a real-time chat server\n\nUSAGE:\n    parley-server [FLAGS]\n    \
         parley-server --config parley.toml [FLAGS]\n\nFLAGS:\n",
    );
    for f in FLAGS {
        let left = if f.value.is_empty() {
            format!("--{}", f.name)
        } else {
            format!("--{} {}", f.name, f.value)
        };
        out.push_str(&format!("    {left:<34} {}\n", f.help));
    }
    out
}

/// Parses the arguments after the program name. The error is the one-line reason to print
/// before exiting with status 2. `--config FILE` reads flags from a TOML file first; the
/// command line wins (a repeatable flag given there replaces the file's list).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, String> {
    let mut given: Vec<(&'static Flag, String)> = Vec::new();
    let mut config_file: Option<String> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" {
            return Ok(Parsed::Help);
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument '{arg}'"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let flag = FLAGS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| format!("unknown flag '--{name}' (see --help)"))?;
        match flag.name {
            "help" => return Ok(Parsed::Help),
            "version" => return Ok(Parsed::Version),
            _ => {}
        }
        let value = if flag.value.is_empty() {
            if inline.is_some() {
                return Err(format!("--{name} takes no value"));
            }
            String::new()
        } else {
            match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => return Err(format!("--{name} needs a value ({})", flag.value)),
            }
        };
        if flag.name == "config" {
            config_file = Some(value);
        } else {
            given.push((flag, value));
        }
    }
    let mut cfg = Config::default();
    let mut byte_burst_given = false;
    if let Some(path) = &config_file {
        for (flag, value) in read_config_file(path)? {
            if given.iter().any(|(f, _)| f.name == flag.name) {
                continue;
            }
            apply(&mut cfg, flag.name, &value)
                .map_err(|e| format!("--config {path}: {} = {value}: {e}", flag.name))?;
            byte_burst_given |= flag.name == "room-byte-burst";
        }
    }
    for (flag, value) in &given {
        let name = flag.name;
        apply(&mut cfg, name, value).map_err(|e| format!("--{name} {value}: {e}"))?;
        byte_burst_given |= name == "room-byte-burst";
    }
    let quarter = (cfg.max_outbound_bytes / 4).min(u32::MAX as usize);
    if !byte_burst_given {
        cfg.room_byte_burst = quarter as u32;
    } else if cfg.rate_limit > 0 && cfg.room_byte_burst as usize > quarter {
        return Err(format!(
            "--room-byte-burst {} is over a quarter of --max-outbound-bytes ({quarter}): \
             readers that keep up would be closed with 4002",
            cfg.room_byte_burst
        ));
    }
    if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together: give both or neither".into());
    }
    if cfg.rate_limit > 0 && cfg.rate_burst == 0 {
        return Err("--rate-burst must be at least 1 when --rate-limit is on".into());
    }
    Ok(Parsed::Run(Box::new(cfg)))
}

/// The flags of a TOML config file, as (flag, value) pairs in the file's order. Keys are
/// long flag names; a switch takes `true` (or `false`: not given), a repeatable flag a
/// string or an array of them, any other flag a string, integer or boolean.
fn read_config_file(path: &str) -> Result<Vec<(&'static Flag, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--config {path}: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let why = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        let line = e
            .span()
            .map_or(0, |s| text[..s.start].lines().count().max(1));
        format!("--config {path}: not TOML (line {line}): {why}")
    })?;
    let mut out = Vec::new();
    for (key, value) in table {
        let flag = FLAGS
            .iter()
            .find(|f| f.name == key && !matches!(f.name, "config" | "help" | "version"))
            .ok_or_else(|| format!("--config {path}: unknown key '{key}'"))?;
        let bad = || format!("--config {path}: {key}: not a value this flag takes");
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        };
        match (&value, flag.value.is_empty()) {
            (toml::Value::Boolean(true), true) => out.push((flag, String::new())),
            (toml::Value::Boolean(false), true) => {}
            (_, true) => return Err(bad()),
            (toml::Value::Array(items), false) if REPEATABLE.contains(&flag.name) => {
                for item in items {
                    out.push((flag, scalar(item).ok_or_else(bad)?));
                }
            }
            (v, false) => out.push((flag, scalar(v).ok_or_else(bad)?)),
        }
    }
    Ok(out)
}

fn apply(cfg: &mut Config, name: &str, v: &str) -> Result<(), String> {
    match name {
        "log-level" => {
            cfg.log_level = match v {
                "error" => LogLevel::Error,
                "warn" => LogLevel::Warn,
                "info" => LogLevel::Info,
                "debug" => LogLevel::Debug,
                _ => return Err("expected error, warn, info or debug".into()),
            }
        }
        "log-format" => {
            cfg.log_json = match v {
                "text" => false,
                "json" => true,
                _ => return Err("expected text or json".into()),
            }
        }
        "bind" => cfg.bind = v.to_string(),
        "data-dir" => cfg.data_dir = PathBuf::from(v),
        "ephemeral" => cfg.ephemeral = true,
        "fsync" => {
            cfg.fsync = v
                .parse()
                .map_err(|_| "expected always, interval or never")?
        }
        "max-connections" => cfg.max_connections = number(v, 1, usize::MAX)?,
        "max-connections-per-ip" => cfg.max_connections_per_ip = number(v, 0, usize::MAX)?,
        "min-password-length" => {
            cfg.min_password_length = number(v, 1, MAX_PASSWORD_BYTES)?;
        }
        "pbkdf2-iterations" => cfg.pbkdf2_iterations = number(v, 1, u32::MAX as usize)? as u32,
        "hash-threads" => cfg.hash_threads = number(v, 1, 64)?,
        "max-pending-hashes" => cfg.max_pending_hashes = number(v, 1, 1 << 20)?,
        "presence-timeout" => cfg.presence_timeout = seconds(v)?,
        "session-idle-timeout" => cfg.session_idle_timeout = seconds(v)?,
        "session-max-age" => cfg.session_max_age = seconds(v)?,
        "room-capacity" => cfg.room_capacity = number(v, 1, MAX_ROOM_CAPACITY as usize)? as u32,
        "max-rooms-per-user" => cfg.max_rooms_per_user = number(v, 1, 1 << 20)?,
        "max-owned-rooms" => cfg.max_owned_rooms = number(v, 0, 1 << 20)?,
        "rest-rate-limit" => cfg.rest_rate_limit = number(v, 0, 1_000_000)? as u32,
        "rest-rate-burst" => cfg.rest_rate_burst = number(v, 1, 1_000_000)? as u32,
        "history-byte-rate" => cfg.history_byte_rate = number(v, 0, u32::MAX as usize)? as u32,
        "history-byte-burst" => cfg.history_byte_burst = number(v, 1, u32::MAX as usize)? as u32,
        "history" => cfg.history = number(v, 1, 1 << 20)?,
        "heartbeat-interval" => cfg.heartbeat_interval = seconds(v)?,
        "allowed-origin" => cfg.allowed_origins.push(v.to_string()),
        "rate-limit" => cfg.rate_limit = number(v, 0, 1_000_000)? as u32,
        "rate-burst" => cfg.rate_burst = number(v, 1, 1_000_000)? as u32,
        "room-rate-limit" => cfg.room_rate_limit = number(v, 1, 1_000_000)? as u32,
        "room-rate-burst" => cfg.room_rate_burst = number(v, 1, 1_000_000)? as u32,
        "room-byte-rate" => cfg.room_byte_rate = number(v, 1, u32::MAX as usize)? as u32,
        "room-byte-burst" => cfg.room_byte_burst = number(v, 1, u32::MAX as usize)? as u32,
        "blocked-words" => cfg.blocked_words = Some(PathBuf::from(v)),
        "max-outbound-bytes" => cfg.max_outbound_bytes = number(v, 1024, 1 << 34)?,
        "max-body-bytes" => cfg.max_body_bytes = number(v, 1, 1 << 30)?,
        "header-timeout" => cfg.header_timeout = seconds(v)?,
        "keepalive-timeout" => cfg.keepalive_timeout = seconds(v)?,
        "compact-bytes" => cfg.compact_bytes = number(v, 4096, usize::MAX)? as u64,
        "register-per-ip-per-hour" => cfg.register_per_ip_per_hour = number(v, 0, 1 << 20)?,
        "login-account-failures" => cfg.login_account_failures = number(v, 1, 1 << 20)?,
        "admin" => {
            if !valid_username(v) {
                return Err("not a valid username (3-32 of A-Z, a-z, 0-9, _ and -)".into());
            }
            cfg.admins.push(v.to_ascii_lowercase());
        }
        "tls-cert" => cfg.tls_cert = Some(PathBuf::from(v)),
        "tls-key" => cfg.tls_key = Some(PathBuf::from(v)),
        "trusted-proxy" => {
            let ip: IpAddr = v.parse().map_err(|_| "expected an IP address")?;
            cfg.trusted_proxies.push(ip.to_canonical());
        }
        "cluster-nats" => {
            for url in v.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                cfg.cluster_nats.push(url.to_string());
            }
        }
        "node-name" => {
            if !valid_node_name(v) {
                return Err("expected 1-64 of A-Z, a-z, 0-9, _, - and .".into());
            }
            cfg.node_name = Some(v.to_string());
        }
        "cluster-stream" => {
            if !valid_node_name(v) || v.contains('.') {
                return Err("expected 1-64 of A-Z, a-z, 0-9, _ and -".into());
            }
            cfg.cluster_stream = v.to_string();
        }
        "cluster-replicas" => cfg.cluster_replicas = number(v, 1, 5)?,
        "cluster-snapshot-every" => cfg.cluster_snapshot_every = number(v, 10, 1 << 40)? as u64,
        "cluster-save-every" => cfg.cluster_save_every = seconds(v)?,
        "registration" => {
            cfg.registration = v.parse().map_err(|_| "expected open, invite or closed")?
        }
        _ => return Err("unknown flag".into()),
    }
    Ok(())
}

/// A node or stream name: what NATS accepts in a subject token and a stream name.
fn valid_node_name(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn number(v: &str, min: usize, max: usize) -> Result<usize, String> {
    let n: usize = v
        .parse()
        .map_err(|_| "expected a whole number".to_string())?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(n)
}

fn seconds(v: &str) -> Result<Duration, String> {
    Ok(Duration::from_secs(
        number(v, 1, 10 * 365 * 24 * 3600)? as u64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

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

    #[test]
    fn the_room_byte_burst_follows_the_outbound_limit_unless_given() {
        let run = |a: &str| match parse_args(args(a)) {
            Ok(Parsed::Run(c)) => c.room_byte_burst,
            other => panic!("{a}: {other:?}"),
        };
        assert_eq!(run(""), 1 << 18);
        assert_eq!(run("--max-outbound-bytes 65536"), 16384);
        assert_eq!(run("--room-byte-burst 1000"), 1000);
    }

    #[test]
    fn flags_parse_and_validate() {
        let cases: &[(&str, Result<(), &str>)] = &[
            ("--bind 127.0.0.1:0 --ephemeral", Ok(())),
            ("--fsync=always --heartbeat-interval 1", Ok(())),
            (
                "--fsync sometimes",
                Err("--fsync sometimes: expected always, interval or never"),
            ),
            ("--nope", Err("unknown flag '--nope' (see --help)")),
            ("--history", Err("--history needs a value (N)")),
            (
                "--room-capacity 100001",
                Err("--room-capacity 100001: must be between 1 and 100000"),
            ),
            (
                "--heartbeat-interval x",
                Err("--heartbeat-interval x: expected a whole number"),
            ),
            ("--ephemeral=yes", Err("--ephemeral takes no value")),
            ("stray", Err("unexpected argument 'stray'")),
            ("--max-outbound-bytes 4096 --room-byte-burst 1024", Ok(())),
            (
                "--room-byte-burst 262145",
                Err(
                    "--room-byte-burst 262145 is over a quarter of --max-outbound-bytes \
                     (262144): readers that keep up would be closed with 4002",
                ),
            ),
            ("--room-byte-burst 262145 --rate-limit 0", Ok(())),
            ("--admin Root --admin ops-1 --registration invite", Ok(())),
            (
                "--registration sometimes",
                Err("--registration sometimes: expected open, invite or closed"),
            ),
            ("--trusted-proxy 10.0.0.1 --trusted-proxy ::1", Ok(())),
            (
                "--trusted-proxy 10.0.0.0/8",
                Err("--trusted-proxy 10.0.0.0/8: expected an IP address"),
            ),
            (
                "--tls-cert cert.pem",
                Err("--tls-cert and --tls-key go together: give both or neither"),
            ),
            ("--tls-cert cert.pem --tls-key key.pem", Ok(())),
            (
                "--admin a!",
                Err("--admin a!: not a valid username (3-32 of A-Z, a-z, 0-9, _ and -)"),
            ),
        ];
        for (input, want) in cases {
            let got = parse_args(args(input)).map(|_| ());
            assert_eq!(got, want.map_err(String::from), "{input}");
        }
    }

    #[test]
    fn help_lists_every_flag_with_its_default() {
        let h = help();
        for f in FLAGS {
            assert!(h.contains(&format!("--{}", f.name)), "{}", f.name);
        }
        assert!(h.contains("[default: 600000]"));
    }
}
