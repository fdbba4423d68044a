//! Folding events into totals, and the finished [`Report`] every output
//! format renders.
//!
//! Memory grows with the number of distinct keys — apps, users, groups,
//! detectors, days and their pairs — never with the number of events.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};

use super::read::Parsed;

/// How many entries the "top risky" lists and the warnings list keep.
pub const TOP: usize = 10;

/// Days between the first and the last event are filled with zero rows
/// for the trend, up to this span; beyond it only days with events appear.
const MAX_FILLED_DAYS: i64 = 3660;

/// How the risk ranking weighs what happened, documented in every format.
pub const RISK_FORMULA: &str = "3 x block + 2 x coach + redact + requests with findings";

/// Per-key request counters.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    /// Requests with at least one finding.
    pub with_findings: u64,
    /// Sum of finding counts.
    pub findings: u64,
    pub blocked: u64,
    pub coached: u64,
    pub redacted: u64,
    /// Coach messages acknowledged with a justification (decision `ack`
    /// events; not requests, so not in `requests`).
    pub acknowledged: u64,
}

impl Counts {
    fn add(&mut self, decision: &str, matches: u64) {
        self.requests += 1;
        if matches > 0 {
            self.with_findings += 1;
            self.findings += matches;
        }
        match decision {
            "block" => self.blocked += 1,
            "coach" => self.coached += 1,
            "redact" => self.redacted += 1,
            _ => {}
        }
    }

    /// See [`RISK_FORMULA`].
    pub fn risk(&self) -> u64 {
        3 * self.blocked + 2 * self.coached + self.redacted + self.with_findings
    }
}

#[derive(Default)]
struct AppAcc {
    vendor: String,
    sanctioned: bool,
    /// Time of the event `vendor`/`sanctioned` come from (the latest wins).
    seen: Option<OffsetDateTime>,
    counts: Counts,
    decisions: BTreeMap<String, u64>,
    users: BTreeMap<String, Counts>,
    groups: BTreeMap<String, GroupAcc>,
}

#[derive(Default)]
struct GroupAcc {
    requests: u64,
    users: BTreeSet<String>,
}

#[derive(Default)]
struct UserAcc {
    counts: Counts,
    shadow: bool,
}

#[derive(Default)]
struct DetectorAcc {
    severity: String,
    requests: u64,
    matches: u64,
    users: BTreeSet<String>,
    apps: BTreeSet<String>,
}

#[derive(Default)]
struct DayAcc {
    counts: Counts,
    sanctioned: u64,
    shadow: u64,
    users: BTreeSet<String>,
}

/// Running totals over every event read.
#[derive(Default)]
pub struct Accumulator {
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
    counts: Counts,
    sanctioned: u64,
    req_bytes: u64,
    apps: BTreeMap<String, AppAcc>,
    users: BTreeMap<String, UserAcc>,
    detectors: BTreeMap<String, DetectorAcc>,
    decisions: BTreeMap<String, u64>,
    days: BTreeMap<Date, DayAcc>,
}

/// Where the numbers came from.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Inputs {
    pub files: Vec<String>,
    /// Events counted in the report.
    pub events: u64,
    /// Well-formed events older than the `--since` window.
    pub outside_window: u64,
    /// Lines skipped because they are not audit events.
    pub malformed_lines: u64,
    /// Files whose end could not be read (truncated or corrupt gzip).
    pub unreadable_tails: u64,
    /// The first warnings as `file:line: message`.
    pub warnings: Vec<String>,
}

impl Inputs {
    /// Records a warning; only the first [`TOP`] are kept in the report.
    pub fn warn(&mut self, warning: String) {
        tracing::warn!("{warning}");
        if self.warnings.len() < TOP {
            self.warnings.push(warning);
        }
    }
}

/// The time span the report covers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Period {
    /// First event (RFC 3339, UTC); `None` without events.
    pub first_event: Option<String>,
    pub last_event: Option<String>,
    /// Start of the `--since` window, when one was given.
    pub window_start: Option<String>,
    /// When the report was made.
    pub generated: String,
    /// Calendar days (UTC) from the first event to the last, inclusive.
    pub days: u64,
}

/// Report-wide totals.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Totals {
    #[serde(flatten)]
    pub counts: Counts,
    pub sanctioned_requests: u64,
    pub shadow_requests: u64,
    /// Share of requests that went to unsanctioned apps, 0–1.
    pub shadow_share: f64,
    pub apps: u64,
    pub shadow_apps: u64,
    pub users: u64,
    /// People who used at least one unsanctioned app.
    pub shadow_users: u64,
    pub req_bytes: u64,
}

/// One app.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppRow {
    pub app: String,
    pub vendor: String,
    pub sanctioned: bool,
    #[serde(flatten)]
    pub counts: Counts,
    /// Share of all requests, 0–1.
    pub share: f64,
    pub users: u64,
    pub groups: Vec<GroupRow>,
    pub decisions: BTreeMap<String, u64>,
    /// The app's heaviest users (at most [`TOP`]).
    pub top_users: Vec<NameCount>,
}

/// A group's use of one app.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupRow {
    pub group: String,
    pub requests: u64,
    pub users: u64,
}

/// A name with a request count.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NameCount {
    pub name: String,
    pub requests: u64,
}

/// One app × user pair.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AppUserRow {
    pub app: String,
    pub user: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// One detector.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DetectorRow {
    pub detector: String,
    /// Highest severity seen.
    pub severity: String,
    /// Requests with this finding.
    pub requests: u64,
    /// Sum of its counts.
    pub matches: u64,
    pub users: u64,
    pub apps: u64,
}

/// One decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionRow {
    pub decision: String,
    pub requests: u64,
    pub share: f64,
}

/// An entry of a "top risky" list.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RiskRow {
    pub name: String,
    pub score: u64,
    #[serde(flatten)]
    pub counts: Counts,
}

/// One calendar day (UTC).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DayRow {
    pub day: String,
    #[serde(flatten)]
    pub counts: Counts,
    pub sanctioned: u64,
    pub shadow: u64,
    pub users: u64,
}

/// Everything a report says, in the order the text report says it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub period: Period,
    pub inputs: Inputs,
    pub totals: Totals,
    /// By requests, most first.
    pub apps: Vec<AppRow>,
    /// By app, then requests (most first).
    pub app_users: Vec<AppUserRow>,
    /// By requests with the finding, most first.
    pub detectors: Vec<DetectorRow>,
    /// By requests, most first.
    pub decisions: Vec<DecisionRow>,
    /// Ranked by [`RISK_FORMULA`]; only non-zero scores.
    pub risk_formula: &'static str,
    pub risky_users: Vec<RiskRow>,
    pub risky_apps: Vec<RiskRow>,
    /// Chronological.
    pub days: Vec<DayRow>,
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => 0,
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

impl Accumulator {
    /// Folds one event in.
    pub fn add(&mut self, parsed: &Parsed) {
        let r = &parsed.record;
        let ts = parsed.ts;
        let user = if !r.user.is_empty() {
            r.user.as_str()
        } else {
            r.client_ip.as_deref().unwrap_or("-")
        };
        self.first = Some(self.first.map_or(ts, |t| t.min(ts)));
        self.last = Some(self.last.map_or(ts, |t| t.max(ts)));
        if r.decision == "ack" {
            // An acknowledgement on the admin listener, not a request: its
            // findings repeat the coached request's, its vendor is empty.
            self.counts.acknowledged += 1;
            entry(&mut self.apps, &r.app).counts.acknowledged += 1;
            entry(&mut self.users, user).counts.acknowledged += 1;
            let day = self
                .days
                .entry(ts.to_offset(UtcOffset::UTC).date())
                .or_default();
            day.counts.acknowledged += 1;
            return;
        }
        let matches: u64 = r.findings.iter().map(|f| f.count).sum();
        let decision = r.decision.as_str();

        self.counts.add(decision, matches);
        self.sanctioned += u64::from(r.sanctioned);
        self.req_bytes = self.req_bytes.saturating_add(r.req_bytes);
        *self.decisions.entry(r.decision.clone()).or_default() += 1;

        let app = self.apps.entry(r.app.clone()).or_default();
        if app.seen.is_none_or(|seen| ts >= seen) {
            app.seen = Some(ts);
            app.vendor.clone_from(&r.vendor);
            app.sanctioned = r.sanctioned;
        }
        app.counts.add(decision, matches);
        *app.decisions.entry(r.decision.clone()).or_default() += 1;
        entry(&mut app.users, user).add(decision, matches);
        for group in r.groups.iter().flatten() {
            let g = entry(&mut app.groups, group);
            g.requests += 1;
            if !g.users.contains(user) {
                g.users.insert(user.to_string());
            }
        }

        let u = entry(&mut self.users, user);
        u.counts.add(decision, matches);
        u.shadow |= !r.sanctioned;

        for f in &r.findings {
            let d = entry(&mut self.detectors, &f.detector);
            if severity_rank(&f.severity) > severity_rank(&d.severity) || d.severity.is_empty() {
                d.severity.clone_from(&f.severity);
            }
            d.requests += 1;
            d.matches += f.count;
            if !d.users.contains(user) {
                d.users.insert(user.to_string());
            }
            if !d.apps.contains(&r.app) {
                d.apps.insert(r.app.clone());
            }
        }

        let day = self
            .days
            .entry(ts.to_offset(UtcOffset::UTC).date())
            .or_default();
        day.counts.add(decision, matches);
        if r.sanctioned {
            day.sanctioned += 1;
        } else {
            day.shadow += 1;
        }
        if !day.users.contains(user) {
            day.users.insert(user.to_string());
        }
    }

    /// The finished report.
    pub fn finish(
        self,
        inputs: Inputs,
        window_start: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Report {
        let total = self.counts.requests;
        let shadow_requests = total - self.sanctioned;

        let mut apps: Vec<AppRow> = self
            .apps
            .iter()
            .map(|(name, a)| {
                let mut top_users: Vec<NameCount> = a
                    .users
                    .iter()
                    .map(|(u, c)| NameCount {
                        name: u.clone(),
                        requests: c.requests,
                    })
                    .collect();
                top_users.sort_by(|x, y| y.requests.cmp(&x.requests).then(x.name.cmp(&y.name)));
                top_users.truncate(TOP);
                let mut groups: Vec<GroupRow> = a
                    .groups
                    .iter()
                    .map(|(g, acc)| GroupRow {
                        group: g.clone(),
                        requests: acc.requests,
                        users: acc.users.len() as u64,
                    })
                    .collect();
                groups.sort_by(|x, y| y.requests.cmp(&x.requests).then(x.group.cmp(&y.group)));
                AppRow {
                    app: name.clone(),
                    vendor: a.vendor.clone(),
                    sanctioned: a.sanctioned,
                    counts: a.counts,
                    share: share(a.counts.requests, total),
                    users: a.users.len() as u64,
                    groups,
                    decisions: a.decisions.clone(),
                    top_users,
                }
            })
            .collect();
        apps.sort_by(|x, y| {
            y.counts
                .requests
                .cmp(&x.counts.requests)
                .then(x.app.cmp(&y.app))
        });

        let mut app_users: Vec<AppUserRow> = self
            .apps
            .iter()
            .flat_map(|(app, a)| {
                a.users.iter().map(move |(user, c)| AppUserRow {
                    app: app.clone(),
                    user: user.clone(),
                    counts: *c,
                })
            })
            .collect();
        app_users.sort_by(|x, y| {
            x.app
                .cmp(&y.app)
                .then(y.counts.requests.cmp(&x.counts.requests))
                .then(x.user.cmp(&y.user))
        });

        let mut detectors: Vec<DetectorRow> = self
            .detectors
            .iter()
            .map(|(name, d)| DetectorRow {
                detector: name.clone(),
                severity: d.severity.clone(),
                requests: d.requests,
                matches: d.matches,
                users: d.users.len() as u64,
                apps: d.apps.len() as u64,
            })
            .collect();
        detectors.sort_by(|x, y| {
            y.requests
                .cmp(&x.requests)
                .then(x.detector.cmp(&y.detector))
        });

        let mut decisions: Vec<DecisionRow> = self
            .decisions
            .iter()
            .map(|(d, n)| DecisionRow {
                decision: d.clone(),
                requests: *n,
                share: share(*n, total),
            })
            .collect();
        decisions.sort_by(|x, y| {
            y.requests
                .cmp(&x.requests)
                .then(x.decision.cmp(&y.decision))
        });

        let risky = |rows: Vec<(String, Counts)>| -> Vec<RiskRow> {
            let mut rows: Vec<RiskRow> = rows
                .into_iter()
                .map(|(name, counts)| RiskRow {
                    name,
                    score: counts.risk(),
                    counts,
                })
                .filter(|r| r.score > 0)
                .collect();
            rows.sort_by(|x, y| y.score.cmp(&x.score).then(x.name.cmp(&y.name)));
            rows.truncate(TOP);
            rows
        };
        let risky_users = risky(
            self.users
                .iter()
                .map(|(n, u)| (n.clone(), u.counts))
                .collect(),
        );
        let risky_apps = risky(
            self.apps
                .iter()
                .map(|(n, a)| (n.clone(), a.counts))
                .collect(),
        );

        let days = day_rows(&self.days);
        let span = match (self.first, self.last) {
            (Some(first), Some(last)) => {
                let first = first.to_offset(UtcOffset::UTC).date();
                let last = last.to_offset(UtcOffset::UTC).date();
                (last - first).whole_days().unsigned_abs() + 1
            }
            _ => 0,
        };

        Report {
            period: Period {
                first_event: self.first.map(rfc3339),
                last_event: self.last.map(rfc3339),
                window_start: window_start.map(rfc3339),
                generated: rfc3339(now.replace_nanosecond(0).unwrap_or(now)),
                days: span,
            },
            inputs,
            totals: Totals {
                counts: self.counts,
                sanctioned_requests: self.sanctioned,
                shadow_requests,
                shadow_share: share(shadow_requests, total),
                apps: self.apps.len() as u64,
                shadow_apps: self.apps.values().filter(|a| !a.sanctioned).count() as u64,
                users: self.users.len() as u64,
                shadow_users: self.users.values().filter(|u| u.shadow).count() as u64,
                req_bytes: self.req_bytes,
            },
            apps,
            app_users,
            detectors,
            decisions,
            risk_formula: RISK_FORMULA,
            risky_users,
            risky_apps,
            days,
        }
    }
}

/// The map's entry for `key`, allocating the key only when it is new.
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// Day rows, with empty days between events filled in (bounded).
fn day_rows(days: &BTreeMap<Date, DayAcc>) -> Vec<DayRow> {
    let row = |day: Date, acc: Option<&DayAcc>| DayRow {
        day: day.to_string(),
        counts: acc.map(|a| a.counts).unwrap_or_default(),
        sanctioned: acc.map_or(0, |a| a.sanctioned),
        shadow: acc.map_or(0, |a| a.shadow),
        users: acc.map_or(0, |a| a.users.len() as u64),
    };
    let (Some((&first, _)), Some((&last, _))) = (days.first_key_value(), days.last_key_value())
    else {
        return Vec::new();
    };
    if (last - first).whole_days() > MAX_FILLED_DAYS {
        return days.iter().map(|(d, a)| row(*d, Some(a))).collect();
    }
    let mut rows = Vec::new();
    let mut day = Some(first);
    while let Some(d) = day.filter(|d| *d <= last) {
        rows.push(row(d, days.get(&d)));
        day = d.next_day();
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::super::read::{parse, Line};
    use super::*;

    fn add(acc: &mut Accumulator, line: &str) {
        match parse(line.as_bytes()) {
            Line::Event(p) => acc.add(&p),
            _ => panic!("bad test line {line}"),
        }
    }

    #[test]
    fn empty_days_between_events_are_filled_with_zeros() {
        let mut acc = Accumulator::default();
        add(
            &mut acc,
            r#"{"ts":"2025-01-01T23:00:00Z","app":"a","decision":"log"}"#,
        );
        add(
            &mut acc,
            r#"{"ts":"2025-01-04T01:00:00+02:00","app":"a","decision":"log"}"#,
        );
        let report = acc.finish(Inputs::default(), None, OffsetDateTime::UNIX_EPOCH);
        let days: Vec<(&str, u64)> = report
            .days
            .iter()
            .map(|d| (d.day.as_str(), d.counts.requests))
            .collect();
        // 01:00+02:00 on the 4th is 23:00 UTC on the 3rd.
        assert_eq!(
            days,
            [("2025-01-01", 1), ("2025-01-02", 0), ("2025-01-03", 1)]
        );
        assert_eq!(report.period.days, 3);
    }

    #[test]
    fn acknowledgements_are_counted_apart_from_requests() {
        let mut acc = Accumulator::default();
        add(
            &mut acc,
            r#"{"ts":"2025-01-01T10:00:00Z","user":"bob","app":"a","vendor":"V","decision":"coach","findings":[{"detector":"pii.email","severity":"medium","count":1}]}"#,
        );
        add(
            &mut acc,
            r#"{"ts":"2025-01-01T10:05:00Z","user":"bob","app":"a","vendor":"","decision":"ack","findings":[{"detector":"pii.email","severity":"","count":1}],"justification":"customer asked"}"#,
        );
        let report = acc.finish(Inputs::default(), None, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(report.totals.counts.requests, 1);
        assert_eq!(report.totals.counts.findings, 1);
        assert_eq!(report.totals.counts.acknowledged, 1);
        assert_eq!(report.apps[0].vendor, "V");
        assert_eq!(report.apps[0].counts.acknowledged, 1);
        assert_eq!(report.detectors[0].requests, 1);
        assert_eq!(report.decisions.len(), 1);
        assert_eq!(report.days[0].counts.acknowledged, 1);
    }

    #[test]
    fn risk_weighs_blocks_over_coaching_over_findings() {
        let c = Counts {
            requests: 10,
            with_findings: 4,
            findings: 9,
            blocked: 1,
            coached: 2,
            redacted: 1,
            acknowledged: 2,
        };
        assert_eq!(c.risk(), 3 + 4 + 1 + 4);
    }

    #[test]
    fn the_latest_event_says_whether_an_app_is_sanctioned() {
        let mut acc = Accumulator::default();
        add(
            &mut acc,
            r#"{"ts":"2025-01-02T00:00:00Z","app":"a","vendor":"V2","sanctioned":true,"decision":"log"}"#,
        );
        add(
            &mut acc,
            r#"{"ts":"2025-01-01T00:00:00Z","app":"a","vendor":"V1","sanctioned":false,"decision":"log"}"#,
        );
        let report = acc.finish(Inputs::default(), None, OffsetDateTime::UNIX_EPOCH);
        assert!(report.apps[0].sanctioned);
        assert_eq!(report.apps[0].vendor, "V2");
        assert_eq!(report.totals.shadow_requests, 1);
    }
}
