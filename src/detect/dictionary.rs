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
            // Standard semantics, for overlapping search (see `scan`).
            .match_kind(MatchKind::Standard)
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

    /// Calls `found(start, end)` for whole-word occurrences, leftmost
    /// longest first and without overlap. Every occurrence is considered
    /// before choosing, so an entry glued to a word (`myProject Falcon`)
    /// cannot hide an overlapping one that stands alone (`Falcon`).
    pub fn scan(&self, hay: &[u8], mut found: impl FnMut(usize, usize)) {
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        let mut hits: Vec<(usize, usize)> = self
            .ac
            .find_overlapping_iter(hay)
            .map(|m| (m.start(), m.end()))
            .filter(|&(s, e)| {
                !(self.whole_word
                    && ((s > 0 && is_word(hay[s - 1]) && is_word(hay[s]))
                        || (e < hay.len() && is_word(hay[e]) && is_word(hay[e - 1]))))
            })
            .collect();
        hits.sort_unstable_by_key(|&(s, e)| (s, std::cmp::Reverse(e)));
        let mut taken_to = 0;
        for (s, e) in hits {
            if s >= taken_to {
                found(s, e);
                taken_to = e;
            }
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
    fn entry_glued_to_a_word_does_not_hide_an_overlapping_one() {
        let d = Dictionary::build(0, &["Project Falcon", "Falcon", "Aa Aa"], true, true)
            .unwrap()
            .unwrap();
        let mut hits = Vec::new();
        d.scan(b"myProject Falcon; Aa AaAa Aa Aa Aa\xe1", |s, e| {
            hits.push((s, e))
        });
        assert_eq!(hits, vec![(10, 16), (26, 31)]);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        assert_eq!(
            parse_words("# names\n\n Falcon \nOsprey\n"),
            vec!["Falcon", "Osprey"]
        );
    }
}
