//! `lantern scan` through its library entry point: output formats, exit
//! meaning, `--lines`, `--rules`, and streaming in bounded chunks.

use std::io::Write;
use std::time::Instant;

use lantern::detect::Engine;
use lantern::scan::{run, scan_reader, Event, Limits, ScanFormat, ScanOptions};

fn scan_file(contents: &[u8], format: ScanFormat, lines: bool) -> (bool, String) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(contents).unwrap();
    let opts = ScanOptions {
        input: Some(file.path().to_path_buf()),
        format,
        lines,
        rules: None,
    };
    let mut out = Vec::new();
    let found = run(&opts, &mut out).expect("scan runs");
    (found, String::from_utf8(out).unwrap())
}

#[test]
fn json_prints_one_object_per_document_with_doc_offsets() {
    let (found, out) = scan_file(
        b"hello\nmail john.doe@example.com\n\nnothing here\n",
        ScanFormat::Json,
        true,
    );
    assert!(found);
    let docs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 4);
    assert_eq!(docs[0], serde_json::json!({"doc": 1, "findings": []}));
    assert_eq!(
        docs[1],
        serde_json::json!({"doc": 2, "findings": [{"detector": "pii.email", "start": 5, "end": 25, "severity": "medium", "preview": "j***@e***.com"}]})
    );
    assert_eq!(docs[3]["doc"], 4);
}

#[test]
fn clean_input_returns_false_and_whole_input_is_one_document() {
    let (found, out) = scan_file(
        b"just some prose\nover two lines\n",
        ScanFormat::Json,
        false,
    );
    assert!(!found);
    assert_eq!(out, "{\"doc\":1,\"findings\":[]}\n");
    let (found, out) = scan_file(b"", ScanFormat::Text, false);
    assert!(!found);
    assert_eq!(out, "");
}

#[test]
fn text_output_is_grep_like_and_masked() {
    let key = "AKIAQYLPMN5HHHFPZAM2";
    let (found, out) = scan_file(
        format!("line one\n  id = {key}\n").as_bytes(),
        ScanFormat::Text,
        false,
    );
    assert!(found);
    assert!(
        out.ends_with(":2:8: critical secret.aws_access_key AKIA************ZAM2\n"),
        "{out}"
    );
    assert!(!out.contains(key));
}

#[test]
fn missing_file_and_bad_rules_are_errors() {
    let opts = ScanOptions {
        input: Some("/nonexistent/input.txt".into()),
        ..ScanOptions::default()
    };
    assert!(run(&opts, &mut Vec::new()).is_err());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "detectors:\n  - id: x.y\n    severity: low\n    keywords: [a]\n    regex: '('\n",
    )
    .unwrap();
    let opts = ScanOptions {
        input: Some(dir.path().join("bad.yaml")),
        rules: Some(dir.path().to_path_buf()),
        ..ScanOptions::default()
    };
    let err = run(&opts, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("bad.yaml:5:12: invalid regex"), "{err}");
}

/// Findings of a streaming scan as (doc, detector, start, end).
fn stream(
    engine: &Engine,
    input: &[u8],
    lines: bool,
    limits: Limits,
) -> Vec<(u64, String, usize, usize)> {
    let mut found = Vec::new();
    scan_reader(engine, input, lines, limits, &mut |e| {
        if let Event::Finding { doc, finding, .. } = e {
            found.push((
                doc,
                finding.detector.to_string(),
                finding.start,
                finding.end,
            ));
        }
        Ok(())
    })
    .unwrap();
    found
}

fn mixed_document() -> Vec<u8> {
    let mut doc = Vec::new();
    for i in 0..400 {
        doc.extend_from_slice(format!("row {i}: user{i}@example.com paid with 4111 1111 1111 1111; key AKIAQYLPMN5HHHFPZAM{} ", (b'A' + (i % 26) as u8) as char).as_bytes());
        doc.extend_from_slice(
            "and some prose — with ünïcödé — between values. "
                .repeat(i % 7)
                .as_bytes(),
        );
    }
    doc
}

#[test]
fn chunked_scan_matches_whole_scan() {
    let engine = Engine::bundled().unwrap();
    let doc = mixed_document();
    let whole: Vec<_> = engine
        .scan(&doc)
        .into_iter()
        .map(|f| (1, f.detector.to_string(), f.start, f.end))
        .collect();
    assert!(whole.len() > 1000);
    for chunk in [1000, 4096, 20_000] {
        let limits = Limits {
            chunk,
            overlap: 0,
            left: 256,
        };
        assert_eq!(stream(&engine, &doc, false, limits), whole, "chunk {chunk}");
    }
}

#[test]
fn lines_mode_streams_long_lines_too() {
    let engine = Engine::bundled().unwrap();
    let doc = mixed_document();
    let mut input = doc.clone();
    input.push(b'\n');
    input.extend_from_slice(b"second line mail a.b@example.org\n");
    let found = stream(
        &engine,
        &input,
        true,
        Limits {
            chunk: 333,
            overlap: 0,
            left: 256,
        },
    );
    let first = engine.scan(&doc).len();
    assert_eq!(found.len(), first + 1);
    assert_eq!(found.last().unwrap(), &(2, "pii.email".to_string(), 17, 32));
}

#[test]
fn adversarial_inputs_stay_linear() {
    let engine = Engine::bundled().unwrap();
    let size = 1 << 20;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("at signs", vec![b'@'; size]),
        ("digits", vec![b'7'; size]),
        ("digit groups", b"1 2 3 4 ".repeat(size / 8)),
        ("emails glued", b"a@b.".repeat(size / 4)),
        ("key prefixes", b"sk-AKIAghp_eyJ".repeat(size / 14)),
        ("dotted", b"1.2.3.".repeat(size / 6)),
    ];
    for (name, input) in cases {
        let t = Instant::now();
        let findings = engine.scan(&input);
        let took = t.elapsed();
        println!("{name}: {} findings in {took:?}", findings.len());
        // Debug builds are slow; quadratic behaviour on 1 MiB would take minutes.
        assert!(took.as_secs() < 10, "{name} took {took:?}");
    }
}
