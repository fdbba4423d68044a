//! The proxy path end to end: real clients → lantern → a local upstream.

mod common;

use std::sync::Arc;

use common::{fnv1a, metric, post, HttpVersion, Lantern, Upstream, FNV_OFFSET};
use futures_util::StreamExt;
use lantern::config::FailMode;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PROMPT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"my key is AKIA2E0A8F3B244C9986 \u0040 line\nend"}],"stream":false}"#;

#[tokio::test]
async fn intercepted_h1_request_reaches_inspector_and_upstream_intact() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
    let resp = client
        .post("https://api.openai.com/echo?x=1")
        .header("content-type", "application/json")
        .body(PROMPT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.headers()["x-upstream-host"], "api.openai.com");
    assert_eq!(resp.headers()["x-upstream-version"], "HTTP/1.1");
    assert!(resp.headers().get("x-lantern-decision").is_none());
    assert_eq!(resp.text().await.unwrap(), PROMPT);
    let seen = lantern.recorder.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "https://api.openai.com/echo?x=1");
    assert_eq!(&seen[0].1[..], PROMPT.as_bytes());
    lantern.stop().await;
}

#[tokio::test]
async fn intercepted_h2_client_is_served_h2_and_upstream_gets_h2() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| c.upstream.http2 = true).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H2);
    for _ in 0..3 {
        let resp = post(&client, "https://api.openai.com/echo", PROMPT).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.headers()["x-upstream-version"], "HTTP/2.0");
        assert_eq!(resp.text().await.unwrap(), PROMPT);
    }
    assert_eq!(lantern.recorder.seen().len(), 3);
    lantern.stop().await;
}

#[tokio::test]
async fn intercepted_host_presents_a_lantern_leaf_not_the_upstream_certificate() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    // Trusting only the upstream's CA, the client must reject lantern's leaf.
    let client = lantern.client(&upstream.ca.cert_pem, HttpVersion::Any);
    let err = client
        .get("https://api.openai.com/echo")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    assert_eq!(upstream.hits(), 0);
    lantern.stop().await;
}

#[tokio::test]
async fn blind_tunnel_never_sees_plaintext() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    // example.test is not in the catalog: the client talks TLS with the
    // upstream itself and succeeds trusting only the upstream's CA.
    let client = lantern.client(&upstream.ca.cert_pem, HttpVersion::Any);
    let resp = post(&client, "https://example.test/echo", "hello").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello");
    // …and fails trusting only lantern's CA: no lantern leaf was presented.
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    assert!(client
        .get("https://example.test/echo")
        .send()
        .await
        .is_err());
    assert!(lantern.recorder.seen().is_empty());
    let (_, scrape) = lantern.admin_get("/metrics").await;
    assert_eq!(
        metric(&scrape, "lantern_tunnels_total{kind=\"blind\"}"),
        2.0
    );
    lantern.stop().await;
}

#[tokio::test]
async fn absolute_form_plain_http_is_forwarded_and_catalog_hosts_inspected() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
    let resp = post(&client, "http://example.test/echo", "plain").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream-host"], "example.test");
    assert_eq!(resp.text().await.unwrap(), "plain");
    assert!(
        lantern.recorder.seen().is_empty(),
        "non-catalog host is not inspected"
    );
    let resp = post(&client, "http://api.openai.com/echo", "to an AI").await;
    assert_eq!(resp.text().await.unwrap(), "to an AI");
    assert_eq!(lantern.recorder.seen()[0].0, "http://api.openai.com/echo");
    lantern.stop().await;
}

#[tokio::test]
async fn inspector_block_is_answered_by_lantern_and_never_sent_upstream() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    let resp = post(
        &client,
        "https://api.openai.com/echo",
        "please BLOCK-ME now",
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-lantern-decision"], "block");
    assert_eq!(resp.text().await.unwrap(), "blocked by test policy");
    assert_eq!(upstream.hits(), 0);
    let (_, scrape) = lantern.admin_get("/metrics").await;
    assert_eq!(
        metric(
            &scrape,
            "lantern_requests_total{app=\"openai-api\",decision=\"block\"}"
        ),
        1.0
    );
    lantern.stop().await;
}

#[tokio::test]
async fn sse_chunks_arrive_before_the_upstream_response_ends() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    for version in [HttpVersion::H1, HttpVersion::H2] {
        let client = lantern.client(&lantern.ca_pem, version);
        let resp = client
            .get("https://api.openai.com/sse")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut stream = resp.bytes_stream();
        // The upstream holds the second event until released: the first
        // must arrive on its own.
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"data: one\n\n");
        upstream.state.sse_release.notify_one();
        let mut rest = Vec::new();
        while let Some(chunk) = stream.next().await {
            rest.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(rest, b"data: two\n\n");
    }
    lantern.stop().await;
}

fn big_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn ten_mib_upload_over_the_cap_streams_through_when_failing_open() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| c.inspect.on_oversize = FailMode::Open).await;
    let body = big_body(10 << 20);
    let expected = format!("{} {:x}", body.len(), fnv1a(&body, FNV_OFFSET));
    for version in [HttpVersion::H1, HttpVersion::H2] {
        let client = lantern.client(&lantern.ca_pem, version);
        let resp = post(&client, "https://api.openai.com/sink", body.clone()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), expected);
    }
    // Also through a blind tunnel.
    let client = lantern.client(&upstream.ca.cert_pem, HttpVersion::Any);
    let resp = post(&client, "https://example.test/sink", body.clone()).await;
    assert_eq!(resp.text().await.unwrap(), expected);
    assert!(
        lantern.recorder.seen().is_empty(),
        "over-cap bodies are not inspected"
    );
    let (_, scrape) = lantern.admin_get("/metrics").await;
    assert_eq!(
        metric(
            &scrape,
            "lantern_uninspected_requests_total{mode=\"open\",reason=\"oversize\"}"
        ),
        2.0
    );
    lantern.stop().await;
}

#[tokio::test]
async fn over_the_cap_fails_closed_with_413_and_nothing_upstream() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| {
        c.inspect.max_body_bytes = 64 * 1024;
        c.inspect.on_oversize = FailMode::Closed;
    })
    .await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H2);
    let resp = post(&client, "https://api.openai.com/sink", big_body(256 * 1024)).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["x-lantern-decision"], "block");
    assert!(resp.text().await.unwrap().contains("inspection limit"));
    assert_eq!(upstream.hits(), 0);
    // Within the cap, the same client gets through.
    let resp = post(&client, "https://api.openai.com/echo", "small").await;
    assert_eq!(resp.status(), 200);
    lantern.stop().await;
}

#[tokio::test]
async fn client_outside_the_allow_list_is_refused() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| {
        c.clients.allow = vec!["10.0.0.0/8".parse().unwrap()]
    })
    .await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
    let resp = client.get("http://example.test/echo").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("not allowed"));
    assert_eq!(upstream.hits(), 0);
    lantern.stop().await;
}

/// Sends a raw CONNECT and returns the status line.
async fn raw_connect(lantern: &Lantern, authority: &str) -> (String, BufReader<TcpStream>) {
    let mut stream = BufReader::new(TcpStream::connect(lantern.proxy_addr).await.unwrap());
    stream
        .get_mut()
        .write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut status = String::new();
    stream.read_line(&mut status).await.unwrap();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    (status, stream)
}

#[tokio::test]
async fn connect_to_a_port_outside_the_allow_list_is_forbidden() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let (status, _) = raw_connect(&lantern, "example.test:22").await;
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    lantern.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_is_a_clear_502() {
    let upstream = Upstream::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let lantern = Lantern::start_with(&upstream, |c| {
        c.upstream
            .resolve
            .insert("api.openai.com:443".into(), closed);
        c.upstream.resolve.insert("example.test:443".into(), closed);
    })
    .await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    let resp = post(&client, "https://api.openai.com/echo", "x").await;
    assert_eq!(resp.status(), 502);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("cannot reach api.openai.com:443"));
    let (status, _) = raw_connect(&lantern, "example.test:443").await;
    assert!(status.starts_with("HTTP/1.1 502"), "{status}");
    lantern.stop().await;
}

#[tokio::test]
async fn upstream_with_an_untrusted_certificate_is_refused() {
    let upstream = Upstream::start().await;
    // lantern does not trust the upstream's CA: the exchange must fail.
    let lantern = Lantern::start_with(&upstream, |c| c.upstream.ca_file = None).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    let resp = post(&client, "https://api.openai.com/echo", "x").await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(text.contains("TLS"), "{text}");
    assert_eq!(upstream.hits(), 0);
    lantern.stop().await;
}

#[tokio::test]
async fn websocket_upgrade_to_a_catalog_host_passes_through() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let (status, stream) = raw_connect(&lantern, "chatgpt.com:443").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut lantern.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("chatgpt.com").unwrap();
    let mut tls = connector.connect(name, stream.into_inner()).await.unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: chatgpt.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut tls = BufReader::new(tls);
    let mut status = String::new();
    tls.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut line = String::new();
        tls.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    tls.get_mut().write_all(b"ping over upgrade").await.unwrap();
    let mut echoed = [0u8; 17];
    tls.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping over upgrade");
    lantern.stop().await;
}

#[tokio::test]
async fn admin_serves_health_readiness_ca_and_metrics() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    assert_eq!(
        lantern.admin_get("/healthz").await,
        (200, "ok\n".to_string())
    );
    assert_eq!(lantern.admin_get("/readyz").await.0, 200);
    assert_eq!(
        lantern.admin_get("/ca.pem").await,
        (200, lantern.ca_pem.clone())
    );
    assert_eq!(lantern.admin_get("/nope").await.0, 404);
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    post(&client, "https://api.openai.com/echo", PROMPT).await;
    let (_, scrape) = lantern.admin_get("/metrics").await;
    assert_eq!(
        metric(&scrape, "lantern_tunnels_total{kind=\"inspect\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &scrape,
            "lantern_requests_total{app=\"openai-api\",decision=\"allow\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&scrape, "lantern_inspected_bytes_total"),
        PROMPT.len() as f64
    );
    assert_eq!(metric(&scrape, "lantern_inspect_seconds_count"), 1.0);
    assert!(scrape.contains("lantern_build_info{version="));
    lantern.stop().await;
}

#[tokio::test]
async fn curl_through_lantern_h1_and_h2() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not installed; skipping");
        return;
    }
    let upstream = Upstream::start().await;
    let lantern = Lantern::start(&upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("lantern-ca.pem");
    std::fs::write(&ca, &lantern.ca_pem).unwrap();
    for flag in ["--http1.1", "--http2"] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", flag, "-x"])
            .arg(format!("http://{}", lantern.proxy_addr))
            .arg("--cacert")
            .arg(&ca)
            .args(["-w", "\n%{http_version}", "--data-binary", PROMPT])
            .arg("https://api.openai.com/echo")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl {flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, version) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(body, PROMPT);
        assert_eq!(version, if flag == "--http2" { "2" } else { "1.1" });
    }
    lantern.stop().await;
}

/// Waits until the audit log holds `n` lines (bounded), then parses them.
#[tokio::test]
async fn audit_records_catalog_requests_and_discover_only_tunnels_without_secrets() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| {
        c.upstream
            .resolve
            .insert("api.replicate.com:443".into(), upstream.tls_addr);
    })
    .await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    let resp = post(
        &client,
        "https://api.openai.com/echo?key=AIzaSyQUERYSECRET",
        PROMPT,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = post(&client, "https://api.openai.com/echo", "BLOCK-ME").await;
    let incident = resp.headers()["x-lantern-incident"]
        .to_str()
        .unwrap()
        .to_string();
    // Discover-only app: blind tunnel, still audited (the TLS fails: the
    // upstream has no certificate for this name, which does not matter here).
    let _ = client.get("https://api.replicate.com/").send().await;
    // A host outside the catalog is not audited.
    let _ = post(&client, "http://example.test/echo", "x").await;
    let path = upstream.data_dir().join("audit.jsonl");
    let events = common::audit_events(&upstream, 3).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["app"], "openai-api");
    assert_eq!(events[0]["decision"], "allow");
    assert_eq!(events[0]["path"], "/echo");
    assert_eq!(events[0]["req_bytes"], PROMPT.len());
    assert_eq!(events[0]["status"], 200);
    assert_eq!(events[1]["decision"], "block");
    assert_eq!(events[1]["id"], incident.as_str());
    assert_eq!(events[1]["status"], 403);
    assert_eq!(events[2]["app"], "replicate");
    assert_eq!(events[2]["decision"], "tunnel");
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(
        !raw.contains("QUERYSECRET"),
        "query strings never reach the audit log"
    );
    assert!(!raw.contains("AKIA2E0A8F3B244C9986"));
    lantern.stop().await;
}
