//! Per-detector true positives (in JSON, YAML, .env, logs, code, prose) and
//! hard negatives for the bundled packs. In the tables `«…»` marks the
//! expected span. Failure messages show masked previews, never values.

use std::sync::OnceLock;

use lantern::detect::{Engine, Finding};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::bundled().expect("bundled rules compile"))
}

fn shown(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .map(|f| format!("{}@{}..{} {}", f.detector, f.start, f.end, f.preview))
        .collect()
}

/// Checks that `marked` (with `«value»`) yields exactly the marked span for `detector`.
fn assert_finds(detector: &str, marked: &str) {
    let start = marked.find('«').expect("marker");
    let end = marked.find('»').expect("marker") - '«'.len_utf8();
    let text = marked.replace(['«', '»'], "");
    let findings = engine().scan(text.as_bytes());
    let ok = findings
        .iter()
        .any(|f| &*f.detector == detector && f.start == start && f.end == end);
    assert!(
        ok,
        "{detector}: expected span {start}..{end} in case `{}`, got {:?}",
        lantern::detect::preview(text.as_bytes(), lantern::detect::MaskStyle::Ends),
        shown(&findings)
    );
}

/// A deterministic random-looking alphanumeric string of `n` characters.
fn token(n: usize, seed: u64) -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            CHARS[(x % CHARS.len() as u64) as usize] as char
        })
        .collect()
}

fn assert_clean(text: &str) {
    let findings = engine().scan(text.as_bytes());
    assert!(
        findings.is_empty(),
        "expected nothing in a {}-byte hard negative, got {:?}",
        text.len(),
        shown(&findings)
    );
}

fn assert_not(detector: &str, text: &str) {
    let findings = engine().scan(text.as_bytes());
    assert!(
        !findings.iter().any(|f| &*f.detector == detector),
        "{detector} should not fire, got {:?}",
        shown(&findings)
    );
}

#[test]
fn every_design_detector_id_is_bundled() {
    let ids: Vec<&str> = engine().detector_ids().collect();
    for id in [
        "secret.aws_access_key",
        "secret.aws_secret_key",
        "secret.github_token",
        "secret.gitlab_token",
        "secret.slack_token",
        "secret.stripe_key",
        "secret.google_api_key",
        "secret.openai_api_key",
        "secret.anthropic_api_key",
        "secret.azure_key",
        "secret.private_key",
        "secret.jwt",
        "secret.password",
        "secret.generic_api_key",
        "pii.email",
        "pii.phone",
        "pii.credit_card",
        "pii.us_ssn",
        "pii.iban",
        "pii.ip_address",
        "pii.uk_nino",
        "pii.passport",
        "confidential.marker",
        "confidential.keyword",
        "code.source",
    ] {
        assert!(ids.contains(&id), "{id} missing");
    }
}

#[test]
fn aws_access_key() {
    assert_finds(
        "secret.aws_access_key",
        "aws_access_key_id = «AKIAQYLPMN5HHHFPZAM2»",
    );
    assert_finds(
        "secret.aws_access_key",
        r#"{"AccessKeyId": "«ASIAY34FZKBOKMUTVV7A»", "Expiration": "2024-01-01"}"#,
    );
    assert_finds(
        "secret.aws_access_key",
        "2024-05-01T10:00:00Z ERROR s3 denied for «AKIA2E5A7F3B244CXRQZ» bucket=logs",
    );
    assert_clean("docs: the example key AKIAIOSFODNN7EXAMPLE is not real");
    assert_not(
        "secret.aws_access_key",
        "AKIA_TEST_KEY and AKIAXXXXXXXXXXXXXXXX",
    );
}

#[test]
fn aws_secret_key() {
    assert_finds(
        "secret.aws_secret_key",
        "aws_secret_access_key = «wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq9Lk3Xp2a»",
    );
    assert_finds(
        "secret.aws_secret_key",
        "export AWS_SECRET_ACCESS_KEY=«9drTJvcXLB89EXAMPLEkey+Gk3q2Lq8Vs0Pz7Rn1»"
            .replace("EXAMPLE", "ExAmPl3")
            .as_str(),
    );
    assert_finds(
        "secret.aws_secret_key",
        r#"  "SecretAccessKey": "«Hq8sZ2kP0vL5mN9xR3tY7wB1cF6gJ4dA2eK8uI0o»","#,
    );
    assert_clean("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
}

#[test]
fn github_token() {
    assert_finds(
        "secret.github_token",
        "GITHUB_TOKEN=«ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5»",
    );
    assert_finds(
        "secret.github_token",
        &format!(
            "git clone https://«gho_{}»@github.com/acme/api.git",
            token(36, 2)
        ),
    );
    assert_finds(
        "secret.github_token",
        &format!("ERROR push rejected for «ghs_{}»", token(36, 3)),
    );
    assert_finds(
        "secret.github_token",
        &format!("token: «github_pat_{}_{}»", token(22, 8), token(59, 9)),
    );
    assert_clean("GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

#[test]
fn gitlab_token() {
    assert_finds(
        "secret.gitlab_token",
        "PRIVATE-TOKEN: «glpat-xY7zK2mN9pQ4rT6vW8aB»",
    );
    assert_finds(
        "secret.gitlab_token",
        "runner:\n  token: «glrt-Hk3Lm9Np2Qr5St8Vw1Xy4Z»\n",
    );
    assert_clean("use a glpat-XXXXXXXXXXXXXXXXXXXX placeholder");
}

#[test]
fn slack_token() {
    assert_finds(
        "secret.slack_token",
        "SLACK_BOT_TOKEN=«xoxb-482910573621-5928301746283-Hk3Lm9Np2Qr5St8Vw1Xy4ZaB»",
    );
    assert_finds(
        "secret.slack_token",
        r#"client = WebClient(token="«xoxp-730194628501-7301946285013-7301946285013-8f3a9c2e1b7d4f6a0c5e9b2d7a1f3e8c»")"#,
    );
    assert_finds(
        "secret.slack_token",
        "webhook: «https://hooks.slack.com/services/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»",
    );
    assert_clean("set SLACK_TOKEN=xoxb-your-token-here");
}

#[test]
fn stripe_key() {
    assert_finds(
        "secret.stripe_key",
        "stripe.api_key = '«sk_live_51HqLyjWDarjtT1zdp7dc9Xk2»'",
    );
    assert_finds(
        "secret.stripe_key",
        "STRIPE_KEY=«rk_live_4eC39HqLyjWDarjtT1zdp7dcZ»",
    );
    assert_clean("the docs use sk_test_4eC39HqLyjWDarjtT1zdp7dc everywhere");
}

#[test]
fn google_api_key() {
    assert_finds("secret.google_api_key", "https://maps.googleapis.com/maps/api/js?key=«AIzaSyB1x2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q»&callback=init");
    assert_finds(
        "secret.google_api_key",
        &format!("client_secret: «GOCSPX-{}»", token(28, 4)),
    );
    assert_clean("key=AIzaSyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
}

#[test]
fn openai_api_key() {
    assert_finds(
        "secret.openai_api_key",
        "OPENAI_API_KEY=«sk-proj-Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7Qr9St1Uv3Wx5Yz7Ab9Cd1Ef3Gh5»",
    );
    assert_finds(
        "secret.openai_api_key",
        &format!(
            r#"client = OpenAI(api_key="«sk-{}T3BlbkFJ{}»")"#,
            token(20, 5),
            token(20, 6)
        ),
    );
    assert_finds(
        "secret.openai_api_key",
        &format!(
            "curl -H 'Authorization: Bearer «sk-svcacct-{}»'",
            token(64, 7)
        ),
    );
    assert_clean("OPENAI_API_KEY=sk-...your key...");
    assert_clean("export OPENAI_API_KEY=YOUR_API_KEY");
    assert_clean("The risk-based approach and a task-force desk-top review");
}

#[test]
fn anthropic_api_key() {
    assert_finds("secret.anthropic_api_key", "ANTHROPIC_API_KEY=«sk-ant-api03-Xy7Zk2Mn9Pq4Rt6Vw8Ab1Cd3Ef5Gh7Ij9Kl1Mn3Op5Qr7St9Uv1Wx3Yz5Ab7Cd9EfAA»");
    assert_finds(
        "secret.anthropic_api_key",
        &format!(
            r#"headers = {{"x-api-key": "«sk-ant-admin01-{}»"}}"#,
            token(60, 1)
        ),
    );
    assert_clean("x-api-key: sk-ant-api03-xxxxxxxx");
}

#[test]
fn azure_key() {
    let account_key = format!(
        "{}==",
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6MDEyMzQ1Njc4OTAxMjM0NTY3"
            .chars()
            .take(86)
            .collect::<String>()
    );
    assert_eq!(account_key.len(), 88);
    assert_finds("secret.azure_key", &format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=«{account_key}»;EndpointSuffix=core.windows.net"));
    assert_finds(
        "secret.azure_key",
        "AZURE_CLIENT_SECRET=«abc8Q~Xy7Zk2Mn9Pq4Rt6Vw8Ab1Cd3Ef5Gh7Ij»",
    );
    assert_finds(
        "secret.azure_key",
        "Ocp-Apim-Subscription-Key: «3f1c9a2b7d4e4f6a8c0b5e9d2a7f1c3e»",
    );
    assert_clean("AccountKey=<storage-account-key>;");
}

#[test]
fn private_key() {
    let body = "MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi2Yz7aQkYcTDvN0K8LfWq5vS4p\nQz8Lp2Rt4Vw6Yb1Nc5Hd7Jf0GaXk3m9Qz2Lp8Rt4Vw6Yb1Nc5Hd7Jf0GaXk3m9Qz2\n";
    assert_finds(
        "secret.private_key",
        &format!(
            "key:\n«-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----»\nthanks"
        ),
    );
    assert_finds(
        "secret.private_key",
        &format!("«-----BEGIN OPENSSH PRIVATE KEY-----\n{body}-----END OPENSSH PRIVATE KEY-----»"),
    );
    assert_clean("-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----");
    assert_clean("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----");
    assert_clean("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----");
}

#[test]
fn jwt() {
    assert_finds("secret.jwt", "Authorization: Bearer «eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI5ODc2NTQzMjEwIiwibmFtZSI6IkFsaWNlIn0.Xk3m9Qz2Lp8Rt4Vw6Yb1Nc5Hd7Jf0Ga»");
    assert_clean("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c");
    assert_not(
        "secret.jwt",
        "eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxMjM0NTYifQ.c2lnbmF0dXJlc2lnbmF0dXJl",
    );
}

#[test]
fn password() {
    assert_finds(
        "secret.password",
        "DATABASE_URL=postgres://app:«S3cretP4ss»@db.prod.internal:5432/app",
    );
    assert_finds(
        "secret.password",
        "Server=sql01;Database=crm;User Id=sa;Password=«xeTPdy7K&99»;",
    );
    assert_finds("secret.password", "db:\n  password: \"«hunter2!x»\"\n");
    assert_finds("secret.password", "mysql -u root --password=«Tr0ub4dor&3»");
    assert_clean("Password: must be at least 8 characters long");
    assert_clean("password = os.environ['DB_PASSWORD']");
    assert_clean("password: ${DB_PASSWORD}");
    assert_clean("redis://:@localhost:6379/0 and https://example.com/a:b");
}

#[test]
fn generic_api_key() {
    assert_finds(
        "secret.generic_api_key",
        r#"{"api_key": "«q8Zt2LmW9xKc4RvB7nPs3YdF»", "region": "us"}"#,
    );
    assert_finds(
        "secret.generic_api_key",
        "x-api-key: «k7Pq2Wm9Zr4Tx8Lv3Nb6Hc1Jd5Fg0Sa»",
    );
    assert_clean("api_key: <your-api-key-here>");
    assert_clean("token: ${{ secrets.GITHUB_TOKEN }}");
    assert_clean("tokenizer = AutoTokenizer.from_pretrained(model_name)");
    assert_clean("session_token = 550e8400-e29b-41d4-a716-446655440000");
    assert_clean("use the token bucket algorithm; the secret sauce is caching");
}

#[test]
fn email() {
    assert_finds(
        "pii.email",
        "Please reply to «john.doe@example.com» by Friday.",
    );
    assert_finds(
        "pii.email",
        r#"{"user": {"email": "«maria_garcia42@uni-heidelberg.de»"}}"#,
    );
    assert_finds(
        "pii.email",
        "2024-03-02 10:11:12 INFO login ok user=«wei.chen@mail.contoso.org»",
    );
    assert_clean("icon@2x.png and logo@3x.jpg are in assets");
    assert_clean("git@github.com:acme/api.git and npm install lodash@4.17.21");
    assert_clean("@decorator on a method, and user@localhost");
}

#[test]
fn phone() {
    assert_finds("pii.phone", "Call me on «+44 20 7946 0958» after lunch.");
    assert_finds("pii.phone", "Phone: «(415) 555-2671»");
    assert_finds("pii.phone", r#""phone": "«+1 (212) 555-0187»""#);
    assert_finds("pii.phone", "mobile «07700 900123»");
    assert_finds("pii.phone", "Tél : «+33 1 42 68 53 00»");
    assert_clean("order number 1234567890 shipped on 2024-01-15");
    assert_clean("call 911 in an emergency, room 4.12 at 10:30");
    assert_clean("ISBN 978-3-16-148410-0 and version 10.4.2-1");
}

#[test]
fn credit_card() {
    assert_finds(
        "pii.credit_card",
        "Card number «4111 1111 1111 1111», exp 09/27",
    );
    assert_finds("pii.credit_card", r#"{"pan": "«5555555555554444»"}"#);
    assert_finds("pii.credit_card", "amex «3782-822463-10005» on file");
    assert_clean("card 4111 1111 1111 1112 was declined (typo)");
    assert_clean("order number 1234567812345670 shipped");
    assert_clean("Pi is 3.14159265358979323846");
}

#[test]
fn us_ssn() {
    assert_finds("pii.us_ssn", "SSN: «536-22-1234»");
    assert_finds(
        "pii.us_ssn",
        "social security number «536221234» on the form",
    );
    assert_clean("SSN format is XXX-XX-XXXX, e.g. 000-12-3456 or 666-12-3456");
    assert_clean("part no. 123-45-67890 and 2024-01-15");
}

#[test]
fn iban() {
    assert_finds(
        "pii.iban",
        "Please wire the money to «DE89 3704 0044 0532 0130 00».",
    );
    assert_finds("pii.iban", r#""iban": "«GB82WEST12345698765432»""#);
    assert_finds("pii.iban", "IBAN: «FR1420041010050500013M02606»");
    assert_clean("IBAN: GB82WEST12345698765433 (bad checksum)");
}

#[test]
fn ip_address() {
    assert_finds("pii.ip_address", "ssh admin@«10.20.30.40»");
    assert_finds(
        "pii.ip_address",
        "client «2001:db8:85a3::8a2e:370:7334» connected",
    );
    assert_finds("pii.ip_address", "GET /health from «192.168.1.23» 200");
    assert_clean("Released version 1.2.3.4 of the agent");
    assert_clean("netmask 255.255.255.0, listen on 0.0.0.0");
    assert_clean("MAC 00:1A:2B:3C:4D:5E at 10:30:45");
    assert_clean("Upgrade to Chrome 120.0.6099.109 before Monday");
}

#[test]
fn uk_nino() {
    assert_finds("pii.uk_nino", "NI number «AB 12 34 56 C»");
    assert_finds("pii.uk_nino", "nino=«JG103759A»");
    assert_clean("QQ 12 34 56 C is the HMRC example");
}

#[test]
fn passport() {
    assert_finds("pii.passport", "Passport number: «533380006»");
    assert_finds("pii.passport", "Reisepass Nr. «C01X00T47»");
    assert_clean("passport number is required for travel");
}

#[test]
fn confidential_marker() {
    assert_finds(
        "confidential.marker",
        "«STRICTLY CONFIDENTIAL»\nQ3 revenue forecast follows.",
    );
    assert_finds("confidential.marker", "Subject: [«TLP:RED»] incident notes");
    assert_finds(
        "confidential.marker",
        "Footer: «Company Confidential» - Acme Corp 2024",
    );
    assert_clean("Please keep this between us, it is a confidential matter.");
    assert_clean("The internal team will review the proposal.");
}

#[test]
fn source_code() {
    assert_finds(
        "code.source",
        "Why does this fail?\n«def parse(path):»\n    return json.load(open(path))\nimport json\n",
    );
    assert_finds(
        "code.source",
        "«#include <stdio.h>»\nint main(void) { return 0; }\n",
    );
    assert_clean("the class of 2024 will use the new building");
    assert_clean("def is a Python keyword; import statements come first");
}

#[test]
fn overlapping_findings_keep_the_more_severe() {
    // `pw@db.example.com` looks like an email inside the connection string.
    let text = "postgres://admin:Sup3rPw9x@db.example.com/app";
    let findings = engine().scan(text.as_bytes());
    assert_eq!(findings.len(), 1, "{:?}", shown(&findings));
    assert_eq!(&*findings[0].detector, "secret.password");
}

#[test]
fn previews_never_contain_the_value() {
    let text = "OPENAI_API_KEY=sk-proj-Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7Qr9St1Uv3Wx5Yz7Ab9Cd1Ef3Gh5 and john.doe@example.com";
    for f in engine().scan(text.as_bytes()) {
        let value = &text[f.start..f.end];
        assert!(!f.preview.contains(value), "{} preview leaks", f.detector);
        assert!(f.preview.contains('*'));
    }
}
