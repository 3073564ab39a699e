//! Tool patterns: `k8s.deploy`, `k8s.*`, `*.delete_*`. `*` matches any run
//! of characters (dots included); everything else matches itself. `/` is
//! allowed for what a served client does besides calling tools
//! (`github.resources/read`, `*.sampling/createMessage`): MCP tool names
//! never contain it.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    /// The literal pieces between `*`s.
    parts: Vec<String>,
    starts_open: bool,
    ends_open: bool,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty tool pattern matches nothing; use \"*\" for every tool".into());
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '*' | '.' | '_' | '-' | '/')))
        {
            return Err(format!(
                "tool pattern `{text}` has `{bad}`; patterns are server.tool names with `*` as a wildcard"
            ));
        }
        Ok(Self {
            text: text.to_string(),
            parts: text
                .split('*')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            starts_open: text.starts_with('*'),
            ends_open: text.ends_with('*'),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The server this pattern is limited to, if its server part is literal.
    pub fn server(&self) -> Option<&str> {
        let (server, _) = self.text.split_once('.')?;
        (!server.contains('*')).then_some(server)
    }

    /// The tool name this pattern is limited to, if its part after the
    /// first dot is literal (`*.delete_all`).
    pub fn tool_name(&self) -> Option<&str> {
        let (server, name) = self.text.split_once('.')?;
        (server == "*" && !name.contains('*')).then_some(name)
    }

    pub fn matches(&self, tool: &str) -> bool {
        if self.parts.is_empty() {
            return self.starts_open || tool.is_empty();
        }
        let mut rest = tool;
        for (i, part) in self.parts.iter().enumerate() {
            let first = i == 0;
            let last = i == self.parts.len() - 1;
            if first && !self.starts_open {
                let Some(r) = rest.strip_prefix(part.as_str()) else {
                    return false;
                };
                rest = r;
                if last && !self.ends_open {
                    return rest.is_empty();
                }
                continue;
            }
            if last && !self.ends_open {
                return rest.len() >= part.len() && rest.ends_with(part.as_str());
            }
            match rest.find(part.as_str()) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).expect("pattern").matches(t)
    }

    #[test]
    fn wildcards_match_as_written() {
        assert!(m("k8s.deploy", "k8s.deploy"));
        assert!(!m("k8s.deploy", "k8s.deploy_all"));
        assert!(m("k8s.*", "k8s.deploy"));
        assert!(!m("k8s.*", "k8sx.deploy"));
        assert!(m("*.delete_*", "fs.delete_file"));
        assert!(!m("*.delete_*", "fs.undelete"));
        assert!(m("*", "anything.at_all"));
        assert!(m("github.resources/*", "github.resources/read"));
        assert!(!m("github.resources/*", "github.prompts/get"));
        assert!(m("*.status", "k8s.status"));
        assert!(!m("*.status", "k8s.status_all"));
        assert!(m("k*.d*y", "k8s.deploy"));
        assert!(!m("ab*ab", "ab"), "the two literal ends cannot overlap");
        assert_eq!(
            Pattern::parse("k8s.*")
                .ok()
                .and_then(|p| p.server().map(str::to_string)),
            Some("k8s".into())
        );
        assert!(Pattern::parse("*.x").is_ok_and(|p| p.server().is_none()));
        assert!(Pattern::parse("k8s deploy").is_err());
        assert!(Pattern::parse("").is_err());
    }
}
