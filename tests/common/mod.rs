//! Shared harness for integration tests: a test CA, a local upstream that
//! speaks HTTPS (h1 + h2) and plain HTTP, lantern started in-process on
//! ephemeral loopback ports, and reqwest clients going through it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use lantern::audit::FindingCount;
use lantern::catalog::Catalog;
use lantern::config::Config;
use lantern::inspect::{Decision, InspectRequest, Inspection, Inspector, Verdict};
use lantern::proxy::{self, Listeners, Proxy};
use lantern::tls::CertificateAuthority;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Hosts the upstream presents certificates for.
pub const UPSTREAM_NAMES: &[&str] = &[
    "api.openai.com",
    "example.test",
    "chatgpt.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
];

/// A throwaway certificate authority for the test upstream.
pub struct TestCa {
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "upstream test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server config for `names`, offering h2 and http/1.1.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), self.cert_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// What the upstream observed, and knobs tests turn.
#[derive(Default)]
pub struct UpstreamState {
    /// Requests received, any path.
    pub hits: AtomicUsize,
    /// Releases the second SSE event.
    pub sse_release: Notify,
    /// Signalled when `/slow` has arrived.
    pub slow_arrived: Notify,
    /// Releases `/slow`'s response.
    pub slow_release: Notify,
}

/// A local upstream: HTTPS (certificate from [`TestCa`]) and plain HTTP.
pub struct Upstream {
    pub tls_addr: SocketAddr,
    pub plain_addr: SocketAddr,
    pub ca: TestCa,
    pub ca_file: PathBuf,
    pub state: Arc<UpstreamState>,
    _dir: tempfile::TempDir,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("upstream-ca.pem");
        std::fs::write(&ca_file, &ca.cert_pem).unwrap();
        let state = Arc::new(UpstreamState::default());
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(UPSTREAM_NAMES));
        let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tls_addr, plain_addr) = (tls.local_addr().unwrap(), plain.local_addr().unwrap());
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tls.accept().await else {
                    return;
                };
                let (acceptor, st) = (acceptor.clone(), st.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(TokioIo::new(stream), st).await;
                    }
                });
            }
        });
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = plain.accept().await else {
                    return;
                };
                tokio::spawn(serve(TokioIo::new(stream), st.clone()));
            }
        });
        Upstream {
            tls_addr,
            plain_addr,
            ca,
            ca_file,
            state,
            _dir: dir,
        }
    }

    /// A scratch data dir (audit log) that lives as long as the upstream.
    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("lantern-data")
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

async fn serve<I>(io: TokioIo<I>, state: Arc<UpstreamState>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| upstream_route(req, state.clone()));
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, service)
        .await;
}

fn full(body: impl Into<Bytes>) -> BoxBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// FNV-1a, to compare large bodies without keeping them.
pub fn fnv1a(data: &[u8], mut hash: u64) -> u64 {
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}
pub const FNV_OFFSET: u64 = 0xcbf29ce484222325;

async fn upstream_route(
    mut req: Request<Incoming>,
    state: Arc<UpstreamState>,
) -> Result<Response<BoxBody>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let version = format!("{:?}", req.version());
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let mut response = match req.uri().path() {
        "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Response::new(full(body))
        }
        "/sink" => {
            let mut body = req.into_body();
            let (mut len, mut hash) = (0usize, FNV_OFFSET);
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    hash = fnv1a(&data, hash);
                }
            }
            Response::new(full(format!("{len} {hash:x}")))
        }
        "/sse" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
            let st = state.clone();
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"data: one\n\n"))))
                    .await;
                st.sse_release.notified().await;
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"data: two\n\n"))))
                    .await;
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            let body = StreamBody::new(stream).map_err(|never| match never {});
            let mut r = Response::new(BodyExt::boxed(body));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
        "/hang" => std::future::pending().await,
        "/slow" => {
            state.slow_arrived.notify_one();
            state.slow_release.notified().await;
            Response::new(full("done"))
        }
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("upgrade", "echo".parse().unwrap());
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r
        }
        _ => {
            let mut r = Response::new(full("not found"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    response
        .headers_mut()
        .insert("x-upstream-version", version.parse().unwrap());
    response
        .headers_mut()
        .insert("x-upstream-host", host.parse().unwrap());
    Ok(response)
}

/// An inspector that records what it saw; bodies containing `BLOCK-ME` are
/// blocked, and `PANIC-ME` makes it panic.
#[derive(Default)]
pub struct Recorder {
    pub seen: Mutex<Vec<(String, Bytes)>>,
}

impl Recorder {
    pub fn seen(&self) -> Vec<(String, Bytes)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Inspector for Recorder {
    fn inspect(&self, req: &InspectRequest<'_>) -> Inspection {
        self.seen
            .lock()
            .unwrap()
            .push((req.uri.to_string(), req.body.clone()));
        if req.body.windows(8).any(|w| w == b"PANIC-ME") {
            panic!("the test inspector was told to panic");
        }
        if req.body.windows(8).any(|w| w == b"BLOCK-ME") {
            let response = Response::builder()
                .status(StatusCode::FORBIDDEN)
                .body(Bytes::from_static(b"blocked by test policy"))
                .unwrap();
            return Inspection {
                verdict: Verdict::Respond(Decision::Block, response),
                findings: vec![FindingCount {
                    detector: "test.block_me".into(),
                    severity: "high".into(),
                    count: 1,
                }],
                rule: Some("test policy".into()),
                endpoint: None,
                unreadable: false,
            };
        }
        Verdict::Forward(Decision::Allow).into()
    }
}

/// lantern running in-process on ephemeral ports.
pub struct Lantern {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub ca_pem: String,
    pub recorder: Arc<Recorder>,
    pub proxy: Arc<Proxy>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The config every harness instance starts from: the upstream reachable
/// under catalog and non-catalog names through `upstream.resolve`.
pub fn base_config(upstream: &Upstream) -> Config {
    let mut config = Config {
        data_dir: upstream.data_dir(),
        ..Config::default()
    };
    config.upstream.ca_file = Some(upstream.ca_file.clone());
    for (name, addr) in [
        ("api.openai.com:443", upstream.tls_addr),
        ("chatgpt.com:443", upstream.tls_addr),
        ("api.anthropic.com:443", upstream.tls_addr),
        ("generativelanguage.googleapis.com:443", upstream.tls_addr),
        ("example.test:443", upstream.tls_addr),
        ("example.test:80", upstream.plain_addr),
        ("api.openai.com:80", upstream.plain_addr),
    ] {
        config.upstream.resolve.insert(name.to_string(), addr);
    }
    config
}

impl Lantern {
    pub async fn start(upstream: &Upstream) -> Lantern {
        Lantern::start_with(upstream, |_| {}).await
    }

    pub async fn start_with(upstream: &Upstream, tweak: impl FnOnce(&mut Config)) -> Lantern {
        let mut config = base_config(upstream);
        tweak(&mut config);
        let ca = CertificateAuthority::generate().unwrap();
        let ca_pem = ca.cert_pem().to_string();
        let recorder = Arc::new(Recorder::default());
        let proxy = Proxy::new(
            config,
            Arc::new(Catalog::bundled().unwrap()),
            Arc::new(ca),
            recorder.clone(),
        )
        .unwrap();
        let listeners = Listeners {
            proxy: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let proxy_addr = listeners.proxy.local_addr().unwrap();
        let admin_addr = listeners.admin.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = proxy.clone();
        let task = tokio::spawn(async move {
            proxy::run(proxy, listeners, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Lantern {
            proxy_addr,
            admin_addr,
            ca_pem,
            recorder,
            proxy: handle,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// lantern with the real detection engine and `policy` (YAML) behind the seam.
    pub async fn start_with_policy(upstream: &Upstream, policy: &str) -> Lantern {
        Lantern::start_with_policy_and(upstream, policy, |_| {}).await
    }

    /// [`Lantern::start_with_policy`] with a config tweak (the inspector
    /// takes its limits from the tweaked config).
    pub async fn start_with_policy_and(
        upstream: &Upstream,
        policy: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> Lantern {
        let lantern = Lantern::start_with(upstream, tweak).await;
        lantern.use_policy(policy);
        lantern
    }

    /// Puts the real detection engine and `policy` (YAML) behind the seam.
    pub fn use_policy(&self, policy: &str) {
        let proxy = self.proxy.clone();
        let engine = lantern::detect::Engine::bundled().unwrap();
        let detectors: Vec<String> = engine.detector_ids().map(String::from).collect();
        let catalog = proxy.rules().catalog.clone();
        let known = lantern::policy::Known {
            app: &|id: &str| catalog.apps().iter().any(|a| a.id == id),
            detectors: &detectors,
        };
        let policy =
            lantern::policy::Policy::from_yaml(std::path::Path::new("policy.yaml"), policy, &known)
                .unwrap();
        let ack_base = format!("http://{}", self.admin_addr);
        let inspect = &proxy.config.inspect;
        lantern::rules::install(&proxy, catalog, engine, policy, inspect, &ack_base);
    }

    /// A reqwest client through lantern trusting `root_pem`.
    pub fn client(&self, root_pem: &str, version: HttpVersion) -> reqwest::Client {
        let builder = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", self.proxy_addr)).unwrap())
            .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
            .timeout(std::time::Duration::from_secs(30));
        match version {
            HttpVersion::H1 => builder.http1_only(),
            HttpVersion::H2 => builder.http2_prior_knowledge(),
            HttpVersion::Any => builder,
        }
        .build()
        .unwrap()
    }

    /// GET on the admin listener; returns status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://{}{path}", self.admin_addr))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

#[derive(Clone, Copy)]
pub enum HttpVersion {
    H1,
    H2,
    Any,
}

/// The value of one metric sample line (`name{labels} value`) in a scrape.
pub fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// POSTs `body` to `url` and returns the response (panics on transport errors).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client.post(url).body(body).send().await.unwrap()
}

/// A TLS stream through lantern's interception: `CONNECT authority`, then a
/// handshake for `name` trusting only lantern's CA.
pub async fn intercepted(
    lantern: &Lantern,
    authority: &str,
    name: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(lantern.proxy_addr)
        .await
        .unwrap();
    stream
        .write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Read the CONNECT answer byte by byte: nothing past its head is ours.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "CONNECT refused");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut lantern.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    connector.connect(name, stream).await.unwrap()
}

/// The first `n` audit events lantern wrote (waits for them, bounded).
pub async fn audit_events(upstream: &Upstream, n: usize) -> Vec<serde_json::Value> {
    let path = upstream.data_dir().join("audit.jsonl");
    let text = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() >= n {
                return text;
            }
            // The writer thread flushes per batch: poll for the file.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("audit events were not written");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Settings for property and fuzz tests: `default_cases` cases unless
/// `PROPTEST_CASES` is set, which always wins (`ProptestConfig::with_cases`
/// would override it), so one command turns every property into a long run.
pub fn proptest_config(default_cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    proptest::test_runner::Config {
        cases,
        ..proptest::test_runner::Config::default()
    }
}

/// A POST to `host` + `path` as the extraction layer sees it.
pub fn extract_post<'a>(
    host: &'a str,
    path: &'a str,
    headers: &'a http::HeaderMap,
    body: &'a [u8],
) -> lantern::extract::Request<'a> {
    lantern::extract::Request {
        host,
        method: &http::Method::POST,
        path,
        headers,
        body,
    }
}

/// Redactions covering every segment of `x` whole, as detector `d`.
pub fn redact_whole(x: &lantern::extract::Extracted) -> Vec<lantern::extract::Redaction<'static>> {
    x.segments
        .iter()
        .enumerate()
        .map(|(i, s)| lantern::extract::Redaction {
            segment: i,
            start: 0,
            end: s.text.len(),
            detector: "d",
        })
        .collect()
}
