//! What happened, in aggregate, computed from the log offline: runs per
//! day and their outcomes, step durations and failures by tool and server,
//! time spent waiting for approvals, denials by rule, and model use per
//! day. One pass of indexed queries (`events_by_kind`), so it stays quick
//! on a large log.

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

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Seconds between two of the log's timestamps (RFC 3339, UTC).
fn seconds_between(from: &str, to: &str) -> Option<f64> {
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
        {
            let mut stmt = conn.prepare_cached(
                "SELECT substr(started_at, 1, 10), COALESCE(outcome, 'unfinished'), COUNT(*)
                 FROM sessions WHERE started_at >= ?1 AND title IS NOT NULL
                 GROUP BY 1, 2",
            )?;
            let mut rows = stmt.query(params![from])?;
            while let Some(r) = rows.next()? {
                let (d, outcome, n): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
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

        // Steps: the tool each step ran (from its start), then how it ended.
        let mut tool_of: HashMap<(String, String), String> = HashMap::new();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT session_id, json_extract(body, '$.step'), json_extract(body, '$.tool')
                 FROM events WHERE kind = 'step_started' AND ts >= ?1",
            )?;
            let mut rows = stmt.query(params![from])?;
            while let Some(r) = rows.next()? {
                tool_of.insert((r.get(0)?, r.get(1)?), r.get(2)?);
            }
        }
        let mut durations: HashMap<String, (Vec<u64>, u64)> = HashMap::new();
        let mut failures_by_server: HashMap<String, u64> = HashMap::new();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT session_id, json_extract(body, '$.step'), kind, json_extract(body, '$.duration_ms')
                 FROM events WHERE kind IN ('step_succeeded', 'step_failed') AND ts >= ?1",
            )?;
            let mut rows = stmt.query(params![from])?;
            while let Some(r) = rows.next()? {
                let key: (String, String) = (r.get(0)?, r.get(1)?);
                let Some(tool) = tool_of.get(&key) else {
                    continue;
                };
                let failed = r.get::<_, String>(2)? == "step_failed";
                let ms: i64 = r.get::<_, Option<i64>>(3)?.unwrap_or(0);
                let entry = durations.entry(tool.clone()).or_default();
                entry.0.push(ms.max(0) as u64);
                if failed {
                    entry.1 += 1;
                    let server = tool.split_once('.').map_or(tool.as_str(), |(s, _)| s);
                    *failures_by_server.entry(server.to_string()).or_default() += 1;
                }
            }
        }
        let mut tools: Vec<ToolStats> = durations
            .into_iter()
            .map(|(tool, (mut ms, failures))| {
                ms.sort_unstable();
                ToolStats {
                    tool,
                    calls: ms.len() as u64,
                    failures,
                    p50_ms: percentile(&ms, 0.5),
                    p95_ms: percentile(&ms, 0.95),
                }
            })
            .collect();
        tools.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.tool.cmp(&b.tool)));
        out.tools = tools;
        out.failures_by_server = sorted_desc(failures_by_server);

        // Approvals: from a step starting to wait to its approval.
        let mut waiting: HashMap<(String, String), String> = HashMap::new();
        let mut waits = Vec::new();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT session_id, json_extract(body, '$.step'), kind, ts
                 FROM events WHERE kind IN ('awaiting_approval', 'approved') AND ts >= ?1
                 ORDER BY seq",
            )?;
            let mut rows = stmt.query(params![from])?;
            while let Some(r) = rows.next()? {
                let key: (String, String) = (r.get(0)?, r.get(1)?);
                let (kind, ts): (String, String) = (r.get(2)?, r.get(3)?);
                if kind == "awaiting_approval" {
                    waiting.insert(key, ts);
                } else {
                    out.approvals += 1;
                    if let Some(s) = waiting
                        .remove(&key)
                        .and_then(|since| seconds_between(&since, &ts))
                    {
                        waits.push(s.max(0.0));
                    }
                }
            }
        }
        waits.sort_by(|a, b| a.total_cmp(b));
        if !waits.is_empty() {
            let at = |p: f64| waits[((waits.len() - 1) as f64 * p).round() as usize];
            out.approval_wait_p50_s = Some(at(0.5));
            out.approval_wait_p95_s = Some(at(0.95));
            out.approval_wait_total_s = waits.iter().sum();
        }

        let mut denials: HashMap<String, u64> = HashMap::new();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT json_extract(body, '$.decision.rule'), COUNT(*)
                 FROM events WHERE kind IN ('policy_decision', 'policy_recheck') AND ts >= ?1
                   AND json_extract(body, '$.decision.verdict') = 'deny'
                 GROUP BY 1",
            )?;
            let mut rows = stmt.query(params![from])?;
            while let Some(r) = rows.next()? {
                let (rule, n): (Option<String>, i64) = (r.get(0)?, r.get(1)?);
                *denials.entry(rule.unwrap_or_default()).or_default() += n.max(0) as u64;
            }
        }
        out.denials = sorted_desc(denials);

        {
            let mut stmt = conn.prepare_cached(
                "SELECT substr(ts, 1, 10),
                        SUM(json_extract(body, '$.prompt_tokens') + json_extract(body, '$.completion_tokens')),
                        SUM(COALESCE(json_extract(body, '$.cost_usd'), 0))
                 FROM events WHERE kind = 'llm_call' AND ts >= ?1 GROUP BY 1",
            )?;
            let mut rows = stmt.query(params![from])?;
            while let Some(r) = rows.next()? {
                let (d, tokens, cost): (String, Option<i64>, Option<f64>) =
                    (r.get(0)?, r.get(1)?, r.get(2)?);
                let entry = days.entry(d.clone()).or_insert_with(|| Day {
                    day: d.clone(),
                    ..Day::default()
                });
                entry.llm_tokens += tokens.unwrap_or(0).max(0) as u64;
                entry.llm_cost_usd += cost.unwrap_or(0.0);
                out.llm_tokens += tokens.unwrap_or(0).max(0) as u64;
                out.llm_cost_usd += cost.unwrap_or(0.0);
            }
        }
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
