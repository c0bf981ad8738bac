//! Message filtering: control characters are removed and blocked words masked.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use super::text::is_format_char;

/// Cyrillic and Greek letters that look like Latin ones, lowercase, with the Latin letter
/// each is compared as. Not Unicode's full confusables list: the letters a word filter is
/// most easily dodged with.
const LOOKALIKES: &[(char, char)] = &[
    ('а', 'a'), // Cyrillic
    ('в', 'b'),
    ('е', 'e'),
    ('ё', 'e'),
    ('һ', 'h'),
    ('і', 'i'),
    ('ї', 'i'),
    ('ј', 'j'),
    ('к', 'k'),
    ('м', 'm'),
    ('н', 'h'),
    ('о', 'o'),
    ('р', 'p'),
    ('с', 'c'),
    ('т', 't'),
    ('у', 'y'),
    ('х', 'x'),
    ('ѕ', 's'),
    ('ԁ', 'd'),
    ('ԛ', 'q'),
    ('ԝ', 'w'),
    ('ɡ', 'g'), // Latin script g
    ('ı', 'i'), // dotless i
    ('α', 'a'), // Greek
    ('β', 'b'),
    ('ε', 'e'),
    ('η', 'n'),
    ('ι', 'i'),
    ('κ', 'k'),
    ('ν', 'v'),
    ('ο', 'o'),
    ('ρ', 'p'),
    ('τ', 't'),
    ('υ', 'u'),
    ('χ', 'x'),
];

/// The form blocked words are compared in: NFKC, format characters (category Cf) removed,
/// lowercased, and the Cyrillic and Greek lookalikes of [`LOOKALIKES`] folded to Latin.
/// Plain ASCII is only lowercased.
pub(crate) fn normalise(word: &str) -> String {
    let plain: String = word.nfkc().filter(|&c| !is_format_char(c)).collect();
    plain
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii() {
                return c;
            }
            LOOKALIKES
                .iter()
                .find(|&&(from, _)| from == c)
                .map_or(c, |&(_, to)| to)
        })
        .collect()
}

/// Words to mask, normalised. Matching is on whole words, in the form [`normalise`] gives.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    blocked: Vec<String>,
}

impl Filter {
    /// Reads one word per line; blank lines and lines starting with `#` are skipped.
    pub(crate) fn from_file(path: &std::path::Path) -> std::io::Result<Filter> {
        Ok(Filter::from_words(&std::fs::read_to_string(path)?))
    }

    pub(crate) fn from_words(list: &str) -> Filter {
        let blocked = list
            .lines()
            .map(str::trim)
            .filter(|w| !w.is_empty() && !w.starts_with('#'))
            .map(normalise)
            .collect();
        Filter { blocked }
    }

    /// Removes control characters other than newline and tab.
    pub(crate) fn strip_controls(text: &str) -> String {
        text.chars()
            .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
            .collect()
    }

    /// Replaces every blocked word (a maximal run of alphanumerics, `_`, `'`, `-`, combining
    /// marks and format characters, compared in its [`normalise`]d form) by as many
    /// asterisks as that form has characters.
    pub(crate) fn mask(&self, text: &str) -> String {
        if self.blocked.is_empty() {
            return text.to_string();
        }
        let is_word = |c: char| {
            c.is_alphanumeric()
                || c == '_'
                || c == '\''
                || c == '-'
                || is_combining_mark(c)
                || is_format_char(c)
        };
        let mut out = String::with_capacity(text.len());
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            if !word.is_empty() {
                let norm = normalise(word);
                if self.blocked.contains(&norm) {
                    out.extend(std::iter::repeat_n('*', norm.chars().count()));
                } else {
                    out.push_str(word);
                }
                word.clear();
            }
        };
        for c in text.chars() {
            if is_word(c) {
                word.push(c);
            } else {
                flush(&mut word, &mut out);
                out.push(c);
            }
        }
        flush(&mut word, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_whole_words_case_insensitively() {
        let f = Filter::from_words("darn\n\n# comment\nHeck\n");
        let cases = [
            ("darn it", "**** it"),
            ("DARN, heck!", "****, ****!"),
            ("darned", "darned"),
            ("oh heck\nno", "oh ****\nno"),
            ("clean", "clean"),
        ];
        for (input, want) in cases {
            assert_eq!(f.mask(input), want, "{input}");
        }
    }

    #[test]
    fn normalises_for_comparison() {
        for (word, want) in [
            ("darn", "darn"),
            ("DaRn", "darn"),
            ("da\u{200B}rn", "darn"),
            ("d\u{AD}a\u{202E}r\u{FEFF}n\u{E0041}", "darn"),
            ("d\u{2060}\u{180E}\u{61C}arn", "darn"),
            ("dаrn", "darn"),        // Cyrillic a
            ("DАRN", "darn"),        // Cyrillic capital A
            ("ԁаrn", "darn"),        // Cyrillic komi de, a
            ("һеск", "heck"),        // Cyrillic shha, ie, es, ka
            ("ѕраm", "spam"),        // Cyrillic dze, er, a
            ("ροτατο", "potato"),    // Greek rho, omicron, tau, alpha
            ("ｄａｒｎ", "darn"),    // fullwidth, by NFKC
            ("ﬁne", "fine"),         // ligature, by NFKC
            ("cafe\u{301}", "café"), // composed by NFKC
            ("naïve", "naïve"),
            ("日本語", "日本語"),
        ] {
            assert_eq!(normalise(word), want, "{word:?}");
        }
    }

    #[test]
    fn masks_disguised_words() {
        let f = Filter::from_words("darn\nHeck\ncafé\n");
        let cases = [
            ("da\u{200B}rn it", "**** it"),
            ("dаrn it", "**** it"), // Cyrillic a
            ("oh һеск!", "oh ****!"),
            ("ＤＡＲＮ", "****"),
            ("a cafe\u{301}", "a ****"),
            ("darned dаrned", "darned dаrned"),
            ("\u{200B}", "\u{200B}"),
        ];
        for (input, want) in cases {
            assert_eq!(f.mask(input), want, "{input:?}");
        }
    }

    #[test]
    fn strips_controls_but_keeps_newline_and_tab() {
        assert_eq!(
            Filter::strip_controls("a\u{7}b\tc\nd\u{1b}[31m"),
            "ab\tc\nd[31m"
        );
    }
}
