//! The forward proxy: accepts clients, routes `CONNECT` to a blind tunnel
//! or TLS interception, and forwards HTTP requests upstream.
//!
//! Stages, in the order a request travels:
//! [`Proxy::serve_client`] (listener, limits) → [`connect`] (tunnel or
//! intercept) → [`forward`] (inspection seam, upstream, response).

pub mod body;
mod connect;
mod forward;
mod headers;
mod strict;
mod target;
mod tunnel;
mod upstream;
mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::inspect::Inspector;
use crate::metrics::{GaugeGuard, Metrics};
use crate::tls::CertificateAuthority;

pub use target::Target;
pub use upstream::{Dialer, Upstream};

/// Failures setting the proxy up (never on the request path).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("upstream TLS: {0}")]
    Tls(#[from] crate::tls::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Identity(#[from] crate::diag::Problems),
    #[error("acknowledgement key {}: {source}", path.display())]
    AckKey {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("audit log {}: {source}", path.display())]
    Audit {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The bound listeners `run` serves. Binding is the caller's job, so tests
/// can bind `127.0.0.1:0` and read the ports back.
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: TcpListener,
}

/// What a reload replaces: compiled once, shared immutably.
pub struct Rules {
    pub catalog: Arc<Catalog>,
    pub inspector: Arc<dyn Inspector>,
}

/// Everything a connection needs, shared by all of them.
pub struct Proxy {
    pub config: Config,
    /// Catalog and inspector, swapped whole on reload.
    rules: ArcSwap<Rules>,
    pub ca: Arc<CertificateAuthority>,
    pub metrics: Arc<Metrics>,
    pub upstream: Upstream,
    pub audit: crate::audit::AuditLog,
    /// Acknowledgement key and grants (the admin `/ack` endpoint and the policy share them).
    pub acks: Arc<crate::action::ack::Acks>,
    identities: Arc<crate::identity::Identities>,
    /// The proxy listener's bound address, set by `run`: requests aimed at
    /// it would loop.
    own_address: std::sync::OnceLock<SocketAddr>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    connections: Arc<Semaphore>,
    /// Room for request bodies buffered for inspection.
    buffers: body::Budget,
}

impl Proxy {
    pub fn new(
        config: Config,
        catalog: Arc<Catalog>,
        ca: Arc<CertificateAuthority>,
        inspector: Arc<dyn Inspector>,
    ) -> Result<Arc<Proxy>, Error> {
        let upstream = Upstream::new(&config.upstream)?;
        let connections = Arc::new(Semaphore::new(config.proxy.max_connections));
        let config_buffered = config.inspect.max_buffered_bytes;
        let metrics = Arc::new(Metrics::new());
        let audit_path = config.audit_path();
        let audit = crate::audit::AuditLog::open_with(
            crate::audit::Destination::from_path(&audit_path),
            metrics.audit.clone(),
            crate::audit::AuditOptions {
                max_bytes: config.audit.max_bytes,
                keep: config.audit.keep,
            },
        )
        .map_err(|source| Error::Audit {
            path: audit_path.clone(),
            source,
        })?;
        let ack_path = config.ack_key_path();
        let key = crate::action::ack::AckKey::load_or_create(&ack_path).map_err(|source| {
            Error::AckKey {
                path: ack_path.clone(),
                source,
            }
        })?;
        let acks = Arc::new(crate::action::ack::Acks::new(key));
        let identities = Arc::new(crate::identity::Identities::load(&config.identity)?);
        Ok(Arc::new(Proxy {
            config,
            rules: ArcSwap::from_pointee(Rules { catalog, inspector }),
            ca,
            metrics,
            upstream,
            audit,
            acks,
            identities,
            own_address: std::sync::OnceLock::new(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            connections,
            buffers: body::Budget::new(config_buffered),
        }))
    }

    /// The rules in force now. Take one snapshot per decision.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.load_full()
    }

    /// Puts a new catalog and inspector in force atomically; requests
    /// already past their decision keep the snapshot they took.
    pub fn swap_rules(&self, catalog: Arc<Catalog>, inspector: Arc<dyn Inspector>) {
        self.rules.store(Arc::new(Rules { catalog, inspector }));
    }

    /// True when `target` is lantern's own proxy listener.
    fn loops_back(&self, target: &Target) -> bool {
        let (Some(own), Some(addr)) = (
            self.own_address.get(),
            self.upstream
                .dialer
                .static_address(&target.host, target.port),
        ) else {
            return false;
        };
        let ip = addr.ip().to_canonical();
        addr.port() == own.port()
            && (ip == own.ip()
                || (ip.is_loopback() && (own.ip().is_loopback() || own.ip().is_unspecified())))
    }

    /// The 508 a looping request gets.
    fn loop_response(target: &Target) -> hyper::Response<body::Body> {
        tracing::warn!(%target, "request addressed to lantern itself refused");
        body::text_response(
            http::StatusCode::LOOP_DETECTED,
            format!("lantern: {target} is this proxy; the request would loop"),
        )
    }

    /// Bytes the strict reader keeps for one request head: a little more
    /// than hyper's own limit, so that hyper answers oversized heads (431).
    fn head_limit(&self) -> usize {
        self.config.proxy.max_header_bytes as usize + 1024
    }

    /// The 400 (431) for a request whose head broke a framing rule; it closes the
    /// connection, since what follows on it cannot be delimited safely.
    fn malformed(&self, reason: &str) -> hyper::Response<body::Body> {
        info!(reason, "malformed request refused");
        self.metrics
            .requests_refused
            .with_label_values(&["framing"])
            .inc();
        let status = if reason == strict::HEAD_TOO_LARGE {
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        } else {
            http::StatusCode::BAD_REQUEST
        };
        let mut response =
            body::text_response(status, format!("lantern: malformed request: {reason}"));
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        response
    }

    fn client_allowed(&self, peer: &SocketAddr) -> bool {
        let ip = peer.ip().to_canonical();
        self.config
            .clients
            .allow
            .iter()
            .any(|net| net.contains(&ip))
    }

    /// Serves one accepted client connection (HTTP/1.1 proxy requests).
    async fn serve_client(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _active = GaugeGuard::new(&self.metrics.active_connections);
        let (stream, heads) = strict::guard(stream, self.head_limit());
        let proxy = self.clone();
        let service = service_fn(move |req| {
            let proxy = proxy.clone();
            let heads = heads.clone();
            async move {
                let response = match heads.next_request() {
                    Ok(()) => proxy.handle(peer, req).await,
                    Err(reason) => proxy.malformed(reason),
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.proxy.header_read_timeout)
            .max_buf_size(self.config.proxy.max_header_bytes as usize);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            _ = self.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "client connection ended with an error");
        }
    }

    /// Routes one request from the proxy listener.
    async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<body::Body> {
        let identity = match self.identities.resolve(peer.ip(), req.headers()).await {
            Ok(identity) => Arc::new(identity),
            Err(e) => {
                tracing::info!(client = %peer.ip(), reason = %e, "proxy authentication required");
                let mut response = body::text_response(
                    http::StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                    format!("lantern: {e}"),
                );
                response.headers_mut().insert(
                    http::header::PROXY_AUTHENTICATE,
                    http::HeaderValue::from_static("Basic realm=\"lantern\""),
                );
                return response;
            }
        };
        if req.method() == http::Method::CONNECT {
            return connect::handle(self, peer, identity, req).await;
        }
        match Target::from_absolute_uri(req.uri()) {
            Some((forward::Scheme::Http, target)) if self.loops_back(&target) => {
                Proxy::loop_response(&target)
            }
            Some((forward::Scheme::Http, target)) => {
                let app = self.rules().catalog.lookup(&target.host).cloned();
                let route = forward::Route {
                    peer,
                    identity,
                    scheme: forward::Scheme::Http,
                    target,
                    app,
                };
                forward::forward(&self, &route, req).await
            }
            Some((forward::Scheme::Https, _)) => body::text_response(
                http::StatusCode::BAD_REQUEST,
                "lantern: https:// URLs go through CONNECT; configure lantern as your HTTPS proxy",
            ),
            None => body::text_response(
                http::StatusCode::BAD_REQUEST,
                "lantern: this is a forward proxy; send absolute-form requests (http://host/path) or CONNECT host:443",
            ),
        }
    }
}

/// Runs the proxy and admin listeners until `shutdown` resolves, then stops
/// accepting and drains in-flight work for at most `proxy.shutdown_grace`.
pub async fn run(
    proxy: Arc<Proxy>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let admin = tokio::spawn(crate::admin::serve(
        listeners.admin,
        proxy.clone(),
        proxy.shutdown.clone(),
    ));
    if let Ok(addr) = listeners.proxy.local_addr() {
        let _ = proxy.own_address.set(addr);
    }
    let accept = accept_loop(proxy.clone(), listeners.proxy);
    tokio::pin!(shutdown);
    tokio::select! {
        () = accept => {}
        () = &mut shutdown => {}
    }
    info!(grace = ?proxy.config.proxy.shutdown_grace, "shutting down: no new connections, draining in-flight requests");
    proxy.shutdown.cancel();
    proxy.tasks.close();
    if tokio::time::timeout(proxy.config.proxy.shutdown_grace, proxy.tasks.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = proxy.tasks.len(),
            "shutdown grace period over; closing remaining connections"
        );
    }
    admin.abort();
    Ok(())
}

async fn accept_loop(proxy: Arc<Proxy>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if !proxy.client_allowed(&peer) {
            warn!(client = %peer.ip(), "refused client outside clients.allow");
            proxy
                .metrics
                .connections_refused
                .with_label_values(&["not_allowed"])
                .inc();
            proxy.tasks.spawn(refuse(
                stream,
                "403 Forbidden",
                "lantern: your address is not allowed to use this proxy",
            ));
            continue;
        }
        let Ok(permit) = proxy.connections.clone().try_acquire_owned() else {
            warn!(
                limit = proxy.config.proxy.max_connections,
                "connection limit reached; refusing client"
            );
            proxy
                .metrics
                .connections_refused
                .with_label_values(&["capacity"])
                .inc();
            proxy.tasks.spawn(refuse(
                stream,
                "503 Service Unavailable",
                "lantern: too many connections, try again shortly",
            ));
            continue;
        };
        let span = tracing::info_span!("conn", client = %peer);
        let proxy2 = proxy.clone();
        proxy.tasks.spawn(
            async move {
                proxy2.serve_client(stream, peer).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Bytes of a refused client's request read before answering it.
const REFUSE_READ_LIMIT: usize = 16 * 1024;

/// Answers a refused connection with a one-shot HTTP response, bounded in time.
async fn refuse(mut stream: TcpStream, status: &str, message: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{message}\n",
        message.len() + 1
    );
    let write = async {
        // Read the request head first: a client that is still sending when
        // the answer arrives reports a broken connection instead of it.
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while head.len() < REFUSE_READ_LIMIT && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await? {
                0 => break,
                n => head.extend_from_slice(&buf[..n]),
            }
        }
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), write).await;
}
