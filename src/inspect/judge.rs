//! The judge behind the seam: extraction (what the person typed) →
//! detection (what is sensitive in it) → policy (what to do) → action (the
//! response, or the rewritten body).

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::debug;

use super::{Decision, InspectRequest, Inspection, Inspector, Verdict};
use crate::action::ack::{unix_now, Acks, Claim};
use crate::action::{respond, Notice, Shape};
use crate::audit::FindingCount;
use crate::catalog::App;
use crate::config::FailMode;
use crate::detect::{Engine, Finding, Severity};
use crate::extract::{self, Extracted, Redaction, Role};
use crate::policy::{family, render, Action, Found, Policy, Ruling, Subject};

const BLOCK_MESSAGE: &str = "lantern blocked this request to {app}: it contains {detectors}. Remove them and try again. Incident {incident}.";
const COACH_MESSAGE: &str = "lantern: this request to {app} contains {detectors}. If you need to send it, give a reason at {ack_link} and then retry. Incident {incident}.";
const UNINSPECTABLE_MESSAGE: &str = "lantern could not inspect this request to {app} (body too large or undecodable) and did not send it. Incident {incident}.";

/// Detection, policy and actions, compiled once per reload.
pub struct PolicyInspector {
    engine: Arc<Engine>,
    policy: Arc<Policy>,
    acks: Arc<Acks>,
    /// Base of acknowledgement links, e.g. `http://127.0.0.1:9464`.
    ack_base: String,
    limits: extract::Limits,
    /// What to do with a body extraction cannot read (zip bomb, garbage).
    on_uninspectable: FailMode,
}

/// One finding located in one extracted segment.
struct Located {
    segment: usize,
    finding: Finding,
}

impl PolicyInspector {
    pub fn new(
        engine: Arc<Engine>,
        policy: Arc<Policy>,
        acks: Arc<Acks>,
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
            limits: extract::Limits::default(),
            on_uninspectable: FailMode::Closed,
        }
    }

    /// Takes the decompression bound (`max_body_bytes`) and the fail mode
    /// for bodies that cannot be read (`on_oversize`) from `inspect`.
    pub fn with_limits(mut self, inspect: &crate::config::InspectConfig) -> Self {
        self.limits.max_decoded_bytes = inspect.max_body_bytes;
        self.on_uninspectable = inspect.on_oversize;
        self
    }

    /// App-level `block` rules apply to discover-only apps at CONNECT time.
    pub fn app_block(&self, app: &App, user: &str, groups: &[String]) -> Option<(String, String)> {
        let (action, rule) = self.policy.app_level_action(app, user, groups)?;
        (action == Action::Block).then(|| {
            let template = rule
                .message
                .as_deref()
                .unwrap_or("lantern: {app} is not allowed here. Incident {incident}.");
            let incident = crate::audit::incident_id();
            (
                rule.name.clone(),
                render(template, &app.name, "", &incident, ""),
            )
        })
    }

    /// Extracts the prompt and scans every segment the person wrote or
    /// attached (model replies in the history are skipped).
    fn scan(
        &self,
        req: &InspectRequest<'_>,
    ) -> Result<(Option<Extracted>, Vec<Located>), extract::Error> {
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let host = req.uri.host().unwrap_or("");
        let request = extract::Request {
            host,
            method: req.method,
            path,
            headers: req.headers,
            body: req.body,
        };
        let extracted = extract::extract(&request, &self.limits)?;
        debug!(
            provider = extracted.provider,
            endpoint = extracted.endpoint,
            segments = extracted.segments.len(),
            "extracted"
        );
        let mut located = Vec::new();
        for (segment, seg) in extracted.segments.iter().enumerate() {
            if seg.role == Role::Assistant {
                continue;
            }
            located.extend(
                self.engine
                    .scan(seg.text.as_bytes())
                    .into_iter()
                    .map(|finding| Located { segment, finding }),
            );
        }
        Ok((Some(extracted), located))
    }
}

impl Inspector for PolicyInspector {
    fn inspect(&self, req: &InspectRequest<'_>) -> Inspection {
        let (extracted, located) = match self.scan(req) {
            Ok(scanned) => scanned,
            Err(e) => return self.uninspectable(req, &e),
        };
        let findings: Vec<&Finding> = located.iter().map(|l| &l.finding).collect();
        let counts = tally(findings.iter().copied());
        let found: Vec<Found<'_>> = counts
            .iter()
            .map(|c| Found {
                detector: &c.detector,
                severity: Severity::parse(&c.severity).unwrap_or(Severity::Low),
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
            Action::Redact => {
                let redactions: Vec<Redaction<'_>> = located
                    .iter()
                    .filter(|l| {
                        ruling
                            .matched
                            .iter()
                            .any(|m| m.detector == l.finding.detector())
                    })
                    .map(|l| Redaction {
                        segment: l.segment,
                        start: l.finding.start,
                        end: l.finding.end,
                        detector: l.finding.detector(),
                    })
                    .collect();
                match extracted.as_ref().map(|e| e.rewrite(&redactions)) {
                    Some(Ok(rewritten)) => {
                        Verdict::Rewrite(decision, rewritten.body, rewritten.content_encoding)
                    }
                    // A body that cannot be rewritten safely is stopped instead.
                    _ => self.notice(req, Decision::Block, &ruling, &families, BLOCK_MESSAGE),
                }
            }
            Action::Coach => self.notice(req, decision, &ruling, &families, COACH_MESSAGE),
            Action::Block => self.notice(req, decision, &ruling, &families, BLOCK_MESSAGE),
        };
        Inspection {
            verdict,
            findings: counts,
            rule,
            endpoint: extracted.as_ref().map(|e| (e.provider, e.endpoint)),
            unreadable: false,
        }
    }

    fn refuse_tunnel(&self, app: &App, user: &str, groups: &[String]) -> Option<(String, String)> {
        self.app_block(app, user, groups)
    }
}

impl PolicyInspector {
    /// A body extraction could not read: forwarded or refused per the fail mode.
    fn uninspectable(&self, req: &InspectRequest<'_>, error: &extract::Error) -> Inspection {
        tracing::warn!(app = %req.app.id, %error, "request body could not be inspected");
        let rule = Some(format!("uninspectable: {error}"));
        let verdict = match self.on_uninspectable {
            FailMode::Open => Verdict::Forward(Decision::Log),
            FailMode::Closed => {
                let message = render(UNINSPECTABLE_MESSAGE, &req.app.name, "", req.incident, "");
                let notice = Notice {
                    brand: &self.policy.coach.brand,
                    app: &req.app.name,
                    message,
                    detectors: &[],
                    incident: req.incident,
                    ack_link: None,
                    help_url: self.policy.coach.help_url.as_deref(),
                };
                let shape = Shape::for_request(req.app, req.headers);
                Verdict::Respond(Decision::Block, respond(Decision::Block, shape, &notice))
            }
        };
        Inspection {
            verdict,
            findings: Vec::new(),
            rule,
            endpoint: None,
            unreadable: true,
        }
    }

    /// A block or coach response in the client's format.
    fn notice(
        &self,
        req: &InspectRequest<'_>,
        decision: Decision,
        ruling: &Ruling<'_, '_>,
        families: &[&str],
        default_template: &str,
    ) -> Verdict {
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
                expires: unix_now() + ttl.max(3600),
                ttl,
            });
            format!("{}/ack/{token}", self.ack_base)
        });
        let template = ruling
            .rule
            .and_then(|r| r.message.as_deref())
            .unwrap_or(default_template);
        let shape = Shape::for_request(req.app, req.headers);
        // A page shows the link as a button; the text need not spell it out.
        let link_text = match shape {
            Shape::Html => "the link below",
            _ => ack_link.as_deref().unwrap_or(""),
        };
        let notice = Notice {
            brand: &self.policy.coach.brand,
            app: &req.app.name,
            message: render(template, &req.app.name, &names, req.incident, link_text),
            detectors: &detectors,
            incident: req.incident,
            ack_link: ack_link.as_deref(),
            help_url: self.policy.coach.help_url.as_deref(),
        };
        Verdict::Respond(decision, respond(decision, shape, &notice))
    }
}

/// Findings grouped by detector: count and highest severity, by detector id.
pub fn tally<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> Vec<FindingCount> {
    let mut by_detector: BTreeMap<&str, (Severity, u32)> = BTreeMap::new();
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
    use crate::catalog::App;
    use bytes::Bytes;
    use http::{HeaderMap, Method, Uri};
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
        let Verdict::Rewrite(Decision::Redact, body, _) = inspection.verdict else {
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
