//! Audit events: one JSON line per request to a catalog app (including
//! blind tunnels to discover-only apps), written off the request path.
//!
//! Events go through a bounded channel to a writer thread, so a slow or
//! failing disk never stalls proxying: when the channel is full the event is
//! dropped and counted; a write failure is counted, logged, and the file is
//! reopened on the next event. Raw matched values are never part of an
//! event: findings are detector ids with counts, and paths lose their query
//! string (Gemini's `?key=` carries an API key).

use std::fs::OpenOptions;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::OnceLock;

use prometheus::IntCounter;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::warn;

/// Events buffered between the proxy and the writer thread.
pub const QUEUE_CAPACITY: usize = 16 * 1024;

/// One audit event, as written.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub ts: String,
    /// Incident id, also sent to the client as `x-lantern-incident`.
    pub id: String,
    pub client_ip: IpAddr,
    pub user: String,
    pub app: String,
    pub vendor: String,
    pub sanctioned: bool,
    pub host: String,
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub decision: String,
    pub rule: Option<String>,
    pub findings: Vec<FindingCount>,
    pub req_bytes: u64,
    pub status: u16,
    pub latency_ms: u64,
    /// What the person wrote when acknowledging a coach message (decision `ack`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

/// How often one detector matched in a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FindingCount {
    pub detector: String,
    pub severity: String,
    pub count: u32,
}

/// Counters the audit writer maintains.
#[derive(Clone)]
pub struct AuditMetrics {
    pub written: IntCounter,
    pub write_errors: IntCounter,
    pub dropped: IntCounter,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

impl Destination {
    /// `-` means stdout, anything else a file.
    pub fn from_path(path: &Path) -> Destination {
        if path.as_os_str() == "-" {
            Destination::Stdout
        } else {
            Destination::File(path.to_path_buf())
        }
    }
}

/// The handle the proxy records events through.
/// Dropping it writes out what is queued and joins the writer thread.
pub struct AuditLog {
    tx: Option<SyncSender<Event>>,
    metrics: AuditMetrics,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl AuditLog {
    /// Opens the destination (creating parent directories) and starts the
    /// writer thread. Fails if the file cannot be opened at start-up.
    pub fn open(dest: Destination, metrics: AuditMetrics) -> io::Result<AuditLog> {
        let mut sink = Sink::open(dest)?;
        let (tx, rx) = mpsc::sync_channel::<Event>(QUEUE_CAPACITY);
        let thread_metrics = metrics.clone();
        let writer = std::thread::Builder::new()
            .name("lantern-audit".into())
            .spawn(move || {
                while let Ok(event) = rx.recv() {
                    sink.write(&event, &thread_metrics);
                    // Drain what is queued, then flush once.
                    while let Ok(event) = rx.try_recv() {
                        sink.write(&event, &thread_metrics);
                    }
                    sink.flush(&thread_metrics);
                }
                sink.flush(&thread_metrics);
            })?;
        Ok(AuditLog {
            tx: Some(tx),
            metrics,
            writer: Some(writer),
        })
    }

    /// Queues an event; never blocks.
    pub fn record(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.dropped.inc();
                warn!("audit queue full; event dropped");
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.write_errors.inc();
            }
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

struct Sink {
    dest: Destination,
    out: Option<BufWriter<Box<dyn Write + Send>>>,
}

impl Sink {
    fn open(dest: Destination) -> io::Result<Sink> {
        let mut sink = Sink { dest, out: None };
        sink.out = Some(sink.reopen()?);
        Ok(sink)
    }

    fn reopen(&self) -> io::Result<BufWriter<Box<dyn Write + Send>>> {
        let writer: Box<dyn Write + Send> = match &self.dest {
            Destination::Stdout => Box::new(io::stdout()),
            Destination::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        Ok(BufWriter::new(writer))
    }

    fn write(&mut self, event: &Event, metrics: &AuditMetrics) {
        if self.out.is_none() {
            match self.reopen() {
                Ok(out) => self.out = Some(out),
                Err(e) => {
                    metrics.write_errors.inc();
                    warn!(error = %e, "audit log cannot be reopened; event lost");
                    return;
                }
            }
        }
        let Some(out) = self.out.as_mut() else { return };
        let result = serde_json::to_writer(&mut *out, event)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        match result {
            Ok(()) => metrics.written.inc(),
            Err(e) => {
                metrics.write_errors.inc();
                warn!(error = %e, "audit write failed; reopening on the next event");
                self.out = None;
            }
        }
    }

    fn flush(&mut self, metrics: &AuditMetrics) {
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                metrics.write_errors.inc();
                warn!(error = %e, "audit flush failed; reopening on the next event");
                self.out = None;
            }
        }
    }
}

/// The current time as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// A new incident id: 16 hex digits, unique within a process and unlikely
/// to collide across replicas.
pub fn incident_id() -> String {
    static SEED: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", SEED.get_or_init(RandomState::new).hash_one(n))
}

/// A path without its query string.
pub fn path_only(path_and_query: &str) -> &str {
    path_and_query.split('?').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> AuditMetrics {
        AuditMetrics {
            written: IntCounter::new("w", "w").unwrap(),
            write_errors: IntCounter::new("e", "e").unwrap(),
            dropped: IntCounter::new("d", "d").unwrap(),
        }
    }

    fn event(id: &str) -> Event {
        Event {
            ts: now_rfc3339(),
            id: id.into(),
            client_ip: "127.0.0.1".parse().unwrap(),
            user: "127.0.0.1".into(),
            app: "chatgpt".into(),
            vendor: "OpenAI".into(),
            sanctioned: false,
            host: "chatgpt.com".into(),
            method: "POST".into(),
            path: path_only("/v1/x?key=secret").into(),
            decision: "allow".into(),
            rule: None,
            findings: vec![FindingCount {
                detector: "pii.email".into(),
                severity: "medium".into(),
                count: 2,
            }],
            req_bytes: 10,
            status: 200,
            latency_ms: 3,
            justification: None,
        }
    }

    #[test]
    fn writes_one_json_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/audit.jsonl");
        let m = metrics();
        let log = AuditLog::open(Destination::File(path.clone()), m.clone()).unwrap();
        log.record(event("a"));
        log.record(event("b"));
        drop(log);
        assert_eq!(m.written.get(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], "a");
        assert_eq!(lines[0]["path"], "/v1/x");
        assert_eq!(lines[0]["findings"][0]["count"], 2);
        assert!(!text.contains("secret"));
    }

    #[test]
    fn incident_ids_are_distinct() {
        let a = incident_id();
        let b = incident_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }
}
