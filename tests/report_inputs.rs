//! What `lantern report` reads: errors for missing input, gzip and plain
//! alike, a truncated gzip, and the files the audit writer itself leaves
//! behind after rotation.

use std::io::Write;
use std::path::PathBuf;

use lantern::audit::{
    rotated_path, AuditLog, AuditMetrics, AuditOptions, Destination, Event, FindingCount,
};
use lantern::report::{build, run, Format, ReportOptions};
use prometheus::IntCounter;
use time::macros::datetime;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audit")
        .join(name)
}

#[test]
fn no_audit_file_is_a_clear_error() {
    let opts = ReportOptions {
        audit: vec![],
        since: None,
        format: Format::Text,
    };
    let err = run(&opts, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("--audit"), "{err}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let opts = ReportOptions {
        audit: vec![PathBuf::from("/nonexistent/audit.jsonl")],
        since: None,
        format: Format::Json,
    };
    let err = format!("{:#}", run(&opts, &mut Vec::new()).unwrap_err());
    assert!(err.contains("/nonexistent/audit.jsonl"), "{err}");
}

#[test]
fn gzip_is_recognised_by_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("audit.jsonl.3");
    std::fs::copy(fixture("small-2.jsonl.gz"), &renamed).unwrap();
    let a = build(
        &[fixture("small-2.jsonl.gz")],
        None,
        datetime!(2025-03-04 00:00 UTC),
    )
    .unwrap();
    let b = build(&[renamed], None, datetime!(2025-03-04 00:00 UTC)).unwrap();
    assert_eq!(a.totals, b.totals);
    assert_eq!(a.totals.counts.requests, 3);
}

#[test]
fn a_truncated_gzip_keeps_what_was_read_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..2000 {
        writeln!(
            gz,
            r#"{{"ts":"2025-03-01T00:00:00Z","app":"a","user":"u{i}","decision":"log"}}"#
        )
        .unwrap();
    }
    let bytes = gz.finish().unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let r = build(&[path], None, datetime!(2025-03-04 00:00 UTC)).unwrap();
    assert_eq!(r.inputs.unreadable_tails, 1);
    assert!(r.totals.counts.requests > 0 && r.totals.counts.requests < 2000);
    assert!(
        r.inputs.warnings[0].contains("cut.jsonl.gz:"),
        "{:?}",
        r.inputs.warnings
    );
}

fn metrics() -> AuditMetrics {
    AuditMetrics {
        written: IntCounter::new("w", "w").unwrap(),
        write_errors: IntCounter::new("e", "e").unwrap(),
        dropped: IntCounter::new("d", "d").unwrap(),
    }
}

#[test]
fn report_reads_every_file_the_rotating_writer_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let m = metrics();
    let log = AuditLog::open_with(
        Destination::File(path.clone()),
        m.clone(),
        AuditOptions {
            max_bytes: Some(4096),
            keep: 100,
        },
    )
    .unwrap();
    for i in 0..300u32 {
        // Paced so the bounded queue never overflows on a slow machine.
        while m.written.get() + 1000 < u64::from(i) {
            std::thread::yield_now();
        }
        log.record(Event {
            ts: format!("2025-03-0{}T12:00:00Z", 1 + i % 3),
            id: lantern::audit::incident_id(),
            client_ip: "10.0.0.1".parse().unwrap(),
            user: format!("user{}", i % 7),
            groups: Vec::new(),
            app: if i % 2 == 0 { "chatgpt" } else { "claude" }.into(),
            vendor: "V".into(),
            sanctioned: false,
            host: "h".into(),
            method: "POST".into(),
            path: "/".into(),
            provider: None,
            endpoint: None,
            decision: if i % 10 == 0 { "block" } else { "log" }.into(),
            rule: None,
            findings: vec![FindingCount {
                detector: "pii.email".into(),
                severity: "medium".into(),
                count: 1,
            }],
            req_bytes: 1,
            status: 200,
            latency_ms: 1,
            justification: None,
        });
    }
    drop(log);
    assert_eq!(m.written.get(), 300);
    let mut files = vec![path.clone()];
    let mut n = 1;
    while rotated_path(&path, n).exists() {
        files.push(rotated_path(&path, n));
        n += 1;
    }
    assert!(
        files.len() > 5,
        "expected rotation, got {} files",
        files.len()
    );
    let r = build(&files, None, datetime!(2025-03-04 00:00 UTC)).unwrap();
    assert_eq!(r.inputs.malformed_lines, 0);
    assert_eq!(r.totals.counts.requests, 300);
    assert_eq!(r.totals.counts.blocked, 30);
    assert_eq!(r.totals.users, 7);
    assert_eq!(r.days.len(), 3);
}
