//! Checking a plan before anyone is asked to approve it. All problems are
//! reported at once, each naming its step, so a person (or an LLM repairing
//! its own plan) can fix them in one go.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::template::malformed;
use super::{Plan, StepId, references};
use crate::mcp::Catalog;
use crate::text::closest;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("the plan has no steps")]
    Empty,
    #[error("step id `{0}` may only hold letters, digits, `-` and `_`")]
    InvalidStepId(StepId),
    #[error("step id `{0}` is used more than once")]
    DuplicateStep(StepId),
    #[error("step `{step}`: unknown tool `{tool}`{}", hint(.suggestion))]
    UnknownTool {
        step: StepId,
        tool: String,
        suggestion: Option<String>,
    },
    #[error("step `{step}` depends on unknown step `{dependency}`{}", hint(.suggestion))]
    UnknownDependency {
        step: StepId,
        dependency: StepId,
        suggestion: Option<String>,
    },
    #[error("step `{step}` depends on itself")]
    SelfDependency { step: StepId },
    #[error("steps form a cycle: {}", cycle_text(.0))]
    Cycle(Vec<StepId>),
    #[error("step `{step}`: {message}")]
    BadReference { step: StepId, message: String },
    #[error("step `{step}`: arguments for `{tool}` do not match its schema: {}", .problems.join("; "))]
    BadArgs {
        step: StepId,
        tool: String,
        problems: Vec<String>,
    },
    /// A plan is something a person reads and approves step by step: one
    /// too large to read is refused rather than stored.
    #[error("{what} is {size}; a plan takes at most {limit}")]
    TooLarge {
        what: String,
        size: String,
        limit: String,
    },
}

/// The most steps a plan may have.
pub const MAX_STEPS: usize = 100;
/// The longest plan title, in characters.
pub const MAX_TITLE: usize = 200;
/// The longest step description, in characters.
pub const MAX_DESCRIPTION: usize = 2_000;
/// The most one step's arguments may hold, as JSON.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;

/// What is too large in a plan; checked first, so nothing else looks at a
/// plan that size.
fn too_large(plan: &Plan) -> Vec<PlanError> {
    let mut errors = Vec::new();
    let big = |what: String, size: String, limit: String| PlanError::TooLarge { what, size, limit };
    if plan.steps.len() > MAX_STEPS {
        errors.push(big(
            "the plan".into(),
            format!("{} steps", plan.steps.len()),
            format!("{MAX_STEPS} steps"),
        ));
    }
    let title = plan.title.chars().count();
    if title > MAX_TITLE {
        errors.push(big(
            "the plan's title".into(),
            format!("{title} characters"),
            format!("{MAX_TITLE}"),
        ));
    }
    for step in plan.steps.iter().take(MAX_STEPS) {
        let name = crate::text::truncate(step.id.as_str(), 40);
        let description = step.description.chars().count();
        if description > MAX_DESCRIPTION {
            errors.push(big(
                format!("step `{name}`'s description"),
                format!("{description} characters"),
                format!("{MAX_DESCRIPTION}"),
            ));
        }
        let args = serde_json::to_string(&step.args).map_or(0, |a| a.len());
        if args > MAX_ARGS_BYTES {
            errors.push(big(
                format!("step `{name}`'s arguments"),
                format!("{args} bytes"),
                format!("{MAX_ARGS_BYTES} bytes"),
            ));
        }
        let other =
            step.id.as_str().len() + step.tool.len() + step.when.as_deref().map_or(0, str::len);
        if other > 1_000 {
            errors.push(big(
                format!("step `{name}`'s id, tool and condition"),
                format!("{other} characters"),
                "1000".into(),
            ));
        }
    }
    errors
}

fn hint(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

fn cycle_text(ids: &[StepId]) -> String {
    let mut parts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    if let Some(first) = ids.first() {
        parts.push(first.to_string());
    }
    parts.join(" → ")
}

/// Validate structure, tools, references and arguments.
pub fn validate(plan: &Plan, catalog: &Catalog) -> Result<(), Vec<PlanError>> {
    let mut errors = too_large(plan);
    if !errors.is_empty() {
        return Err(errors);
    }
    if plan.steps.is_empty() {
        return Err(vec![PlanError::Empty]);
    }
    let ids: Vec<&StepId> = plan.steps.iter().map(|s| &s.id).collect();
    let mut seen = HashSet::new();
    for step in &plan.steps {
        if !step.id.is_valid() {
            errors.push(PlanError::InvalidStepId(step.id.clone()));
        }
        if !seen.insert(&step.id) {
            errors.push(PlanError::DuplicateStep(step.id.clone()));
        }
    }
    for step in &plan.steps {
        for dep in &step.depends_on {
            if dep == &step.id {
                errors.push(PlanError::SelfDependency {
                    step: step.id.clone(),
                });
            } else if !ids.contains(&dep) {
                errors.push(PlanError::UnknownDependency {
                    step: step.id.clone(),
                    dependency: dep.clone(),
                    suggestion: closest(dep.as_str(), ids.iter().map(|i| i.as_str()))
                        .map(str::to_string),
                });
            }
        }
        if let Some(when) = &step.when {
            match crate::policy::cond::parse(when) {
                Err(e) => errors.push(PlanError::BadReference {
                    step: step.id.clone(),
                    message: format!("`when`: {e}"),
                }),
                Ok(expr) => {
                    let ancestors = plan.ancestors(&step.id);
                    for name in expr.roots() {
                        let dep = StepId::new(name);
                        if !ancestors.contains(&dep) {
                            errors.push(PlanError::BadReference {
                                step: step.id.clone(),
                                message: format!(
                                    "`when` reads `{name}`, which is not a step this one depends on; add it to depends_on"
                                ),
                            });
                        }
                    }
                }
            }
        }
        let args = Value::Object(step.args.clone());
        for e in malformed(&args) {
            errors.push(PlanError::BadReference {
                step: step.id.clone(),
                message: e.to_string(),
            });
        }
        for r in references(&args) {
            if !ids.contains(&&r.step) {
                errors.push(PlanError::BadReference {
                    step: step.id.clone(),
                    message: format!(
                        "`${{{}.{}}}` names unknown step `{}`",
                        r.step,
                        r.path.join("."),
                        r.step
                    ),
                });
            } else if !step.depends_on.contains(&r.step)
                && !plan.ancestors(&step.id).contains(&r.step)
            {
                errors.push(PlanError::BadReference {
                    step: step.id.clone(),
                    message: format!("uses the output of `{}` but does not depend on it", r.step),
                });
            }
        }
        match catalog.get(&step.tool) {
            None => errors.push(PlanError::UnknownTool {
                step: step.id.clone(),
                tool: step.tool.clone(),
                suggestion: catalog.suggest(&step.tool).map(str::to_string),
            }),
            Some(tool) => {
                let problems = check_args(&tool.input_schema, &step.args, true);
                if !problems.is_empty() {
                    errors.push(PlanError::BadArgs {
                        step: step.id.clone(),
                        tool: step.tool.clone(),
                        problems,
                    });
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(plan) {
        errors.push(PlanError::Cycle(cycle));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Compiled schemas by their JSON text: every call is checked against its
/// tool's schema, and compiling one costs more than checking with it.
fn validator(schema: &Value) -> Result<std::sync::Arc<jsonschema::Validator>, String> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let key = schema.to_string();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(v);
    }
    let v = Arc::new(jsonschema::validator_for(schema).map_err(|e| e.to_string())?);
    if let Ok(mut c) = cache.lock() {
        // Catalogs are small; a runaway one just starts the cache afresh.
        if c.len() >= 4096 {
            c.clear();
        }
        c.insert(key, Arc::clone(&v));
    }
    Ok(v)
}

/// Check arguments against a tool's JSON schema. With `templated`, values
/// that hold references are not known yet: they are left out, and so is the
/// complaint that they are missing; they are checked again when they run.
pub fn check_args(schema: &Value, args: &Map<String, Value>, templated: bool) -> Vec<String> {
    let validator = match validator(schema) {
        Ok(v) => v,
        Err(e) => return vec![format!("the tool's input schema is invalid: {e}")],
    };
    let mut pending = Vec::new();
    let mut instance = args.clone();
    if templated {
        instance.retain(|k, v| {
            let has_ref = !references(v).is_empty();
            if has_ref {
                pending.push(k.clone());
            }
            !has_ref
        });
    }
    let instance = Value::Object(instance);
    if validator.is_valid(&instance) {
        return Vec::new();
    }
    validator
        .iter_errors(&instance)
        .filter(|e| match e.kind() {
            jsonschema::error::ValidationErrorKind::Required { property } => {
                !pending.iter().any(|p| property.as_str() == Some(p))
            }
            _ => true,
        })
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect()
}

/// A cycle among the steps, if there is one (Kahn's algorithm, then follow
/// the leftovers to name the cycle).
fn find_cycle(plan: &Plan) -> Option<Vec<StepId>> {
    let known: HashSet<&StepId> = plan.steps.iter().map(|s| &s.id).collect();
    let mut indegree: HashMap<&StepId, usize> = HashMap::new();
    for s in &plan.steps {
        let n = s
            .depends_on
            .iter()
            .filter(|d| known.contains(d) && *d != &s.id)
            .count();
        indegree.insert(&s.id, n);
    }
    let mut ready: Vec<&StepId> = indegree
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    while let Some(id) = ready.pop() {
        indegree.remove(id);
        for s in &plan.steps {
            if s.depends_on.contains(id)
                && let Some(n) = indegree.get_mut(&s.id)
            {
                *n -= 1;
                if *n == 0 {
                    ready.push(&s.id);
                }
            }
        }
    }
    let start = plan.steps.iter().find(|s| indegree.contains_key(&s.id))?;
    let mut path = vec![start.id.clone()];
    let mut cur = start;
    loop {
        let next = cur
            .depends_on
            .iter()
            .find(|d| indegree.contains_key(d) && *d != &cur.id)?;
        if let Some(pos) = path.iter().position(|p| p == next) {
            let mut cycle = path.split_off(pos);
            cycle.reverse();
            return Some(cycle);
        }
        path.push(next.clone());
        cur = plan.step(next)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::{Annotations, ToolInfo};
    use crate::plan::Step;
    use serde_json::json;

    fn catalog() -> Catalog {
        let tool = |name: &str, schema: Value| ToolInfo {
            server: "ci".into(),
            name: name.into(),
            description: String::new(),
            input_schema: schema,
            annotations: Annotations::default(),
            def_hash: String::new(),
            sent: None,
        };
        Catalog::new([
            tool(
                "build",
                json!({"type":"object","properties":{"service":{"type":"string"}},"required":["service"]}),
            ),
            tool(
                "run_tests",
                json!({"type":"object","properties":{"build_id":{"type":"string"}},"required":["build_id"]}),
            ),
        ])
    }

    fn step(id: &str, tool: &str, args: Value, deps: &[&str]) -> Step {
        let Value::Object(args) = args else {
            unreachable!()
        };
        Step {
            depends_on: deps.iter().map(|d| StepId::new(*d)).collect(),
            ..Step::new(id, tool, args)
        }
    }

    fn plan(steps: Vec<Step>) -> Plan {
        Plan {
            title: "t".into(),
            steps,
        }
    }

    #[test]
    fn a_good_plan_passes_with_templated_args() {
        let p = plan(vec![
            step("b", "ci.build", json!({"service":"checkout"}), &[]),
            step(
                "t",
                "ci.run_tests",
                json!({"build_id":"${b.build_id}"}),
                &[],
            ),
        ])
        .with_implied_dependencies();
        assert_eq!(validate(&p, &catalog()), Ok(()));
    }

    #[test]
    fn names_every_problem() {
        let p = plan(vec![
            step("b", "ci.biuld", json!({}), &[]),
            step("t", "ci.run_tests", json!({"build_id": 5}), &["x"]),
            step("t", "ci.build", json!({}), &[]),
        ]);
        let errors: Vec<String> = validate(&p, &catalog())
            .expect_err("invalid")
            .iter()
            .map(ToString::to_string)
            .collect();
        let all = errors.join("\n");
        assert!(
            all.contains("unknown tool `ci.biuld`; did you mean `ci.build`?"),
            "{all}"
        );
        assert!(all.contains("depends on unknown step `x`"), "{all}");
        assert!(all.contains("step id `t` is used more than once"), "{all}");
        assert!(
            all.contains("/build_id: 5 is not of type \"string\""),
            "{all}"
        );
        assert!(all.contains("\"service\" is a required property"), "{all}");
    }

    #[test]
    fn finds_and_names_cycles() {
        let p = plan(vec![
            step("a", "ci.build", json!({"service":"x"}), &["c"]),
            step("b", "ci.build", json!({"service":"x"}), &["a"]),
            step("c", "ci.build", json!({"service":"x"}), &["b"]),
        ]);
        let errors = validate(&p, &catalog()).expect_err("cycle");
        let text = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("steps form a cycle:"), "{text}");
        assert!(text.contains("a") && text.contains("b") && text.contains("c"));
    }

    #[test]
    fn references_to_unknown_steps_are_errors() {
        let p = plan(vec![step(
            "t",
            "ci.run_tests",
            json!({"build_id":"${nope.id}"}),
            &[],
        )]);
        let text = validate(&p, &catalog()).expect_err("bad ref")[0].to_string();
        assert!(text.contains("names unknown step `nope`"), "{text}");
    }
}
