//! Checks on user-chosen display text (room names, later topics) that the standard library
//! cannot make alone: it knows control characters, but not Unicode format characters.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The Unicode format characters (general category Cf, Unicode 15.1), as inclusive ranges in
/// code point order. Small enough to list by hand instead of pulling in a Unicode-tables crate.
const FORMAT_RANGES: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),   // soft hyphen
    ('\u{0600}', '\u{0605}'),   // Arabic number signs
    ('\u{061C}', '\u{061C}'),   // Arabic letter mark
    ('\u{06DD}', '\u{06DD}'),   // Arabic end of ayah
    ('\u{070F}', '\u{070F}'),   // Syriac abbreviation mark
    ('\u{0890}', '\u{0891}'),   // Arabic pound and piastre marks above
    ('\u{08E2}', '\u{08E2}'),   // Arabic disputed end of ayah
    ('\u{180E}', '\u{180E}'),   // Mongolian vowel separator
    ('\u{200B}', '\u{200F}'),   // zero-width space, non-joiner, joiner; LRM, RLM
    ('\u{202A}', '\u{202E}'),   // bidirectional embeddings and overrides
    ('\u{2060}', '\u{2064}'),   // word joiner, invisible operators
    ('\u{2066}', '\u{206F}'),   // bidirectional isolates, deprecated format characters
    ('\u{FEFF}', '\u{FEFF}'),   // zero-width no-break space (byte order mark)
    ('\u{FFF9}', '\u{FFFB}'),   // interlinear annotation
    ('\u{110BD}', '\u{110BD}'), // Kaithi number sign
    ('\u{110CD}', '\u{110CD}'), // Kaithi number sign above
    ('\u{13430}', '\u{1343F}'), // Egyptian hieroglyph format controls
    ('\u{1BCA0}', '\u{1BCA3}'), // shorthand format controls
    ('\u{1D173}', '\u{1D17A}'), // musical symbol format controls
    ('\u{E0001}', '\u{E0001}'), // language tag
    ('\u{E0020}', '\u{E007F}'), // tag characters
];

/// Whether `c` is a Unicode format character (category Cf): invisible characters that change
/// how the text around them is shown, such as bidirectional overrides and zero-width joiners.
pub(crate) fn is_format_char(c: char) -> bool {
    // Everything below U+00AD is ASCII or Latin-1, and none of it is Cf.
    if c < '\u{00AD}' {
        return false;
    }
    FORMAT_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Whether `text` holds a control or format character, which display text may not.
pub(crate) fn has_hidden_chars(text: &str) -> bool {
    text.chars().any(|c| c.is_control() || is_format_char(c))
}

/// U+200D ZERO WIDTH JOINER, which joins emoji into one (👩‍💻).
const ZWJ: char = '\u{200D}';
/// U+1F3F4 WAVING BLACK FLAG, the base of the subdivision flags (🏴󠁧󠁢󠁳󠁣󠁴󠁿) written with tags.
const BLACK_FLAG: char = '\u{1F3F4}';
/// U+E007F CANCEL TAG, which ends a tag sequence.
const CANCEL_TAG: char = '\u{E007F}';

/// Message text without its format characters (category Cf), except the two uses emoji
/// need: a ZWJ with a visible character (not whitespace, control or format) on each side,
/// and a subdivision flag's tag sequence (U+1F3F4, then tag characters U+E0020-U+E007E,
/// then U+E007F). Everything else — bidirectional overrides, zero-width spaces, soft
/// hyphens, stray tags — is removed.
pub(crate) fn strip_format(text: &str) -> String {
    if !text.chars().any(is_format_char) {
        return text.to_string();
    }
    let visible = |c: char| !is_format_char(c) && !c.is_whitespace() && !c.is_control();
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == BLACK_FLAG {
            let tags = chars[i + 1..]
                .iter()
                .take_while(|&&t| ('\u{E0020}'..='\u{E007E}').contains(&t))
                .count();
            if tags > 0 && chars.get(i + 1 + tags) == Some(&CANCEL_TAG) {
                out.extend(&chars[i..=i + 1 + tags]);
                i += 2 + tags;
                continue;
            }
        }
        let keep = if c == ZWJ {
            i > 0 && visible(chars[i - 1]) && chars.get(i + 1).is_some_and(|&n| visible(n))
        } else {
            !is_format_char(c)
        };
        if keep {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// The longest topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 256;

/// The most combining marks a room name may stack on one base character, counted after NFC
/// (so a letter with an accent that has a precomposed form counts none).
pub const MAX_STACKED_MARKS: usize = 2;

/// Letters and symbols that show as blank space though they are not whitespace: Hangul
/// fillers and the blank Braille pattern.
const BLANK_CHARS: &[char] = &['\u{115F}', '\u{1160}', '\u{2800}', '\u{3164}', '\u{FFA0}'];

/// Whether `c` shows nothing by itself: whitespace, control, format, combining mark or one
/// of [`BLANK_CHARS`].
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || is_format_char(c)
        || is_combining_mark(c)
        || BLANK_CHARS.contains(&c)
}

/// The most combining marks on one base character in `text`, after NFC.
fn most_stacked_marks(text: &str) -> usize {
    let (mut most, mut run) = (0, 0);
    for c in text.nfc() {
        run = if is_combining_mark(c) { run + 1 } else { 0 };
        most = most.max(run);
    }
    most
}

/// The scripts whose letters pass for one another: a word that mixes them ("pаypal" with a
/// Cyrillic `а`) is made to be mistaken for another.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Cyrillic,
    Greek,
}

fn script(c: char) -> Option<Script> {
    match c as u32 {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x250..=0x2AF | 0x1D00..=0x1D7F => {
            Some(Script::Latin)
        }
        0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF | 0xAB30..=0xAB6F => {
            Some(Script::Latin)
        }
        0x370..=0x3FF | 0x1F00..=0x1FFF => Some(Script::Greek),
        0x400..=0x52F | 0x1C80..=0x1C8F | 0x2DE0..=0x2DFF | 0xA640..=0xA69F => {
            Some(Script::Cyrillic)
        }
        _ => None,
    }
}

/// Whether one word of `text` (after NFKC, so fullwidth letters count as their plain
/// forms) mixes Latin, Cyrillic and Greek letters. Words of one script each are fine:
/// "Общий chat" is two words.
fn mixes_lookalike_scripts(text: &str) -> bool {
    let mut seen: Option<Script> = None;
    for c in text.nfkc() {
        if !c.is_alphanumeric() && !is_combining_mark(c) {
            seen = None;
            continue;
        }
        match (seen, script(c)) {
            (Some(a), Some(b)) if a != b => return true,
            (None, Some(b)) => seen = Some(b),
            _ => {}
        }
    }
    false
}

/// A room name as given: trimmed, 1 to 64 characters, no control or format characters, at
/// least one visible character, no leading `@` (parley-cli shows `@name` for a DM), at
/// most [`MAX_STACKED_MARKS`] combining marks on one character, and no word that mixes
/// Latin, Cyrillic and Greek letters.
pub(crate) fn valid_room_name(name: &str) -> Result<&str, super::ChatError> {
    let name = name.trim();
    let chars = name.chars().count();
    if !(1..=64).contains(&chars)
        || has_hidden_chars(name)
        || name.chars().all(is_invisible)
        || name.starts_with(['@', '\u{FF20}', '\u{FE6B}'])
        || most_stacked_marks(name) > MAX_STACKED_MARKS
        || mixes_lookalike_scripts(name)
    {
        return Err(super::ChatError::InvalidRoomName);
    }
    Ok(name)
}

/// A topic as given: trimmed, at most 256 characters, no control or format characters.
pub(crate) fn valid_topic(topic: &str) -> Result<&str, super::ChatError> {
    let topic = topic.trim();
    if topic.chars().count() > MAX_TOPIC_CHARS || has_hidden_chars(topic) {
        return Err(super::ChatError::InvalidTopic);
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_sorted_and_disjoint() {
        for pair in FORMAT_RANGES.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:?}");
        }
    }

    #[test]
    fn format_chars() {
        #[rustfmt::skip]
        let cases = [
            ('\u{00AC}', false), ('\u{00AD}', true), ('\u{00AE}', false),
            ('\u{05FF}', false), ('\u{0600}', true), ('\u{0605}', true), ('\u{0606}', false),
            ('\u{061C}', true), ('\u{06DD}', true), ('\u{070F}', true), ('\u{08E2}', true),
            ('\u{180E}', true), ('\u{200A}', false), ('\u{200B}', true), ('\u{200F}', true),
            ('\u{2010}', false), ('\u{2029}', false), ('\u{202A}', true), ('\u{202E}', true),
            ('\u{202F}', false), ('\u{2060}', true), ('\u{2064}', true), ('\u{2065}', false),
            ('\u{2066}', true), ('\u{2069}', true), ('\u{206F}', true), ('\u{2070}', false),
            ('\u{FEFF}', true), ('\u{FFF8}', false), ('\u{FFF9}', true), ('\u{FFFB}', true),
            ('\u{FFFC}', false), ('\u{110BD}', true), ('\u{110CD}', true), ('\u{13430}', true),
            ('\u{1343F}', true), ('\u{1BCA0}', true), ('\u{1BCA3}', true), ('\u{1D173}', true),
            ('\u{1D17A}', true), ('\u{1D17B}', false), ('\u{E0000}', false), ('\u{E0001}', true),
            ('\u{E0002}', false), ('\u{E0020}', true), ('\u{E007F}', true), ('\u{E0080}', false),
            ('a', false), ('\u{7}', false), ('é', false), ('ש', false), ('\u{301}', false),
            ('😀', false), ('\u{10FFFF}', false),
        ];
        for (c, want) in cases {
            assert_eq!(is_format_char(c), want, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn strips_format_chars_but_keeps_emoji_sequences() {
        let scotland = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}";
        let cases = [
            ("plain", "plain".to_string()),
            ("a\u{202E}b", "ab".to_string()),
            (
                "da\u{200B}rn\u{AD}\u{FEFF}\u{2060}\u{180E}\u{61C}",
                "darn".to_string(),
            ),
            ("\u{2066}x\u{2069}\u{200E}\u{200F}", "x".to_string()),
            ("👩\u{200D}💻", "👩\u{200D}💻".to_string()),
            ("a\u{200D}", "a".to_string()),
            ("\u{200D}a", "a".to_string()),
            ("a \u{200D} b", "a  b".to_string()),
            ("a\u{200D}\u{200D}b", "ab".to_string()),
            ("a\u{200B}\u{200D}b", "ab".to_string()),
            (scotland, scotland.to_string()),
            ("x\u{E0041}\u{E007F}y", "xy".to_string()),
            ("\u{1F3F4}\u{E0067}\u{E0062}", "\u{1F3F4}".to_string()),
            ("\u{1F3F4}\u{E007F}", "\u{1F3F4}".to_string()),
            ("\u{1F3F4}", "\u{1F3F4}".to_string()),
            ("\u{200B}\u{202E}\u{FEFF}", String::new()),
        ];
        for (text, want) in cases {
            assert_eq!(strip_format(text), want, "{text:?}");
        }
    }

    #[test]
    fn room_names() {
        for (name, ok) in [
            ("lobby", true),
            ("  Café  ", true),
            ("cafe\u{301}", true),
            ("日本語", true),
            ("Tiếng Việt", true),
            ("e\u{302}\u{301}", true),        // ế once composed by NFC
            ("e\u{302}\u{301}\u{323}", true), // ệ́: NFC composes two of the three
            ("x\u{301}\u{302}", true),
            ("x\u{301}\u{302}\u{303}", false),
            ("a\u{301}\u{301}\u{301}\u{301}", false),
            ("alice@home", true),
            ("#general", true),
            ("שָּׁ", false), // shin, dagesh, shin dot, qamats
            ("@alice", false),
            ("  @alice", false),
            ("\u{FF20}alice", false),
            ("\u{200B}\u{200B}", false),
            ("\u{301}", false),
            (" \u{301}\u{302} ", false),
            ("\u{3164}", false),
            ("\u{2800}\u{2800}", false),
            ("\u{3000}", false),
            ("", false),
            ("a\u{202E}b", false),
            ("Gеneral", false),  // Cyrillic е
            ("pаypal", false),   // Cyrillic а
            ("Αlpha", false),    // Greek Α
            ("ｇеneral", false), // fullwidth Latin, Cyrillic е
            ("Общий чат", true),
            ("Ελληνικά", true),
            ("Общий chat", true),
            ("ｇｅｎｅｒａｌ", true),
            ("Straße 42", true),
            ("naïve café", true),
            ("α-beta", true), // two words
        ] {
            assert_eq!(valid_room_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn hidden_chars() {
        for (text, want) in [
            ("lobby", false),
            ("Café ☕", false),
            ("👩\u{200D}💻", true),
            ("bell\u{7}", true),
            ("new\nline", true),
            ("\u{202E}evil", true),
        ] {
            assert_eq!(has_hidden_chars(text), want, "{text:?}");
        }
    }
}
