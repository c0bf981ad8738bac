//! The hand-written flag parser, and `--help`.
//!
//! Flags are parsed in two steps, as ripgrep does: the raw `--name value` pairs are matched
//! against the `FLAGS` table, then each value is validated into a typed [`Config`] field.
//! The same table produces `--help`, so a flag cannot exist without its help line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{valid_username, Config, LogLevel, MAX_PASSWORD_BYTES, MAX_ROOM_CAPACITY};

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
