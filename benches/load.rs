//! Load harness: requests/s and p50/p99 latency of a 1 KiB JSON POST over
//! HTTP/1.1 keep-alive, at 1, 16 and 64 connections, along three paths:
//!
//! - `direct`: TLS straight to a local HTTPS upstream;
//! - `tunnel`: `CONNECT bench.example.test:443` through lantern, a host not
//!   in the catalog, so lantern splices bytes and TLS runs end to end;
//! - `intercept`: `CONNECT api.openai.com:443`, a catalog host with
//!   `inspect: true`; the client trusts lantern's CA, lantern buffers and
//!   inspects the body, then re-encrypts to the upstream.
//!
//! Everything runs in this process on 127.0.0.1 and stops by itself: each
//! cell is a 0.5 s warm-up then `LOAD_SECS` (default 3) seconds measured.
//! `cargo bench --bench load`; arguments are ignored. `LOAD_UPSTREAM_H1=1`
//! makes the upstream offer only http/1.1 (lantern then pools h1 upstream
//! connections instead of multiplexing over h2); `RUST_LOG` shows lantern's
//! logs on stderr. See benches/README.md.
//!
//! The figures cannot lie about the path they measure: each path trusts only
//! the CA it should meet (the upstream's test CA, or lantern's), every
//! response body is checked, and lantern must have inspected 1 KiB for every
//! intercepted request. Any error, stall or failed check exits non-zero.

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use lantern::catalog::Catalog;
use lantern::config::Config;
use lantern::diag::error_chain;
use lantern::inspect::AllowAll;
use lantern::proxy::{self, Listeners, Proxy};
use lantern::tls::CertificateAuthority;

type BoxError = Box<dyn Error + Send + Sync>;

/// Concurrent keep-alive connections per cell.
const CONNECTIONS: [usize; 3] = [1, 16, 64];
/// Requests before this are not measured (pools, caches, TCP windows).
const WARMUP: Duration = Duration::from_millis(500);
/// Measured seconds per cell unless `LOAD_SECS` says otherwise.
const DEFAULT_SECS: f64 = 3.0;
/// A request slower than this is a stall: its connection gives up, the cell
/// is flagged, and the run still ends on time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to open one cell's connections (TCP, CONNECT, TLS).
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Request body size; the upstream refuses any other.
const BODY_BYTES: usize = 1024;
/// In the bundled catalog with `inspect: true`.
const INTERCEPT_HOST: &str = "api.openai.com";
/// Not in the catalog: blind tunnel.
const TUNNEL_HOST: &str = "bench.example.test";
/// What the upstream answers to every good request.
const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Tunnel,
    Intercept,
}

impl Path {
    const ALL: [Path; 3] = [Path::Direct, Path::Tunnel, Path::Intercept];

    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Tunnel => "tunnel",
            Path::Intercept => "intercept",
        }
    }

    /// The host the client believes it talks to (SNI, Host, CONNECT).
    fn host(self) -> &'static str {
        match self {
            Path::Direct | Path::Intercept => INTERCEPT_HOST,
            Path::Tunnel => TUNNEL_HOST,
        }
    }
}

/// Addresses and client TLS configs shared by every connection.
struct Setup {
    upstream: SocketAddr,
    proxy: SocketAddr,
    /// Trusts only the upstream's test CA (direct and tunnel).
    to_upstream: TlsConnector,
    /// Trusts only lantern's CA (intercept).
    to_lantern: TlsConnector,
    body: Bytes,
}

/// One cell's outcome.
struct Cell {
    path: Path,
    connections: usize,
    /// Latencies of requests started in the measured window, sorted.
    latencies: Vec<Duration>,
    /// Good responses, warm-up included.
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
    // `cargo bench` passes `--bench` (and maybe a filter): nothing to parse.
    let secs = match std::env::var("LOAD_SECS") {
        Ok(v) => match v.parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => s,
            _ => {
                eprintln!("LOAD_SECS must be a positive number of seconds, not {v:?}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => DEFAULT_SECS,
    };
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
    let result = runtime.block_on(run(Duration::from_secs_f64(secs)));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load harness failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the upstream and lantern, runs every cell, prints the report.
/// `Ok(false)` when a cell saw errors or a check failed.
async fn run(measure: Duration) -> Result<bool, BoxError> {
    let (upstream_ca_pem, upstream_tls) = upstream_pki()?;
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = upstream_listener.local_addr()?;
    let upstream_task = tokio::spawn(serve_upstream(upstream_listener, upstream_tls));

    let mut ca_file = tempfile::NamedTempFile::new()?;
    std::io::Write::write_all(&mut ca_file, upstream_ca_pem.as_bytes())?;
    let mut config = Config::default();
    config.upstream.ca_file = Some(ca_file.path().to_path_buf());
    for host in [INTERCEPT_HOST, TUNNEL_HOST] {
        config
            .upstream
            .resolve
            .insert(format!("{host}:443"), upstream);
    }
    config.proxy.shutdown_grace = Duration::from_secs(1);
    let ca = CertificateAuthority::generate()?;
    let lantern_ca_pem = ca.cert_pem().to_string();
    let proxy = Proxy::new(
        config,
        Arc::new(Catalog::bundled()?),
        Arc::new(ca),
        Arc::new(AllowAll),
    )?;
    let listeners = Listeners {
        proxy: TcpListener::bind("127.0.0.1:0").await?,
        admin: TcpListener::bind("127.0.0.1:0").await?,
    };
    let proxy_addr = listeners.proxy.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let lantern = tokio::spawn(proxy::run(proxy.clone(), listeners, async {
        let _ = stopped.await;
    }));

    let setup = Arc::new(Setup {
        upstream,
        proxy: proxy_addr,
        to_upstream: connector(&upstream_ca_pem)?,
        to_lantern: connector(&lantern_ca_pem)?,
        body: Bytes::from(request_body()),
    });

    println!(
        "lantern load: {BODY_BYTES} B JSON POST, HTTP/1.1 keep-alive, {:.1} s per cell after {:.1} s warm-up, {} worker threads, loopback",
        measure.as_secs_f64(),
        WARMUP.as_secs_f64(),
        tokio::runtime::Handle::current().metrics().num_workers(),
    );
    // Paths alternate within each connection count, so the cells compared
    // in a ratio run seconds apart and share whatever else the box is doing.
    let mut cells = Vec::new();
    for connections in CONNECTIONS {
        for path in Path::ALL {
            let cell = run_cell(setup.clone(), path, connections, measure).await;
            eprintln!(
                "  {:<9} {:>3} conns: {:>8.0} req/s{}",
                path.name(),
                connections,
                cell.rps(),
                if cell.is_clean() { "" } else { "  (errors)" }
            );
            cells.push(cell);
        }
    }

    let inspected = proxy.metrics.inspected_bytes.get();
    let metrics = proxy.metrics.render();
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(3), lantern).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("lantern stopped with an error: {e}"),
        Ok(Err(e)) => eprintln!("lantern task failed: {e}"),
        Err(_) => eprintln!("lantern did not stop within 3 s of shutdown"),
    }
    upstream_task.abort();

    cells.sort_by_key(|c| (c.path as u8, c.connections));
    let mut clean = report(&cells);
    let intercepted: u64 = cells
        .iter()
        .filter(|c| c.path == Path::Intercept)
        .map(|c| c.ok_total)
        .sum();
    let expected = intercepted * BODY_BYTES as u64;
    if inspected < expected {
        println!("CHECK FAILED: lantern inspected {inspected} B, expected at least {expected} B ({intercepted} intercepted requests)");
        clean = false;
    }
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

/// Opens `connections` keep-alive connections along `path`, drives them for
/// the warm-up plus `measure`, and merges what they saw.
async fn run_cell(setup: Arc<Setup>, path: Path, connections: usize, measure: Duration) -> Cell {
    let mut cell = Cell {
        path,
        connections,
        latencies: Vec::new(),
        ok_total: 0,
        errors: 0,
        stalls: 0,
        first_error: None,
        seconds: measure.as_secs_f64(),
    };
    let mut opening = JoinSet::new();
    for _ in 0..connections {
        let setup = setup.clone();
        opening.spawn(async move {
            tokio::time::timeout(OPEN_TIMEOUT, open(&setup, path))
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

    let warm_end = Instant::now() + WARMUP;
    let end = warm_end + measure;
    let mut driving = JoinSet::new();
    for sender in senders {
        driving.spawn(drive(
            sender,
            path.host(),
            setup.body.clone(),
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

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// TCP (plus `CONNECT` through lantern), TLS, then an HTTP/1.1 connection.
async fn open(setup: &Setup, path: Path) -> Result<Sender, BoxError> {
    let host = path.host();
    let (addr, tls) = match path {
        Path::Direct => (setup.upstream, &setup.to_upstream),
        Path::Tunnel => (setup.proxy, &setup.to_upstream),
        Path::Intercept => (setup.proxy, &setup.to_lantern),
    };
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    if path != Path::Direct {
        connect_through(&mut tcp, host).await?;
    }
    let tls = tls
        .connect(ServerName::try_from(host.to_string())?, tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends `CONNECT host:443` and reads lantern's answer up to the blank line.
async fn connect_through(tcp: &mut TcpStream, host: &str) -> Result<(), BoxError> {
    let request = format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    // Byte by byte: nothing past the head may be consumed, and it is once
    // per connection, outside the measured window.
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err("CONNECT response head too long".into());
        }
        let byte = tcp.read_u8().await?;
        head.push(byte);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    if !status_line.starts_with("HTTP/1.1 200") {
        return Err(format!("CONNECT refused: {status_line}").into());
    }
    Ok(())
}

/// Sends POSTs back to back on one connection until `end`.
async fn drive(
    mut sender: Sender,
    host: &'static str,
    body: Bytes,
    warm_end: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let request = Request::post("/v1/chat/completions")
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::AUTHORIZATION, "Bearer sk-bench")
            .body(Full::new(body.clone()));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                tally.error(format!("building the request: {e}"));
                break;
            }
        };
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok((StatusCode::OK, answer))) if answer == ANSWER.as_bytes() => {
                tally.ok_total += 1;
                if started >= warm_end {
                    tally.latencies.push(started.elapsed());
                }
            }
            Ok(Ok((status, answer))) => {
                let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]);
                tally.error(format!("{status}: {text}"));
            }
            Ok(Err(e)) => {
                tally.error(error_chain(&e));
                break;
            }
            Err(_) => {
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

/// Prints the table and the ratios; false when any cell was not clean.
fn report(cells: &[Cell]) -> bool {
    println!(
        "\n{:<10} {:>5} {:>10} {:>9} {:>9} {:>7}",
        "path", "conns", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for c in cells {
        println!(
            "{:<10} {:>5} {:>10.0} {:>9.3} {:>9.3} {:>7}",
            c.path.name(),
            c.connections,
            c.rps(),
            c.percentile_ms(0.50),
            c.percentile_ms(0.99),
            c.errors + c.stalls,
        );
    }
    let direct = |n: usize| {
        cells
            .iter()
            .find(|c| c.path == Path::Direct && c.connections == n)
    };
    println!(
        "\n{:<10} {:>5} {:>11} {:>9} {:>9}",
        "vs direct", "conns", "req/s ratio", "+p50 ms", "+p99 ms"
    );
    for c in cells.iter().filter(|c| c.path != Path::Direct) {
        let Some(d) = direct(c.connections) else {
            continue;
        };
        println!(
            "{:<10} {:>5} {:>10.2}x {:>+9.3} {:>+9.3}",
            c.path.name(),
            c.connections,
            c.rps() / d.rps(),
            c.percentile_ms(0.50) - d.percentile_ms(0.50),
            c.percentile_ms(0.99) - d.percentile_ms(0.99),
        );
    }
    let at16 = |p: Path| cells.iter().find(|c| c.path == p && c.connections == 16);
    if let (Some(i), Some(d)) = (at16(Path::Intercept), at16(Path::Direct)) {
        let ratio = i.rps() / d.rps();
        let added = i.percentile_ms(0.50) - d.percentile_ms(0.50);
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "\ntarget, intercept at 16 conns: req/s >= 0.5x direct: {ratio:.2}x {}; added p50 <= 1 ms: {added:+.3} ms {}",
            verdict(ratio >= 0.5),
            verdict(added <= 1.0),
        );
    }
    let mut clean = true;
    for c in cells.iter().filter(|c| !c.is_clean()) {
        clean = false;
        println!(
            "ERRORS {} x{}: {} errors, {} stalls; first: {}",
            c.path.name(),
            c.connections,
            c.errors,
            c.stalls,
            c.first_error.as_deref().unwrap_or("no successful request")
        );
    }
    clean
}

/// A chat-completions body of exactly `BODY_BYTES` bytes.
fn request_body() -> Vec<u8> {
    let head = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":""#;
    let tail = r#""}]}"#;
    let filler = "Summarise the quarterly report in three bullet points. ";
    let room = BODY_BYTES - head.len() - tail.len();
    let content: String = filler.chars().cycle().take(room).collect();
    let body = format!("{head}{content}{tail}").into_bytes();
    debug_assert_eq!(body.len(), BODY_BYTES);
    body
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting only the CA in `ca_pem`, offering http/1.1.
fn connector(ca_pem: &str) -> Result<TlsConnector, BoxError> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A test CA (PEM) and the upstream's server config: a leaf for both bench
/// hosts signed by it, ALPN h2 and http/1.1 like a real API front end
/// (http/1.1 only with `LOAD_UPSTREAM_H1` set).
fn upstream_pki() -> Result<(String, ServerConfig), BoxError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "lantern load-test upstream CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let leaf_params =
        CertificateParams::new(vec![INTERCEPT_HOST.to_string(), TUNNEL_HOST.to_string()])?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = if std::env::var_os("LOAD_UPSTREAM_H1").is_some() {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    Ok((ca_cert.pem(), config))
}

/// The mock API: reads the body, answers `ANSWER` (400 for a wrong size).
async fn serve_upstream(listener: TcpListener, tls: ServerConfig) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    let (status, text) = if body.len() == BODY_BYTES {
        (StatusCode::OK, ANSWER)
    } else {
        (StatusCode::BAD_REQUEST, "wrong body length")
    };
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
