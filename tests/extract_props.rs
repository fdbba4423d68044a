//! Property tests for extraction: arbitrary JSON and arbitrary bytes under
//! every content type and provider never panic; zero redactions return the
//! body unchanged; a redaction rewrite extracts again with `[REDACTED:…]`
//! exactly where it was put.

mod common;

use lantern::extract::{extract, Limits, Redaction, Request};
use proptest::prelude::*;
use serde_json::Value;

/// (host, path) of every provider reader, plus a generic host.
const ROUTES: &[(&str, &str)] = &[
    ("api.openai.com", "/v1/chat/completions"),
    ("api.openai.com", "/v1/responses"),
    ("api.openai.com", "/v1/embeddings"),
    ("api.openai.com", "/v1/files"),
    (
        "x.openai.azure.com",
        "/openai/deployments/d/chat/completions",
    ),
    ("api.anthropic.com", "/v1/messages"),
    (
        "bedrock-runtime.us-east-1.amazonaws.com",
        "/model/m/converse",
    ),
    ("bedrock-runtime.us-east-1.amazonaws.com", "/model/m/invoke"),
    (
        "generativelanguage.googleapis.com",
        "/v1beta/models/g:generateContent",
    ),
    ("chatgpt.com", "/backend-api/conversation"),
    (
        "claude.ai",
        "/api/organizations/o/chat_conversations/c/completion",
    ),
    (
        "gemini.google.com",
        "/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate",
    ),
    ("example.com", "/anything"),
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-16",
    "text/plain",
    "text/plain; charset=iso-8859-1",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=XyZ",
    "multipart/form-data",
    "application/octet-stream",
    "image/png",
    "",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "user",
            "system",
            "assistant",
            "model",
            "tool",
            "text",
            "document",
            "base64",
            "data:text/plain;base64,aGVsbG8=",
            "aGVsbG8gd29ybGQ="
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    let keys = prop::sample::select(vec![
        "messages",
        "content",
        "role",
        "text",
        "type",
        "input",
        "instructions",
        "system",
        "contents",
        "parts",
        "prompt",
        "source",
        "data",
        "media_type",
        "file",
        "file_data",
        "filename",
        "document",
        "bytes",
        "format",
        "inlineData",
        "mimeType",
        "author",
        "attachments",
        "extracted_content",
        "output",
        "toolResult",
        "json",
        "x",
    ]);
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..5).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn request_headers(content_type: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    if !content_type.is_empty() {
        h.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
    }
    h
}

proptest! {
    #![proptest_config(common::proptest_config(256))]

    #[test]
    fn arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..512),
        route in prop::sample::select(ROUTES),
        ct in prop::sample::select(CONTENT_TYPES),
        encoding in prop::sample::select(vec!["", "gzip", "br", "zstd", "deflate", "gzip, br"]),
    ) {
        let mut headers = request_headers(ct);
        if !encoding.is_empty() {
            headers.insert(http::header::CONTENT_ENCODING, encoding.parse().unwrap());
        }
        let req = Request { host: route.0, method: &http::Method::POST, path: route.1, headers: &headers, body: &body };
        if let Ok(x) = extract(&req, &Limits::default()) {
            let same = x.rewrite(&[]).unwrap();
            prop_assert_eq!(&same.body[..], &body[..]);
            // Redacting any segment either works or is refused, never panics.
            let reds: Vec<_> = (0..x.segments.len()).map(|i| Redaction { segment: i, start: 0, end: 0, detector: "p" }).collect();
            let _ = x.rewrite(&reds);
        }
    }

    #[test]
    fn multipart_like_bytes_never_panic(
        parts in prop::collection::vec((prop::sample::select(vec!["a", "prompt", "file", "model"]), prop::option::of("[a-z]{1,5}\\.(txt|png|rs)"), "\\PC{0,20}"), 0..5),
        tail in prop::sample::select(vec!["--XyZ--\r\n", "--XyZ", "", "--XyZ\r\n"]),
        route in prop::sample::select(ROUTES),
    ) {
        let mut body = String::new();
        for (name, filename, content) in &parts {
            body.push_str("--XyZ\r\nContent-Disposition: form-data; name=\"");
            body.push_str(name);
            body.push('"');
            if let Some(f) = filename {
                body.push_str("; filename=\"");
                body.push_str(f);
                body.push('"');
            }
            body.push_str("\r\n\r\n");
            body.push_str(content);
            body.push_str("\r\n");
        }
        body.push_str(tail);
        let headers = request_headers("multipart/form-data; boundary=XyZ");
        let req = Request { host: route.0, method: &http::Method::POST, path: route.1, headers: &headers, body: body.as_bytes() };
        if let Ok(x) = extract(&req, &Limits::default()) {
            check_round_trip(&req, &x)?;
        }
    }

    #[test]
    fn arbitrary_json_round_trips_through_redaction(
        value in json_value(),
        route in prop::sample::select(ROUTES),
        ct in prop::sample::select(vec!["application/json", "text/plain", "", "application/json; charset=iso-8859-1"]),
        pick in any::<prop::sample::Index>(),
        span in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
        pretty in any::<bool>(),
    ) {
        let body = if pretty { serde_json::to_vec_pretty(&value).unwrap() } else { serde_json::to_vec(&value).unwrap() };
        let body = if ct.contains("iso-8859-1") {
            // Only bodies representable in the charset.
            let text = String::from_utf8(body).unwrap();
            if !text.chars().all(|c| (c as u32) < 0x80) { return Ok(()); }
            text.into_bytes()
        } else { body };
        let headers = request_headers(ct);
        let req = Request { host: route.0, method: &http::Method::POST, path: route.1, headers: &headers, body: &body };
        let x = extract(&req, &Limits::default()).unwrap();
        let same = x.rewrite(&[]).unwrap();
        prop_assert_eq!(&same.body[..], &body[..]);
        if x.segments.is_empty() { return Ok(()); }
        let i = pick.index(x.segments.len());
        let text = &x.segments[i].text;
        let bounds: Vec<usize> = text.char_indices().map(|(j, _)| j).chain([text.len()]).collect();
        let (a, b) = (bounds[span.0.index(bounds.len())], bounds[span.1.index(bounds.len())]);
        let (start, end) = (a.min(b), a.max(b));
        let rewritten = x.rewrite(&[Redaction { segment: i, start, end, detector: "pii.email" }]).unwrap();
        prop_assert!(rewritten.content_encoding.is_none());
        let again = extract(&Request { body: &rewritten.body, ..req }, &Limits::default()).unwrap();
        prop_assert_eq!(again.segments.len(), x.segments.len());
        for (j, (before, after)) in x.segments.iter().zip(&again.segments).enumerate() {
            prop_assert_eq!(before.role, after.role);
            prop_assert_eq!(&before.location, &after.location);
            if j == i {
                let want = format!("{}[REDACTED:pii.email]{}", &text[..start], &text[end..]);
                prop_assert_eq!(&after.text, &want);
            } else {
                prop_assert_eq!(&before.text, &after.text);
            }
        }
        if ct == "application/json" {
            prop_assert!(serde_json::from_slice::<Value>(&rewritten.body).is_ok());
        }
    }

    #[test]
    fn form_values_round_trip_through_redaction(
        fields in prop::collection::vec(("[a-z.]{1,6}", "\\PC{0,16}"), 1..6),
        pick in any::<prop::sample::Index>(),
    ) {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
        let headers = request_headers("application/x-www-form-urlencoded");
        let req = Request { host: "example.com", method: &http::Method::POST, path: "/", headers: &headers, body: body.as_bytes() };
        let x = extract(&req, &Limits::default()).unwrap();
        if x.segments.is_empty() { return Ok(()); }
        let i = pick.index(x.segments.len());
        let end = x.segments[i].text.len();
        let rewritten = x.rewrite(&[Redaction { segment: i, start: 0, end, detector: "d" }]).unwrap();
        let again = extract(&Request { body: &rewritten.body, ..req }, &Limits::default()).unwrap();
        prop_assert_eq!(&again.segments[i].text, "[REDACTED:d]");
        for j in (0..x.segments.len()).filter(|&j| j != i) {
            prop_assert_eq!(&again.segments[j], &x.segments[j]);
        }
    }
}

/// Redacts the whole of every rewritable segment and extracts again.
fn check_round_trip(
    req: &Request<'_>,
    x: &lantern::extract::Extracted,
) -> Result<(), TestCaseError> {
    let reds = common::redact_whole(x);
    if let Ok(rewritten) = x.rewrite(&reds) {
        let again = extract(
            &Request {
                body: &rewritten.body,
                ..*req
            },
            &Limits::default(),
        )
        .unwrap();
        prop_assert_eq!(again.segments.len(), x.segments.len());
        for s in &again.segments {
            prop_assert_eq!(&s.text, "[REDACTED:d]");
        }
    }
    Ok(())
}
