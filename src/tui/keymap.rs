//! Config key specs matched against crossterm key events.

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::config::keys::{DEFAULTS, KeyName, KeySpec};

#[derive(Debug, Clone)]
pub struct KeyMap {
    bindings: BTreeMap<&'static str, KeySpec>,
}

impl KeyMap {
    /// Defaults overlaid with `[keys]` (already validated at config load).
    pub fn new(overrides: &BTreeMap<String, String>) -> Self {
        let bindings = DEFAULTS
            .iter()
            .filter_map(|(action, default)| {
                let spec = overrides.get(*action).map_or(*default, String::as_str);
                KeySpec::parse(spec)
                    .or_else(|_| KeySpec::parse(default))
                    .ok()
                    .map(|k| (*action, k))
            })
            .collect();
        Self { bindings }
    }

    pub fn is(&self, action: &str, key: &KeyEvent) -> bool {
        self.bindings
            .get(action)
            .is_some_and(|spec| matches(spec, key))
    }

    /// The key for an action as shown in hints.
    pub fn label(&self, action: &str) -> String {
        self.bindings
            .get(action)
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

fn matches(spec: &KeySpec, key: &KeyEvent) -> bool {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    if ctrl != spec.ctrl || alt != spec.alt {
        return false;
    }
    match (&spec.key, key.code) {
        (KeyName::Char(c), KeyCode::Char(k)) => *c == k,
        (KeyName::F(n), KeyCode::F(k)) => *n == k,
        (KeyName::Tab, KeyCode::Tab) => true,
        (KeyName::BackTab, KeyCode::BackTab) => true,
        (KeyName::Enter, KeyCode::Enter) => true,
        (KeyName::Esc, KeyCode::Esc) => true,
        (KeyName::Up, KeyCode::Up) => true,
        (KeyName::Down, KeyCode::Down) => true,
        (KeyName::Left, KeyCode::Left) => true,
        (KeyName::Right, KeyCode::Right) => true,
        (KeyName::PageUp, KeyCode::PageUp) => true,
        (KeyName::PageDown, KeyCode::PageDown) => true,
        (KeyName::Home, KeyCode::Home) => true,
        (KeyName::End, KeyCode::End) => true,
        (KeyName::Delete, KeyCode::Delete) => true,
        (KeyName::Backspace, KeyCode::Backspace) => true,
        _ => false,
    }
}
