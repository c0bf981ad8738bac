//! Turning events into lines of text: timestamps, colours, and the markers that keep
//! messages, joins and leaves, presence, notices and errors apart with or without colour.
//!
//! | what            | plain form                           |
//! | --------------- | ------------------------------------ |
//! | message         | `HH:MM [room] name: text`            |
//! | join / leave    | `HH:MM [room] --> name joined`, `<--` |
//! | presence        | `* name is online` / `went offline`  |
//! | notice          | `-- text`                            |
//! | error           | `! text`                             |

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::protocol::{Entry, EntryKind};

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[1;31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const MAGENTA: &str = "\x1b[35m";
const CYAN: &str = "\x1b[36m";
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
        let time = self.paint(DIM, &self.clock(e.ts));
        let room = self.paint(CYAN, &format!("[{room_label}]"));
        let from = clean(&e.from);
        match e.kind {
            EntryKind::Message => {
                let text = clean(e.text.as_deref().unwrap_or_default());
                let plain_prefix_len =
                    5 + 1 + room_label.chars().count() + 2 + 1 + from.chars().count() + 2;
                let indent = " ".repeat(plain_prefix_len);
                let body = text.replace('\n', &format!("\n{indent}"));
                format!("{time} {room} {}: {body}", self.name(&from))
            }
            EntryKind::Join => {
                let line = format!("--> {from} joined");
                format!("{time} {room} {}", self.paint(GREEN, &line))
            }
            EntryKind::Leave => {
                let line = format!("<-- {from} left");
                format!("{time} {room} {}", self.paint(YELLOW, &line))
            }
            EntryKind::Other => {
                let text = clean(e.text.as_deref().unwrap_or_default());
                let line = format!("-- {from} {text}");
                format!("{time} {room} {}", self.paint(DIM, line.trim_end()))
            }
        }
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

/// `1.5s`, `300ms`, `2m 5s`: durations a person reads.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 && !ms.is_multiple_of(1000) {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 60_000 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000)
    }
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
    }
}
