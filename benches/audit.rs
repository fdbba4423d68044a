//! The audit writer under load.
//!
//! - `audit/record`: what the request path pays per event: building the
//!   event (a clone of a realistic template: strings, two findings) and
//!   `AuditLog::record` (box + `try_send` on the bounded channel). Timed in
//!   batches smaller than the queue, waiting (untimed) for the writer to
//!   drain between batches, so no event is dropped and the figure is the
//!   enqueue cost, not the cheaper drop path.
//! - `audit/event_clone`: the event construction alone, to subtract.
//! - `audit/writer_sustained`: events/s the writer thread sustains to a
//!   file on disk (serialise, buffered append, flush per batch, **no
//!   fsync**, no size rotation). The producer keeps the queue at most half
//!   full, so nothing is dropped; time runs until the last event is written.
//! - `audit/writer_sustained_rotating`: the same with `max_bytes` = 8 MiB,
//!   `keep` = 2, so the figure includes rename + reopen every ~25k events.
//!
//! Every run checks `dropped == 0` and `write_errors == 0`, so a broken
//! writer fails instead of looking fast.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lantern::audit::{
    AuditLog, AuditMetrics, AuditOptions, Destination, Event, FindingCount, QUEUE_CAPACITY,
};
use prometheus::IntCounter;

fn metrics() -> AuditMetrics {
    AuditMetrics {
        written: IntCounter::new("w", "w").unwrap(),
        write_errors: IntCounter::new("e", "e").unwrap(),
        dropped: IntCounter::new("d", "d").unwrap(),
    }
}

fn template() -> Event {
    Event {
        ts: "2025-03-04T10:11:12.123456Z".into(),
        id: lantern::audit::incident_id(),
        client_ip: "10.1.2.3".parse().unwrap(),
        user: "alice@example.com".into(),
        groups: Vec::new(),
        app: "chatgpt".into(),
        vendor: "OpenAI".into(),
        sanctioned: false,
        host: "chatgpt.com".into(),
        method: "POST".into(),
        path: "/backend-api/conversation".into(),
        provider: None,
        endpoint: None,
        decision: "coach".into(),
        rule: Some("nudge shadow AI towards the sanctioned tool".into()),
        findings: vec![
            FindingCount {
                detector: "pii.email".into(),
                severity: "medium".into(),
                count: 2,
            },
            FindingCount {
                detector: "secret.aws_access_key".into(),
                severity: "critical".into(),
                count: 1,
            },
        ],
        req_bytes: 2048,
        status: 403,
        latency_ms: 3,
        justification: None,
    }
}

/// Waits until the writer has handled `target` events (written or failed).
fn drain(m: &AuditMetrics, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while m.written.get() + m.write_errors.get() < target {
        assert!(Instant::now() < deadline, "audit writer stalled");
        std::thread::yield_now();
    }
}

fn check(m: &AuditMetrics) {
    assert_eq!(m.dropped.get(), 0, "events dropped: the figure would lie");
    assert_eq!(m.write_errors.get(), 0, "audit write errors");
}

fn record(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let log = AuditLog::open(Destination::File(dir.path().join("audit.jsonl")), m.clone()).unwrap();
    let event = template();
    let batch = (QUEUE_CAPACITY / 2) as u64;
    let mut sent = 0u64;
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(batch);
                let start = Instant::now();
                for _ in 0..n {
                    log.record(black_box(event.clone()));
                }
                timed += start.elapsed();
                sent += n;
                left -= n;
                drain(&m, sent);
            }
            timed
        })
    });
    // The share of `record` that is building the event, for reference.
    group.bench_function("event_clone", |b| b.iter(|| black_box(event.clone())));
    group.finish();
    drop(log);
    check(&m);
}

fn sustained(c: &mut Criterion, name: &str, options: AuditOptions) {
    const EVENTS: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let log = AuditLog::open_with(
        Destination::File(dir.path().join("audit.jsonl")),
        m.clone(),
        options,
    )
    .unwrap();
    let event = template();
    let high_water = (QUEUE_CAPACITY / 2) as u64;
    let mut sent = 0u64;
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..EVENTS {
                    while sent - (m.written.get() + m.write_errors.get()) >= high_water {
                        std::thread::yield_now();
                    }
                    log.record(event.clone());
                    sent += 1;
                }
                drain(&m, sent);
            }
            start.elapsed()
        })
    });
    group.finish();
    drop(log);
    check(&m);
}

fn writer(c: &mut Criterion) {
    sustained(c, "writer_sustained", AuditOptions::default());
    sustained(
        c,
        "writer_sustained_rotating",
        AuditOptions {
            max_bytes: Some(8 << 20),
            keep: 2,
        },
    );
}

criterion_group!(benches, record, writer);
criterion_main!(benches);
