//! Where rules come from: the packs bundled into the binary, or a directory.

use std::path::Path;

use super::engine::Engine;
use super::rule::{Decoder, RuleError, RuleSpec};

/// The bundled packs, embedded at build time.
const BUNDLED: &[(&str, &str)] = &[
    (
        "rules/detectors/secrets.yaml",
        include_str!("../../rules/detectors/secrets.yaml"),
    ),
    (
        "rules/detectors/pii.yaml",
        include_str!("../../rules/detectors/pii.yaml"),
    ),
    (
        "rules/detectors/confidential.yaml",
        include_str!("../../rules/detectors/confidential.yaml"),
    ),
    (
        "rules/detectors/code.yaml",
        include_str!("../../rules/detectors/code.yaml"),
    ),
];

/// Word lists the bundled packs refer to, by the path written in the rule.
const BUNDLED_WORDS: &[(&str, &str)] = &[(
    "words/confidential_keywords.txt",
    include_str!("../../rules/detectors/words/confidential_keywords.txt"),
)];

impl Engine {
    /// The bundled rule packs (`rules/detectors/*.yaml`).
    pub fn bundled() -> Result<Engine, Vec<RuleError>> {
        let mut errors = Vec::new();
        let mut specs = Vec::new();
        for (name, src) in BUNDLED {
            let mut d = Decoder::new(name);
            specs.extend(d.file(src));
            errors.extend(d.errors);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Engine::compile(specs, &|_, file| {
            BUNDLED_WORDS
                .iter()
                .find(|(name, _)| *name == file)
                .map(|(_, text)| text.to_string())
                .ok_or_else(|| "not among the bundled word lists".to_string())
        })
    }

    /// Rules from every `*.yaml` in `dir` (sorted by name); dictionary word
    /// lists are resolved relative to `dir`.
    pub fn from_dir(dir: &Path) -> Result<Engine, Vec<RuleError>> {
        let io_error = |path: &Path, e: std::io::Error| RuleError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            message: e.to_string(),
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| vec![io_error(dir, e)])?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
                    && p.is_file()
            })
            .collect();
        files.sort();
        let mut errors = Vec::new();
        let mut specs: Vec<RuleSpec> = Vec::new();
        for path in &files {
            match std::fs::read_to_string(path) {
                Ok(src) => {
                    let name = path.display().to_string();
                    let mut d = Decoder::new(&name);
                    specs.extend(d.file(&src));
                    errors.extend(d.errors);
                }
                Err(e) => errors.push(io_error(path, e)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Engine::compile(specs, &|_, file| {
            std::fs::read_to_string(dir.join(file)).map_err(|e| e.to_string())
        })
    }

    /// Rules from YAML text (tests, `lantern check` on a single file).
    pub fn from_yaml(name: &str, src: &str) -> Result<Engine, Vec<RuleError>> {
        let mut d = Decoder::new(name);
        let specs = d.file(src);
        if !d.errors.is_empty() {
            return Err(d.errors);
        }
        Engine::compile(specs, &|_, file| {
            Err(format!("no word lists available for `{file}`"))
        })
    }
}
