//! Key specifications in config (`"a"`, `"ctrl-x"`, `"f1"`, `"tab"`),
//! parsed without knowing about any terminal library.

use std::fmt;

/// Every action a key can be bound to, with its default.
pub const DEFAULTS: [(&str, &str); 21] = [
    ("approve", "a"),
    ("approve_remember", "T"),
    ("approve_ready", "A"),
    ("skip", "s"),
    ("reject", "r"),
    ("edit", "e"),
    ("cancel", "x"),
    ("cancel_run", "X"),
    ("help", "?"),
    ("servers", "S"),
    ("planner", "P"),
    ("history", "H"),
    ("rerun", "R"),
    ("pending", "W"),
    ("review", "V"),
    ("insights", "I"),
    ("filter", "f"),
    ("next_pane", "tab"),
    ("prev_pane", "backtab"),
    ("input", "i"),
    ("quit", "q"),
];

/// The action names, for validation and "did you mean".
pub fn actions() -> impl Iterator<Item = &'static str> {
    DEFAULTS.iter().map(|(a, _)| *a)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyName {
    Char(char),
    F(u8),
    Tab,
    BackTab,
    Enter,
    Esc,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Delete,
    Backspace,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySpec {
    pub key: KeyName,
    pub ctrl: bool,
    pub alt: bool,
}

impl KeySpec {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = s.trim();
        loop {
            let lower = rest.to_ascii_lowercase();
            if lower.starts_with("ctrl-") && rest.len() > 5 {
                ctrl = true;
                rest = &rest[5..];
            } else if lower.starts_with("alt-") && rest.len() > 4 {
                alt = true;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        let key = match rest.to_ascii_lowercase().as_str() {
            "tab" => KeyName::Tab,
            "backtab" | "shift-tab" => KeyName::BackTab,
            "enter" => KeyName::Enter,
            "esc" => KeyName::Esc,
            "up" => KeyName::Up,
            "down" => KeyName::Down,
            "left" => KeyName::Left,
            "right" => KeyName::Right,
            "pageup" => KeyName::PageUp,
            "pagedown" => KeyName::PageDown,
            "home" => KeyName::Home,
            "end" => KeyName::End,
            "delete" => KeyName::Delete,
            "backspace" => KeyName::Backspace,
            f if f.len() >= 2
                && f.starts_with('f')
                && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
            {
                KeyName::F(f[1..].parse().unwrap_or(1))
            }
            _ => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if !c.is_control() => KeyName::Char(c),
                    _ => {
                        return Err(format!(
                            "`{s}` is not a key; write one character (\"a\", \"?\"), a name (tab, enter, esc, up, f1…) or ctrl-/alt- before either"
                        ));
                    }
                }
            }
        };
        Ok(Self { key, ctrl, alt })
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        match &self.key {
            KeyName::Char(c) => write!(f, "{c}"),
            KeyName::F(n) => write!(f, "F{n}"),
            other => write!(f, "{}", format!("{other:?}").to_lowercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_keys() {
        assert_eq!(KeySpec::parse("a").map(|k| k.to_string()), Ok("a".into()));
        assert_eq!(
            KeySpec::parse("ctrl-x").map(|k| k.to_string()),
            Ok("ctrl-x".into())
        );
        assert_eq!(KeySpec::parse("F1").map(|k| k.to_string()), Ok("F1".into()));
        assert_eq!(KeySpec::parse("Tab").map(|k| k.key), Ok(KeyName::Tab));
        assert!(KeySpec::parse("hyper-q").is_err());
        assert!(DEFAULTS.iter().all(|(_, k)| KeySpec::parse(k).is_ok()));
    }
}
