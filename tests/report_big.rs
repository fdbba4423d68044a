//! 100 000 generated events: the report's totals are exact and its heap
//! stays bounded by the distinct keys, not by the size of the file.
//! This binary counts heap bytes with a wrapping global allocator, so it
//! holds a single test (nothing else allocates while it measures).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use lantern::report::{build, render, run_at, Format, ReportOptions};
use time::macros::datetime;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const APPS: [(&str, bool); 6] = [
    ("chatgpt", false),
    ("chatgpt-enterprise", true),
    ("claude", false),
    ("gemini", false),
    ("copilot", true),
    ("perplexity", false),
];
const DETECTORS: [(&str, &str); 4] = [
    ("pii.email", "medium"),
    ("secret.aws_access_key", "critical"),
    ("pii.credit_card", "high"),
    ("code.source", "low"),
];
const DECISIONS: [&str; 5] = ["allow", "log", "coach", "redact", "block"];
const USERS: usize = 250;
const DAYS: usize = 14;

/// Event `i` of the generated stream; every key combination recurs
/// within the first few thousand events.
fn event(i: usize) -> String {
    let (app, sanctioned) = APPS[i % APPS.len()];
    let user = i % USERS;
    let day = 1 + (i / 7) % DAYS;
    let decision = DECISIONS[(i / 3) % DECISIONS.len()];
    let findings = if i.is_multiple_of(4) {
        let (d, s) = DETECTORS[(i / 4) % DETECTORS.len()];
        format!(r#"[{{"detector":"{d}","severity":"{s}","count":2}}]"#)
    } else {
        "[]".into()
    };
    format!(
        r#"{{"ts":"2025-02-{day:02}T{:02}:{:02}:00Z","id":"{i:016x}","client_ip":"10.1.{}.{}","user":"user{user}@example.com","app":"{app}","vendor":"Vendor","sanctioned":{sanctioned},"host":"{app}.example","method":"POST","path":"/v1/chat/completions","decision":"{decision}","rule":null,"findings":{findings},"req_bytes":2048,"status":200,"latency_ms":4,"groups":["group{}"]}}"#,
        i % 24,
        i % 60,
        user / 256,
        user % 256,
        user % 5
    ) + "\n"
}

fn generate(path: &Path, n: usize) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        out.write_all(event(i).as_bytes()).unwrap();
    }
    out.flush().unwrap();
}

/// Peak heap growth while building the report over `path`.
fn peak_while_reporting(path: &Path) -> (usize, lantern::report::Report) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let report = build(&[path.to_path_buf()], None, datetime!(2025-03-01 00:00 UTC)).unwrap();
    (PEAK.load(Ordering::Relaxed) - base, report)
}

#[test]
fn hundred_thousand_events_are_exact_and_memory_follows_keys_not_size() {
    const BIG: usize = 100_000;
    const SMALL: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.jsonl");
    let small = dir.path().join("small.jsonl");
    generate(&big, BIG);
    generate(&small, SMALL);
    let size = std::fs::metadata(&big).unwrap().len();

    let (small_peak, _) = peak_while_reporting(&small);
    let (big_peak, r) = peak_while_reporting(&big);

    // Exact totals, counted from the generator's arithmetic.
    let t = &r.totals;
    assert_eq!(r.inputs.events, BIG as u64);
    assert_eq!(r.inputs.malformed_lines, 0);
    assert_eq!(t.counts.requests, BIG as u64);
    assert_eq!(t.counts.with_findings, (BIG / 4) as u64);
    assert_eq!(t.counts.findings, (BIG / 4 * 2) as u64);
    let blocked = (0..BIG).filter(|i| (i / 3) % 5 == 4).count() as u64;
    assert_eq!(t.counts.blocked, blocked);
    let sanctioned = (0..BIG).filter(|i| APPS[i % APPS.len()].1).count() as u64;
    assert_eq!(t.sanctioned_requests, sanctioned);
    assert_eq!(t.users, USERS as u64);
    assert_eq!(t.apps, APPS.len() as u64);
    assert_eq!(r.days.len(), DAYS);
    assert_eq!(
        r.days.iter().map(|d| d.counts.requests).sum::<u64>(),
        BIG as u64
    );
    assert_eq!(r.detectors.len(), DETECTORS.len());
    assert_eq!(
        r.apps.iter().map(|a| a.counts.requests).sum::<u64>(),
        BIG as u64
    );

    // Ten times the events, the same keys: about the same heap, and far
    // less than the file.
    eprintln!(
        "file {size} bytes; peak heap {small_peak} B for {SMALL} events, {big_peak} B for {BIG}"
    );
    assert!(size > 30 << 20, "generated file unexpectedly small: {size}");
    assert!(
        big_peak < 8 << 20,
        "peak heap {big_peak} B for a {size} B file"
    );
    assert!(
        big_peak < small_peak + small_peak / 2,
        "heap grew with events: {small_peak} B -> {big_peak} B"
    );

    // Through the entry point once, then every format of the same report.
    let opts = ReportOptions {
        audit: vec![big.clone()],
        since: None,
        format: Format::Json,
    };
    let mut out = Vec::new();
    run_at(&opts, datetime!(2025-03-01 00:00 UTC), &mut out).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["totals"]["requests"], BIG as u64);
    for format in [Format::Text, Format::Json, Format::Csv, Format::Html] {
        let mut out = Vec::new();
        render(&r, format, &mut out).unwrap();
        assert!(out.len() > 1000);
    }
}
