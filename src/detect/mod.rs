//! The detection engine: finds sensitive data (credentials, personal data,
//! confidential material, source code) in bytes. Knows nothing about HTTP.
//!
//! ```text
//! rules/detectors/*.yaml ──▶ rule (decode, positions) ──▶ engine (compile)
//! input ──▶ keyword fingerprint pass + byte scan for digit clusters ──▶ candidate windows
//!       ──▶ regex in each window ──▶ validate ──▶ allowlist/context ──▶ overlap resolution ──▶ Finding
//! ```
//!
//! # Layout
//! - `yaml`: YAML tree with positions, for `file:line:col` errors.
//! - `rule`: the rule file format and its decoding.
//! - `load`: bundled packs and rule directories.
//! - `engine`: compilation and the scan itself.
//! - `keywords`: every rule keyword in one pass (hashed fingerprints, verified).
//! - `validate`: checksums and shape checks (Luhn, IBAN mod-97, SSN ranges, entropy…).
//! - `dictionary`: organisation word lists.
//! - `mask`: masked previews.
//! - `finding`: `Finding` and `Severity`.

mod dictionary;
mod engine;
mod finding;
mod keywords;
mod load;
mod mask;
mod rule;
pub mod validate;
mod yaml;

pub use engine::{Engine, MAX_SPAN};
pub use finding::{Finding, Severity};
pub use mask::{preview, MaskStyle};
pub use rule::RuleError;
