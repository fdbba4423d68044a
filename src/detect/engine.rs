//! Compilation and scanning.
//!
//! The pipeline: prefilter → windows → confirm → validate → resolve.
//! All rules' keywords are found in one pass (`keywords`: a fingerprint
//! table probed at every byte, hits verified); `digits` anchors are found by
//! a byte scan for digit clusters. Both streams, merged in input order,
//! yield candidates; each opens a small window (the pattern's
//! `before`/`after`) in which that pattern's regex runs. Overlapping (or
//! nearly touching) windows of one pattern are merged, so every byte is
//! searched by a pattern's regex at most once: cost stays linear even for
//! megabytes of `@` or digits. Validators, allowlists and context words then confirm each
//! match, and overlapping findings of different detectors are resolved by a
//! fixed order (severity, then length, then position, then rule order).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use regex::bytes::{CaptureLocations, Regex, RegexBuilder};

use super::dictionary::{self, Dictionary};
use super::keywords::{KeywordHit, Keywords};
use super::mask::{self, MaskStyle};
use super::rule::{RuleError, RuleSpec};
use super::validate::Validator;
use super::{Finding, Severity};

/// Longest finding reported, in bytes (a private key block fits). Streaming
/// callers keep at least this much overlap between chunks.
pub const MAX_SPAN: usize = 16 * 1024;
/// Largest compiled size of one rule regex.
const REGEX_SIZE_LIMIT: usize = 4 << 20;
/// How far a window end is pushed to finish the token it cuts.
const TOKEN_EXTEND: usize = 256;
/// Windows of one probe closer than this are searched as one: a regex call
/// costs about as much as scanning this many more bytes.
const MERGE_GAP: usize = 256;

/// A compiled rule set. Cheap to share behind `Arc`; scanning only reads it.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    probes: Vec<Probe>,
    keywords: Keywords,
    /// Per keyword pattern: the probes it wakes.
    triggers: Vec<Vec<Trigger>>,
    /// Probes with the `digits` anchor, woken by digit clusters.
    digit_probes: Vec<usize>,
    dictionaries: Vec<Dictionary>,
}

#[derive(Debug)]
struct Rule {
    id: Arc<str>,
    severity: Severity,
    validate: Vec<Validator>,
    context_window: usize,
    require: Vec<Vec<u8>>,
    exclude: Vec<Vec<u8>>,
    allow_values: Vec<Vec<u8>>,
    allow_contains: Vec<Vec<u8>>,
    mask: MaskStyle,
    min_matches: usize,
}

/// One compiled pattern of a rule.
#[derive(Debug)]
struct Probe {
    rule: usize,
    regex: Regex,
    before: usize,
    after: usize,
    min_digits: usize,
    min_dots: usize,
    min_colons: usize,
}

#[derive(Debug, Clone)]
struct Trigger {
    probe: usize,
    /// Exact bytes to check for case-sensitive keywords (keyword search is
    /// case-insensitive); `None` when any case matches.
    exact: Option<Box<[u8]>>,
    len: usize,
}

/// Where a rule's dictionary file comes from.
pub(crate) type WordSource<'a> = dyn Fn(&RuleSpec, &str) -> Result<String, String> + 'a;

impl Engine {
    /// Compiles decoded rule files. Dictionary files are read through `words`.
    pub(crate) fn compile(
        specs: Vec<RuleSpec>,
        words: &WordSource<'_>,
    ) -> Result<Engine, Vec<RuleError>> {
        let mut errors = Vec::new();
        let err = |spec: &RuleSpec, pos: super::yaml::Pos, message: String| RuleError {
            file: spec.file.clone(),
            line: pos.line,
            col: pos.col,
            message,
        };
        let mut seen: HashMap<&str, &RuleSpec> = HashMap::new();
        for spec in &specs {
            if let Some(first) = seen.get(spec.id.as_str()) {
                let msg = format!(
                    "duplicate detector id `{}` (first defined at {}:{}:{})",
                    spec.id, first.file, first.id_pos.line, first.id_pos.col
                );
                errors.push(err(spec, spec.id_pos, msg));
            } else {
                seen.insert(&spec.id, spec);
            }
        }

        let mut rules = Vec::new();
        let mut probes = Vec::new();
        let mut keywords: Vec<(Vec<u8>, Trigger)> = Vec::new();
        let mut digit_probes = Vec::new();
        let mut dictionaries = Vec::new();
        for spec in &specs {
            let rule_idx = rules.len();
            let lower = |v: &[String]| {
                v.iter()
                    .map(|s| s.to_ascii_lowercase().into_bytes())
                    .collect::<Vec<_>>()
            };
            rules.push(Rule {
                id: Arc::from(spec.id.as_str()),
                severity: spec.severity,
                validate: spec.validate.clone(),
                context_window: spec.context.window,
                require: lower(&spec.context.require),
                exclude: lower(&spec.context.exclude),
                allow_values: spec
                    .allow_values
                    .iter()
                    .map(|s| s.as_bytes().to_vec())
                    .collect(),
                allow_contains: lower(&spec.allow_contains),
                mask: spec.mask,
                min_matches: spec.min_matches,
            });
            for p in &spec.patterns {
                let regex = match RegexBuilder::new(&p.regex)
                    .unicode(false)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let msg = e
                            .to_string()
                            .lines()
                            .rfind(|l| !l.trim().is_empty())
                            .unwrap_or("")
                            .trim()
                            .to_string();
                        errors.push(err(spec, p.regex_pos, format!("invalid regex: {msg}")));
                        continue;
                    }
                };
                let probe = probes.len();
                probes.push(Probe {
                    rule: rule_idx,
                    regex,
                    before: p.before,
                    after: p.after,
                    min_digits: p.min_digits,
                    min_dots: p.min_dots,
                    min_colons: p.min_colons,
                });
                for k in &p.keywords {
                    let exact = (!p.case_insensitive).then(|| k.as_bytes().into());
                    keywords.push((
                        k.to_ascii_lowercase().into_bytes(),
                        Trigger {
                            probe,
                            exact,
                            len: k.len(),
                        },
                    ));
                }
                if p.digits {
                    digit_probes.push(probe);
                }
            }
            if let Some(dict) = &spec.dictionary {
                match words(spec, &dict.file) {
                    Ok(text) => {
                        let list = dictionary::parse_words(&text);
                        match Dictionary::build(
                            rule_idx,
                            &list,
                            dict.case_insensitive,
                            dict.whole_word,
                        ) {
                            Ok(Some(d)) => dictionaries.push(d),
                            Ok(None) => {}
                            Err(e) => errors.push(err(
                                spec,
                                dict.pos,
                                format!("word list `{}`: {e}", dict.file),
                            )),
                        }
                    }
                    Err(e) => errors.push(err(
                        spec,
                        dict.pos,
                        format!("word list `{}`: {e}", dict.file),
                    )),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        // One pattern per distinct lowercase keyword. Only the longest keyword
        // starting at a position is reported, which hides a shorter keyword
        // that is a prefix of it, so each pattern also wakes the probes of its
        // prefixes.
        let mut patterns: Vec<Vec<u8>> = keywords.iter().map(|(k, _)| k.clone()).collect();
        patterns.sort();
        patterns.dedup();
        let triggers: Vec<Vec<Trigger>> = patterns
            .iter()
            .map(|pat| {
                keywords
                    .iter()
                    .filter(|(k, _)| pat.starts_with(k))
                    .map(|(_, t)| t.clone())
                    .collect()
            })
            .collect();
        Ok(Engine {
            rules,
            probes,
            keywords: Keywords::new(&patterns),
            triggers,
            digit_probes,
            dictionaries,
        })
    }

    /// Every detector id the engine knows, in rule order.
    pub fn detector_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.id)
    }

    /// Number of words across all dictionary rules.
    pub fn dictionary_words(&self) -> usize {
        self.dictionaries.iter().map(Dictionary::word_count).sum()
    }

    /// Finds sensitive data in `input`. Findings are sorted by position and
    /// never overlap.
    pub fn scan(&self, input: &[u8]) -> Vec<Finding> {
        let mut raw = Vec::new();
        self.candidates(input, &mut raw);
        for d in &self.dictionaries {
            d.scan(input, |s, e| self.confirm(d.rule, input, s, e, &mut raw));
        }
        self.resolve(input, raw)
    }

    /// The naive baseline: every pattern's regex over the whole input, with
    /// the same confirmation and resolution. Same findings as [`Engine::scan`],
    /// far slower; kept for benchmarks and differential tests.
    #[doc(hidden)]
    pub fn scan_naive(&self, input: &[u8]) -> Vec<Finding> {
        let mut raw = Vec::new();
        for i in 0..self.probes.len() {
            self.run_probe(i, input, 0, input.len(), &mut None, &mut raw);
        }
        for d in &self.dictionaries {
            d.scan(input, |s, e| self.confirm(d.rule, input, s, e, &mut raw));
        }
        self.resolve(input, raw)
    }

    /// The candidate pass: keyword hits and digit clusters, in input order,
    /// wake probes; each probe's windows are merged and its regex runs once
    /// per merged window.
    fn candidates(&self, hay: &[u8], raw: &mut Vec<Raw>) {
        let mut windows = Windows::new(self.probes.len());
        let mut keywords = self.keywords.hits(hay);
        let mut clusters = Clusters::new(!self.digit_probes.is_empty(), hay);
        let (mut hit, mut cluster) = (keywords.next(), clusters.next());
        loop {
            match (hit, cluster) {
                (Some(h), Some(c)) if c.start < h.start => {
                    self.digit_cluster(hay, c, &mut windows, raw);
                    cluster = clusters.next();
                }
                (Some(h), _) => {
                    self.keyword_hit(hay, h, &mut windows, raw);
                    hit = keywords.next();
                }
                (None, Some(c)) => {
                    self.digit_cluster(hay, c, &mut windows, raw);
                    cluster = clusters.next();
                }
                (None, None) => break,
            }
        }
        windows.flush(&mut |probe, ws, we, locs| self.run_probe(probe, hay, ws, we, locs, raw));
    }

    /// Opens a window for every probe the keyword at `h.start` wakes.
    fn keyword_hit(&self, hay: &[u8], h: KeywordHit, windows: &mut Windows, raw: &mut Vec<Raw>) {
        for t in &self.triggers[h.pattern] {
            if let Some(exact) = &t.exact {
                if !hay[h.start..].starts_with(exact) {
                    continue;
                }
            }
            let end = if t.len == 1 {
                h.run_end
            } else {
                h.start + t.len
            };
            let p = &self.probes[t.probe];
            let ws = h.start.saturating_sub(p.before);
            let we = (end + p.after).min(hay.len());
            windows.push(t.probe, ws, we, &mut |probe, ws, we, locs| {
                self.run_probe(probe, hay, ws, we, locs, raw)
            });
        }
    }

    /// Opens a window over the cluster for every digit-anchored probe whose
    /// minimums it meets.
    fn digit_cluster(&self, hay: &[u8], c: Cluster, windows: &mut Windows, raw: &mut Vec<Raw>) {
        for &i in &self.digit_probes {
            let p = &self.probes[i];
            if c.digits < p.min_digits || c.dots < p.min_dots || c.colons < p.min_colons {
                continue;
            }
            let ws = c.start.saturating_sub(p.before);
            let we = (c.end + p.after).min(hay.len());
            windows.push(i, ws, we, &mut |probe, ws, we, locs| {
                self.run_probe(probe, hay, ws, we, locs, raw)
            });
        }
    }

    /// Runs one probe's regex over `hay[ws..we]` (with the bytes before `ws`
    /// visible to look-arounds such as `\b`).
    fn run_probe(
        &self,
        idx: usize,
        hay: &[u8],
        ws: usize,
        we: usize,
        locs: &mut Option<CaptureLocations>,
        raw: &mut Vec<Raw>,
    ) {
        let probe = &self.probes[idx];
        let we = extend_token(hay, we);
        let locs = locs.get_or_insert_with(|| probe.regex.capture_locations());
        let window = &hay[..we];
        let mut at = ws;
        while at <= we {
            let Some(whole) = probe.regex.captures_read_at(locs, window, at) else {
                break;
            };
            // The value is the first capture group that took part, else the match.
            let (vs, ve) = (1..locs.len())
                .find_map(|g| locs.get(g))
                .unwrap_or((whole.start(), whole.end()));
            self.confirm(probe.rule, hay, vs, ve, raw);
            at = ve.max(whole.start() + 1);
        }
    }

    /// Applies a rule's checks to `hay[s..e]` and records it if they pass.
    fn confirm(&self, rule_idx: usize, hay: &[u8], s: usize, e: usize, raw: &mut Vec<Raw>) {
        let (s, e) = snap_to_chars(hay, s, e);
        if s >= e || e - s > MAX_SPAN {
            return;
        }
        let rule = &self.rules[rule_idx];
        let value = &hay[s..e];
        if rule.allow_values.iter().any(|a| a == value) {
            return;
        }
        if rule.allow_contains.iter().any(|a| contains_ci(value, a)) {
            return;
        }
        if !rule.validate.iter().all(|v| v.check(value)) {
            return;
        }
        if !rule.require.is_empty() || !rule.exclude.is_empty() {
            let ctx_start = s.saturating_sub(rule.context_window);
            let around = &hay[ctx_start..(e + rule.context_window).min(hay.len())];
            if !rule.require.is_empty() && !rule.require.iter().any(|w| contains_ci(around, w)) {
                return;
            }
            let before = &hay[ctx_start..s];
            if rule.exclude.iter().any(|w| contains_ci(before, w)) {
                return;
            }
        }
        raw.push(Raw {
            rule: rule_idx,
            start: s,
            end: e,
        });
    }

    /// Deduplicates, applies `min_matches`, resolves overlaps, masks.
    fn resolve(&self, hay: &[u8], mut raw: Vec<Raw>) -> Vec<Finding> {
        raw.sort_unstable_by_key(|r| (r.start, r.end, r.rule));
        raw.dedup();
        let mut counts = vec![0usize; self.rules.len()];
        for r in &raw {
            counts[r.rule] += 1;
        }
        raw.retain(|r| counts[r.rule] >= self.rules[r.rule].min_matches);
        // Highest priority first: severity, longer span, earlier, rule order.
        raw.sort_unstable_by(|a, b| {
            let (ra, rb) = (&self.rules[a.rule], &self.rules[b.rule]);
            rb.severity
                .cmp(&ra.severity)
                .then((b.end - b.start).cmp(&(a.end - a.start)))
                .then(a.start.cmp(&b.start))
                .then(a.rule.cmp(&b.rule))
        });
        let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
        let mut kept = Vec::new();
        for r in raw {
            let overlaps_before = taken
                .range(..r.end)
                .next_back()
                .is_some_and(|(_, &end)| end > r.start);
            if !overlaps_before {
                taken.insert(r.start, r.end);
                kept.push(r);
            }
        }
        kept.sort_unstable_by_key(|r| (r.start, r.end));
        kept.into_iter()
            .map(|r| {
                let rule = &self.rules[r.rule];
                Finding {
                    detector: rule.id.clone(),
                    start: r.start,
                    end: r.end,
                    severity: rule.severity,
                    preview: mask::preview(&hay[r.start..r.end], rule.mask),
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Raw {
    rule: usize,
    start: usize,
    end: usize,
}

/// A run of digits with the separators and hex letters between them
/// (`+44 20 7946 0958`, `10.0.0.1`, `2001:db8::1`), counted once so that
/// digit-anchored patterns run only where a value could be.
#[derive(Debug, Default, Clone, Copy)]
struct Cluster {
    start: usize,
    end: usize,
    digits: usize,
    dots: usize,
    colons: usize,
}

impl Cluster {
    fn at(hay: &[u8], start: usize) -> Cluster {
        let mut c = Cluster {
            start,
            end: start,
            ..Cluster::default()
        };
        let mut gap = 0;
        for (i, &b) in hay[start..].iter().enumerate() {
            match b {
                b'0'..=b'9' => {
                    c.digits += 1;
                    gap = 0;
                    c.end = start + i + 1;
                    continue;
                }
                b'.' => c.dots += 1,
                b':' => c.colons += 1,
                b' ' | b'-' | b'/' | b'(' | b')' | b'+' | b'a'..=b'f' | b'A'..=b'F' => {}
                _ => break,
            }
            gap += 1;
            if gap > 4 {
                break;
            }
        }
        c
    }
}

/// Digit clusters in input order; a digit inside a cluster starts none.
struct Clusters<'a> {
    hay: &'a [u8],
    pos: usize,
}

impl<'a> Clusters<'a> {
    /// `enabled` is false when no probe is anchored on digits.
    fn new(enabled: bool, hay: &'a [u8]) -> Self {
        let pos = if enabled { 0 } else { hay.len() };
        Clusters { hay, pos }
    }
}

impl Iterator for Clusters<'_> {
    type Item = Cluster;

    fn next(&mut self) -> Option<Cluster> {
        let start = find_digit(self.hay, self.pos)?;
        let c = Cluster::at(self.hay, start);
        self.pos = c.end;
        Some(c)
    }
}

/// Position of the first ASCII digit at or after `from`.
fn find_digit(hay: &[u8], from: usize) -> Option<usize> {
    const CHUNK: usize = 32;
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let mut at = from.min(hay.len());
    let mut chunks = hay[at..].chunks_exact(CHUNK);
    for chunk in &mut chunks {
        // Eight bytes at a time: a byte is a digit when `b ^ b'0'` is below
        // ten, and `(x - 10) & !x & 0x80` flags such a byte in every lane (or
        // a later one after a borrow: only "any" is needed here).
        let any = chunk.chunks_exact(8).fold(0, |any, w| {
            let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8])) ^ (ONES * u64::from(b'0'));
            any | (w.wrapping_sub(ONES * 10) & !w & HIGHS)
        });
        if any != 0 {
            return chunk.iter().position(u8::is_ascii_digit).map(|i| at + i);
        }
        at += CHUNK;
    }
    chunks
        .remainder()
        .iter()
        .position(u8::is_ascii_digit)
        .map(|i| at + i)
}

/// Each probe's pending window. A window that overlaps the pending one (or
/// nearly does) extends it; otherwise the pending one is searched and replaced, so every
/// byte is searched by a probe's regex at most once.
struct Windows {
    pending: Vec<Option<(usize, usize)>>,
    locs: Vec<Option<CaptureLocations>>,
}

/// Searches one merged window: `(probe, start, end, capture buffer)`.
type RunProbe<'r> = dyn FnMut(usize, usize, usize, &mut Option<CaptureLocations>) + 'r;

impl Windows {
    fn new(probes: usize) -> Self {
        Windows {
            pending: vec![None; probes],
            locs: (0..probes).map(|_| None).collect(),
        }
    }

    /// Adds `ws..we` for `probe`. Windows of one probe arrive in order of start.
    fn push(&mut self, probe: usize, ws: usize, we: usize, run: &mut RunProbe<'_>) {
        match &mut self.pending[probe] {
            Some((_, pe)) if ws <= *pe + MERGE_GAP => *pe = (*pe).max(we),
            slot => {
                if let Some((a, b)) = slot.replace((ws, we)) {
                    run(probe, a, b, &mut self.locs[probe]);
                }
            }
        }
    }

    /// Searches every pending window.
    fn flush(mut self, run: &mut RunProbe<'_>) {
        for (probe, w) in self.pending.iter().enumerate() {
            if let Some((a, b)) = *w {
                run(probe, a, b, &mut self.locs[probe]);
            }
        }
    }
}

/// Pushes a window end forward to the end of the token it cuts.
fn extend_token(hay: &[u8], end: usize) -> usize {
    let limit = (end + TOKEN_EXTEND).min(hay.len());
    end + hay[end..limit]
        .iter()
        .take_while(|b| {
            !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'' | b',' | b';' | b'<' | b'>')
        })
        .count()
}

/// Widens a span to whole UTF-8 characters.
fn snap_to_chars(hay: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    let cont = |b: u8| b & 0xC0 == 0x80;
    while s > 0 && s < hay.len() && cont(hay[s]) {
        s -= 1;
    }
    while e < hay.len() && cont(hay[e]) {
        e += 1;
    }
    (s, e)
}

/// Whether `hay` contains `needle` (lowercase) in any ASCII case.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}
