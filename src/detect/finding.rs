//! What the engine reports: a detector id, a byte span, a severity and a
//! masked preview. Never the matched value itself.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How much a finding matters; ordered so that `Critical > Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The lowercase name used in rule files, JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of sensitive data found in an input.
///
/// `start..end` are byte offsets into the scanned input, always on UTF-8
/// character boundaries when the input is UTF-8. `preview` is masked so it
/// can be printed and logged; the full value is never kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Detector id such as `secret.aws_access_key`.
    pub detector: Arc<str>,
    pub start: usize,
    pub end: usize,
    pub severity: Severity,
    pub preview: String,
}

impl Finding {
    /// The detector id.
    pub fn detector(&self) -> &str {
        &self.detector
    }

    /// The byte span as a range.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}
