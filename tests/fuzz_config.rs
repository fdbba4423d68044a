//! Fuzzing the loaders `lantern check`, start-up and reload run: the config
//! (`Config::from_yaml`), the app catalog (`Catalog::from_yaml`), the policy
//! (`Policy::from_yaml`) and detector rule files (`Engine::from_yaml`), fed
//! YAML-ish text and mutated copies of the shipped files (deleted,
//! inserted, duplicated, swapped and re-indented pieces). Property: each
//! answers `Ok` or problems that name the file and sit at a line and column
//! inside the text (1-based); nothing panics.
//!
//! The `fuzz_` variants are ignored by default: see README.md, "Fuzzing".

mod common;

use std::path::Path;
use std::sync::OnceLock;

use lantern::catalog::Catalog;
use lantern::config::Config;
use lantern::detect::Engine;
use lantern::policy::{Known, Policy};
use proptest::prelude::*;
use proptest::sample::Index;

const CONFIGS: &[&str] = &[
    include_str!("../deploy/lantern.yaml"),
    include_str!("../deploy/systemd/lantern.yaml"),
    "listen: 127.0.0.1:3128
admin_listen: 127.0.0.1:9464
data_dir: ./lantern-data
ca: {cert: ./lantern-data/ca.pem, key: ./lantern-data/ca.key}
rules_dir: ./rules
policy: ./rules/policy.yaml
ack_key: ./ack.key
audit: {path: ./audit.jsonl, max_bytes: 10MiB, keep: 3}
clients: {allow: [127.0.0.0/8, \"::1/128\"]}
upstream:
  ca_file: ./test-ca.pem
  resolve: {\"api.openai.com:443\": \"127.0.0.1:8443\"}
  pool_max_idle_per_host: 4
  http2: true
identity:
  require_auth: false
  trusted_header: {name: x-user, groups_name: x-groups, from: [10.0.0.0/8]}
  networks:
    - {cidr: 10.1.0.0/16, user: build, groups: [ci]}
  groups: {finance: [alice, bob]}
",
];
const APPS: &str = include_str!("../rules/apps.yaml");
const POLICY: &str = include_str!("../rules/policy.yaml");
const RULES: &[&str] = &[
    include_str!("../rules/detectors/secrets.yaml"),
    include_str!("../rules/detectors/pii.yaml"),
    include_str!("../rules/detectors/confidential.yaml"),
    include_str!("../rules/detectors/code.yaml"),
];

/// What mutations insert, and what YAML-ish text is made of.
const SNIPPETS: &[&str] = &[
    ": ",
    ":",
    "- ",
    "\n",
    "\n  ",
    "  ",
    "\t",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "!x ",
    "~",
    "null",
    "-1",
    "0",
    "99999999999999999999",
    "1.5",
    "true",
    "0x10",
    "10s",
    "5m",
    "1h",
    "0ms",
    "1 KiB",
    "64KiB",
    "4MiB",
    "é",
    "\u{0}",
    "\u{feff}",
    "\r\n",
    "\r",
    "\u{2028}",
    "? ",
    "|\n  ",
    ">\n  ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "listen",
    "admin_listen",
    "rules",
    "rules_dir",
    "policy",
    "when",
    "detectors",
    "regex",
    "keywords",
    "hosts",
    "id",
    "apps",
    "action",
    "severity",
    "validate",
    "dictionary",
    "window",
    "mask",
    "message",
    "{app}",
    "{nope}",
    "secret.*",
    "pii.email",
    "chatgpt",
    "*.openai.com",
    "block",
    "coach",
    "redact",
    "(",
    "[a-",
    "\\",
    "(?i)",
    "\\b",
    "a{1000}{1000}",
    "127.0.0.1:0",
    "[::1]:1",
    "10.0.0.0/33",
    "::",
    "min_severity",
    "min_count",
    "before",
    "after",
    "luhn",
];

fn known() -> &'static (Catalog, Vec<String>) {
    static KNOWN: OnceLock<(Catalog, Vec<String>)> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let engine = Engine::bundled().expect("bundled rules compile");
        (
            Catalog::bundled().expect("bundled catalog loads"),
            engine.detector_ids().map(String::from).collect(),
        )
    })
}

/// One edit of a text, at char positions picked by indexes.
#[derive(Debug, Clone)]
enum Edit {
    Delete(Index, usize),
    Insert(Index, Index),
    Replace(Index, usize, Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    Indent(Index, usize),
    Dedent(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 1usize..16).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<Index>(), 1usize..8, any::<Index>()).prop_map(|(a, n, s)| Edit::Replace(a, n, s)),
        any::<Index>().prop_map(Edit::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<Index>(), 1usize..5).prop_map(|(a, n)| Edit::Indent(a, n)),
        any::<Index>().prop_map(Edit::Dedent),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let snippet = |i: &Index| {
        SNIPPETS[i.index(SNIPPETS.len())]
            .chars()
            .collect::<Vec<_>>()
    };
    for e in edits {
        let at = |i: &Index| i.index(chars.len() + 1);
        match e {
            Edit::Delete(a, n) => {
                let s = at(a);
                chars.drain(s..(s + n).min(chars.len()));
            }
            Edit::Insert(a, s) => {
                let p = at(a);
                chars.splice(p..p, snippet(s));
            }
            Edit::Replace(a, n, s) => {
                let p = at(a);
                chars.splice(p..(p + n).min(chars.len()), snippet(s));
            }
            Edit::DuplicateLine(_) | Edit::SwapLines(..) | Edit::Indent(..) | Edit::Dedent(_) => {
                let text: String = chars.iter().collect();
                let mut lines: Vec<String> = text.split('\n').map(String::from).collect();
                let n = lines.len();
                match e {
                    Edit::DuplicateLine(a) => {
                        let i = a.index(n);
                        lines.insert(i, lines[i].clone());
                    }
                    Edit::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
                    Edit::Indent(a, k) => lines[a.index(n)].insert_str(0, &" ".repeat(*k)),
                    Edit::Dedent(a) => {
                        let line = &mut lines[a.index(n)];
                        *line = line.trim_start().to_string();
                    }
                    _ => unreachable!(),
                }
                chars = lines.join("\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

/// Lines of `indent`, an optional `- `, a key and a value, from snippets.
fn yamlish(max_lines: usize) -> impl Strategy<Value = String> {
    let line = (
        0usize..4,
        any::<bool>(),
        prop_oneof![
            3 => any::<Index>().prop_map(|i| SNIPPETS[i.index(SNIPPETS.len())].to_string()),
            1 => "[a-z_]{1,12}",
        ],
        prop::collection::vec(any::<Index>(), 0..3),
    )
        .prop_map(|(indent, dash, key, value)| {
            let mut s = "  ".repeat(indent);
            if dash {
                s.push_str("- ");
            }
            s.push_str(&key);
            s.push_str(": ");
            for v in value {
                s.push_str(SNIPPETS[v.index(SNIPPETS.len())]);
            }
            s
        });
    prop::collection::vec(line, 0..max_lines).prop_map(|l| l.join("\n"))
}

/// A problem's place is inside `text`: 1-based, at most one line past the
/// last (an error at the end of input), at most one column past the
/// longest line. Line breaks as YAML 1.1 counts them.
fn check_place(text: &str, line: usize, col: usize, what: &str) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = text
        .split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        .collect();
    let widest = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    prop_assert!(
        line >= 1 && col >= 1 && line <= lines.len() + 1 && col <= widest + 1,
        "{} placed at {}:{} in a text of {} lines, widest {}",
        what,
        line,
        col,
        lines.len(),
        widest
    );
    Ok(())
}

fn check_problems(
    text: &str,
    path: &Path,
    result: Result<(), lantern::diag::Problems>,
) -> Result<(), TestCaseError> {
    if let Err(problems) = result {
        prop_assert!(!problems.0.is_empty(), "an error without problems");
        for p in &problems.0 {
            prop_assert_eq!(&p.file, path);
            prop_assert!(!p.message.is_empty());
            check_place(text, p.line, p.col, &p.message)?;
        }
    }
    Ok(())
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("/etc/lantern/lantern.yaml");
    check_problems(text, path, Config::from_yaml(path, text).map(|_| ()))
}

fn check_catalog(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("rules/apps.yaml");
    check_problems(text, path, Catalog::from_yaml(path, text).map(|_| ()))
}

fn check_policy(text: &str) -> Result<(), TestCaseError> {
    let (catalog, detectors) = known();
    let known = Known {
        app: &|id: &str| catalog.apps().iter().any(|a| a.id == id),
        detectors,
    };
    let path = Path::new("rules/policy.yaml");
    check_problems(
        text,
        path,
        Policy::from_yaml(path, text, &known).map(|_| ()),
    )
}

fn check_rules(text: &str) -> Result<(), TestCaseError> {
    if let Err(errors) = Engine::from_yaml("rules/detectors/x.yaml", text) {
        prop_assert!(!errors.is_empty(), "an error without problems");
        for e in &errors {
            prop_assert_eq!(&e.file, "rules/detectors/x.yaml");
            check_place(text, e.line, e.col, &e.message)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::proptest_config(128))]

    #[test]
    fn mutated_configs_load_or_report_located_problems(
        base in any::<Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        check_config(&apply(CONFIGS[base.index(CONFIGS.len())], &edits))?;
    }

    #[test]
    fn yamlish_text_loads_or_reports_located_problems(text in yamlish(12)) {
        check_config(&text)?;
        check_catalog(&text)?;
        check_policy(&text)?;
        check_rules(&text)?;
    }

    #[test]
    fn mutated_policies_load_or_report_located_problems(
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        check_policy(&apply(POLICY, &edits))?;
    }
}

proptest! {
    // Each case compiles a catalog or a rule pack: fewer, costlier cases.
    #![proptest_config(common::proptest_config(24))]

    #[test]
    fn mutated_catalogs_load_or_report_located_problems(
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        check_catalog(&apply(APPS, &edits))?;
    }

    #[test]
    fn mutated_rule_files_load_or_report_located_problems(
        base in any::<Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        check_rules(&apply(RULES[base.index(RULES.len())], &edits))?;
    }
}

proptest! {
    #![proptest_config(common::proptest_config(5_000))]

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_configs(
        base in any::<Index>(),
        edits in prop::collection::vec(edit(), 1..24),
    ) {
        check_config(&apply(CONFIGS[base.index(CONFIGS.len())], &edits))?;
    }

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_yamlish_text(text in yamlish(64)) {
        check_config(&text)?;
        check_catalog(&text)?;
        check_policy(&text)?;
        check_rules(&text)?;
    }

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_policies(edits in prop::collection::vec(edit(), 1..24)) {
        check_policy(&apply(POLICY, &edits))?;
    }

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_catalogs(edits in prop::collection::vec(edit(), 1..24)) {
        check_catalog(&apply(APPS, &edits))?;
    }

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_rule_files(
        base in any::<Index>(),
        edits in prop::collection::vec(edit(), 1..24),
    ) {
        check_rules(&apply(RULES[base.index(RULES.len())], &edits))?;
    }
}
