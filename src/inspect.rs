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

/// The full judgement: detection engine, then policy, then the action's
/// response. Coach decisions already acknowledged by the same user for the
/// same app and detector families pass as `log`.
pub struct PolicyInspector {
    engine: std::sync::Arc<crate::detect::Engine>,
    policy: std::sync::Arc<crate::policy::Policy>,
    acks: std::sync::Arc<crate::action::ack::Acks>,
    /// Base of acknowledgement links, e.g. `http://127.0.0.1:9464`.
    ack_base: String,
}

impl PolicyInspector {
    pub fn new(
        engine: std::sync::Arc<crate::detect::Engine>,
        policy: std::sync::Arc<crate::policy::Policy>,
        acks: std::sync::Arc<crate::action::ack::Acks>,
        default_ack_base: &str,
    ) -> Self {
        let ack_base = policy
            .coach
            .public_url
            .clone()
            .unwrap_or_else(|| default_ack_base.to_string())
            .trim_end_matches('/')
            .to_string();
        PolicyInspector {
            engine,
            policy,
            acks,
            ack_base,
        }
    }
}

impl Inspector for PolicyInspector {
    fn inspect(&self, req: &InspectRequest<'_>) -> Inspection {
        use crate::policy::{family, Action, Found, Subject};
        let findings = self.engine.scan(req.body);
        let counts = tally(&findings);
        let found: Vec<Found<'_>> = counts
            .iter()
            .map(|c| Found {
                detector: &c.detector,
                severity: crate::detect::Severity::parse(&c.severity)
                    .unwrap_or(crate::detect::Severity::Low),
                count: c.count,
            })
            .collect();
        let subject = Subject {
            app: req.app,
            user: req.user,
            groups: req.groups,
            findings: &found,
            req_bytes: req.body.len() as u64,
        };
        let ruling = self.policy.evaluate(&subject);
        let mut rule = ruling.rule.map(|r| r.name.clone());
        let mut families: Vec<&str> = ruling.matched.iter().map(|f| family(f.detector)).collect();
        families.sort_unstable();
        families.dedup();
        if families.is_empty() {
            families.push("app");
        }
        let mut action = ruling.action;
        if action == Action::Coach
            && self
                .acks
                .grants
                .allows(req.user, &req.app.id, families.iter().copied())
        {
            action = Action::Log;
            rule = rule.map(|r| format!("{r} (acknowledged)"));
        }
        let decision = action.decision();
        let verdict = match action {
            Action::Allow | Action::Log => Verdict::Forward(decision),
            Action::Redact => match redact_raw(req, &findings) {
                Some(body) => Verdict::Rewrite(decision, body),
                // Cannot rewrite an encoded body safely: stop it instead.
                None => self.notice(req, Decision::Block, &ruling, &families, rule.as_deref()),
            },
            Action::Coach | Action::Block => {
                self.notice(req, decision, &ruling, &families, rule.as_deref())
            }
        };
        Inspection {
            verdict,
            findings: counts,
            rule,
        }
    }

    fn refuse_tunnel(&self, app: &App, user: &str, groups: &[String]) -> Option<(String, String)> {
        self.app_block(app, user, groups)
    }
}

impl PolicyInspector {
    /// App-level `block` rules apply to discover-only apps at CONNECT time.
    pub fn app_block(&self, app: &App, user: &str, groups: &[String]) -> Option<(String, String)> {
        let (action, rule) = self.policy.app_level_action(app, user, groups)?;
        (action == crate::policy::Action::Block).then(|| {
            let template = rule
                .message
                .as_deref()
                .unwrap_or("lantern: {app} is not allowed here. Incident {incident}.");
            let incident = crate::audit::incident_id();
            let message = crate::policy::render(template, &app.name, "", &incident, "");
            (rule.name.clone(), message)
        })
    }

    /// A block or coach response in the client's format.
    fn notice(
        &self,
        req: &InspectRequest<'_>,
        decision: Decision,
        ruling: &crate::policy::Ruling<'_, '_>,
        families: &[&str],
        _rule: Option<&str>,
    ) -> Verdict {
        use crate::action::{ack::Claim, respond, Notice, Shape};
        let detectors: Vec<(String, u32)> = ruling
            .matched
            .iter()
            .map(|f| (f.detector.to_string(), f.count))
            .collect();
        let names = if detectors.is_empty() {
            "nothing sensitive (this app is restricted)".to_string()
        } else {
            detectors
                .iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ack_link = (decision == Decision::Coach).then(|| {
            let ttl = self.policy.coach.ack_ttl.as_secs();
            let token = self.acks.key.issue(&Claim {
                user: req.user.to_string(),
                app: req.app.id.clone(),
                families: families.iter().map(|f| f.to_string()).collect(),
                detectors: detectors.clone(),
                incident: req.incident.to_string(),
                expires: crate::action::ack::unix_now() + ttl.max(3600),
                ttl,
            });
            format!("{}/ack/{token}", self.ack_base)
        });
        let template = ruling.rule.and_then(|r| r.message.as_deref()).unwrap_or(match decision {
            Decision::Coach => "lantern: this request to {app} contains {detectors}. If you need to send it, give a reason at {ack_link} and then retry. Incident {incident}.",
            _ => "lantern blocked this request to {app}: it contains {detectors}. Remove them and try again. Incident {incident}.",
        });
        let shape = Shape::for_request(req.app, req.headers);
        // A page shows the link as a button; the text need not spell it out.
        let link_text = match shape {
            Shape::Html => "the link below",
            _ => ack_link.as_deref().unwrap_or(""),
        };
        let message =
            crate::policy::render(template, &req.app.name, &names, req.incident, link_text);
        let notice = Notice {
            brand: &self.policy.coach.brand,
            app: &req.app.name,
            message,
            detectors: &detectors,
            incident: req.incident,
            ack_link: ack_link.as_deref(),
            help_url: self.policy.coach.help_url.as_deref(),
        };
        Verdict::Respond(
            decision,
            respond(decision, Shape::for_request(req.app, req.headers), &notice),
        )
    }
}

/// Replaces each finding's span in an identity-encoded body with
/// `[REDACTED:<detector>]`. `None` when the body is content-encoded.
/// (Provider-aware extraction will rewrite decoded prompt fields instead.)
fn redact_raw(req: &InspectRequest<'_>, findings: &[crate::detect::Finding]) -> Option<Bytes> {
    if req
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return None;
    }
    let mut spans: Vec<&crate::detect::Finding> = findings.iter().collect();
    spans.sort_by_key(|f| f.start);
    let mut out = Vec::with_capacity(req.body.len());
    let mut at = 0;
    for f in spans {
        if f.start < at || f.end > req.body.len() {
            continue;
        }
        out.extend_from_slice(&req.body[at..f.start]);
        out.extend_from_slice(format!("[REDACTED:{}]", f.detector()).as_bytes());
        at = f.end;
    }
    out.extend_from_slice(&req.body[at..]);
    Some(Bytes::from(out))
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
    use std::sync::Arc;

    fn inspector(policy: &str) -> PolicyInspector {
        let engine = Arc::new(crate::detect::Engine::bundled().unwrap());
        let ids: Vec<String> = engine.detector_ids().map(String::from).collect();
        let known = crate::policy::Known {
            app: &|_: &str| true,
            detectors: &ids,
        };
        let policy =
            crate::policy::Policy::from_yaml(std::path::Path::new("p.yaml"), policy, &known)
                .unwrap();
        let acks = Arc::new(crate::action::ack::Acks::new(
            crate::action::ack::AckKey::from_bytes(b"0123456789abcdef"),
        ));
        PolicyInspector::new(engine, Arc::new(policy), acks, "http://127.0.0.1:9464")
    }

    fn app() -> App {
        App {
            id: "chatgpt".into(),
            name: "ChatGPT".into(),
            vendor: "OpenAI".into(),
            category: "chat".into(),
            hosts: vec![],
            sanctioned: false,
            inspect: true,
        }
    }

    fn judge(inspector: &PolicyInspector, body: &'static [u8]) -> Inspection {
        let app = app();
        let body = Bytes::from_static(body);
        let (method, uri, headers) = (
            Method::POST,
            Uri::from_static("https://chatgpt.com/"),
            HeaderMap::new(),
        );
        inspector.inspect(&InspectRequest {
            app: &app,
            client: "127.0.0.1".parse().unwrap(),
            method: &method,
            uri: &uri,
            headers: &headers,
            body: &body,
            user: "ann",
            groups: &[],
            incident: "inc1",
        })
    }

    const EMAILS: &[u8] =
        b"{\"content\":\"mail jane.doe@acme-corp.com and bob.smith@acme-corp.com\"}";

    #[test]
    fn findings_are_tallied_and_logged_by_default() {
        let inspection = judge(&inspector("default: log\n"), EMAILS);
        assert_eq!(inspection.verdict.decision(), Decision::Log);
        assert_eq!(inspection.findings.len(), 1, "{:?}", inspection.findings);
        assert_eq!(inspection.findings[0].detector, "pii.email");
        assert_eq!(inspection.findings[0].count, 2);
        let clean = judge(
            &inspector("default: log\n"),
            b"{\"content\":\"capital of France?\"}",
        );
        assert_eq!(clean.verdict.decision(), Decision::Allow);
    }

    #[test]
    fn block_names_detectors_never_values() {
        let inspection = judge(
            &inspector("rules:\n  - {name: pii, when: {detectors: [\"pii.*\"]}, action: block}\n"),
            EMAILS,
        );
        let Verdict::Respond(Decision::Block, response) = inspection.verdict else {
            panic!("not blocked")
        };
        let text = String::from_utf8(response.body().to_vec()).unwrap();
        assert!(text.contains("pii.email"), "{text}");
        assert!(text.contains("inc1"), "{text}");
        assert!(!text.contains("jane.doe"), "{text}");
        assert_eq!(inspection.rule.as_deref(), Some("pii"));
    }

    #[test]
    fn redact_masks_spans() {
        let inspection = judge(
            &inspector(
                "rules:\n  - {name: mask, when: {detectors: [\"pii.*\"]}, action: redact}\n",
            ),
            EMAILS,
        );
        let Verdict::Rewrite(Decision::Redact, body) = inspection.verdict else {
            panic!("not redacted")
        };
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(
            text,
            "{\"content\":\"mail [REDACTED:pii.email] and [REDACTED:pii.email]\"}"
        );
    }

    #[test]
    fn acknowledged_coach_passes_as_log() {
        let inspector =
            inspector("rules:\n  - {name: nudge, when: {detectors: [\"pii.*\"]}, action: coach}\n");
        let first = judge(&inspector, EMAILS);
        let Verdict::Respond(Decision::Coach, response) = first.verdict else {
            panic!("not coached")
        };
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        let token = message
            .split("/ack/")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let claim = inspector.acks.key.verify(token).unwrap();
        assert_eq!(
            (claim.user.as_str(), claim.app.as_str()),
            ("ann", "chatgpt")
        );
        inspector.acks.grants.grant(&claim);
        let again = judge(&inspector, EMAILS);
        assert_eq!(again.verdict.decision(), Decision::Log);
        assert_eq!(again.rule.as_deref(), Some("nudge (acknowledged)"));
    }
}
