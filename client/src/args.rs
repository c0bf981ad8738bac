//! Command-line flags, parsed into [`Args`], and the `--help` text.

use crate::http::Endpoint;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";

pub const HELP: &str = "\
parley-cli: chat on a Parley server from the terminal

USAGE:
    parley-cli [--server URL] [--user NAME] [--password-stdin]

OPTIONS:
    --server URL        server to talk to [default: http://127.0.0.1:7878]
                        (or set PARLEY_SERVER); http:// only
    --user NAME         log in as NAME at start
    --password-stdin    read the password from the first line of standard input
                        (for scripts); PARLEY_PASSWORD is also honoured; otherwise
                        the password is asked for, without echo, on the terminal
    -h, --help          print this help
    -V, --version       print the version

COMMANDS (type them at the prompt; any other line is a message to the current room):
    /register NAME      create an account (asks for a password) and log in
    /login NAME         log in
    /logout             log out
    /create NAME        create a room, join it and make it current
    /join ID            join a room and make it current (a room's name works too
                        when only one room has it)
    /leave [ID]         leave a room (default: the current one)
    /switch ID          make a room you are in current, without joining or leaving
    /rooms              every room with its member count; * marks yours
    /users              everyone, online or offline, with last seen
    /who [ID]           a room's members and their presence
    /history [N]        the last N entries of the current room [default: 20]
    /help               this list
    /quit               leave the program (Ctrl-D does too)
    //text              send a message that starts with '/'
    Other /commands (e.g. /me) are passed to the server.

OUTPUT:
    HH:MM [room] name: text      a message
    HH:MM [room] --> name joined a join (<-- for a leave)
    * name is online             presence of someone who shares a room with you
    -- text                      the client's notices (connection state, answers)
    ! text                       an error; the client keeps running
    Times are local, from the UTC offset at start-up (`date +%z`; UTC if unknown).
    Colour is used on a terminal unless NO_COLOR is set.

    When standard input is not a terminal, lines are read from it one by one, events are
    printed one per line without colour or prompt, and the client exits at end of input
    once everything it sent has been acknowledged (exit status 1 if something was not).
    The connection is re-established by itself, with growing back-off, when it drops.
";

/// Parsed flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub server: Endpoint,
    pub user: Option<String>,
    pub password_stdin: bool,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Args),
    Help,
    Version,
}

/// Parse `argv` (without the program name). `env_server` is `PARLEY_SERVER`, if set.
pub fn parse<I, S>(argv: I, env_server: Option<String>) -> Result<Parsed, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut server: Option<String> = None;
    let mut user = None;
    let mut password_stdin = false;
    let mut it = argv.into_iter().map(Into::into);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("{name} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--server" => server = Some(value("--server")?),
            "--user" => user = Some(value("--user")?),
            "--password-stdin" => {
                if inline.is_some() {
                    return Err("--password-stdin takes no value".into());
                }
                password_stdin = true;
            }
            other => return Err(format!("unknown option {other:?} (try --help)")),
        }
    }
    let server = server
        .or(env_server.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let server = Endpoint::parse(&server).map_err(|e| format!("--server: {e}"))?;
    if let Some(u) = &user {
        crate::commands::check_username(u).map_err(|e| format!("--user: {e}"))?;
    }
    Ok(Parsed::Run(Args {
        server,
        user,
        password_stdin,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str]) -> Result<Args, String> {
        match parse(argv.iter().copied(), None)? {
            Parsed::Run(a) => Ok(a),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults() {
        let a = run(&[]).expect("parses");
        assert_eq!(a.server.authority(), "127.0.0.1:7878");
        assert_eq!(a.user, None);
        assert!(!a.password_stdin);
    }

    #[test]
    fn flags() {
        let a = run(&[
            "--server",
            "http://h:1",
            "--user",
            "al_ice",
            "--password-stdin",
        ])
        .expect("parses");
        assert_eq!(a.server.authority(), "h:1");
        assert_eq!(a.user.as_deref(), Some("al_ice"));
        assert!(a.password_stdin);
        let a = run(&["--server=http://h:2"]).expect("parses");
        assert_eq!(a.server.port, 2);
    }

    #[test]
    fn env_server_is_the_default_only() {
        let p = parse(Vec::<String>::new(), Some("http://e:5".into())).expect("parses");
        assert!(matches!(p, Parsed::Run(a) if a.server.port == 5));
        let p = parse(["--server", "http://f:6"], Some("http://e:5".into())).expect("parses");
        assert!(matches!(p, Parsed::Run(a) if a.server.port == 6));
    }

    #[test]
    fn errors() {
        for bad in [
            &["--server"][..],
            &["--bogus"],
            &["--user", "x"],
            &["--server", "https://h:1"],
            &["--password-stdin=yes"],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(["--help"], None), Ok(Parsed::Help));
        assert_eq!(parse(["-V"], None), Ok(Parsed::Version));
    }
}
