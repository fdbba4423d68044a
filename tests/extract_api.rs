//! Behaviour of `extract` and `Extracted::rewrite` at the edges: limits,
//! malformed bodies, redaction validation, byte-for-byte preservation.

mod common;

use std::io::Write;

use lantern::extract::{extract, Error, Limits, Location, Redaction, Role};

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

use common::extract_post as req;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn zip_bomb_is_refused_at_the_cap() {
    let bomb = gzip(&vec![b'a'; 16 << 20]);
    let h = headers(&[
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ]);
    let limits = Limits {
        max_ratio: u64::MAX,
        ..Limits::default()
    };
    let r = extract(
        &req("api.openai.com", "/v1/chat/completions", &h, &bomb),
        &limits,
    );
    assert!(matches!(r, Err(Error::TooLarge)), "{r:?}");
    // Same bomb, default ratio (100): refused by ratio well before 4 MiB.
    let r = extract(
        &req("api.openai.com", "/v1/chat/completions", &h, &bomb),
        &Limits::default(),
    );
    assert!(matches!(r, Err(Error::TooLarge)));
}

#[test]
fn stacked_encodings_are_undone_in_reverse() {
    let body = br#"{"messages":[{"role":"user","content":"stacked secret"}]}"#;
    let twice = gzip(&gzip(body));
    let h = headers(&[
        ("content-type", "application/json"),
        ("content-encoding", "gzip, gzip"),
    ]);
    let x = extract(
        &req("api.openai.com", "/v1/chat/completions", &h, &twice),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(x.segments[0].text, "stacked secret");
    assert_eq!(&x.decoded_body()[..], body);
}

#[test]
fn unknown_content_encoding_is_undecodable() {
    let h = headers(&[("content-encoding", "compress")]);
    let r = extract(
        &req("api.openai.com", "/v1/chat/completions", &h, b"x"),
        &Limits::default(),
    );
    assert!(matches!(r, Err(Error::Undecodable(_))));
}

#[test]
fn multipart_limits_on_parts_and_part_size() {
    let mut body = String::new();
    for i in 0..5 {
        body.push_str(&format!(
            "--b\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nvalue {i}\r\n"
        ));
    }
    body.push_str("--b--\r\n");
    let h = headers(&[("content-type", "multipart/form-data; boundary=b")]);
    let r = req("example.com", "/", &h, body.as_bytes());
    let few = Limits {
        max_parts: 4,
        ..Limits::default()
    };
    assert!(matches!(extract(&r, &few), Err(Error::TooLarge)));
    let small = Limits {
        max_part_bytes: 3,
        ..Limits::default()
    };
    assert!(matches!(extract(&r, &small), Err(Error::TooLarge)));
    assert_eq!(extract(&r, &Limits::default()).unwrap().segments.len(), 5);
}

#[test]
fn json_escapes_hide_nothing() {
    let body = br#"{"messages":[{"role":"user","content":"mail jane\u0040example.com\nkey:\tAKIA\u0049OSFODNN7EXAMPLE"}]}"#;
    let h = headers(&[("content-type", "application/json")]);
    let x = extract(
        &req("api.openai.com", "/v1/chat/completions", &h, body),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        x.segments[0].text,
        "mail jane@example.com\nkey:\tAKIAIOSFODNN7EXAMPLE"
    );
}

#[test]
fn malformed_json_to_a_provider_is_still_scanned_as_text() {
    let body = br#"{"messages":[{"role":"user","content":"truncated secret AKIAIOSFODNN7EXAMPLE"#;
    let h = headers(&[("content-type", "application/json")]);
    let x = extract(
        &req("api.openai.com", "/v1/chat/completions", &h, body),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(x.segments.len(), 1);
    assert_eq!(x.segments[0].location, Location::Body);
    assert!(x.segments[0].text.contains("AKIAIOSFODNN7EXAMPLE"));
}

#[test]
fn binary_bodies_have_no_segments() {
    let h = headers(&[("content-type", "image/png")]);
    let x = extract(
        &req("example.com", "/upload", &h, b"\x89PNG\r\n\x1a\n\0\0"),
        &Limits::default(),
    )
    .unwrap();
    assert!(x.segments.is_empty());
    let h = headers(&[("content-type", "application/octet-stream")]);
    let x = extract(
        &req("example.com", "/upload", &h, b"\0\x01\x02binary"),
        &Limits::default(),
    )
    .unwrap();
    assert!(x.segments.is_empty());
}

#[test]
fn redaction_keeps_every_other_byte() {
    let body = b"{ \"model\" : \"gpt-4o\",\n  \"messages\": [ {\"role\":\"user\", \"content\": \"call me at jane@example.com \\u00e9\"} ],\n  \"n\": 1.50 }";
    let h = headers(&[
        ("content-type", "application/json"),
        ("content-length", "0"),
    ]);
    let x = extract(
        &req("api.openai.com", "/v1/chat/completions", &h, body),
        &Limits::default(),
    )
    .unwrap();
    let seg = &x.segments[0];
    assert_eq!(seg.text, "call me at jane@example.com é");
    let start = seg.text.find("jane").unwrap();
    let out = x
        .rewrite(&[Redaction {
            segment: 0,
            start,
            end: start + "jane@example.com".len(),
            detector: "pii.email",
        }])
        .unwrap();
    let expected = "{ \"model\" : \"gpt-4o\",\n  \"messages\": [ {\"role\":\"user\", \"content\": \"call me at [REDACTED:pii.email] é\"} ],\n  \"n\": 1.50 }";
    assert_eq!(std::str::from_utf8(&out.body).unwrap(), expected);
    assert!(out.content_encoding.is_none());
}

#[test]
fn gzip_body_is_rewritten_uncompressed() {
    let body = gzip(br#"{"messages":[{"role":"user","content":"ssn 078-05-1120"}]}"#);
    let h = headers(&[
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ]);
    let x = extract(
        &req("api.openai.com", "/v1/chat/completions", &h, &body),
        &Limits::default(),
    )
    .unwrap();
    let same = x.rewrite(&[]).unwrap();
    assert_eq!(&same.body[..], &body[..]);
    assert_eq!(same.content_encoding.unwrap(), "gzip");
    let out = x
        .rewrite(&[Redaction {
            segment: 0,
            start: 4,
            end: 15,
            detector: "pii.us_ssn",
        }])
        .unwrap();
    assert_eq!(
        &out.body[..],
        br#"{"messages":[{"role":"user","content":"ssn [REDACTED:pii.us_ssn]"}]}"#
    );
    assert!(out.content_encoding.is_none());
}

#[test]
fn invalid_redactions_are_refused() {
    let body = r#"{"messages":[{"role":"user","content":"café"}]}"#;
    let h = headers(&[("content-type", "application/json")]);
    let x = extract(
        &req(
            "api.openai.com",
            "/v1/chat/completions",
            &h,
            body.as_bytes(),
        ),
        &Limits::default(),
    )
    .unwrap();
    let bad = |segment, start, end| Redaction {
        segment,
        start,
        end,
        detector: "d",
    };
    for r in [bad(1, 0, 1), bad(0, 0, 99), bad(0, 4, 2), bad(0, 0, 4)] {
        assert!(
            matches!(x.rewrite(&[r]), Err(Error::InvalidRedaction(_))),
            "{r:?}"
        );
    }
}

#[test]
fn overlapping_redactions_merge() {
    let body = br#"{"input":"key=AKIAIOSFODNN7EXAMPLE ok"}"#;
    let h = headers(&[("content-type", "application/json")]);
    let x = extract(
        &req("api.openai.com", "/v1/embeddings", &h, body),
        &Limits::default(),
    )
    .unwrap();
    let out = x
        .rewrite(&[
            Redaction {
                segment: 0,
                start: 0,
                end: 10,
                detector: "secret.password",
            },
            Redaction {
                segment: 0,
                start: 4,
                end: 24,
                detector: "secret.aws_access_key",
            },
        ])
        .unwrap();
    assert_eq!(
        &out.body[..],
        br#"{"input":"[REDACTED:secret.password] ok"}"#
    );
}

#[test]
fn text_that_is_not_valid_in_its_charset_is_not_rewritten() {
    let h = headers(&[("content-type", "text/plain")]);
    let x = extract(
        &req("example.com", "/", &h, b"secret \xff\xfe value"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(x.segments[0].text, "secret \u{fffd}\u{fffd} value");
    let r = x.rewrite(&[Redaction {
        segment: 0,
        start: 0,
        end: 6,
        detector: "d",
    }]);
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
}

#[test]
fn multipart_text_file_is_redacted_in_place() {
    let body = "--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\npassword=hunter2\r\n--b--\r\n";
    let h = headers(&[("content-type", "multipart/form-data; boundary=b")]);
    let x = extract(
        &req("api.openai.com", "/v1/files", &h, body.as_bytes()),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(x.segments.len(), 1);
    assert_eq!(x.segments[0].role, Role::File);
    let out = x
        .rewrite(&[Redaction {
            segment: 0,
            start: 9,
            end: 16,
            detector: "secret.password",
        }])
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&out.body).unwrap(),
        body.replace("hunter2", "[REDACTED:secret.password]")
    );
}

#[test]
fn role_and_location_names_are_stable() {
    let names: Vec<_> = [
        Role::User,
        Role::System,
        Role::Assistant,
        Role::Tool,
        Role::File,
    ]
    .iter()
    .map(|r| r.as_str())
    .collect();
    assert_eq!(names, ["user", "system", "assistant", "tool", "file"]);
    let part = Location::MultipartPart {
        index: 2,
        name: "file".into(),
        filename: Some("a.txt".into()),
    };
    assert_eq!(part.to_string(), "part[2]:file(a.txt)");
    assert_eq!(Location::FormField("q".into()).to_string(), "form:q");
    assert_eq!(Location::Body.to_string(), "body");
}

#[test]
fn unexpected_shape_for_a_known_endpoint_falls_back_to_every_string() {
    // The ChatGPT web reader expects messages[].content.parts[]; a body of
    // another shape must still be read, or it would be a way around inspection.
    let h = headers(&[("content-type", "application/json")]);
    let body = br#"{"prompt_v2":{"text":"my key is in here"}}"#;
    let request = req("chatgpt.com", "/backend-api/conversation", &h, body);
    let extracted = extract(&request, &Limits::default()).unwrap();
    assert_eq!(extracted.provider, "chatgpt-web");
    let texts: Vec<&str> = extracted.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, vec!["my key is in here"]);
}

#[test]
fn json_sent_as_a_form_is_read_as_json() {
    // curl -d '{...}' sends application/x-www-form-urlencoded.
    let h = headers(&[("content-type", "application/x-www-form-urlencoded")]);
    let body = br#"{"messages":[{"role":"user","content":"key AKIAQ3EGRZBXL7MNPT4K"}]}"#;
    let extracted = extract(
        &req("api.openai.com", "/v1/chat/completions", &h, body),
        &Limits::default(),
    )
    .unwrap();
    let texts: Vec<&str> = extracted.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, vec!["key AKIAQ3EGRZBXL7MNPT4K"]);
    // A real form is still a form.
    let extracted = extract(
        &req("example.com", "/", &h, b"q=hello+world&x=1"),
        &Limits::default(),
    )
    .unwrap();
    assert!(extracted.segments.iter().any(|s| s.text == "hello world"));
}
