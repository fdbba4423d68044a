//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/ca.pem`, and
//! the coaching acknowledgement pages `/ack/<token>`.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::action::{ack_done_page, ack_form_page};
use crate::audit;
use crate::proxy::body::{full, text_response, Body};
use crate::proxy::Proxy;

/// Largest acknowledgement form body accepted.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Longest justification kept (characters).
const MAX_JUSTIFICATION: usize = 1000;

/// Serves admin requests until the process ends. During shutdown `/readyz`
/// answers 503 so load balancers stop sending new clients.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let proxy = proxy.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                let shutdown = shutdown.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(route(&proxy, &shutdown, peer, req).await)
                }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(client = %peer, error = %e, "admin connection error");
            }
        });
    }
}

async fn route(
    proxy: &Proxy,
    shutdown: &CancellationToken,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Some(token) = req.uri().path().strip_prefix("/ack/") {
        let token = token.to_string();
        return acknowledge(proxy, peer, &token, req).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    match req.uri().path() {
        "/metrics" => with_type(
            full(proxy.metrics.render()),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/healthz" => text_response(StatusCode::OK, "ok"),
        "/readyz" if shutdown.is_cancelled() => {
            text_response(StatusCode::SERVICE_UNAVAILABLE, "draining")
        }
        "/readyz" => text_response(StatusCode::OK, "ready"),
        "/ca.pem" => with_type(
            full(proxy.ca.cert_pem().to_string()),
            "application/x-pem-file",
        ),
        _ => text_response(StatusCode::NOT_FOUND, "not found"),
    }
}

/// GET shows the form; POST records the justification and grants the retry.
/// A POST body is read (bounded) before anything is answered, so a refusal
/// never leaves unread bytes on a keep-alive connection.
async fn acknowledge(
    proxy: &Proxy,
    peer: std::net::SocketAddr,
    token: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let form = if method == Method::POST {
        match Limited::new(req.into_body(), MAX_FORM_BYTES)
            .collect()
            .await
        {
            Ok(body) => Some(body.to_bytes()),
            Err(_) => {
                let mut response =
                    text_response(StatusCode::PAYLOAD_TOO_LARGE, "lantern: form too large");
                response.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                return response;
            }
        }
    } else {
        None
    };
    let claim = match proxy.acks.key.verify(token) {
        Ok(claim) => claim,
        Err(e) => {
            info!(client = %peer, reason = %e, "acknowledgement token refused");
            return text_response(
                StatusCode::FORBIDDEN,
                format!("lantern: this acknowledgement link is not valid ({e})"),
            );
        }
    };
    match (method, form) {
        (Method::GET | Method::HEAD, _) => html(ack_form_page(
            "lantern",
            &claim.app,
            &claim.detectors,
            &claim.incident,
        )),
        (Method::POST, Some(form)) => {
            let justification: String = form_urlencoded::parse(&form)
                .find(|(k, _)| k == "justification")
                .map(|(_, v)| v.trim().chars().take(MAX_JUSTIFICATION).collect())
                .unwrap_or_default();
            if justification.is_empty() {
                return text_response(
                    StatusCode::BAD_REQUEST,
                    "lantern: please give a reason to continue",
                );
            }
            proxy.acks.grants.grant(&claim);
            info!(app = %claim.app, incident = %claim.incident, "coach acknowledged");
            proxy
                .audit
                .record(ack_event(peer, &claim, form.len(), justification));
            html(ack_done_page(
                "lantern",
                &claim.app,
                claim.ttl.div_ceil(3600),
            ))
        }
        _ => text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

/// The audit event of an acknowledgement, with the person's justification.
fn ack_event(
    peer: std::net::SocketAddr,
    claim: &crate::action::ack::Claim,
    form_bytes: usize,
    justification: String,
) -> audit::Event {
    audit::Event {
        ts: audit::now_rfc3339(),
        id: claim.incident.clone(),
        client_ip: peer.ip().to_canonical(),
        user: claim.user.clone(),
        groups: Vec::new(),
        app: claim.app.clone(),
        vendor: String::new(),
        sanctioned: false,
        host: String::new(),
        method: "POST".into(),
        path: "/ack".into(),
        provider: None,
        endpoint: None,
        decision: "ack".into(),
        rule: None,
        findings: claim
            .detectors
            .iter()
            .map(|(d, n)| audit::FindingCount {
                detector: d.clone(),
                severity: String::new(),
                count: *n,
            })
            .collect(),
        req_bytes: form_bytes as u64,
        status: 200,
        latency_ms: 0,
        justification: Some(justification),
    }
}

fn html(page: String) -> Response<Body> {
    let mut response = with_type(full(Bytes::from(page)), "text/html; charset=utf-8");
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn with_type(body: Body, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
