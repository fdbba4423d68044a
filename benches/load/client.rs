//! The load generator's side of a connection: TCP, `CONNECT` through a
//! proxy, TLS trusting exactly one CA, HTTP/1.1; and one chat exchange
//! with its answer checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::corpus::{ANSWER, SECRET};
use crate::upstream::CHAT_PATH;
use crate::BoxError;

/// A client config trusting only the CA in `ca_pem`, offering http/1.1.
pub fn connector(ca_pem: &str) -> Result<TlsConnector, BoxError> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    if roots.is_empty() {
        return Err("no certificate in the CA PEM".into());
    }
    let mut config = ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Where a connection goes and whom it trusts.
#[derive(Clone)]
pub struct Route {
    /// The address dialled: the upstream itself, or a proxy.
    pub addr: SocketAddr,
    /// `CONNECT host:443` first (through a proxy).
    pub connect: bool,
    /// SNI, `CONNECT` target and `Host`.
    pub host: &'static str,
    pub tls: TlsConnector,
}

/// TCP (plus `CONNECT` through a proxy), then TLS.
pub async fn open_tls(route: &Route) -> Result<TlsStream<TcpStream>, BoxError> {
    let mut tcp = TcpStream::connect(route.addr).await?;
    tcp.set_nodelay(true)?;
    if route.connect {
        connect_through(&mut tcp, route.host).await?;
    }
    let name = ServerName::try_from(route.host.to_string())?;
    Ok(route.tls.connect(name, tcp).await?)
}

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A keep-alive HTTP/1.1 connection along `route`.
pub async fn open(route: &Route) -> Result<Sender, BoxError> {
    let tls = open_tls(route).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends `CONNECT host:443` and reads the answer up to the blank line.
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
        head.push(tcp.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.starts_with("HTTP/1.1 200") {
        return Err(format!("CONNECT refused: {status_line}").into());
    }
    Ok(())
}

/// The answer a path must get.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// 200 and the upstream's answer, byte for byte.
    Answer,
    /// lantern's own 403: `x-lantern-decision: block`, the detector named,
    /// the secret not echoed.
    LanternBlock,
    /// The mitmproxy addon's 403.
    MitmBlock,
}

/// The body `benches/mitm_addon.py` answers a blocked request with.
pub const MITM_BLOCKED: &str = r#"{"error":{"message":"blocked by the load-harness addon: the prompt contains a credential","type":"invalid_request_error","code":"blocked"}}"#;

/// How one exchange went.
pub enum Outcome {
    /// The expected answer.
    Good,
    /// An answer, but the wrong one; the connection is still usable.
    Wrong(String),
    /// The connection failed.
    Broken(String),
    /// No answer within the timeout.
    Stalled,
}

/// One POST of `body` and its answer, checked against `expect`.
pub async fn exchange(
    sender: &mut Sender,
    host: &str,
    body: &Bytes,
    expect: Expect,
    timeout: Duration,
) -> Outcome {
    let request = Request::post(CHAT_PATH)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::AUTHORIZATION, "Bearer sk-bench")
        .body(Full::new(body.clone()));
    let request = match request {
        Ok(r) => r,
        Err(e) => return Outcome::Broken(format!("building the request: {e}")),
    };
    let round_trip = async {
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, hyper::Error>((parts, body))
    };
    let (parts, answer) = match tokio::time::timeout(timeout, round_trip).await {
        Ok(Ok(got)) => got,
        Ok(Err(e)) => return Outcome::Broken(lantern::diag::error_chain(&e)),
        Err(_) => return Outcome::Stalled,
    };
    let decision = parts
        .headers
        .get("x-lantern-decision")
        .and_then(|v| v.to_str().ok());
    let good = match expect {
        Expect::Answer => parts.status == StatusCode::OK && answer == ANSWER.as_bytes(),
        Expect::LanternBlock => {
            parts.status == StatusCode::FORBIDDEN
                && decision == Some("block")
                && memchr::memmem::find(&answer, b"secret.aws_access_key").is_some()
                && memchr::memmem::find(&answer, SECRET.as_bytes()).is_none()
        }
        Expect::MitmBlock => {
            parts.status == StatusCode::FORBIDDEN && answer == MITM_BLOCKED.as_bytes()
        }
    };
    if good {
        Outcome::Good
    } else {
        let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]);
        Outcome::Wrong(format!(
            "expected {expect:?}, got {} (decision {decision:?}): {text}",
            parts.status
        ))
    }
}
