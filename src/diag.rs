//! Located diagnostics: every configuration, catalog or rule problem is
//! reported as `file:line:col: message`, all at once.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// A non-empty list of problems, displayed one per line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// An error and its sources on one line (`a: b: c`), for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// A YAML source text with its origin, used to place problems.
pub struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// A problem at an explicit position.
    pub fn at(&self, line: usize, col: usize, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    /// Turns a serde_yaml error into a located problem, without the
    /// "at line N column M" suffix serde_yaml appends to its message.
    pub fn yaml_error(&self, err: &serde_yaml::Error) -> Problem {
        let (line, col) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let msg = err.to_string();
        let msg = match msg.rsplit_once(" at line ") {
            Some((head, _)) => head.to_string(),
            None => msg,
        };
        self.at(line, col, msg)
    }

    /// Locates a key path such as `["upstream", "ca_file"]` in the text: the
    /// first line mentioning each segment as a key, searched in order. YAML
    /// parsers hand back values without positions, so semantic checks that
    /// run after parsing use this to point at the offending key.
    pub fn locate(&self, path: &[&str]) -> (usize, usize) {
        let mut found = (1, 1);
        let mut from = 0;
        for segment in path {
            let hit = self
                .text
                .lines()
                .enumerate()
                .skip(from)
                .find_map(|(i, line)| key_column(line, segment).map(|c| (i, c)));
            match hit {
                Some((i, c)) => {
                    found = (i + 1, c + 1);
                    from = i;
                }
                None => break,
            }
        }
        found
    }

    /// A problem placed at a key path (see [`Source::locate`]).
    pub fn at_key(&self, path: &[&str], message: impl Into<String>) -> Problem {
        let (line, col) = self.locate(path);
        self.at(line, col, message)
    }

    /// A problem placed at the `n`-th (0-based) line containing `needle`.
    pub fn at_nth(&self, needle: &str, n: usize, message: impl Into<String>) -> Problem {
        let (line, col) = self
            .text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
            .nth(n)
            .unwrap_or((1, 1));
        self.at(line, col, message)
    }
}

/// Column of `key` used as a mapping key on this line (`key:` or `"key":`).
fn key_column(line: &str, key: &str) -> Option<usize> {
    let mut start = 0;
    while let Some(pos) = line[start..].find(key) {
        let at = start + pos;
        let before_ok = at == 0
            || matches!(
                line.as_bytes()[at - 1],
                b' ' | b'{' | b',' | b'"' | b'\'' | b'-'
            );
        let rest = line[at + key.len()..].trim_start_matches(['"', '\'']);
        if before_ok && rest.trim_start().starts_with(':') {
            return Some(at);
        }
        start = at + key.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys_in_order() {
        let text = "listen: 1\nupstream:\n  resolve: {}\n  ca_file: x\nca_file: y\n";
        let src = Source {
            file: Path::new("f.yaml"),
            text,
        };
        assert_eq!(src.locate(&["upstream", "ca_file"]), (4, 3));
        assert_eq!(src.locate(&["ca_file"]), (4, 3));
        assert_eq!(src.locate(&["listen"]), (1, 1));
    }

    #[test]
    fn locates_flow_style_keys() {
        let text = "ca: {cert: a.pem, key: b.key}\n";
        let src = Source {
            file: Path::new("f.yaml"),
            text,
        };
        assert_eq!(src.locate(&["ca", "key"]), (1, 19));
    }

    #[test]
    fn strips_serde_yaml_location_suffix() {
        let text = "a: [\n";
        let err = serde_yaml::from_str::<serde_yaml::Value>(text).unwrap_err();
        let src = Source {
            file: Path::new("f.yaml"),
            text,
        };
        let p = src.yaml_error(&err);
        assert!(!p.message.contains(" at line "), "{}", p.message);
        assert!(p.to_string().starts_with("f.yaml:"));
    }
}
