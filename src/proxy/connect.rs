//! `CONNECT`: a blind TCP tunnel for hosts lantern does not inspect, TLS
//! interception with a minted leaf for catalog hosts marked `inspect`.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::Acceptor;
use tokio_rustls::LazyConfigAcceptor;
use tracing::{debug, info, warn, Instrument};

use super::body::{empty, text_response, Body};
use super::forward::{self, upstream_error_response, Route, Scheme};
use super::{tunnel, Proxy, Target};
use crate::audit;
use crate::catalog::App;
use crate::identity::Identity;
use crate::metrics::NO_APP;

/// Handles a `CONNECT` request: answers it and, on success, continues on
/// the upgraded connection in a tracked task.
pub async fn handle(
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    identity: Arc<Identity>,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(target) = req
        .uri()
        .authority()
        .and_then(|a| Target::parse_authority(a.as_str()))
    else {
        return text_response(StatusCode::BAD_REQUEST, "lantern: CONNECT needs host:port");
    };
    if !proxy.config.proxy.connect_ports.contains(&target.port) {
        warn!(%target, "CONNECT to a port outside proxy.connect_ports");
        return text_response(
            StatusCode::FORBIDDEN,
            format!("lantern: CONNECT to port {} is not allowed", target.port),
        );
    }
    if proxy.loops_back(&target) {
        return Proxy::loop_response(&target);
    }
    let app = proxy.rules().catalog.lookup(&target.host).cloned();
    match app {
        Some(app) if app.inspect => {
            proxy.metrics.tunnels.with_label_values(&["inspect"]).inc();
            let span = tracing::info_span!("intercept", app = %app.id, %target);
            let proxy2 = proxy.clone();
            proxy.tasks.spawn(
                async move {
                    match hyper::upgrade::on(req).await {
                        Ok(upgraded) => {
                            intercept(proxy2, peer, identity, target, app, upgraded).await
                        }
                        Err(e) => debug!(error = %e, "CONNECT upgrade failed"),
                    }
                }
                .instrument(span),
            );
            Response::new(empty())
        }
        app => {
            if let Some(app) = &app {
                let refused =
                    proxy
                        .rules()
                        .inspector
                        .refuse_tunnel(app, &identity.user, &identity.groups);
                if let Some((rule, message)) = refused {
                    info!(app = %app.id, %target, %rule, decision = "block", "tunnel refused by policy");
                    proxy
                        .metrics
                        .requests
                        .with_label_values(&[&app.id, "block"])
                        .inc();
                    proxy.audit.record(tunnel_event(
                        app,
                        &identity,
                        peer,
                        &target,
                        "block",
                        Some(rule),
                        403,
                    ));
                    let mut response = text_response(StatusCode::FORBIDDEN, message);
                    response.headers_mut().insert(
                        super::forward::DECISION_HEADER,
                        http::HeaderValue::from_static("block"),
                    );
                    return response;
                }
            }
            // Connect first, so the client learns of a dead upstream as a
            // 502/504 rather than as a tunnel that closes at once.
            let upstream = match proxy
                .upstream
                .dialer
                .connect(&target.host, target.port)
                .await
            {
                Ok(stream) => stream,
                Err(e) => {
                    proxy
                        .metrics
                        .upstream_errors
                        .with_label_values(&[forward::io_error_kind(&e)])
                        .inc();
                    return upstream_error_response(&target, &e);
                }
            };
            proxy.metrics.tunnels.with_label_values(&["blind"]).inc();
            let app_label = app.as_ref().map_or(NO_APP, |a| a.id.as_str());
            if let Some(app) = &app {
                proxy
                    .metrics
                    .requests
                    .with_label_values(&[app_label, "tunnel"])
                    .inc();
                info!(app = app_label, %target, decision = "tunnel", "discovered AI app (not inspected)");
                proxy.audit.record(tunnel_event(
                    app, &identity, peer, &target, "tunnel", None, 200,
                ));
            }
            let span = tracing::info_span!("tunnel", app = app_label, %target);
            let proxy2 = proxy.clone();
            proxy.tasks.spawn(
                async move {
                    match hyper::upgrade::on(req).await {
                        Ok(upgraded) => {
                            let (up, down) = tunnel::splice(
                                TokioIo::new(upgraded),
                                upstream,
                                proxy2.config.proxy.idle_timeout,
                                proxy2.shutdown.clone(),
                            )
                            .await;
                            debug!(bytes_up = up, bytes_down = down, "tunnel closed");
                        }
                        Err(e) => debug!(error = %e, "CONNECT upgrade failed"),
                    }
                }
                .instrument(span),
            );
            Response::new(empty())
        }
    }
}

/// Terminates the client's TLS with a leaf for the CONNECT host and serves
/// HTTP/1.1 or h2 (by ALPN) on it, forwarding each request.
async fn intercept(
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    identity: Arc<Identity>,
    target: Target,
    app: Arc<App>,
    upgraded: hyper::upgrade::Upgraded,
) {
    let handshake = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), TokioIo::new(upgraded)).await?;
        // The leaf names the CONNECT host: that is what the client verifies
        // and where lantern forwards, whatever the SNI says.
        let config = proxy
            .ca
            .server_config(&target.host)
            .map_err(std::io::Error::other)?;
        start.into_stream(config).await
    };
    let tls = match tokio::time::timeout(proxy.config.proxy.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            info!(error = %e, "client TLS handshake failed (does the client trust the lantern CA?)");
            return;
        }
        Err(_) => {
            info!("client TLS handshake timed out");
            return;
        }
    };
    let route = Arc::new(Route {
        peer,
        identity,
        scheme: Scheme::Https,
        target,
        app: Some(app),
    });
    let (tls, heads) = super::strict::guard(tls, proxy.head_limit());
    let proxy2 = proxy.clone();
    let service = service_fn(move |req| {
        let proxy = proxy2.clone();
        let route = route.clone();
        let heads = heads.clone();
        async move {
            let response = match heads.next_request() {
                Ok(()) => forward::forward(&proxy, &route, req).await,
                Err(reason) => proxy.malformed(reason),
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.config.proxy.header_read_timeout)
        .max_buf_size(proxy.config.proxy.max_header_bytes as usize);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(proxy.config.proxy.max_header_bytes as u32);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = proxy.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "intercepted connection ended with an error");
    }
}

/// The audit event for a CONNECT to a discover-only app.
fn tunnel_event(
    app: &App,
    identity: &Identity,
    peer: SocketAddr,
    target: &Target,
    decision: &str,
    rule: Option<String>,
    status: u16,
) -> audit::Event {
    audit::Event {
        ts: audit::now_rfc3339(),
        id: audit::incident_id(),
        client_ip: peer.ip().to_canonical(),
        user: identity.user.clone(),
        groups: identity.groups.clone(),
        app: app.id.clone(),
        vendor: app.vendor.clone(),
        sanctioned: app.sanctioned,
        host: target.host.clone(),
        method: "CONNECT".into(),
        path: String::new(),
        provider: None,
        endpoint: None,
        decision: decision.into(),
        rule,
        findings: Vec::new(),
        req_bytes: 0,
        status,
        latency_ms: 0,
        justification: None,
    }
}
