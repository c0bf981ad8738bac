//! The `parley-server` binary's command line: `--help`, bad flags, the listening line.

mod common;

use std::process::{Command, Stdio};

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_parley-server"))
}

#[test]
fn help_lists_every_flag_with_its_default_and_exits_0() {
    let out = server().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--bind",
        "--data-dir",
        "--ephemeral",
        "--fsync",
        "--max-connections",
        "--max-connections-per-ip",
        "--min-password-length",
        "--pbkdf2-iterations",
        "--presence-timeout",
        "--session-idle-timeout",
        "--session-max-age",
        "--room-capacity",
        "--max-rooms-per-user",
        "--max-owned-rooms",
        "--rest-rate-limit",
        "--rest-rate-burst",
        "--history",
        "--heartbeat-interval",
        "--allowed-origin",
        "--rate-limit",
        "--rate-burst",
        "--room-rate-limit",
        "--room-rate-burst",
        "--room-byte-rate",
        "--room-byte-burst",
        "--blocked-words",
        "--max-outbound-bytes",
        "--max-body-bytes",
        "--header-timeout",
        "--keepalive-timeout",
        "--admin",
        "--registration",
        "--tls-cert",
        "--tls-key",
        "--trusted-proxy",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{flag} ")) || l.trim() == flag)
            .unwrap_or_else(|| panic!("--help has no line for {flag}:\n{help}"));
        assert!(
            line.contains("[default:"),
            "{flag} shows no default: {line}"
        );
    }
    assert!(
        help.contains("[default: 600000]"),
        "PBKDF2 default is 600,000"
    );
}

#[test]
fn a_bad_flag_or_value_exits_2_with_one_line() {
    for args in [
        vec!["--no-such-flag"],
        vec!["--fsync", "sometimes"],
        vec!["--history"],
        vec!["--room-capacity", "0"],
        vec!["--heartbeat-interval", "soon"],
        vec!["--registration", "sometimes"],
        vec!["--admin", "no spaces allowed"],
        vec!["--admin"],
        vec![
            "--max-outbound-bytes",
            "65536",
            "--room-byte-burst",
            "32768",
        ],
        vec!["--trusted-proxy", "proxy.example"],
        vec!["--trusted-proxy", "10.0.0.0/8"],
        vec!["--trusted-proxy"],
        vec!["--tls-cert", "cert.pem"],
        vec!["--tls-key", "key.pem"],
    ] {
        let out = server().args(&args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

#[test]
fn the_first_stdout_line_names_the_bound_address() {
    let mut command = server();
    command.args(["--bind", "127.0.0.1:0", "--ephemeral"]);
    let child = common::spawn_server(command);
    assert_ne!(child.addr.port(), 0, "the real port, not 0");
}

#[test]
fn version_and_short_help() {
    let out = server().arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        line.trim_end(),
        format!("parley-server {}", env!("CARGO_PKG_VERSION"))
    );
    let short = server().arg("-h").output().unwrap();
    let long = server().arg("--help").output().unwrap();
    assert!(short.status.success());
    assert_eq!(short.stdout, long.stdout);
    assert!(String::from_utf8_lossy(&long.stdout).contains("--config FILE"));
}

/// A config file in a fresh temporary directory.
fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("parley-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("parley.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn parse(args: &[&str]) -> Result<parley::Config, String> {
    match parley::config::parse_args(args.iter().map(|s| s.to_string()))? {
        parley::config::Parsed::Run(cfg) => Ok(*cfg),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_config_file_sets_flags_and_the_command_line_wins() {
    let path = config_file(
        "wins",
        "max-connections = 5000\nhistory = 42\nephemeral = true\nbind = \"127.0.0.1:9999\"\n\
         admin = [\"root\", \"Ops\"]\nregistration = \"invite\"\nheartbeat-interval = 7\n",
    );
    let path = path.to_str().unwrap();
    let cfg = parse(&["--config", path]).unwrap();
    assert_eq!(
        (
            cfg.max_connections,
            cfg.history,
            cfg.ephemeral,
            cfg.bind.as_str()
        ),
        (5000, 42, true, "127.0.0.1:9999")
    );
    assert_eq!(cfg.admins, ["root", "ops"]);
    assert_eq!(cfg.heartbeat_interval, std::time::Duration::from_secs(7));
    // The command line wins, before or after --config; a repeatable flag replaces the list.
    let cfg = parse(&["--history", "7", "--config", path, "--admin", "boss"]).unwrap();
    assert_eq!((cfg.history, cfg.max_connections), (7, 5000));
    assert_eq!(cfg.admins, ["boss"]);
}

#[test]
fn a_bad_config_file_exits_2_naming_the_key() {
    for (name, text, names) in [
        ("unknown", "max-conections = 5\n", "max-conections"),
        ("value", "history = \"lots\"\n", "history"),
        ("switch", "ephemeral = \"yes\"\n", "ephemeral"),
        ("toml", "history = = 5\n", "not TOML"),
    ] {
        let path = config_file(name, text);
        let out = server()
            .args(["--config", path.to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{text}: {err}");
        assert!(err.contains(names), "{text}: {err}");
    }
    let out = server()
        .args(["--config", "/nonexistent/parley.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unreadable_tls_certificate_or_key_exits_2_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("parley-tls-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let missing = dir.join("missing.pem");
    let (junk, missing) = (junk.to_str().unwrap(), missing.to_str().unwrap());
    for (cert, key, names) in [(missing, junk, missing), (junk, junk, junk)] {
        let out = server()
            .args(["--bind", "127.0.0.1:0", "--ephemeral"])
            .args(["--tls-cert", cert, "--tls-key", key])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cert} {key}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("--tls-cert") && err.contains(names), "{err}");
        assert!(out.stdout.is_empty(), "it must not announce a listener");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
