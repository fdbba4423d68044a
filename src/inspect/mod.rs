//! The inspection seam: where an intercepted request, body in hand, meets
//! lantern's judgement before anything is sent upstream.
//!
//! The proxy buffers the body (up to `inspect.max_body_bytes`) and calls an
//! [`Inspector`]; extraction, detection and policy live behind it and know
//! nothing about sockets.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, Uri};

use crate::audit::FindingCount;
use crate::catalog::App;

mod judge;

pub use judge::{tally, PolicyInspector};

/// What lantern decided for one request. Also the `decision` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Forwarded, nothing to note.
    Allow,
    /// Forwarded, findings recorded.
    Log,
    /// Stopped with a coaching message the person can act on.
    Coach,
    /// Forwarded with sensitive spans masked.
    Redact,
    /// Stopped.
    Block,
}

impl Decision {
    /// The stable lowercase name (metric label, audit, headers).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Log => "log",
            Decision::Coach => "coach",
            Decision::Redact => "redact",
            Decision::Block => "block",
        }
    }
}

/// An intercepted request with its complete body.
#[derive(Debug)]
pub struct InspectRequest<'a> {
    /// The catalog app the host belongs to.
    pub app: &'a App,
    /// The client's address.
    pub client: IpAddr,
    pub method: &'a Method,
    /// Absolute URI of the request (`https://host/path?query`).
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The body exactly as the client sent it (still content-encoded).
    pub body: &'a Bytes,
    /// Who: the authenticated user, else the client address.
    pub user: &'a str,
    pub groups: &'a [String],
    /// The incident id this request's audit event and notices carry.
    pub incident: &'a str,
}

/// The inspector's answer.
#[derive(Debug)]
pub enum Verdict {
    /// Forward the request unchanged.
    Forward(Decision),
    /// Forward with this body instead (redaction); lantern fixes the
    /// length and sets `Content-Encoding` as given (`None`: removed).
    Rewrite(Decision, Bytes, Option<http::HeaderValue>),
    /// Answer the client with this response; nothing goes upstream.
    Respond(Decision, Response<Bytes>),
}

impl Verdict {
    /// The decision carried by this verdict.
    pub fn decision(&self) -> Decision {
        match self {
            Verdict::Forward(d) | Verdict::Rewrite(d, ..) | Verdict::Respond(d, _) => *d,
        }
    }
}

/// The inspector's full answer: the verdict plus what was found (detector
/// ids and counts, never values) and which policy rule decided.
#[derive(Debug)]
pub struct Inspection {
    pub verdict: Verdict,
    pub findings: Vec<FindingCount>,
    pub rule: Option<String>,
    /// Which API family and endpoint the request was (`openai`,
    /// `chat.completions`), when extraction recognised it.
    pub endpoint: Option<(&'static str, &'static str)>,
    /// The body could not be read (undecodable, malformed); the verdict
    /// follows the fail mode. Counted in `uninspected_requests_total`.
    pub unreadable: bool,
}

impl From<Verdict> for Inspection {
    fn from(verdict: Verdict) -> Self {
        Inspection {
            verdict,
            findings: Vec::new(),
            rule: None,
            endpoint: None,
            unreadable: false,
        }
    }
}

/// Judges intercepted requests. Called on the request path: keep it fast
/// and never block on I/O.
pub trait Inspector: Send + Sync + 'static {
    fn inspect(&self, req: &InspectRequest<'_>) -> Inspection;

    /// Decides on a tunnel to a discover-only app (no body to inspect):
    /// `Some(message)` refuses the CONNECT with 403 and that message.
    fn refuse_tunnel(
        &self,
        _app: &App,
        _user: &str,
        _groups: &[String],
    ) -> Option<(String, String)> {
        None
    }
}

/// Forwards everything: the seam with nothing behind it.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Inspector for AllowAll {
    fn inspect(&self, _req: &InspectRequest<'_>) -> Inspection {
        Verdict::Forward(Decision::Allow).into()
    }
}
