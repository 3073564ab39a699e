//! Reading a request the way an engineer writes it: any word order,
//! politeness, punctuation, "the checkout service", `checkout@main`,
//! "from staging to production", `#oncall`, quoted text, paths, numbers,
//! and other words for services and environments.
//!
//! What comes out is the request's parts, not a decision: planners match
//! them against runbooks and tools, and ask when something is missing.

use crate::estate::Estate;

/// Words that carry no meaning for planning.
const FILLER: &[&str] = &[
    "please",
    "pls",
    "plz",
    "kindly",
    "now",
    "can",
    "could",
    "you",
    "would",
    "will",
    "the",
    "a",
    "an",
    "me",
    "for",
    "thanks",
    "thank",
    "hey",
    "hi",
    "opsbot",
    "just",
    "go",
    "ahead",
    "and",
    "then",
    "i",
    "want",
    "to",
    "need",
    "let",
    "lets",
    "let's",
    "us",
    "some",
    "of",
    "on",
    "in",
    "at",
    "is",
    "are",
    "what",
    "whats",
    "what's",
    "any",
    "there",
    "do",
    "does",
    "my",
    "our",
    "it",
    "its",
    "be",
    "with",
    "that",
    "this",
    "up",
    "service",
    "environment",
    "env",
    "cluster",
    "quickly",
    "asap",
    "right",
    "away",
];

/// The parts of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Understood {
    /// Lower-case words, punctuation removed, fillers kept (phrases need
    /// them); `words()` drops fillers.
    pub tokens: Vec<String>,
    /// Known services named, canonical, in order.
    pub services: Vec<String>,
    /// Known environments named, canonical, in order.
    pub envs: Vec<String>,
    /// An environment after "to" / "into" / "onto" (where things go).
    pub to_env: Option<String>,
    /// An environment after "from".
    pub from_env: Option<String>,
    /// Words where an environment was expected ("to qa") that are none.
    pub unknown_envs: Vec<String>,
    /// Words that look like a service ("deploy chekout") but are none.
    pub unknown_services: Vec<String>,
    /// `service@ref`: the ref.
    pub git_ref: Option<String>,
    pub numbers: Vec<i64>,
    /// `#channel`.
    pub channels: Vec<String>,
    /// Text in quotes, or after "that" / "saying" / ":" in a message.
    pub text: Option<String>,
    /// Paths (`/srv/app`, `./x`, `~/y`).
    pub paths: Vec<String>,
    /// Words with a `/` that are not paths (`Europe/Paris`).
    pub slashed: Vec<String>,
    /// `key=value` pairs, as typed.
    pub pairs: Vec<(String, String)>,
    /// A `server.tool` name, as typed.
    pub tool: Option<String>,
}

/// `word` is `stem` or a form of it: deployed, deploying, deploys, shipped.
fn inflects(word: &str, stem: &str) -> bool {
    if word == stem {
        return true;
    }
    let Some(rest) = word.strip_prefix(stem) else {
        return false;
    };
    // A doubled last letter before -ed / -ing: shipped, shipping.
    let rest = match (stem.chars().last(), rest.chars().next()) {
        (Some(l), Some(f)) if l == f && rest.len() > 2 => &rest[1..],
        _ => rest,
    };
    matches!(rest, "s" | "es" | "ed" | "d" | "ing")
}

fn is_filler(w: &str) -> bool {
    FILLER.contains(&w)
}

/// Split into words, keeping what names things: `#`, `@`, `/`, `.`, `-`,
/// `_`, `=` and `:` inside words; quotes are taken out first.
fn split(request: &str) -> (Vec<String>, Option<String>) {
    let mut quoted = None;
    let mut rest = String::with_capacity(request.len());
    let mut chars = request.chars().peekable();
    while let Some(c) = chars.next() {
        let close = match c {
            '"' => Some('"'),
            '“' => Some('”'),
            '\'' if rest.ends_with(|p: char| p.is_whitespace()) || rest.is_empty() => Some('\''),
            _ => None,
        };
        if let Some(close) = close {
            let inner: String = chars.by_ref().take_while(|x| *x != close).collect();
            if quoted.is_none() && !inner.trim().is_empty() {
                quoted = Some(inner.trim().to_string());
            }
            rest.push(' ');
            continue;
        }
        rest.push(c);
    }
    let words = rest
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| matches!(c, ',' | '!' | '?' | ';' | '(' | ')' | '.' | ':'))
                .to_string()
        })
        .filter(|w| !w.is_empty())
        .collect();
    (words, quoted)
}

impl Understood {
    /// The content words: tokens without fillers.
    pub fn words(&self) -> Vec<&str> {
        self.tokens
            .iter()
            .map(String::as_str)
            .filter(|w| !is_filler(w))
            .collect()
    }

    /// Whether a word (or a two-word phrase, "roll back") is in the request.
    pub fn has(&self, phrase: &str) -> bool {
        self.position(phrase).is_some()
    }

    /// Where a word or phrase first appears, in tokens.
    pub fn position(&self, phrase: &str) -> Option<usize> {
        let parts: Vec<&str> = phrase.split_whitespace().collect();
        if parts.is_empty() {
            return None;
        }
        // "push catalog out": a two-word verb may have its object between.
        if let [first, second] = parts.as_slice() {
            let at = self.tokens.iter().position(|t| inflects(t, first))?;
            let within = &self.tokens[at + 1..(at + 5).min(self.tokens.len())];
            return within.iter().any(|t| t == second).then_some(at);
        }
        self.tokens.iter().position(|t| inflects(t, parts[0]))
    }

    /// The one environment the request means: where things go, else the
    /// only one named.
    pub fn env(&self) -> Option<&str> {
        match (self.envs.as_slice(), &self.from_env, &self.to_env) {
            ([one], _, _) => Some(one),
            // "from staging to production": where it goes.
            (_, Some(_), Some(to)) => Some(to),
            // "to staging and production": which one is not said.
            _ => None,
        }
    }
}

/// Read a request against the estate.
pub fn understand(request: &str, estate: &Estate) -> Understood {
    let (raw, quoted) = split(request);
    let mut u = Understood {
        text: quoted,
        ..Understood::default()
    };
    let known_service = |w: &str| canonical(estate, w, &estate.services);
    let known_env = |w: &str| canonical(estate, w, &estate.envs);
    let mut prev: Option<String> = None;
    for word in &raw {
        let lower = word.to_lowercase();
        if let Some((k, v)) = word.split_once('=')
            && !k.is_empty()
            && !k.contains('/')
        {
            u.pairs.push((k.to_string(), v.to_string()));
            prev = None;
            continue;
        }
        if let Some(ch) = lower.strip_prefix('#')
            && !ch.is_empty()
        {
            u.channels.push(format!("#{ch}"));
            prev = None;
            continue;
        }
        if word.starts_with('/') || word.starts_with("./") || word.starts_with("~/") {
            u.paths.push(word.clone());
            prev = None;
            continue;
        }
        if word.contains('/') {
            u.slashed.push(word.clone());
            prev = None;
            continue;
        }
        let (name, git_ref) = match lower.split_once('@') {
            Some((n, r)) if !n.is_empty() && !r.is_empty() => (n.to_string(), Some(r.to_string())),
            _ => (lower.clone(), None),
        };
        if let Some(r) = git_ref {
            u.git_ref = Some(r);
        }
        if name.contains('.')
            && !name.starts_with('.')
            && name.split('.').all(|p| !p.is_empty())
            && name.parse::<f64>().is_err()
        {
            u.tool = Some(word.split('@').next().unwrap_or(word).to_string());
            prev = None;
            continue;
        }
        if let Ok(n) = name.parse::<i64>() {
            u.numbers.push(n);
        }
        // "prod's", "checkout's"
        let name = name.trim_end_matches("'s").to_string();
        if let Some(s) = known_service(&name) {
            if !u.services.contains(&s) {
                u.services.push(s);
            }
        } else if let Some(e) = known_env(&name) {
            match prev.as_deref() {
                Some("to" | "into" | "onto") => u.to_env = Some(e.clone()),
                Some("from") => u.from_env = Some(e.clone()),
                _ => {}
            }
            if !u.envs.contains(&e) {
                u.envs.push(e);
            }
        } else if matches!(prev.as_deref(), Some("to" | "into" | "onto" | "in" | "on"))
            && !is_filler(&name)
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && name.parse::<f64>().is_err()
            && !matches!(
                name.as_str(),
                "replica" | "replicas" | "pods" | "instances" | "production-like" | "main"
            )
        {
            u.unknown_envs.push(name.clone());
        }
        u.tokens.push(name.clone());
        prev = Some(name);
    }
    if u.text.is_none() {
        u.text = message_text(&raw);
    }
    // A word next to a known environment or deploy verb that is nearly a
    // service is probably a misspelt one.
    let near: Vec<String> = u
        .words()
        .into_iter()
        .filter(|w| {
            !estate.services.iter().any(|s| s == w)
                && crate::text::closest(w, estate.services.iter().map(String::as_str)).is_some()
                && w.len() > 3
                && !estate.envs.iter().any(|e| e == w)
        })
        .map(str::to_string)
        .collect();
    u.unknown_services = near;
    u.unknown_services.dedup();
    u
}

/// The text of a message: what follows "that", "saying", "say" or ":" in
/// a request to tell or notify someone.
fn message_text(raw: &[String]) -> Option<String> {
    let lower: Vec<String> = raw.iter().map(|w| w.to_lowercase()).collect();
    let start = lower
        .iter()
        .position(|w| matches!(w.as_str(), "that" | "saying" | "say" | "says"))
        .map(|i| i + 1)?;
    let text = raw[start..].join(" ");
    (!text.trim().is_empty()).then(|| text.trim().to_string())
}

fn canonical(estate: &Estate, word: &str, known: &[String]) -> Option<String> {
    if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(word)) {
        return Some(k.clone());
    }
    estate
        .alias(word)
        .filter(|to| known.iter().any(|k| k == to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, DEFAULT_TOML, load_layers};

    fn estate() -> Estate {
        let loaded = load_layers(vec![ConfigSource {
            name: "d".into(),
            text: DEFAULT_TOML.into(),
        }])
        .expect("config");
        Estate::new(&loaded.config)
    }

    #[test]
    fn the_parts_of_everyday_requests() {
        let e = estate();
        let u = understand("Please deploy the checkout service to prod!", &e);
        assert_eq!(u.services, ["checkout"]);
        assert_eq!(u.env(), Some("production"));
        let u = understand("promote checkout from staging to production", &e);
        assert_eq!(u.from_env.as_deref(), Some("staging"));
        assert_eq!(u.to_env.as_deref(), Some("production"));
        assert_eq!(u.env(), Some("production"));
        let u = understand("deploy checkout@v2.1 to dev", &e);
        assert_eq!(u.services, ["checkout"]);
        assert_eq!(u.git_ref.as_deref(), Some("v2.1"));
        let u = understand("tell #oncall that checkout is fixed", &e);
        assert_eq!(u.channels, ["#oncall"]);
        assert_eq!(u.text.as_deref(), Some("checkout is fixed"));
        let u = understand("post \"all clear\" to #deploys", &e);
        assert_eq!(u.text.as_deref(), Some("all clear"));
        let u = understand("scale payments to 5 replicas in staging", &e);
        assert_eq!(u.numbers, [5]);
        assert!(u.unknown_envs.is_empty(), "{:?}", u.unknown_envs);
        let u = understand("deploy checkout to qa", &e);
        assert_eq!(u.unknown_envs, ["qa"]);
        let u = understand("git status of /srv/app", &e);
        assert_eq!(u.paths, ["/srv/app"]);
        let u = understand("time.get_current_time timezone=Europe/Paris", &e);
        assert_eq!(u.tool.as_deref(), Some("time.get_current_time"));
        assert_eq!(
            u.pairs,
            [("timezone".to_string(), "Europe/Paris".to_string())]
        );
        let u = understand("push catalog out to production", &e);
        assert!(u.has("push out"));
    }
}
