//! Command-line flags, parsed into [`Args`], and the `--help` text.

use crate::http::Endpoint;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";

pub const HELP: &str = "\
parley-cli: chat on a Parley server from the terminal

USAGE:
    parley-cli [--server URL] [--ca-file FILE] [--user NAME] [--password-stdin]
               [--invite-code CODE]

OPTIONS:
    --server URL        server to talk to [default: http://127.0.0.1:7878]
                        (or set PARLEY_SERVER); http://HOST:PORT, or
                        https://HOST[:PORT] for TLS (the WebSocket is then wss://)
    --ca-file FILE      with https://, also trust the certificates in FILE (PEM):
                        a self-signed server certificate or a private CA; public
                        certificates are checked against the built-in Mozilla roots
    --user NAME         log in as NAME at start
    --password-stdin    read the password from the first line of standard input
                        (for scripts); PARLEY_PASSWORD is also honoured; otherwise
                        the password is asked for, without echo, on the terminal
    --invite-code CODE  the invite code /register sends, for servers that register
                        only by invitation (/register NAME CODE also takes one;
                        on a terminal it is asked for when the server wants one)
    -h, --help          print this help
    -V, --version       print the version

COMMANDS (type them at the prompt; any other line is a message to the current room):
    /register NAME [CODE]  create an account (asks for a password) and log in;
                        CODE is an invite code, for servers that need one
    /login NAME         log in
    /logout             log out
    /password           change your password (asks for the old and the new one,
                        without echo); your other sessions are ended
    /create NAME        create a room, join it and make it current
    /join ID|NAME       join a room and make it current (a room's name works too
                        when only one room has it; names may have spaces, and
                        may be quoted: /join \"team room\")
    /leave [ID|NAME]    leave a room (default: the current one)
    /switch ID|NAME     make a room you are in current, without joining or leaving
    /rooms              every room with its member count; * marks yours
    /users              everyone, online or offline, with last seen
    /who [ID|NAME]      a room's members and their presence
    /history [N]        the last N entries of the current room [default: 20]
    /invites            your pending invitations; /join ID accepts one

    Conversations:
    /me TEXT            an action, shown as `* you TEXT`
    /msg USER TEXT      a direct message: opens (or reuses) the DM with USER
    /dm USER            open the DM with USER and make it current
                        (/switch USER also finds it; DMs show as @USER)
    /dms                your DMs with unread counts (/rooms lists them apart)
    /edit [SEQ] TEXT    edit your last message in the current room (or message SEQ)
    /delete [SEQ]       delete your last message (or message SEQ; owners and
                        moderators may delete anyone's)
    /block USER         refuse USER's DMs and their posts in yours
    /unblock USER       /blocks  who you have blocked

    Running a room (they act on the current room; who may do what is the server's rule):
    /invite USER        invite someone; a private room is joined only this way
    /kick USER [REASON] remove a member (they may join again unless banned)
    /ban USER [REASON]  remove and keep out          /unban USER
    /bans               the room's ban list
    /mute USER DURATION silence a member: seconds, or 90s, 10m, 2h, 1d (at most 30d)
    /unmute USER        end a mute early
    /op USER            make a moderator             /deop USER   make a member again
    /owner USER         hand the room over; you become a moderator
    /topic [TEXT]       show the topic, or set it
    /clear-topic        remove the topic
    /rename NAME        rename the room
    /visibility public|private
    /delete-room [ID|NAME]  delete a room you own (default: the current one), at once

    Server administrators (--admin on the server):
    /admin invite-code [USES] [SECONDS]  a new invite code [default: 1 use, 7 days]
    /admin create USER  create an account (asks for its password)
    /admin disable USER end the user's sessions and refuse their logins
    /admin enable USER  allow them again
    /admin delete-room ID                delete any room

    /help               this list
    /quit               leave the program (Ctrl-D does too)
    //text              send a message that starts with '/'
    Other /commands (e.g. /me without text) are passed to the server.

OUTPUT:
    HH:MM [room] name: text      a message; `(edited)` after an edited one,
                                 `name: (deleted)` for a deleted one
    HH:MM [room] * name waves    an action (/me)
    HH:MM [room] * name edited #12: new text    an edit, live
    HH:MM [room] * message #12 was deleted by name
    HH:MM [@name] ...            a direct message with name
    * name is typing in room…    once per burst of typing (`is typing to you…` in a DM)
    HH:MM [room] --> name joined a join (<-- for a leave)
    HH:MM [room] * bo was kicked by al (spam)   moderation, roles, topic and name changes
    * al invited you to den (ID); type /join ID to accept
    * den was deleted by al      a room you were in is gone
    * name is online             presence of someone who shares a room with you
                                 (`* name went offline`)
    -- text                      the client's notices (connection state, answers); a
                                 listing is a `-- heading` with its rows indented below
    ! text                       an error, or the connection in trouble; the client
                                 keeps running
    Times are local, from the UTC offset at start-up (`date +%z`; UTC if unknown).
    Colour is used on a terminal unless NO_COLOR is set; then mentions of you
    (@you) are highlighted and ring the terminal bell.
    The prompt is `you@room> `, with ` (offline)` while the connection is down.
    On connect, `N unread in ROOM` tells what came while you were away; what is shown
    in the current room is marked read (and /rooms, /dms count the rest).
    While you type a message on a terminal, the room is told you are typing.

    When standard input is not a terminal, lines are read from it one by one, events are
    printed one per line without colour or prompt, and the client exits at end of input
    once everything it sent has been acknowledged. Exit status 0 then; 1 if anything
    failed (the login, a command, a line the server refused, something left
    unacknowledged after 30 s, the session ended); 2 for a bad flag.
    The connection is re-established by itself, with growing back-off, when it drops.
";

/// Parsed flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub server: Endpoint,
    pub user: Option<String>,
    pub password_stdin: bool,
    pub invite_code: Option<String>,
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
    let mut invite_code = None;
    let mut ca_file: Option<String> = None;
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
            "--invite-code" => invite_code = Some(value("--invite-code")?),
            "--ca-file" => ca_file = Some(value("--ca-file")?),
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
    let mut server = Endpoint::parse(&server).map_err(|e| format!("--server: {e}"))?;
    if let Some(file) = &ca_file {
        server = server
            .with_ca_file(std::path::Path::new(file))
            .map_err(|e| format!("--ca-file: {e}"))?;
    }
    if let Some(u) = &user {
        crate::commands::check_username(u).map_err(|e| format!("--user: {e}"))?;
    }
    Ok(Parsed::Run(Args {
        server,
        user,
        password_stdin,
        invite_code,
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
        assert_eq!(a.invite_code, None);
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
        let a = run(&["--invite-code", "c0de"]).expect("parses");
        assert_eq!(a.invite_code.as_deref(), Some("c0de"));
        let a = run(&["--invite-code=x1"]).expect("parses");
        assert_eq!(a.invite_code.as_deref(), Some("x1"));
    }

    #[test]
    fn https_servers() {
        let a = run(&["--server", "https://chat.example"]).expect("parses");
        assert_eq!(a.server.port, 443);
        assert!(a.server.tls.is_some());
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
            &["--server", "ftp://h:1"],
            &["--ca-file", "/nonexistent.pem", "--server", "https://h:1"],
            &["--ca-file", "/nonexistent.pem"],
            &["--password-stdin=yes"],
            &["--invite-code"],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(["--help"], None), Ok(Parsed::Help));
        assert_eq!(parse(["-V"], None), Ok(Parsed::Version));
    }
}
