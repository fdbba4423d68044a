//! Fuzzing the detection engine where `detect_props.rs` does not reach:
//! organisation word lists of arbitrary words (compiled from a rule
//! directory, as `rules_dir` is), and adversarial runs of what the
//! prefilter and the digit scan wake up on. Properties: findings are in
//! bounds, on character boundaries, ordered and disjoint; a dictionary
//! finding is a listed word on word boundaries (when asked), and every
//! listed word that occurs on word boundaries is covered by a finding;
//! windowed and naive scans agree; nothing panics.
//!
//! The `fuzz_` variants are ignored by default: see README.md, "Fuzzing".

mod common;

use std::sync::OnceLock;

use lantern::detect::{Engine, Finding};
use proptest::prelude::*;

fn bundled() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::bundled().expect("bundled rules compile"))
}

/// Spans inside the input, on character boundaries, ordered and disjoint.
fn check_spans(input: &[u8], findings: &[Finding]) -> Result<(), TestCaseError> {
    let text = std::str::from_utf8(input).ok();
    let mut last_end = 0;
    for f in findings {
        prop_assert!(
            f.start < f.end && f.end <= input.len(),
            "span out of bounds"
        );
        prop_assert!(f.start >= last_end, "findings overlap or are unordered");
        last_end = f.end;
        if let Some(text) = text {
            prop_assert!(
                text.is_char_boundary(f.start) && text.is_char_boundary(f.end),
                "span not on char boundaries"
            );
        }
    }
    Ok(())
}

/// What the dictionary matcher calls a word character.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// `hay[s..e]` does not start or end inside a word.
fn on_word_boundaries(hay: &[u8], s: usize, e: usize) -> bool {
    !((s > 0 && is_word(hay[s - 1]) && is_word(hay[s]))
        || (e < hay.len() && is_word(hay[e]) && is_word(hay[e - 1])))
}

fn same(a: &[u8], b: &[u8], case_insensitive: bool) -> bool {
    if case_insensitive {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// An engine with one dictionary rule over `words`.
fn dictionary_engine(words: &[String], case_insensitive: bool, whole_word: bool) -> Engine {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("words.txt"), words.join("\n")).unwrap();
    std::fs::write(
        dir.path().join("dict.yaml"),
        format!(
            "detectors:\n  - id: confidential.keyword\n    severity: high\n    dictionary:\n      file: words.txt\n      case_insensitive: {case_insensitive}\n      whole_word: {whole_word}\n"
        ),
    )
    .unwrap();
    Engine::from_dir(dir.path()).expect("dictionary rule compiles")
}

/// Word list entries: names, code names with spaces and punctuation,
/// non-ASCII, and words that are prefixes or suffixes of each other.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z][a-z]{0,7}",
        2 => "[A-Z][a-z]{1,6} [A-Z][a-z]{1,6}",
        1 => "[a-z]{1,4}[-_.][a-z0-9]{1,4}",
        1 => "[a-zé]{1,4}[éü][a-z]{0,3}",
        1 => "[0-9]{1,5}",
        1 => "[a-z]{1,3}",
    ]
}

/// Text built from the words (changed in case, glued to letters or
/// separated) and noise.
fn text_with(words: Vec<String>, max: usize) -> impl Strategy<Value = (Vec<String>, Vec<u8>)> {
    let n = words.len();
    let piece = prop_oneof![
        4 => (0..n, 0u8..4).prop_map(|(i, case)| (Some(i), case, String::new())),
        3 => prop::sample::select(vec![" ", " ", ".", ",", "\n", "x", "_", "é", "-", "9", "Project "])
            .prop_map(|s| (None, 0, s.to_string())),
        1 => "\\PC{1,4}".prop_map(|s| (None, 0, s)),
    ];
    prop::collection::vec(piece, 0..max).prop_map(move |pieces| {
        let mut out = String::new();
        for (i, case, s) in pieces {
            match i {
                Some(i) => {
                    let w = &words[i];
                    out.push_str(&match case {
                        0 => w.clone(),
                        1 => w.to_ascii_uppercase(),
                        2 => w.to_ascii_lowercase(),
                        _ => w.chars().take(w.chars().count() / 2).collect(),
                    })
                }
                None => out.push_str(&s),
            }
        }
        (words.clone(), out.into_bytes())
    })
}

/// Words, plus tails of some of them (`Falcon` beside `Project Falcon`):
/// entries that overlap are where a matcher can lose one to the other.
fn dictionary_case(
    max_words: usize,
    max_text: usize,
) -> impl Strategy<Value = (Vec<String>, Vec<u8>, bool, bool)> {
    (
        prop::collection::vec(word(), 1..max_words),
        prop::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            0..4,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut words, tails, ci, ww)| {
            for (w, at) in tails {
                let word: Vec<char> = words[w.index(words.len())].chars().collect();
                let tail: String = word[at.index(word.len())..].iter().collect();
                if !tail.trim().is_empty() {
                    words.push(tail.trim().to_string());
                }
            }
            (words, ci, ww)
        })
        .prop_flat_map(move |(words, ci, ww)| {
            text_with(words, max_text).prop_map(move |(words, text)| (words, text, ci, ww))
        })
}

fn check_dictionary(
    words: &[String],
    hay: &[u8],
    case_insensitive: bool,
    whole_word: bool,
) -> Result<(), TestCaseError> {
    let engine = dictionary_engine(words, case_insensitive, whole_word);
    let findings = engine.scan(hay);
    check_spans(hay, &findings)?;
    let listed: Vec<&[u8]> = words
        .iter()
        .map(|w| w.trim().as_bytes())
        .filter(|w| !w.is_empty())
        .collect();
    for f in &findings {
        let value = &hay[f.start..f.end];
        prop_assert!(
            listed.iter().any(|w| same(w, value, case_insensitive)),
            "{:?} is not a listed word",
            String::from_utf8_lossy(value)
        );
        if whole_word {
            prop_assert!(
                on_word_boundaries(hay, f.start, f.end),
                "{:?} is inside a word",
                String::from_utf8_lossy(value)
            );
        }
    }
    // Every occurrence the rule asks for is covered by some finding.
    for w in &listed {
        for s in 0..hay.len().saturating_sub(w.len() - 1) {
            let e = s + w.len();
            if !same(w, &hay[s..e], case_insensitive)
                || (whole_word && !on_word_boundaries(hay, s, e))
                || std::str::from_utf8(hay)
                    .is_ok_and(|t| !t.is_char_boundary(s) || !t.is_char_boundary(e))
            {
                continue;
            }
            prop_assert!(
                findings.iter().any(|f| f.start < e && s < f.end),
                "{:?} at {}..{} not found in {:?}; findings {:?}",
                String::from_utf8_lossy(w),
                s,
                e,
                String::from_utf8_lossy(hay),
                findings.iter().map(|f| f.start..f.end).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}

/// Long runs of one thing the engine wakes up on, with a little around.
fn run_of(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let unit = prop::sample::select(vec![
        "@",
        "@a",
        "a@",
        "a@b.",
        "0",
        "1",
        "4",
        "9 ",
        "1-",
        "1.",
        "+1",
        "DE",
        "GB",
        "AKIA",
        "sk-",
        "ghp_",
        "xoxb-",
        "eyJ",
        "eyJhbGciOi.",
        "password=",
        "password",
        "secret",
        "key=",
        "://u:",
        "-----BEGIN ",
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "CONFIDENTIAL",
        "def ",
        "{",
        "fn ",
        "é",
        "\u{0}",
        "\\",
        "%40",
    ]);
    (
        "\\PC{0,8}",
        prop::collection::vec(unit, 1..4),
        1..max,
        "\\PC{0,8}",
    )
        .prop_map(|(before, units, n, after)| {
            let mut out = before.into_bytes();
            for i in 0..n {
                out.extend_from_slice(units[i % units.len()].as_bytes());
            }
            out.extend_from_slice(after.as_bytes());
            out
        })
}

fn check_run(input: &[u8]) -> Result<(), TestCaseError> {
    let windowed = bundled().scan(input);
    check_spans(input, &windowed)?;
    let naive = bundled().scan_naive(input);
    prop_assert_eq!(windowed.len(), naive.len());
    for (a, b) in windowed.iter().zip(&naive) {
        prop_assert_eq!((&a.detector, a.start, a.end), (&b.detector, b.start, b.end));
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::proptest_config(64))]

    #[test]
    fn dictionary_findings_are_listed_whole_words_and_miss_none(
        (words, hay, ci, ww) in dictionary_case(8, 24),
    ) {
        check_dictionary(&words, &hay, ci, ww)?;
    }

    #[test]
    fn adversarial_runs_scan_alike_windowed_and_naive(input in run_of(2_000)) {
        check_run(&input)?;
    }
}

proptest! {
    #![proptest_config(common::proptest_config(5_000))]

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_dictionaries((words, hay, ci, ww) in dictionary_case(64, 200)) {
        check_dictionary(&words, &hay, ci, ww)?;
    }

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_adversarial_runs(input in run_of(40_000)) {
        check_run(&input)?;
    }
}
