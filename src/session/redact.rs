//! Secrets kept out of the audit log: every event passes through here
//! before it is hashed, stored, folded into state or shown.
//!
//! Three nets: values under configured key names (at any depth, also inside
//! JSON carried as text, as tool outputs often are), matches of configured
//! patterns in any string, and the secret values this process has read
//! (API keys from the keyring or environment).

use regex::Regex;
use serde_json::{Map, Value};

use super::Event;

mod scan;

pub const REDACTED: &str = "[redacted]";

#[derive(Debug, thiserror::Error)]
#[error("`{pattern}` in [audit] redact_patterns is not a valid regular expression: {reason}")]
pub struct BadPattern {
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Redactor {
    /// Normalized: lower case, `-` as `_`.
    keys: Vec<String>,
    patterns: Vec<Regex>,
    /// All patterns as one alternation: most strings match none, and one
    /// pass (led by the patterns' literals) says so.
    any_pattern: Option<Regex>,
    /// `key=value`, `key: value` and `"key": "value"` inside free text,
    /// for the configured key names.
    inline: Option<Regex>,
    /// Just the key names: `inline` has no literal to search for first and
    /// costs a full scan, so it runs only on strings that name a key.
    inline_hint: Option<Regex>,
}

impl Redactor {
    pub fn new(keys: &[String], patterns: &[String]) -> Result<Self, BadPattern> {
        let compile = |p: &str| {
            Regex::new(p).map_err(|e| BadPattern {
                pattern: p.to_string(),
                reason: e.to_string(),
            })
        };
        let any_pattern = match patterns.len() {
            0 => None,
            _ => Some(compile(
                &patterns
                    .iter()
                    .map(|p| format!("(?:{p})"))
                    .collect::<Vec<_>>()
                    .join("|"),
            )?),
        };
        let patterns = patterns
            .iter()
            .map(|p| compile(p))
            .collect::<Result<_, _>>()?;
        let names: Vec<String> = keys
            .iter()
            .filter(|k| !k.trim().is_empty())
            .map(|k| regex::escape(&normalize(k)).replace('_', "[_-]"))
            .collect();
        let (inline, inline_hint) = if names.is_empty() {
            (None, None)
        } else {
            // `key: value`, `key=value`, `"key": "value"`, and (for a
            // flag or a compound name, never a bare word in prose)
            // `--key value` / `db_key value`. An auth scheme after the key
            // (`Authorization: Bearer …`) is kept and what follows it
            // redacted: the scheme is not the secret.
            let names = names.join("|");
            let re = format!(
                r#"(?i)((?:^|[^a-z0-9])(?:\\?")?(?:(?:[a-z0-9]+[_-])*(?:{names})(?:\\?")?\s*[:=]\s*(?:(?:Some|String)\()*(?:\\?")?|(?:--?|(?:[a-z0-9]+[_-])+)(?:{names})(?:\\?")?\s+)(?:(?:bearer|basic|token|digest|negotiate)\s+)?)(\[redacted\]|[^"\\\s,;&}}\]]+)"#
            );
            (Some(compile(&re)?), Some(compile(&format!("(?i){names}"))?))
        };
        Ok(Self {
            keys: keys.iter().map(|k| normalize(k)).collect(),
            patterns,
            any_pattern,
            inline,
            inline_hint,
        })
    }

    /// Whether a value under this key is a secret: the key is a configured
    /// name or ends with `_name` (`github_token`, `x-api-key`).
    fn secret_key(&self, key: &str) -> bool {
        // Every key of every event passes here: compared in place, as
        // normalizing each one cost two allocations.
        let key = key.as_bytes();
        self.keys.iter().any(|k| {
            let Some(split) = key.len().checked_sub(k.len()) else {
                return false;
            };
            let (head, tail) = key.split_at(split);
            let folded = |b: u8| {
                if b == b'-' {
                    b'_'
                } else {
                    b.to_ascii_lowercase()
                }
            };
            tail.iter().zip(k.as_bytes()).all(|(a, b)| folded(*a) == *b)
                && head.last().is_none_or(|b| folded(*b) == b'_')
        })
    }

    /// The event as it may be stored and shown, and its JSON body.
    pub fn event(&self, event: &Event) -> Result<(Event, String), serde_json::Error> {
        self.cow_event(std::borrow::Cow::Borrowed(event))
    }

    /// As `event`; an event handed over with nothing to redact (most) is
    /// kept, not copied.
    pub fn cow_event(
        &self,
        event: std::borrow::Cow<'_, Event>,
    ) -> Result<(Event, String), serde_json::Error> {
        let body = serde_json::to_string(&*event)?;
        if self.clean(&body) {
            return Ok((event.into_owned(), body));
        }
        let mut value = serde_json::to_value(&*event)?;
        if !self.value(&mut value) {
            return Ok((event.into_owned(), body));
        }
        let body = serde_json::to_string(&value)?;
        match serde_json::from_value(value) {
            Ok(redacted) => Ok((redacted, body)),
            // A typed field took a redaction it cannot hold: keep nothing of
            // it rather than the secret.
            Err(_) => {
                let note = Event::Note {
                    text: format!(
                        "a `{}` event was withheld: it held a secret that could not be redacted in place",
                        event.kind()
                    ),
                };
                let body = serde_json::to_string(&note)?;
                Ok((note, body))
            }
        }
    }

    /// Whether an event's JSON text shows it holds nothing to redact, so
    /// that it need not be taken apart (see scan.rs).
    fn clean(&self, body: &str) -> bool {
        scan::flags(self, body) == Some(false)
    }

    /// Whether `string` might change `s`: the same tests, changing nothing,
    /// where a key name (before its value is looked at) is enough.
    fn may_redact(&self, s: &str) -> bool {
        let t = s.trim_start();
        ((t.starts_with('{') || t.starts_with('[')) && scan::flags(self, s).unwrap_or(false))
            || self.inline_hint.as_ref().is_some_and(|h| h.is_match(s))
            || (s.contains("://") && s.contains('@'))
            || self.any_pattern.as_ref().is_some_and(|a| a.is_match(s))
            || crate::secrets::with_known(|known| known.iter().any(|k| s.contains(k.as_str())))
    }

    /// Any serializable value as it may be shown (a plan printed before it
    /// runs, say). A value that cannot round-trip is returned as it was
    /// only if it held nothing to redact.
    pub fn redacted<T>(&self, value: &T) -> Option<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone,
    {
        let mut v = serde_json::to_value(value).ok()?;
        if !self.value(&mut v) {
            return Some(value.clone());
        }
        serde_json::from_value(v).ok()
    }

    /// An edit made to what was shown, applied to the real value: wherever
    /// the edit left a part as it was shown (redacted), the real part is
    /// kept, so editing one argument does not replace a secret with
    /// `[redacted]`.
    pub fn restore(&self, real: &Value, edited: Value) -> Value {
        let mut shown = real.clone();
        self.value(&mut shown);
        if shown == edited {
            return real.clone();
        }
        match (real, edited) {
            (Value::Object(real), Value::Object(edited)) => Value::Object(
                edited
                    .into_iter()
                    .map(|(k, v)| {
                        let v = match real.get(&k) {
                            Some(r)
                                if self.secret_key(&k) && v == Value::String(REDACTED.into()) =>
                            {
                                r.clone()
                            }
                            Some(r) => self.restore(r, v),
                            None => v,
                        };
                        (k, v)
                    })
                    .collect(),
            ),
            (_, edited) => edited,
        }
    }

    /// Redact in place; true if anything changed.
    pub fn value(&self, v: &mut Value) -> bool {
        match v {
            Value::Object(map) => self.object(map),
            Value::Array(items) => items.iter_mut().fold(false, |c, i| self.value(i) | c),
            Value::String(s) => self.string(s),
            _ => false,
        }
    }

    fn object(&self, map: &mut Map<String, Value>) -> bool {
        let mut changed = false;
        for (k, v) in map.iter_mut() {
            if self.secret_key(k) && !v.is_null() && *v != Value::String(REDACTED.into()) {
                *v = Value::String(REDACTED.into());
                changed = true;
            } else {
                changed |= self.value(v);
            }
        }
        changed
    }

    /// A string: JSON inside it is redacted as JSON; then patterns and
    /// known secrets.
    pub fn string(&self, s: &mut String) -> bool {
        let mut changed = false;
        let t = s.trim_start();
        if (t.starts_with('{') || t.starts_with('['))
            && let Ok(mut inner) = serde_json::from_str::<Value>(s)
            && self.value(&mut inner)
        {
            *s = inner.to_string();
            changed = true;
        }
        if let (Some(inline), Some(hint)) = (&self.inline, &self.inline_hint)
            && hint.is_match(s)
            && inline.is_match(s)
        {
            let replaced = inline.replace_all(s, |c: &regex::Captures<'_>| {
                if &c[2] == REDACTED {
                    c[0].to_string()
                } else {
                    format!("{}{REDACTED}", &c[1])
                }
            });
            if replaced != *s {
                *s = replaced.into_owned();
                changed = true;
            }
        }
        if s.contains("://")
            && s.contains('@')
            && let Some(re) = url_userinfo()
        {
            let replaced = re.replace_all(s, |c: &regex::Captures<'_>| {
                if &c[2] == REDACTED {
                    c[0].to_string()
                } else {
                    format!("{}{REDACTED}@", &c[1])
                }
            });
            if replaced != *s {
                *s = replaced.into_owned();
                changed = true;
            }
        }
        let any = self.any_pattern.as_ref().is_some_and(|a| a.is_match(s));
        for p in self.patterns.iter().filter(|_| any) {
            if p.is_match(s) {
                *s = p.replace_all(s, REDACTED).into_owned();
                changed = true;
            }
        }
        crate::secrets::with_known(|known| {
            for secret in known {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), REDACTED);
                    changed = true;
                }
            }
        });
        changed
    }

    /// Plain text (a log line, a message): patterns and known secrets.
    pub fn text(&self, text: &str) -> String {
        let mut s = text.to_string();
        self.string(&mut s);
        s
    }
}

/// The redactor for log lines: the configured one once a runtime has set
/// it; until then known secrets only.
static FOR_LOGS: std::sync::RwLock<Option<std::sync::Arc<Redactor>>> = std::sync::RwLock::new(None);

pub fn set_for_logs(r: std::sync::Arc<Redactor>) {
    if let Ok(mut slot) = FOR_LOGS.write() {
        *slot = Some(r);
    }
}

/// A log writer that redacts each write (tracing writes one line at a time).
pub struct RedactingWriter<W> {
    pub inner: W,
}

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let redacted = match FOR_LOGS.read().ok().and_then(|r| r.clone()) {
            Some(r) => r.text(&text),
            None => Redactor::default().text(&text),
        };
        // Log files get read with `cat` and `tail -f`: what servers said
        // lands there inert, like everywhere else.
        self.inner
            .write_all(crate::sanitize::clean(&redacted).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A URL's password (`scheme://user:password@host`): the scheme and user
/// stay, so the reader still knows where it pointed. A `/` is allowed in
/// the password (people paste them unencoded); at worst a port and path
/// before a later `@` are redacted too.
/// (The pattern is ours and tested to compile.)
fn url_userinfo() -> Option<&'static Regex> {
    static RE: std::sync::OnceLock<Option<Regex>> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@"'<>]*:)([^@\s"'<>]+)@"#).ok()
    })
    .as_ref()
}

fn normalize(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor() -> Redactor {
        Redactor::new(
            &["token".into(), "password".into(), "api_key".into()],
            &[r"AKIA[0-9A-Z]{16}".into()],
        )
        .expect("redactor")
    }

    #[test]
    fn a_key_is_secret_in_any_case_with_dashes_or_as_a_suffix() {
        let r = redactor();
        for key in [
            "password",
            "PASSWORD",
            "db-password",
            "DB_Password",
            "x-api-key",
            "api-key",
        ] {
            assert!(r.secret_key(key), "{key}");
        }
        for key in [
            "passwordless",
            "my_password_hint",
            "dbpassword",
            "tokens",
            "",
            "_",
        ] {
            assert!(!r.secret_key(key), "{key}");
        }
    }

    #[test]
    fn keys_at_any_depth_and_inside_json_text() {
        let r = redactor();
        let mut v = json!({
            "github_token": "ghp_x",
            "X-Api-Key": "k",
            "prompt_tokens": 12,
            "nested": [{"password": {"deep": 1}}],
            "text": "{\"token\": \"abc\", \"ok\": 1}",
            "note": "key AKIAABCDEFGHIJKLMNOP here",
            "prose": "login with password=hunter2; then {\"api-key\": \"k-1\"} and token: t0k",
        });
        assert!(r.value(&mut v));
        assert_eq!(v["github_token"], REDACTED);
        assert_eq!(v["X-Api-Key"], REDACTED);
        assert_eq!(v["prompt_tokens"], 12);
        assert_eq!(v["nested"][0]["password"], REDACTED);
        assert_eq!(v["text"], "{\"ok\":1,\"token\":\"[redacted]\"}");
        assert_eq!(v["note"], "key [redacted] here");
        assert_eq!(
            v["prose"],
            "login with password=[redacted]; then {\"api-key\": \"[redacted]\"} and token: [redacted]"
        );
        let mut again = v.clone();
        assert!(!r.value(&mut again), "redacting twice changes nothing");
    }

    #[test]
    fn debug_formatted_values_are_redacted_too() {
        let r = redactor();
        let line = r#"data: Object {"msg": String("hi"), "password": String("hunter2"), "token": Some(String("t"))}"#;
        let mut v = json!(line);
        r.value(&mut v);
        let out = v.as_str().unwrap_or_default();
        assert!(!out.contains("hunter2") && !out.contains("\"t\""), "{out}");
        assert!(out.contains(r#""msg": String("hi")"#), "{out}");
    }

    #[test]
    fn values_read_as_secrets_are_redacted_everywhere() {
        crate::secrets::remember("s3cr3t-value-for-redact-test");
        let r = redactor();
        let event = Event::Note {
            text: "the key is s3cr3t-value-for-redact-test, see".into(),
        };
        let (redacted, body) = r.event(&event).expect("event");
        assert_eq!(
            redacted,
            Event::Note {
                text: "the key is [redacted], see".into()
            }
        );
        assert!(!body.contains("s3cr3t"));
    }

    #[test]
    fn an_edit_keeps_the_secrets_it_did_not_touch() {
        let r = redactor();
        let real = json!({"token": "t-real", "note": "key AKIAABCDEFGHIJKLMNOP", "replicas": 2});
        let mut shown = real.clone();
        r.value(&mut shown);
        let mut edited = shown.clone();
        edited["replicas"] = json!(5);
        assert_eq!(
            r.restore(&real, edited),
            json!({"token": "t-real", "note": "key AKIAABCDEFGHIJKLMNOP", "replicas": 5})
        );
        let mut changed = shown;
        changed["token"] = json!("t-new");
        assert_eq!(r.restore(&real, changed)["token"], "t-new");
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let e = Redactor::new(&[], &["(unclosed".into()]).expect_err("bad");
        assert!(e.to_string().contains("(unclosed"), "{e}");
    }

    /// The shortcut for events with nothing to redact must never let one
    /// through that the full walk would change, however it is disguised,
    /// and must be taken for the everyday ones (or it buys nothing).
    #[test]
    fn only_events_with_nothing_to_redact_skip_the_walk() {
        crate::secrets::remember("kn0wn-s3cret-value");
        let r = Redactor::new(
            &["token".into(), "api_key".into(), "pw".into()],
            &[
                r"(?i)\bbearer\s+[a-z0-9._~+/-]+=*".into(),
                "^ghp_[A-Za-z0-9]+$".into(),
            ],
        )
        .expect("redactor");
        let note = |text: &str| Event::Note { text: text.into() };
        let output = |structured: Value| Event::StepSucceeded {
            step: serde_json::from_value(json!("s1")).expect("step"),
            output: serde_json::from_value(json!({
                "is_error": false,
                "text": structured.to_string(),
                "structured": structured,
            }))
            .expect("output"),
            duration_ms: 3,
        };
        let hidden = [
            note(r#"{"\u0074oken": "abc123"}"#),
            note(r#"{"url": "https:\/\/ops:hunter2@db.internal"}"#),
            note("connect to postgres://ops:hunter2@db.internal/app"),
            note("DB-Token=abc123 was set"),
            note("the value is kn0wn-s3cret-value, keep it"),
            output(json!({"Api-Key": "k-123", "ok": true})),
            output(json!({"nested": [{"github_token": "ghp_1"}]})),
            output(json!({"log": "line with kn0wn-s3cret-value in it"})),
            output(json!({"gh": "ghp_abc123"})),
            note(r#"{"headers": ["Authorization: Bearer abc.def"]}"#),
            note(r#"[{"db_pw": 1}, {"ok": "said \"no\""}]"#),
        ];
        for event in &hidden {
            let body = serde_json::to_string(event).expect("body");
            let mut walked = serde_json::to_value(event).expect("value");
            assert!(r.value(&mut walked), "the walk redacts {body}");
            assert!(!r.clean(&body), "taken as clean: {body}");
            let (_, stored) = r
                .cow_event(std::borrow::Cow::Borrowed(event))
                .expect("event");
            assert!(
                [
                    "abc123",
                    "hunter2",
                    "k-123",
                    "ghp_1",
                    "kn0wn-s3cret-value",
                    "abc.def",
                    "pw\":1"
                ]
                .iter()
                .all(|s| !stored.contains(s)),
                "{stored}"
            );
        }
        let everyday = [
            note("deploy checkout to staging"),
            note("said \"yes\" on two lines\nand a tab\there"),
            output(
                json!({"service": "checkout", "env": "staging", "revision": 4,
                          "url": "https://checkout.staging.internal/health"}),
            ),
        ];
        for event in &everyday {
            let body = serde_json::to_string(event).expect("body");
            assert!(r.clean(&body), "not taken as clean: {body}");
            let (kept, stored) = r
                .cow_event(std::borrow::Cow::Borrowed(event))
                .expect("event");
            assert_eq!(&kept, event);
            assert_eq!(stored, body);
        }
        // Patterns are matched against each value, not the event's text.
        let anchored = Redactor::new(&[], &["^deploy".into()]).expect("redactor");
        let body = serde_json::to_string(&everyday[0]).expect("body");
        assert!(!anchored.clean(&body));
        let (_, stored) = anchored.event(&everyday[0]).expect("event");
        assert!(stored.contains(REDACTED), "{stored}");
    }
}
