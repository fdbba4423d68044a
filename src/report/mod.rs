//! `lantern report`: who used which AI apps, with what data, and what
//! lantern did about it — summarised from audit logs.
//!
//! The files (plain JSON lines or gzip'd, as rotation and logrotate leave
//! them) are streamed line by line into an [`aggregate::Accumulator`]
//! whose size depends on the distinct apps, users, groups, detectors and
//! days, not on the number of events. A line that is not an audit event is
//! a warning (`file:line: why`), counted and skipped; a file that cannot be
//! opened is an error.
//!
//! The finished [`Report`] is rendered as text (a terminal), JSON (tools),
//! CSV (spreadsheets, one tidy table) or HTML (one self-contained file with
//! inline CSS and SVG charts, to mail around).

pub mod aggregate;
mod csv;
mod html;
mod json;
mod read;
mod text;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use time::OffsetDateTime;

pub use aggregate::Report;
use aggregate::{Accumulator, Inputs};
use read::{Line, Lines, Next};

/// Output format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Csv,
    Html,
}

impl std::str::FromStr for Format {
    type Err = String;

    /// `text`, `json`, `csv` or `html`.
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "html" => Ok(Format::Html),
            other => Err(format!(
                "unknown report format {other:?}: expected text, json, csv or html"
            )),
        }
    }
}

/// What to report on and how.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Audit files, plain or gzip'd; at least one.
    pub audit: Vec<PathBuf>,
    /// Only events newer than now minus this.
    pub since: Option<Duration>,
    pub format: Format,
}

/// Writes the report. Malformed lines are warnings (`file:line: why`, via
/// `tracing` and in the report itself), counted and skipped; a missing or
/// unreadable file is an error.
pub fn run(opts: &ReportOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    run_at(opts, OffsetDateTime::now_utc(), out)
}

/// [`run`] as if it were `now` (for `--since` in tests and replays).
pub fn run_at(
    opts: &ReportOptions,
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let report = build(&opts.audit, opts.since, now)?;
    render(&report, opts.format, out).context("cannot write the report")
}

/// Writes a built report in one format.
pub fn render(report: &Report, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        Format::Text => text::write(report, out),
        Format::Json => json::write(report, out),
        Format::Csv => csv::write(report, out),
        Format::Html => html::write(report, out),
    }?;
    out.flush()
}

/// Reads and aggregates the files into a [`Report`].
pub fn build(
    files: &[PathBuf],
    since: Option<Duration>,
    now: OffsetDateTime,
) -> anyhow::Result<Report> {
    if files.is_empty() {
        bail!("no audit files given: pass --audit FILE (plain or .gz), e.g. --audit lantern-data/audit.jsonl");
    }
    let window_start = since.and_then(|since| {
        let since = time::Duration::try_from(since).ok()?;
        now.checked_sub(since)
    });
    let mut acc = Accumulator::default();
    let mut inputs = Inputs::default();
    for path in files {
        let name = path.display().to_string();
        let reader = read::open(path).with_context(|| format!("cannot read audit file {name}"))?;
        inputs.files.push(name.clone());
        let mut lines = Lines::new(reader);
        loop {
            let line = match lines.next_line() {
                Ok(Next::End) => break,
                Ok(Next::TooLong) => {
                    inputs.malformed_lines += 1;
                    inputs.warn(format!(
                        "{name}:{}: line longer than {} bytes; skipped",
                        lines.number,
                        read::MAX_LINE
                    ));
                    continue;
                }
                Ok(Next::Line(line)) => read::parse(line),
                Err(e) => {
                    inputs.unreadable_tails += 1;
                    inputs.warn(format!(
                        "{name}:{}: cannot read further ({e}); rest of the file skipped",
                        lines.number + 1
                    ));
                    break;
                }
            };
            match line {
                Line::Blank => {}
                Line::Malformed(why) => {
                    inputs.malformed_lines += 1;
                    inputs.warn(format!("{name}:{}: {why}; skipped", lines.number));
                }
                Line::Event(parsed) => {
                    if window_start.is_some_and(|start| parsed.ts < start) {
                        inputs.outside_window += 1;
                    } else {
                        inputs.events += 1;
                        acc.add(&parsed);
                    }
                }
            }
        }
    }
    Ok(acc.finish(inputs, window_start, now))
}

/// A share (0–1) as a percentage with one decimal.
fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}
