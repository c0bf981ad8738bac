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
];

/// Default for `/history` without N.
pub const DEFAULT_HISTORY: usize = 20;
/// The server answers at most 500 entries per history call.
pub const MAX_HISTORY: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Register(String),
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
    /// Not ours: sent to the server as-is (`/me`, or anything it may add).
    Server(String),
}

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
    let cmd = match name.to_ascii_lowercase().as_str() {
        "/register" => one_word("/register NAME").map(Command::Register),
        "/login" => one_word("/login NAME").map(Command::Login),
        "/logout" => Ok(Command::Logout),
        "/create" => arg.clone().map(Command::Create).ok_or("/create NAME"),
        "/join" => one_word("/join ID").map(Command::Join),
        "/leave" | "/part" => match &arg {
            None => Ok(Command::Leave(None)),
            Some(_) => one_word("/leave [ID]").map(|a| Command::Leave(Some(a))),
        },
        "/switch" => one_word("/switch ID").map(Command::Switch),
        "/rooms" => Ok(Command::Rooms),
        "/users" => Ok(Command::Users),
        "/who" => match &arg {
            None => Ok(Command::Who(None)),
            Some(_) => one_word("/who [ID]").map(|a| Command::Who(Some(a))),
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
        _ => Ok(Command::Server(trimmed.to_owned())),
    };
    match cmd {
        Ok(c) => Line::Command(c),
        Err(usage) => Line::Usage(usage),
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
/register NAME   create an account and log in
/login NAME      log in              /logout        log out
/create NAME     create a room, join it, make it current
/join ID         join a room (ID or its name) and make it current
/leave [ID]      leave a room (default: current)
/switch ID       make a room you are in current
/rooms           all rooms, * = yours
/users           everyone, with presence and last seen
/who [ID]        a room's members
/history [N]     last N entries of the current room (default 20)
/quit            exit (also Ctrl-D)
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
            ("/register bob", Line::Command(C::Register("bob".into()))),
            ("/register", Line::Usage("/register NAME")),
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
    fn usernames() {
        for ok in ["abc", "A_b-9", &"x".repeat(32)] {
            assert!(check_username(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "with space", "ümlaut", &"x".repeat(33), "a/b"] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }
}
