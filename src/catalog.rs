//! The AI app catalog (`rules/apps.yaml`): which hosts belong to which AI
//! app, whether the app is sanctioned, and whether lantern intercepts it.
//!
//! Lookups are on every connection, so the catalog compiles host patterns
//! into hash maps: exact hosts, `*.suffix` wildcards (any depth, not the
//! apex), and a regex set for the rare pattern with `*` inside
//! (`bedrock-runtime.*.amazonaws.com`, one label).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use regex::RegexSet;
use serde::Deserialize;

use crate::diag::{Problem, Problems, Source};

/// The bundled catalog, compiled into the binary.
pub const BUNDLED_APPS: &str = include_str!("../rules/apps.yaml");

/// One AI app.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Stable lowercase id used in policy, metric labels and audit.
    pub id: String,
    /// Display name.
    pub name: String,
    pub vendor: String,
    /// chat, api, coding, image, writing, search, agent, …
    pub category: String,
    /// Exact hostnames or wildcard patterns.
    pub hosts: Vec<String>,
    /// Approved by the organisation.
    #[serde(default)]
    pub sanctioned: bool,
    /// Intercept TLS and read prompts (false: discover only, blind tunnel).
    #[serde(default)]
    pub inspect: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    apps: Vec<App>,
}

/// A compiled catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    apps: Vec<Arc<App>>,
    exact: HashMap<String, usize>,
    suffix: HashMap<String, usize>,
    inner: Option<(RegexSet, Vec<usize>)>,
}

impl Catalog {
    /// The catalog compiled into the binary.
    pub fn bundled() -> Result<Catalog, Problems> {
        Catalog::from_yaml(Path::new("<bundled>/rules/apps.yaml"), BUNDLED_APPS)
    }

    /// `apps.yaml` in `rules_dir`, or the bundled catalog without one.
    pub fn load(rules_dir: Option<&Path>) -> Result<Catalog, Problems> {
        let Some(dir) = rules_dir else {
            return Catalog::bundled();
        };
        let path = dir.join("apps.yaml");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Problems(vec![Problem {
                file: path.clone(),
                line: 1,
                col: 1,
                message: format!("cannot read catalog: {e}"),
            }])
        })?;
        Catalog::from_yaml(&path, &text)
    }

    /// Parses and compiles catalog text; every problem is reported at once.
    pub fn from_yaml(path: &Path, text: &str) -> Result<Catalog, Problems> {
        let src = Source { file: path, text };
        let file: File =
            serde_yaml::from_str(text).map_err(|e| Problems(vec![src.yaml_error(&e)]))?;
        let mut problems = Vec::new();
        let mut catalog = Catalog::default();
        let mut ids = HashSet::new();
        let mut owners: HashMap<String, String> = HashMap::new();
        let mut inner_patterns = Vec::new();
        let mut inner_owners = Vec::new();
        for app in file.apps {
            let id_needle = format!("id: {}", app.id);
            if !ids.insert(app.id.clone()) {
                problems.push(src.at_nth(&id_needle, 1, format!("duplicate app id {:?}", app.id)));
            }
            if app.id.is_empty()
                || !app
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                problems.push(src.at_nth(
                    &id_needle,
                    0,
                    format!(
                        "app id {:?} must be lowercase letters, digits and '-'",
                        app.id
                    ),
                ));
            }
            if app.hosts.is_empty() {
                problems.push(src.at_nth(&id_needle, 0, format!("app {:?} has no hosts", app.id)));
            }
            let index = catalog.apps.len();
            for raw in &app.hosts {
                let pattern = raw.trim().trim_end_matches('.').to_ascii_lowercase();
                if let Some(other) = owners.insert(pattern.clone(), app.id.clone()) {
                    problems.push(src.at_nth(
                        raw,
                        1,
                        format!(
                            "host {raw:?} of app {:?} is already listed for app {other:?}",
                            app.id
                        ),
                    ));
                }
                match classify(&pattern) {
                    Some(Pattern::Exact) => {
                        catalog.exact.insert(pattern, index);
                    }
                    Some(Pattern::Suffix(s)) => {
                        catalog.suffix.insert(s.to_string(), index);
                    }
                    Some(Pattern::Inner) => {
                        let re = pattern
                            .split('.')
                            .map(|label| {
                                if label == "*" {
                                    "[a-z0-9-]+".to_string()
                                } else {
                                    regex::escape(label)
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(r"\.");
                        inner_patterns.push(format!("^{re}$"));
                        inner_owners.push(index);
                    }
                    None => problems.push(src.at_nth(
                        raw,
                        0,
                        format!("host pattern {raw:?} is invalid: use a hostname, *.domain, or a whole '*' label"),
                    )),
                }
            }
            catalog.apps.push(Arc::new(app));
        }
        if !inner_patterns.is_empty() {
            match RegexSet::new(&inner_patterns) {
                Ok(set) => catalog.inner = Some((set, inner_owners)),
                Err(e) => problems.push(src.at(1, 1, format!("host patterns: {e}"))),
            }
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(Problems(problems))
        }
    }

    /// The app a host belongs to, if any. `host` may carry a port, brackets,
    /// a trailing dot or upper case.
    pub fn lookup(&self, host: &str) -> Option<&Arc<App>> {
        let host = normalize_host(host);
        if let Some(&i) = self.exact.get(host.as_ref()) {
            return Some(&self.apps[i]);
        }
        let mut rest: &str = host.as_ref();
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(&i) = self.suffix.get(rest) {
                return Some(&self.apps[i]);
            }
        }
        let (set, owners) = self.inner.as_ref()?;
        let first = set.matches(host.as_ref()).into_iter().next()?;
        Some(&self.apps[owners[first]])
    }

    /// Every app, in file order.
    pub fn apps(&self) -> &[Arc<App>] {
        &self.apps
    }
}

enum Pattern<'a> {
    Exact,
    Suffix(&'a str),
    Inner,
}

fn classify(pattern: &str) -> Option<Pattern<'_>> {
    let valid_label = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if let Some(rest) = pattern.strip_prefix("*.") {
        return (rest.contains('.') && rest.split('.').all(valid_label))
            .then_some(Pattern::Suffix(rest));
    }
    let labels: Vec<&str> = pattern.split('.').collect();
    if labels.len() < 2 {
        return None;
    }
    if labels.iter().all(|l| valid_label(l)) {
        return Some(Pattern::Exact);
    }
    labels
        .iter()
        .all(|l| *l == "*" || valid_label(l))
        .then_some(Pattern::Inner)
}

/// Lowercases and strips port, IPv6 brackets and a trailing dot.
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apps:
  - id: chatgpt
    name: ChatGPT
    vendor: OpenAI
    category: chat
    hosts: [chatgpt.com, "*.chatgpt.com"]
    inspect: true
  - id: bedrock
    name: Bedrock
    vendor: AWS
    category: api
    hosts: ["bedrock-runtime.*.amazonaws.com"]
"#;

    fn catalog() -> Catalog {
        Catalog::from_yaml(Path::new("apps.yaml"), YAML).unwrap()
    }

    #[test]
    fn exact_wildcard_and_inner_patterns() {
        let c = catalog();
        assert_eq!(c.lookup("chatgpt.com").unwrap().id, "chatgpt");
        assert_eq!(c.lookup("CHATGPT.com.:443").unwrap().id, "chatgpt");
        assert_eq!(c.lookup("ab.cdn.chatgpt.com").unwrap().id, "chatgpt");
        assert!(c.lookup("notchatgpt.com").is_none());
        assert_eq!(
            c.lookup("bedrock-runtime.us-east-1.amazonaws.com")
                .unwrap()
                .id,
            "bedrock"
        );
        assert!(c.lookup("bedrock-runtime.a.b.amazonaws.com").is_none());
        assert!(c.lookup("s3.amazonaws.com").is_none());
        assert!(c.lookup("[::1]:443").is_none());
    }

    #[test]
    fn duplicates_and_bad_patterns_are_located() {
        let yaml = "apps:\n  - {id: a, name: A, vendor: V, category: chat, hosts: [x.com]}\n  - {id: a, name: B, vendor: V, category: chat, hosts: [x.com, \"*\"]}\n";
        let err = Catalog::from_yaml(Path::new("apps.yaml"), yaml).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("apps.yaml:3:"), "{text}");
        assert!(text.contains("duplicate app id"), "{text}");
        assert!(text.contains("already listed"), "{text}");
        assert!(text.contains("is invalid"), "{text}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let yaml = "apps:\n  - {id: a, name: A, vendor: V, category: chat, hosts: [x.com], inspekt: true}\n";
        let err = Catalog::from_yaml(Path::new("apps.yaml"), yaml).unwrap_err();
        assert!(err.to_string().contains("unknown field `inspekt`"), "{err}");
    }

    #[test]
    fn bundled_catalog_compiles_and_covers_the_majors() {
        let c = Catalog::bundled().unwrap();
        assert!(c.apps().len() >= 60, "{} apps", c.apps().len());
        for host in [
            "api.openai.com",
            "chatgpt.com",
            "api.anthropic.com",
            "claude.ai",
            "generativelanguage.googleapis.com",
            "gemini.google.com",
        ] {
            let app = c
                .lookup(host)
                .unwrap_or_else(|| panic!("{host} not in catalog"));
            assert!(app.inspect, "{host} must be inspected by default");
        }
        assert!(c.lookup("myres.openai.azure.com").is_some());
        assert!(c
            .lookup("bedrock-runtime.eu-west-1.amazonaws.com")
            .is_some());
        assert!(c.lookup("example.com").is_none());
    }
}
