//! `lantern report` over the committed fixtures (`tests/fixtures/audit/`,
//! made by `tests/report_fixtures.rs`), in every format. The expected
//! figures are counted by hand from the fixture table.

use std::path::PathBuf;

use lantern::report::{run_at, Format, ReportOptions};
use serde_json::Value;
use time::macros::datetime;

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit");
    vec![dir.join("small.jsonl"), dir.join("small-2.jsonl.gz")]
}

fn render(format: Format, since: Option<std::time::Duration>) -> String {
    let opts = ReportOptions {
        audit: fixtures(),
        since,
        format,
    };
    let mut out = Vec::new();
    run_at(&opts, datetime!(2025-03-04 00:00 UTC), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn json(since: Option<std::time::Duration>) -> Value {
    serde_json::from_str(&render(Format::Json, since)).unwrap()
}

#[test]
fn json_totals_match_the_fixture_by_hand() {
    let r = json(None);
    let t = &r["totals"];
    assert_eq!(t["requests"], 11);
    assert_eq!(t["sanctioned_requests"], 5);
    assert_eq!(t["shadow_requests"], 6);
    assert_eq!(t["with_findings"], 6);
    assert_eq!(t["findings"], 10);
    assert_eq!(t["blocked"], 2);
    assert_eq!(t["coached"], 2);
    assert_eq!(t["redacted"], 1);
    assert_eq!(t["apps"], 4);
    assert_eq!(t["shadow_apps"], 2);
    assert_eq!(t["users"], 6);
    assert_eq!(t["shadow_users"], 5);

    assert_eq!(r["period"]["first_event"], "2025-03-01T09:00:00Z");
    assert_eq!(r["period"]["last_event"], "2025-03-03T10:00:00Z");
    assert_eq!(r["period"]["days"], 3);
    assert_eq!(r["inputs"]["events"], 12);
    assert_eq!(t["acknowledged"], 1);
    assert_eq!(r["apps"][0]["acknowledged"], 1);
    assert_eq!(r["days"][0]["acknowledged"], 1);
    assert_eq!(r["inputs"]["malformed_lines"], 2);
}

#[test]
fn malformed_lines_are_warnings_with_file_and_line() {
    let r = json(None);
    let warnings: Vec<&str> = r["inputs"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("small.jsonl:9: not an audit event"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("small-2.jsonl.gz:4: ts is not RFC 3339"),
        "{}",
        warnings[1]
    );
}

#[test]
fn apps_carry_people_groups_and_sanctioned_status() {
    let r = json(None);
    let apps = r["apps"].as_array().unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a["app"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["chatgpt", "chatgpt-enterprise", "claude", "copilot"]
    );
    let ent = &apps[1];
    assert_eq!(ent["sanctioned"], true);
    assert_eq!(ent["requests"], 4);
    assert_eq!(ent["users"], 2);
    assert_eq!(ent["redacted"], 1);
    assert_eq!(
        ent["groups"],
        serde_json::json!([
            {"group": "finance", "requests": 3, "users": 1},
            {"group": "eng", "requests": 1, "users": 1}
        ])
    );
    assert_eq!(
        ent["top_users"][0],
        serde_json::json!({"name": "alice", "requests": 3})
    );
    let chatgpt = &apps[0];
    assert_eq!(chatgpt["sanctioned"], false);
    assert_eq!(chatgpt["users"], 3);
    assert_eq!(
        chatgpt["decisions"],
        serde_json::json!({"block": 1, "coach": 1, "log": 1, "tunnel": 1})
    );
    assert_eq!(apps[3]["groups"].as_array().unwrap().len(), 2);
}

#[test]
fn detectors_decisions_risk_and_days() {
    let r = json(None);
    let detectors: Vec<(&str, u64, u64, &str)> = r["detectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["detector"].as_str().unwrap(),
                d["requests"].as_u64().unwrap(),
                d["matches"].as_u64().unwrap(),
                d["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        detectors,
        [
            ("pii.email", 2, 3, "medium"),
            ("code.source", 1, 3, "low"),
            ("pii.credit_card", 1, 1, "high"),
            ("pii.phone", 1, 1, "medium"),
            ("secret.aws_access_key", 1, 1, "critical"),
            ("secret.github_token", 1, 1, "critical"),
        ]
    );
    let decisions: Vec<(&str, u64)> = r["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["decision"].as_str().unwrap(),
                d["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("log", 3),
            ("allow", 2),
            ("block", 2),
            ("coach", 2),
            ("redact", 1),
            ("tunnel", 1)
        ]
    );
    let ranked = |key: &str| -> Vec<(String, u64)> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["name"].as_str().unwrap().to_string(),
                    x["score"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        ranked("risky_users"),
        [
            ("bob".to_string(), 6),
            ("=HYPERLINK(\"http://x\")".to_string(), 4),
            ("alice".to_string(), 4),
            ("carol".to_string(), 3)
        ]
    );
    assert_eq!(
        ranked("risky_apps"),
        [
            ("claude".to_string(), 7),
            ("chatgpt".to_string(), 6),
            ("chatgpt-enterprise".to_string(), 3),
            ("copilot".to_string(), 1)
        ]
    );
    let days: Vec<(&str, u64, u64, u64, u64)> = r["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap(),
                d["requests"].as_u64().unwrap(),
                d["shadow"].as_u64().unwrap(),
                d["with_findings"].as_u64().unwrap(),
                d["users"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            ("2025-03-01", 5, 3, 3, 3),
            ("2025-03-02", 3, 1, 1, 3),
            ("2025-03-03", 3, 2, 2, 3)
        ]
    );
}

#[test]
fn since_keeps_only_the_window() {
    // now = 2025-03-04T00:00Z, 36 h back = 2025-03-02T12:00Z; the event at
    // 14:00+02:00 is exactly on the edge and counts.
    let r = json(Some(std::time::Duration::from_secs(36 * 3600)));
    assert_eq!(r["period"]["window_start"], "2025-03-02T12:00:00Z");
    assert_eq!(r["inputs"]["events"], 5);
    assert_eq!(r["inputs"]["outside_window"], 7);
    assert_eq!(r["period"]["first_event"], "2025-03-02T12:00:00Z");
    assert_eq!(r["totals"]["requests"], 5);
}

#[test]
fn text_has_every_section_and_no_raw_escape_sequences() {
    let text = render(Format::Text, None);
    for heading in [
        "Period      2025-03-01T09:00:00Z .. 2025-03-03T10:00:00Z (3 days)",
        "Summary",
        "requests       11: sanctioned 5 (45.5%), shadow 6 (54.5%)",
        "people         6: 5 used shadow AI",
        "Apps",
        "People and groups per app",
        "groups: finance 3 (1 person), eng 1 (1 person)",
        "Findings by detector",
        "Decisions",
        "Top risky people",
        "Top risky apps",
        "Trend per day (UTC)",
        "warning: ",
    ] {
        assert!(text.contains(heading), "missing {heading:?} in\n{text}");
    }
    assert!(!text.contains('\u{1b}'));
}

#[test]
fn csv_is_one_tidy_table_with_formulas_defused() {
    let csv = render(Format::Csv, None);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("section,key,subkey,metric,value"));
    assert!(csv.contains("\ntotal,,,requests,11\n"));
    assert!(csv.contains("\napp,chatgpt,,sanctioned,false\n"));
    assert!(csv.contains("\napp_group,chatgpt-enterprise,finance,requests,3\n"));
    assert!(csv.contains("\napp_user,chatgpt-enterprise,alice,requests,3\n"));
    assert!(csv.contains("\ndetector,pii.email,,matches,3\n"));
    assert!(csv.contains("\nday,2025-03-03,,shadow,2\n"));
    // A user name that is a spreadsheet formula is quoted and prefixed.
    assert!(csv.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{csv}");
    assert!(!csv.contains(",=HYPERLINK"));
    // Every row has five cells (no cell here contains a comma).
    for line in csv.lines().filter(|l| !l.contains('"')) {
        assert_eq!(line.split(',').count(), 5, "{line}");
    }
}

#[test]
fn html_is_one_self_contained_escaped_file() {
    let html = render(Format::Html, None);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    // Charts are inline SVG: a line chart for the trend, bars for the rest.
    assert!(html.matches("<svg ").count() >= 4, "too few charts");
    assert!(html.contains("<polyline"));
    // Nothing is fetched: no script, no external stylesheet, font or image.
    let lower = html.to_lowercase();
    for banned in [
        "<script", "<link", "@import", "src=", "url(", "//fonts.", "https://",
    ] {
        assert!(!lower.contains(banned), "found {banned}");
    }
    // The hostile user name is shown, escaped.
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // The only http:// is inside that escaped user name.
    assert_eq!(
        lower.matches("http://").count(),
        lower.matches("hyperlink(&quot;http://x&quot;)").count()
    );
    assert!(html.contains("small.jsonl:9"));
}

#[test]
fn empty_input_file_gives_an_empty_report_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("audit.jsonl");
    std::fs::write(&empty, "").unwrap();
    for format in [Format::Text, Format::Json, Format::Csv, Format::Html] {
        let opts = ReportOptions {
            audit: vec![empty.clone()],
            since: None,
            format,
        };
        let mut out = Vec::new();
        run_at(&opts, datetime!(2025-03-04 00:00 UTC), &mut out).unwrap();
        assert!(!out.is_empty());
    }
}
