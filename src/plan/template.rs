//! Argument templating: `${step.path}` references to earlier outputs.
//!
//! A string that is exactly one reference takes the referenced value with
//! its JSON type (a number stays a number); a reference inside a longer
//! string is spliced in as text.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::StepId;

#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub step: StepId,
    pub path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("`${{{0}}}` is not a reference of the form `${{step.field}}`")]
    Malformed(String),
    #[error("`${{{reference}}}`: step `{step}` has no output yet")]
    NoOutput { reference: String, step: String },
    #[error("`${{{reference}}}`: the output of `{step}` has no `{missing}`")]
    Missing {
        reference: String,
        step: String,
        missing: String,
    },
}

/// Split a string into literal text and `${...}` reference bodies.
fn pieces(s: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        if start > 0 {
            out.push((false, &rest[..start]));
        }
        out.push((true, &rest[start + 2..start + 2 + len]));
        rest = &rest[start + 3 + len..];
    }
    if !rest.is_empty() {
        out.push((false, rest));
    }
    out
}

fn parse(body: &str) -> Result<Reference, TemplateError> {
    let mut parts = body.split('.');
    let step = parts.next().filter(|s| !s.is_empty());
    let path: Vec<String> = parts.map(str::to_string).collect();
    match step {
        Some(step) if !path.is_empty() && path.iter().all(|p| !p.is_empty()) => Ok(Reference {
            step: StepId::new(step),
            path,
        }),
        _ => Err(TemplateError::Malformed(body.to_string())),
    }
}

/// Every well-formed reference in a value.
pub fn references(value: &Value) -> Vec<Reference> {
    let mut out = Vec::new();
    walk(value, &mut |s| {
        for (is_ref, body) in pieces(s) {
            if is_ref && let Ok(r) = parse(body) {
                out.push(r);
            }
        }
    });
    out
}

/// Every malformed `${...}` in a value.
pub fn malformed(value: &Value) -> Vec<TemplateError> {
    let mut out = Vec::new();
    walk(value, &mut |s| {
        for (is_ref, body) in pieces(s) {
            if is_ref && let Err(e) = parse(body) {
                out.push(e);
            }
        }
    });
    out
}

fn walk(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| walk(v, f)),
        Value::Object(o) => o.values().for_each(|v| walk(v, f)),
        _ => {}
    }
}

fn lookup(
    r: &Reference,
    body: &str,
    outputs: &HashMap<StepId, Value>,
) -> Result<Value, TemplateError> {
    let mut cur = outputs
        .get(&r.step)
        .ok_or_else(|| TemplateError::NoOutput {
            reference: body.to_string(),
            step: r.step.to_string(),
        })?;
    for key in &r.path {
        let next = match cur {
            Value::Object(o) => o.get(key),
            Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        cur = next.ok_or_else(|| TemplateError::Missing {
            reference: body.to_string(),
            step: r.step.to_string(),
            missing: key.clone(),
        })?;
    }
    Ok(cur.clone())
}

fn resolve_value(value: &Value, outputs: &HashMap<StepId, Value>) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(s) => {
            let ps = pieces(s);
            match ps.as_slice() {
                [(true, body)] => lookup(&parse(body)?, body, outputs)?,
                _ if ps.iter().any(|(r, _)| *r) => {
                    let mut text = String::new();
                    for (is_ref, body) in ps {
                        if is_ref {
                            match lookup(&parse(body)?, body, outputs)? {
                                Value::String(s) => text.push_str(&s),
                                other => text.push_str(&other.to_string()),
                            }
                        } else {
                            text.push_str(body);
                        }
                    }
                    Value::String(text)
                }
                _ => value.clone(),
            }
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| resolve_value(v, outputs))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(resolve(o, outputs)?),
        other => other.clone(),
    })
}

/// Fill every reference in `args` from the outputs of finished steps.
pub fn resolve(
    args: &Map<String, Value>,
    outputs: &HashMap<StepId, Value>,
) -> Result<Map<String, Value>, TemplateError> {
    args.iter()
        .map(|(k, v)| Ok((k.clone(), resolve_value(v, outputs)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outputs() -> HashMap<StepId, Value> {
        HashMap::from([(
            StepId::new("build"),
            json!({ "image": "reg/checkout:1", "number": 7, "tags": ["a", "b"] }),
        )])
    }

    #[test]
    fn whole_reference_keeps_type_and_embedded_splices_text() {
        let args = json!({
            "image": "${build.image}",
            "n": "${build.number}",
            "text": "shipped ${build.image} (#${build.number}) tag ${build.tags.1}",
            "plain": "no refs",
        });
        let Value::Object(args) = args else {
            unreachable!()
        };
        let r = resolve(&args, &outputs()).expect("resolves");
        assert_eq!(r["image"], json!("reg/checkout:1"));
        assert_eq!(r["n"], json!(7));
        assert_eq!(r["text"], json!("shipped reg/checkout:1 (#7) tag b"));
        assert_eq!(r["plain"], json!("no refs"));
    }

    #[test]
    fn missing_fields_and_steps_are_named() {
        let Value::Object(args) = json!({ "a": "${build.nope}" }) else {
            unreachable!()
        };
        let e = resolve(&args, &outputs()).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "`${build.nope}`: the output of `build` has no `nope`"
        );
        let Value::Object(args) = json!({ "a": "${test.passed}" }) else {
            unreachable!()
        };
        let e = resolve(&args, &outputs()).expect_err("no output");
        assert!(e.to_string().contains("step `test` has no output yet"));
    }

    #[test]
    fn finds_references_and_malformed_ones() {
        let v = json!({ "a": ["${x.y}", "pre ${z.w.v} post"], "b": "${bad}" });
        let refs = references(&v);
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1].path, vec!["w".to_string(), "v".to_string()]);
        assert_eq!(malformed(&v).len(), 1);
    }
}
