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
        .rposition(|r| matches!(&r.event, Event::PlanProposed { plan: p, .. } if p == plan))
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
        let Some(comp) = original
            .undo
            .as_ref()
            .or_else(|| config.compensations.get(&original.tool))
        else {
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
        steps.push(Step {
            depends_on: steps.last().map(|s| vec![s.id.clone()]).unwrap_or_default(),
            description: if comp.description.is_empty() {
                format!("undo {id} ({})", original.tool)
            } else {
                describe(&comp.description)
            },
            ..Step::new(format!("undo_{id}"), comp.tool.clone(), resolved)
        });
    }
    (!steps.is_empty()).then(|| Plan {
        title: format!("undo: {}", plan.title),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Compensation, ConfigSource, DEFAULT_TOML, load_layers};
    use crate::mcp::ToolOutput;
    use serde_json::json;

    use crate::session::test_record as record;

    fn step(id: &str, tool: &str, args: serde_json::Value) -> Step {
        Step::new(id, tool, args.as_object().cloned().unwrap_or_default())
    }

    fn done(seq: i64, s: &Step, output: serde_json::Value) -> [Record; 2] {
        [
            record(
                seq,
                Event::StepStarted {
                    step: s.id.clone(),
                    tool: s.tool.clone(),
                    args: s.args.clone(),
                },
            ),
            record(
                seq + 1,
                Event::StepSucceeded {
                    step: s.id.clone(),
                    output: ToolOutput {
                        is_error: false,
                        text: String::new(),
                        structured: Some(output),
                        truncated: None,
                        content: None,
                        meta: None,
                        task: None,
                    },
                    duration_ms: 1,
                },
            ),
        ]
    }

    #[test]
    fn finished_changes_are_undone_newest_first_with_a_step_undo_winning() {
        let config = load_layers(vec![ConfigSource {
            name: "d".into(),
            text: DEFAULT_TOML.into(),
        }])
        .expect("config")
        .config;
        let deploy = step(
            "deploy",
            "k8s.deploy",
            json!({"service": "checkout", "env": "staging", "image": "i"}),
        );
        let mut down = step(
            "down",
            "k8s.scale",
            json!({"service": "checkout", "env": "staging", "replicas": 0}),
        );
        down.undo = Some(Compensation {
            tool: "k8s.scale".into(),
            args: json!({"service": "${args.service}", "env": "${args.env}", "replicas": "${output.previous_replicas}"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            description: "scale back up".into(),
        });
        let status = step(
            "status",
            "k8s.status",
            json!({"service": "checkout", "env": "staging"}),
        );
        let plan = Plan {
            title: "t".into(),
            steps: vec![deploy.clone(), down.clone(), status.clone()],
        };
        let mut records = vec![record(
            1,
            Event::PlanProposed {
                plan: plan.clone(),
                defs: Default::default(),
                influenced_by: Vec::new(),
            },
        )];
        records.extend(done(
            2,
            &deploy,
            json!({"revision": 5, "previous_revision": 4}),
        ));
        records.extend(done(
            4,
            &down,
            json!({"replicas": 0, "previous_replicas": 3}),
        ));
        records.extend(done(6, &status, json!({"revision": 5})));
        let undo = compensation_plan(&config, &plan, &records).expect("an undo");
        let ids: Vec<&str> = undo.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            ["undo_down", "undo_deploy"],
            "newest first; reads need no undo"
        );
        assert_eq!(undo.steps[0].args["replicas"], 3);
        assert_eq!(undo.steps[1].tool, "k8s.rollback");
        assert_eq!(undo.steps[1].args["to_revision"], 4);
        assert_eq!(undo.steps[1].depends_on, vec![StepId::new("undo_down")]);
    }
}
