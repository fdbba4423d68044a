//! Upstream connections: TCP with `upstream.resolve` overrides and a connect
//! timeout, and the pooled hyper clients (rustls, h2 + http/1.1 by ALPN)
//! that forward intercepted and plain-HTTP requests.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::body::Body;
use crate::config::UpstreamConfig;
use crate::tls;

/// Opens TCP connections to upstream hosts, honouring `upstream.resolve`.
#[derive(Clone)]
pub struct Dialer {
    overrides: Arc<BTreeMap<String, SocketAddr>>,
    timeout: Duration,
}

impl Dialer {
    pub fn new(config: &UpstreamConfig) -> Self {
        Dialer {
            overrides: Arc::new(
                config
                    .resolve
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), *v))
                    .collect(),
            ),
            timeout: config.connect_timeout,
        }
    }

    /// The address `host:port` is known to be without DNS: an override, an
    /// IP literal, or `localhost`.
    pub fn static_address(&self, host: &str, port: u16) -> Option<SocketAddr> {
        if let Some(addr) = self
            .overrides
            .get(&format!("{}:{port}", host.to_ascii_lowercase()))
        {
            return Some(*addr);
        }
        if host.eq_ignore_ascii_case("localhost") {
            return Some(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        host.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port))
    }

    /// Connects to `host:port` (an override, else DNS, trying each address).
    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let attempt = async {
            let key = format!("{}:{port}", host.to_ascii_lowercase());
            let addrs: Vec<SocketAddr> = match self.overrides.get(&key) {
                Some(addr) => vec![*addr],
                None => tokio::net::lookup_host((host, port)).await?.collect(),
            };
            let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no addresses"));
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connect to {host}:{port} timed out after {:?}",
                    self.timeout
                ),
            )),
        }
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI without host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            dialer.connect(&host, port).await.map(TokioIo::new)
        })
    }
}

/// A pooled hyper client over rustls.
pub type HttpClient = Client<HttpsConnector<Dialer>, Body>;

/// The upstream side of the proxy.
pub struct Upstream {
    /// Ordinary requests: http/1.1, or h2 where `upstream.http2` allows and the server prefers it.
    pub pooled: HttpClient,
    /// http/1.1 only: for upgrades (WebSocket), which need an h1 connection.
    pub http1: HttpClient,
    pub dialer: Dialer,
    pub response_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Self, tls::Error> {
        let dialer = Dialer::new(config);
        let tls = tls::client_config(config.ca_file.as_deref(), &[])?;
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1();
        let pooled = if config.http2 {
            builder.enable_http2().wrap_connector(dialer.clone())
        } else {
            builder.wrap_connector(dialer.clone())
        };
        let h1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(dialer.clone());
        let client = |connector| {
            Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(config.pool_max_idle_per_host)
                .build(connector)
        };
        Ok(Upstream {
            pooled: client(pooled),
            http1: client(h1),
            dialer,
            response_timeout: config.response_timeout,
        })
    }
}
