//! The rule file format (`rules/detectors/*.yaml`, documented in
//! `rules/detectors/README.md`): what the user wrote, decoded from YAML with
//! the position of every key so that every problem is reported at once as
//! `file:line:col: message`.

use std::fmt;

use super::mask::MaskStyle;
use super::validate::{self, Validator};
use super::yaml::{self, Node, Pos, Value};
use super::Severity;

/// A problem in a rule file, with the position of the offending key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Largest `before`/`after` window a pattern may ask for, in bytes.
pub const MAX_WINDOW: usize = 16 * 1024;

/// One detector as written in a rule file.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub file: String,
    pub id: String,
    pub id_pos: Pos,
    pub description: String,
    pub severity: Severity,
    pub patterns: Vec<PatternSpec>,
    pub validate: Vec<Validator>,
    pub context: ContextSpec,
    pub allow_values: Vec<String>,
    pub allow_contains: Vec<String>,
    pub mask: MaskStyle,
    pub min_matches: usize,
    pub dictionary: Option<DictionarySpec>,
}

/// How to find candidates for a detector and confirm them with a regex.
#[derive(Debug, Clone, Default)]
pub struct PatternSpec {
    pub pos: Pos,
    /// Literals fed to the shared aho-corasick automaton.
    pub keywords: Vec<String>,
    pub case_insensitive: bool,
    /// Built-in anchors (`digits`) for values without a literal.
    pub digits: bool,
    pub regex: String,
    pub regex_pos: Pos,
    /// Bytes of haystack before the candidate that the regex may need.
    pub before: usize,
    /// Bytes after the candidate.
    pub after: usize,
    /// For digit anchors: the digit cluster must have at least this many
    /// digits, dots and colons, or the regex is not run.
    pub min_digits: usize,
    pub min_dots: usize,
    pub min_colons: usize,
}

/// Words near a value that must (or must not) appear.
#[derive(Debug, Clone, Default)]
pub struct ContextSpec {
    pub window: usize,
    pub require: Vec<String>,
    pub exclude: Vec<String>,
}

/// A word list matched as literals (`confidential.keyword`).
#[derive(Debug, Clone)]
pub struct DictionarySpec {
    pub file: String,
    pub pos: Pos,
    pub case_insensitive: bool,
    pub whole_word: bool,
}

/// Collects errors for one file.
pub struct Decoder<'a> {
    file: &'a str,
    pub errors: Vec<RuleError>,
}

const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "severity",
    "keywords",
    "anchors",
    "case_insensitive",
    "regex",
    "window",
    "min_digits",
    "min_dots",
    "min_colons",
    "patterns",
    "validate",
    "context",
    "allow",
    "mask",
    "min_matches",
    "dictionary",
];
const PATTERN_KEYS: &[&str] = &[
    "keywords",
    "anchors",
    "case_insensitive",
    "regex",
    "window",
    "min_digits",
    "min_dots",
    "min_colons",
];

impl<'a> Decoder<'a> {
    pub fn new(file: &'a str) -> Self {
        Decoder {
            file,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(RuleError {
            file: self.file.to_string(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        });
    }

    /// Parses one rule file into its rules; problems go to `self.errors`.
    pub fn file(&mut self, src: &str) -> Vec<RuleSpec> {
        let root = match yaml::parse(src) {
            Ok(Some(root)) => root,
            Ok(None) => return Vec::new(),
            Err((pos, msg)) => {
                self.error(pos, format!("invalid YAML: {msg}"));
                return Vec::new();
            }
        };
        let mut rules = Vec::new();
        for (key, value) in self.map(&root, &["detectors"]) {
            if key == "detectors" {
                for item in self.seq(value) {
                    if let Some(rule) = self.rule(item) {
                        rules.push(rule);
                    }
                }
            }
        }
        rules
    }

    /// The pairs of a mapping, reporting unknown keys.
    fn map<'n>(&mut self, node: &'n Node, allowed: &[&str]) -> Vec<(&'n str, &'n Node)> {
        let Value::Map(pairs) = &node.value else {
            self.error(
                node.pos,
                format!("expected a mapping, found {}", node.kind()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in pairs {
            let key = k.as_str().unwrap_or("");
            if allowed.contains(&key) {
                if out.iter().any(|(seen, _)| *seen == key) {
                    self.error(k.pos, format!("duplicate key `{key}`"));
                }
                out.push((key, v));
            } else {
                self.error(
                    k.pos,
                    format!(
                        "unknown key `{key}` (expected one of: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
        out
    }

    fn seq<'n>(&mut self, node: &'n Node) -> &'n [Node] {
        match &node.value {
            Value::Seq(items) => items,
            _ => {
                self.error(node.pos, format!("expected a list, found {}", node.kind()));
                &[]
            }
        }
    }

    fn string(&mut self, node: &Node) -> String {
        match node.as_str() {
            Some(s) => s.to_string(),
            None => {
                self.error(
                    node.pos,
                    format!("expected a string, found {}", node.kind()),
                );
                String::new()
            }
        }
    }

    fn strings(&mut self, node: &Node) -> Vec<String> {
        self.seq(node).iter().map(|n| self.string(n)).collect()
    }

    fn bool(&mut self, node: &Node) -> bool {
        match node.as_str() {
            Some("true") => true,
            Some("false") => false,
            _ => {
                self.error(node.pos, "expected true or false");
                false
            }
        }
    }

    fn usize(&mut self, node: &Node) -> usize {
        match node.as_str().and_then(|s| s.parse().ok()) {
            Some(n) => n,
            None => {
                self.error(node.pos, "expected a non-negative integer");
                0
            }
        }
    }

    fn f64(&mut self, node: &Node) -> f64 {
        match node
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|f| f.is_finite())
        {
            Some(n) => n,
            None => {
                self.error(node.pos, "expected a number");
                0.0
            }
        }
    }

    fn rule(&mut self, node: &Node) -> Option<RuleSpec> {
        let errors_before = self.errors.len();
        let mut rule = RuleSpec {
            file: self.file.to_string(),
            id: String::new(),
            id_pos: node.pos,
            description: String::new(),
            severity: Severity::Medium,
            patterns: Vec::new(),
            validate: Vec::new(),
            context: ContextSpec::default(),
            allow_values: Vec::new(),
            allow_contains: Vec::new(),
            mask: MaskStyle::Ends,
            min_matches: 1,
            dictionary: None,
        };
        let fields = self.map(node, RULE_KEYS);
        let mut inline = PatternSpec {
            pos: node.pos,
            ..PatternSpec::default()
        };
        let mut has_inline = false;
        let mut has_severity = false;
        for &(key, value) in &fields {
            match key {
                "id" => {
                    rule.id = self.string(value);
                    rule.id_pos = value.pos;
                    if !valid_id(&rule.id) {
                        self.error(value.pos, format!("invalid detector id `{}`: expected `family.name` in lowercase letters, digits and `_`", rule.id));
                    }
                }
                "description" => rule.description = self.string(value),
                "severity" => {
                    has_severity = true;
                    let s = self.string(value);
                    match Severity::parse(&s) {
                        Some(sev) => rule.severity = sev,
                        None => self.error(
                            value.pos,
                            format!(
                                "unknown severity `{s}` (expected low, medium, high or critical)"
                            ),
                        ),
                    }
                }
                "patterns" => {
                    for p in self.seq(value) {
                        let mut spec = PatternSpec {
                            pos: p.pos,
                            ..PatternSpec::default()
                        };
                        for (k, v) in self.map(p, PATTERN_KEYS) {
                            self.pattern_field(&mut spec, k, v);
                        }
                        self.finish_pattern(&spec, p.pos);
                        rule.patterns.push(spec);
                    }
                }
                "validate" => {
                    for v in self.seq(value) {
                        if let Some(v) = self.validator(v) {
                            rule.validate.push(v);
                        }
                    }
                }
                "context" => {
                    for (k, v) in self.map(value, &["window", "require", "exclude"]) {
                        match k {
                            "window" => rule.context.window = self.usize(v).min(MAX_WINDOW),
                            "require" => rule.context.require = self.strings(v),
                            _ => rule.context.exclude = self.strings(v),
                        }
                    }
                    if rule.context.window == 0 {
                        rule.context.window = 32;
                    }
                }
                "allow" => {
                    for (k, v) in self.map(value, &["values", "contains"]) {
                        match k {
                            "values" => rule.allow_values = self.strings(v),
                            _ => rule.allow_contains = self.strings(v),
                        }
                    }
                }
                "mask" => {
                    let s = self.string(value);
                    match MaskStyle::parse(&s) {
                        Some(m) => rule.mask = m,
                        None => self.error(
                            value.pos,
                            format!("unknown mask `{s}` (expected ends, email, full or none)"),
                        ),
                    }
                }
                "min_matches" => rule.min_matches = self.usize(value).max(1),
                "dictionary" => {
                    let mut dict = DictionarySpec {
                        file: String::new(),
                        pos: value.pos,
                        case_insensitive: true,
                        whole_word: true,
                    };
                    for (k, v) in self.map(value, &["file", "case_insensitive", "whole_word"]) {
                        match k {
                            "file" => {
                                dict.file = self.string(v);
                                dict.pos = v.pos;
                            }
                            "case_insensitive" => dict.case_insensitive = self.bool(v),
                            _ => dict.whole_word = self.bool(v),
                        }
                    }
                    if dict.file.is_empty() {
                        self.error(value.pos, "dictionary needs a `file`");
                    }
                    rule.dictionary = Some(dict);
                }
                other => {
                    if !has_inline {
                        inline.pos = key_pos(node, other).unwrap_or(node.pos);
                    }
                    has_inline = true;
                    self.pattern_field(&mut inline, other, value);
                }
            }
        }
        if rule.id.is_empty() && !fields.iter().any(|(k, _)| *k == "id") {
            self.error(node.pos, "detector needs an `id`");
        }
        if !has_severity {
            self.error(node.pos, "detector needs a `severity`");
        }
        if has_inline {
            if !rule.patterns.is_empty() {
                self.error(
                    inline.pos,
                    "use either `patterns:` or a single inline `regex:`, not both",
                );
            }
            self.finish_pattern(&inline, inline.pos);
            rule.patterns.insert(0, inline);
        }
        if rule.patterns.is_empty() && rule.dictionary.is_none() {
            self.error(
                node.pos,
                "detector needs a `regex`, `patterns` or a `dictionary`",
            );
        }
        (self.errors.len() == errors_before).then_some(rule)
    }

    fn pattern_field(&mut self, spec: &mut PatternSpec, key: &str, value: &Node) {
        match key {
            "keywords" => spec.keywords = self.strings(value),
            "anchors" => {
                for a in self.seq(value) {
                    match a.as_str() {
                        Some("digits") => spec.digits = true,
                        _ => self.error(
                            a.pos,
                            "unknown anchor (expected `digits`; use `keywords` for literals)",
                        ),
                    }
                }
            }
            "case_insensitive" => spec.case_insensitive = self.bool(value),
            "regex" => {
                spec.regex = self.string(value);
                spec.regex_pos = value.pos;
            }
            "window" => {
                for (k, v) in self.map(value, &["before", "after"]) {
                    let n = self.usize(v);
                    if n > MAX_WINDOW {
                        self.error(v.pos, format!("window larger than {MAX_WINDOW} bytes"));
                    }
                    match k {
                        "before" => spec.before = n,
                        _ => spec.after = n,
                    }
                }
            }
            "min_digits" => spec.min_digits = self.usize(value),
            "min_dots" => spec.min_dots = self.usize(value),
            "min_colons" => spec.min_colons = self.usize(value),
            _ => {}
        }
    }

    fn finish_pattern(&mut self, spec: &PatternSpec, pos: Pos) {
        if spec.regex.is_empty() {
            self.error(pos, "pattern needs a `regex`");
        }
        if spec.keywords.is_empty() && !spec.digits {
            self.error(
                pos,
                "pattern needs `keywords` or `anchors` so the regex runs only near candidates",
            );
        }
        if spec.keywords.iter().any(String::is_empty) {
            self.error(pos, "empty keyword");
        }
    }

    fn validator(&mut self, node: &Node) -> Option<Validator> {
        match &node.value {
            Value::Scalar { text, .. } => {
                let v = Validator::bare(text);
                if v.is_none() {
                    let hint = if matches!(text.as_str(), "entropy" | "length") {
                        " (it takes a parameter)"
                    } else {
                        ""
                    };
                    self.error(
                        node.pos,
                        format!(
                            "unknown validator `{text}`{hint}; known: {}",
                            validate::NAMES.join(", ")
                        ),
                    );
                }
                v
            }
            Value::Map(pairs) if pairs.len() == 1 => {
                let (k, v) = &pairs[0];
                match k.as_str().unwrap_or("") {
                    "entropy" => Some(Validator::Entropy(self.f64(v))),
                    "length" => {
                        let (mut min, mut max) = (0, usize::MAX);
                        for (lk, lv) in self.map(v, &["min", "max"]) {
                            match lk {
                                "min" => min = self.usize(lv),
                                _ => max = self.usize(lv),
                            }
                        }
                        Some(Validator::Length { min, max })
                    }
                    other => {
                        self.error(
                            k.pos,
                            format!(
                                "unknown validator `{other}`; known: {}",
                                validate::NAMES.join(", ")
                            ),
                        );
                        None
                    }
                }
            }
            _ => {
                self.error(node.pos, "expected a validator name or `name: parameter`");
                None
            }
        }
    }
}

/// Position of `key` in the mapping `node`.
fn key_pos(node: &Node, key: &str) -> Option<Pos> {
    match &node.value {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k.pos),
        _ => None,
    }
}

fn valid_id(id: &str) -> bool {
    let mut parts = id.split('.');
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if ok(a) && ok(b))
}
