//! Audit events: one JSON line per request to a catalog app (including
//! blind tunnels to discover-only apps), written off the request path.
//!
//! Events go through a bounded channel to a writer thread, so a slow or
//! failing disk never stalls proxying: when the channel is full the event is
//! dropped and counted; a write failure is counted, logged, and the file is
//! reopened on the next event. Raw matched values are never part of an
//! event: findings are detector ids with counts, and paths lose their query
//! string (Gemini's `?key=` carries an API key).
//!
//! Files are rotation-friendly both ways:
//! - external rotation (logrotate moves `audit.jsonl` away, then SIGHUP):
//!   [`AuditLog::reopen`] makes the writer close the moved file and open a
//!   new one at the configured path before its next event;
//! - built-in rotation by size ([`AuditOptions::max_bytes`]): before a line
//!   would take the file past the limit, `audit.jsonl` becomes
//!   `audit.jsonl.1`, `.1` becomes `.2` … and the oldest beyond
//!   [`AuditOptions::keep`] is deleted.
//!
//! Durability: the writer flushes its buffer to the OS after each batch
//! (everything queued when it wakes up; under load it wakes every
//! [`BATCH_INTERVAL`]) and never calls `fsync`; a power loss can lose what
//! the kernel had not yet written back, a crash of lantern alone loses
//! what was queued or buffered (at most about one interval's worth).

use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use prometheus::IntCounter;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::{info, warn};

/// Events buffered between the proxy and the writer thread.
pub const QUEUE_CAPACITY: usize = 16 * 1024;

/// While events keep coming, the writer wakes this often to drain the
/// queue and flush; when a pass finds nothing it parks until the next
/// event. At [`QUEUE_CAPACITY`] events per interval that is 16 M events/s
/// before anything is dropped, far above what the writer can serialise.
pub const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// One audit event, as written.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub ts: String,
    /// Incident id, also sent to the client as `x-lantern-incident`.
    pub id: String,
    pub client_ip: IpAddr,
    pub user: String,
    /// The user's groups (identity), when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub app: String,
    pub vendor: String,
    pub sanctioned: bool,
    pub host: String,
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// API family and endpoint recognised by extraction (`openai`, `chat.completions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
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

/// How the audit file is kept. The default never rotates by itself (the
/// file is left to logrotate and [`AuditLog::reopen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Rotate before a line would take the file past this many bytes.
    /// `None` (default): never rotate by size. Ignored for stdout.
    pub max_bytes: Option<u64>,
    /// Rotated files kept (`audit.jsonl.1` … `audit.jsonl.<keep>`); older
    /// ones are deleted. `0` truncates instead of keeping history.
    /// Default 5.
    pub keep: usize,
}

impl Default for AuditOptions {
    fn default() -> AuditOptions {
        AuditOptions {
            max_bytes: None,
            keep: 5,
        }
    }
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
    tx: Option<SyncSender<Message>>,
    /// Set by [`AuditLog::reopen`], taken by the writer before its next write.
    reopen: Arc<AtomicBool>,
    metrics: AuditMetrics,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// What travels to the writer thread.
// Unboxed on purpose: the channel's slots are allocated once, and a box
// would cost an allocation per event on the request path.
#[allow(clippy::large_enum_variant)]
enum Message {
    Event(Event),
    /// Wakes an idle writer so a requested reopen happens now.
    Wake,
}

impl AuditLog {
    /// Opens the destination (creating parent directories) and starts the
    /// writer thread, with default [`AuditOptions`] (no size rotation).
    /// Fails if the file cannot be opened at start-up.
    pub fn open(dest: Destination, metrics: AuditMetrics) -> io::Result<AuditLog> {
        AuditLog::open_with(dest, metrics, AuditOptions::default())
    }

    /// As [`AuditLog::open`], with rotation options.
    pub fn open_with(
        dest: Destination,
        metrics: AuditMetrics,
        options: AuditOptions,
    ) -> io::Result<AuditLog> {
        let mut sink = Sink::open(dest, options)?;
        let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE_CAPACITY);
        let reopen = Arc::new(AtomicBool::new(false));
        let thread_reopen = reopen.clone();
        let thread_metrics = metrics.clone();
        let writer = std::thread::Builder::new()
            .name("lantern-audit".into())
            .spawn(move || {
                let handle = |message: Message, sink: &mut Sink| {
                    if thread_reopen.swap(false, Ordering::AcqRel) {
                        sink.reopen_now(&thread_metrics);
                    }
                    if let Message::Event(event) = message {
                        sink.write(&event, &thread_metrics);
                    }
                };
                // Parked in `recv` only while idle. Under load the writer
                // drains, flushes and sleeps `BATCH_INTERVAL` instead, so a
                // `record` finds no parked receiver to wake (no syscall on
                // the request path).
                while let Ok(message) = rx.recv() {
                    handle(message, &mut sink);
                    loop {
                        let mut drained = 0usize;
                        while let Ok(message) = rx.try_recv() {
                            handle(message, &mut sink);
                            drained += 1;
                        }
                        sink.flush(&thread_metrics);
                        if drained == 0 {
                            break;
                        }
                        std::thread::sleep(BATCH_INTERVAL);
                    }
                }
                sink.flush(&thread_metrics);
            })?;
        Ok(AuditLog {
            tx: Some(tx),
            reopen,
            metrics,
            writer: Some(writer),
        })
    }

    /// Queues an event; never blocks.
    pub fn record(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Message::Event(event)) {
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

    /// Closes and reopens the file at the configured path (for SIGHUP after
    /// logrotate moved it). Never blocks: events recorded after this call
    /// go to the new file; what was queued before may still land in the
    /// old one, which is complete once the writer has moved on.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        if let Some(tx) = &self.tx {
            // A full queue means the writer is busy and sees the flag soon.
            let _ = tx.try_send(Message::Wake);
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
    options: AuditOptions,
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    /// Bytes in the current file (what was there at open plus what we wrote).
    size: u64,
    /// One serialised line, reused.
    line: Vec<u8>,
}

impl Sink {
    fn open(dest: Destination, options: AuditOptions) -> io::Result<Sink> {
        let mut sink = Sink {
            dest,
            options,
            out: None,
            size: 0,
            line: Vec::with_capacity(512),
        };
        sink.out = Some(sink.open_dest()?);
        Ok(sink)
    }

    /// Opens the destination and sets `size` to the file's current length.
    fn open_dest(&mut self) -> io::Result<BufWriter<Box<dyn Write + Send>>> {
        let writer: Box<dyn Write + Send> = match &self.dest {
            Destination::Stdout => Box::new(io::stdout()),
            Destination::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::create_dir_all(dir)?;
                }
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                self.size = file.metadata()?.len();
                Box::new(file)
            }
        };
        Ok(BufWriter::new(writer))
    }

    /// Flushes and closes the current file, then opens the path anew.
    fn reopen_now(&mut self, metrics: &AuditMetrics) {
        if matches!(self.dest, Destination::Stdout) {
            return;
        }
        self.flush(metrics);
        self.out = None;
        match self.open_dest() {
            Ok(out) => {
                self.out = Some(out);
                info!("audit log reopened");
            }
            Err(e) => {
                metrics.write_errors.inc();
                warn!(error = %e, "audit log cannot be reopened; retrying on the next event");
            }
        }
    }

    fn write(&mut self, event: &Event, metrics: &AuditMetrics) {
        self.line.clear();
        if let Err(e) = serde_json::to_writer(&mut self.line, event) {
            metrics.write_errors.inc();
            warn!(error = %e, "audit event cannot be serialised; event lost");
            return;
        }
        self.line.push(b'\n');
        let len = self.line.len() as u64;
        if let (Some(max), Destination::File(_)) = (self.options.max_bytes, &self.dest) {
            if self.size > 0 && self.size + len > max {
                self.rotate(metrics);
            }
        }
        if self.out.is_none() {
            match self.open_dest() {
                Ok(out) => self.out = Some(out),
                Err(e) => {
                    metrics.write_errors.inc();
                    warn!(error = %e, "audit log cannot be reopened; event lost");
                    return;
                }
            }
        }
        let Some(out) = self.out.as_mut() else { return };
        match out.write_all(&self.line) {
            Ok(()) => {
                self.size += len;
                metrics.written.inc();
            }
            Err(e) => {
                metrics.write_errors.inc();
                warn!(error = %e, "audit write failed; reopening on the next event");
                self.out = None;
            }
        }
    }

    /// `audit.jsonl.<keep-1>` → `.<keep>` … `audit.jsonl` → `.1`; the file
    /// is reopened by the next write. A failed rename is counted and logged;
    /// the writer then goes on appending to the file it has.
    fn rotate(&mut self, metrics: &AuditMetrics) {
        let Destination::File(path) = &self.dest else {
            return;
        };
        let path = path.clone();
        self.flush(metrics);
        self.out = None;
        let keep = self.options.keep;
        let result = if keep == 0 {
            fs::remove_file(&path)
        } else {
            shift_rotated(&path, keep)
        };
        match result {
            Ok(()) => info!(path = %path.display(), keep, "audit log rotated"),
            Err(e) => {
                metrics.write_errors.inc();
                warn!(error = %e, path = %path.display(), "audit log rotation failed");
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

/// `path.<n>`: the name of the n-th rotated file.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn shift_rotated(path: &Path, keep: usize) -> io::Result<()> {
    let ignore_missing = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    ignore_missing(fs::remove_file(rotated_path(path, keep)))?;
    for n in (1..keep).rev() {
        ignore_missing(fs::rename(rotated_path(path, n), rotated_path(path, n + 1)))?;
    }
    ignore_missing(fs::rename(path, rotated_path(path, 1)))
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
            // Fixed: RFC 3339 fractions vary in length, and tests size files by lines.
            ts: "2026-01-01T00:00:00Z".into(),
            id: id.into(),
            client_ip: "127.0.0.1".parse().unwrap(),
            user: "127.0.0.1".into(),
            groups: Vec::new(),
            app: "chatgpt".into(),
            vendor: "OpenAI".into(),
            sanctioned: false,
            host: "chatgpt.com".into(),
            method: "POST".into(),
            path: path_only("/v1/x?key=secret").into(),
            provider: None,
            endpoint: None,
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

    fn read_lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits (bounded) until the writer has written `n` events in total.
    fn wait_written(m: &AuditMetrics, n: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while m.written.get() < n {
            assert!(std::time::Instant::now() < deadline, "writer stalled");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let line_len = serde_json::to_vec(&event("00")).unwrap().len() as u64 + 1;
        let m = metrics();
        let options = AuditOptions {
            max_bytes: Some(3 * line_len),
            keep: 2,
        };
        let log = AuditLog::open_with(Destination::File(path.clone()), m.clone(), options).unwrap();
        for i in 0..10 {
            log.record(event(&format!("{i:02}")));
        }
        drop(log);
        assert_eq!(m.written.get(), 10);
        assert_eq!(m.write_errors.get(), 0);
        // Three lines a file: 09 is current, 06-08 in .1, 03-05 in .2, and
        // 00-02 went past `keep` and was deleted.
        let ids = |p: &Path| -> Vec<String> {
            read_lines(p)
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(&path), ["09"]);
        assert_eq!(ids(&rotated_path(&path, 1)), ["06", "07", "08"]);
        assert_eq!(ids(&rotated_path(&path, 2)), ["03", "04", "05"]);
        assert!(!rotated_path(&path, 3).exists());
        for p in [path.clone(), rotated_path(&path, 1)] {
            assert!(std::fs::metadata(&p).unwrap().len() <= 3 * line_len);
        }
    }

    #[test]
    fn rotation_counts_what_is_already_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        let m = metrics();
        let options = AuditOptions {
            max_bytes: Some(120),
            keep: 1,
        };
        let log = AuditLog::open_with(Destination::File(path.clone()), m.clone(), options).unwrap();
        log.record(event("a"));
        drop(log);
        assert_eq!(
            std::fs::read(rotated_path(&path, 1)).unwrap(),
            vec![b'x'; 100]
        );
        assert_eq!(read_lines(&path)[0]["id"], "a");
    }

    #[test]
    fn reopen_follows_a_file_moved_away_by_logrotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let moved = dir.path().join("audit.jsonl-20250101");
        let m = metrics();
        let log = AuditLog::open(Destination::File(path.clone()), m.clone()).unwrap();
        log.record(event("before"));
        wait_written(&m, 1);
        std::fs::rename(&path, &moved).unwrap();
        // Without a reopen the writer keeps its handle on the moved file.
        log.record(event("still-old"));
        wait_written(&m, 2);
        log.reopen();
        log.record(event("after"));
        drop(log);
        let ids = |p: &Path| -> Vec<String> {
            read_lines(p)
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(&moved), ["before", "still-old"]);
        assert_eq!(ids(&path), ["after"]);
        assert_eq!(m.write_errors.get(), 0);
    }

    #[test]
    fn reopen_on_an_idle_writer_creates_the_file_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(Destination::File(path.clone()), metrics()).unwrap();
        std::fs::remove_file(&path).unwrap();
        log.reopen();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "file not recreated");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    #[test]
    fn incident_ids_are_distinct() {
        let a = incident_id();
        let b = incident_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn write_failures_are_counted_not_fatal() {
        // /dev/full accepts the open and fails every write (ENOSPC).
        let m = metrics();
        let log = AuditLog::open(Destination::File("/dev/full".into()), m.clone()).unwrap();
        for i in 0..3 {
            log.record(event(&i.to_string()));
        }
        drop(log);
        assert!(
            m.write_errors.get() >= 1,
            "write errors: {}",
            m.write_errors.get()
        );
        assert_eq!(m.dropped.get(), 0);
    }
}
