//! The form an elicitation asks for, read from its restricted JSON schema
//! (flat object, primitive properties): what each field is, its default,
//! and whether an answer fits. Every front end (the app's modal, a
//! terminal prompt, unattended defaults) fills the same `Form`, so a value
//! is checked the same way wherever it was typed.

use serde_json::{Map, Value};

/// One field of the form.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub required: bool,
    pub kind: Kind,
    /// The schema's default (SEP-1034), already checked against the kind.
    pub default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Text {
        /// `email`, `uri`, `date` or `date-time`.
        format: Option<String>,
        min_len: Option<u64>,
        max_len: Option<u64>,
    },
    Number {
        integer: bool,
        min: Option<f64>,
        max: Option<f64>,
    },
    Bool,
    /// One value of a list, or (`multi`) several.
    Choice {
        options: Vec<Choice>,
        multi: bool,
        min_items: Option<u64>,
        max_items: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// What the server wants filled in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Form {
    pub fields: Vec<Field>,
}

/// A value that does not fit its field, said so the person can fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl Field {
    /// The field's name as a person reads it.
    pub fn label(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }

    /// A one-line hint of what fits: `yes/no`, `one of a, b`, `integer 1–10`.
    pub fn hint(&self) -> String {
        match &self.kind {
            Kind::Text { format, .. } => format.clone().unwrap_or_else(|| "text".into()),
            Kind::Number { integer, min, max } => {
                let what = if *integer { "integer" } else { "number" };
                match (min, max) {
                    (Some(a), Some(b)) => format!("{what} {a}–{b}"),
                    (Some(a), None) => format!("{what} ≥ {a}"),
                    (None, Some(b)) => format!("{what} ≤ {b}"),
                    (None, None) => what.into(),
                }
            }
            Kind::Bool => "yes/no".into(),
            Kind::Choice { options, multi, .. } => {
                let labels: Vec<&str> = options.iter().map(|c| c.value.as_str()).collect();
                let what = if *multi { "any of" } else { "one of" };
                format!("{what} {}", labels.join(", "))
            }
        }
    }

    /// Read what a person typed into this field's value. Empty text is no
    /// value (the default, if any, is used instead).
    pub fn read(&self, typed: &str) -> Result<Option<Value>, String> {
        let typed = typed.trim();
        if typed.is_empty() {
            return Ok(None);
        }
        let value = match &self.kind {
            Kind::Text { .. } => Value::String(typed.to_string()),
            Kind::Number { integer: true, .. } => typed
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("`{typed}` is not a whole number"))?,
            Kind::Number { .. } => typed
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("`{typed}` is not a number"))?,
            Kind::Bool => match typed.to_ascii_lowercase().as_str() {
                "y" | "yes" | "true" | "1" | "on" => Value::Bool(true),
                "n" | "no" | "false" | "0" | "off" => Value::Bool(false),
                _ => return Err(format!("`{typed}`: answer yes or no")),
            },
            Kind::Choice { options, multi, .. } => {
                let pick = |word: &str| {
                    options
                        .iter()
                        .find(|c| c.value == word)
                        .or_else(|| options.iter().find(|c| c.label.eq_ignore_ascii_case(word)))
                        .or_else(|| {
                            word.parse::<usize>()
                                .ok()
                                .and_then(|n| n.checked_sub(1))
                                .and_then(|i| options.get(i))
                        })
                        .map(|c| Value::String(c.value.clone()))
                        .ok_or_else(|| format!("`{word}` is not one of the choices"))
                };
                if *multi {
                    let picked: Result<Vec<Value>, String> = typed
                        .split(',')
                        .map(str::trim)
                        .filter(|w| !w.is_empty())
                        .map(pick)
                        .collect();
                    Value::Array(picked?)
                } else {
                    pick(typed)?
                }
            }
        };
        self.check(&value)?;
        Ok(Some(value))
    }

    /// Whether `value` fits the field.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        match (&self.kind, value) {
            (
                Kind::Text {
                    format,
                    min_len,
                    max_len,
                },
                Value::String(s),
            ) => {
                let n = s.chars().count() as u64;
                if let Some(min) = min_len
                    && n < *min
                {
                    return Err(format!("at least {min} characters"));
                }
                if let Some(max) = max_len
                    && n > *max
                {
                    return Err(format!("at most {max} characters"));
                }
                match format.as_deref() {
                    Some(f) => check_format(f, s),
                    None => Ok(()),
                }
            }
            (Kind::Number { integer, min, max }, Value::Number(n)) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if *integer && !(n.is_i64() || n.is_u64()) {
                    return Err("a whole number".into());
                }
                if let Some(min) = min
                    && x < *min
                {
                    return Err(format!("at least {min}"));
                }
                if let Some(max) = max
                    && x > *max
                {
                    return Err(format!("at most {max}"));
                }
                Ok(())
            }
            (Kind::Bool, Value::Bool(_)) => Ok(()),
            (
                Kind::Choice {
                    options,
                    multi: false,
                    ..
                },
                Value::String(s),
            ) => {
                if options.iter().any(|c| &c.value == s) {
                    Ok(())
                } else {
                    Err(format!("`{s}` is not one of the choices"))
                }
            }
            (
                Kind::Choice {
                    options,
                    multi: true,
                    min_items,
                    max_items,
                },
                Value::Array(items),
            ) => {
                for item in items {
                    if !item
                        .as_str()
                        .is_some_and(|s| options.iter().any(|c| c.value == s))
                    {
                        return Err(format!("{item} is not one of the choices"));
                    }
                }
                let n = items.len() as u64;
                if let Some(min) = min_items
                    && n < *min
                {
                    return Err(format!("pick at least {min}"));
                }
                if let Some(max) = max_items
                    && n > *max
                {
                    return Err(format!("pick at most {max}"));
                }
                Ok(())
            }
            _ => Err(format!("expected {}", self.hint())),
        }
    }
}

/// A value as a person would type it back into its field (`yes`, a
/// choice's value, choices joined by `, `): what `Field::read` reads.
pub fn typed(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn check_format(format: &str, s: &str) -> Result<(), String> {
    use time::format_description::well_known::Rfc3339;
    let ok = match format {
        "email" => s
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !s.contains(' ')),
        "uri" => s.split_once(':').is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
        }),
        "date" => {
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).is_ok()
        }
        "date-time" => time::OffsetDateTime::parse(s, &Rfc3339).is_ok(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("not a valid {format}"))
    }
}

impl Form {
    /// Read a requested schema. Properties of a kind MCP does not allow in
    /// a form (objects, nested arrays) make the whole form unreadable: a
    /// partial answer would be refused by the server anyway.
    pub fn parse(schema: &Value) -> Result<Self, String> {
        let props = match schema.get("properties") {
            None => return Ok(Self::default()),
            Some(Value::Object(p)) => p,
            Some(_) => return Err("`properties` is not an object".into()),
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut fields = Vec::with_capacity(props.len());
        for (name, prop) in props {
            let kind = kind_of(prop).map_err(|e| format!("field `{name}`: {e}"))?;
            let mut field = Field {
                name: name.clone(),
                title: text(prop, "title"),
                description: text(prop, "description"),
                required: required.contains(&name.as_str()),
                kind,
                default: None,
            };
            // A default that does not fit its own field is not offered.
            field.default = prop
                .get("default")
                .filter(|d| field.check(d).is_ok())
                .cloned();
            fields.push(field);
        }
        // Required fields first: the properties' own order is not kept on
        // the way here (JSON objects are read as sorted maps).
        fields.sort_by_key(|f| !f.required);
        Ok(Self { fields })
    }

    /// The values a form starts with: each field's default.
    pub fn initial(&self) -> Vec<Option<Value>> {
        self.fields.iter().map(|f| f.default.clone()).collect()
    }

    /// The answer to send, from one value (or none) per field: defaults
    /// fill what was left empty, and every problem is named at once.
    pub fn answer(&self, values: &[Option<Value>]) -> Result<Map<String, Value>, Vec<Problem>> {
        let mut out = Map::new();
        let mut problems = Vec::new();
        for (i, field) in self.fields.iter().enumerate() {
            let value = values
                .get(i)
                .cloned()
                .flatten()
                .or_else(|| field.default.clone());
            match value {
                Some(v) => match field.check(&v) {
                    Ok(()) => {
                        out.insert(field.name.clone(), v);
                    }
                    Err(message) => problems.push(Problem {
                        field: field.label().to_string(),
                        message,
                    }),
                },
                None if field.required => problems.push(Problem {
                    field: field.label().to_string(),
                    message: "required".into(),
                }),
                None => {}
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}

fn text(prop: &Value, key: &str) -> Option<String> {
    prop.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

fn number(prop: &Value, key: &str) -> Option<f64> {
    prop.get(key).and_then(Value::as_f64)
}

fn count(prop: &Value, key: &str) -> Option<u64> {
    prop.get(key).and_then(Value::as_u64)
}

/// Choices from `enum` (+ legacy `enumNames`) or `oneOf`/`anyOf` of
/// `{const, title}`.
fn choices(prop: &Value) -> Option<Vec<Choice>> {
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        let names = prop.get("enumNames").and_then(Value::as_array);
        return Some(
            values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let value = v.as_str()?.to_string();
                    let label = names
                        .and_then(|n| n.get(i))
                        .and_then(Value::as_str)
                        .map_or_else(|| value.clone(), str::to_string);
                    Some(Choice { value, label })
                })
                .collect(),
        );
    }
    let list = prop
        .get("oneOf")
        .or_else(|| prop.get("anyOf"))
        .and_then(Value::as_array)?;
    Some(
        list.iter()
            .filter_map(|o| {
                let value = o.get("const")?.as_str()?.to_string();
                let label = text(o, "title").unwrap_or_else(|| value.clone());
                Some(Choice { value, label })
            })
            .collect(),
    )
}

fn kind_of(prop: &Value) -> Result<Kind, String> {
    let ty = prop.get("type").and_then(Value::as_str);
    match ty {
        Some("string") | None if choices(prop).is_some() => Ok(Kind::Choice {
            options: choices(prop).unwrap_or_default(),
            multi: false,
            min_items: None,
            max_items: None,
        }),
        Some("string") => Ok(Kind::Text {
            format: text(prop, "format"),
            min_len: count(prop, "minLength"),
            max_len: count(prop, "maxLength"),
        }),
        Some("number") | Some("integer") => Ok(Kind::Number {
            integer: ty == Some("integer"),
            min: number(prop, "minimum"),
            max: number(prop, "maximum"),
        }),
        Some("boolean") => Ok(Kind::Bool),
        Some("array") => {
            let options = prop
                .get("items")
                .and_then(choices)
                .ok_or("an array field must list its choices (`items.enum` or `items.anyOf`)")?;
            Ok(Kind::Choice {
                options,
                multi: true,
                min_items: count(prop, "minItems"),
                max_items: count(prop, "maxItems"),
            })
        }
        Some(other) => Err(format!("type `{other}` cannot be asked in a form")),
        None => Err("no type".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sep1034() -> Form {
        Form::parse(&json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "minimum": 0, "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "default": true},
                "email": {"type": "string", "format": "email"},
            },
            "required": ["name"]
        }))
        .expect("form")
    }

    #[test]
    fn defaults_fill_what_is_left_empty() {
        let form = sep1034();
        let answer = form.answer(&vec![None; form.fields.len()]).expect("answer");
        assert_eq!(
            Value::Object(answer),
            json!({"name": "John Doe", "age": 30, "score": 95.5, "status": "active", "verified": true})
        );
    }

    #[test]
    fn typed_values_are_read_by_kind_and_checked() {
        let form = sep1034();
        let field = |n: &str| form.fields.iter().find(|f| f.name == n).expect("field");
        assert_eq!(field("age").read("41"), Ok(Some(json!(41))));
        assert!(field("age").read("-3").is_err(), "below the minimum");
        assert!(field("age").read("4.5").is_err(), "not whole");
        assert_eq!(field("verified").read("no"), Ok(Some(json!(false))));
        assert_eq!(field("status").read("2"), Ok(Some(json!("inactive"))));
        assert!(field("status").read("gone").is_err());
        assert!(field("email").read("not-an-email").is_err());
        assert_eq!(field("email").read("a@b.io"), Ok(Some(json!("a@b.io"))));
        assert_eq!(field("name").read("  "), Ok(None), "empty is no value");
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let form = Form::parse(&json!({
            "properties": {
                "who": {"type": "string", "title": "Your name"},
                "when": {"type": "string", "format": "date"},
            },
            "required": ["who", "when"]
        }))
        .expect("form");
        // Fields come sorted by name (`when`, `who`), required ones first.
        let problems = form
            .answer(&[Some(json!("tomorrow")), None])
            .expect_err("two problems");
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["when: not a valid date", "Your name: required"]);
    }

    #[test]
    fn titled_and_multi_choices_and_a_bad_default() {
        let form = Form::parse(&json!({
            "properties": {
                "size": {"type": "string", "oneOf": [
                    {"const": "s", "title": "Small"}, {"const": "l", "title": "Large"}],
                    "default": "xl"},
                "tags": {"type": "array", "items": {"anyOf": [
                    {"const": "a", "title": "Alpha"}, {"const": "b", "title": "Beta"}]},
                    "maxItems": 1},
            }
        }))
        .expect("form");
        assert_eq!(form.fields[0].default, None, "`xl` is not a choice");
        assert_eq!(form.fields[0].read("large"), Ok(Some(json!("l"))));
        assert_eq!(form.fields[1].read("a"), Ok(Some(json!(["a"]))));
        assert!(form.fields[1].read("a, b").is_err(), "at most one");
        assert!(Form::parse(&json!({"properties": {"o": {"type": "object"}}})).is_err());
    }
}
