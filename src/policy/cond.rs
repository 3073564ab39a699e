//! Conditions on a call: `env == "production"`, `replicas > 10`,
//! `service in ["payments", "checkout"]`, joined with `and`, `or`, `not` and
//! parentheses. Names are arguments (`env`, or `args.env`); effects may also
//! test the call's result (`result.failed == 0`).
//!
//! Strings are also tested with `starts_with`, `ends_with`, `contains` (a
//! substring, or an item of a list), `matches` (a regular expression,
//! compiled when the policy loads) and `like` (a glob: `*`, `?`); and a
//! value can be put in canonical form first, so a rule cannot be dodged by
//! spelling: `basename(command)` (`/bin/sh` → `sh`), `path(file)` (`..`
//! and `.` resolved lexically), `url_host(url)`, `url_scheme(url)`,
//! `lower(x)`; functions nest (`lower(basename(command))`).
//!
//! A condition has three outcomes: it holds, it does not, or it cannot be
//! evaluated (a named value is missing, or has a type it cannot be
//! compared as). Policy counts the last against the call, so a misspelt
//! or mistyped condition fails closed. `x == null` and `x != null` test
//! for a missing value explicitly and always evaluate; `and`, `or` and
//! `not` follow three-valued logic (false and unknown is false).

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    NotIn,
    StartsWith,
    EndsWith,
    Contains,
    Matches,
    Like,
}

impl Op {
    /// Operators that only compare strings (and `contains`, lists).
    pub fn on_text(self) -> bool {
        matches!(
            self,
            Op::StartsWith | Op::EndsWith | Op::Contains | Op::Matches | Op::Like
        )
    }
}

/// A function putting a value in canonical form before it is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Basename,
    Path,
    UrlHost,
    UrlScheme,
    Lower,
}

impl Func {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "basename" => Func::Basename,
            "path" => Func::Path,
            "url_host" => Func::UrlHost,
            "url_scheme" => Func::UrlScheme,
            "lower" => Func::Lower,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Func::Basename => "basename",
            Func::Path => "path",
            Func::UrlHost => "url_host",
            Func::UrlScheme => "url_scheme",
            Func::Lower => "lower",
        }
    }

    fn apply(self, s: &str) -> Option<String> {
        Some(match self {
            Func::Lower => s.to_lowercase(),
            Func::Basename => {
                let path = normal_path(s);
                path.rsplit('/')
                    .find(|p| !p.is_empty())
                    .unwrap_or(&path)
                    .to_string()
            }
            Func::Path => normal_path(s),
            Func::UrlHost => reqwest::Url::parse(s.trim())
                .ok()?
                .host_str()?
                .trim_end_matches('.')
                .to_lowercase(),
            Func::UrlScheme => reqwest::Url::parse(s.trim()).ok()?.scheme().to_string(),
        })
    }
}

/// A path with `.`, `..` and repeated `/` resolved, without touching the
/// file system (`/tmp/../etc//passwd` → `/etc/passwd`).
fn normal_path(s: &str) -> String {
    let absolute = s.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// A `matches` or `like` pattern, compiled once.
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A glob as an anchored regular expression.
fn glob_regex(glob: &str) -> String {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        path: Vec<String>,
        /// Applied to the value in order before it is compared.
        funcs: Vec<Func>,
        op: Op,
        value: Value,
        pattern: Option<Pattern>,
    },
}

/// What a condition can see.
pub struct Scope<'a> {
    pub args: &'a Map<String, Value>,
    pub result: Option<&'a Value>,
}

impl Scope<'_> {
    fn get(&self, path: &[String]) -> Option<&Value> {
        let (root, rest): (Option<&Value>, &[String]) = match path.first().map(String::as_str) {
            Some("result") => (self.result, &path[1..]),
            Some("args") => (self.args.get(path.get(1)?.as_str()), &path[2..]),
            Some(name) => (self.args.get(name), &path[1..]),
            None => return None,
        };
        rest.iter().try_fold(root?, |v, key| v.get(key.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Lit(Value),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
    LBracket,
    RBracket,
    Comma,
}

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' | ')' | '[' | ']' | ',' => {
                out.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    _ => Tok::Comma,
                });
                i += 1;
            }
            '=' | '!' | '>' | '<' => {
                let (op, len) = match two.as_str() {
                    "==" => (Op::Eq, 2),
                    "!=" => (Op::Ne, 2),
                    ">=" => (Op::Ge, 2),
                    "<=" => (Op::Le, 2),
                    _ if c == '>' => (Op::Gt, 1),
                    _ if c == '<' => (Op::Lt, 1),
                    _ => {
                        return Err(format!(
                            "`{two}` is not an operator; use == != > >= < <= in starts_with ends_with contains matches like"
                        ));
                    }
                };
                out.push(Tok::Op(op));
                i += len;
            }
            '"' | '\'' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&q| q == c)
                    .ok_or_else(|| format!("a string starting with {c} is not closed"))?;
                let s: String = chars[i + 1..i + 1 + end].iter().collect();
                out.push(Tok::Lit(Value::String(s)));
                i += end + 2;
            }
            _ if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let n: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
                out.push(Tok::Lit(
                    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
                ));
            }
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "in" => Tok::Op(Op::In),
                    "starts_with" => Tok::Op(Op::StartsWith),
                    "ends_with" => Tok::Op(Op::EndsWith),
                    "contains" => Tok::Op(Op::Contains),
                    "matches" => Tok::Op(Op::Matches),
                    "like" => Tok::Op(Op::Like),
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    "null" => Tok::Lit(Value::Null),
                    _ => Tok::Name(word),
                });
            }
            _ => return Err(format!("unexpected `{c}`")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.unary()?];
        while self.peek() == Some(&Tok::And) {
            self.at += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }
    fn unary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Not) => Ok(Expr::Not(Box::new(self.unary()?))),
            Some(Tok::Open) => {
                let e = self.or()?;
                match self.next() {
                    Some(Tok::Close) => Ok(e),
                    _ => Err("a `(` is not closed".into()),
                }
            }
            Some(Tok::Name(name)) => {
                let (path, funcs) = self.subject(name.clone())?;
                let op = match self.next() {
                    Some(Tok::Op(op)) => op,
                    Some(Tok::Not) if self.peek() == Some(&Tok::Op(Op::In)) => {
                        self.at += 1;
                        Op::NotIn
                    }
                    _ => {
                        return Err(format!(
                            "`{name}` must be followed by == != > >= < <= in, not in, starts_with, ends_with, contains, matches or like"
                        ));
                    }
                };
                let value = if matches!(op, Op::In | Op::NotIn) {
                    self.list()?
                } else {
                    match self.next() {
                        Some(Tok::Lit(v)) => v,
                        _ => {
                            return Err(format!(
                                "`{name}` is compared with something that is not a value; quote strings"
                            ));
                        }
                    }
                };
                let pattern = match (op, &value) {
                    (Op::Matches, Value::String(re)) => Some(re.clone()),
                    (Op::Like, Value::String(glob)) => Some(glob_regex(glob)),
                    (Op::Matches | Op::Like, _) => {
                        return Err(format!(
                            "`{name}` is matched against a string pattern; quote it"
                        ));
                    }
                    _ => None,
                }
                .map(|re| {
                    regex::Regex::new(&re)
                        .map(Pattern)
                        .map_err(|e| format!("`{re}` is not a valid pattern: {e}"))
                })
                .transpose()?;
                Ok(Expr::Cmp {
                    path,
                    funcs,
                    op,
                    value,
                    pattern,
                })
            }
            Some(t) => Err(format!("expected a name, `not` or `(`, found {t:?}")),
            None => Err("the condition ends too early".into()),
        }
    }
    /// What is compared: a name, or a function of one
    /// (`basename(command)`, nested `lower(basename(command))`).
    fn subject(&mut self, name: String) -> Result<(Vec<String>, Vec<Func>), String> {
        let func = Func::named(&name).filter(|_| self.peek() == Some(&Tok::Open));
        let Some(func) = func else {
            return Ok((name.split('.').map(str::to_string).collect(), Vec::new()));
        };
        self.at += 1;
        let inner = match self.next() {
            Some(Tok::Name(inner)) => inner,
            _ => return Err(format!("`{name}(…)` takes an argument's name")),
        };
        let (path, mut funcs) = self.subject(inner)?;
        if self.next() != Some(Tok::Close) {
            return Err(format!("`{name}(` is not closed"));
        }
        funcs.push(func);
        Ok((path, funcs))
    }

    fn list(&mut self) -> Result<Value, String> {
        if self.next() != Some(Tok::LBracket) {
            return Err("`in` needs a list, e.g. in [\"a\", \"b\"]".into());
        }
        let mut items = Vec::new();
        loop {
            match self.next() {
                Some(Tok::RBracket) => break,
                Some(Tok::Lit(v)) => items.push(v),
                _ => return Err("a list holds values separated by commas".into()),
            }
            match self.next() {
                Some(Tok::Comma) => continue,
                Some(Tok::RBracket) => break,
                _ => return Err("a list holds values separated by commas".into()),
            }
        }
        Ok(Value::Array(items))
    }
}

pub fn parse(text: &str) -> Result<Expr, String> {
    let toks = lex(text).map_err(|e| format!("condition `{text}`: {e}"))?;
    let mut p = Parser { toks, at: 0 };
    let e = p.or().map_err(|e| format!("condition `{text}`: {e}"))?;
    if p.at < p.toks.len() {
        return Err(format!(
            "condition `{text}`: unexpected {:?} after a complete condition; join conditions with and/or",
            p.toks[p.at]
        ));
    }
    Ok(e)
}

/// The value after `funcs`, each of which needs a string; `Err` says why
/// it cannot be had.
fn transformed(
    actual: Option<&Value>,
    path: &[String],
    funcs: &[Func],
) -> Result<Option<Value>, String> {
    let Some(mut v) = actual.cloned() else {
        return Ok(None);
    };
    let mut name = shown(path);
    for f in funcs {
        name = format!("{}({name})", f.name());
        let Value::String(s) = &v else {
            return Err(format!(
                "`{name}` needs a string, and it is the {} {v}",
                type_name(&v)
            ));
        };
        v = Value::String(
            f.apply(s)
                .ok_or_else(|| format!("`{name}`: `{s}` is not a URL with a host"))?,
        );
    }
    Ok(Some(v))
}

/// One comparison, in three values.
fn compare(
    actual: Option<&Value>,
    path: &[String],
    op: Op,
    value: &Value,
    pattern: Option<&Pattern>,
) -> Truth {
    use std::cmp::Ordering::*;
    let name = shown(path);
    let actual = actual.unwrap_or(&Value::Null);
    // Explicit tests for a missing value always evaluate.
    if value.is_null() && matches!(op, Op::Eq | Op::Ne) {
        let eq = actual.is_null();
        return Truth::from_bool(if op == Op::Eq { eq } else { !eq });
    }
    if actual.is_null() {
        return Truth::Unknown(format!("`{name}` is not given"));
    }
    let mismatch = |other: &Value| {
        Truth::Unknown(format!(
            "`{name}` is the {} {actual}, which cannot be compared with the {} {other}",
            type_name(actual),
            type_name(other)
        ))
    };
    match op {
        Op::Eq | Op::Ne => {
            if !comparable(actual, value) {
                return mismatch(value);
            }
            let eq = same(actual, value);
            Truth::from_bool(if op == Op::Eq { eq } else { !eq })
        }
        Op::Gt | Op::Ge | Op::Lt | Op::Le => match order(actual, value) {
            None => mismatch(value),
            Some(o) => Truth::from_bool(match op {
                Op::Gt => o == Greater,
                Op::Ge => matches!(o, Greater | Equal),
                Op::Lt => o == Less,
                _ => matches!(o, Less | Equal),
            }),
        },
        Op::In | Op::NotIn => {
            let list = value.as_array().map(Vec::as_slice).unwrap_or_default();
            if let Some(other) = list.iter().find(|v| !comparable(actual, v)) {
                return mismatch(other);
            }
            let found = list.iter().any(|v| same(actual, v));
            Truth::from_bool(if op == Op::In { found } else { !found })
        }
        Op::Contains if actual.is_array() => {
            let items = actual.as_array().map(Vec::as_slice).unwrap_or_default();
            Truth::from_bool(items.iter().any(|v| same(v, value)))
        }
        Op::StartsWith | Op::EndsWith | Op::Contains | Op::Matches | Op::Like => {
            let (Value::String(a), Value::String(b)) = (actual, value) else {
                return mismatch(value);
            };
            Truth::from_bool(match op {
                Op::StartsWith => a.starts_with(b.as_str()),
                Op::EndsWith => a.ends_with(b.as_str()),
                Op::Contains => a.contains(b.as_str()),
                _ => pattern.is_some_and(|p| p.0.is_match(a)),
            })
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// What a condition comes to on one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    Holds,
    Fails,
    /// It cannot be evaluated, and why.
    Unknown(String),
}

impl Truth {
    fn from_bool(b: bool) -> Self {
        if b { Truth::Holds } else { Truth::Fails }
    }

    fn not(self) -> Self {
        match self {
            Truth::Holds => Truth::Fails,
            Truth::Fails => Truth::Holds,
            u => u,
        }
    }
}

/// The JSON type of a value, as conditions compare them.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn comparable(a: &Value, b: &Value) -> bool {
    type_name(a) == type_name(b)
}

fn shown(path: &[String]) -> String {
    path.join(".")
}

impl Expr {
    /// Whether the condition holds; one that cannot be evaluated does not.
    pub fn eval(&self, scope: &Scope<'_>) -> bool {
        self.check(scope) == Truth::Holds
    }

    /// What the condition comes to, in three values.
    pub fn check(&self, scope: &Scope<'_>) -> Truth {
        match self {
            Expr::Or(v) => {
                let mut unknown = None;
                for e in v {
                    match e.check(scope) {
                        Truth::Holds => return Truth::Holds,
                        Truth::Fails => {}
                        u @ Truth::Unknown(_) => unknown = unknown.or(Some(u)),
                    }
                }
                unknown.unwrap_or(Truth::Fails)
            }
            Expr::And(v) => {
                let mut unknown = None;
                for e in v {
                    match e.check(scope) {
                        Truth::Fails => return Truth::Fails,
                        Truth::Holds => {}
                        u @ Truth::Unknown(_) => unknown = unknown.or(Some(u)),
                    }
                }
                unknown.unwrap_or(Truth::Holds)
            }
            Expr::Not(e) => e.check(scope).not(),
            Expr::Cmp {
                path,
                funcs,
                op,
                value,
                pattern,
            } => match transformed(scope.get(path), path, funcs) {
                Ok(v) => compare(v.as_ref(), path, *op, value, pattern.as_ref()),
                Err(why) => Truth::Unknown(why),
            },
        }
    }

    /// Whether the condition compares argument `arg` with exactly `value`
    /// (`env == "qa"`, `env in ["qa"]`): a rule that names a value has
    /// thought about it.
    pub fn names(&self, arg: &str, value: &str) -> bool {
        match self {
            Expr::Or(v) | Expr::And(v) => v.iter().any(|e| e.names(arg, value)),
            Expr::Not(e) => e.names(arg, value),
            Expr::Cmp {
                path,
                funcs,
                op,
                value: lit,
                ..
            } => {
                if !funcs.is_empty() {
                    return false;
                }
                let name = match path.as_slice() {
                    [a, name] if a == "args" => name,
                    [name] => name,
                    _ => return false,
                };
                let hit = |v: &Value| v.as_str() == Some(value);
                name == arg
                    && match op {
                        Op::Eq => hit(lit),
                        Op::In => lit.as_array().is_some_and(|l| l.iter().any(hit)),
                        _ => false,
                    }
            }
        }
    }

    /// Every comparison in the condition: its path, operator and value,
    /// and whether a function changes the value first.
    pub fn comparisons(&self) -> Vec<(&[String], Op, &Value, bool)> {
        match self {
            Expr::Or(v) | Expr::And(v) => v.iter().flat_map(Expr::comparisons).collect(),
            Expr::Not(e) => e.comparisons(),
            Expr::Cmp {
                path,
                op,
                value,
                funcs,
                ..
            } => vec![(path.as_slice(), *op, value, !funcs.is_empty())],
        }
    }

    /// The first name of every path the condition reads (`test` in
    /// `test.failed > 0`).
    pub fn roots(&self) -> Vec<&str> {
        match self {
            Expr::Or(v) | Expr::And(v) => v.iter().flat_map(Expr::roots).collect(),
            Expr::Not(e) => e.roots(),
            Expr::Cmp { path, .. } => path.first().map(String::as_str).into_iter().collect(),
        }
    }

    /// Whether the condition reads the call's result.
    pub fn reads_result(&self) -> bool {
        match self {
            Expr::Or(v) | Expr::And(v) => v.iter().any(Expr::reads_result),
            Expr::Not(e) => e.reads_result(),
            Expr::Cmp { path, .. } => path.first().is_some_and(|p| p == "result"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(cond: &str, args: Value) -> bool {
        let Value::Object(args) = args else { panic!() };
        parse(cond).unwrap_or_else(|e| panic!("{e}")).eval(&Scope {
            args: &args,
            result: None,
        })
    }

    #[test]
    fn comparisons_lists_and_logic() {
        let a = json!({"env": "production", "replicas": 12, "service": "payments"});
        assert!(holds(r#"env == "production""#, a.clone()));
        assert!(holds("replicas > 10", a.clone()));
        assert!(!holds("replicas <= 10", a.clone()));
        assert!(holds(r#"service in ["payments", "checkout"]"#, a.clone()));
        assert!(!holds(r#"service not in ["payments"]"#, a.clone()));
        assert!(holds(
            r#"env == 'production' and (replicas >= 12 or service == "x")"#,
            a.clone()
        ));
        assert!(holds(r#"not env == "dev""#, a.clone()));
        assert!(holds(r#"args.env != "dev""#, a.clone()));
        assert!(
            holds("replicas == 12.0", a.clone()),
            "numbers compare as numbers"
        );
        // A missing value cannot be compared, except with null.
        assert!(!holds(r#"region == "eu""#, a.clone()));
        assert!(!holds(r#"region != "eu""#, a.clone()));
        assert!(!holds("count > 1", a.clone()));
        assert!(holds("region == null", a.clone()));
        assert!(holds("env != null", a));
    }

    fn truth(cond: &str, args: Value) -> Truth {
        let Value::Object(args) = args else { panic!() };
        parse(cond).unwrap_or_else(|e| panic!("{e}")).check(&Scope {
            args: &args,
            result: None,
        })
    }

    #[test]
    fn what_cannot_be_evaluated_is_unknown_and_says_why() {
        let a = json!({"env": "staging", "replicas": "ten"});
        match truth(r#"enviroment == "staging""#, a.clone()) {
            Truth::Unknown(why) => assert!(why.contains("`enviroment` is not given"), "{why}"),
            other => panic!("{other:?}"),
        }
        match truth("replicas > 10", a.clone()) {
            Truth::Unknown(why) => assert!(why.contains("cannot be compared"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(truth(r#"env == 3"#, a.clone()), Truth::Unknown(_)));
        // Three-valued: false and unknown is false; true or unknown is true.
        assert_eq!(
            truth(r#"env == "dev" and replicas > 1"#, a.clone()),
            Truth::Fails
        );
        assert_eq!(
            truth(r#"env == "staging" or replicas > 1"#, a.clone()),
            Truth::Holds
        );
        assert!(matches!(
            truth(r#"not (replicas > 1)"#, a.clone()),
            Truth::Unknown(_)
        ));
        assert_eq!(
            truth("replicas != null and env == \"staging\"", a),
            Truth::Holds
        );
    }

    #[test]
    fn results_are_readable_by_effects() {
        let args = Map::new();
        let result = json!({"gate": "passed", "bugs": 0});
        let e = parse(r#"result.gate == "passed" and result.bugs == 0"#).expect("parse");
        assert!(e.reads_result());
        assert!(e.eval(&Scope {
            args: &args,
            result: Some(&result)
        }));
    }

    #[test]
    fn mistakes_are_explained() {
        for (bad, says) in [
            ("env = \"x\"", "not an operator"),
            ("env == production", "not a value; quote strings"),
            ("env == \"x", "not closed"),
            ("(env == \"x\"", "`(` is not closed"),
            ("env == \"x\" env == \"y\"", "join conditions with and/or"),
            ("service in \"x\"", "needs a list"),
            ("", "ends too early"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn string_operators_and_canonical_forms_cannot_be_dodged_by_spelling() {
        let sh = "basename(command) in [\"sh\", \"bash\"]";
        for (command, hit) in [
            ("sh", true),
            ("/bin/sh", true),
            ("/usr/bin//bash/", true),
            ("zsh", false),
        ] {
            assert_eq!(holds(sh, json!({"command": command})), hit, "{command}");
        }
        let etc = "path(file) starts_with \"/etc/\"";
        assert!(holds(etc, json!({"file": "/tmp/../etc/passwd"})));
        assert!(holds(etc, json!({"file": "/etc/./ssh//sshd_config"})));
        assert!(!holds(etc, json!({"file": "/tmp/etc/passwd"})));
        assert!(holds(
            "url_host(url) ends_with \".internal\"",
            json!({"url": "http://Billing.INTERNAL./x"})
        ));
        assert!(holds(
            "url_host(url) == \"169.254.169.254\"",
            json!({"url": "http://169.254.169.254/latest/meta-data"})
        ));
        assert!(holds(
            "url_scheme(url) in [\"file\", \"gopher\"]",
            json!({"url": "file:///etc/passwd"})
        ));
        assert!(holds(
            "lower(basename(command)) == \"sh\"",
            json!({"command": "/BIN/SH"})
        ));
        assert!(holds(
            "to contains \"@evil.example\"",
            json!({"to": "ops@evil.example"})
        ));
        assert!(holds(
            "labels contains \"prod\"",
            json!({"labels": ["a", "prod"]})
        ));
        assert!(holds(
            "image matches \"^registry\\.local/\"",
            json!({"image": "registry.local/app:1"})
        ));
        assert!(!holds(
            "image matches \"^registry\\.local/\"",
            json!({"image": "registryxlocal/app:1"})
        ));
        assert!(holds(
            "branch like \"release/*\"",
            json!({"branch": "release/2026.12"})
        ));
        assert!(!holds(
            "branch like \"release/*\"",
            json!({"branch": "main"})
        ));
        // A value a function cannot read is unknown, which counts against the call.
        let e = parse("url_host(url) == \"x\"").expect("parse");
        let args = json!({"url": "not a url"});
        let Value::Object(args) = args else { panic!() };
        assert!(matches!(
            e.check(&Scope {
                args: &args,
                result: None
            }),
            Truth::Unknown(_)
        ));
        // A bad pattern is refused when the policy loads.
        assert!(parse("x matches \"(\"").is_err());
        assert!(parse("x like 3").is_err());
        // `path` is still an argument name when not called.
        assert!(holds("path == \"/a\"", json!({"path": "/a"})));
    }
}
