//! The deployment files only reference metrics lantern really exports.

mod common;

use std::collections::BTreeSet;

use common::{Lantern, Upstream};

/// Every `lantern_*` / `process_*` metric name in a text file.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text
        .match_indices("lantern_")
        .chain(text.match_indices("process_"))
    {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.ends_with('_') {
            continue; // prose such as "every lantern_* metric"
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        names.insert(base.to_string());
    }
    names
}

#[tokio::test]
async fn every_metric_in_dashboard_and_alerts_is_exported() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    // Labelled series appear once they have a value: make some traffic,
    // including a finding.
    let client = lantern.client(&lantern.ca_pem, common::HttpVersion::Any);
    let resp = common::post(&client, "https://api.openai.com/echo", "BLOCK-ME").await;
    assert_eq!(resp.status(), 403);
    let (_, scrape) = lantern.admin_get("/metrics").await;
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut checked = 0;
    for file in [
        "deploy/grafana/lantern.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} uses no lantern metric?");
        for name in used {
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which lantern does not export"
            );
            checked += 1;
        }
    }
    assert!(checked > 10);
    lantern.stop().await;
}

#[tokio::test]
async fn counters_and_histograms_move_with_traffic() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let (_, before) = lantern.admin_get("/metrics").await;
    let series = [
        "lantern_requests_total{app=\"openai-api\",decision=\"allow\"}",
        "lantern_tunnels_total{kind=\"inspect\"}",
        "lantern_inspect_seconds_count",
        "lantern_upstream_seconds_count",
        "lantern_audit_events_total",
    ];
    for s in series {
        assert_eq!(common::metric(&before, s), 0.0, "{s} before traffic");
    }
    let client = lantern.client(&lantern.ca_pem, common::HttpVersion::H1);
    for _ in 0..3 {
        assert_eq!(
            common::post(&client, "https://api.openai.com/echo", "hi")
                .await
                .status(),
            200
        );
    }
    // The audit writer is asynchronous: wait (bounded) for its counter.
    let after = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let (_, after) = lantern.admin_get("/metrics").await;
            if common::metric(&after, "lantern_audit_events_total") >= 3.0 {
                return after;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("audit events were not counted");
    assert_eq!(common::metric(&after, series[0]), 3.0);
    assert_eq!(
        common::metric(&after, series[1]),
        1.0,
        "one CONNECT, keep-alive"
    );
    assert_eq!(common::metric(&after, series[2]), 3.0);
    assert_eq!(common::metric(&after, series[3]), 3.0);
    assert!(common::metric(&after, "lantern_upstream_seconds_sum") > 0.0);
    assert!(common::metric(&after, "process_resident_memory_bytes") > 0.0);
    lantern.stop().await;
}
