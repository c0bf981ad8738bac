//! Turning events into lines of text: timestamps, colours, and the markers that keep
//! messages, joins and leaves, presence, notices and errors apart with or without colour.
//!
//! | what            | plain form                           |
//! | --------------- | ------------------------------------ |
//! | message         | `HH:MM [room] name: text`            |
//! | edited, deleted | `... name: text (edited)`, `name: (deleted)` |
//! | action (`/me`)  | `HH:MM [room] * name waves`          |
//! | edit, delete    | `HH:MM [room] * name edited #12: new text`, `* message #12 was deleted by bo` |
//! | typing          | `* name is typing in room…`, `* name is typing to you…` (DM) |
//! | join / leave    | `HH:MM [room] --> name joined`, `<--` |
//! | moderation      | `HH:MM [room] * bo was kicked by al` |
//! | presence        | `* name is online` / `went offline`  |
//! | invitation      | `* al invited you to den (r2); ...`  |
//! | notice          | `-- text`                            |
//! | error           | `! text`                             |

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::protocol::{Entry, EntryKind, RoomChanges};

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[1;31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const MAGENTA: &str = "\x1b[35m";
const CYAN: &str = "\x1b[36m";
/// A mention of the reader: bold on yellow.
const MENTION: &str = "\x1b[1;30;43m";
/// Colours for sender names; red is kept for errors.
const NAME_COLOURS: [&str; 6] = [
    "\x1b[1;32m",
    "\x1b[1;33m",
    "\x1b[1;34m",
    "\x1b[1;35m",
    "\x1b[1;36m",
    "\x1b[1;94m",
];

/// How lines look: with or without colour, and in which time zone.
#[derive(Debug, Clone)]
pub struct Style {
    pub colour: bool,
    /// Seconds east of UTC.
    pub utc_offset_secs: i64,
}

impl Style {
    pub fn plain() -> Style {
        Style {
            colour: false,
            utc_offset_secs: 0,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    fn name(&self, name: &str) -> String {
        let h = name
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let code = NAME_COLOURS[(h as usize) % NAME_COLOURS.len()];
        self.paint(code, name)
    }

    /// `HH:MM` in the configured zone.
    pub fn clock(&self, ts_ms: i64) -> String {
        let secs = ts_ms.div_euclid(1000) + self.utc_offset_secs;
        let day_secs = secs.rem_euclid(86_400);
        format!("{:02}:{:02}", day_secs / 3600, (day_secs % 3600) / 60)
    }

    /// `HH:MM:SS` in the configured zone.
    pub fn clock_secs(&self, ts_ms: i64) -> String {
        let secs = (ts_ms.div_euclid(1000) + self.utc_offset_secs).rem_euclid(86_400);
        format!(
            "{:02}:{:02}:{:02}",
            secs / 3600,
            (secs % 3600) / 60,
            secs % 60
        )
    }

    /// `HH:MM` if `ts_ms` is today, else `YYYY-MM-DD HH:MM`.
    pub fn when(&self, ts_ms: i64, now_ms: i64) -> String {
        let day = |ms: i64| (ms.div_euclid(1000) + self.utc_offset_secs).div_euclid(86_400);
        if day(ts_ms) == day(now_ms) {
            self.clock(ts_ms)
        } else {
            let (y, m, d) = civil_from_days(day(ts_ms));
            format!("{y:04}-{m:02}-{d:02} {}", self.clock(ts_ms))
        }
    }

    /// One timeline entry. Multi-line messages continue under the text, indented.
    pub fn entry(&self, room_label: &str, e: &Entry) -> String {
        self.entry_for(room_label, e, "")
    }

    /// One timeline entry as `me` sees it: where it mentions `me`, the mention is
    /// highlighted (with colour; the text is the same without).
    pub fn entry_for(&self, room_label: &str, e: &Entry, me: &str) -> String {
        let time = self.paint(DIM, &self.clock(ms(e.ts)));
        let room = self.paint(CYAN, &format!("[{room_label}]"));
        let from = clean(&e.from);
        match e.kind {
            EntryKind::Message if e.is_deleted() => {
                let line = format!("{from}: (deleted)");
                format!("{time} {room} {}", self.paint(DIM, &line))
            }
            EntryKind::Message => {
                let text = clean(e.text.as_deref().unwrap_or_default());
                let (head, sep) = if e.is_action() {
                    (format!("* {from}"), " ")
                } else {
                    (from.clone(), ": ")
                };
                let plain_prefix_len =
                    5 + 1 + room_label.chars().count() + 2 + 1 + head.chars().count() + sep.len();
                let indent = " ".repeat(plain_prefix_len);
                let mut body = if e.mentions_user(me) {
                    self.highlight_mentions(&text, me)
                } else {
                    text
                };
                body = body.replace('\n', &format!("\n{indent}"));
                if e.is_edited() {
                    body.push_str(&self.paint(DIM, " (edited)"));
                }
                let who = if e.is_action() {
                    format!("* {}", self.name(&from))
                } else {
                    self.name(&from)
                };
                format!("{time} {room} {who}{sep}{body}")
            }
            EntryKind::Edit | EntryKind::Delete => {
                let (head, text) = self.revision(e);
                let mut line = format!("{time} {room} {}", self.paint(MAGENTA, &head));
                if let Some(text) = text {
                    line.push_str(": ");
                    if e.mentions_user(me) {
                        line.push_str(&self.highlight_mentions(&text, me));
                    } else {
                        line.push_str(&text);
                    }
                }
                line
            }
            EntryKind::Join => {
                let line = format!("--> {from} joined");
                format!("{time} {room} {}", self.paint(GREEN, &line))
            }
            EntryKind::Leave => {
                let line = format!("<-- {from} left");
                format!("{time} {room} {}", self.paint(YELLOW, &line))
            }
            EntryKind::Kick
            | EntryKind::Ban
            | EntryKind::Unban
            | EntryKind::Mute
            | EntryKind::Unmute
            | EntryKind::Role
            | EntryKind::Update => {
                let line = format!("* {}", self.moderation(e));
                format!("{time} {room} {}", self.paint(MAGENTA, &line))
            }
            // Reactions are not shown as such yet: like any kind this client does not know.
            EntryKind::Reaction | EntryKind::Other => {
                let text = clean(e.text.as_deref().unwrap_or_default());
                let line = format!("-- {from} {text}");
                format!("{time} {room} {}", self.paint(DIM, line.trim_end()))
            }
        }
    }

    /// An `edit` or `delete` entry: `* alice edited #12` and the new text (shown after
    /// `: `), `* message #12 was deleted by bob`.
    fn revision(&self, e: &Entry) -> (String, Option<String>) {
        let from = clean(&e.from);
        let target = e
            .extra
            .refers
            .map(|r| format!("#{r}"))
            .unwrap_or_else(|| "a message".to_owned());
        match (e.kind, e.text.as_deref()) {
            (EntryKind::Delete, _) if e.extra.refers.is_some() => {
                (format!("* message {target} was deleted by {from}"), None)
            }
            (EntryKind::Delete, _) => (format!("* a message was deleted by {from}"), None),
            (_, Some(text)) => (
                format!("* {from} edited {target}"),
                Some(clean(text).replace('\n', " ")),
            ),
            // The edited message was deleted since: its texts are gone.
            (_, None) => (format!("* {from} edited {target}"), None),
        }
    }

    /// `text` with each `@me` painted, when colour is on.
    fn highlight_mentions(&self, text: &str, me: &str) -> String {
        if !self.colour || me.is_empty() {
            return text.to_owned();
        }
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        let mut out = String::with_capacity(text.len() + 16);
        let mut prev: Option<char> = None;
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            let starts = rest.starts_with('@') && !prev.is_some_and(is_name);
            let name_end = 1 + me.len();
            let matches = starts
                && rest.len() >= name_end
                && rest.is_char_boundary(name_end)
                && rest[1..name_end].eq_ignore_ascii_case(me)
                && !rest[name_end..].chars().next().is_some_and(is_name);
            if matches {
                out.push_str(MENTION);
                out.push_str(&rest[..name_end]);
                out.push_str(RESET);
                prev = rest[..name_end].chars().next_back();
                i += name_end;
            } else {
                let c = rest.chars().next().unwrap_or_default();
                out.push(c);
                prev = Some(c);
                i += c.len_utf8().max(1);
            }
        }
        out
    }

    /// `* alice is typing in lobby…`, or in the DM with her, `* alice is typing to you…`.
    pub fn typing(&self, user: &str, room_label: &str) -> String {
        let user = clean(user);
        let dm = room_label
            .strip_prefix('@')
            .is_some_and(|peer| peer.eq_ignore_ascii_case(&user));
        let line = if dm {
            format!("* {user} is typing to you…")
        } else {
            format!("* {user} is typing in {}…", clean(room_label))
        };
        self.paint(DIM, &line)
    }

    /// The words of a moderation, role or update entry, after the `* `:
    /// `carol was kicked by alice (spam)`, `alice set the topic to "x"`.
    fn moderation(&self, e: &Entry) -> String {
        let from = clean(&e.from);
        let target = clean(e.extra.target.as_deref().unwrap_or("someone"));
        let text = e.text.as_deref().map(clean).filter(|t| !t.is_empty());
        let reason = text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default();
        match e.kind {
            EntryKind::Kick => format!("{target} was kicked by {from}{reason}"),
            EntryKind::Ban => format!("{target} was banned by {from}{reason}"),
            EntryKind::Unban => format!("{target} was unbanned by {from}"),
            EntryKind::Mute => {
                let until = match e.extra.until.map(ms) {
                    Some(u) if self.when(u, ms(e.ts)) == self.clock(u) => {
                        format!(" until {}", self.clock_secs(u))
                    }
                    Some(u) => format!(" until {}", self.when_secs(u)),
                    None => String::new(),
                };
                format!("{target} was muted by {from}{until}{reason}")
            }
            EntryKind::Unmute => format!("{target} is no longer muted ({from})"),
            EntryKind::Role => {
                let role = text.unwrap_or_else(|| "member".to_owned());
                let same = from.eq_ignore_ascii_case(&target);
                match role.as_str() {
                    "owner" => format!("{target} is now the owner"),
                    _ if same => format!("{target} is now {}", with_article(&role)),
                    _ => format!("{from} made {target} {}", with_article(&role)),
                }
            }
            EntryKind::Update => {
                let changes = e.extra.changes.clone().unwrap_or_default();
                format!("{from} {}", describe_changes(&changes))
            }
            EntryKind::Message
            | EntryKind::Join
            | EntryKind::Leave
            | EntryKind::Edit
            | EntryKind::Delete
            | EntryKind::Reaction
            | EntryKind::Other => {
                format!("{from} {}", text.unwrap_or_default())
            }
        }
    }

    /// `YYYY-MM-DD HH:MM:SS`.
    fn when_secs(&self, ts_ms: i64) -> String {
        let day = (ts_ms.div_euclid(1000) + self.utc_offset_secs).div_euclid(86_400);
        let (y, m, d) = civil_from_days(day);
        format!("{y:04}-{m:02}-{d:02} {}", self.clock_secs(ts_ms))
    }

    /// `* alice invited you to den (r2); type /join r2 to accept`.
    pub fn invite(&self, by: &str, room_name: &str, room_id: &str) -> String {
        let (by, name, id) = (clean(by), clean(room_name), clean(room_id));
        let line = format!("* {by} invited you to {name} ({id}); type /join {id} to accept");
        self.paint(MAGENTA, &line)
    }

    /// `* den was deleted by alice`.
    pub fn room_deleted(&self, room_label: &str, by: &str) -> String {
        let line = if by.is_empty() {
            format!("* {} was deleted", clean(room_label))
        } else {
            format!("* {} was deleted by {}", clean(room_label), clean(by))
        };
        self.paint(MAGENTA, &line)
    }

    pub fn presence(&self, user: &str, online: bool) -> String {
        let user = clean(user);
        let line = if online {
            format!("* {user} is online")
        } else {
            format!("* {user} went offline")
        };
        self.paint(MAGENTA, &line)
    }

    /// Something the client says: confirmations, connection state, listings.
    pub fn notice(&self, text: &str) -> String {
        let body = text.replace('\n', "\n   ");
        self.paint(DIM, &format!("-- {body}"))
    }

    /// Plain output that is the answer to a command (listings). No marker, no colour
    /// beyond emphasis of the heading line.
    pub fn listing(&self, heading: &str, rows: &[String]) -> String {
        let mut out = self.paint(BOLD, &format!("-- {heading}"));
        for r in rows {
            out.push('\n');
            out.push_str("   ");
            out.push_str(r);
        }
        out
    }

    pub fn error(&self, text: &str) -> String {
        let body = text.replace('\n', "\n  ");
        self.paint(RED, &format!("! {body}"))
    }

    /// Emphasis inside a listing row (the mark on rooms you are in, online users).
    pub fn strong(&self, text: &str) -> String {
        self.paint(BOLD, text)
    }

    pub fn faint(&self, text: &str) -> String {
        self.paint(DIM, text)
    }
}

/// Remove control characters other than newline and tab, so nothing a peer sends can
/// move the cursor or recolour the terminal. The server filters too; this client does
/// not rely on it.
pub fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// `a moderator`, `an owner`, `a member`.
fn with_article(role: &str) -> String {
    let vowel = role
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU".contains(c));
    if vowel {
        format!("an {role}")
    } else {
        format!("a {role}")
    }
}

/// `renamed the room to x, set the topic to "y" and made the room private`.
pub fn describe_changes(c: &RoomChanges) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &c.name {
        parts.push(format!("renamed the room to {}", clean(name)));
    }
    if let Some(topic) = &c.topic {
        if topic.is_empty() {
            parts.push("cleared the topic".to_owned());
        } else {
            parts.push(format!("set the topic to \"{}\"", clean(topic)));
        }
    }
    if let Some(v) = &c.visibility {
        parts.push(format!("made the room {}", v.as_str()));
    }
    match parts.len() {
        0 => "updated the room".to_owned(),
        1 => parts.remove(0),
        n => {
            let last = parts.remove(n - 1);
            format!("{} and {last}", parts.join(", "))
        }
    }
}

/// An error code of the contract, with the server's message, as a sentence a person
/// reads: the message (or, when the server sent none, this client's wording for the
/// codes it knows), the code in brackets, and when to try again if the server said.
pub fn error_text(code: &str, message: &str, retry_after_ms: Option<u64>) -> String {
    let message = clean(message);
    let known = match code {
        "forbidden" => "your role in this room does not allow that",
        "room_restricted" => "that room is private: you need an invitation",
        "banned" => "you are banned from that room",
        "muted" => "you are muted in this room",
        "invalid_duration" => "a duration is 1 to 2592000 seconds (30 days)",
        "invalid_visibility" => "visibility is public or private",
        "invalid_role" => "a role is owner, moderator or member",
        "not_a_member" => "not a member of that room",
        "already_member" => "already a member of that room",
        "user_not_found" => "no such user",
        "invite_required" => "this server needs an invite code to register",
        "registration_closed" => "registration is closed on this server",
        "account_disabled" => "this account is disabled",
        "blocked" => "that user has blocked you",
        "dm_room" => "a direct-message room has no moderation",
        "invalid_target" => "you cannot do that to yourself",
        "not_blocked" => "you have not blocked that user",
        "entry_not_found" => "no such message (or it was deleted, or is no longer kept)",
        "empty_message" => "the message is empty",
        "message_too_long" => "the message is too long (at most 4096 bytes)",
        _ => "",
    };
    let text = if !message.is_empty() {
        message
    } else if !known.is_empty() {
        known.to_owned()
    } else {
        clean(code)
    };
    let mut out = format!("{text} ({})", clean(code));
    if let Some(ms) = retry_after_ms {
        if code == "muted" {
            out.push_str(&format!("; you may post again in {}", human_ms(ms)));
        } else {
            out.push_str(&format!("; try again in {}", human_ms(ms)));
        }
    }
    out
}

/// `1.5s`, `300ms`, `2m 5s`: durations a person reads.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 && !ms.is_multiple_of(1000) {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 60_000 {
        format!("{}s", ms / 1000)
    } else if ms < 3_600_000 {
        format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{}h {}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// A wire timestamp (ms since the epoch, `u64`) as the `i64` the clock arithmetic uses.
pub fn ms(ts: u64) -> i64 {
    i64::try_from(ts).unwrap_or(i64::MAX)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The local UTC offset, read once at start-up from `date +%z` (which honours `TZ` and
/// `/etc/localtime`). Asking the C library would need `libc` and `unsafe`; parsing tzdata
/// ourselves would be a time-zone library. A daylight-saving change while the client runs
/// shifts times by an hour until it restarts. `None` (shown as UTC) if `date` is missing.
pub fn local_utc_offset() -> Option<i64> {
    let out = Command::new("date").arg("+%z").output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_offset(String::from_utf8_lossy(&out.stdout).trim())
}

/// `+0130` -> 5400, `-0800` -> -28800.
pub fn parse_offset(s: &str) -> Option<i64> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Visibility;

    fn entry(kind: EntryKind, text: Option<&str>) -> Entry {
        Entry {
            room: "r1".into(),
            seq: 1,
            // 2023-11-14 22:13:20 UTC
            ts: 1_700_000_000_000,
            kind,
            from: "alice".into(),
            text: text.map(str::to_owned),
            nonce: None,
            ..Entry::default()
        }
    }

    #[test]
    fn plain_lines() {
        let s = Style::plain();
        let cases = [
            (
                entry(EntryKind::Message, Some("hi there")),
                "22:13 [lobby] alice: hi there",
            ),
            (
                entry(EntryKind::Join, None),
                "22:13 [lobby] --> alice joined",
            ),
            (
                entry(EntryKind::Leave, None),
                "22:13 [lobby] <-- alice left",
            ),
            (
                entry(EntryKind::Message, Some("a\nb")),
                "22:13 [lobby] alice: a\n                     b",
            ),
            (
                entry(EntryKind::Message, Some("esc\x1b[31m red\x07")),
                "22:13 [lobby] alice: esc[31m red",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(s.entry("lobby", &e), want);
        }
        assert_eq!(s.presence("bob", true), "* bob is online");
        assert_eq!(s.presence("bob", false), "* bob went offline");
        assert_eq!(s.error("room is full"), "! room is full");
        assert_eq!(s.notice("joined"), "-- joined");
    }

    fn acted(kind: EntryKind, target: &str, text: Option<&str>) -> Entry {
        let mut e = entry(kind, text);
        e.extra.target = Some(target.into());
        e
    }

    #[test]
    fn moderation_lines() {
        let s = Style::plain();
        let mute = {
            let mut e = acted(EntryKind::Mute, "carol", None);
            // 22:13:20 plus 10 min 5 s
            e.extra.until = Some(1_700_000_605_000);
            e
        };
        let long_mute = {
            let mut e = acted(EntryKind::Mute, "carol", None);
            e.extra.until = Some(1_700_000_000_000 + 2 * 86_400_000);
            e
        };
        let update = |c: RoomChanges| {
            let mut e = entry(EntryKind::Update, None);
            e.extra.changes = Some(c);
            e
        };
        let cases = [
            (
                acted(EntryKind::Kick, "carol", Some("spam")),
                "* carol was kicked by alice (spam)",
            ),
            (
                acted(EntryKind::Kick, "carol", None),
                "* carol was kicked by alice",
            ),
            (
                acted(EntryKind::Ban, "carol", None),
                "* carol was banned by alice",
            ),
            (
                acted(EntryKind::Ban, "carol", Some("flood")),
                "* carol was banned by alice (flood)",
            ),
            (
                acted(EntryKind::Unban, "carol", None),
                "* carol was unbanned by alice",
            ),
            (mute, "* carol was muted by alice until 22:23:25"),
            (
                long_mute,
                "* carol was muted by alice until 2023-11-16 22:13:20",
            ),
            (
                acted(EntryKind::Unmute, "carol", None),
                "* carol is no longer muted (alice)",
            ),
            (
                acted(EntryKind::Role, "carol", Some("moderator")),
                "* alice made carol a moderator",
            ),
            (
                acted(EntryKind::Role, "carol", Some("member")),
                "* alice made carol a member",
            ),
            (
                acted(EntryKind::Role, "carol", Some("owner")),
                "* carol is now the owner",
            ),
            // The old owner after a transfer.
            (
                acted(EntryKind::Role, "alice", Some("moderator")),
                "* alice is now a moderator",
            ),
            (
                update(RoomChanges {
                    topic: Some("plans \"now\"".into()),
                    ..RoomChanges::default()
                }),
                "* alice set the topic to \"plans \"now\"\"",
            ),
            (
                update(RoomChanges {
                    topic: Some(String::new()),
                    ..RoomChanges::default()
                }),
                "* alice cleared the topic",
            ),
            (
                update(RoomChanges {
                    name: Some("den".into()),
                    ..RoomChanges::default()
                }),
                "* alice renamed the room to den",
            ),
            (
                update(RoomChanges {
                    visibility: Some(Visibility::Private),
                    ..RoomChanges::default()
                }),
                "* alice made the room private",
            ),
            (
                update(RoomChanges {
                    name: Some("den".into()),
                    topic: Some("t".into()),
                    visibility: Some(Visibility::Public),
                }),
                "* alice renamed the room to den, set the topic to \"t\" and made the room public",
            ),
            (update(RoomChanges::default()), "* alice updated the room"),
            (
                {
                    let mut e = entry(EntryKind::Update, None);
                    e.extra.changes = None;
                    e
                },
                "* alice updated the room",
            ),
            // A kind this client does not know is shown plainly.
            (entry(EntryKind::Other, Some("x")), "-- alice x"),
            // Control characters in names and reasons are removed.
            (
                acted(EntryKind::Kick, "car\x1bol", Some("sp\x07am")),
                "* carol was kicked by alice (spam)",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(s.entry("lobby", &e), format!("22:13 [lobby] {want}"));
        }
    }

    #[test]
    fn conversation_lines() {
        let s = Style::plain();
        let msg = |f: fn(&mut Entry)| {
            let mut e = entry(EntryKind::Message, Some("waves"));
            f(&mut e);
            e
        };
        let rev = |kind: EntryKind, text: Option<&str>, from: &str| {
            let mut e = entry(kind, text);
            e.extra.refers = Some(12);
            e.from = from.into();
            e
        };
        let cases = [
            (msg(|e| e.extra.action = Some(true)), "* alice waves"),
            (
                msg(|e| e.text = Some("a\nb".into())),
                "alice: a\n                     b",
            ),
            (
                msg(|e| {
                    e.extra.action = Some(true);
                    e.text = Some("a\nb".into());
                }),
                "* alice a\n                      b",
            ),
            (
                msg(|e| e.extra.edited = Some(true)),
                "alice: waves (edited)",
            ),
            (
                msg(|e| {
                    e.extra.action = Some(true);
                    e.extra.edited = Some(true);
                }),
                "* alice waves (edited)",
            ),
            (
                msg(|e| {
                    e.extra.deleted = Some(true);
                    e.text = None;
                }),
                "alice: (deleted)",
            ),
            // A mention reads the same without colour.
            (
                msg(|e| {
                    e.text = Some("hi @bob".into());
                    e.extra.mentions = Some(vec!["bob".into()]);
                }),
                "alice: hi @bob",
            ),
            (
                rev(EntryKind::Edit, Some("new\ntext"), "alice"),
                "* alice edited #12: new text",
            ),
            (rev(EntryKind::Edit, None, "alice"), "* alice edited #12"),
            (
                rev(EntryKind::Delete, None, "bob"),
                "* message #12 was deleted by bob",
            ),
            (
                {
                    let mut e = rev(EntryKind::Delete, None, "bob");
                    e.extra.refers = None;
                    e
                },
                "* a message was deleted by bob",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(
                s.entry_for("lobby", &e, "bob"),
                format!("22:13 [lobby] {want}")
            );
        }
        assert_eq!(s.typing("bob", "lobby"), "* bob is typing in lobby…");
        assert_eq!(s.typing("Bob", "@bob"), "* Bob is typing to you…");
        assert_eq!(s.typing("bob", "@carol"), "* bob is typing in @carol…");
    }

    #[test]
    fn mentions_of_the_reader_are_highlighted() {
        let s = Style {
            colour: true,
            utc_offset_secs: 0,
        };
        let e = {
            let mut e = entry(
                EntryKind::Message,
                Some("@bob, @bobby and me@bob: ask @BOB"),
            );
            e.extra.mentions = Some(vec!["Bob".into()]);
            e
        };
        let line = s.entry_for("lobby", &e, "bob");
        let marked = format!("{MENTION}@bob{RESET}");
        let shouted = format!("{MENTION}@BOB{RESET}");
        assert!(
            line.contains(&format!("{marked}, @bobby and me@bob: ask {shouted}")),
            "{line:?}"
        );
        let edit = {
            let mut e = e.clone();
            e.kind = EntryKind::Edit;
            e.extra.refers = Some(3);
            e
        };
        let line = s.entry_for("lobby", &edit, "bob");
        assert!(line.contains(&format!(": {marked}, @bobby")), "{line:?}");
        // Someone else reading it sees no highlight.
        assert!(!s.entry_for("lobby", &e, "carol").contains(MENTION));
        assert!(!s.entry("lobby", &e).contains(MENTION));
    }

    #[test]
    fn frame_lines() {
        let s = Style::plain();
        assert_eq!(
            s.invite("alice", "den", "r2"),
            "* alice invited you to den (r2); type /join r2 to accept"
        );
        assert_eq!(s.room_deleted("den", "alice"), "* den was deleted by alice");
        assert_eq!(s.room_deleted("den", ""), "* den was deleted");
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            error_text("muted", "", Some(65_000)),
            "you are muted in this room (muted); you may post again in 1m 5s"
        );
        assert_eq!(
            error_text("muted", "you are muted", Some(2_000)),
            "you are muted (muted); you may post again in 2s"
        );
        assert_eq!(
            error_text("room_restricted", "", None),
            "that room is private: you need an invitation (room_restricted)"
        );
        assert_eq!(
            error_text("rate_limited", "slow down", Some(1500)),
            "slow down (rate_limited); try again in 1.5s"
        );
        for code in [
            "forbidden",
            "banned",
            "invalid_duration",
            "invalid_visibility",
            "invalid_role",
            "not_a_member",
            "already_member",
            "user_not_found",
        ] {
            let t = error_text(code, "", None);
            assert!(t.ends_with(&format!(" ({code})")), "{t}");
            assert!(!t.starts_with(code), "a sentence for {code}: {t}");
        }
        assert_eq!(error_text("new_code", "", None), "new_code (new_code)");
    }

    #[test]
    fn colour_only_when_asked() {
        let mut s = Style::plain();
        assert!(!s
            .entry("x", &entry(EntryKind::Message, Some("m")))
            .contains('\x1b'));
        s.colour = true;
        assert!(s
            .entry("x", &entry(EntryKind::Message, Some("m")))
            .contains('\x1b'));
        assert!(s.error("e").starts_with(RED));
    }

    #[test]
    fn clock_honours_offset() {
        let mut s = Style::plain();
        s.utc_offset_secs = 3600 + 1800;
        assert_eq!(s.clock(1_700_000_000_000), "23:43");
        s.utc_offset_secs = -23 * 3600;
        assert_eq!(s.clock(1_700_000_000_000), "23:13");
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let s = Style::plain();
        let ts = 1_700_000_000_000;
        assert_eq!(s.when(ts, ts + 60_000), "22:13");
        assert_eq!(s.when(ts, ts + 86_400_000), "2023-11-14 22:13");
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+0000"), Some(0));
        assert_eq!(parse_offset("+0130"), Some(5400));
        assert_eq!(parse_offset("-0800"), Some(-28_800));
        assert_eq!(parse_offset("0800"), None);
        assert_eq!(parse_offset("+08"), None);
        assert_eq!(parse_offset("+2500"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(human_ms(250), "250ms");
        assert_eq!(human_ms(1500), "1.5s");
        assert_eq!(human_ms(2000), "2s");
        assert_eq!(human_ms(15_000), "15s");
        assert_eq!(human_ms(125_000), "2m 5s");
        assert_eq!(human_ms(7_260_000), "2h 1m");
    }
}
