//! The HTML coaching page as a person sees it: rendered by headless
//! Chromium (Debian's `chromium`), screenshot saved as a test artifact
//! under `target/test-artifacts/`, text checked from the rendered DOM.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{HttpVersion, Lantern, Upstream};

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(PathBuf::from)
        .find(|bin| {
            Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Flags for a sandbox-less, offline, headless run.
fn headless(bin: &PathBuf, profile: &std::path::Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,900",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

#[tokio::test]
async fn coaching_page_renders_in_a_real_browser() {
    let Some(bin) = chromium() else {
        eprintln!("chromium not installed; skipping (CI installs it)");
        return;
    };
    let upstream = Upstream::start().await;
    let policy = "coach: {brand: Acme Security}\nrules:\n  - {name: pii, when: {detectors: [\"pii.*\"]}, action: coach}\n";
    let lantern = Lantern::start_with_policy(&upstream, policy).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    let resp = client
        .post("https://chatgpt.com/backend-api/conversation")
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .body("{\"content\":\"write to jane.doe@acme-corp.com\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let html = resp.text().await.unwrap();
    lantern.stop().await;

    let work = tempfile::tempdir().unwrap();
    let page = work.path().join("coaching.html");
    std::fs::write(&page, &html).unwrap();
    let url = format!("file://{}", page.display());
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("coaching-page.png");
    let _ = std::fs::remove_file(&shot);

    let out = headless(&bin, &work.path().join("profile-a"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let out = headless(&bin, &work.path().join("profile-b"))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("Check before you send this to ChatGPT"),
        "{dom}"
    );
    assert!(dom.contains("pii.email"), "{dom}");
    assert!(dom.contains("Give a reason and continue"), "{dom}");
    assert!(dom.contains("Acme Security"), "{dom}");
    assert!(!dom.contains("jane.doe@acme-corp.com"));
}
