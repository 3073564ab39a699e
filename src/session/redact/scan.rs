//! Reading an event's JSON text for anything the redactor could change,
//! without building it as a tree.
//!
//! Every event on a governed call's path is redacted before it is
//! journaled, and almost none holds a secret. Building each as a
//! `serde_json::Value`, walking it and printing it again cost more than
//! the call's own journal write; parsing the text it is printed as anyway,
//! and looking at each key and string in place, costs a fraction of that.
//! The look is the walk's own tests, on the same keys and strings (JSON
//! carried as text is read the same way), with any hint of a secret
//! counted: a `false` here means the walk would change nothing.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Redactor;

/// Whether anything in `json` may be redacted; `None` when it is not JSON.
pub(super) fn flags(redactor: &Redactor, json: &str) -> Option<bool> {
    let mut de = serde_json::Deserializer::from_str(json);
    let scan = Scan {
        redactor,
        as_key: false,
    };
    let found = scan.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(found)
}

/// One JSON value, or an object's key (a secret key hides its value):
/// does it need the walk?
#[derive(Clone, Copy)]
struct Scan<'r> {
    redactor: &'r Redactor,
    as_key: bool,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, s: &str) -> Result<bool, E> {
        Ok(if self.as_key {
            self.redactor.secret_key(s)
        } else {
            self.redactor.may_redact(s)
        })
    }

    // Every element is read, even after a find: the text must be read
    // to its end to be known as JSON.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(f) = seq.next_element_seed(self)? {
            found |= f;
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let key = Scan {
            as_key: true,
            ..self
        };
        let mut found = false;
        while let Some(secret) = map.next_key_seed(key)? {
            found |= map.next_value_seed(self)? || secret;
        }
        Ok(found)
    }
}
