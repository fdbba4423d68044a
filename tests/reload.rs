//! Reloads under load: twenty reloads, half of them invalid, while clients
//! keep sending; no request fails and the right policy is in force after
//! each valid reload.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{post, HttpVersion, Lantern, Upstream};

const SECRET_PROMPT: &str = "deploy with AKIAQ3EGRZBXL7MNPT4K";
const BLOCKING: &str =
    "rules:\n  - {name: creds, when: {detectors: [\"secret.*\"]}, action: block}\n";
const LOGGING: &str = "default: log\n";
const INVALID: &str =
    "rules:\n  - {name: typo, when: {detectors: [\"secrets.*\"]}, action: block}\n";

#[tokio::test]
async fn twenty_reloads_half_invalid_under_load() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with_policy(&upstream, LOGGING).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/rules/apps.yaml"),
        dir.path().join("rules/apps.yaml"),
    )
    .unwrap();
    let config = dir.path().join("lantern.yaml");
    std::fs::write(&config, "rules_dir: rules\npolicy: policy.yaml\n").unwrap();
    let policy = dir.path().join("policy.yaml");
    let ack_base = format!("http://{}", lantern.admin_addr);

    // Bounded background load of clean prompts.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
        let (stop, sent) = (stop.clone(), sent.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = 0;
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let resp = post(&client, "https://api.openai.com/echo", "what is 2+2?").await;
                if resp.status() != 200 || resp.text().await.unwrap() != "what is 2+2?" {
                    failures += 1;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }

    let probe = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    let mut in_force = LOGGING;
    for i in 0..20 {
        let next = match i % 4 {
            0 => BLOCKING,
            2 => LOGGING,
            _ => INVALID,
        };
        std::fs::write(&policy, next).unwrap();
        let ok_before = reloads(&lantern, "ok").await;
        lantern::rules::reload(&lantern.proxy, Some(&config), &ack_base, "test");
        if next == INVALID {
            assert_eq!(
                reloads(&lantern, "ok").await,
                ok_before,
                "invalid policy must not load"
            );
        } else {
            in_force = next;
        }
        let status = post(&probe, "https://api.openai.com/echo", SECRET_PROMPT)
            .await
            .status();
        let expected = if in_force == BLOCKING { 403 } else { 200 };
        assert_eq!(status, expected, "after reload {i}");
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        assert_eq!(worker.await.unwrap(), 0, "a request failed during reloads");
    }
    assert!(sent.load(Ordering::Relaxed) > 0);
    assert_eq!(reloads(&lantern, "ok").await, 10.0);
    assert_eq!(reloads(&lantern, "error").await, 10.0);
    lantern.stop().await;
}

async fn reloads(lantern: &Lantern, result: &str) -> f64 {
    let (_, scrape) = lantern.admin_get("/metrics").await;
    common::metric(
        &scrape,
        &format!("lantern_policy_reloads_total{{result=\"{result}\"}}"),
    )
}
