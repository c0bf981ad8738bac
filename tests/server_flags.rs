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
