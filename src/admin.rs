//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/ca.pem`.

use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::proxy::body::{full, text_response, Body};
use crate::proxy::Proxy;

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
                let response = route(&proxy, &shutdown, &req);
                async move { Ok::<_, std::convert::Infallible>(response) }
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

fn route(proxy: &Proxy, shutdown: &CancellationToken, req: &Request<Incoming>) -> Response<Body> {
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

fn with_type(body: Body, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
