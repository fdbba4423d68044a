//! Dictionary rules: organisation word lists (code names, customer names)
//! matched as literals, at any size, with their own aho-corasick automaton.
//!
//! Word lists stay out of the shared keyword automaton on purpose: they can
//! hold hundreds of thousands of entries and change often, and folding them
//! in would slow the prefilter every other rule relies on.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// A compiled word list.
#[derive(Debug)]
pub struct Dictionary {
    pub rule: usize,
    ac: AhoCorasick,
    whole_word: bool,
    len: usize,
}

/// Words of a list: one per line, trimmed; blank lines and `#` comments skipped.
pub fn parse_words(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

impl Dictionary {
    /// Builds the automaton; `None` for an empty list.
    pub fn build(
        rule: usize,
        words: &[&str],
        case_insensitive: bool,
        whole_word: bool,
    ) -> Result<Option<Dictionary>, String> {
        if words.is_empty() {
            return Ok(None);
        }
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(case_insensitive)
            .match_kind(MatchKind::LeftmostLongest)
            // A contiguous NFA keeps 100k-word lists compact; a DFA could be huge.
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(words)
            .map_err(|e| e.to_string())?;
        Ok(Some(Dictionary {
            rule,
            ac,
            whole_word,
            len: words.len(),
        }))
    }

    /// Number of words in the list.
    pub fn word_count(&self) -> usize {
        self.len
    }

    /// Calls `found(start, end)` for every whole-word occurrence.
    pub fn scan(&self, hay: &[u8], mut found: impl FnMut(usize, usize)) {
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        for m in self.ac.find_iter(hay) {
            let (s, e) = (m.start(), m.end());
            if self.whole_word
                && ((s > 0 && is_word(hay[s - 1]) && is_word(hay[s]))
                    || (e < hay.len() && is_word(hay[e]) && is_word(hay[e - 1])))
            {
                continue;
            }
            found(s, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_only() {
        let d = Dictionary::build(0, &["Nightingale", "ACME Corp"], true, true)
            .unwrap()
            .unwrap();
        let mut hits = Vec::new();
        d.scan(
            b"project nightingale for acme corp; nightingales",
            |s, e| hits.push((s, e)),
        );
        assert_eq!(hits, vec![(8, 19), (24, 33)]);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        assert_eq!(
            parse_words("# names\n\n Falcon \nOsprey\n"),
            vec!["Falcon", "Osprey"]
        );
    }
}
