//! Recall and precision of the bundled rules per detector family on the
//! generated corpus (tests/fixtures/detect/corpus.jsonl, see generate.py).
//! Prints counts only, never values.

use std::collections::BTreeMap;

use lantern::detect::Engine;

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    labels: Vec<Label>,
}

#[derive(serde::Deserialize)]
struct Label {
    detector: String,
    value: String,
}

#[derive(Default, Debug)]
struct Score {
    tp: usize,
    fn_: usize,
    fp: usize,
}

fn family(detector: &str) -> &str {
    detector.split('.').next().unwrap_or(detector)
}

#[test]
fn corpus_recall_and_precision_per_family() {
    let engine = Engine::bundled().expect("bundled rules compile");
    let corpus = include_str!("fixtures/detect/corpus.jsonl");
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut misses: BTreeMap<String, usize> = BTreeMap::new();
    let mut false_alarms: BTreeMap<String, usize> = BTreeMap::new();
    for (n, line) in corpus.lines().enumerate() {
        let case: Case =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("corpus line {}: {e}", n + 1));
        let findings = engine.scan(case.text.as_bytes());
        let mut used = vec![false; findings.len()];
        for label in &case.labels {
            let start = case
                .text
                .find(&label.value)
                .unwrap_or_else(|| panic!("corpus line {}: label not in text", n + 1));
            let end = start + label.value.len();
            let hit = findings.iter().enumerate().find(|(i, f)| {
                !used[*i] && *f.detector == label.detector && f.start < end && start < f.end
            });
            let score = scores
                .entry(family(&label.detector).to_string())
                .or_default();
            match hit {
                Some((i, _)) => {
                    used[i] = true;
                    score.tp += 1;
                }
                None => {
                    score.fn_ += 1;
                    *misses
                        .entry(format!("{} (line {})", label.detector, n + 1))
                        .or_default() += 1;
                }
            }
        }
        for (f, used) in findings.iter().zip(used) {
            if !used {
                scores
                    .entry(family(&f.detector).to_string())
                    .or_default()
                    .fp += 1;
                *false_alarms
                    .entry(format!("{} {} (line {})", f.detector, f.preview, n + 1))
                    .or_default() += 1;
            }
        }
    }
    let mut failed = Vec::new();
    println!(
        "{:<14} {:>5} {:>5} {:>5} {:>8} {:>9}",
        "family", "tp", "fn", "fp", "recall", "precision"
    );
    for (fam, s) in &scores {
        let recall = s.tp as f64 / (s.tp + s.fn_).max(1) as f64;
        let precision = s.tp as f64 / (s.tp + s.fp).max(1) as f64;
        println!(
            "{fam:<14} {:>5} {:>5} {:>5} {recall:>8.3} {precision:>9.3}",
            s.tp, s.fn_, s.fp
        );
        if recall < 0.95 || precision < 0.97 {
            failed.push(fam.clone());
        }
    }
    println!("misses: {misses:?}");
    println!("false alarms: {false_alarms:?}");
    assert!(
        failed.is_empty(),
        "families under 0.95 recall / 0.97 precision: {failed:?}"
    );
}
