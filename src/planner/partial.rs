//! A plan read while the model is still writing it: the steps whose JSON
//! object is complete so far, so they can be shown before the answer ends.

use serde_json::Value;

/// The complete objects of the `"steps"` array in `text`, a JSON document
/// still being written. Nothing is guessed: an object counts once its
/// closing brace has arrived.
pub fn complete_steps(text: &str) -> Vec<Value> {
    let Some(key) = text.find("\"steps\"") else {
        return Vec::new();
    };
    let rest = &text[key + 7..];
    let Some(open) = rest.find('[') else {
        return Vec::new();
    };
    if !rest[..open]
        .trim()
        .trim_start_matches(':')
        .trim()
        .is_empty()
    {
        return Vec::new();
    }
    let body = &rest[open + 1..];
    let mut out = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut start = None;
    for (i, c) in body.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => {
                if depth == 0 && c == '{' {
                    start = Some(i);
                }
                depth += 1;
            }
            '}' | ']' => {
                if depth == 0 {
                    break; // the end of the steps array
                }
                depth -= 1;
                if depth == 0
                    && c == '}'
                    && let Some(s) = start.take()
                    && let Ok(v) = serde_json::from_str::<Value>(&body[s..=i])
                {
                    out.push(v);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_steps_count() {
        let whole = r#"{"needs_clarification": false, "question": "", "title": "t", "steps": [{"id": "build", "tool": "ci.build", "args": {"service": "a}b"}, "depends_on": []}, {"id": "test", "tool": "ci.run_tests", "args": {"x": [1, {"y": 2}]}, "depends_on": ["build"]}]}"#;
        let mut seen = Vec::new();
        for end in 0..=whole.len() {
            if whole.is_char_boundary(end) {
                seen.push(complete_steps(&whole[..end]).len());
            }
        }
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "never goes back");
        assert_eq!(seen.last(), Some(&2));
        let cut = whole.find(r#", {"id": "test""#).expect("second step");
        let first = complete_steps(&whole[..cut]);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["args"]["service"], "a}b");
        assert!(complete_steps(r#"{"title": "steps [ {"#).is_empty());
    }
}
