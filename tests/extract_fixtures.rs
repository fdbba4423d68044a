//! Every request fixture in `tests/fixtures/requests/<provider>/<name>.json`
//! extracts to exactly its expected segments, and survives a redaction
//! round trip: rewrite, extract again, find `[REDACTED:…]` where it was put
//! and everything else unchanged.
//!
//! A fixture: `{"about", "request": {"host", "method", "path", "headers",
//! "body" (JSON, sent compact with members in sorted order) | "body_text" |
//! "body_base64"}, "encode": "gzip"|"br"|
//! "zstd"|"deflate" (optional), "expect": {"provider", "endpoint",
//! "segments": [{"role", "location", "text"}]}}`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use lantern::extract::{extract, Extracted, Limits, Redaction, Request};
use serde_json::Value;

struct Fixture {
    path: PathBuf,
    host: String,
    method: http::Method,
    uri_path: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
    expect: Value,
}

fn load(path: &Path) -> Fixture {
    let text = std::fs::read_to_string(path).unwrap();
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let req = &v["request"];
    let mut body = if let Some(b) = req.get("body") {
        serde_json::to_vec(b).unwrap()
    } else if let Some(t) = req.get("body_text") {
        t.as_str().unwrap().as_bytes().to_vec()
    } else if let Some(b) = req.get("body_base64") {
        base64::engine::general_purpose::STANDARD
            .decode(b.as_str().unwrap())
            .unwrap()
    } else {
        Vec::new()
    };
    let mut headers = http::HeaderMap::new();
    for (k, val) in req["headers"].as_object().unwrap() {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            val.as_str().unwrap().parse().unwrap(),
        );
    }
    if let Some(enc) = v.get("encode").and_then(Value::as_str) {
        body = compress(enc, &body);
        headers.insert(http::header::CONTENT_ENCODING, enc.parse().unwrap());
    }
    Fixture {
        path: path.to_path_buf(),
        host: req["host"].as_str().unwrap().to_string(),
        method: req["method"].as_str().unwrap().parse().unwrap(),
        uri_path: req["path"].as_str().unwrap().to_string(),
        headers,
        body,
        expect: v["expect"].clone(),
    }
}

fn compress(encoding: &str, data: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).unwrap();
            }
            out
        }
        "zstd" => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
        other => panic!("unknown encoding {other}"),
    }
}

fn run(f: &Fixture, headers: &http::HeaderMap, body: &[u8]) -> Extracted {
    let req = Request {
        host: &f.host,
        method: &f.method,
        path: &f.uri_path,
        headers,
        body,
    };
    extract(&req, &Limits::default()).unwrap_or_else(|e| panic!("{}: {e}", f.path.display()))
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/requests");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "json") {
                    out.push(f);
                }
            }
        }
    }
    out.sort();
    out
}

fn actual(x: &Extracted) -> Vec<(String, String, String)> {
    x.segments
        .iter()
        .map(|s| {
            (
                s.role.as_str().to_string(),
                s.location.to_string(),
                s.text.clone(),
            )
        })
        .collect()
}

#[test]
fn every_fixture_extracts_its_expected_segments_and_redacts_in_place() {
    let paths = fixtures();
    assert!(paths.len() >= 30, "only {} fixtures", paths.len());
    let mut failures = Vec::new();
    for path in &paths {
        let f = load(path);
        let x = run(&f, &f.headers, &f.body);
        let expected: Vec<(String, String, String)> = f.expect["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["role"].as_str().unwrap().to_string(),
                    s["location"].as_str().unwrap().to_string(),
                    s["text"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let name = path
            .strip_prefix(path.parent().unwrap().parent().unwrap())
            .unwrap();
        if x.provider != f.expect["provider"] || x.endpoint != f.expect["endpoint"] {
            failures.push(format!(
                "{}: provider/endpoint {}/{}, expected {}/{}",
                name.display(),
                x.provider,
                x.endpoint,
                f.expect["provider"],
                f.expect["endpoint"]
            ));
        }
        if actual(&x) != expected {
            failures.push(format!(
                "{}: segments\n  got      {:#?}\n  expected {:#?}",
                name.display(),
                actual(&x),
                expected
            ));
            continue;
        }

        // Zero redactions: the body as received, encoding and all.
        let same = x.rewrite(&[]).unwrap();
        assert_eq!(&same.body[..], &f.body[..], "{}", name.display());
        assert_eq!(
            same.content_encoding,
            f.headers.get(http::header::CONTENT_ENCODING).cloned()
        );

        // Redact the first few characters of every segment.
        let redactions: Vec<Redaction<'_>> = x
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let end = s
                    .text
                    .char_indices()
                    .nth(5)
                    .map_or(s.text.len(), |(j, _)| j);
                Redaction {
                    segment: i,
                    start: 0,
                    end,
                    detector: "test.fixture",
                }
            })
            .collect();
        let rewritten = x
            .rewrite(&redactions)
            .unwrap_or_else(|e| panic!("{}: {e}", name.display()));
        let mut headers = f.headers.clone();
        match &rewritten.content_encoding {
            Some(v) => {
                headers.insert(http::header::CONTENT_ENCODING, v.clone());
            }
            None => {
                headers.remove(http::header::CONTENT_ENCODING);
            }
        }
        let again = run(&f, &headers, &rewritten.body);
        let want: Vec<(String, String, String)> = expected
            .iter()
            .zip(&redactions)
            .map(|((role, loc, text), r)| {
                (
                    role.clone(),
                    loc.clone(),
                    format!("[REDACTED:test.fixture]{}", &text[r.end..]),
                )
            })
            .collect();
        if actual(&again) != want {
            failures.push(format!(
                "{}: after rewrite\n  got      {:#?}\n  expected {:#?}",
                name.display(),
                actual(&again),
                want
            ));
        }
        if f.headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
        {
            serde_json::from_slice::<Value>(&rewritten.body)
                .unwrap_or_else(|e| panic!("{}: rewritten body is not JSON: {e}", name.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}
