//! Soak: the `lantern` binary (release, bundled rules and policy) as a child
//! process, so `/proc/<pid>/status` gives lantern's own RSS, under moderate
//! load for `LOAD_SOAK_SECS` (default 600): `LOAD_SOAK_CONNS` connections
//! (default 16), each sending one request every `LOAD_SOAK_INTERVAL_MS`
//! (default 20 ms, so at most ~800 req/s) and reconnecting every
//! `CHURN` requests. Connections cycle through clean 1 KiB and 64 KiB
//! prompts (inspected, allowed), 1 KiB prompts with an AWS key (blocked by
//! lantern) and a blind tunnel.
//!
//! Passes when no request failed or stalled, no blocked prompt reached the
//! upstream, lantern's counters agree, lantern exits cleanly on SIGTERM,
//! and its RSS at the end is within `RSS_SLACK` of the RSS after warm-up.

use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::client::{self, exchange, open, Expect, Outcome, Route};
use crate::upstream::Upstream;
use crate::{corpus, metric_sum, BoxError, INTERCEPT_HOST, TUNNEL_HOST};

/// Requests per connection before it is closed and a new one opened, so
/// CONNECT, TLS and the leaf cache stay on the path.
const CHURN: u64 = 500;
/// RSS may grow this much (fraction) from the warm-up sample to the end.
const RSS_SLACK: f64 = 0.20;
/// A request slower than this is a stall.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often RSS and fds are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

pub struct Options {
    duration: Duration,
    connections: usize,
    interval: Duration,
}

impl Options {
    pub fn from_env() -> Result<Options, BoxError> {
        let number =
            |name: &str, default: u64| -> Result<u64, BoxError> {
                match std::env::var(name) {
                    Ok(v) => v.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| {
                        format!("{name} must be a positive integer, not {v:?}").into()
                    }),
                    Err(_) => Ok(default),
                }
            };
        Ok(Options {
            duration: Duration::from_secs(number("LOAD_SOAK_SECS", 600)?),
            connections: number("LOAD_SOAK_CONNS", 16)? as usize,
            interval: Duration::from_millis(number("LOAD_SOAK_INTERVAL_MS", 20)?),
        })
    }
}

/// What connections of one kind send and must get back.
#[derive(Clone, Copy)]
struct Kind {
    name: &'static str,
    size: usize,
    secret: bool,
    via_tunnel: bool,
}

const KINDS: [Kind; 4] = [
    Kind {
        name: "inspect 1 KiB",
        size: 1024,
        secret: false,
        via_tunnel: false,
    },
    Kind {
        name: "inspect 64 KiB",
        size: 64 * 1024,
        secret: false,
        via_tunnel: false,
    },
    Kind {
        name: "block 1 KiB",
        size: 1024,
        secret: true,
        via_tunnel: false,
    },
    Kind {
        name: "tunnel 1 KiB",
        size: 1024,
        secret: false,
        via_tunnel: true,
    },
];

/// Counters shared by the load tasks.
#[derive(Default)]
struct Counts {
    ok: [AtomicU64; 4],
    errors: AtomicU64,
    stalls: AtomicU64,
    connections: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counts {
    fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(message);
        }
    }

    fn ok_total(&self) -> u64 {
        self.ok.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// One sample of the child's resources.
#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
    requests: u64,
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A free loopback port (bound, read, released: a small race, fine here).
fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A plain-HTTP GET on the admin listener: status code and body.
async fn admin_get(admin: SocketAddr, path: &str) -> Result<(u16, String), BoxError> {
    let mut tcp = TcpStream::connect(admin).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

pub async fn run(options: Options) -> Result<bool, BoxError> {
    let upstream = Upstream::start(&[INTERCEPT_HOST, TUNNEL_HOST], false).await?;
    let dir = tempfile::tempdir()?;
    let upstream_ca = dir.path().join("upstream-ca.pem");
    std::fs::write(&upstream_ca, &upstream.ca_pem)?;
    let proxy_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let data_dir = dir.path().join("data");
    let config_path = dir.path().join("lantern.yaml");
    std::fs::write(
        &config_path,
        format!(
            "listen: {proxy_addr}\nadmin_listen: {admin_addr}\ndata_dir: {data}\n\
             upstream:\n  ca_file: {ca}\n  resolve:\n    \"{INTERCEPT_HOST}:443\": \"{up}\"\n    \"{TUNNEL_HOST}:443\": \"{up}\"\n\
             proxy: {{shutdown_grace: 2s}}\n",
            data = data_dir.display(),
            ca = upstream_ca.display(),
            up = upstream.addr,
        ),
    )?;
    let log_path = dir.path().join("lantern.log");
    let log = std::fs::File::create(&log_path)?;
    let binary = env!("CARGO_BIN_EXE_lantern");
    let mut child = Command::new(binary)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {binary}: {e}"))?;
    let pid = child.id().ok_or("lantern exited at once")?;
    let log_tail = |path: &FsPath| {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        let start = log.len().saturating_sub(1500);
        log.get(start..).unwrap_or_default().trim().to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(format!("lantern exited ({status}): {}", log_tail(&log_path)).into());
        }
        if matches!(admin_get(admin_addr, "/healthz").await, Ok((200, _))) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("lantern not healthy within 30 s: {}", log_tail(&log_path)).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lantern_ca = std::fs::read_to_string(data_dir.join("ca.pem"))?;
    let idle_rss = status_kib(pid, "VmRSS:").unwrap_or(0);
    println!(
        "lantern soak: {} (pid {pid}) for {} s, {} connections, one request per {} ms each, reconnect every {CHURN}; idle RSS {:.1} MiB",
        binary,
        options.duration.as_secs(),
        options.connections,
        options.interval.as_millis(),
        mib(idle_rss),
    );

    let lantern_route = Route {
        addr: proxy_addr,
        connect: true,
        host: INTERCEPT_HOST,
        tls: client::connector(&lantern_ca)?,
    };
    let tunnel_route = Route {
        addr: proxy_addr,
        connect: true,
        host: TUNNEL_HOST,
        tls: client::connector(&upstream.ca_pem)?,
    };
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let end = started + options.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..options.connections {
        let k = i % KINDS.len();
        let kind = KINDS[k];
        let route = if kind.via_tunnel {
            tunnel_route.clone()
        } else {
            lantern_route.clone()
        };
        let body = Bytes::from(corpus::chat_body(kind.size, kind.secret));
        let expect = if kind.secret {
            Expect::LanternBlock
        } else {
            Expect::Answer
        };
        let counts = counts.clone();
        let interval = options.interval;
        let spread = i as f64 / options.connections as f64;
        tasks.spawn(async move {
            // Spread the connections' ticks over one interval.
            let offset = interval.mul_f64(spread);
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            'connections: while Instant::now() < end {
                let mut sender = match open(&route).await {
                    Ok(s) => s,
                    Err(e) => {
                        counts.error(format!("{}: open: {e}", kind.name));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                counts.connections.fetch_add(1, Ordering::Relaxed);
                for _ in 0..CHURN {
                    tick.tick().await;
                    if Instant::now() >= end {
                        break 'connections;
                    }
                    match exchange(&mut sender, route.host, &body, expect, REQUEST_TIMEOUT).await {
                        Outcome::Good => {
                            counts.ok[k].fetch_add(1, Ordering::Relaxed);
                        }
                        Outcome::Wrong(e) => counts.error(format!("{}: {e}", kind.name)),
                        Outcome::Broken(e) => {
                            counts.error(format!("{}: {e}", kind.name));
                            continue 'connections;
                        }
                        Outcome::Stalled => {
                            counts.stalls.fetch_add(1, Ordering::Relaxed);
                            continue 'connections;
                        }
                    }
                }
            }
        });
    }

    let mut samples = Vec::new();
    let take = |counts: &Counts| Sample {
        at: started.elapsed(),
        rss_kib: status_kib(pid, "VmRSS:").unwrap_or(0),
        fds: fd_count(pid),
        requests: counts.ok_total(),
    };
    // Print a line per minute (per sample for runs under two minutes).
    let print_every = if options.duration >= Duration::from_secs(120) {
        6
    } else {
        1
    };
    let mut next = started + SAMPLE_EVERY;
    while next <= end {
        tokio::time::sleep_until(next.into()).await;
        let s = take(&counts);
        samples.push(s);
        if samples.len() % print_every == 0 {
            println!(
                "  {:>5.0} s  RSS {:>6.1} MiB  fds {:>4}  requests {:>8}  errors {}  stalls {}",
                s.at.as_secs_f64(),
                mib(s.rss_kib),
                s.fds,
                s.requests,
                counts.errors.load(Ordering::Relaxed),
                counts.stalls.load(Ordering::Relaxed),
            );
        }
        next += SAMPLE_EVERY;
    }
    while tasks.join_next().await.is_some() {}
    let last = take(&counts);
    let peak_kib = status_kib(pid, "VmHWM:").unwrap_or(0);
    let metrics = match admin_get(admin_addr, "/metrics").await {
        Ok((200, body)) => body,
        Ok((status, _)) => return Err(format!("/metrics answered {status}").into()),
        Err(e) => return Err(format!("/metrics: {e}").into()),
    };
    // SIGTERM to our own child, by pid: lantern's graceful shutdown.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;

    // "Start" is the first sample after a minute of load (a fifth of the run
    // for short runs): pools, caches and allocator arenas have filled by then.
    let warm_at = Duration::from_secs(60).min(options.duration / 5);
    let warm = samples
        .iter()
        .find(|s| s.at >= warm_at)
        .copied()
        .unwrap_or(last);
    let elapsed = last.at.as_secs_f64();
    println!(
        "\nsoak result after {elapsed:.0} s: {} requests ({:.0} req/s), {} connections opened",
        last.requests,
        last.requests as f64 / elapsed,
        counts.connections.load(Ordering::Relaxed),
    );
    for (kind, ok) in KINDS.iter().zip(&counts.ok) {
        println!(
            "  {:<15} {:>9} good answers",
            kind.name,
            ok.load(Ordering::Relaxed)
        );
    }
    let growth = mib(last.rss_kib) / mib(warm.rss_kib) - 1.0;
    println!(
        "  lantern RSS: idle {:.1} MiB; start (at {:.0} s) {:.1} MiB; end {:.1} MiB ({:+.1} %); peak (VmHWM) {:.1} MiB; fds start {} end {}",
        mib(idle_rss),
        warm.at.as_secs_f64(),
        mib(warm.rss_kib),
        mib(last.rss_kib),
        growth * 100.0,
        mib(peak_kib),
        warm.fds,
        last.fds,
    );
    let min = samples.iter().map(|s| s.rss_kib).min().unwrap_or(0);
    let max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    println!(
        "  RSS over all {} samples: min {:.1} MiB, max {:.1} MiB",
        samples.len(),
        mib(min),
        mib(max)
    );

    let mut clean = true;
    let mut fail = |message: String| {
        println!("SOAK FAILED: {message}");
        clean = false;
    };
    let errors = counts.errors.load(Ordering::Relaxed);
    let stalls = counts.stalls.load(Ordering::Relaxed);
    if errors + stalls > 0 {
        let first = counts
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| "a stall".into());
        fail(format!("{errors} errors, {stalls} stalls; first: {first}"));
    }
    if growth > RSS_SLACK {
        fail(format!(
            "RSS grew {:.1} % from {:.0} s to the end (slack {:.0} %)",
            growth * 100.0,
            warm.at.as_secs_f64(),
            RSS_SLACK * 100.0
        ));
    }
    let leaks = upstream.seen.leaks.load(Ordering::Relaxed);
    if leaks > 0 {
        fail(format!("{leaks} blocked prompts reached the upstream"));
    }
    let ok = |i: usize| counts.ok[i].load(Ordering::Relaxed);
    let reached = upstream.seen.chats.load(Ordering::Relaxed);
    if reached != ok(0) + ok(1) + ok(3) {
        fail(format!(
            "the upstream answered {reached} chat posts, the client got {}",
            ok(0) + ok(1) + ok(3)
        ));
    }
    let blocked = metric_sum(&metrics, "lantern_requests_total", "decision=\"block\"");
    if blocked != ok(2) {
        fail(format!(
            "lantern counted {blocked} blocks, the client got {}",
            ok(2)
        ));
    }
    let upstream_errors = metric_sum(&metrics, "lantern_upstream_errors", "");
    if upstream_errors > 0 {
        fail(format!("lantern counted {upstream_errors} upstream errors"));
    }
    match exit {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => fail(format!(
            "lantern exited with {status} on SIGTERM: {}",
            log_tail(&log_path)
        )),
        Ok(Err(e)) => fail(format!("waiting for lantern: {e}")),
        Err(_) => fail("lantern did not exit within 10 s of SIGTERM".into()),
    }
    println!(
        "  verdict: {}",
        if clean { "steady, no errors" } else { "FAILED" }
    );
    Ok(clean)
}
