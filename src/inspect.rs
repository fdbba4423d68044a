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
}

/// The inspector's answer.
#[derive(Debug)]
pub enum Verdict {
    /// Forward the request unchanged.
    Forward(Decision),
    /// Forward with this body instead (redaction); lantern fixes the length.
    Rewrite(Decision, Bytes),
    /// Answer the client with this response; nothing goes upstream.
    Respond(Decision, Response<Bytes>),
}

impl Verdict {
    /// The decision carried by this verdict.
    pub fn decision(&self) -> Decision {
        match self {
            Verdict::Forward(d) | Verdict::Rewrite(d, _) | Verdict::Respond(d, _) => *d,
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
}

impl From<Verdict> for Inspection {
    fn from(verdict: Verdict) -> Self {
        Inspection {
            verdict,
            findings: Vec::new(),
            rule: None,
        }
    }
}

/// Judges intercepted requests. Called on the request path: keep it fast
/// and never block on I/O.
pub trait Inspector: Send + Sync + 'static {
    fn inspect(&self, req: &InspectRequest<'_>) -> Inspection;
}

/// Forwards everything: the seam with nothing behind it.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Inspector for AllowAll {
    fn inspect(&self, _req: &InspectRequest<'_>) -> Inspection {
        Verdict::Forward(Decision::Allow).into()
    }
}

/// Scans the body with the detection engine and records what it finds
/// (decision `log`); forwarding is never stopped. The policy stage replaces
/// this with per-rule actions.
pub struct ScanInspector {
    engine: std::sync::Arc<crate::detect::Engine>,
}

impl ScanInspector {
    pub fn new(engine: std::sync::Arc<crate::detect::Engine>) -> Self {
        ScanInspector { engine }
    }
}

impl Inspector for ScanInspector {
    fn inspect(&self, req: &InspectRequest<'_>) -> Inspection {
        let findings = self.engine.scan(req.body);
        if findings.is_empty() {
            return Verdict::Forward(Decision::Allow).into();
        }
        Inspection {
            verdict: Verdict::Forward(Decision::Log),
            findings: tally(&findings),
            rule: Some("default".into()),
        }
    }
}

/// Findings grouped by detector: count and highest severity, by detector id.
pub fn tally(findings: &[crate::detect::Finding]) -> Vec<FindingCount> {
    let mut by_detector: std::collections::BTreeMap<&str, (crate::detect::Severity, u32)> =
        std::collections::BTreeMap::new();
    for f in findings {
        let entry = by_detector.entry(f.detector()).or_insert((f.severity, 0));
        entry.0 = entry.0.max(f.severity);
        entry.1 += 1;
    }
    by_detector
        .into_iter()
        .map(|(detector, (severity, count))| FindingCount {
            detector: detector.to_string(),
            severity: severity.as_str().to_string(),
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_inspector_logs_findings_by_detector_without_values() {
        let engine = std::sync::Arc::new(crate::detect::Engine::bundled().unwrap());
        let app = App {
            id: "chatgpt".into(),
            name: "ChatGPT".into(),
            vendor: "OpenAI".into(),
            category: "chat".into(),
            hosts: vec![],
            sanctioned: false,
            inspect: true,
        };
        let body = Bytes::from_static(
            b"{\"content\":\"mail jane.doe@acme-corp.com and bob.smith@acme-corp.com\"}",
        );
        let (method, uri, headers) = (
            Method::POST,
            Uri::from_static("https://chatgpt.com/"),
            HeaderMap::new(),
        );
        let req = InspectRequest {
            app: &app,
            client: "127.0.0.1".parse().unwrap(),
            method: &method,
            uri: &uri,
            headers: &headers,
            body: &body,
        };
        let inspection = ScanInspector::new(engine.clone()).inspect(&req);
        assert_eq!(inspection.verdict.decision(), Decision::Log);
        assert_eq!(inspection.findings.len(), 1, "{:?}", inspection.findings);
        assert_eq!(inspection.findings[0].detector, "pii.email");
        assert_eq!(inspection.findings[0].count, 2);
        let clean = Bytes::from_static(b"{\"content\":\"what is the capital of France?\"}");
        let req = InspectRequest {
            body: &clean,
            ..req
        };
        assert_eq!(
            ScanInspector::new(engine).inspect(&req).verdict.decision(),
            Decision::Allow
        );
    }
}
