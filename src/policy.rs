//! Policy: who may send what to which AI app. An ordered list of rules,
//! first match wins, else the default action.
//!
//! ```yaml
//! default: log
//! coach: {ack_ttl: 8h}
//! rules:
//!   - name: no credentials to any AI tool
//!     when: {detectors: ["secret.*"]}
//!     action: block
//!   - name: nudge shadow AI towards the sanctioned tool
//!     when: {apps: {sanctioned: false}}
//!     action: coach
//!     message: "{app} is not approved for company data."
//! ```
//!
//! `when` keys (all optional, all must hold): `apps` (`ids`, `categories`,
//! `vendors`, `sanctioned`), `users`, `groups`, `detectors` (ids or
//! `family.*`), `min_severity`, `min_count`, `min_bytes`. Without
//! `detectors` a rule matches requests with or without findings; with it,
//! only requests with a matching finding.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::catalog::App;
use crate::detect::Severity;
use crate::diag::{Problem, Problems, Source};
use crate::inspect::Decision;

/// The bundled default policy.
pub const BUNDLED_POLICY: &str = include_str!("../rules/policy.yaml");

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Log,
    Coach,
    Redact,
    Block,
}

impl Action {
    pub fn decision(self) -> Decision {
        match self {
            Action::Allow => Decision::Allow,
            Action::Log => Decision::Log,
            Action::Coach => Decision::Coach,
            Action::Redact => Decision::Redact,
            Action::Block => Decision::Block,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_action")]
    default: Action,
    #[serde(default)]
    coach: CoachSettings,
    #[serde(default)]
    rules: Vec<Rule>,
}

fn default_action() -> Action {
    Action::Log
}

/// Coaching settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoachSettings {
    /// How long an acknowledgement allows the same user × app × detector family. Default 8h.
    #[serde(deserialize_with = "duration")]
    pub ack_ttl: Duration,
    /// Base URL of the acknowledgement links. Default `http://<admin_listen>`.
    pub public_url: Option<String>,
    /// Organisation name shown on the coaching page. Default "lantern".
    pub brand: String,
    /// Where people can get help (shown on the coaching page).
    pub help_url: Option<String>,
}

impl Default for CoachSettings {
    fn default() -> Self {
        CoachSettings {
            ack_ttl: Duration::from_secs(8 * 3600),
            public_url: None,
            brand: "lantern".into(),
            help_url: None,
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
}

/// One rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub when: When,
    pub action: Action,
    /// Message template: `{app}`, `{detectors}`, `{incident}`, `{ack_link}`.
    pub message: Option<String>,
}

/// Conditions of a rule; every present one must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct When {
    pub apps: Option<AppMatch>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub detectors: Vec<String>,
    pub min_severity: Option<Severity>,
    pub min_count: Option<u32>,
    pub min_bytes: Option<u64>,
}

/// Which apps a rule applies to; every present key must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppMatch {
    pub ids: Vec<String>,
    pub categories: Vec<String>,
    pub vendors: Vec<String>,
    pub sanctioned: Option<bool>,
}

impl AppMatch {
    fn matches(&self, app: &App) -> bool {
        (self.ids.is_empty() || self.ids.contains(&app.id))
            && (self.categories.is_empty() || self.categories.contains(&app.category))
            && (self.vendors.is_empty()
                || self
                    .vendors
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(&app.vendor)))
            && self.sanctioned.is_none_or(|s| s == app.sanctioned)
    }
}

/// One detector's findings in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub detector: &'a str,
    pub severity: Severity,
    pub count: u32,
}

/// What the policy is asked about.
#[derive(Debug)]
pub struct Subject<'a> {
    pub app: &'a App,
    pub user: &'a str,
    pub groups: &'a [String],
    pub findings: &'a [Found<'a>],
    pub req_bytes: u64,
}

/// The policy's answer.
#[derive(Debug)]
pub struct Ruling<'p, 'a> {
    pub action: Action,
    /// The matching rule; `None` for the default.
    pub rule: Option<&'p Rule>,
    /// The findings that made the rule match (all findings for rules
    /// without `detectors`).
    pub matched: Vec<&'a Found<'a>>,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub default: Action,
    pub coach: CoachSettings,
    pub rules: Vec<Rule>,
}

impl Policy {
    /// The bundled policy.
    pub fn bundled(known: &Known<'_>) -> Result<Policy, Problems> {
        Policy::from_yaml(
            Path::new("<bundled>/rules/policy.yaml"),
            BUNDLED_POLICY,
            known,
        )
    }

    /// The policy at `path`, or the bundled one.
    pub fn load(path: Option<&Path>, known: &Known<'_>) -> Result<Policy, Problems> {
        let Some(path) = path else {
            return Policy::bundled(known);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_path_buf(),
                line: 1,
                col: 1,
                message: format!("cannot read policy: {e}"),
            }])
        })?;
        Policy::from_yaml(path, &text, known)
    }

    /// Parses and validates policy text: unknown app ids and detectors are
    /// errors, so a typo cannot silently disable a rule.
    pub fn from_yaml(path: &Path, text: &str, known: &Known<'_>) -> Result<Policy, Problems> {
        let src = Source { file: path, text };
        let file: File =
            serde_yaml::from_str(text).map_err(|e| Problems(vec![src.yaml_error(&e)]))?;
        let mut problems = Vec::new();
        for rule in &file.rules {
            let place = |needle: &str, message: String| {
                // The first mention after the rule's name.
                let start = text.find(&format!("name: {}", rule.name)).unwrap_or(0);
                let offset = text[start..].find(needle).map_or(start, |o| start + o);
                let line = text[..offset].matches('\n').count() + 1;
                let col = offset - text[..offset].rfind('\n').map_or(0, |n| n + 1) + 1;
                src.at(line, col, message)
            };
            for id in rule.when.apps.iter().flat_map(|a| &a.ids) {
                if !(known.app)(id) {
                    problems.push(place(
                        id,
                        format!("rule {:?}: unknown app id {id:?}", rule.name),
                    ));
                }
            }
            for pattern in &rule.when.detectors {
                if !detector_pattern_known(pattern, known.detectors) {
                    problems.push(place(
                        pattern,
                        format!(
                            "rule {:?}: unknown detector {pattern:?} (use an id or family.*)",
                            rule.name
                        ),
                    ));
                }
            }
            if let Some(message) = &rule.message {
                if let Some(bad) = unknown_placeholder(message) {
                    problems.push(place(
                        "message",
                        format!("rule {:?}: unknown placeholder {{{bad}}} (use app, detectors, incident, ack_link)", rule.name),
                    ));
                }
            }
        }
        if let Some(url) = &file.coach.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(src.at_key(
                    &["coach", "public_url"],
                    "coach.public_url must start with http:// or https://",
                ));
            }
        }
        if problems.is_empty() {
            Ok(Policy {
                default: file.default,
                coach: file.coach,
                rules: file.rules,
            })
        } else {
            Err(Problems(problems))
        }
    }

    /// The first rule that matches, else the default action.
    pub fn evaluate<'p, 'a>(&'p self, subject: &'a Subject<'a>) -> Ruling<'p, 'a> {
        for rule in &self.rules {
            if let Some(matched) = rule.matches(subject) {
                return Ruling {
                    action: rule.action,
                    rule: Some(rule),
                    matched,
                };
            }
        }
        Ruling {
            action: if subject.findings.is_empty() && self.default == Action::Log {
                Action::Allow
            } else {
                self.default
            },
            rule: None,
            matched: subject.findings.iter().collect(),
        }
    }

    /// True when some rule could act on `app` without looking at the body
    /// (no detector condition): used to block or coach blind tunnels.
    pub fn app_level_action(
        &self,
        app: &App,
        user: &str,
        groups: &[String],
    ) -> Option<(Action, &Rule)> {
        let subject = Subject {
            app,
            user,
            groups,
            findings: &[],
            req_bytes: 0,
        };
        self.rules
            .iter()
            .filter(|r| {
                r.when.detectors.is_empty()
                    && r.when.min_count.is_none()
                    && r.when.min_bytes.is_none()
            })
            .find(|r| r.matches(&subject).is_some())
            .map(|r| (r.action, r))
    }
}

impl Rule {
    /// The findings that satisfy the rule, or `None` if it does not match.
    fn matches<'a>(&self, s: &'a Subject<'a>) -> Option<Vec<&'a Found<'a>>> {
        let w = &self.when;
        if !w.apps.as_ref().is_none_or(|a| a.matches(s.app)) {
            return None;
        }
        if !w.users.is_empty() && !w.users.iter().any(|u| u == s.user) {
            return None;
        }
        if !w.groups.is_empty() && !w.groups.iter().any(|g| s.groups.contains(g)) {
            return None;
        }
        if w.min_bytes.is_some_and(|min| s.req_bytes < min) {
            return None;
        }
        let matched: Vec<&Found<'_>> = s
            .findings
            .iter()
            .filter(|f| {
                w.detectors.is_empty()
                    || w.detectors.iter().any(|p| detector_matches(p, f.detector))
            })
            .filter(|f| w.min_severity.is_none_or(|min| f.severity >= min))
            .collect();
        let needs_findings =
            !w.detectors.is_empty() || w.min_severity.is_some() || w.min_count.is_some();
        if needs_findings && matched.is_empty() {
            return None;
        }
        let total: u32 = matched.iter().map(|f| f.count).sum();
        if w.min_count.is_some_and(|min| total < min) {
            return None;
        }
        Some(matched)
    }
}

/// `secret.*` matches every `secret.` detector; anything else is an exact id.
pub fn detector_matches(pattern: &str, detector: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(family) => detector
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == detector || pattern == "*",
    }
}

/// The family of a detector id: `secret.aws_access_key` → `secret`.
pub fn family(detector: &str) -> &str {
    detector.split('.').next().unwrap_or(detector)
}

/// What exists, for validating references in a policy.
pub struct Known<'a> {
    pub app: &'a dyn Fn(&str) -> bool,
    pub detectors: &'a [String],
}

fn detector_pattern_known(pattern: &str, detectors: &[String]) -> bool {
    pattern == "*" || detectors.iter().any(|d| detector_matches(pattern, d))
}

fn unknown_placeholder(template: &str) -> Option<String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let name = &after[..close];
        if !matches!(name, "app" | "detectors" | "incident" | "ack_link") {
            return Some(name.to_string());
        }
        rest = &after[close + 1..];
    }
    None
}

/// Fills a message template.
pub fn render(
    template: &str,
    app: &str,
    detectors: &str,
    incident: &str,
    ack_link: &str,
) -> String {
    template
        .replace("{app}", app)
        .replace("{detectors}", detectors)
        .replace("{incident}", incident)
        .replace("{ack_link}", ack_link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, category: &str, sanctioned: bool) -> App {
        App {
            id: id.into(),
            name: id.into(),
            vendor: "V".into(),
            category: category.into(),
            hosts: vec![],
            sanctioned,
            inspect: true,
        }
    }

    fn known_detectors() -> Vec<String> {
        [
            "secret.aws_access_key",
            "secret.jwt",
            "pii.email",
            "pii.credit_card",
        ]
        .map(String::from)
        .to_vec()
    }

    fn policy(yaml: &str) -> Result<Policy, Problems> {
        let detectors = known_detectors();
        let known = Known {
            app: &|id: &str| ["chatgpt", "chatgpt-enterprise", "midjourney"].contains(&id),
            detectors: &detectors,
        };
        Policy::from_yaml(Path::new("policy.yaml"), yaml, &known)
    }

    const POLICY: &str = r#"
default: log
rules:
  - name: no credentials
    when: {detectors: ["secret.*"]}
    action: block
  - name: finance cards
    when: {groups: [finance], apps: {ids: [chatgpt-enterprise]}, detectors: [pii.credit_card]}
    action: log
  - name: mask pii for sanctioned
    when: {apps: {sanctioned: true}, detectors: ["pii.*"]}
    action: redact
  - name: no image generators
    when: {apps: {categories: [image], sanctioned: false}}
    action: block
  - name: many emails
    when: {detectors: [pii.email], min_count: 3}
    action: coach
"#;

    fn found(detector: &str, count: u32) -> Found<'_> {
        Found {
            detector,
            severity: Severity::High,
            count,
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let p = policy(POLICY).unwrap();
        let chatgpt = app("chatgpt", "chat", false);
        let enterprise = app("chatgpt-enterprise", "chat", true);
        let findings = [found("secret.aws_access_key", 1), found("pii.email", 1)];
        let s = Subject {
            app: &chatgpt,
            user: "ann",
            groups: &[],
            findings: &findings,
            req_bytes: 10,
        };
        let r = p.evaluate(&s);
        assert_eq!(r.action, Action::Block);
        assert_eq!(r.rule.unwrap().name, "no credentials");
        assert_eq!(r.matched, vec![&findings[0]]);

        let cards = [found("pii.credit_card", 1)];
        let finance = vec!["finance".to_string()];
        let s = Subject {
            app: &enterprise,
            user: "bo",
            groups: &finance,
            findings: &cards,
            req_bytes: 10,
        };
        assert_eq!(p.evaluate(&s).action, Action::Log);
        let s = Subject {
            app: &enterprise,
            user: "bo",
            groups: &[],
            findings: &cards,
            req_bytes: 10,
        };
        assert_eq!(p.evaluate(&s).action, Action::Redact);
    }

    #[test]
    fn app_level_rules_match_without_findings() {
        let p = policy(POLICY).unwrap();
        let mj = app("midjourney", "image", false);
        let s = Subject {
            app: &mj,
            user: "ann",
            groups: &[],
            findings: &[],
            req_bytes: 0,
        };
        assert_eq!(p.evaluate(&s).action, Action::Block);
        assert_eq!(
            p.app_level_action(&mj, "ann", &[]).unwrap().0,
            Action::Block
        );
        assert!(p
            .app_level_action(&app("chatgpt", "chat", false), "ann", &[])
            .is_none());
    }

    #[test]
    fn min_count_and_default() {
        let p = policy(POLICY).unwrap();
        let chatgpt = app("chatgpt", "chat", false);
        let two = [found("pii.email", 2)];
        let s = Subject {
            app: &chatgpt,
            user: "ann",
            groups: &[],
            findings: &two,
            req_bytes: 0,
        };
        let r = p.evaluate(&s);
        assert_eq!(r.action, Action::Log);
        assert!(r.rule.is_none());
        let three = [found("pii.email", 3)];
        let s = Subject {
            app: &chatgpt,
            user: "ann",
            groups: &[],
            findings: &three,
            req_bytes: 0,
        };
        assert_eq!(p.evaluate(&s).action, Action::Coach);
        let s = Subject {
            app: &chatgpt,
            user: "ann",
            groups: &[],
            findings: &[],
            req_bytes: 0,
        };
        assert_eq!(
            p.evaluate(&s).action,
            Action::Allow,
            "log without findings is plain allow"
        );
    }

    #[test]
    fn unknown_references_are_located_errors() {
        let err = policy("rules:\n  - name: typo\n    when: {apps: {ids: [chatgtp]}, detectors: [\"secrets.*\"]}\n    action: block\n    message: \"{ap} not allowed\"\n").unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 3, "{text}");
        assert!(
            text.contains("policy.yaml:3:") && text.contains("unknown app id \"chatgtp\""),
            "{text}"
        );
        assert!(text.contains("unknown detector \"secrets.*\""), "{text}");
        assert!(
            text.contains("policy.yaml:5:") && text.contains("{ap}"),
            "{text}"
        );
        let err = policy("rules:\n  - name: x\n    action: maybe\n").unwrap_err();
        assert!(err.to_string().starts_with("policy.yaml:3:"), "{err}");
    }

    #[test]
    fn detector_patterns() {
        assert!(detector_matches("secret.*", "secret.jwt"));
        assert!(!detector_matches("secret.*", "secretive.x"));
        assert!(detector_matches("pii.email", "pii.email"));
        assert!(!detector_matches("pii.email", "pii.emails"));
        assert_eq!(family("pii.email"), "pii");
    }

    #[test]
    fn renders_templates() {
        assert_eq!(
            render(
                "{app}: {detectors} ({incident}) {ack_link}",
                "ChatGPT",
                "pii.email",
                "abc",
                "http://x/ack/t"
            ),
            "ChatGPT: pii.email (abc) http://x/ack/t"
        );
    }
}
