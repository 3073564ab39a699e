//! Compensation: when a run fails after changing things, the steps that
//! changed them are undone in reverse order by the tools configured under
//! `[compensations]`. The undo is a plan like any other: proposed, decided
//! by policy, approved, run and recorded.

use std::collections::HashMap;

use serde_json::Value;

use crate::config::Config;
use crate::plan::{Plan, Step, StepId, resolve};
use crate::session::{Event, Record};

/// The plan that undoes what `records` show finished, newest first; `None`
/// when nothing that finished has a compensation.
pub fn compensation_plan(config: &Config, plan: &Plan, records: &[Record]) -> Option<Plan> {
    // Only this plan's latest run counts.
    let start = records
        .iter()
        .rposition(|r| matches!(&r.event, Event::PlanProposed { plan: p } if p == plan))
        .unwrap_or(0);
    let mut finished: Vec<(&StepId, Value, Value)> = Vec::new();
    let mut sent: HashMap<&StepId, Value> = HashMap::new();
    for r in &records[start..] {
        match &r.event {
            Event::StepStarted { step, args, .. } => {
                sent.insert(step, Value::Object(args.clone()));
            }
            Event::StepSucceeded { step, output, .. } => {
                if let Some(args) = sent.get(step) {
                    finished.push((step, args.clone(), output.value()));
                }
            }
            _ => {}
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    for (id, args, output) in finished.into_iter().rev() {
        let Some(original) = plan.step(id) else {
            continue;
        };
        let Some(comp) = config.compensations.get(&original.tool) else {
            continue;
        };
        let scope = HashMap::from([
            (StepId::new("args"), args.clone()),
            (StepId::new("output"), output),
        ]);
        let resolved = match resolve(&comp.args, &scope) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("cannot build the undo of {id}: {e}");
                continue;
            }
        };
        let describe = |text: &str| {
            args.as_object()
                .map(|a| {
                    a.iter().fold(text.to_string(), |t, (k, v)| {
                        t.replace(&format!("{{{k}}}"), v.as_str().unwrap_or(&v.to_string()))
                    })
                })
                .unwrap_or_else(|| text.to_string())
        };
        let undo_id = StepId::new(format!("undo_{id}"));
        steps.push(Step {
            id: undo_id,
            tool: comp.tool.clone(),
            args: resolved,
            depends_on: steps.last().map(|s| vec![s.id.clone()]).unwrap_or_default(),
            description: if comp.description.is_empty() {
                format!("undo {id} ({})", original.tool)
            } else {
                describe(&comp.description)
            },
            gate: false,
            timeout_ms: None,
            when: None,
            continue_on_error: false,
            retries: None,
        });
    }
    (!steps.is_empty()).then(|| Plan {
        title: format!("undo: {}", plan.title),
        steps,
    })
}
