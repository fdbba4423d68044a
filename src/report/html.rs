//! `--format html`: one self-contained page a security lead can mail
//! around — inline CSS, inline SVG charts, no script, no external font,
//! image or stylesheet. Every string from the audit log is escaped.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::aggregate::RiskRow;
use super::{percent, Report};

/// Bars shown in a bar chart; the tables below carry every row.
const MAX_BARS: usize = 15;

const SANCTIONED: &str = "#2e7d32";
const SHADOW: &str = "#e65100";

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:980px;padding:0 1rem;color:#1f2328;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
.meta{color:#57606a;font-size:.9rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1.2rem 0}
.card{border:1px solid #d0d7de;border-radius:8px;padding:.6rem 1rem;min-width:130px}
.card b{display:block;font-size:1.5rem}.card span{color:#57606a;font-size:.85rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.6rem 0}
th,td{padding:.3rem .5rem;border-bottom:1px solid #eaeef2;text-align:right}
th{background:#f6f8fa}th:first-child,td:first-child,.l{text-align:left}
.tag{border-radius:4px;padding:0 .35rem;color:#fff;font-size:.8rem}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5rem 1rem;font-size:.85rem}
svg{max-width:100%;height:auto;font-size:12px}svg text{fill:#1f2328}
.note{color:#57606a;font-size:.85rem}
";

use crate::action::escape as esc;

fn severity_color(severity: &str) -> &'static str {
    match severity {
        "critical" => "#8e0000",
        "high" => "#c62828",
        "medium" => "#ef6c00",
        "low" => "#f9a825",
        _ => "#6e7781",
    }
}

fn decision_color(decision: &str) -> &'static str {
    match decision {
        "allow" => "#2e7d32",
        "log" => "#1565c0",
        "coach" => "#ef6c00",
        "redact" => "#6a1b9a",
        "block" => "#c62828",
        "tunnel" => "#6e7781",
        _ => "#424a53",
    }
}

/// A round number at or above `max` for a chart's axis.
fn nice_max(max: u64) -> u64 {
    if max <= 5 {
        return 5;
    }
    let mut step = 1u64;
    while step.saturating_mul(10) < max {
        step = step.saturating_mul(10);
    }
    for m in [1, 2, 5, 10] {
        if step.saturating_mul(m) >= max {
            return step.saturating_mul(m);
        }
    }
    max
}

/// Horizontal bars: `(label, value, color)`.
fn bar_chart(title: &str, rows: &[(String, u64, &str)]) -> String {
    let rows = &rows[..rows.len().min(MAX_BARS)];
    let (label_w, bar_w, row_h) = (190.0, 470.0, 24.0);
    let height = row_h * rows.len() as f64 + 8.0;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 760 {height}" width="760" height="{height}" role="img" aria-label="{}">"#,
        esc(title)
    );
    for (i, (label, value, color)) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let w = (*value as f64 / max * bar_w).max(if *value > 0 { 1.0 } else { 0.0 });
        let shown: String = label.chars().take(28).collect();
        let ellipsis = if label.chars().count() > 28 {
            "…"
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}{ellipsis}<title>{}</title></text><rect x="{label_w}" y="{y}" width="{w:.1}" height="{}" fill="{color}" rx="2"/><text x="{:.1}" y="{}">{value}</text>"#,
            label_w - 8.0,
            y + 15.0,
            esc(&shown),
            esc(label),
            row_h - 6.0,
            label_w + w + 6.0,
            y + 15.0,
        );
    }
    s.push_str("</svg>");
    s
}

/// The trend: one line per series over the days.
fn line_chart(days: &[String], series: &[(&str, &str, Vec<u64>)]) -> String {
    let (left, right, top, bottom) = (56.0, 20.0, 16.0, 48.0);
    let (width, height) = (760.0, 280.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .max()
        .unwrap_or(0);
    let y_max = nice_max(max) as f64;
    let n = days.len();
    let x = |i: usize| {
        if n <= 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: u64| top + plot_h - plot_h * v as f64 / y_max;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="requests per day">"#
    );
    // nice_max gives 5, 10, 20, 50, 100 …: five equal integer steps.
    for k in 0..=5u64 {
        let v = (y_max as u64) * k / 5;
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eaeef2"/><text x="{}" y="{:.1}" text-anchor="end">{v}</text>"##,
            width - right,
            left - 6.0,
            y(v) + 4.0,
            yy = y(v),
        );
    }
    let label_every = n.div_ceil(10).max(1);
    for (i, day) in days.iter().enumerate() {
        if i % label_every == 0 || i + 1 == n {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x(i),
                height - bottom + 18.0,
                esc(day.get(5..).unwrap_or(day))
            );
        }
    }
    for (name, color, values) in series {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            esc(name)
        );
        if n <= 62 {
            for (i, v) in values.iter().enumerate() {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"><title>{} {}: {v}</title></circle>"#,
                    x(i),
                    y(*v),
                    esc(&days[i]),
                    esc(name)
                );
            }
        }
    }
    let mut lx = left;
    for (name, color, _) in series {
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            height - 18.0,
            lx + 16.0,
            height - 8.0,
            esc(name)
        );
        lx += 36.0 + 7.5 * name.len() as f64;
    }
    s.push_str("</svg>");
    s
}

/// A 100 % bar split into sanctioned and shadow requests.
fn share_bar(sanctioned: u64, shadow: u64) -> String {
    let total = (sanctioned + shadow).max(1) as f64;
    let w = 760.0;
    let sw = w * sanctioned as f64 / total;
    format!(
        r#"<svg viewBox="0 0 760 34" width="760" height="34" role="img" aria-label="sanctioned vs shadow requests"><rect x="0" y="0" width="{sw:.1}" height="24" fill="{SANCTIONED}"/><rect x="{sw:.1}" y="0" width="{:.1}" height="24" fill="{SHADOW}"/><text x="6" y="17" style="fill:#fff">sanctioned {sanctioned}</text><text x="754" y="17" text-anchor="end" style="fill:#fff">shadow {shadow}</text></svg>"#,
        w - sw
    )
}

fn risk_table(rows: &[RiskRow], what: &str) -> String {
    if rows.is_empty() {
        return "<p class=\"note\">None.</p>".into();
    }
    let mut s = format!(
        "<table><tr><th>{what}</th><th>score</th><th>requests</th><th>with findings</th><th>blocked</th><th>coached</th><th>redacted</th></tr>"
    );
    for r in rows {
        let c = &r.counts;
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.name),
            r.score,
            c.requests,
            c.with_findings,
            c.blocked,
            c.coached,
            c.redacted
        );
    }
    s.push_str("</table>");
    s
}

pub(super) fn write(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let t = &r.totals;
    let p = &r.period;
    let i = &r.inputs;
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    let period = match (&p.first_event, &p.last_event) {
        (Some(a), Some(b)) => format!("{} – {}", esc(a), esc(b)),
        _ => "no events".into(),
    };
    let _ = write!(
        h,
        "<title>lantern report: {period}</title><style>{CSS}</style></head><body>"
    );
    let _ = write!(
        h,
        "<h1>Shadow AI report</h1><p class=\"meta\">{period} ({} day{}){}<br>Generated {} by lantern from {} audit file{} ({} events).</p>",
        p.days,
        if p.days == 1 { "" } else { "s" },
        p.window_start
            .as_ref()
            .map(|w| format!(", window since {}", esc(w)))
            .unwrap_or_default(),
        esc(&p.generated),
        i.files.len(),
        if i.files.len() == 1 { "" } else { "s" },
        i.events
    );

    let card = |h: &mut String, value: String, label: &str| {
        let _ = write!(
            h,
            "<div class=\"card\"><b>{value}</b><span>{label}</span></div>"
        );
    };
    h.push_str("<div class=\"cards\">");
    card(&mut h, t.counts.requests.to_string(), "requests to AI apps");
    card(
        &mut h,
        percent(t.shadow_share),
        "to shadow (unsanctioned) apps",
    );
    card(
        &mut h,
        format!("{} / {}", t.shadow_apps, t.apps),
        "shadow apps / apps",
    );
    card(
        &mut h,
        format!("{} / {}", t.shadow_users, t.users),
        "people on shadow AI / people",
    );
    card(
        &mut h,
        t.counts.with_findings.to_string(),
        "requests with sensitive data",
    );
    card(
        &mut h,
        format!(
            "{} / {} / {}",
            t.counts.blocked, t.counts.coached, t.counts.redacted
        ),
        "blocked / coached / redacted",
    );
    card(
        &mut h,
        t.counts.acknowledged.to_string(),
        "coach messages acknowledged",
    );
    h.push_str("</div>");

    h.push_str("<h2>Sanctioned vs shadow</h2>");
    h.push_str(&share_bar(t.sanctioned_requests, t.shadow_requests));

    h.push_str("<h2>Trend per day (UTC)</h2>");
    if r.days.is_empty() {
        h.push_str("<p class=\"note\">No events.</p>");
    } else {
        let days: Vec<String> = r.days.iter().map(|d| d.day.clone()).collect();
        let pick = |f: fn(&super::aggregate::DayRow) -> u64| r.days.iter().map(f).collect();
        h.push_str(&line_chart(
            &days,
            &[
                ("requests", "#1565c0", pick(|d| d.counts.requests)),
                ("shadow", SHADOW, pick(|d| d.shadow)),
                ("with findings", "#c62828", pick(|d| d.counts.with_findings)),
                (
                    "blocked+coached",
                    "#6a1b9a",
                    pick(|d| d.counts.blocked + d.counts.coached),
                ),
            ],
        ));
    }

    h.push_str("<h2>Apps</h2>");
    let _ = write!(
        h,
        "<p class=\"note\"><span class=\"tag\" style=\"background:{SANCTIONED}\">sanctioned</span> <span class=\"tag\" style=\"background:{SHADOW}\">shadow</span></p>"
    );
    let bars: Vec<(String, u64, &str)> = r
        .apps
        .iter()
        .map(|a| {
            (
                a.app.clone(),
                a.counts.requests,
                if a.sanctioned { SANCTIONED } else { SHADOW },
            )
        })
        .collect();
    h.push_str(&bar_chart("requests by app", &bars));
    h.push_str("<table><tr><th>app</th><th class=\"l\">vendor</th><th class=\"l\">status</th><th>requests</th><th>share</th><th>people</th><th>with findings</th><th>blocked</th><th>coached</th><th>redacted</th></tr>");
    for a in &r.apps {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.app),
            esc(&a.vendor),
            if a.sanctioned { "sanctioned" } else { "shadow" },
            a.counts.requests,
            percent(a.share),
            a.users,
            a.counts.with_findings,
            a.counts.blocked,
            a.counts.coached,
            a.counts.redacted
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>People and groups per app</h2><table><tr><th>app</th><th>people</th><th class=\"l\">top people (requests)</th><th class=\"l\">groups (requests, people)</th></tr>");
    for a in &r.apps {
        let users: Vec<String> = a
            .top_users
            .iter()
            .map(|u| format!("{} ({})", esc(&u.name), u.requests))
            .collect();
        let groups: Vec<String> = a
            .groups
            .iter()
            .map(|g| format!("{} ({}, {})", esc(&g.group), g.requests, g.users))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
            esc(&a.app),
            a.users,
            users.join(", "),
            if groups.is_empty() {
                "–".into()
            } else {
                groups.join(", ")
            }
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Sensitive data by detector</h2>");
    if r.detectors.is_empty() {
        h.push_str("<p class=\"note\">No findings.</p>");
    } else {
        let bars: Vec<(String, u64, &str)> = r
            .detectors
            .iter()
            .map(|d| (d.detector.clone(), d.requests, severity_color(&d.severity)))
            .collect();
        h.push_str(&bar_chart("requests by detector", &bars));
        h.push_str("<table><tr><th>detector</th><th class=\"l\">severity</th><th>requests</th><th>matches</th><th>people</th><th>apps</th></tr>");
        for d in &r.detectors {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"l\"><span class=\"tag\" style=\"background:{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.detector),
                severity_color(&d.severity),
                esc(&d.severity),
                d.requests,
                d.matches,
                d.users,
                d.apps
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Decisions</h2>");
    let bars: Vec<(String, u64, &str)> = r
        .decisions
        .iter()
        .map(|d| (d.decision.clone(), d.requests, decision_color(&d.decision)))
        .collect();
    h.push_str(&bar_chart("requests by decision", &bars));

    let _ = write!(
        h,
        "<h2>Top risky people</h2><p class=\"note\">score = {}</p>{}",
        esc(r.risk_formula),
        risk_table(&r.risky_users, "person")
    );
    let _ = write!(
        h,
        "<h2>Top risky apps</h2>{}",
        risk_table(&r.risky_apps, "app")
    );

    h.push_str("<h2>Per day</h2><table><tr><th>day</th><th>requests</th><th>sanctioned</th><th>shadow</th><th>with findings</th><th>blocked</th><th>coached</th><th>redacted</th><th>people</th></tr>");
    for d in &r.days {
        let c = &d.counts;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.day),
            c.requests,
            d.sanctioned,
            d.shadow,
            c.with_findings,
            c.blocked,
            c.coached,
            c.redacted,
            d.users
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Sources</h2><ul>");
    for f in &i.files {
        let _ = write!(h, "<li><code>{}</code></li>", esc(f));
    }
    h.push_str("</ul>");
    let _ = write!(
        h,
        "<p class=\"note\">{} events counted, {} outside the window, {} malformed lines skipped, {} unreadable file ends. Raw prompt content is never in the audit log: findings are detector names and counts.</p>",
        i.events, i.outside_window, i.malformed_lines, i.unreadable_tails
    );
    if !i.warnings.is_empty() {
        h.push_str("<div class=\"warn\"><b>Warnings</b><ul>");
        for w in &i.warnings {
            let _ = write!(h, "<li>{}</li>", esc(w));
        }
        h.push_str("</ul></div>");
    }
    h.push_str("</body></html>\n");
    out.write_all(h.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert('x')</script>&"#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
        assert_eq!(esc("a\"b"), "a&quot;b");
    }

    #[test]
    fn axis_maximum_is_a_round_number() {
        assert_eq!(nice_max(0), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(4500), 5000);
        assert_eq!(nice_max(100_001), 200_000);
    }
}
