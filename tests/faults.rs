//! Failing upstreams and failing inspection: each gets a clear answer, is
//! counted, and (for catalog apps) audited; nothing is silently accepted.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{audit_events, metric, post, HttpVersion, Lantern, Upstream};
use lantern::config::FailMode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const CHAT: &str = "https://api.openai.com/v1/chat/completions";

async fn scrape(lantern: &Lantern) -> String {
    lantern.admin_get("/metrics").await.1
}

#[tokio::test]
async fn upstream_certificate_for_another_name_is_a_502_naming_the_error() {
    let upstream = Upstream::start().await;
    // api.mistral.ai is an inspected catalog app; the upstream has no
    // certificate for that name.
    let lantern = Lantern::start_with(&upstream, |c| {
        c.upstream
            .resolve
            .insert("api.mistral.ai:443".into(), upstream.tls_addr);
    })
    .await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    let resp = post(&client, "https://api.mistral.ai/v1/chat/completions", "{}").await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("TLS") && text.contains("certificate"),
        "{text}"
    );
    assert_eq!(upstream.hits(), 0);
    let scrape = scrape(&lantern).await;
    assert_eq!(
        metric(&scrape, "lantern_upstream_errors_total{kind=\"tls\"}"),
        1.0
    );
    let events = audit_events(&upstream, 1).await;
    assert_eq!(events[0]["decision"], "error");
    assert_eq!(events[0]["status"], 502);
    lantern.stop().await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_gets_a_504_in_time() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| {
        c.upstream.response_timeout = Duration::from_millis(300)
    })
    .await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
    let resp = post(&client, "https://api.openai.com/hang", "{}").await;
    assert_eq!(resp.status(), 504);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("did not answer in time"));
    let scrape = scrape(&lantern).await;
    assert_eq!(
        metric(&scrape, "lantern_upstream_errors_total{kind=\"timeout\"}"),
        1.0
    );
    lantern.stop().await;
}

/// An upstream that answers every connection with a head promising 1000
/// bytes, sends 100, and hangs up; over TLS when given a config.
async fn breaking_upstream(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        if let Ok(stream) = acceptor.accept(stream).await {
                            break_off(stream).await;
                        }
                    }
                    None => break_off(stream).await,
                }
            });
        }
    });
    addr
}

async fn break_off<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let mut response = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n".to_vec();
    response.extend_from_slice(&[b'r'; 100]);
    let _ = stream.write_all(&response).await;
    let _ = stream.flush().await;
    // Dropped here: the connection closes 900 bytes short.
}

#[tokio::test]
async fn a_response_that_breaks_off_breaks_off_for_the_client_too() {
    let upstream = Upstream::start().await;
    let tls = breaking_upstream(Some(upstream.ca.server_config(&["api.openai.com"]))).await;
    let plain = breaking_upstream(None).await;
    let lantern = Lantern::start_with(&upstream, |c| {
        c.upstream.resolve.insert("api.openai.com:443".into(), tls);
        c.upstream.resolve.insert("example.test:80".into(), plain);
    })
    .await;
    for (url, version) in [
        ("https://api.openai.com/v1/models", HttpVersion::H1),
        ("https://api.openai.com/v1/models", HttpVersion::H2),
        ("http://example.test/", HttpVersion::H1),
    ] {
        let client = lantern.client(&lantern.ca_pem, version);
        let resp = client.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        // Never a short body passed off as complete.
        assert!(
            resp.bytes().await.is_err(),
            "{url}: truncated body looked complete"
        );
    }
    let scrape = scrape(&lantern).await;
    assert_eq!(
        metric(&scrape, "lantern_upstream_errors_total{kind=\"reset\"}"),
        3.0
    );
    // lantern is still serving.
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
    let resp = post(&client, "https://chatgpt.com/echo", "still here").await;
    assert_eq!(resp.text().await.unwrap(), "still here");
    lantern.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_holds_only_its_own_request() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H2);
    let slow = tokio::spawn({
        let client = client.clone();
        async move { post(&client, "https://api.openai.com/slow", "{}").await }
    });
    upstream.state.slow_arrived.notified().await;
    // Same client, same h2 connection to lantern: this one is not queued
    // behind the slow one.
    let resp = post(&client, "https://api.openai.com/echo", "meanwhile").await;
    assert_eq!(resp.text().await.unwrap(), "meanwhile");
    assert!(!slow.is_finished());
    upstream.state.slow_release.notify_one();
    let resp = slow.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "done");
    lantern.stop().await;
}

#[tokio::test]
async fn a_panicking_inspector_fails_closed_counted_and_audited() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
    let resp = post(&client, CHAT, "PANIC-ME").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["x-lantern-decision"], "block");
    assert_eq!(upstream.hits(), 0);
    // The connection survived the panic.
    let resp = post(&client, CHAT, "fine").await;
    assert_eq!(
        resp.status(),
        404,
        "forwarded to the mock, which has no such path"
    );
    let scrape = scrape(&lantern).await;
    assert_eq!(
        metric(
            &scrape,
            "lantern_uninspected_requests_total{mode=\"closed\",reason=\"failed\"}"
        ),
        1.0
    );
    let events = audit_events(&upstream, 2).await;
    assert_eq!(events[0]["decision"], "block");
    assert_eq!(events[0]["rule"], "inspection failed: closed");
    lantern.stop().await;
}

#[tokio::test]
async fn a_panicking_inspector_fails_open_when_configured() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| c.inspect.on_oversize = FailMode::Open).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
    let resp = post(&client, "https://api.openai.com/echo", "PANIC-ME").await;
    assert_eq!(resp.text().await.unwrap(), "PANIC-ME");
    let scrape = scrape(&lantern).await;
    assert_eq!(
        metric(
            &scrape,
            "lantern_uninspected_requests_total{mode=\"open\",reason=\"failed\"}"
        ),
        1.0
    );
    let events = audit_events(&upstream, 1).await;
    assert_eq!(events[0]["decision"], "log");
    lantern.stop().await;
}

const POLICY: &str =
    "rules:\n  - name: no credentials\n    when: {detectors: [\"secret.*\"]}\n    action: block\n";

/// A chat body labelled gzip that is not gzip: extraction cannot read it.
async fn post_undecodable(lantern: &Lantern) -> reqwest::Response {
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
    client
        .post("https://api.openai.com/echo")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body("this is not gzip, and it could hide AKIAQ7J5LZ3XW4KHPN2D")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unreadable_body_follows_the_fail_mode_and_is_counted_and_audited() {
    for (mode, label, forwarded) in [
        (FailMode::Closed, "closed", false),
        (FailMode::Open, "open", true),
    ] {
        let upstream = Upstream::start().await;
        let lantern =
            Lantern::start_with_policy_and(&upstream, POLICY, |c| c.inspect.on_oversize = mode)
                .await;
        let resp = post_undecodable(&lantern).await;
        assert_eq!(resp.status().is_success(), forwarded, "{label}");
        assert_eq!(upstream.hits(), usize::from(forwarded), "{label}");
        let scrape = scrape(&lantern).await;
        let series =
            format!("lantern_uninspected_requests_total{{mode=\"{label}\",reason=\"unreadable\"}}");
        assert_eq!(metric(&scrape, &series), 1.0, "{label}");
        let events = audit_events(&upstream, 1).await;
        let rule = events[0]["rule"].as_str().unwrap();
        assert!(rule.starts_with("uninspectable"), "{label}: {rule}");
        assert_eq!(
            events[0]["decision"],
            if forwarded { "log" } else { "block" }
        );
        lantern.stop().await;
    }
}

#[tokio::test]
async fn a_body_over_the_cap_is_counted_and_audited_in_both_modes() {
    for (mode, label, status) in [
        (FailMode::Closed, "closed", 413),
        (FailMode::Open, "open", 200),
    ] {
        let upstream = Upstream::start().await;
        let lantern = Lantern::start_with(&upstream, |c| {
            c.inspect.max_body_bytes = 1024;
            c.inspect.on_oversize = mode;
        })
        .await;
        let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
        let resp = post(
            &client,
            "https://api.openai.com/sink",
            vec![b'x'; 64 * 1024],
        )
        .await;
        assert_eq!(resp.status(), status, "{label}");
        let scrape = scrape(&lantern).await;
        let series =
            format!("lantern_uninspected_requests_total{{mode=\"{label}\",reason=\"oversize\"}}");
        assert_eq!(metric(&scrape, &series), 1.0, "{label}");
        let events = audit_events(&upstream, 1).await;
        assert_eq!(events[0]["rule"], format!("inspect.on_oversize: {label}"));
        lantern.stop().await;
    }
}
