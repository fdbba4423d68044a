//! Rule files: every problem reported at once as `file:line:col: message`,
//! rule directories, and dictionary rules at 100,000 entries.

use std::time::Instant;

use lantern::detect::Engine;

fn errors(src: &str) -> Vec<String> {
    match Engine::from_yaml("rules.yaml", src) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn bad_regex_is_reported_at_the_regex_value() {
    let errs = errors("detectors:\n  - id: secret.x\n    severity: high\n    keywords: [abc]\n    regex: 'abc(['\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("rules.yaml:5:12: invalid regex"),
        "{errs:?}"
    );
}

#[test]
fn unknown_validator_is_reported_at_its_name() {
    let errs = errors("detectors:\n  - id: secret.x\n    severity: high\n    keywords: [abc]\n    regex: abc\n    validate: [luhn, crc99]\n");
    assert_eq!(errs, vec!["rules.yaml:6:22: unknown validator `crc99`; known: luhn, card, iban_mod97, us_ssn, uk_nino, ip, phone, email, jwt, password, entropy, length, has_digit, has_letter, not_placeholder, not_uuid"]);
}

#[test]
fn duplicate_id_points_at_both_definitions() {
    let rule = "  - id: pii.x\n    severity: low\n    keywords: [a]\n    regex: a\n";
    let errs = errors(&format!("detectors:\n{rule}{rule}"));
    assert_eq!(
        errs,
        vec!["rules.yaml:6:9: duplicate detector id `pii.x` (first defined at rules.yaml:2:9)"]
    );
}

#[test]
fn unknown_key_lists_the_expected_ones() {
    let errs = errors("detectors:\n  - id: pii.x\n    severity: low\n    keywords: [a]\n    regex: a\n    sevrity: high\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(
            "rules.yaml:6:5: unknown key `sevrity` (expected one of: id, description, severity"
        ),
        "{errs:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let src = "detectors:\n  - id: Bad Id\n    severity: extreme\n    regex: a\n  - id: pii.y\n    severity: low\n    keywords: [b]\n    regex: '('\n    mask: sometimes\n";
    let errs = errors(src);
    let lines: Vec<&str> = errs
        .iter()
        .map(|e| e.split(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        vec![
            "rules.yaml:2:9",
            "rules.yaml:3:15",
            "rules.yaml:4:5",
            "rules.yaml:9:11"
        ],
        "{errs:?}"
    );
}

#[test]
fn invalid_yaml_has_a_position() {
    let errs = errors("detectors:\n  - id: [unclosed\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("rules.yaml:3:"), "{errs:?}");
}

#[test]
fn from_dir_reads_every_yaml_and_resolves_word_lists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "detectors:\n  - id: org.codename\n    severity: high\n    dictionary: {file: names.txt}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.yaml"), "detectors:\n  - id: org.ticket\n    severity: low\n    keywords: [TICKET-]\n    regex: 'TICKET-[0-9]{4}'\n").unwrap();
    std::fs::write(
        dir.path().join("names.txt"),
        "# code names\nBlue Heron\nOsprey\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a rule file").unwrap();
    let engine = Engine::from_dir(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        engine.detector_ids().collect::<Vec<_>>(),
        vec!["org.codename", "org.ticket"]
    );
    let found: Vec<(String, usize)> = engine
        .scan(b"the blue heron launch, see TICKET-1234; ospreys")
        .iter()
        .map(|f| (f.detector.to_string(), f.start))
        .collect();
    assert_eq!(
        found,
        vec![
            ("org.codename".to_string(), 4),
            ("org.ticket".to_string(), 27)
        ]
    );
}

#[test]
fn missing_word_list_is_a_positioned_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, "detectors:\n  - id: org.codename\n    severity: high\n    dictionary: {file: missing.txt}\n").unwrap();
    let errs = Engine::from_dir(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .to_string()
            .starts_with(&format!("{}:4:24: word list `missing.txt`", path.display())),
        "{}",
        errs[0]
    );
}

#[test]
fn dictionary_with_100k_entries() {
    let dir = tempfile::tempdir().unwrap();
    let words: Vec<String> = (0..100_000).map(|i| format!("customer{i:06}x")).collect();
    std::fs::write(dir.path().join("customers.txt"), words.join("\n")).unwrap();
    std::fs::write(dir.path().join("org.yaml"), "detectors:\n  - id: confidential.keyword\n    severity: high\n    dictionary: {file: customers.txt}\n").unwrap();
    let t = Instant::now();
    let engine = Engine::from_dir(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
    let built = t.elapsed();
    assert_eq!(engine.dictionary_words(), 100_000);
    let mut text = String::new();
    for i in (0..100_000).step_by(9_973) {
        text.push_str(&format!(
            "Notes about CUSTOMER{i:06}X and Customer{:06}Xy. ",
            i + 1
        ));
    }
    let t = Instant::now();
    let findings = engine.scan(text.as_bytes());
    println!(
        "100k-word dictionary: built in {built:?}, scanned {} bytes in {:?}",
        text.len(),
        t.elapsed()
    );
    // Every first name matches (case-insensitive); the `…Xy` ones are not whole words.
    assert_eq!(findings.len(), 11);
    assert!(findings
        .iter()
        .all(|f| &*f.detector == "confidential.keyword"));
}

#[test]
fn bundled_rules_compile_fast() {
    let t = Instant::now();
    let engine = Engine::bundled().expect("bundled rules compile");
    let elapsed = t.elapsed();
    println!(
        "bundled: {} detectors in {elapsed:?}",
        engine.detector_ids().count()
    );
    assert!(elapsed.as_millis() < 2_000, "compile took {elapsed:?}");
}

/// Digit anchors and keywords are found by separate passes; a pattern with
/// both, a keyword that starts with a digit, and keywords inside a digit run
/// must all still wake their regex.
#[test]
fn digit_anchor_and_digit_keywords_share_one_pattern() {
    let src = r#"
detectors:
  - id: test.ticket
    severity: low
    keywords: [TKT, 9x]
    anchors: [digits]
    min_digits: 6
    regex: '\b((?:TKT-|9x)?[0-9]{6})\b'
    window: {before: 8, after: 16}
"#;
    let engine = Engine::from_yaml("rules.yaml", src).expect("compiles");
    for input in [
        "see TKT-123456 now",
        "id 123456.",
        "code 9x654321 ok",
        "7779x111222",
    ] {
        let hay = input.as_bytes();
        assert_eq!(
            engine.scan(hay),
            engine.scan_naive(hay),
            "windowed and naive scans differ on {input:?}"
        );
    }
    assert_eq!(engine.scan(b"see TKT-123456 now").len(), 1);
    assert_eq!(engine.scan(b"code 9x654321 ok").len(), 1);
}
