//! What a typed line means: a message, one of the client's commands, or a command to
//! pass to the server. Parsing only; [`crate::app`] carries them out.

/// The client's own commands (and their names, for completion).
pub const NAMES: &[&str] = &[
    "/register",
    "/login",
    "/logout",
    "/create",
    "/join",
    "/leave",
    "/switch",
    "/rooms",
    "/users",
    "/who",
    "/history",
    "/help",
    "/quit",
    "/invite",
    "/invites",
    "/kick",
    "/ban",
    "/unban",
    "/bans",
    "/mute",
    "/unmute",
    "/op",
    "/deop",
    "/owner",
    "/topic",
    "/clear-topic",
    "/visibility",
    "/rename",
    "/delete-room",
    "/password",
    "/admin",
    "/msg",
    "/dm",
    "/dms",
    "/me",
    "/edit",
    "/delete",
    "/block",
    "/unblock",
    "/blocks",
];

/// Longest mute the contract allows: 30 days, in seconds.
pub const MAX_MUTE_SECS: u64 = 2_592_000;

/// Default for `/history` without N.
pub const DEFAULT_HISTORY: usize = 20;
/// The server answers at most 500 entries per history call.
pub const MAX_HISTORY: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/register NAME [INVITE_CODE]`.
    Register(String, Option<String>),
    Login(String),
    Logout,
    Create(String),
    Join(String),
    Leave(Option<String>),
    Switch(String),
    Rooms,
    Users,
    Who(Option<String>),
    History(usize),
    Help,
    Quit,
    /// A server command that acts on the current room (`/kick`, `/topic`, ...), checked
    /// and normalised here (`/mute bo 10m` becomes `/mute bo 600`), sent as this text.
    Moderate(String),
    /// `/topic` alone: show the current room's topic.
    ShowTopic,
    /// `/clear-topic`: remove the current room's topic.
    ClearTopic,
    /// `/bans`: who is banned from the current room.
    Bans,
    /// `/rename NAME`: rename the current room.
    Rename(String),
    /// `/delete-room [ID]`: delete a room you own (default: current).
    DeleteRoom(Option<String>),
    /// `/owner USER`: hand the current room to USER.
    Owner(String),
    /// `/password`: change your password (asked for without echo).
    Password,
    /// `/invites`: your pending invitations.
    Invites,
    Admin(Admin),
    /// `/msg USER TEXT`: open (or reuse) the DM with USER and post TEXT there.
    Msg(String, String),
    /// `/dm USER`: open (or reuse) the DM with USER and make it current.
    Dm(String),
    /// `/dms`: your direct-message rooms, with unread counts.
    Dms,
    /// `/edit [SEQ] TEXT`: replace the text of your message SEQ (default: your last
    /// one in the current room).
    Edit(Option<u64>, String),
    /// `/delete [SEQ]`: delete message SEQ (default: your last one in the current room).
    Delete(Option<u64>),
    Block(String),
    Unblock(String),
    /// `/blocks`: who you have blocked.
    Blocks,
    /// Not ours: sent to the server as-is (`/me TEXT`, or anything it may add).
    Server(String),
}

/// `/admin ...`: server administration, for the server's `--admin` users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    /// `/admin invite-code [USES] [SECONDS]`.
    InviteCode {
        uses: Option<u64>,
        expires_in: Option<u64>,
    },
    /// `/admin create USER`: make an account (asks for its password).
    Create(String),
    Disable(String),
    Enable(String),
    /// `/admin delete-room ID`: delete any room.
    DeleteRoom(String),
}

const ADMIN_USAGE: &str =
    "/admin invite-code [USES] [SECONDS] | create USER | disable USER | enable USER | delete-room ID";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Empty,
    /// Text for the current room, sent as typed (`//x` included: the server turns it
    /// into a literal `/x`).
    Message(String),
    Command(Command),
    /// A command used wrongly: the usage to show.
    Usage(&'static str),
}

pub fn parse(line: &str) -> Line {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Line::Empty;
    }
    if !trimmed.starts_with('/') || trimmed.starts_with("//") {
        return Line::Message(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let (name, rest) = match trimmed.split_once(char::is_whitespace) {
        Some((n, r)) => (n, r.trim()),
        None => (trimmed, ""),
    };
    let arg = (!rest.is_empty()).then(|| rest.to_owned());
    let one_word = |usage: &'static str| -> Result<String, &'static str> {
        match &arg {
            Some(a) if !a.contains(char::is_whitespace) => Ok(a.clone()),
            _ => Err(usage),
        }
    };
    // A room: an id, or a name, which may have spaces, with or without quotes.
    let room = |usage: &'static str| -> Result<String, &'static str> {
        arg.as_deref().and_then(room_arg).ok_or(usage)
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let cmd = match name.to_ascii_lowercase().as_str() {
        "/register" => match words.as_slice() {
            [name] => Ok(Command::Register((*name).to_owned(), None)),
            [name, code] => Ok(Command::Register(
                (*name).to_owned(),
                Some((*code).to_owned()),
            )),
            _ => Err("/register NAME [INVITE_CODE]"),
        },
        "/login" => one_word("/login NAME").map(Command::Login),
        "/logout" => Ok(Command::Logout),
        "/create" => arg.clone().map(Command::Create).ok_or("/create NAME"),
        "/join" => room("/join ID|NAME").map(Command::Join),
        "/leave" | "/part" => match &arg {
            None => Ok(Command::Leave(None)),
            Some(_) => room("/leave [ID|NAME]").map(|a| Command::Leave(Some(a))),
        },
        "/switch" => room("/switch ID|NAME").map(Command::Switch),
        "/rooms" => Ok(Command::Rooms),
        "/users" => Ok(Command::Users),
        "/who" => match &arg {
            None => Ok(Command::Who(None)),
            Some(_) => room("/who [ID|NAME]").map(|a| Command::Who(Some(a))),
        },
        "/history" => match &arg {
            None => Ok(Command::History(DEFAULT_HISTORY)),
            Some(a) => match a.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Command::History(n.min(MAX_HISTORY))),
                _ => Err("/history [N], N from 1 to 500"),
            },
        },
        "/help" | "/?" => Ok(Command::Help),
        "/quit" | "/exit" => Ok(Command::Quit),
        "/invite" | "/unban" | "/unmute" | "/op" | "/deop" | "/visibility" => {
            let lower = name.to_ascii_lowercase();
            let usage = match lower.as_str() {
                "/invite" => "/invite USER",
                "/unban" => "/unban USER",
                "/unmute" => "/unmute USER",
                "/op" => "/op USER",
                "/deop" => "/deop USER",
                _ => "/visibility public|private",
            };
            one_word(usage).map(|a| Command::Moderate(format!("{lower} {a}")))
        }
        "/kick" | "/ban" => {
            let lower = name.to_ascii_lowercase();
            match &arg {
                Some(a) => Ok(Command::Moderate(format!("{lower} {a}"))),
                None if lower == "/kick" => Err("/kick USER [REASON]"),
                None => Err("/ban USER [REASON]"),
            }
        }
        "/mute" => match words.as_slice() {
            [user, d] => match parse_duration(d) {
                Some(secs) => Ok(Command::Moderate(format!("/mute {user} {secs}"))),
                None => Err(MUTE_USAGE),
            },
            _ => Err(MUTE_USAGE),
        },
        "/topic" => match &arg {
            None => Ok(Command::ShowTopic),
            Some(a) => Ok(Command::Moderate(format!("/topic {a}"))),
        },
        "/clear-topic" | "/cleartopic" => Ok(Command::ClearTopic),
        "/bans" => Ok(Command::Bans),
        "/rename" => arg.clone().map(Command::Rename).ok_or("/rename NAME"),
        "/delete-room" | "/deleteroom" => match &arg {
            None => Ok(Command::DeleteRoom(None)),
            Some(_) => room("/delete-room [ID|NAME]").map(|a| Command::DeleteRoom(Some(a))),
        },
        "/owner" => one_word("/owner USER").map(Command::Owner),
        "/password" | "/passwd" => match &arg {
            None => Ok(Command::Password),
            Some(_) => Err("/password (the passwords are asked for)"),
        },
        "/invites" => Ok(Command::Invites),
        "/admin" => parse_admin(&words).map(Command::Admin),
        "/msg" | "/m" => match rest.split_once(char::is_whitespace) {
            Some((user, text)) if !text.trim().is_empty() => {
                Ok(Command::Msg(user.to_owned(), text.trim_start().to_owned()))
            }
            _ => Err("/msg USER TEXT"),
        },
        "/dm" | "/query" => one_word("/dm USER").map(Command::Dm),
        "/dms" => Ok(Command::Dms),
        "/edit" => {
            let (seq, text) = match rest.split_once(char::is_whitespace) {
                Some((first, more)) => match parse_seq(first) {
                    Some(seq) if !more.trim().is_empty() => (Some(seq), more.trim_start()),
                    _ => (None, rest),
                },
                None => (None, rest),
            };
            if text.is_empty() {
                Err(EDIT_USAGE)
            } else {
                Ok(Command::Edit(seq, text.to_owned()))
            }
        }
        "/delete" => match words.as_slice() {
            [] => Ok(Command::Delete(None)),
            [w] => parse_seq(w)
                .map(|s| Command::Delete(Some(s)))
                .ok_or("/delete [SEQ]"),
            _ => Err("/delete [SEQ]"),
        },
        "/block" => one_word("/block USER").map(Command::Block),
        "/unblock" => one_word("/unblock USER").map(Command::Unblock),
        "/blocks" => Ok(Command::Blocks),
        _ => Ok(Command::Server(trimmed.to_owned())),
    };
    match cmd {
        Ok(c) => Line::Command(c),
        Err(usage) => Line::Usage(usage),
    }
}

/// A room argument as typed: `ID`, `name with spaces`, `"quoted name"` or
/// `'quoted name'`. `None` if nothing is left.
pub fn room_arg(a: &str) -> Option<String> {
    let a = a.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| a.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)))
        .unwrap_or(a)
        .trim();
    (!unquoted.is_empty()).then(|| unquoted.to_owned())
}

const EDIT_USAGE: &str = "/edit [SEQ] TEXT (default: your last message in the current room)";

/// A message's seq as typed: `12` or `#12` (as edits and deletions show it).
fn parse_seq(w: &str) -> Option<u64> {
    w.strip_prefix('#')
        .unwrap_or(w)
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

const MUTE_USAGE: &str = "/mute USER DURATION (seconds, or e.g. 90s, 10m, 2h, 1d; at most 30d)";

/// `90`, `90s`, `10m`, `2h`, `1d` as seconds, from 1 to [`MAX_MUTE_SECS`].
pub fn parse_duration(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let secs = n.checked_mul(mult)?;
    (1..=MAX_MUTE_SECS).contains(&secs).then_some(secs)
}

fn parse_admin(words: &[&str]) -> Result<Admin, &'static str> {
    let number = |w: &str| w.parse::<u64>().ok().filter(|n| *n > 0);
    let sub = words.first().map(|w| w.to_ascii_lowercase());
    match (sub.as_deref(), &words[words.len().min(1)..]) {
        (Some("invite-code"), rest) if rest.len() <= 2 => {
            let uses = match rest.first() {
                Some(w) => Some(number(w).ok_or(ADMIN_USAGE)?),
                None => None,
            };
            let expires_in = match rest.get(1) {
                Some(w) => Some(number(w).ok_or(ADMIN_USAGE)?),
                None => None,
            };
            Ok(Admin::InviteCode { uses, expires_in })
        }
        (Some("create"), [user]) => Ok(Admin::Create((*user).to_owned())),
        (Some("disable"), [user]) => Ok(Admin::Disable((*user).to_owned())),
        (Some("enable"), [user]) => Ok(Admin::Enable((*user).to_owned())),
        (Some("delete-room"), [id]) => Ok(Admin::DeleteRoom((*id).to_owned())),
        _ => Err(ADMIN_USAGE),
    }
}

/// The contract's username rule: 3-32 characters of `[A-Za-z0-9_-]`.
pub fn check_username(name: &str) -> Result<(), String> {
    let ok_len = (3..=32).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid username: 3-32 letters, digits, '_' or '-'"
        ))
    }
}

/// The help shown by `/help`.
pub fn help_text() -> &'static str {
    "commands:
/register NAME [CODE]  create an account (CODE: an invite code, if the server needs one)
/login NAME      log in              /logout        log out
/password        change your password (your other sessions end)
/create NAME     create a room, join it, make it current
/join ID|NAME    join a room and make it current (names may have spaces, or \"quote them\")
/leave [ID|NAME] leave a room (default: current)
/switch ID|NAME  make a room you are in current
/rooms           all rooms, * = yours
/users           everyone, with presence and last seen
/who [ID|NAME]   a room's members
/history [N]     last N entries of the current room (default 20)
/invites         your pending invitations; /join ID accepts one
/me TEXT         an action: * you TEXT
/msg USER TEXT   a direct message (opens the DM with USER)
/dm USER         open the DM with USER and make it current (/switch USER also finds it)
/dms             your DMs, with unread counts (/rooms lists them apart too)
/edit [SEQ] TEXT edit your last message (or message SEQ)
/delete [SEQ]    delete your last message (or message SEQ; moderators: anyone's)
/block USER      refuse USER's DMs   /unblock USER   /blocks  who you blocked
rooms you run (they act on the current room):
/invite USER     invite someone (the only way into a private room)
/kick USER [REASON]   /ban USER [REASON]   /unban USER   /bans (the ban list)
/mute USER DURATION   seconds, or 90s, 10m, 2h, 1d      /unmute USER
/op USER         make a moderator    /deop USER     make a plain member again
/owner USER      hand the room to USER (you become a moderator)
/topic [TEXT]    show or set the topic  /clear-topic  remove it  /rename NAME  rename the room
/visibility public|private      /delete-room [ID|NAME]   delete a room you own, at once
server administrators:
/admin invite-code [USES] [SECONDS]  a new invite code (default 1 use, 7 days)
/admin create USER    make an account  /admin disable USER | enable USER
/admin delete-room ID delete any room
/help            this list           /quit          exit (also Ctrl-D)
//text           send a message starting with '/'
anything else is a message to the current room; unknown /commands go to the server"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        use Command as C;
        let cases: Vec<(&str, Line)> = vec![
            ("", Line::Empty),
            ("   ", Line::Empty),
            ("hello world", Line::Message("hello world".into())),
            ("  indented ", Line::Message("  indented ".into())),
            ("//not a command", Line::Message("//not a command".into())),
            (
                "/register bob",
                Line::Command(C::Register("bob".into(), None)),
            ),
            (
                "/register bob c0de",
                Line::Command(C::Register("bob".into(), Some("c0de".into()))),
            ),
            ("/register", Line::Usage("/register NAME [INVITE_CODE]")),
            (
                "/register a b c",
                Line::Usage("/register NAME [INVITE_CODE]"),
            ),
            ("/login a b", Line::Usage("/login NAME")),
            ("/LOGIN Bob", Line::Command(C::Login("Bob".into()))),
            ("/logout", Line::Command(C::Logout)),
            (
                "/create The Lobby",
                Line::Command(C::Create("The Lobby".into())),
            ),
            ("/create", Line::Usage("/create NAME")),
            ("/join abc", Line::Command(C::Join("abc".into()))),
            ("/leave", Line::Command(C::Leave(None))),
            ("/leave r1", Line::Command(C::Leave(Some("r1".into())))),
            ("/switch r2", Line::Command(C::Switch("r2".into()))),
            (
                "/join team room",
                Line::Command(C::Join("team room".into())),
            ),
            (
                "/join \"team room\"",
                Line::Command(C::Join("team room".into())),
            ),
            (
                "/switch 'team room' ",
                Line::Command(C::Switch("team room".into())),
            ),
            (
                "/leave \"a b\"",
                Line::Command(C::Leave(Some("a b".into()))),
            ),
            ("/who x y", Line::Command(C::Who(Some("x y".into())))),
            ("/join \"\"", Line::Usage("/join ID|NAME")),
            ("/rooms", Line::Command(C::Rooms)),
            ("/users", Line::Command(C::Users)),
            ("/who", Line::Command(C::Who(None))),
            ("/who r3", Line::Command(C::Who(Some("r3".into())))),
            ("/history", Line::Command(C::History(DEFAULT_HISTORY))),
            ("/history 5", Line::Command(C::History(5))),
            ("/history 9999", Line::Command(C::History(MAX_HISTORY))),
            ("/history 0", Line::Usage("/history [N], N from 1 to 500")),
            ("/history x", Line::Usage("/history [N], N from 1 to 500")),
            ("/help", Line::Command(C::Help)),
            ("/quit", Line::Command(C::Quit)),
            ("/me", Line::Command(C::Server("/me".into()))),
            ("/shrug  hi ", Line::Command(C::Server("/shrug  hi".into()))),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "{input:?}");
        }
    }

    #[test]
    fn room_commands() {
        use Command as C;
        let m = |s: &str| Line::Command(C::Moderate(s.into()));
        let cases: Vec<(&str, Line)> = vec![
            ("/invite carol", m("/invite carol")),
            ("/invite", Line::Usage("/invite USER")),
            ("/invite a b", Line::Usage("/invite USER")),
            ("/KICK carol", m("/kick carol")),
            (
                "/kick carol  spam and more",
                m("/kick carol  spam and more"),
            ),
            ("/kick", Line::Usage("/kick USER [REASON]")),
            ("/ban carol spam", m("/ban carol spam")),
            ("/ban", Line::Usage("/ban USER [REASON]")),
            ("/unban carol", m("/unban carol")),
            ("/unban", Line::Usage("/unban USER")),
            ("/mute carol 30", m("/mute carol 30")),
            ("/mute carol 10m", m("/mute carol 600")),
            ("/mute carol 2H", m("/mute carol 7200")),
            ("/mute carol 30d", m("/mute carol 2592000")),
            ("/mute carol 31d", Line::Usage(MUTE_USAGE)),
            ("/mute carol 0", Line::Usage(MUTE_USAGE)),
            ("/mute carol soon", Line::Usage(MUTE_USAGE)),
            ("/mute carol", Line::Usage(MUTE_USAGE)),
            ("/unmute carol", m("/unmute carol")),
            ("/op carol", m("/op carol")),
            ("/deop carol", m("/deop carol")),
            ("/deop", Line::Usage("/deop USER")),
            ("/topic plans for the week", m("/topic plans for the week")),
            ("/topic", Line::Command(C::ShowTopic)),
            ("/visibility private", m("/visibility private")),
            // The server judges the value: invalid_visibility.
            ("/visibility secret", m("/visibility secret")),
            ("/visibility", Line::Usage("/visibility public|private")),
            ("/clear-topic", Line::Command(C::ClearTopic)),
            ("/bans", Line::Command(C::Bans)),
            (
                "/rename The Den",
                Line::Command(C::Rename("The Den".into())),
            ),
            ("/rename", Line::Usage("/rename NAME")),
            ("/delete-room", Line::Command(C::DeleteRoom(None))),
            (
                "/deleteroom r1",
                Line::Command(C::DeleteRoom(Some("r1".into()))),
            ),
            (
                "/delete-room \"a b\"",
                Line::Command(C::DeleteRoom(Some("a b".into()))),
            ),
            ("/owner carol", Line::Command(C::Owner("carol".into()))),
            ("/owner", Line::Usage("/owner USER")),
            ("/password", Line::Command(C::Password)),
            (
                "/password x",
                Line::Usage("/password (the passwords are asked for)"),
            ),
            ("/invites", Line::Command(C::Invites)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "{input:?}");
        }
    }

    #[test]
    fn conversation_commands() {
        use Command as C;
        let cases: Vec<(&str, Line)> = vec![
            (
                "/msg bob hi  there ",
                Line::Command(C::Msg("bob".into(), "hi  there".into())),
            ),
            (
                "/m bob /not a command",
                Line::Command(C::Msg("bob".into(), "/not a command".into())),
            ),
            ("/msg bob", Line::Usage("/msg USER TEXT")),
            ("/msg bob   ", Line::Usage("/msg USER TEXT")),
            ("/msg", Line::Usage("/msg USER TEXT")),
            ("/dm bob", Line::Command(C::Dm("bob".into()))),
            ("/query bob", Line::Command(C::Dm("bob".into()))),
            ("/dm", Line::Usage("/dm USER")),
            ("/dm a b", Line::Usage("/dm USER")),
            ("/dms", Line::Command(C::Dms)),
            ("/me waves", Line::Command(C::Server("/me waves".into()))),
            (
                "/edit fixed  text",
                Line::Command(C::Edit(None, "fixed  text".into())),
            ),
            (
                "/edit 12 new text",
                Line::Command(C::Edit(Some(12), "new text".into())),
            ),
            (
                "/edit #12 new",
                Line::Command(C::Edit(Some(12), "new".into())),
            ),
            // A number alone is the new text of the last message.
            ("/edit 42", Line::Command(C::Edit(None, "42".into()))),
            ("/edit 0 x", Line::Command(C::Edit(None, "0 x".into()))),
            ("/edit", Line::Usage(EDIT_USAGE)),
            ("/delete", Line::Command(C::Delete(None))),
            ("/delete 7", Line::Command(C::Delete(Some(7)))),
            ("/delete #7", Line::Command(C::Delete(Some(7)))),
            ("/delete x", Line::Usage("/delete [SEQ]")),
            ("/delete 7 8", Line::Usage("/delete [SEQ]")),
            ("/block carol", Line::Command(C::Block("carol".into()))),
            ("/block", Line::Usage("/block USER")),
            ("/unblock carol", Line::Command(C::Unblock("carol".into()))),
            ("/unblock", Line::Usage("/unblock USER")),
            ("/blocks", Line::Command(C::Blocks)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "{input:?}");
        }
    }

    #[test]
    fn admin_commands() {
        use Admin as A;
        let a = |x: A| Line::Command(Command::Admin(x));
        let cases: Vec<(&str, Line)> = vec![
            (
                "/admin invite-code",
                a(A::InviteCode {
                    uses: None,
                    expires_in: None,
                }),
            ),
            (
                "/admin invite-code 5",
                a(A::InviteCode {
                    uses: Some(5),
                    expires_in: None,
                }),
            ),
            (
                "/admin invite-code 5 3600",
                a(A::InviteCode {
                    uses: Some(5),
                    expires_in: Some(3600),
                }),
            ),
            ("/admin invite-code 0", Line::Usage(ADMIN_USAGE)),
            ("/admin invite-code x", Line::Usage(ADMIN_USAGE)),
            ("/admin invite-code 1 2 3", Line::Usage(ADMIN_USAGE)),
            ("/admin create dave", a(A::Create("dave".into()))),
            ("/admin disable dave", a(A::Disable("dave".into()))),
            ("/admin enable dave", a(A::Enable("dave".into()))),
            ("/admin delete-room r9", a(A::DeleteRoom("r9".into()))),
            ("/admin create", Line::Usage(ADMIN_USAGE)),
            ("/admin", Line::Usage(ADMIN_USAGE)),
            ("/admin frob", Line::Usage(ADMIN_USAGE)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "{input:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1"), Some(1));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("1d"), Some(86_400));
        assert_eq!(parse_duration("2592001"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5w"), None);
        assert_eq!(parse_duration("99999999999999999999"), None);
    }

    #[test]
    fn help_names_every_command() {
        let help = help_text();
        for name in NAMES {
            assert!(help.contains(name), "/help lacks {name}");
        }
    }

    #[test]
    fn the_readme_and_help_name_every_command() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
        let start = readme
            .find("## The terminal client")
            .expect("README has the client's section");
        let section = &readme[start..];
        for name in NAMES {
            // In a table cell: `/name` or `/name ARGS`.
            let listed =
                section.contains(&format!("`{name}`")) || section.contains(&format!("`{name} "));
            assert!(listed, "README's command tables lack {name}");
            assert!(
                crate::args::HELP.contains(&format!("{name} "))
                    || crate::args::HELP.contains(&format!("{name}\n")),
                "--help lacks {name}"
            );
        }
    }

    #[test]
    fn usernames() {
        for ok in ["abc", "A_b-9", &"x".repeat(32)] {
            assert!(check_username(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "with space", "ümlaut", &"x".repeat(33), "a/b"] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }
}
