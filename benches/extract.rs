//! Extraction + decoding cost: a 4 KiB chat request, a 1 MiB chat request
//! with a long history, and the same 1 MiB gzip'd; and, for the share of
//! inspection time, the detection engine over the extracted segments.
//!
//! Each corpus declares its segment count, so a wrong extractor fails
//! rather than looks fast.

use std::io::Write;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lantern::extract::{extract, Limits, Request};
use serde_json::json;

struct Corpus {
    name: &'static str,
    headers: http::HeaderMap,
    body: Vec<u8>,
    /// Bytes after `Content-Encoding` is undone (the throughput basis).
    decoded_len: usize,
    segments: usize,
}

/// A chat completions body of about `target` bytes: a system prompt, then
/// user / assistant turns of prose with some sensitive values sprinkled in.
fn chat(target: usize) -> (Vec<u8>, usize) {
    let prose = "Please review the quarterly figures for the EMEA region and draft a short \
                 summary for the board; contact jane.doe@example.com with questions. ";
    let mut messages =
        vec![json!({"role": "system", "content": "You are a careful financial analyst."})];
    let mut size = 100;
    let mut turn = 0;
    while size < target {
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        let text = format!("Turn {turn}: {}\n\"quoted\"\ttab", prose.repeat(2));
        size += text.len() + 40;
        messages.push(json!({"role": role, "content": text}));
        turn += 1;
    }
    let count = messages.len();
    let body = json!({"model": "gpt-4o", "stream": true, "messages": messages});
    (serde_json::to_vec(&body).unwrap(), count)
}

fn corpora() -> Vec<Corpus> {
    let mut json_headers = http::HeaderMap::new();
    json_headers.insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    let (small, small_n) = chat(4 << 10);
    let (large, large_n) = chat(1 << 20);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&large).unwrap();
    let gz = gz.finish().unwrap();
    let mut gz_headers = json_headers.clone();
    gz_headers.insert(http::header::CONTENT_ENCODING, "gzip".parse().unwrap());
    vec![
        Corpus {
            name: "chat_4k",
            headers: json_headers.clone(),
            decoded_len: small.len(),
            body: small,
            segments: small_n,
        },
        Corpus {
            name: "chat_1m_history",
            headers: json_headers,
            decoded_len: large.len(),
            body: large.clone(),
            segments: large_n,
        },
        Corpus {
            name: "chat_1m_gzip",
            headers: gz_headers,
            decoded_len: large.len(),
            body: gz,
            segments: large_n,
        },
    ]
}

fn request<'a>(c: &'a Corpus) -> Request<'a> {
    Request {
        host: "api.openai.com",
        method: &http::Method::POST,
        path: "/v1/chat/completions",
        headers: &c.headers,
        body: &c.body,
    }
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let engine = lantern::detect::Engine::bundled().expect("bundled rules");
    let corpora = corpora();
    for corpus in &corpora {
        let x = extract(&request(corpus), &limits).expect("extract");
        assert_eq!(
            x.segments.len(),
            corpus.segments,
            "{}: segment count",
            corpus.name
        );
        eprintln!(
            "{}: {} bytes on the wire, {} decoded, {} segments",
            corpus.name,
            corpus.body.len(),
            corpus.decoded_len,
            corpus.segments
        );
    }
    let mut group = c.benchmark_group("extract");
    group.sample_size(20);
    for corpus in &corpora {
        group.throughput(Throughput::Bytes(corpus.decoded_len as u64));
        group.bench_with_input(
            BenchmarkId::new("extract", corpus.name),
            corpus,
            |b, corpus| b.iter(|| extract(&request(corpus), &limits).expect("extract")),
        );
        // The rest of inspection: the engine over every extracted segment.
        let x = extract(&request(corpus), &limits).expect("extract");
        group.bench_with_input(
            BenchmarkId::new("scan_segments", corpus.name),
            &x,
            |b, x| {
                b.iter(|| {
                    x.segments
                        .iter()
                        .map(|s| engine.scan(s.text.as_bytes()).len())
                        .sum::<usize>()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
