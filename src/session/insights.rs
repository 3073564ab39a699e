//! What happened, in aggregate, computed from the log offline: runs per
//! day and their outcomes, step durations and failures by tool and server,
//! time spent waiting for approvals, denials by rule, and model use per
//! day. Runs come from the sessions table, the rest from day-by-day tallies
//! (see rollup.rs), so it stays quick on a large log.

use std::collections::{BTreeMap, HashMap};

use rusqlite::params;
use serde::Serialize;

use super::store::{Store, StoreError};

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Day {
    pub day: String,
    pub runs: u64,
    /// Runs by outcome (`succeeded`, `failed`, …).
    pub outcomes: BTreeMap<String, u64>,
    pub llm_tokens: u64,
    pub llm_cost_usd: f64,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct ToolStats {
    pub tool: String,
    pub calls: u64,
    pub failures: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Insights {
    pub since: Option<String>,
    pub runs: u64,
    pub succeeded: u64,
    /// Of the runs that ended, the share that succeeded.
    pub success_rate: Option<f64>,
    pub days: Vec<Day>,
    /// By calls, most first.
    pub tools: Vec<ToolStats>,
    /// Failed steps by server, most first.
    pub failures_by_server: Vec<(String, u64)>,
    pub approvals: u64,
    pub approval_wait_p50_s: Option<f64>,
    pub approval_wait_p95_s: Option<f64>,
    pub approval_wait_total_s: f64,
    /// Denials by rule, most first.
    pub denials: Vec<(String, u64)>,
    pub llm_tokens: u64,
    pub llm_cost_usd: f64,
}

/// The `p` quantile of values given as (value, how many), by value.
fn weighted_percentile(sorted: &[(i64, u64)], p: f64) -> i64 {
    let total: u64 = sorted.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return 0;
    }
    let at = ((total - 1) as f64 * p).round() as u64;
    let mut seen = 0;
    for (value, n) in sorted {
        seen += n;
        if seen > at {
            return *value;
        }
    }
    sorted.last().map_or(0, |(v, _)| *v)
}

/// Seconds between two of the log's timestamps (RFC 3339, UTC).
pub(super) fn seconds_between(from: &str, to: &str) -> Option<f64> {
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    Some((parse(to)? - parse(from)?).as_seconds_f64())
}

fn sorted_desc(map: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<_> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

impl Store {
    /// Insights over sessions and events at or after `since` (RFC 3339 or
    /// a date; none: everything). A run is a session that was asked
    /// something (it has a title): an app opened and closed is not one.
    pub fn insights(&self, since: Option<&str>) -> Result<Insights, StoreError> {
        let from = since.unwrap_or("");
        let conn = self.conn();
        let mut out = Insights {
            since: since.map(str::to_string),
            ..Insights::default()
        };
        let mut days: BTreeMap<String, Day> = BTreeMap::new();
        let mut ended = 0;
        let by_day: Vec<(String, String, i64)> = match self.pg() {
            Some(pg) => pg.runs_by_day(from)?,
            None => {
                let mut stmt = conn.prepare_cached(
                    "SELECT substr(started_at, 1, 10), COALESCE(outcome, 'unfinished'), COUNT(*)
                     FROM sessions WHERE started_at >= ?1 AND title IS NOT NULL
                     GROUP BY 1, 2",
                )?;
                stmt.query_map(params![from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?
            }
        };
        {
            for (d, outcome, n) in by_day {
                let n = n.max(0) as u64;
                let entry = days.entry(d.clone()).or_insert_with(|| Day {
                    day: d.clone(),
                    ..Day::default()
                });
                entry.runs += n;
                *entry.outcomes.entry(outcome.clone()).or_default() += n;
                out.runs += n;
                if outcome == "succeeded" {
                    out.succeeded += n;
                }
                if outcome != "unfinished" && outcome != "interrupted" {
                    ended += n;
                }
            }
        }
        out.success_rate = (ended > 0).then(|| out.succeeded as f64 / ended as f64);

        let (tables, tail) = match self.pg() {
            Some(pg) => (false, super::rollup::tally_of(&pg.facts()?)),
            None => {
                let tables = super::rollup::has_tables(&conn)?;
                if tables && !self.is_read_only() {
                    super::rollup::catch_up(&conn, None, None)?;
                }
                (tables, super::rollup::tail(&conn, tables)?)
            }
        };
        let day_from = from.get(..10).unwrap_or(from);
        let recent = |day: &str| day >= day_from;

        // Steps: calls and failures by tool and duration.
        let mut by_tool: HashMap<String, (BTreeMap<i64, u64>, u64)> = HashMap::new();
        let mut add_step = |tool: String, ms: i64, calls: u64, failures: u64| {
            let e = by_tool.entry(tool).or_default();
            *e.0.entry(ms).or_default() += calls;
            e.1 += failures;
        };
        if tables {
            let mut stmt = conn.prepare_cached(
                "SELECT tool, ms, SUM(calls), SUM(failures) FROM rollup_steps
                 WHERE day >= ?1 GROUP BY tool, ms",
            )?;
            let mut rows = stmt.query(params![day_from])?;
            while let Some(r) = rows.next()? {
                let (calls, failures): (i64, i64) = (r.get(2)?, r.get(3)?);
                add_step(
                    r.get(0)?,
                    r.get(1)?,
                    calls.max(0) as u64,
                    failures.max(0) as u64,
                );
            }
        }
        for ((day, tool, ms), (calls, failures)) in &tail.steps {
            if recent(day) {
                add_step(tool.clone(), *ms, *calls, *failures);
            }
        }
        let mut failures_by_server: HashMap<String, u64> = HashMap::new();
        let mut tools: Vec<ToolStats> = by_tool
            .into_iter()
            .map(|(tool, (durations, failures))| {
                if failures > 0 {
                    let server = tool.split_once('.').map_or(tool.as_str(), |(s, _)| s);
                    *failures_by_server.entry(server.to_string()).or_default() += failures;
                }
                let sorted: Vec<(i64, u64)> = durations.into_iter().collect();
                ToolStats {
                    calls: sorted.iter().map(|(_, n)| n).sum(),
                    failures,
                    p50_ms: weighted_percentile(&sorted, 0.5).max(0) as u64,
                    p95_ms: weighted_percentile(&sorted, 0.95).max(0) as u64,
                    tool,
                }
            })
            .collect();
        tools.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.tool.cmp(&b.tool)));
        out.tools = tools;
        out.failures_by_server = sorted_desc(failures_by_server);

        // Approvals: how many, and how long each waited (tenths of a second).
        let mut waits: BTreeMap<i64, u64> = BTreeMap::new();
        let mut per_day = |days: &mut BTreeMap<String, Day>,
                           day: &str,
                           approvals: u64,
                           tokens: u64,
                           cost: f64| {
            let entry = days.entry(day.to_string()).or_insert_with(|| Day {
                day: day.to_string(),
                ..Day::default()
            });
            entry.llm_tokens += tokens;
            entry.llm_cost_usd += cost;
            out.approvals += approvals;
            out.llm_tokens += tokens;
            out.llm_cost_usd += cost;
        };
        let mut denials: HashMap<String, u64> = HashMap::new();
        if tables {
            let mut stmt = conn.prepare_cached(
                "SELECT ds, SUM(n), SUM(total_s) FROM rollup_waits WHERE day >= ?1 GROUP BY ds",
            )?;
            let mut rows = stmt.query(params![day_from])?;
            while let Some(r) = rows.next()? {
                let (ds, n, total): (i64, i64, f64) = (r.get(0)?, r.get(1)?, r.get(2)?);
                *waits.entry(ds).or_default() += n.max(0) as u64;
                out.approval_wait_total_s += total;
            }
            let mut stmt = conn.prepare_cached(
                "SELECT rule, SUM(n) FROM rollup_denials WHERE day >= ?1 GROUP BY rule",
            )?;
            let mut rows = stmt.query(params![day_from])?;
            while let Some(r) = rows.next()? {
                let (rule, n): (String, i64) = (r.get(0)?, r.get(1)?);
                *denials.entry(rule).or_default() += n.max(0) as u64;
            }
            let mut stmt = conn.prepare_cached(
                "SELECT day, approvals, tokens, cost FROM rollup_days WHERE day >= ?1",
            )?;
            let mut rows = stmt.query(params![day_from])?;
            while let Some(r) = rows.next()? {
                let (day, approvals, tokens, cost): (String, i64, i64, f64) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                per_day(
                    &mut days,
                    &day,
                    approvals.max(0) as u64,
                    tokens.max(0) as u64,
                    cost,
                );
            }
        }
        for ((day, ds), (n, total)) in &tail.waits {
            if recent(day) {
                *waits.entry(*ds).or_default() += n;
                out.approval_wait_total_s += total;
            }
        }
        for ((day, rule), n) in &tail.denials {
            if recent(day) {
                *denials.entry(rule.clone()).or_default() += n;
            }
        }
        for (day, (approvals, tokens, cost)) in &tail.days {
            if recent(day) {
                per_day(&mut days, day, *approvals, *tokens, *cost);
            }
        }
        // A day that only has approvals is not a day with runs to chart.
        days.retain(|_, d| d.runs > 0 || d.llm_tokens > 0 || d.llm_cost_usd > 0.0);
        let waits: Vec<(i64, u64)> = waits.into_iter().collect();
        if !waits.is_empty() {
            out.approval_wait_p50_s = Some(weighted_percentile(&waits, 0.5) as f64 / 10.0);
            out.approval_wait_p95_s = Some(weighted_percentile(&waits, 0.95) as f64 / 10.0);
        }
        out.denials = sorted_desc(denials);

        fill_gaps(&mut days);
        out.days = days.into_values().collect();
        Ok(out)
    }
}

/// Days with nothing between the first and the last, as zeros: a chart
/// of runs per day must not close up the quiet days.
fn fill_gaps(days: &mut BTreeMap<String, Day>) {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let parse = |d: &String| time::Date::parse(d, &fmt).ok();
    let (Some(first), Some(last)) = (
        days.keys().next().and_then(parse),
        days.keys().next_back().and_then(parse),
    ) else {
        return;
    };
    let mut d = first;
    // At most ten years of days: a stray timestamp cannot make a huge chart.
    for _ in 0..3660 {
        if d > last {
            break;
        }
        if let Ok(key) = d.format(&fmt) {
            days.entry(key.clone()).or_insert_with(|| Day {
                day: key,
                ..Day::default()
            });
        }
        match d.next_day() {
            Some(next) => d = next,
            None => break,
        }
    }
}

/// `values` as a one-line chart of block characters, scaled to the largest.
pub fn sparkline(values: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| match max {
            0 => BARS[0],
            _ => BARS[((v * 7 + max / 2) / max).min(7) as usize],
        })
        .collect()
}
