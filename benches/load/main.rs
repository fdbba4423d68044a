//! Load harness: requests/s and p50/p99/p999 latency of OpenAI
//! chat-completions POSTs (1 KiB and 64 KiB) over HTTP/1.1 keep-alive, at
//! 1, 16, 64 and 256 connections, along these paths:
//!
//! - `direct`: TLS straight to the mock upstream;
//! - `tunnel`: `CONNECT bench.example.test:443` through lantern, a host not
//!   in the catalog: lantern splices bytes, TLS runs end to end;
//! - `inspect`: `CONNECT api.openai.com:443` (catalog, `inspect: true`): the
//!   client trusts lantern's CA; lantern extracts the prompt, scans it with
//!   the bundled detection rules, applies the bundled policy (clean prompt:
//!   allowed), then re-encrypts to the upstream;
//! - `block`: as `inspect`, but the prompt ends in an AWS access key: the
//!   policy blocks it, lantern answers 403 itself and the upstream never
//!   sees it;
//! - `mitm`, `mitm-block`: the same two through `mitmdump` with
//!   `benches/mitm_addon.py` (a credential regex over the body, 403 on a
//!   match). Skipped with a note when mitmproxy is not installed.
//!
//! Then a bulk cell: a 64 MiB download and upload, direct and through a
//! blind tunnel, in MB/s.
//!
//! `cargo bench --bench load` runs all that in a few minutes and stops by
//! itself. `cargo bench --bench load -- soak` instead runs the lantern
//! binary as a child process under moderate load for `LOAD_SOAK_SECS`
//! (default 600) and reports its RSS (see `soak.rs`). Knobs and figures:
//! benches/README.md.
//!
//! The figures cannot lie about the path they measure: each path trusts only
//! the CA it should meet, every answer is checked (the upstream's body, or
//! the exact 403), the upstream counts what reached it (a blocked prompt
//! reaching it is a failure), and lantern's counters must match the
//! requests sent. Any error, stall or failed check exits non-zero.

mod client;
mod corpus;
mod mitm;
mod soak;
mod upstream;

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use client::{exchange, open, open_tls, Expect, Outcome, Route, Sender};
use lantern::catalog::Catalog;
use lantern::config::Config;
use lantern::detect::Engine;
use lantern::diag::error_chain;
use lantern::inspect::{AllowAll, Decision, InspectRequest};
use lantern::policy::{Known, Policy};
use lantern::proxy::{self, Listeners, Proxy};
use lantern::tls::CertificateAuthority;
use mitm::Mitm;
use upstream::{Upstream, BULK_PATH};

type BoxError = Box<dyn Error + Send + Sync>;

/// Concurrent keep-alive connections per cell, unless `LOAD_CONNS` lists others.
const CONNECTIONS: [usize; 4] = [1, 16, 64, 256];
/// Requests before this are not measured (pools, caches, TCP windows).
const WARMUP: Duration = Duration::from_millis(500);
/// Measured seconds per cell unless `LOAD_SECS` says otherwise.
const DEFAULT_SECS: f64 = 2.0;
/// A request slower than this is a stall: its connection gives up, the cell
/// is flagged, and the run still ends on time. mitmproxy at 256 connections
/// with 64 KiB bodies answers in ~1-3 s, hence the margin.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest measured window a slow cell is stretched to (see `run_cell`).
const MAX_WINDOW: Duration = Duration::from_secs(20);
/// Time to open one cell's connections (TCP, CONNECT, TLS).
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// Bulk transfers per direction and path; the median is reported.
const BULK_RUNS: usize = 9;
/// In the bundled catalog with `inspect: true`.
const INTERCEPT_HOST: &str = "api.openai.com";
/// Not in the catalog: blind tunnel.
const TUNNEL_HOST: &str = "bench.example.test";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Path {
    Direct,
    Tunnel,
    Inspect,
    Block,
    Mitm,
    MitmBlock,
}

impl Path {
    const ALL: [Path; 6] = [
        Path::Direct,
        Path::Tunnel,
        Path::Inspect,
        Path::Block,
        Path::Mitm,
        Path::MitmBlock,
    ];

    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Tunnel => "tunnel",
            Path::Inspect => "inspect",
            Path::Block => "block",
            Path::Mitm => "mitm",
            Path::MitmBlock => "mitm-block",
        }
    }

    /// Whether the body carries the secret.
    fn secret(self) -> bool {
        matches!(self, Path::Block | Path::MitmBlock)
    }

    fn expect(self) -> Expect {
        match self {
            Path::Block => Expect::LanternBlock,
            Path::MitmBlock => Expect::MitmBlock,
            _ => Expect::Answer,
        }
    }

    /// Whether its good requests reach the upstream.
    fn reaches_upstream(self) -> bool {
        !self.secret()
    }
}

/// Routes and bodies shared by every connection.
struct Setup {
    direct: Route,
    tunnel: Route,
    lantern: Route,
    mitm: Option<Route>,
    /// `bodies[size index][secret as usize]`.
    bodies: Vec<[Bytes; 2]>,
}

impl Setup {
    fn route(&self, path: Path) -> Option<&Route> {
        match path {
            Path::Direct => Some(&self.direct),
            Path::Tunnel => Some(&self.tunnel),
            Path::Inspect | Path::Block => Some(&self.lantern),
            Path::Mitm | Path::MitmBlock => self.mitm.as_ref(),
        }
    }

    fn body(&self, size: usize, path: Path) -> Bytes {
        let i = corpus::SIZES.iter().position(|&s| s == size).unwrap_or(0);
        self.bodies[i][path.secret() as usize].clone()
    }
}

/// One cell's outcome.
struct Cell {
    path: Path,
    size: usize,
    connections: usize,
    /// Latencies of requests completed in the measured window, sorted:
    /// their count over the window is the cell's req/s (a slow path whose
    /// requests all started during warm-up still counts).
    latencies: Vec<Duration>,
    /// Good answers, warm-up included.
    ok_total: u64,
    errors: u64,
    stalls: u64,
    first_error: Option<String>,
    seconds: f64,
}

impl Cell {
    fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds
    }

    /// Nearest-rank percentile, in milliseconds.
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p * self.latencies.len() as f64).ceil() as usize).max(1);
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }

    fn is_clean(&self) -> bool {
        self.errors == 0 && self.stalls == 0 && !self.latencies.is_empty()
    }
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    ok_total: u64,
    errors: u64,
    stalls: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; the one word we look for is `soak`.
    let soak = std::env::args().skip(1).any(|a| a == "soak");
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if soak {
            soak::run(soak::Options::from_env()?).await
        } else {
            run(Options::from_env()?).await
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load harness failed: {}", error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// The knobs of the default run.
struct Options {
    measure: Duration,
    connections: Vec<usize>,
    /// Paths to measure (`LOAD_PATHS=direct,inspect`); all by default.
    paths: Vec<Path>,
    /// lantern's `upstream.pool_max_idle_per_host` (`LOAD_POOL_IDLE`);
    /// lantern's default (32) otherwise.
    pool_idle: Option<usize>,
    h1_upstream: bool,
}

impl Options {
    fn from_env() -> Result<Options, BoxError> {
        let measure = match std::env::var("LOAD_SECS") {
            Ok(v) => match v.parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
                _ => return Err(format!("LOAD_SECS must be a positive number, not {v:?}").into()),
            },
            Err(_) => Duration::from_secs_f64(DEFAULT_SECS),
        };
        let connections = match std::env::var("LOAD_CONNS") {
            Ok(v) => v
                .split(',')
                .map(|n| n.trim().parse::<usize>().ok().filter(|&n| n > 0))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("LOAD_CONNS must list connection counts, not {v:?}"))?,
            Err(_) => CONNECTIONS.to_vec(),
        };
        let paths = match std::env::var("LOAD_PATHS") {
            Ok(v) => v
                .split(',')
                .map(|name| Path::ALL.into_iter().find(|p| p.name() == name.trim()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    format!(
                        "LOAD_PATHS must list paths of {:?}, not {v:?}",
                        Path::ALL.map(Path::name)
                    )
                })?,
            Err(_) => Path::ALL.to_vec(),
        };
        let pool_idle = match std::env::var("LOAD_POOL_IDLE") {
            Ok(v) => Some(
                v.parse::<usize>()
                    .map_err(|_| format!("LOAD_POOL_IDLE must be a number, not {v:?}"))?,
            ),
            Err(_) => None,
        };
        Ok(Options {
            measure,
            connections,
            paths,
            pool_idle,
            h1_upstream: std::env::var_os("LOAD_UPSTREAM_H1").is_some(),
        })
    }
}

/// The soft open-files limit, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// Refuses to start a run whose connections would exhaust file descriptors:
/// each connection costs about four here (client, lantern's two sides, the
/// upstream), all in this one process.
fn check_fd_limit(connections: usize) -> Result<(), BoxError> {
    let needed = connections as u64 * 4 + 128;
    match open_files_limit() {
        Some(limit) if limit < needed => Err(format!(
            "{connections} connections need about {needed} file descriptors; `ulimit -n` is {limit}: raise it (ulimit -n 4096) or set LOAD_CONNS"
        )
        .into()),
        _ => Ok(()),
    }
}

/// The bundled detection rules must find nothing in the clean bodies and the
/// AWS key in the others, or the figures would measure the wrong thing.
fn check_corpus(engine: &Engine, bodies: &[[Bytes; 2]]) -> Result<(), BoxError> {
    for (size, pair) in corpus::SIZES.iter().zip(bodies) {
        for (secret, body) in pair.iter().enumerate() {
            serde_json::from_slice::<serde_json::Value>(body)
                .map_err(|e| format!("{size} B body is not JSON: {e}"))?;
            let findings = engine.scan(body);
            let ids: Vec<&str> = findings.iter().map(|f| f.detector()).collect();
            let ok = if secret == 1 {
                ids.contains(&"secret.aws_access_key")
            } else {
                ids.is_empty()
            };
            if !ok {
                return Err(format!(
                    "corpus check: {size} B body (secret: {}) has findings {ids:?}",
                    secret == 1
                )
                .into());
            }
        }
    }
    Ok(())
}

/// lantern running in this process.
struct Lantern {
    proxy: Arc<Proxy>,
    addr: SocketAddr,
    ca_pem: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), proxy::Error>>,
}

/// lantern in-process on 127.0.0.1:0 with the bundled catalog, detection
/// rules and policy, as `lantern run` builds them.
async fn start_lantern(config: Config, engine: Engine) -> Result<Lantern, BoxError> {
    let ca = CertificateAuthority::generate()?;
    let ca_pem = ca.cert_pem().to_string();
    let catalog = Arc::new(Catalog::bundled().map_err(|p| format!("bundled catalog: {p:?}"))?);
    let detectors: Vec<String> = engine.detector_ids().map(String::from).collect();
    let known = Known {
        app: &|id: &str| catalog.apps().iter().any(|a| a.id == id),
        detectors: &detectors,
    };
    let policy = Policy::bundled(&known).map_err(|p| format!("bundled policy: {p:?}"))?;
    let listeners = Listeners {
        proxy: TcpListener::bind("127.0.0.1:0").await?,
        admin: TcpListener::bind("127.0.0.1:0").await?,
    };
    let proxy_addr = listeners.proxy.local_addr()?;
    let ack_base = format!("http://{}", listeners.admin.local_addr()?);
    let proxy = Proxy::new(config, catalog.clone(), Arc::new(ca), Arc::new(AllowAll))?;
    let inspect = &proxy.config.inspect;
    lantern::rules::install(&proxy, catalog, engine, policy, inspect, &ack_base);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(proxy::run(proxy.clone(), listeners, async {
        let _ = stopped.await;
    }));
    Ok(Lantern {
        proxy,
        addr: proxy_addr,
        ca_pem,
        stop,
        task,
    })
}

/// Times lantern's inspector alone (extraction, detection, policy, the
/// response for a block) on each body, one thread, before any load, and
/// checks its decisions: clean bodies allowed, secret ones blocked. The
/// per-request CPU the intercept path spends on judgement, for reading the
/// req/s ratios.
fn time_inspection(proxy: &Proxy, bodies: &[[Bytes; 2]]) -> Result<(), BoxError> {
    let rules = proxy.rules();
    let app = rules
        .catalog
        .lookup(INTERCEPT_HOST)
        .ok_or("api.openai.com is not in the bundled catalog")?
        .clone();
    let method = Method::POST;
    let uri: hyper::Uri = format!("https://{INTERCEPT_HOST}{}", upstream::CHAT_PATH).parse()?;
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    let mut line = String::from("inspection alone (PolicyInspector::inspect, one thread):");
    for (size, pair) in corpus::SIZES.iter().zip(bodies) {
        for (secret, body) in pair.iter().enumerate() {
            let request = InspectRequest {
                app: &app,
                client: std::net::IpAddr::from([127, 0, 0, 1]),
                method: &method,
                uri: &uri,
                headers: &headers,
                body,
                user: "127.0.0.1",
                groups: &[],
                incident: "bench",
            };
            let want = if secret == 1 {
                Decision::Block
            } else {
                Decision::Allow
            };
            let got = rules.inspector.inspect(&request).verdict.decision();
            if got != want {
                return Err(
                    format!("inspector: {size} B body decided {got:?}, expected {want:?}").into(),
                );
            }
            let runs = (4 * 1024 * 1024 / size).max(20);
            let started = Instant::now();
            for _ in 0..runs {
                std::hint::black_box(rules.inspector.inspect(&request));
            }
            let micros = started.elapsed().as_secs_f64() * 1e6 / runs as f64;
            line.push_str(&format!(
                " {} {} {micros:.0} µs;",
                size_name(*size),
                if secret == 1 { "blocked" } else { "clean" }
            ));
        }
    }
    println!("{}", line.trim_end_matches(';'));
    Ok(())
}

/// Starts the upstream, lantern and mitmproxy, runs every cell, prints the
/// report. `Ok(false)` when a cell saw errors or a check failed.
async fn run(options: Options) -> Result<bool, BoxError> {
    let max_connections = options.connections.iter().copied().max().unwrap_or(1);
    check_fd_limit(max_connections)?;
    let upstream = Upstream::start(&[INTERCEPT_HOST, TUNNEL_HOST], options.h1_upstream).await?;
    let dir = tempfile::tempdir()?;
    let upstream_ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&upstream_ca_file, &upstream.ca_pem)?;

    let bodies: Vec<[Bytes; 2]> = corpus::SIZES
        .iter()
        .map(|&size| {
            [
                Bytes::from(corpus::chat_body(size, false)),
                Bytes::from(corpus::chat_body(size, true)),
            ]
        })
        .collect();
    let engine = Engine::bundled().map_err(|e| format!("bundled rules: {e:?}"))?;
    check_corpus(&engine, &bodies)?;

    let mut config = Config {
        data_dir: dir.path().join("lantern-data"),
        ..Config::default()
    };
    config.upstream.ca_file = Some(upstream_ca_file.clone());
    for host in [INTERCEPT_HOST, TUNNEL_HOST] {
        config
            .upstream
            .resolve
            .insert(format!("{host}:443"), upstream.addr);
    }
    config.proxy.shutdown_grace = Duration::from_secs(1);
    if let Some(idle) = options.pool_idle {
        config.upstream.pool_max_idle_per_host = idle;
    }
    let Lantern {
        proxy,
        addr: proxy_addr,
        ca_pem: lantern_ca_pem,
        stop,
        task: lantern,
    } = start_lantern(config, engine).await?;

    time_inspection(&proxy, &bodies)?;
    let mitm = match Mitm::locate() {
        Ok(mitmdump) => Some(Mitm::start(&mitmdump, upstream.addr, &upstream_ca_file).await?),
        Err(why) => {
            println!("NOTE: mitmproxy paths skipped: {why}");
            None
        }
    };

    let to_upstream = client::connector(&upstream.ca_pem)?;
    let setup = Arc::new(Setup {
        direct: Route {
            addr: upstream.addr,
            connect: false,
            host: INTERCEPT_HOST,
            tls: to_upstream.clone(),
        },
        tunnel: Route {
            addr: proxy_addr,
            connect: true,
            host: TUNNEL_HOST,
            tls: to_upstream,
        },
        lantern: Route {
            addr: proxy_addr,
            connect: true,
            host: INTERCEPT_HOST,
            tls: client::connector(&lantern_ca_pem)?,
        },
        mitm: match &mitm {
            Some(m) => Some(Route {
                addr: m.addr,
                connect: true,
                host: INTERCEPT_HOST,
                tls: client::connector(&m.ca_pem)?,
            }),
            None => None,
        },
        bodies,
    });

    println!(
        "lantern load: OpenAI chat POSTs of {:?} B, HTTP/1.1 keep-alive, connections {:?}, {:.1} s per cell after {:.1} s warm-up, {} worker threads, loopback; upstream offers {}; lantern pool_max_idle_per_host {}",
        corpus::SIZES,
        options.connections,
        options.measure.as_secs_f64(),
        WARMUP.as_secs_f64(),
        tokio::runtime::Handle::current().metrics().num_workers(),
        if options.h1_upstream { "http/1.1" } else { "h2 + http/1.1" },
        options
            .pool_idle
            .unwrap_or(Config::default().upstream.pool_max_idle_per_host),
    );
    // Paths alternate within each connection count and size, so the cells
    // compared in a ratio run seconds apart and share whatever else the box
    // is doing.
    let mut cells = Vec::new();
    for &connections in &options.connections {
        for size in corpus::SIZES {
            for &path in &options.paths {
                if setup.route(path).is_none() {
                    continue;
                }
                let cell = run_cell(setup.clone(), path, size, connections, options.measure).await;
                eprintln!(
                    "  {:>5} B {:<10} {:>3} conns: {:>8.0} req/s{}",
                    size,
                    path.name(),
                    connections,
                    cell.rps(),
                    if cell.is_clean() { "" } else { "  (errors)" }
                );
                cells.push(cell);
            }
        }
    }
    let bulk = run_bulk(&setup).await;

    let inspected = proxy.metrics.inspected_bytes.get();
    let metrics = proxy.metrics.render();
    if let Some(m) = mitm {
        let mitm_failed = cells
            .iter()
            .any(|c| matches!(c.path, Path::Mitm | Path::MitmBlock) && !c.is_clean());
        if mitm_failed {
            println!("mitmdump's log ends with:\n{}", m.log_tail());
        }
        m.stop().await;
    }
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(3), lantern).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("lantern stopped with an error: {e}"),
        Ok(Err(e)) => eprintln!("lantern task failed: {e}"),
        Err(_) => eprintln!("lantern did not stop within 3 s of shutdown"),
    }

    cells.sort_by_key(|c| (c.size, c.path, c.connections));
    let mut clean = report(&cells);
    clean &= report_bulk(&bulk);
    clean &= check_counters(&cells, &upstream, inspected, &metrics);
    println!(
        "\nupstream: {} TLS connections accepted, {} chat posts answered",
        upstream.seen.connections.load(Ordering::Relaxed),
        upstream.seen.chats.load(Ordering::Relaxed),
    );
    println!("\nlantern counters after the run:");
    for line in metrics.lines().filter(|l| {
        [
            "lantern_tunnels",
            "lantern_requests",
            "lantern_upstream_errors",
            "lantern_connections_refused",
            "lantern_uninspected",
            "lantern_inspected_bytes",
        ]
        .iter()
        .any(|m| l.starts_with(m))
    }) {
        println!("  {line}");
    }
    Ok(clean)
}

/// Sums the samples of `name` whose labels contain `label`.
fn metric_sum(scrape: &str, name: &str, label: &str) -> u64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// What the upstream and lantern counted must match what the client saw.
fn check_counters(cells: &[Cell], upstream: &Upstream, inspected: u64, metrics: &str) -> bool {
    let total = |pred: &dyn Fn(&Cell) -> bool| -> u64 {
        cells.iter().filter(|c| pred(c)).map(|c| c.ok_total).sum()
    };
    let mut clean = true;
    let mut fail = |message: String| {
        println!("CHECK FAILED: {message}");
        clean = false;
    };
    let seen = &upstream.seen;
    let leaks = seen.leaks.load(Ordering::Relaxed);
    if leaks > 0 {
        fail(format!(
            "{leaks} requests with the secret reached the upstream"
        ));
    }
    let wrong = seen.wrong.load(Ordering::Relaxed);
    if wrong > 0 {
        fail(format!(
            "{wrong} requests reached the upstream with a wrong body size"
        ));
    }
    let reached = seen.chats.load(Ordering::Relaxed);
    let sent = total(&|c| c.path.reaches_upstream());
    if reached != sent {
        fail(format!(
            "the upstream answered {reached} chat posts, the client got {sent} answers through paths that reach it"
        ));
    }
    let lantern_paths = |c: &Cell| matches!(c.path, Path::Inspect | Path::Block);
    let expected: u64 = cells
        .iter()
        .filter(|c| lantern_paths(c))
        .map(|c| c.ok_total * c.size as u64)
        .sum();
    if inspected < expected {
        fail(format!(
            "lantern inspected {inspected} B, expected at least {expected} B"
        ));
    }
    let blocked = metric_sum(metrics, "lantern_requests_total", "decision=\"block\"");
    let block_sent = total(&|c| c.path == Path::Block);
    if blocked != block_sent {
        fail(format!(
            "lantern counted {blocked} blocks, the client got {block_sent}"
        ));
    }
    let allowed = metric_sum(metrics, "lantern_requests_total", "decision=\"allow\"");
    let inspect_sent = total(&|c| c.path == Path::Inspect);
    if allowed != inspect_sent {
        fail(format!(
            "lantern counted {allowed} allowed requests, the client got {inspect_sent} answers on `inspect`"
        ));
    }
    clean
}

/// Opens `connections` keep-alive connections along `path`, drives them for
/// the warm-up plus `measure`, and merges what they saw.
async fn run_cell(
    setup: Arc<Setup>,
    path: Path,
    size: usize,
    connections: usize,
    measure: Duration,
) -> Cell {
    let mut cell = Cell {
        path,
        size,
        connections,
        latencies: Vec::new(),
        ok_total: 0,
        errors: 0,
        stalls: 0,
        first_error: None,
        seconds: measure.as_secs_f64(),
    };
    let Some(route) = setup.route(path).cloned() else {
        return cell;
    };
    let mut opening = JoinSet::new();
    for _ in 0..connections {
        let route = route.clone();
        opening.spawn(async move {
            tokio::time::timeout(OPEN_TIMEOUT, open(&route))
                .await
                .unwrap_or_else(|_| Err("opening the connection timed out".into()))
        });
    }
    let mut senders = Vec::with_capacity(connections);
    while let Some(joined) = opening.join_next().await {
        match joined {
            Ok(Ok(sender)) => senders.push(sender),
            Ok(Err(e)) => {
                cell.errors += 1;
                cell.first_error
                    .get_or_insert_with(|| format!("open: {}", error_chain(&*e)));
            }
            Err(e) => {
                cell.errors += 1;
                cell.first_error.get_or_insert_with(|| format!("open: {e}"));
            }
        }
    }

    // One request per connection before the clock starts, like opening it:
    // a proxy may open its upstream connection on the first request
    // (mitmproxy's lazy strategy, lantern's pool), which at 256 connections
    // through mitmproxy takes longer than the whole measured window.
    let body = setup.body(size, path);
    let primed = Instant::now();
    let mut priming = JoinSet::new();
    for mut sender in senders {
        let body = body.clone();
        priming.spawn(async move {
            let outcome = exchange(
                &mut sender,
                route.host,
                &body,
                path.expect(),
                REQUEST_TIMEOUT,
            )
            .await;
            (sender, outcome)
        });
    }
    let mut senders = Vec::with_capacity(connections);
    while let Some(joined) = priming.join_next().await {
        match joined {
            Ok((sender, Outcome::Good)) => {
                cell.ok_total += 1;
                senders.push(sender);
            }
            Ok((_, Outcome::Wrong(e) | Outcome::Broken(e))) => {
                cell.errors += 1;
                cell.first_error
                    .get_or_insert_with(|| format!("first request: {e}"));
            }
            Ok((_, Outcome::Stalled)) => {
                cell.stalls += 1;
                cell.first_error.get_or_insert_with(|| {
                    format!("first request: no answer within {REQUEST_TIMEOUT:?}")
                });
            }
            Err(e) => {
                cell.errors += 1;
                cell.first_error
                    .get_or_insert_with(|| format!("first request: {e}"));
            }
        }
    }

    // A path whose one round of requests takes about as long as the window
    // (mitmproxy at 256 connections) answers in bursts: measure over at
    // least four rounds, within a bound.
    let measure = measure
        .max(primed.elapsed() * 4)
        .min(MAX_WINDOW.max(measure));
    cell.seconds = measure.as_secs_f64();
    let warm_end = Instant::now() + WARMUP;
    let end = warm_end + measure;
    let mut driving = JoinSet::new();
    for sender in senders {
        driving.spawn(drive(
            sender,
            route.host,
            body.clone(),
            path.expect(),
            warm_end,
            end,
        ));
    }
    while let Some(joined) = driving.join_next().await {
        match joined {
            Ok(tally) => {
                cell.latencies.extend(tally.latencies);
                cell.ok_total += tally.ok_total;
                cell.errors += tally.errors;
                cell.stalls += tally.stalls;
                if cell.first_error.is_none() {
                    cell.first_error = tally.first_error;
                }
            }
            Err(e) => {
                cell.errors += 1;
                cell.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    cell.latencies.sort_unstable();
    cell
}

/// Sends POSTs back to back on one connection until `end`; keeps the
/// latencies of those that complete inside `[warm_end, end]`.
async fn drive(
    mut sender: Sender,
    host: &'static str,
    body: Bytes,
    expect: Expect,
    warm_end: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        match exchange(&mut sender, host, &body, expect, REQUEST_TIMEOUT).await {
            Outcome::Good => {
                tally.ok_total += 1;
                let done = Instant::now();
                if done >= warm_end && done <= end {
                    tally.latencies.push(done - started);
                }
            }
            Outcome::Wrong(e) => tally.error(e),
            Outcome::Broken(e) => {
                tally.error(e);
                break;
            }
            Outcome::Stalled => {
                tally.stalls += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| format!("no answer within {REQUEST_TIMEOUT:?}"));
                break;
            }
        }
    }
    tally
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    Download,
    Upload,
}

/// One bulk measurement: MB/s (10^6 bytes), or what went wrong.
struct Bulk {
    path: Path,
    direction: Direction,
    mbps: Result<f64, String>,
}

/// `BULK_RUNS` downloads and uploads of the bulk payload, direct and through
/// a blind tunnel, alternating.
async fn run_bulk(setup: &Setup) -> Vec<Bulk> {
    let mut results = Vec::new();
    for _ in 0..BULK_RUNS {
        for direction in [Direction::Download, Direction::Upload] {
            for path in [Path::Direct, Path::Tunnel] {
                let route = match path {
                    Path::Direct => &setup.direct,
                    _ => &setup.tunnel,
                };
                let mbps = match tokio::time::timeout(
                    Duration::from_secs(60),
                    bulk_transfer(route, direction),
                )
                .await
                {
                    Ok(Ok(secs)) => Ok(corpus::bulk_bytes() as f64 / secs / 1e6),
                    Ok(Err(e)) => Err(error_chain(&*e)),
                    Err(_) => Err("no end within 60 s".into()),
                };
                results.push(Bulk {
                    path,
                    direction,
                    mbps,
                });
            }
        }
    }
    results
}

type BulkBody = BoxBody<Bytes, std::convert::Infallible>;

/// One transfer on a fresh connection (opening not timed); seconds from
/// sending the request to the last byte of the answer.
async fn bulk_transfer(route: &Route, direction: Direction) -> Result<f64, BoxError> {
    let tls = open_tls(route).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, BulkBody>(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let bytes = corpus::bulk_bytes();
    let request = Request::builder()
        .uri(BULK_PATH)
        .header(hyper::header::HOST, route.host);
    let request = match direction {
        Direction::Download => request.method(Method::GET).body(Empty::new().boxed())?,
        Direction::Upload => {
            let chunk = Bytes::from(corpus::bulk_chunk());
            let frames = futures_util::stream::iter(
                (0..bytes / corpus::BULK_CHUNK).map(move |_| Ok(Frame::data(chunk.clone()))),
            );
            request
                .method(Method::POST)
                .header(hyper::header::CONTENT_LENGTH, bytes)
                .body(StreamBody::new(frames).boxed())?
        }
    };
    let started = Instant::now();
    let response = sender.send_request(request).await?;
    if response.status() != StatusCode::OK {
        return Err(format!("bulk {direction:?}: {}", response.status()).into());
    }
    let mut body = response.into_body();
    let mut received = 0usize;
    let mut answer = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received += data.len();
            if direction == Direction::Upload {
                answer.extend_from_slice(&data);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let ok = match direction {
        Direction::Download => received == bytes,
        Direction::Upload => answer == bytes.to_string().as_bytes(),
    };
    if !ok {
        return Err(format!(
            "bulk {direction:?}: {received} B received, answer {:?}",
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    Ok(secs)
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// Prints the bulk table and target; false when a transfer failed.
fn report_bulk(bulk: &[Bulk]) -> bool {
    let mut clean = true;
    for b in bulk {
        if let Err(e) = &b.mbps {
            println!("ERRORS bulk {} {:?}: {e}", b.path.name(), b.direction);
            clean = false;
        }
    }
    let mbps = |path: Path, direction: Direction| {
        median(
            bulk.iter()
                .filter(|b| b.path == path && b.direction == direction)
                .filter_map(|b| b.mbps.as_ref().ok().copied())
                .collect(),
        )
    };
    println!(
        "\nbulk: {} MiB per transfer, fresh connection each, median of {BULK_RUNS}\n",
        corpus::bulk_bytes() >> 20
    );
    println!("| direction | direct MB/s | tunnel MB/s | tunnel/direct | target ≥ 0.8× |");
    println!("|-----------|------------:|------------:|--------------:|---------------|");
    for direction in [Direction::Download, Direction::Upload] {
        let (d, t) = (mbps(Path::Direct, direction), mbps(Path::Tunnel, direction));
        println!(
            "| {:<9} | {d:>11.0} | {t:>11.0} | {:>12.2}× | {} |",
            format!("{direction:?}").to_lowercase(),
            t / d,
            verdict(t / d >= 0.8),
        );
    }
    clean
}

/// Prints the table, the ratios and the targets; false when any cell was
/// not clean.
fn report(cells: &[Cell]) -> bool {
    println!("\n| size | path | conns | req/s | p50 ms | p99 ms | p999 ms | errors | window s |");
    println!("|-----:|------|------:|------:|-------:|-------:|--------:|-------:|---------:|");
    for c in cells {
        println!(
            "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {:.1} |",
            size_name(c.size),
            c.path.name(),
            c.connections,
            c.rps(),
            c.percentile_ms(0.50),
            c.percentile_ms(0.99),
            c.percentile_ms(0.999),
            c.errors + c.stalls,
            c.seconds,
        );
    }
    let find = |path: Path, size: usize, n: usize| {
        cells
            .iter()
            .find(|c| c.path == path && c.size == size && c.connections == n)
    };
    let ratio = |a: Option<&Cell>, b: Option<&Cell>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}×", a.rps() / b.rps()),
        _ => "–".into(),
    };
    let added_p99 = |a: Option<&Cell>, b: Option<&Cell>| match (a, b) {
        (Some(a), Some(b)) => format!("{:+.2}", a.percentile_ms(0.99) - b.percentile_ms(0.99)),
        _ => "–".into(),
    };
    println!("\nratios of req/s (a/b); +p99 = p99(path) − p99(direct), ms\n");
    println!("| size | conns | tunnel/direct | inspect/direct | inspect/mitm | block/direct | block/mitm-block | mitm/direct | +p99 inspect | +p99 block |");
    println!("|-----:|------:|--------------:|---------------:|-------------:|-------------:|-----------------:|------------:|-------------:|-----------:|");
    let mut connections: Vec<usize> = cells.iter().map(|c| c.connections).collect();
    connections.sort_unstable();
    connections.dedup();
    for size in corpus::SIZES {
        for &n in &connections {
            let direct = find(Path::Direct, size, n);
            let inspect = find(Path::Inspect, size, n);
            let block = find(Path::Block, size, n);
            println!(
                "| {} | {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
                size_name(size),
                ratio(find(Path::Tunnel, size, n), direct),
                ratio(inspect, direct),
                ratio(inspect, find(Path::Mitm, size, n)),
                ratio(block, direct),
                ratio(block, find(Path::MitmBlock, size, n)),
                ratio(find(Path::Mitm, size, n), direct),
                added_p99(inspect, direct),
                added_p99(block, direct),
            );
        }
    }
    println!("\ntargets at 16 connections (inspect = clean prompt, real rules and policy):");
    for size in corpus::SIZES {
        let (Some(i), Some(d)) = (find(Path::Inspect, size, 16), find(Path::Direct, size, 16))
        else {
            continue;
        };
        let vs_direct = i.rps() / d.rps();
        let added = i.percentile_ms(0.99) - d.percentile_ms(0.99);
        let vs_mitm = match find(Path::Mitm, size, 16) {
            Some(m) => {
                let r = i.rps() / m.rps();
                format!("{r:.1}× {}", verdict(r >= 10.0))
            }
            None => "not measured (no mitmproxy)".into(),
        };
        println!(
            "  {}: inspect ≥ 10× mitm: {vs_mitm}; inspect ≥ 0.5× direct: {vs_direct:.2}× {}; added p99 ≤ 2 ms: {added:+.2} ms {}",
            size_name(size),
            verdict(vs_direct >= 0.5),
            verdict(added <= 2.0),
        );
    }
    let mut clean = true;
    for c in cells.iter().filter(|c| !c.is_clean()) {
        clean = false;
        println!(
            "ERRORS {} {} x{}: {} errors, {} stalls; first: {}",
            size_name(c.size),
            c.path.name(),
            c.connections,
            c.errors,
            c.stalls,
            c.first_error
                .as_deref()
                .unwrap_or("no request completed in the measured window")
        );
    }
    clean
}

fn size_name(size: usize) -> String {
    if size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
