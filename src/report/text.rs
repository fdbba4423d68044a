//! `--format text`: aligned tables for a terminal. Names come from the
//! network (user names, app ids), so control characters are replaced
//! before they reach a terminal.

use std::io::{self, Write};

use super::aggregate::{Counts, RiskRow};
use super::{percent, Report};

/// Control characters (escape sequences, newlines) become U+FFFD.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// A table whose first column is left-aligned and the others right-aligned.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// Columns (besides the first) that are left-aligned text.
    text_columns: Vec<usize>,
}

impl Table {
    fn new(header: Vec<&'static str>) -> Table {
        Table {
            header,
            rows: Vec::new(),
            text_columns: Vec::new(),
        }
    }

    fn text(mut self, columns: &[usize]) -> Table {
        self.text_columns = columns.to_vec();
        self
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([self.header[i].len()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.header.len()).map(width).collect();
        let line = |cells: Vec<&str>| {
            let mut s = String::from("  ");
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let left = i == 0 || self.text_columns.contains(&i);
                if i > 0 {
                    s.push_str("  ");
                }
                if left {
                    s.push_str(cell);
                    if i + 1 < cells.len() {
                        s.extend(std::iter::repeat_n(' ', pad));
                    }
                } else {
                    s.extend(std::iter::repeat_n(' ', pad));
                    s.push_str(cell);
                }
            }
            s.truncate(s.trim_end().len());
            s
        };
        writeln!(out, "{}", line(self.header.clone()))?;
        for row in &self.rows {
            writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
        }
        Ok(())
    }
}

fn counts_cells(c: &Counts) -> Vec<String> {
    vec![
        c.requests.to_string(),
        c.with_findings.to_string(),
        c.blocked.to_string(),
        c.coached.to_string(),
        c.redacted.to_string(),
    ]
}

pub(super) fn write(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let t = &r.totals;
    let p = &r.period;
    writeln!(out, "lantern report")?;
    writeln!(out)?;
    match (&p.first_event, &p.last_event) {
        (Some(first), Some(last)) => writeln!(
            out,
            "Period      {first} .. {last} ({} day{})",
            p.days,
            if p.days == 1 { "" } else { "s" }
        )?,
        _ => writeln!(out, "Period      no events")?,
    }
    if let Some(start) = &p.window_start {
        writeln!(out, "Window      since {start}")?;
    }
    writeln!(out, "Generated   {}", p.generated)?;
    let i = &r.inputs;
    writeln!(
        out,
        "Input       {} file{}, {} events, {} malformed line{} skipped, {} outside the window{}",
        i.files.len(),
        if i.files.len() == 1 { "" } else { "s" },
        i.events,
        i.malformed_lines,
        if i.malformed_lines == 1 { "" } else { "s" },
        i.outside_window,
        if i.unreadable_tails > 0 {
            format!(", {} unreadable file end(s)", i.unreadable_tails)
        } else {
            String::new()
        }
    )?;
    for w in &i.warnings {
        writeln!(out, "  warning: {}", clean(w))?;
    }

    writeln!(out)?;
    writeln!(out, "Summary")?;
    let total = t.counts.requests;
    writeln!(
        out,
        "  requests       {total}: sanctioned {} ({}), shadow {} ({})",
        t.sanctioned_requests,
        percent(if total == 0 {
            0.0
        } else {
            t.sanctioned_requests as f64 / total as f64
        }),
        t.shadow_requests,
        percent(t.shadow_share)
    )?;
    writeln!(out, "  apps           {}: {} shadow", t.apps, t.shadow_apps)?;
    writeln!(
        out,
        "  people         {}: {} used shadow AI",
        t.users, t.shadow_users
    )?;
    writeln!(
        out,
        "  findings       {} requests with findings, {} matches",
        t.counts.with_findings, t.counts.findings
    )?;
    writeln!(
        out,
        "  actions        {} blocked, {} coached ({} acknowledged), {} redacted",
        t.counts.blocked, t.counts.coached, t.counts.acknowledged, t.counts.redacted
    )?;

    writeln!(out)?;
    writeln!(out, "Apps")?;
    let mut table = Table::new(vec![
        "APP", "VENDOR", "STATUS", "REQUESTS", "SHARE", "PEOPLE", "FINDINGS", "BLOCK", "COACH",
        "REDACT",
    ])
    .text(&[1, 2]);
    for a in &r.apps {
        table.row(vec![
            clean(&a.app),
            clean(&a.vendor),
            if a.sanctioned { "sanctioned" } else { "shadow" }.into(),
            a.counts.requests.to_string(),
            percent(a.share),
            a.users.to_string(),
            a.counts.with_findings.to_string(),
            a.counts.blocked.to_string(),
            a.counts.coached.to_string(),
            a.counts.redacted.to_string(),
        ]);
    }
    table.write(out)?;

    writeln!(out)?;
    writeln!(out, "People and groups per app")?;
    for a in &r.apps {
        let users: Vec<String> = a
            .top_users
            .iter()
            .map(|u| format!("{} {}", clean(&u.name), u.requests))
            .collect();
        let more = a.users.saturating_sub(a.top_users.len() as u64);
        writeln!(
            out,
            "  {}: {} {}: {}{}",
            clean(&a.app),
            a.users,
            if a.users == 1 { "person" } else { "people" },
            users.join(", "),
            if more > 0 {
                format!(", … {more} more")
            } else {
                String::new()
            }
        )?;
        if !a.groups.is_empty() {
            let groups: Vec<String> = a
                .groups
                .iter()
                .map(|g| {
                    format!(
                        "{} {} ({} {})",
                        clean(&g.group),
                        g.requests,
                        g.users,
                        if g.users == 1 { "person" } else { "people" }
                    )
                })
                .collect();
            writeln!(out, "    groups: {}", groups.join(", "))?;
        }
    }

    writeln!(out)?;
    writeln!(out, "Findings by detector")?;
    if r.detectors.is_empty() {
        writeln!(out, "  none")?;
    } else {
        let mut table = Table::new(vec![
            "DETECTOR", "SEVERITY", "REQUESTS", "MATCHES", "PEOPLE", "APPS",
        ])
        .text(&[1]);
        for d in &r.detectors {
            table.row(vec![
                clean(&d.detector),
                clean(&d.severity),
                d.requests.to_string(),
                d.matches.to_string(),
                d.users.to_string(),
                d.apps.to_string(),
            ]);
        }
        table.write(out)?;
    }

    writeln!(out)?;
    writeln!(out, "Decisions")?;
    let mut table = Table::new(vec!["DECISION", "REQUESTS", "SHARE"]);
    for d in &r.decisions {
        table.row(vec![
            clean(&d.decision),
            d.requests.to_string(),
            percent(d.share),
        ]);
    }
    table.write(out)?;

    let risky = |title: &str, rows: &[RiskRow], out: &mut dyn Write| -> io::Result<()> {
        writeln!(out)?;
        writeln!(out, "{title} (score = {})", r.risk_formula)?;
        if rows.is_empty() {
            return writeln!(out, "  none");
        }
        let mut table = Table::new(vec![
            "NAME", "SCORE", "REQUESTS", "FINDINGS", "BLOCK", "COACH", "REDACT",
        ]);
        for row in rows {
            let c = counts_cells(&row.counts);
            table.row(vec![
                clean(&row.name),
                row.score.to_string(),
                c[0].clone(),
                c[1].clone(),
                c[2].clone(),
                c[3].clone(),
                c[4].clone(),
            ]);
        }
        table.write(out)
    };
    risky("Top risky people", &r.risky_users, out)?;
    risky("Top risky apps", &r.risky_apps, out)?;

    writeln!(out)?;
    writeln!(out, "Trend per day (UTC)")?;
    let max = r.days.iter().map(|d| d.counts.requests).max().unwrap_or(0);
    let mut table = Table::new(vec![
        "DAY", "REQUESTS", "SHADOW", "FINDINGS", "BLOCK", "COACH", "PEOPLE", "",
    ])
    .text(&[7]);
    for d in &r.days {
        let bar = if max == 0 {
            0
        } else {
            (d.counts.requests * 30).div_ceil(max) as usize
        };
        table.row(vec![
            d.day.clone(),
            d.counts.requests.to_string(),
            d.shadow.to_string(),
            d.counts.with_findings.to_string(),
            d.counts.blocked.to_string(),
            d.counts.coached.to_string(),
            d.users.to_string(),
            "#".repeat(bar),
        ]);
    }
    table.write(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_in_names_are_neutralised() {
        assert_eq!(clean("a\u{1b}[31mb\n"), "a\u{fffd}[31mb\u{fffd}");
    }
}
