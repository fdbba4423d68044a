//! Keyword search for the candidate pass: every position where a rule
//! keyword starts, in any ASCII case, with the longest keyword there.
//!
//! An aho-corasick DFA over the bundled ~130 case-insensitive keywords costs
//! ~18 instructions per byte: keywords start with nearly every letter, which
//! leaves it no prefilter, and its packed (Teddy) searcher drowns in
//! candidates for letter-only keywords. Here every keyword of three bytes or
//! more is represented by its rarest three-byte *fingerprint*, taken at any
//! offset and ASCII-case folded (`use ` by `use`, `password` by `ssw`). One
//! hashed bit table of all fingerprints is probed at every position: a
//! load, a multiply and a bit test, with almost no taken branch on clean
//! text. A probe that hits is verified against the keywords owning that
//! fingerprint. Keywords of one or two bytes (`@`, `Q~`) are found by a byte
//! search for their rarest byte.

use std::cmp::Reverse;

/// Slots in the fingerprint table, as a power of two: one byte each, 16
/// KiB, so it stays in L1 next to the input.
const TABLE_BITS: u32 = 15;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
/// The bits of a byte that a fingerprint keeps: the low five, which tell
/// letters apart and ignore their case (`A` 0x41 and `a` 0x61).
const GRAM_MASK: u32 = 0x001F_1F1F;
/// Positions probed per refill. Hits are sorted per block, because a
/// fingerprint may sit anywhere inside its keyword.
const BLOCK: usize = 4096;

/// A compiled keyword set.
#[derive(Debug)]
pub(crate) struct Keywords {
    /// Lowercase keywords; a hit's `pattern` indexes this.
    patterns: Vec<Box<[u8]>>,
    /// 1 in the slot of every fingerprint's hash.
    table: Box<[u8; TABLE_SIZE]>,
    /// `(hash, pattern, offset of the fingerprint)`, sorted by hash.
    owners: Vec<(u16, u32, u32)>,
    /// Keywords shorter than a fingerprint: `(byte, pattern, offset)` for
    /// their rarest byte (both cases of a letter).
    short: Vec<(u8, u32, u32)>,
    /// The distinct bytes of `short`.
    short_bytes: Vec<u8>,
    /// Largest offset of a fingerprint (or short byte) in its keyword.
    max_offset: usize,
}

/// A keyword found at `start`: the longest one starting there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeywordHit {
    pub start: usize,
    /// End of the match, or of the run of a one-byte keyword (`@@@@`), which
    /// counts as one hit.
    pub run_end: usize,
    pub pattern: usize,
}

impl Keywords {
    /// Compiles distinct, non-empty, lowercase keywords; hits name them by
    /// their index in `patterns`.
    pub(crate) fn new(patterns: &[Vec<u8>]) -> Keywords {
        let mut table = Box::new([0u8; TABLE_SIZE]);
        let mut owners = Vec::new();
        let mut short = Vec::new();
        let mut max_offset = 0;
        for (id, pat) in patterns.iter().enumerate() {
            let id = id as u32;
            if pat.len() >= 3 {
                let off = (0..=pat.len() - 3)
                    .min_by(|&a, &b| {
                        let cost = |o: usize| fingerprint_cost(&pat[o..o + 3]);
                        cost(a).total_cmp(&cost(b))
                    })
                    .unwrap_or(0);
                let h = hash(gram([pat[off], pat[off + 1], pat[off + 2]]));
                table[usize::from(h)] = 1;
                owners.push((h, id, off as u32));
                max_offset = max_offset.max(off);
            } else if let Some(off) = (0..pat.len()).min_by(|&a, &b| {
                let cost = |o: usize| byte_cost(pat[o]);
                cost(a).total_cmp(&cost(b))
            }) {
                let b = pat[off];
                short.push((b, id, off as u32));
                if b.is_ascii_alphabetic() {
                    short.push((b.to_ascii_uppercase(), id, off as u32));
                }
                max_offset = max_offset.max(off);
            }
        }
        owners.sort_unstable();
        let mut short_bytes: Vec<u8> = short.iter().map(|s| s.0).collect();
        short_bytes.sort_unstable();
        short_bytes.dedup();
        Keywords {
            patterns: patterns.iter().map(|p| p.as_slice().into()).collect(),
            table,
            owners,
            short,
            short_bytes,
            max_offset,
        }
    }

    /// Every keyword start in `hay`, in order (see [`Hits`]).
    pub(crate) fn hits<'a>(&'a self, hay: &'a [u8]) -> Hits<'a> {
        Hits {
            kw: self,
            hay,
            probed: if self.patterns.is_empty() {
                hay.len()
            } else {
                0
            },
            found: Vec::new(),
            next: 0,
            ready: 0,
            pos: 0,
        }
    }

    fn slot(&self, h: u16) -> u8 {
        self.table[usize::from(h) % TABLE_SIZE]
    }

    fn bit(&self, h: u16) -> bool {
        self.slot(h) != 0
    }

    /// Probes positions `from..to`, pushing verified `(start, pattern)`.
    fn probe(&self, hay: &[u8], from: usize, to: usize, out: &mut Vec<(usize, u32)>) {
        let mut i = from;
        // Sixteen positions per step, four from each 8-byte load, and one
        // branch, which clean text seldom takes.
        while i + 16 <= to && i + 20 <= hay.len() {
            let Ok(block) = <&[u8; 20]>::try_from(&hay[i..i + 20]) else {
                break;
            };
            let word = |at: usize| {
                let (bytes, _) = block[at..]
                    .split_first_chunk::<8>()
                    .unwrap_or((&[0; 8], &[]));
                u64::from_le_bytes(*bytes)
            };
            let words = [word(0), word(4), word(8), word(12)];
            let gram = |k: usize| (words[k / 4] >> (8 * (k % 4))) as u32;
            if (0..16).fold(0, |any, k| any | self.slot(hash(gram(k)))) != 0 {
                for k in 0..16 {
                    let h = hash(gram(k));
                    if self.bit(h) {
                        self.verify(hay, i + k, h, out);
                    }
                }
            }
            i += 16;
        }
        while i < to && i + 3 <= hay.len() {
            let h = hash(gram([hay[i], hay[i + 1], hay[i + 2]]));
            if self.bit(h) {
                self.verify(hay, i, h, out);
            }
            i += 1;
        }
        if !self.short.is_empty() {
            let block = &hay[from..to];
            let mut found = |at: usize| {
                let b = hay[at];
                for &(sb, pat, off) in &self.short {
                    if sb == b {
                        self.verify_start(hay, at, pat, off, out);
                    }
                }
            };
            match self.short_bytes[..] {
                [a] => memchr::memchr_iter(a, block).for_each(|j| found(from + j)),
                [a, b] => memchr::memchr2_iter(a, b, block).for_each(|j| found(from + j)),
                [a, b, c] => memchr::memchr3_iter(a, b, c, block).for_each(|j| found(from + j)),
                _ => {
                    for (j, b) in block.iter().enumerate() {
                        if self.short_bytes.binary_search(b).is_ok() {
                            found(from + j);
                        }
                    }
                }
            }
        }
    }

    /// Checks the keywords owning fingerprint hash `h` against the bytes
    /// around position `at`.
    fn verify(&self, hay: &[u8], at: usize, h: u16, out: &mut Vec<(usize, u32)>) {
        let first = self.owners.partition_point(|o| o.0 < h);
        for &(oh, pat, off) in &self.owners[first..] {
            if oh != h {
                break;
            }
            self.verify_start(hay, at, pat, off, out);
        }
    }

    /// Records `pat` if it occurs where its byte `off` is at `at`.
    fn verify_start(&self, hay: &[u8], at: usize, pat: u32, off: u32, out: &mut Vec<(usize, u32)>) {
        let Some(start) = at.checked_sub(off as usize) else {
            return;
        };
        let p = &self.patterns[pat as usize];
        if hay
            .get(start..start + p.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(p))
        {
            out.push((start, pat));
        }
    }
}

/// Keyword hits in input order, one per start position (so keywords that
/// overlap are all seen), the longest keyword at each, with runs of a
/// one-byte keyword collapsed: exactly what a leftmost-longest automaton
/// reports when each search resumes one byte after the last match start.
pub(crate) struct Hits<'a> {
    kw: &'a Keywords,
    hay: &'a [u8],
    /// Positions below this have been probed.
    probed: usize,
    /// Verified `(start, pattern)`, sorted from `next` on.
    found: Vec<(usize, u32)>,
    next: usize,
    /// `found[..ready]` is final: later blocks only add later starts.
    ready: usize,
    /// Starts below this are covered by a hit already reported.
    pos: usize,
}

impl Iterator for Hits<'_> {
    type Item = KeywordHit;

    fn next(&mut self) -> Option<KeywordHit> {
        let (kw, hay) = (self.kw, self.hay);
        loop {
            while self.next < self.ready {
                let (start, pat) = self.found[self.next];
                self.next += 1;
                if start < self.pos {
                    continue;
                }
                let len = kw.patterns[pat as usize].len();
                let run_end = if len == 1 {
                    start
                        + hay[start..]
                            .iter()
                            .take_while(|&&b| b == hay[start])
                            .count()
                } else {
                    start + len
                };
                self.pos = if len == 1 { run_end } else { start + 1 };
                return Some(KeywordHit {
                    start,
                    run_end,
                    pattern: pat as usize,
                });
            }
            if self.probed >= hay.len() {
                return None;
            }
            self.found.drain(..self.next);
            self.next = 0;
            let end = (self.probed + BLOCK).min(hay.len());
            kw.probe(hay, self.probed, end, &mut self.found);
            self.probed = end;
            // Longest first at equal starts, so the others are skipped. The
            // list is two nearly sorted runs (fingerprint probes, then byte
            // search), which the stable sort merges in about linear time.
            self.found
                .sort_by_key(|&(s, p)| (s, Reverse(kw.patterns[p as usize].len())));
            self.ready = if end == hay.len() {
                self.found.len()
            } else {
                let bound = end.saturating_sub(kw.max_offset);
                self.found.partition_point(|&(s, _)| s < bound)
            };
        }
    }
}

/// Three bytes, little-endian.
fn gram(b: [u8; 3]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], 0])
}

/// The table slot of the three bytes in the low 24 bits of `x` (the top
/// byte is ignored). Only [`GRAM_MASK`] bits count, so the ASCII case of a
/// letter does not matter: a superset of `eq_ignore_ascii_case`, which is
/// all a filter needs.
fn hash(x: u32) -> u16 {
    ((x & GRAM_MASK).wrapping_mul(0x9E37_79B1) >> (32 - TABLE_BITS)) as u16
}

/// Rough share of a byte (case folded) in prompts: English letter
/// frequencies, space and common punctuation; anything else is rare.
fn byte_freq(b: u8) -> f64 {
    const LETTERS: [f64; 26] = [
        0.065, 0.012, 0.023, 0.03, 0.1, 0.018, 0.016, 0.04, 0.06, 0.001, 0.006, 0.033, 0.02, 0.057,
        0.063, 0.016, 0.001, 0.05, 0.053, 0.075, 0.023, 0.008, 0.015, 0.0015, 0.015, 0.0007,
    ];
    match b.to_ascii_lowercase() {
        c @ b'a'..=b'z' => LETTERS[usize::from(c - b'a')],
        b' ' => 0.15,
        b'.' | b',' | b'\n' | b'"' => 0.01,
        b'0'..=b'9' | b':' | b'-' => 0.005,
        b'_' | b'/' | b'=' | b'(' | b')' | b'\'' => 0.003,
        _ => 0.0005,
    }
}

/// How often a lone byte is expected, counting both cases of a letter.
fn byte_cost(b: u8) -> f64 {
    byte_freq(b) * if b.is_ascii_alphabetic() { 2.0 } else { 1.0 }
}

/// Expected share of a byte pair: measured for the commonest English
/// bigrams, else half the product of its bytes (next to a space, where words
/// end and start, twice the product).
fn pair_freq(a: u8, b: u8) -> f64 {
    const COMMON: &[(&[u8; 2], f64)] = &[
        (b"th", 0.0356),
        (b"he", 0.0307),
        (b"in", 0.0243),
        (b"er", 0.0205),
        (b"an", 0.0199),
        (b"re", 0.0185),
        (b"on", 0.0176),
        (b"at", 0.0149),
        (b"en", 0.0145),
        (b"nd", 0.0135),
        (b"ti", 0.0134),
        (b"es", 0.0134),
        (b"or", 0.0128),
        (b"te", 0.012),
        (b"of", 0.0117),
        (b"ed", 0.0117),
        (b"is", 0.0113),
        (b"it", 0.0112),
        (b"al", 0.0109),
        (b"ar", 0.0107),
        (b"st", 0.0105),
        (b"to", 0.0104),
        (b"nt", 0.0104),
        (b"ng", 0.0095),
        (b"se", 0.0093),
        (b"ha", 0.0093),
        (b"as", 0.0087),
        (b"ou", 0.0087),
        (b"io", 0.0083),
        (b"le", 0.0083),
        (b"ve", 0.0083),
        (b"co", 0.0079),
        (b"me", 0.0079),
        (b"de", 0.0076),
        (b"hi", 0.0076),
        (b"ri", 0.0073),
        (b"ro", 0.0073),
        (b"ic", 0.007),
        (b"ne", 0.0069),
        (b"ea", 0.0069),
        (b"ra", 0.0069),
        (b"ce", 0.0065),
        (b"li", 0.0062),
        (b"ch", 0.006),
        (b"ll", 0.0058),
        (b"be", 0.0058),
        (b"ma", 0.0057),
        (b"si", 0.0055),
        (b"om", 0.0055),
        (b"ur", 0.0054),
    ];
    let pair = [a.to_ascii_lowercase(), b.to_ascii_lowercase()];
    if let Some((_, f)) = COMMON.iter().find(|(p, _)| **p == pair) {
        return *f;
    }
    let spaced = if a == b' ' || b == b' ' { 2.0 } else { 0.5 };
    byte_freq(a) * byte_freq(b) * spaced
}

/// Expected share of a three-byte fingerprint, by a first-order Markov
/// estimate; the commonest English trigrams are penalised outright.
fn fingerprint_cost(t: &[u8]) -> f64 {
    const COMMON: &[&[u8; 3]] = &[
        b"the", b"and", b"ing", b"ion", b"tio", b"ent", b"ati", b"for", b"her", b"ter", b"hat",
        b"tha", b"ere", b"ate", b"his", b"con", b"res", b"ver", b"all", b"ons", b"nce", b"men",
        b"ith", b"ted", b"ers", b"pro", b"thi", b"wit", b"are", b"ess", b"not", b"ive", b"was",
        b"ect", b"rea", b"com", b"eve", b"per", b"int", b"est", b"sta", b"cti", b"ica", b"ist",
        b"ear", b"ain", b"one", b"our", b"iti", b"rat",
    ];
    let lower = [
        t[0].to_ascii_lowercase(),
        t[1].to_ascii_lowercase(),
        t[2].to_ascii_lowercase(),
    ];
    let penalty = if COMMON.contains(&&lower) { 30.0 } else { 1.0 };
    pair_freq(t[0], t[1]) * pair_freq(t[1], t[2]) / byte_freq(t[1]) * penalty
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits<'w>(words: &[&'w str], hay: &str) -> Vec<(usize, usize, &'w str)> {
        let pats: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        let kw = Keywords::new(&pats);
        kw.hits(hay.as_bytes())
            .map(|h| (h.start, h.run_end, words[h.pattern]))
            .collect()
    }

    #[test]
    fn longest_keyword_at_each_start_in_any_case() {
        assert_eq!(
            hits(
                &["sk-", "sk-ant-", "password", "ssn"],
                "x SK-ANT-1 Password: sk-9 ssn"
            ),
            vec![
                (2, 9, "sk-ant-"),
                (11, 19, "password"),
                (21, 24, "sk-"),
                (26, 29, "ssn")
            ]
        );
    }

    #[test]
    fn short_keywords_and_runs() {
        assert_eq!(
            hits(&["@", "q~"], "a@b @@@ xQ~y q"),
            vec![(1, 2, "@"), (4, 7, "@"), (9, 11, "q~")]
        );
    }

    #[test]
    fn fingerprints_far_inside_keywords_across_blocks() {
        let word = "ocp-apim-subscription-key";
        for pad in [BLOCK - 30, BLOCK - 3, BLOCK, BLOCK + 1] {
            let hay = format!("{}{word}", " ".repeat(pad));
            assert_eq!(
                hits(&[word, "tel"], &hay),
                vec![(pad, pad + word.len(), word)]
            );
            let hay = format!("{}{word} tel", "é".repeat(pad / 2));
            let found = hits(&[word, "tel"], &hay);
            assert_eq!(found.len(), 2, "{found:?}");
        }
    }

    #[test]
    fn overlapping_keywords_are_all_seen() {
        assert_eq!(
            hits(&["abc", "bcd", "cde"], "abcde"),
            vec![(0, 3, "abc"), (1, 4, "bcd"), (2, 5, "cde")]
        );
    }

    /// The reference: a leftmost-longest aho-corasick automaton, each search
    /// resuming one byte after the last match start.
    fn reference(pats: &[Vec<u8>], hay: &[u8]) -> Vec<(usize, usize, usize)> {
        use aho_corasick::{AhoCorasick, Input, MatchKind};
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(pats)
            .unwrap();
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(m) = ac.find(Input::new(hay).span(pos..hay.len())) {
            let s = m.start();
            let run_end = if m.len() == 1 {
                s + hay[s..].iter().take_while(|&&b| b == hay[s]).count()
            } else {
                m.end()
            };
            out.push((s, run_end, m.pattern().as_usize()));
            pos = if m.len() == 1 { run_end } else { s + 1 };
        }
        out
    }

    #[test]
    fn same_hits_as_an_automaton() {
        let words = [
            "@",
            "q~",
            "sk-",
            "sk-ant-",
            "tel",
            "ssn",
            "password",
            "pass=",
            "use ",
            "-----begin",
            "ocp-apim-subscription-key",
            "akia",
            "://",
            "eyj",
            "abc",
            "bcd",
        ];
        let mut pats: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        pats.sort();
        let kw = Keywords::new(&pats);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..300 {
            let mut hay = Vec::new();
            let len = next() % 9000;
            while (hay.len() as u64) < len {
                match next() % 4 {
                    0 => {
                        let w = pats[(next() % pats.len() as u64) as usize].clone();
                        let upper = next() % 2 == 0;
                        hay.extend(
                            w.iter()
                                .map(|b| if upper { b.to_ascii_uppercase() } else { *b }),
                        );
                    }
                    1 => hay.extend((0..next() % 40).map(|_| b"ab@~-k :"[(next() % 8) as usize])),
                    _ => hay.extend((0..next() % 300).map(|_| next() as u8)),
                }
            }
            let got: Vec<_> = kw
                .hits(&hay)
                .map(|h| (h.start, h.run_end, h.pattern))
                .collect();
            assert_eq!(got, reference(&pats, &hay));
        }
    }
}
