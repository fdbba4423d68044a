//! Policy and actions end to end: real clients through lantern with the
//! bundled detection engine and a policy, against a local upstream.

mod common;

use common::{post, HttpVersion, Lantern, Upstream};

const AWS_KEY: &str = "AKIAQ3EGRZBXL7MNPT4K";
const EMAIL: &str = "jane.doe@acme-corp.com";

const POLICY: &str = r#"
default: log
coach: {ack_ttl: 1h, brand: Acme}
rules:
  - name: no credentials
    when: {detectors: ["secret.*"]}
    action: block
  - name: mask emails for anthropic
    when: {apps: {ids: [anthropic-api]}, detectors: [pii.email]}
    action: redact
  - name: coach personal data
    when: {detectors: ["pii.*"]}
    action: coach
"#;

fn chat(content: &str) -> String {
    serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]})
        .to_string()
}

#[tokio::test]
async fn block_answers_in_each_providers_error_shape_without_the_secret() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with_policy(&upstream, POLICY).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    let body = chat(&format!("deploy with {AWS_KEY} please"));
    for (url, message_at) in [
        (
            "https://api.openai.com/v1/chat/completions",
            "/error/message",
        ),
        ("https://api.anthropic.com/v1/messages", "/error/message"),
        (
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-pro:generateContent",
            "/error/message",
        ),
    ] {
        let resp = post(&client, url, body.clone()).await;
        assert_eq!(resp.status(), 403, "{url}");
        assert_eq!(resp.headers()["x-lantern-decision"], "block");
        let incident = resp.headers()["x-lantern-incident"]
            .to_str()
            .unwrap()
            .to_string();
        let json: serde_json::Value = resp.json().await.unwrap();
        let message = json
            .pointer(message_at)
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        assert!(message.contains("secret.aws_access_key"), "{url}: {json}");
        assert!(message.contains(&incident), "{url}: {json}");
        assert!(
            !json.to_string().contains(AWS_KEY),
            "the secret never comes back"
        );
    }
    assert_eq!(upstream.hits(), 0);
    let (_, scrape) = lantern.admin_get("/metrics").await;
    assert_eq!(
        common::metric(&scrape, "lantern_findings_total{action=\"block\",app=\"openai-api\",detector=\"secret.aws_access_key\"}"),
        1.0
    );
    lantern.stop().await;
}

#[tokio::test]
async fn clean_and_logged_requests_are_forwarded_byte_for_byte() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with_policy(&upstream, "default: log\n").await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    for content in [
        "what is the capital of France?",
        &format!("write to {EMAIL}"),
    ] {
        let body = chat(content);
        let resp = post(&client, "https://api.openai.com/echo", body.clone()).await;
        assert_eq!(resp.status(), 200);
        let logged = content.contains('@');
        assert_eq!(resp.headers().get("x-lantern-decision").is_some(), logged);
        assert_eq!(resp.text().await.unwrap(), body);
    }
    lantern.stop().await;
}

#[tokio::test]
async fn redact_forwards_the_masked_prompt() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with_policy(&upstream, POLICY).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H2);
    let body = chat(&format!("email {EMAIL} about the launch"));
    let resp = post(&client, "https://api.anthropic.com/echo", body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-lantern-decision"], "redact");
    let forwarded = resp.text().await.unwrap();
    assert!(
        forwarded.contains("email [REDACTED:pii.email] about the launch"),
        "{forwarded}"
    );
    assert!(!forwarded.contains(EMAIL));
    serde_json::from_str::<serde_json::Value>(&forwarded).expect("still valid JSON");
    lantern.stop().await;
}

#[tokio::test]
async fn coach_then_acknowledge_then_retry_succeeds() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with_policy(&upstream, POLICY).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    let body = chat(&format!("summarise the mail from {EMAIL}"));
    let resp = post(&client, "https://api.openai.com/echo", body.clone()).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-lantern-decision"], "coach");
    let json: serde_json::Value = resp.json().await.unwrap();
    let message = json["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("pii.email"), "{message}");
    let link = message
        .split_whitespace()
        .find(|w| w.contains("/ack/"))
        .unwrap()
        .trim_end_matches('.')
        .to_string();
    assert!(
        link.starts_with(&format!("http://{}/ack/", lantern.admin_addr)),
        "{link}"
    );

    let admin = reqwest::Client::builder().no_proxy().build().unwrap();
    // A tampered token is refused.
    let tampered = format!("{}x", link);
    assert_eq!(admin.get(&tampered).send().await.unwrap().status(), 403);
    // The page names what was found, never the value, and asks why.
    let page = admin.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("pii.email") && page.contains("<textarea"),
        "{page}"
    );
    assert!(!page.contains(EMAIL));
    // An empty reason is not enough.
    let resp = admin
        .post(&link)
        .form(&[("justification", "  ")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        post(&client, "https://api.openai.com/echo", body.clone())
            .await
            .status(),
        403
    );
    let resp = admin
        .post(&link)
        .form(&[("justification", "customer asked for a summary")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The retry goes through, logged as acknowledged.
    let resp = post(&client, "https://api.openai.com/echo", body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-lantern-decision"], "log");
    assert_eq!(resp.text().await.unwrap(), body);
    // The grant covers this app only.
    let resp = post(
        &client,
        "https://chatgpt.com/backend-api/conversation",
        body,
    )
    .await;
    assert_eq!(resp.status(), 403);
    lantern.stop().await;
}

#[tokio::test]
async fn browser_navigation_gets_the_html_coaching_page() {
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with_policy(&upstream, POLICY).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    let resp = client
        .post("https://chatgpt.com/backend-api/conversation")
        .header("accept", "text/html,application/xhtml+xml;q=0.9")
        .header("sec-fetch-mode", "navigate")
        .body(chat(&format!("key {AWS_KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = resp.text().await.unwrap();
    assert!(page.contains("This was not sent to ChatGPT"), "{page}");
    assert!(page.contains("secret.aws_access_key"));
    assert!(page.contains("Acme"));
    assert!(!page.contains(AWS_KEY));
    lantern.stop().await;
}

#[tokio::test]
async fn identity_challenge_wrong_password_and_untrusted_header() {
    use lantern::identity::{hash_password, IdentityConfig, TrustedHeader};
    let upstream = Upstream::start().await;
    let creds = upstream.data_dir().with_file_name("users.yaml");
    let hash = hash_password("s3cret").unwrap();
    std::fs::write(
        &creds,
        format!("users:\n  alice: {{password: \"{hash}\", groups: [finance]}}\n"),
    )
    .unwrap();
    let lantern = Lantern::start_with(&upstream, |c| {
        c.identity = IdentityConfig {
            require_auth: true,
            credentials: Some(creds.clone()),
            ..Default::default()
        }
    })
    .await;
    // No credentials: 407 with a Basic challenge.
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
    let resp = post(&client, "http://example.test/echo", "x").await;
    assert_eq!(resp.status(), 407);
    assert_eq!(
        resp.headers()["proxy-authenticate"],
        "Basic realm=\"lantern\""
    );
    // Wrong password: 407 again, nothing forwarded.
    let with = |user: &str, password: &str| {
        reqwest::Client::builder()
            .proxy(
                reqwest::Proxy::all(format!("http://{}", lantern.proxy_addr))
                    .unwrap()
                    .basic_auth(user, password),
            )
            .add_root_certificate(
                reqwest::Certificate::from_pem(lantern.ca_pem.as_bytes()).unwrap(),
            )
            .build()
            .unwrap()
    };
    let refused = with("alice", "nope")
        .post("https://api.openai.com/echo")
        .body("x")
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{refused:?}").contains("ProxyAuthRequired"),
        "{refused:?}"
    );
    assert_eq!(upstream.hits(), 0);
    // Right password: through, audited as alice.
    let resp = post(
        &with("alice", "s3cret"),
        "https://api.openai.com/echo",
        "hello",
    )
    .await;
    assert_eq!(resp.status(), 200);
    let events = common::audit_events(&upstream, 1).await;
    assert_eq!(events[0]["user"], "alice");
    lantern.stop().await;

    // A trusted header from an address outside `from` is ignored.
    let upstream = Upstream::start().await;
    let lantern = Lantern::start_with(&upstream, |c| {
        c.identity = IdentityConfig {
            trusted_header: Some(TrustedHeader {
                name: "x-authenticated-user".into(),
                groups_name: None,
                from: vec!["10.0.0.0/8".parse().unwrap()],
            }),
            ..Default::default()
        }
    })
    .await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::H1);
    let resp = client
        .post("http://api.openai.com/echo")
        .header("x-authenticated-user", "ceo")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = common::audit_events(&upstream, 1).await;
    assert_eq!(events[0]["user"], "127.0.0.1");
    lantern.stop().await;
}

#[tokio::test]
async fn app_level_block_refuses_tunnels_to_discover_only_apps() {
    let upstream = Upstream::start().await;
    let policy = "rules:\n  - name: no image generators\n    when: {apps: {categories: [image], sanctioned: false}}\n    action: block\n    message: \"{app} is not approved. Use the company image tool.\"\n";
    let lantern = Lantern::start_with_policy(&upstream, policy).await;
    let mut stream = tokio::net::TcpStream::connect(lantern.proxy_addr)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            b"CONNECT www.midjourney.com:443 HTTP/1.1\r\nHost: www.midjourney.com:443\r\n\r\n",
        )
        .await
        .unwrap();
    let mut reply = vec![0u8; 1024];
    let n = stream.read(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(reply.contains("Midjourney is not approved"), "{reply}");
    let events = common::audit_events(&upstream, 1).await;
    assert_eq!(events[0]["app"], "midjourney");
    assert_eq!(events[0]["decision"], "block");
    assert_eq!(events[0]["rule"], "no image generators");
    lantern.stop().await;
}

#[tokio::test]
async fn planted_secrets_never_reach_audit_metrics_or_responses() {
    let upstream = Upstream::start().await;
    let policy = r#"
rules:
  - {name: block aws, when: {detectors: [secret.aws_access_key]}, action: block}
  - {name: coach github, when: {detectors: [secret.github_token]}, action: coach}
  - {name: redact email, when: {detectors: [pii.email]}, action: redact}
"#;
    let lantern = Lantern::start_with_policy(&upstream, policy).await;
    let client = lantern.client(&lantern.ca_pem, HttpVersion::Any);
    const GITHUB: &str = "ghp_R7bXk2mQ9vLw4ZtY8nPc3HsJf6Dq1GaE5uKo";
    const CARD: &str = "4111 1111 1111 1111";
    let mut responses = String::new();
    for prompt in [
        format!("key {AWS_KEY}"),
        format!("token {GITHUB}"),
        format!("mail {EMAIL}"),
        format!("card {CARD}"),
    ] {
        let url = "https://api.openai.com/v1/chat/completions?key=AIzaQueryStringSecret";
        let resp = post(&client, url, chat(&prompt)).await;
        responses.push_str(&format!("{:?}", resp.headers()));
        let forwarded = resp.text().await.unwrap();
        // Only the logged card prompt may come back (the upstream echoes nothing here: 404).
        responses.push_str(&forwarded);
    }
    let events = common::audit_events(&upstream, 4).await;
    let audit = std::fs::read_to_string(upstream.data_dir().join("audit.jsonl")).unwrap();
    let (_, metrics) = lantern.admin_get("/metrics").await;
    for secret in [AWS_KEY, GITHUB, EMAIL, "AIzaQueryStringSecret", "4111"] {
        assert!(!audit.contains(secret), "audit log leaks {secret}");
        assert!(!metrics.contains(secret), "metrics leak {secret}");
        assert!(!responses.contains(secret), "a response leaks {secret}");
    }
    let decisions: Vec<&str> = events
        .iter()
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, vec!["block", "coach", "redact", "log"]);
    assert_eq!(events[0]["provider"], "openai");
    assert_eq!(events[0]["endpoint"], "chat.completions");
    lantern.stop().await;
}
