//! Themes: colours by role, from `themes/*.toml` (embedded). `NO_COLOR`
//! gives a theme with no colours at all: emphasis by bold and reverse only.

use std::collections::BTreeMap;
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};

const DARK: &str = include_str!("../../themes/dark.toml");
const LIGHT: &str = include_str!("../../themes/light.toml");
const HIGH_CONTRAST: &str = include_str!("../../themes/high-contrast.toml");

#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    pub base: Style,
    pub muted: Style,
    pub accent: Style,
    pub border: Style,
    pub border_focused: Style,
    pub user: Style,
    pub assistant: Style,
    pub ok: Style,
    pub running: Style,
    pub warn: Style,
    pub error: Style,
    pub gated: Style,
    pub selection: Style,
}

impl Theme {
    /// A theme by name; unknown names fall back to dark (config validation
    /// has already refused them).
    pub fn named(name: &str) -> Self {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return Self::plain();
        }
        let text = match name {
            "light" => LIGHT,
            "high-contrast" => HIGH_CONTRAST,
            _ => DARK,
        };
        Self::parse(text).unwrap_or_else(|_| Self::plain())
    }

    fn parse(text: &str) -> Result<Self, String> {
        let table: BTreeMap<String, String> = toml::from_str(text).map_err(|e| e.to_string())?;
        let color = |key: &str| -> Result<Color, String> {
            let v = table
                .get(key)
                .ok_or_else(|| format!("theme has no `{key}`"))?;
            Color::from_str(v).map_err(|_| format!("theme `{key}`: `{v}` is not a colour"))
        };
        let fg = |key: &str| color(key).map(|c| Style::new().fg(c));
        let background = color("background")?;
        Ok(Self {
            name: table.get("name").cloned().unwrap_or_default(),
            base: Style::new().fg(color("foreground")?).bg(background),
            muted: fg("muted")?,
            accent: fg("accent")?.add_modifier(Modifier::BOLD),
            border: fg("border")?,
            border_focused: fg("border_focused")?,
            user: fg("user")?.add_modifier(Modifier::BOLD),
            assistant: fg("assistant")?,
            ok: fg("ok")?,
            running: fg("running")?,
            warn: fg("warn")?,
            error: fg("error")?.add_modifier(Modifier::BOLD),
            gated: fg("gated")?.add_modifier(Modifier::BOLD),
            selection: Style::new().bg(color("selection")?),
        })
    }

    /// No colours: for NO_COLOR and as a last resort.
    pub fn plain() -> Self {
        let s = Style::new();
        Self {
            name: "plain".into(),
            base: s,
            muted: s.add_modifier(Modifier::DIM),
            accent: s.add_modifier(Modifier::BOLD),
            border: s,
            border_focused: s.add_modifier(Modifier::BOLD),
            user: s.add_modifier(Modifier::BOLD),
            assistant: s,
            ok: s,
            running: s.add_modifier(Modifier::BOLD),
            warn: s.add_modifier(Modifier::BOLD),
            error: s.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            gated: s.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            selection: s.add_modifier(Modifier::REVERSED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_theme_parses() {
        for text in [DARK, LIGHT, HIGH_CONTRAST] {
            let theme = Theme::parse(text).expect("theme parses");
            assert!(!theme.name.is_empty());
        }
    }
}
