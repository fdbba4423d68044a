//! Detection engine throughput on fixed corpora, against a naive baseline
//! that runs every rule's regex over the whole input. Each corpus declares
//! its expected finding count, so a wrong engine fails instead of looking
//! fast. Figures: benches/README.md.
//!
//!     cargo bench --bench detect -- --warm-up-time 1 --measurement-time 3

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lantern::detect::Engine;

/// Deterministic xorshift, so corpora are identical on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "the",
    "team",
    "review",
    "quarterly",
    "customer",
    "onboarding",
    "flow",
    "shipped",
    "we",
    "should",
    "summarise",
    "meeting",
    "vendor",
    "pricing",
    "next",
    "year",
    "friendly",
    "paragraph",
    "rewrite",
    "please",
    "analysis",
    "market",
    "growth",
    "with",
    "about",
    "and",
    "of",
    "to",
    "in",
    "for",
    "on",
    "report",
    "product",
    "launch",
    "feedback",
    "design",
    "roadmap",
    "budget",
    "hiring",
    "strategy",
    "support",
    "ticket",
    "release",
    "notes",
    "draft",
    "email",
    "policy",
    "training",
    "schedule",
];

fn prose(rng: &mut Rng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 100);
    while out.len() < bytes {
        let n = 8 + rng.next() % 12;
        for i in 0..n {
            let w = rng.pick(WORDS);
            if i == 0 {
                out.push_str(&w[..1].to_uppercase());
                out.push_str(&w[1..]);
            } else {
                out.push(' ');
                out.push_str(w);
            }
        }
        if rng.next().is_multiple_of(5) {
            out.push_str(&format!(" in {}", 2000 + rng.next() % 30));
        }
        out.push_str(". ");
        if rng.next().is_multiple_of(8) {
            out.push('\n');
        }
    }
    out.truncate(bytes);
    out
}

const PROMPT_1K: &str = "Hi! Can you help me debug this deployment? The service fails on start with \
\"AccessDenied\". Here is the relevant part of my config:\n\n\
```yaml\nservice:\n  name: billing-worker\n  region: eu-west-1\n  aws_access_key_id: AKIAQYLPMN5HHHFPZAM2\n  \
queue: billing-events\n  retries: 3\n```\n\n\
The on-call engineer is maria.garcia@acme-corp.io if you need to know who owns it. \
I already tried restarting the pods and rotating the node group, and the error shows up \
again within a minute. The logs mention a timeout talking to the metadata endpoint, then \
the SDK falls back to the static credentials above. Could the IAM policy be missing the \
sqs:ReceiveMessage permission, or is it more likely a region mismatch between the queue \
and the worker? Please explain the steps to check both, and suggest how to make the \
worker fail fast with a clear error message instead of retrying forever. Thanks a lot, \
this has been blocking our release for two days and the team is waiting on it.\n";
const PROMPT_1K_FINDINGS: usize = 2;

/// JSON lines (one email each), Rust snippets (two code signatures each),
/// prose and log lines (UUIDs, versions: nothing). Returns the text and its
/// finding count.
fn mixed_64k() -> (String, usize) {
    let mut rng = Rng(0x5eed_6400);
    let mut out = String::new();
    let mut expected = 0;
    let mut i = 0u64;
    while out.len() < 64 * 1024 {
        match i % 4 {
            0 => out.push_str(&format!("{{\"id\": {i}, \"user\": \"user{i}@example.com\", \"amount\": {}.{:02}, \"note\": \"{}\"}}\n", rng.next() % 1000, rng.next() % 100, prose(&mut rng, 80))),
            1 => out.push_str("fn handle(req: Request) -> Result<Response> {\n    let body = req.body();\n    validate(&body)?;\n    Ok(Response::new(body))\n}\n"),
            2 => out.push_str(&prose(&mut rng, 600)),
            _ => out.push_str("2024-05-01T10:00:00Z INFO request_id=550e8400-e29b-41d4-a716-446655440000 status=200 latency_ms=12 version=1.2.3\n"),
        }
        expected += [1, 2, 0, 0][(i % 4) as usize];
        out.push('\n');
        i += 1;
    }
    (out, expected)
}

fn near_miss(bytes: usize) -> String {
    let mut rng = Rng(0xbad_5eed);
    let pieces: &[&str] = &[
        "order 1234567812345678 ",
        "version 1.2.3.4 ",
        "see @team ",
        "user@localhost ",
        "risk-based ",
        "AKIA_TEST ",
        "id=550e8400-e29b-41d4-a716-446655440000 ",
        "2024-01-15 ",
        "+1 ",
        "ghp_short ",
        "eyJhbGciOi ",
        "password: required ",
        "sha 3f786850e387550fdab836ed7e6dc881de23001b ",
        "3.14159 ",
        "Chrome/120.0.6099.109 ",
        "token: ${TOKEN} ",
        "icon@2x.png ",
        "call 911 ",
        "sk-... ",
        "10:30:45 ",
        "ISBN 978-3-16-148410-0 ",
        "api_key=YOUR_API_KEY ",
    ];
    let mut out = String::with_capacity(bytes + 64);
    while out.len() < bytes {
        out.push_str(rng.pick(pieces));
        if rng.next().is_multiple_of(10) {
            out.push('\n');
        }
    }
    out.truncate(bytes);
    out
}
const NEAR_MISS_FINDINGS: usize = 0;

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench(c: &mut Criterion) {
    let rss0 = rss_kib();
    let t = Instant::now();
    let engine = Engine::bundled().expect("bundled rules compile");
    let compile = t.elapsed();
    let rss1 = rss_kib();
    println!(
        "compile: {compile:?}; resident memory +{} KiB",
        rss1.zip(rss0).map_or(0, |(a, b)| a.saturating_sub(b))
    );

    let mut rng = Rng(0x9e37_79b9);
    let mixed = mixed_64k();
    let corpora: Vec<(&str, String, usize)> = vec![
        ("prompt_1k", PROMPT_1K.to_string(), PROMPT_1K_FINDINGS),
        ("mixed_64k", mixed.0, mixed.1),
        ("prose_1m", prose(&mut rng, 1 << 20), 0),
        ("prose_10m", prose(&mut rng, 10 << 20), 0),
        ("near_miss_10m", near_miss(10 << 20), NEAR_MISS_FINDINGS),
    ];
    let mut group = c.benchmark_group("detect");
    group.sample_size(10);
    for (name, input, expected) in &corpora {
        let found = engine.scan(input.as_bytes()).len();
        assert_eq!(
            found, *expected,
            "{name}: engine finds {found}, corpus declares {expected}"
        );
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::new("engine", name), input, |b, input| {
            b.iter(|| assert_eq!(engine.scan(input.as_bytes()).len(), *expected))
        });
        let naive = engine.scan_naive(input.as_bytes()).len();
        assert_eq!(
            naive, *expected,
            "{name}: naive baseline finds {naive}, corpus declares {expected}"
        );
        group.bench_with_input(BenchmarkId::new("naive", name), input, |b, input| {
            b.iter(|| assert_eq!(engine.scan_naive(input.as_bytes()).len(), *expected))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
