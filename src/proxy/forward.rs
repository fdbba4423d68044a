//! Forwarding one HTTP request: the inspection seam for catalog apps, then
//! the pooled upstream client, then the response streamed back.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{debug, error, info, warn};

use super::body::{
    self, boxed, full, read_bounded, text_response, Body, BoxError, Buffered, Prefixed,
};
use super::headers::{is_upgrade, strip_hop_by_hop};
use super::{tunnel, validate, Proxy, Target};
use crate::audit::{self, FindingCount};
use crate::catalog::App;
use crate::config::FailMode;
use crate::diag::error_chain;
use crate::identity::Identity;
use crate::inspect::{Decision, InspectRequest, Verdict};
use crate::metrics::NO_APP;

/// Response header naming lantern's decision.
pub const DECISION_HEADER: &str = "x-lantern-decision";
/// Response header carrying the audit event id of a non-allow decision.
pub const INCIDENT_HEADER: &str = "x-lantern-incident";

/// The scheme lantern speaks to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where the requests of one client connection go.
pub struct Route {
    pub peer: SocketAddr,
    /// Who the client is (resolved once per connection or request).
    pub identity: Arc<Identity>,
    pub scheme: Scheme,
    pub target: Target,
    /// The catalog app of the target host, if any.
    pub app: Option<Arc<App>>,
}

impl Route {
    fn app_label(&self) -> &str {
        self.app.as_ref().map_or(NO_APP, |a| a.id.as_str())
    }

    /// The absolute upstream URI for a request's path and query.
    fn upstream_uri(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = if self.target.port == self.scheme.default_port() {
            if self.target.host.contains(':') {
                format!("[{}]", self.target.host)
            } else {
                self.target.host.clone()
            }
        } else {
            self.target.to_string()
        };
        Uri::builder()
            .scheme(self.scheme.as_str())
            .authority(authority)
            .path_and_query(path)
            .build()
    }
}

/// What became of one request: the label for metrics and the audit event.
struct Outcome {
    /// `allow`, `log`, `coach`, `redact`, `block` or `error`.
    decision: &'static str,
    req_bytes: u64,
    findings: Vec<FindingCount>,
    rule: Option<String>,
    endpoint: Option<(&'static str, &'static str)>,
}

impl Outcome {
    fn new(decision: &'static str) -> Self {
        Outcome {
            decision,
            req_bytes: 0,
            findings: Vec::new(),
            rule: None,
            endpoint: None,
        }
    }
}

/// Forwards `req` along `route`, inspecting it first when the app asks for
/// it, then records the outcome (metrics, and an audit event for catalog apps).
pub async fn forward(proxy: &Proxy, route: &Route, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = audit::path_only(req.uri().path_and_query().map_or("/", |p| p.as_str())).to_string();
    let incident = audit::incident_id();
    let (mut response, outcome) = exchange(proxy, route, req, &incident).await;
    proxy
        .metrics
        .requests
        .with_label_values(&[route.app_label(), outcome.decision])
        .inc();
    let Some(app) = &route.app else {
        return response;
    };
    for finding in &outcome.findings {
        proxy
            .metrics
            .findings
            .with_label_values(&[&finding.detector, &app.id, outcome.decision])
            .inc_by(u64::from(finding.count));
    }
    let id = incident;
    if outcome.decision != "allow" {
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(INCIDENT_HEADER, value);
        }
    }
    proxy.audit.record(audit::Event {
        ts: audit::now_rfc3339(),
        id,
        client_ip: route.peer.ip().to_canonical(),
        user: route.identity.user.clone(),
        groups: route.identity.groups.clone(),
        app: app.id.clone(),
        vendor: app.vendor.clone(),
        sanctioned: app.sanctioned,
        host: route.target.host.clone(),
        method,
        path,
        provider: outcome.endpoint.map(|(p, _)| p.to_string()),
        endpoint: outcome.endpoint.map(|(_, e)| e.to_string()),
        decision: outcome.decision.to_string(),
        rule: outcome.rule,
        findings: outcome.findings,
        req_bytes: outcome.req_bytes,
        status: response.status().as_u16(),
        latency_ms: started.elapsed().as_millis() as u64,
        justification: None,
    });
    response
}

/// The exchange itself: inspection seam, upstream request, response head.
async fn exchange(
    proxy: &Proxy,
    route: &Route,
    mut req: Request<Incoming>,
    incident: &str,
) -> (Response<Body>, Outcome) {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    let tunnelled = route.scheme == Scheme::Https;
    if let Err(refusal) = validate::check(&parts, route.scheme, &route.target, tunnelled) {
        info!(target = %route.target, reason = %refusal.reason, "misdirected request refused");
        proxy
            .metrics
            .requests_refused
            .with_label_values(&["host"])
            .inc();
        let message = format!("lantern: {}", refusal.reason);
        return (
            text_response(refusal.status, message),
            Outcome::new("error"),
        );
    }
    parts.uri = match route.upstream_uri(&parts.uri) {
        Ok(uri) => uri,
        Err(_) => {
            return (
                text_response(StatusCode::BAD_REQUEST, "lantern: invalid request target"),
                Outcome::new("error"),
            )
        }
    };
    strip_hop_by_hop(&mut parts.headers, upgrade);
    // The client sets Host for the upstream from the URI (h1) or uses
    // :authority (h2); a stale Host from another protocol version must not leak.
    parts.headers.remove(header::HOST);
    parts.version = Version::HTTP_11;

    let mut outcome = Outcome::new(Decision::Allow.as_str());
    outcome.req_bytes = content_length(&parts.headers).unwrap_or(0);
    let mut permit = None;
    let body = match route.app.as_ref().filter(|a| a.inspect) {
        Some(app) => {
            // Held until the upstream has taken the body (its response head).
            permit = match reserve_buffer(proxy, &incoming).await {
                Ok(permit) => permit,
                Err(()) => return (busy(proxy, app), Outcome::new("error")),
            };
            match inspect(
                proxy,
                route,
                app,
                &mut parts,
                incoming,
                &mut outcome,
                incident,
            )
            .await
            {
                Ok(body) => body,
                Err(response) => return (response, outcome),
            }
        }
        None => body::from_client(incoming),
    };

    let client = if upgrade {
        &proxy.upstream.http1
    } else {
        &proxy.upstream.pooled
    };
    let started = Instant::now();
    let sent = tokio::time::timeout(
        proxy.upstream.response_timeout,
        client.request(Request::from_parts(parts, body)),
    )
    .await;
    proxy
        .metrics
        .upstream_seconds
        .observe(started.elapsed().as_secs_f64());
    drop(permit);
    let mut response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            let (status, kind, message) = describe_client_error(&e, &route.target);
            if kind == CLIENT_BODY {
                info!(target = %route.target, error = %error_chain(&e), "the client's request body broke off");
                proxy
                    .metrics
                    .requests_refused
                    .with_label_values(&["body"])
                    .inc();
            } else {
                warn!(target = %route.target, error = %error_chain(&e), kind, "upstream request failed");
                proxy
                    .metrics
                    .upstream_errors
                    .with_label_values(&[kind])
                    .inc();
            }
            outcome.decision = "error";
            return (text_response(status, message), outcome);
        }
        Err(_) => {
            warn!(target = %route.target, timeout = ?proxy.upstream.response_timeout, "upstream response timed out");
            proxy
                .metrics
                .upstream_errors
                .with_label_values(&["timeout"])
                .inc();
            outcome.decision = "error";
            let message = format!("lantern: {} did not answer in time", route.target);
            return (text_response(StatusCode::GATEWAY_TIMEOUT, message), outcome);
        }
    };

    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
        let server_upgrade = hyper::upgrade::on(&mut response);
        let idle = proxy.config.proxy.idle_timeout;
        let shutdown = proxy.shutdown.clone();
        proxy.tasks.spawn(async move {
            match tokio::try_join!(client_upgrade, server_upgrade) {
                Ok((client, server)) => {
                    tunnel::splice(TokioIo::new(client), TokioIo::new(server), idle, shutdown)
                        .await;
                }
                Err(e) => debug!(error = %e, "upgrade relay failed"),
            }
        });
    }
    strip_hop_by_hop(response.headers_mut(), switching);
    if outcome.decision != Decision::Allow.as_str() {
        response
            .headers_mut()
            .insert(DECISION_HEADER, HeaderValue::from_static(outcome.decision));
    }
    let broke_off = proxy.metrics.upstream_reset.clone();
    let target = route.target.clone();
    let response = response.map(|body| {
        body.map_err(move |e| {
            // The head is gone already: the client sees its body break off too.
            warn!(%target, error = %error_chain(&e), "upstream response broke off");
            broke_off.inc();
            BoxError::from(e)
        })
        .boxed()
    });
    (response, outcome)
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// lantern's own refusal of a request it could not inspect (fail-closed).
fn blocked(status: StatusCode, message: String) -> Response<Body> {
    let mut response = text_response(status, message);
    response
        .headers_mut()
        .insert(DECISION_HEADER, HeaderValue::from_static("block"));
    response
}

/// How long a request waits for room in the inspection buffer budget.
const BUFFER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reserves buffer room for the body about to be read: its declared
/// length, or the whole cap when it is chunked; nothing for no body.
/// `Err` when no room came within [`BUFFER_WAIT`].
async fn reserve_buffer(
    proxy: &Proxy,
    incoming: &Incoming,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ()> {
    let cap = proxy.config.inspect.max_body_bytes;
    let size = match hyper::body::Body::size_hint(incoming).exact() {
        Some(0) => return Ok(None),
        Some(n) => n.min(cap),
        None => cap,
    };
    match proxy.buffers.reserve(size, BUFFER_WAIT).await {
        Some(permit) => Ok(Some(permit)),
        None => Err(()),
    }
}

/// The 503 when the buffer budget stayed full: always closed, or a flood
/// of requests could push others through uninspected.
fn busy(proxy: &Proxy, app: &App) -> Response<Body> {
    warn!(app = %app.id, "inspection buffers full; request refused");
    proxy
        .metrics
        .uninspected
        .with_label_values(&["busy", "closed"])
        .inc();
    let mut response = text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "lantern: too many requests are being inspected right now; try again shortly",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    response
}

/// Buffers the body (up to the cap) and asks the inspector. `Ok` carries
/// the body to forward; `Err` a response that ends the request here.
async fn inspect(
    proxy: &Proxy,
    route: &Route,
    app: &App,
    parts: &mut http::request::Parts,
    incoming: Incoming,
    outcome: &mut Outcome,
    incident: &str,
) -> Result<Body, Response<Body>> {
    let cap = proxy.config.inspect.max_body_bytes;
    // A body must keep arriving: a client that declares one and goes
    // silent would hold its share of the buffer budget.
    let gap = proxy.config.proxy.header_read_timeout;
    let buffered = read_bounded(incoming, cap, gap).await.map_err(|e| {
        info!(error = %error_chain(&e), "reading the request body failed");
        proxy
            .metrics
            .requests_refused
            .with_label_values(&["body"])
            .inc();
        outcome.decision = "error";
        let status = match e {
            body::ReadError::Stalled(_) => StatusCode::REQUEST_TIMEOUT,
            body::ReadError::Body(_) => StatusCode::BAD_REQUEST,
        };
        text_response(
            status,
            format!(
                "lantern: could not read the request body: {}",
                error_chain(&e)
            ),
        )
    })?;
    let bytes = match buffered {
        Buffered::Complete(bytes) => bytes,
        Buffered::Oversize(prefix, rest) => {
            let mode = proxy.config.inspect.on_oversize;
            let mode_label = mode.as_str();
            proxy
                .metrics
                .uninspected
                .with_label_values(&["oversize", mode_label])
                .inc();
            warn!(app = %app.id, cap, mode = mode_label, "request body over the inspection cap");
            outcome.rule = Some(format!("inspect.on_oversize: {mode_label}"));
            outcome.req_bytes = outcome.req_bytes.max(prefix.len() as u64);
            return match mode {
                FailMode::Open => Ok(boxed(Prefixed::new(prefix, body::from_client(rest)))),
                FailMode::Closed => {
                    outcome.decision = Decision::Block.as_str();
                    Err(blocked(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("lantern: the request body is larger than the {cap}-byte inspection limit and was not sent to {}", app.name),
                    ))
                }
            };
        }
    };
    outcome.req_bytes = bytes.len() as u64;
    proxy.metrics.inspected_bytes.inc_by(bytes.len() as u64);
    let started = Instant::now();
    let request = InspectRequest {
        app,
        client: route.peer.ip(),
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body: &bytes,
        user: &route.identity.user,
        groups: &route.identity.groups,
        incident,
    };
    let rules = proxy.rules();
    // A bug in an inspector must not take the connection down unaudited:
    // it counts as a body that could not be inspected.
    let inspected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rules.inspector.inspect(&request)
    }));
    proxy
        .metrics
        .inspect_seconds
        .observe(started.elapsed().as_secs_f64());
    let mode = proxy.config.inspect.on_oversize;
    let inspection = match inspected {
        Ok(inspection) => inspection,
        Err(_) => {
            error!(app = %app.id, "inspection panicked; applying inspect.on_oversize");
            proxy
                .metrics
                .uninspected
                .with_label_values(&["failed", mode.as_str()])
                .inc();
            outcome.rule = Some(format!("inspection failed: {}", mode.as_str()));
            return match mode {
                FailMode::Open => {
                    outcome.decision = Decision::Log.as_str();
                    Ok(full(bytes))
                }
                FailMode::Closed => {
                    outcome.decision = Decision::Block.as_str();
                    Err(blocked(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("lantern: this request to {} could not be inspected and was not sent; try again, or contact your security team with the incident id", app.name),
                    ))
                }
            };
        }
    };
    if inspection.unreadable {
        let mode = match inspection.verdict {
            Verdict::Respond(..) => FailMode::Closed,
            _ => FailMode::Open,
        };
        proxy
            .metrics
            .uninspected
            .with_label_values(&["unreadable", mode.as_str()])
            .inc();
    }
    let decision = inspection.verdict.decision();
    outcome.decision = decision.as_str();
    outcome.findings = inspection.findings;
    outcome.rule = inspection.rule;
    outcome.endpoint = inspection.endpoint;
    if decision != Decision::Allow {
        info!(app = %app.id, decision = decision.as_str(), "inspection decision");
    }
    match inspection.verdict {
        Verdict::Forward(_) => Ok(full(bytes)),
        Verdict::Rewrite(_, rewritten, encoding) => {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
            match encoding {
                Some(encoding) => parts.headers.insert(header::CONTENT_ENCODING, encoding),
                None => parts.headers.remove(header::CONTENT_ENCODING),
            };
            Ok(full(rewritten))
        }
        Verdict::Respond(d, response) => {
            let mut response = response.map(body::full);
            response
                .headers_mut()
                .insert(DECISION_HEADER, HeaderValue::from_static(d.as_str()));
            Err(response)
        }
    }
}

/// The error kind of an exchange broken by the client's own body.
const CLIENT_BODY: &str = "client_body";

/// Maps a failed upstream exchange to a status, a metric kind and a short
/// message for the client.
fn describe_client_error(
    err: &hyper_util::client::legacy::Error,
    target: &Target,
) -> (StatusCode, &'static str, String) {
    if let Some(body) = chain(err)
        .into_iter()
        .find_map(|e| e.downcast_ref::<body::ClientBodyError>())
    {
        return (
            StatusCode::BAD_REQUEST,
            CLIENT_BODY,
            format!("lantern: {body}: {}", error_chain(&body.0)),
        );
    }
    if let Some(tls) = find_tls_error(err) {
        return (
            StatusCode::BAD_GATEWAY,
            "tls",
            format!("lantern: TLS with {target} failed: {tls}"),
        );
    }
    if err.is_connect() {
        if let Some(io) = find_io_error(err) {
            return (
                upstream_status(io),
                io_error_kind(io),
                format!("lantern: cannot reach {target}: {io}"),
            );
        }
    }
    (
        StatusCode::BAD_GATEWAY,
        if err.is_connect() { "connect" } else { "other" },
        format!("lantern: the exchange with {target} failed"),
    )
}

/// Every error in a chain, looking inside `io::Error`s too (their
/// `source()` skips the error they wrap).
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

fn find_tls_error(err: &(dyn StdError + 'static)) -> Option<String> {
    chain(err).into_iter().find_map(|e| {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // tokio-rustls reports handshake failures as InvalidData.
        e.downcast_ref::<std::io::Error>()
            .filter(|io| io.kind() == std::io::ErrorKind::InvalidData)
            .map(|io| io.to_string())
    })
}

fn find_io_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a std::io::Error> {
    chain(err)
        .into_iter()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .last()
}

fn upstream_status(err: &std::io::Error) -> StatusCode {
    if err.kind() == std::io::ErrorKind::TimedOut {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    }
}

/// Metric label for a failed upstream connect.
pub fn io_error_kind(err: &std::io::Error) -> &'static str {
    if err.kind() == std::io::ErrorKind::TimedOut {
        "timeout"
    } else {
        "connect"
    }
}

/// 502 or 504 for a tunnel whose upstream could not be reached.
pub fn upstream_error_response(target: &Target, err: &std::io::Error) -> Response<Body> {
    warn!(%target, error = %err, "upstream connect failed");
    text_response(
        upstream_status(err),
        format!("lantern: cannot reach {target}: {err}"),
    )
}
