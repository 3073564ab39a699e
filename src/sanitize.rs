//! The one gate between outside text and a terminal.
//!
//! Servers, language models and the log (which holds what they said) can
//! carry bytes a terminal acts on: escape sequences that set the title,
//! clear the screen or move the cursor, carriage returns that overwrite a
//! line, and bidirectional overrides that make text read differently from
//! what it is. Everything from outside passes through here before it is
//! printed or drawn, and comes out inert and *visible*: a control becomes
//! its Unicode control picture (`␛`, `␍`), a C1 control or a bidi override
//! becomes `⟨U+202E⟩`, so a forged line shows as forged instead of
//! vanishing.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is.
fn hostile(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        '\0'..='\x1f' | '\x7f' => true,
        '\u{80}'..='\u{9f}' => true,
        // Bidi embeddings, overrides and isolates, the marks, and the
        // Arabic letter mark: they reorder what the reader sees.
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' => true,
        '\u{061c}' => true,
        // Line and paragraph separators break lines in some terminals.
        '\u{2028}' | '\u{2029}' => true,
        _ => false,
    }
}

fn visible(c: char, out: &mut String) {
    match c {
        // C0 controls have pictures at U+2400 + code; DEL has its own.
        '\0'..='\x1f' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('�')),
        '\x7f' => out.push('␡'),
        _ => {
            out.push_str(&format!("⟨U+{:04X}⟩", c as u32));
        }
    }
}

/// Text made safe for a terminal: newlines and tabs stay, every other
/// control and every bidi control is shown as a visible mark. Borrowed
/// (no copy) when there was nothing to change, which is nearly always.
pub fn clean(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(hostile) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if hostile(c) {
            visible(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// As `clean`, in place: for text kept in view state.
pub fn clean_in_place(s: &mut String) {
    if let Cow::Owned(c) = clean(s) {
        *s = c;
    }
}

/// One line for a list: `clean`, with line breaks shown as `⏎`, tabs as
/// spaces, and anything past `max` characters cut with a marker that says
/// how much was left out.
pub fn line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4) + 8);
    let mut chars = s.chars();
    for (shown, c) in chars.by_ref().enumerate() {
        if shown == max {
            let rest = 1 + chars.count();
            out.push_str(&format!("… (+{rest} chars)"));
            return out;
        }
        match c {
            '\n' => out.push('⏎'),
            '\t' => out.push(' '),
            c if hostile(c) => visible(c, &mut out),
            c => out.push(c),
        }
    }
    out
}

/// JSON text (as serde_json writes it) made safe for a terminal without
/// changing what it means: the controls serde_json leaves raw inside
/// strings (C1, bidi) become `\uXXXX` escapes, which decode to the very
/// same string. Used for `--json` output and exports, whose bytes are data.
pub fn json_text(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(hostile) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if hostile(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Every string inside a JSON value, cleaned in place; true if any changed.
pub fn clean_json(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            if let Cow::Owned(c) = clean(s) {
                *s = c;
                true
            } else {
                false
            }
        }
        Value::Array(items) => items.iter_mut().fold(false, |any, i| clean_json(i) | any),
        Value::Object(map) => {
            let mut any = false;
            let dirty: Vec<String> = map
                .keys()
                .filter(|k| k.contains(hostile))
                .cloned()
                .collect();
            for k in dirty {
                if let Some(value) = map.remove(&k) {
                    map.insert(clean(&k).into_owned(), value);
                    any = true;
                }
            }
            for value in map.values_mut() {
                any |= clean_json(value);
            }
            any
        }
        _ => false,
    }
}

/// Any serialisable value with every string in it cleaned: for events and
/// states from the log, whose strings came from outside. Returns `None`
/// when nothing needed cleaning (the caller keeps its own copy).
pub fn cleaned<T>(value: &T) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut v = serde_json::to_value(value).ok()?;
    if !clean_json(&mut v) {
        return None;
    }
    serde_json::from_value(v).ok()
}

/// `value` with every string in it cleaned (itself when nothing needed it).
pub fn scrub<T>(value: T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    cleaned(&value).unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_not_copied() {
        assert!(matches!(
            clean("deploy checkout\n\tto staging ✓"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn escapes_and_controls_become_visible() {
        let title = "\x1b]0;pwned\x07ok";
        assert_eq!(clean(title), "␛]0;pwned␇ok");
        assert_eq!(clean("\x1b[2J\x1b[H"), "␛[2J␛[H");
        assert_eq!(clean("50%\rdone"), "50%␍done");
        assert_eq!(clean("a\u{9b}31mb"), "a⟨U+009B⟩31mb");
        assert_eq!(clean("x\u{7f}"), "x␡");
        assert_eq!(
            clean("user\u{202e}gnp.exe"),
            "user⟨U+202E⟩gnp.exe",
            "a bidi override is shown, not obeyed"
        );
        for out in [clean("\x1b[31m"), clean("\u{9d}0;x\u{9c}")] {
            assert!(!out.chars().any(hostile), "{out}");
        }
    }

    #[test]
    fn list_lines_are_one_line_and_cut_with_a_marker() {
        assert_eq!(line("a\nb\tc", 10), "a⏎b c");
        assert_eq!(line("abcdefgh", 3), "abc… (+5 chars)");
        assert_eq!(line("abc", 3), "abc");
        assert_eq!(line("\x1b[2Jx", 10), "␛[2Jx");
    }

    #[test]
    fn json_text_escapes_keep_the_meaning() {
        let v = serde_json::json!({"t": "a\u{9b}b\u{202e}c\x1b"});
        let text = serde_json::to_string(&v).expect("json");
        let safe = json_text(&text);
        assert!(!safe.chars().any(hostile), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back, v);
    }

    #[test]
    fn json_strings_and_keys_are_cleaned() {
        let mut v = serde_json::json!({"a\x1b": ["\x1b[2J", 1, {"b": "ok"}], "c": "fine"});
        assert!(clean_json(&mut v));
        assert_eq!(
            v,
            serde_json::json!({"a␛": ["␛[2J", 1, {"b": "ok"}], "c": "fine"})
        );
        let mut plain = serde_json::json!({"a": ["b"]});
        assert!(!clean_json(&mut plain));
    }
}
