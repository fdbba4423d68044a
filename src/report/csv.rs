//! `--format csv`: one tidy table, `section,key,subkey,metric,value`, so a
//! spreadsheet pivot or `grep` can slice it:
//!
//! ```text
//! section,key,subkey,metric,value
//! total,,,requests,1234
//! app,chatgpt,,requests,120
//! app_user,chatgpt,alice,blocked,2
//! app_group,chatgpt,finance,users,3
//! detector,pii.email,,matches,40
//! day,2025-03-04,,shadow,17
//! ```
//!
//! Cells are quoted per RFC 4180, and a cell a spreadsheet would run as a
//! formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`: user
//! names come from the network.

use std::io::{self, Write};

use super::aggregate::Counts;
use super::Report;

fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

struct Csv<'a> {
    out: &'a mut dyn Write,
}

impl Csv<'_> {
    fn row(
        &mut self,
        section: &str,
        key: &str,
        subkey: &str,
        metric: &str,
        value: impl ToString,
    ) -> io::Result<()> {
        writeln!(
            self.out,
            "{},{},{},{},{}",
            cell(section),
            cell(key),
            cell(subkey),
            cell(metric),
            cell(&value.to_string())
        )
    }

    fn counts(&mut self, section: &str, key: &str, subkey: &str, c: &Counts) -> io::Result<()> {
        self.row(section, key, subkey, "requests", c.requests)?;
        self.row(section, key, subkey, "with_findings", c.with_findings)?;
        self.row(section, key, subkey, "findings", c.findings)?;
        self.row(section, key, subkey, "blocked", c.blocked)?;
        self.row(section, key, subkey, "coached", c.coached)?;
        self.row(section, key, subkey, "redacted", c.redacted)?;
        self.row(section, key, subkey, "acknowledged", c.acknowledged)
    }
}

pub(super) fn write(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut csv = Csv { out };
    csv.out.write_all(b"section,key,subkey,metric,value\n")?;
    let p = &r.period;
    for (metric, value) in [
        ("first_event", &p.first_event),
        ("last_event", &p.last_event),
        ("window_start", &p.window_start),
    ] {
        if let Some(v) = value {
            csv.row("period", "", "", metric, v)?;
        }
    }
    csv.row("period", "", "", "generated", &p.generated)?;
    csv.row("period", "", "", "days", p.days)?;
    let i = &r.inputs;
    for f in &i.files {
        csv.row("input", f, "", "file", 1)?;
    }
    csv.row("input", "", "", "events", i.events)?;
    csv.row("input", "", "", "outside_window", i.outside_window)?;
    csv.row("input", "", "", "malformed_lines", i.malformed_lines)?;
    csv.row("input", "", "", "unreadable_tails", i.unreadable_tails)?;

    let t = &r.totals;
    csv.counts("total", "", "", &t.counts)?;
    csv.row(
        "total",
        "",
        "",
        "sanctioned_requests",
        t.sanctioned_requests,
    )?;
    csv.row("total", "", "", "shadow_requests", t.shadow_requests)?;
    csv.row(
        "total",
        "",
        "",
        "shadow_share",
        format!("{:.4}", t.shadow_share),
    )?;
    csv.row("total", "", "", "apps", t.apps)?;
    csv.row("total", "", "", "shadow_apps", t.shadow_apps)?;
    csv.row("total", "", "", "users", t.users)?;
    csv.row("total", "", "", "shadow_users", t.shadow_users)?;
    csv.row("total", "", "", "req_bytes", t.req_bytes)?;

    for a in &r.apps {
        csv.row("app", &a.app, "", "vendor", &a.vendor)?;
        csv.row("app", &a.app, "", "sanctioned", a.sanctioned)?;
        csv.counts("app", &a.app, "", &a.counts)?;
        csv.row("app", &a.app, "", "share", format!("{:.4}", a.share))?;
        csv.row("app", &a.app, "", "users", a.users)?;
        for (decision, n) in &a.decisions {
            csv.row("app_decision", &a.app, decision, "requests", n)?;
        }
        for g in &a.groups {
            csv.row("app_group", &a.app, &g.group, "requests", g.requests)?;
            csv.row("app_group", &a.app, &g.group, "users", g.users)?;
        }
    }
    for u in &r.app_users {
        csv.counts("app_user", &u.app, &u.user, &u.counts)?;
    }
    for d in &r.detectors {
        csv.row("detector", &d.detector, "", "severity", &d.severity)?;
        csv.row("detector", &d.detector, "", "requests", d.requests)?;
        csv.row("detector", &d.detector, "", "matches", d.matches)?;
        csv.row("detector", &d.detector, "", "users", d.users)?;
        csv.row("detector", &d.detector, "", "apps", d.apps)?;
    }
    for d in &r.decisions {
        csv.row("decision", &d.decision, "", "requests", d.requests)?;
        csv.row(
            "decision",
            &d.decision,
            "",
            "share",
            format!("{:.4}", d.share),
        )?;
    }
    for (section, rows) in [("risky_user", &r.risky_users), ("risky_app", &r.risky_apps)] {
        for row in rows.iter() {
            csv.row(section, &row.name, "", "score", row.score)?;
            csv.counts(section, &row.name, "", &row.counts)?;
        }
    }
    for d in &r.days {
        csv.counts("day", &d.day, "", &d.counts)?;
        csv.row("day", &d.day, "", "sanctioned", d.sanctioned)?;
        csv.row("day", &d.day, "", "shadow", d.shadow)?;
        csv.row("day", &d.day, "", "users", d.users)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("alice"), "alice");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
    }
}
