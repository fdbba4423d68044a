//! The mock API the load harness aims at: HTTPS with a certificate from its
//! own test CA, ALPN h2 + http/1.1 like a real API front end. It answers
//! chat posts, serves and sinks the bulk transfers, and counts what reached
//! it so the harness can check that blocked prompts never did.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::corpus::{self, ANSWER, BULK_CHUNK};
use crate::BoxError;

/// Path of the chat endpoint every measured request posts to.
pub const CHAT_PATH: &str = "/v1/chat/completions";
/// `GET` downloads, `POST` uploads the bulk payload.
pub const BULK_PATH: &str = "/bulk";

/// What reached the upstream.
#[derive(Default)]
pub struct Seen {
    /// Chat posts answered 200.
    pub chats: AtomicU64,
    /// Chat posts carrying the planted secret: must stay 0 (a blocked
    /// prompt went through).
    pub leaks: AtomicU64,
    /// Chat posts of a size no corpus has.
    pub wrong: AtomicU64,
    /// TLS connections accepted (each one a full handshake).
    pub connections: AtomicU64,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Binds 127.0.0.1:0 and serves `names` (certificate SANs).
    pub async fn start(names: &[&str], h1_only: bool) -> Result<Upstream, BoxError> {
        let (ca_pem, tls) = pki(names, h1_only)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Seen::default());
        let task = tokio::spawn(serve(listener, tls, seen.clone()));
        Ok(Upstream {
            addr,
            ca_pem,
            seen,
            task,
        })
    }
}

/// A test CA (PEM) and a server config with a leaf for `names` signed by it.
fn pki(names: &[&str], h1_only: bool) -> Result<(String, ServerConfig), BoxError> {
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
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let mut config = ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = if h1_only {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    Ok((ca_cert.pem(), config))
}

async fn serve(listener: TcpListener, tls: ServerConfig, seen: Arc<Seen>) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(_) => {
                // Out of fds or similar: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, seen) = (acceptor.clone(), seen.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            seen.connections.fetch_add(1, Ordering::Relaxed);
            let service = service_fn(move |req| route(req, seen.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

async fn route(req: Request<Incoming>, seen: Arc<Seen>) -> Result<Response<Body>, hyper::Error> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::POST, CHAT_PATH) => {
            let body = req.into_body().collect().await?.to_bytes();
            if corpus::has_secret(&body) {
                seen.leaks.fetch_add(1, Ordering::Relaxed);
                text(
                    StatusCode::BAD_REQUEST,
                    "a blocked prompt reached the upstream",
                )
            } else if !corpus::SIZES.contains(&body.len()) {
                seen.wrong.fetch_add(1, Ordering::Relaxed);
                text(StatusCode::BAD_REQUEST, "wrong body length")
            } else {
                seen.chats.fetch_add(1, Ordering::Relaxed);
                text(StatusCode::OK, ANSWER)
            }
        }
        (&Method::GET, BULK_PATH) => {
            let chunk = Bytes::from(corpus::bulk_chunk());
            let chunks = corpus::bulk_bytes() / BULK_CHUNK;
            let frames = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, hyper::Error>(Frame::data(chunk.clone()))),
            );
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            r.headers_mut()
                .insert(hyper::header::CONTENT_LENGTH, corpus::bulk_bytes().into());
            r
        }
        (&Method::POST, BULK_PATH) => {
            let mut body = req.into_body();
            let mut len = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    len += data.len() as u64;
                }
            }
            Response::new(full(len.to_string()))
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
