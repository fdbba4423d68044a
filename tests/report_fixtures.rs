//! The committed audit fixtures in `tests/fixtures/audit/` and the code
//! that makes them. The fixtures are small on purpose: every figure the
//! report tests expect can be checked by hand against the table below.
//!
//! Regenerate after changing the table:
//! `LANTERN_UPDATE_FIXTURES=1 cargo test --test report_fixtures`

use std::io::{Read, Write};
use std::path::PathBuf;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;

/// ts, user, app, decision, findings (detector, severity, count), groups
/// (`None`: no field; `Some(None)`: `null`).
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, u32)],
    Option<Option<&'static [&'static str]>>,
);

const FIRST: &[Row] = &[
    (
        "2025-03-01T09:00:00Z",
        "alice",
        "chatgpt-enterprise",
        "allow",
        &[],
        Some(Some(&["finance"])),
    ),
    (
        "2025-03-01T09:05:00Z",
        "alice",
        "chatgpt-enterprise",
        "redact",
        &[("pii.email", "medium", 2)],
        Some(Some(&["finance"])),
    ),
    (
        "2025-03-01T10:00:00Z",
        "bob",
        "chatgpt",
        "coach",
        &[],
        Some(Some(&["eng"])),
    ),
    (
        "2025-03-01T10:01:00Z",
        "bob",
        "chatgpt",
        "block",
        &[("secret.aws_access_key", "critical", 1)],
        Some(Some(&["eng"])),
    ),
    (
        "2025-03-01T11:00:00Z",
        "carol",
        "claude",
        "coach",
        &[("pii.email", "medium", 1), ("pii.phone", "medium", 1)],
        None,
    ),
    (
        "2025-03-02T08:00:00Z",
        "alice",
        "copilot",
        "log",
        &[("code.source", "low", 3)],
        Some(Some(&["finance", "eng"])),
    ),
    (
        "2025-03-02T13:00:00Z",
        "<script>alert(1)</script>",
        "chatgpt",
        "tunnel",
        &[],
        None,
    ),
];

const FIRST_AFTER_BAD: &[Row] = &[
    (
        "2025-03-02T14:00:00+02:00",
        "bob",
        "chatgpt-enterprise",
        "allow",
        &[],
        Some(Some(&["eng"])),
    ),
    // bob acknowledges the coach message of 10:00 (an admin listener event).
    ("2025-03-01T10:30:00Z", "bob", "chatgpt", "ack", &[], None),
];

const SECOND: &[Row] = &[
    (
        "2025-03-03T09:00:00Z",
        "=HYPERLINK(\"http://x\")",
        "claude",
        "block",
        &[("secret.github_token", "critical", 1)],
        None,
    ),
    (
        "2025-03-03T09:30:00Z",
        "alice",
        "chatgpt-enterprise",
        "log",
        &[("pii.credit_card", "high", 1)],
        Some(Some(&["finance"])),
    ),
    (
        "2025-03-03T10:00:00Z",
        "dave",
        "chatgpt",
        "log",
        &[],
        Some(None),
    ),
];

fn app(id: &str) -> (&'static str, bool, &'static str) {
    match id {
        "chatgpt" => ("OpenAI", false, "chatgpt.com"),
        "chatgpt-enterprise" => ("OpenAI", true, "api.openai.com"),
        "claude" => ("Anthropic", false, "claude.ai"),
        "copilot" => ("GitHub", true, "api.githubcopilot.com"),
        other => panic!("unknown fixture app {other}"),
    }
}

fn line(n: usize, row: &Row) -> String {
    let (ts, user, app_id, decision, findings, groups) = row;
    let (vendor, sanctioned, host) = match *decision {
        // As `admin.rs` writes them: no vendor, host or sanctioned flag.
        "ack" => ("", false, ""),
        _ => app(app_id),
    };
    let status = match *decision {
        "block" | "coach" => 403,
        _ => 200,
    };
    let mut event = json!({
        "ts": ts,
        "id": format!("{n:016x}"),
        "client_ip": format!("10.0.0.{n}"),
        "user": user,
        "app": app_id,
        "vendor": vendor,
        "sanctioned": sanctioned,
        "host": host,
        "method": "POST",
        "path": "/v1/chat/completions",
        "decision": decision,
        "rule": if *decision == "allow" { serde_json::Value::Null } else { json!("fixture rule") },
        "findings": findings.iter().map(|(d, s, c)| json!({"detector": d, "severity": s, "count": c})).collect::<Vec<_>>(),
        "req_bytes": 1000 + n as u64,
        "status": status,
        "latency_ms": n as u64,
    });
    if let Some(groups) = groups {
        event["groups"] = json!(groups);
    }
    if *decision == "ack" {
        event["justification"] = json!("fixture justification");
    }
    let mut s = serde_json::to_string(&event).unwrap();
    s.push('\n');
    s
}

/// `small.jsonl`: 9 events (the last an acknowledgement), a blank line
/// (line 8) and a malformed one (line 9).
pub fn small() -> String {
    let mut s = String::new();
    for (i, row) in FIRST.iter().enumerate() {
        s += &line(i + 1, row);
    }
    s += "\n";
    s += "{not json\n";
    s += &line(10, &FIRST_AFTER_BAD[0]);
    s += &line(11, &FIRST_AFTER_BAD[1]);
    s
}

/// `small-2.jsonl.gz` decompressed: 3 events and, on line 4, an event with
/// a bad timestamp.
pub fn small_2() -> String {
    let mut s = String::new();
    for (i, row) in SECOND.iter().enumerate() {
        s += &line(20 + i, row);
    }
    s += "{\"ts\":\"not a time\",\"app\":\"x\",\"decision\":\"log\"}\n";
    s
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit")
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

#[test]
fn committed_fixtures_match_their_generator() {
    let plain = dir().join("small.jsonl");
    let gz = dir().join("small-2.jsonl.gz");
    if std::env::var_os("LANTERN_UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        std::fs::write(&plain, small()).unwrap();
        std::fs::write(&gz, gzip(&small_2())).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&plain).unwrap(),
        small(),
        "{} is stale: LANTERN_UPDATE_FIXTURES=1 cargo test --test report_fixtures",
        plain.display()
    );
    let mut text = String::new();
    MultiGzDecoder::new(std::fs::File::open(&gz).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, small_2(), "{} is stale", gz.display());
}
