//! Conditions on a call: `env == "production"`, `replicas > 10`,
//! `service in ["payments", "checkout"]`, joined with `and`, `or`, `not` and
//! parentheses. Names are arguments (`env`, or `args.env`); effects may also
//! test the call's result (`result.failed == 0`). A missing value is null:
//! equal to nothing, so `!=` and `not in` hold for it.

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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        path: Vec<String>,
        op: Op,
        value: Value,
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
                            "`{two}` is not an operator; use == != > >= < <= in"
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
                let op = match self.next() {
                    Some(Tok::Op(op)) => op,
                    Some(Tok::Not) if self.peek() == Some(&Tok::Op(Op::In)) => {
                        self.at += 1;
                        Op::NotIn
                    }
                    _ => {
                        return Err(format!(
                            "`{name}` must be followed by == != > >= < <= in or not in"
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
                Ok(Expr::Cmp {
                    path: name.split('.').map(str::to_string).collect(),
                    op,
                    value,
                })
            }
            Some(t) => Err(format!("expected a name, `not` or `(`, found {t:?}")),
            None => Err("the condition ends too early".into()),
        }
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

impl Expr {
    pub fn eval(&self, scope: &Scope<'_>) -> bool {
        match self {
            Expr::Or(v) => v.iter().any(|e| e.eval(scope)),
            Expr::And(v) => v.iter().all(|e| e.eval(scope)),
            Expr::Not(e) => !e.eval(scope),
            Expr::Cmp { path, op, value } => {
                let actual = scope.get(path).unwrap_or(&Value::Null);
                use std::cmp::Ordering::*;
                match op {
                    Op::Eq => same(actual, value),
                    Op::Ne => !same(actual, value),
                    Op::Gt => order(actual, value) == Some(Greater),
                    Op::Ge => matches!(order(actual, value), Some(Greater | Equal)),
                    Op::Lt => order(actual, value) == Some(Less),
                    Op::Le => matches!(order(actual, value), Some(Less | Equal)),
                    Op::In => value
                        .as_array()
                        .is_some_and(|l| l.iter().any(|v| same(actual, v))),
                    Op::NotIn => !value
                        .as_array()
                        .is_some_and(|l| l.iter().any(|v| same(actual, v))),
                }
            }
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
        // Missing values are null: unequal to anything.
        assert!(!holds(r#"region == "eu""#, a.clone()));
        assert!(holds(r#"region != "eu""#, a.clone()));
        assert!(!holds("count > 1", a));
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
}
