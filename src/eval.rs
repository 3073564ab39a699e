//! `opsbot eval planner`: how well a planner (an LLM profile, or the
//! offline one) plans on your own estate. Each case is a request with the
//! tools and arguments expected, or a question expected; each run plans it
//! (nothing is recorded or run) and is scored.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::planner::{ModelCall, Phase, PlanInput, PlanSink, Proposal};
use crate::runtime::Runtime;

/// The case set shipped for the sandbox estate.
pub const SANDBOX_CASES: &str = include_str!("../assets/eval/sandbox.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cases {
    #[serde(rename = "case")]
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub request: String,
    /// The tools the plan should call (as a set).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Arguments expected per tool (each listed one must match).
    #[serde(default)]
    pub args: BTreeMap<String, Map<String, Value>>,
    /// The planner should ask a question instead of planning.
    #[serde(default)]
    pub asks: bool,
}

/// One case's score over its runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CaseScore {
    pub request: String,
    pub runs: u32,
    /// Runs whose tools were exactly the expected set (or that asked, when
    /// asking was expected).
    pub tools_ok: u32,
    /// Expected arguments found, of those expected, over all runs.
    pub args_ok: u32,
    pub args_expected: u32,
    /// Runs that ended in a plan that validates.
    pub valid: u32,
    pub asked: u32,
    pub repairs: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub latencies_ms: Vec<u64>,
    /// What went wrong in the last failing run, if any.
    pub last_problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub planner: String,
    pub cases: Vec<CaseScore>,
    pub tool_accuracy: f64,
    pub arg_accuracy: f64,
    pub valid_rate: f64,
    pub repairs_per_request: f64,
    pub prompt_tokens_per_request: f64,
    pub completion_tokens_per_request: f64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    /// None when the model has no price in `[llm.prices]`.
    pub cost_per_1000: Option<f64>,
}

/// Counts what a planner reports while it plans; records nothing.
#[derive(Default)]
struct Counter {
    calls: Mutex<Vec<ModelCall>>,
    repairs: Mutex<u32>,
}

impl PlanSink for Counter {
    fn call_finished(&self, call: ModelCall) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(call);
        }
    }
    fn phase(&self, phase: Phase) {
        if let (Phase::Calling { repair, .. }, Ok(mut r)) = (phase, self.repairs.lock()) {
            *r = (*r).max(repair);
        }
    }
}

pub fn parse(text: &str) -> Result<Cases, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// Plan every case `runs` times with `profile` (None: the planner the
/// config chooses; `runbook`: the offline planner).
pub async fn run(
    rt: &Runtime,
    profile: Option<&str>,
    cases: &Cases,
    runs: u32,
) -> Result<Report, String> {
    let planner = match profile {
        Some("runbook" | "offline") => rt.planner_for(None),
        Some(p) => rt.planner_for(Some(p)),
        None => Ok(rt.planner()),
    }
    .map_err(|e| e.to_string())?;
    if planner.needs_catalog() {
        rt.servers.wait_settled().await;
    }
    let prices = &rt.config.config.llm.prices;
    let mut priced = true;
    let mut scores = Vec::new();
    for case in &cases.cases {
        let mut score = CaseScore {
            request: case.request.clone(),
            ..CaseScore::default()
        };
        for _ in 0..runs {
            let sink = Counter::default();
            let started = Instant::now();
            let result = planner.plan(&PlanInput::new(&case.request), &sink).await;
            score
                .latencies_ms
                .push(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            score.runs += 1;
            score.repairs += sink.repairs.lock().map(|r| *r).unwrap_or(0);
            for call in sink.calls.lock().map(|c| c.clone()).unwrap_or_default() {
                score.prompt_tokens += call.prompt_tokens;
                score.completion_tokens += call.completion_tokens;
                match crate::usage::cost(
                    prices,
                    &call.model,
                    call.prompt_tokens,
                    call.completion_tokens,
                ) {
                    Some(c) => score.cost_usd += c,
                    None => priced = false,
                }
            }
            score.args_expected += case.args.values().map(|a| a.len() as u32).sum::<u32>();
            match result {
                Ok(Proposal::Clarify { question }) => {
                    score.asked += 1;
                    if case.asks {
                        score.tools_ok += 1;
                    } else {
                        score.last_problem = Some(format!("asked: {question}"));
                    }
                }
                Ok(Proposal::Plan(mut plan)) => {
                    rt.canonicalize(&mut plan);
                    let valid = crate::plan::validate(&plan, &rt.servers.catalog()).is_ok();
                    if valid {
                        score.valid += 1;
                    }
                    let mut planned: Vec<&str> =
                        plan.steps.iter().map(|s| s.tool.as_str()).collect();
                    planned.sort_unstable();
                    planned.dedup();
                    let mut expected: Vec<&str> = case.tools.iter().map(String::as_str).collect();
                    expected.sort_unstable();
                    expected.dedup();
                    if !case.asks && planned == expected {
                        score.tools_ok += 1;
                    } else {
                        score.last_problem = Some(if case.asks {
                            format!("planned {} instead of asking", planned.join(", "))
                        } else {
                            format!("planned {}", planned.join(", "))
                        });
                    }
                    for (tool, want) in &case.args {
                        for (k, v) in want {
                            let found = plan
                                .steps
                                .iter()
                                .filter(|s| &s.tool == tool)
                                .any(|s| s.args.get(k) == Some(v));
                            if found {
                                score.args_ok += 1;
                            }
                        }
                    }
                }
                Err(e) => score.last_problem = Some(e.to_string()),
            }
        }
        scores.push(score);
    }
    Ok(summarise(planner.name(), scores, priced))
}

fn summarise(planner: &str, cases: Vec<CaseScore>, priced: bool) -> Report {
    let runs: u32 = cases.iter().map(|c| c.runs).sum();
    let n = f64::from(runs.max(1));
    let sum = |f: fn(&CaseScore) -> u32| f64::from(cases.iter().map(f).sum::<u32>());
    let args_expected = sum(|c| c.args_expected);
    let planned_runs = f64::from(
        cases
            .iter()
            .map(|c| c.runs - c.asked.min(c.runs))
            .sum::<u32>()
            .max(1),
    );
    let mut latencies: Vec<u64> = cases.iter().flat_map(|c| c.latencies_ms.clone()).collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let prompt: u64 = cases.iter().map(|c| c.prompt_tokens).sum();
    let completion: u64 = cases.iter().map(|c| c.completion_tokens).sum();
    let cost: f64 = cases.iter().map(|c| c.cost_usd).sum();
    Report {
        planner: planner.to_string(),
        tool_accuracy: sum(|c| c.tools_ok) / n,
        arg_accuracy: if args_expected > 0.0 {
            sum(|c| c.args_ok) / args_expected
        } else {
            1.0
        },
        valid_rate: sum(|c| c.valid) / planned_runs,
        repairs_per_request: sum(|c| c.repairs) / n,
        prompt_tokens_per_request: prompt as f64 / n,
        completion_tokens_per_request: completion as f64 / n,
        p50_ms: pct(0.5),
        p95_ms: pct(0.95),
        cost_per_1000: priced.then_some(cost / n * 1000.0),
        cases,
    }
}

/// The report as a table, one line a case, then the totals.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{:<46} {:>6} {:>7} {:>6} {:>7} {:>13} {:>8}\n",
        "case", "tools", "args", "valid", "repairs", "tokens in/out", "p50"
    );
    for c in &report.cases {
        let mut l = c.latencies_ms.clone();
        l.sort_unstable();
        let p50 = l.get(l.len().saturating_sub(1) / 2).copied().unwrap_or(0);
        out.push_str(&format!(
            "{:<46} {:>6} {:>7} {:>6} {:>7} {:>13} {:>8}\n",
            crate::text::truncate(&c.request, 46),
            format!("{}/{}", c.tools_ok, c.runs),
            if c.args_expected == 0 {
                "-".to_string()
            } else {
                format!("{}/{}", c.args_ok, c.args_expected)
            },
            format!("{}/{}", c.valid, c.runs - c.asked.min(c.runs)),
            c.repairs,
            format!(
                "{}/{}",
                c.prompt_tokens / u64::from(c.runs.max(1)),
                c.completion_tokens / u64::from(c.runs.max(1))
            ),
            crate::session::duration(p50),
        ));
        if let Some(p) = &c.last_problem {
            out.push_str(&format!("    {}\n", crate::text::truncate(p, 110)));
        }
    }
    out.push_str(&format!(
        "\n{}: tool selection {:.0}% · arguments {:.0}% · valid plans {:.0}% · {:.2} repairs/request · {:.0} in + {:.0} out tokens/request · p50 {} p95 {} · {}\n",
        report.planner,
        report.tool_accuracy * 100.0,
        report.arg_accuracy * 100.0,
        report.valid_rate * 100.0,
        report.repairs_per_request,
        report.prompt_tokens_per_request,
        report.completion_tokens_per_request,
        crate::session::duration(report.p50_ms),
        crate::session::duration(report.p95_ms),
        match report.cost_per_1000 {
            Some(c) => format!("${c:.2} per 1,000 requests"),
            None => "no price for the model in [llm.prices]".into(),
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_cases_parse() {
        let cases = parse(SANDBOX_CASES).expect("cases");
        assert!(cases.cases.len() >= 10);
        assert!(cases.cases.iter().any(|c| c.asks));
    }
}
