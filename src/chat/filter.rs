//! Message filtering: control characters are removed and blocked words masked.

/// Words to mask, lowercased. Matching is case-insensitive and on whole words.
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
            .map(str::to_lowercase)
            .collect();
        Filter { blocked }
    }

    /// Removes control characters other than newline and tab.
    pub(crate) fn strip_controls(text: &str) -> String {
        text.chars()
            .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
            .collect()
    }

    /// Replaces every blocked word (a maximal run of alphanumerics, `_`, `'` and `-`) by
    /// as many asterisks as it has characters.
    pub(crate) fn mask(&self, text: &str) -> String {
        if self.blocked.is_empty() {
            return text.to_string();
        }
        let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '\'' || c == '-';
        let mut out = String::with_capacity(text.len());
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            if !word.is_empty() {
                if self.blocked.iter().any(|b| *b == word.to_lowercase()) {
                    out.extend(std::iter::repeat_n('*', word.chars().count()));
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
    fn strips_controls_but_keeps_newline_and_tab() {
        assert_eq!(
            Filter::strip_controls("a\u{7}b\tc\nd\u{1b}[31m"),
            "ab\tc\nd[31m"
        );
    }
}
