//! Strict JSON: the one JSON reader for everything that comes from outside.
//!
//! `serde_json` on its own keeps the last of two equal keys, nests up to 128 levels and takes
//! strings of any length. A document is refused when it
//! - starts with a byte-order mark or is not UTF-8,
//! - repeats a key in one object (also when the repeat is spelled with escapes, `"a"` and
//!   `"\u0061"`): two readers could disagree about which value counts,
//! - nests arrays and objects deeper than [`JsonLimits::max_depth`],
//! - holds a string (or key) longer than [`JsonLimits::max_string_bytes`].
//!
//! Anything else that is not JSON is [`JsonError::Malformed`], described by category and
//! position only (the parser's own text could quote the input).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Limits of one strict parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Arrays and objects nested deeper than this are refused (the top-level value is depth 1).
    pub max_depth: usize,
    /// Strings and keys longer than this many bytes (after unescaping) are refused.
    pub max_string_bytes: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_string_bytes: 65_536,
        }
    }
}

/// Why a document was refused. Never carries input text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("byte-order mark before JSON")]
    Bom,
    #[error("encoding other than UTF-8")]
    NotUtf8,
    #[error("duplicate key in a JSON object")]
    DuplicateKey,
    #[error("JSON nested deeper than {0}")]
    TooDeep(usize),
    #[error("JSON string longer than {0} bytes")]
    StringTooLong(usize),
    #[error("not valid JSON at line {line} column {column} ({kind})")]
    Malformed {
        kind: &'static str,
        line: usize,
        column: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    DuplicateKey,
    TooDeep,
    StringTooLong,
}

/// Parse one document strictly (see the module documentation).
pub fn parse_strict(bytes: &[u8], limits: JsonLimits) -> Result<Value, JsonError> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(JsonError::Bom);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::NotUtf8)?;
    let refusal = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Strict {
        depth: 0,
        limits,
        refusal: &refusal,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match refusal.get() {
        Some(Refusal::DuplicateKey) => JsonError::DuplicateKey,
        Some(Refusal::TooDeep) => JsonError::TooDeep(limits.max_depth),
        Some(Refusal::StringTooLong) => JsonError::StringTooLong(limits.max_string_bytes),
        None => JsonError::Malformed {
            kind: error_kind(&e),
            line: e.line(),
            column: e.column(),
        },
    })
}

/// A serde_json error by category only.
pub fn error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "i/o",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "wrong shape",
        serde_json::error::Category::Eof => "truncated",
    }
}

/// Builds a [`Value`] like serde_json's own, counting depth, measuring strings and refusing
/// repeated keys. A refusal is recorded in `refusal` (serde errors are strings; the cell
/// keeps it typed).
#[derive(Clone, Copy)]
struct Strict<'r> {
    depth: usize,
    limits: JsonLimits,
    refusal: &'r Cell<Option<Refusal>>,
}

impl Strict<'_> {
    fn nested<E: de::Error>(&self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > self.limits.max_depth {
            return Err(self.refuse(Refusal::TooDeep));
        }
        Ok(Strict {
            depth,
            limits: self.limits,
            refusal: self.refusal,
        })
    }

    fn refuse<E: de::Error>(&self, why: Refusal) -> E {
        self.refusal.set(Some(why));
        E::custom("refused")
    }

    fn string<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if len > self.limits.max_string_bytes {
            return Err(self.refuse(Refusal::StringTooLong));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A key, measured before it is kept.
struct Key<'r>(Strict<'r>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.0.string(v.len())?;
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.0.string(v.len())?;
        Ok(v)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.string(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.string(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(inner)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key(self))? {
            if out.contains_key(&key) {
                return Err(self.refuse(Refusal::DuplicateKey));
            }
            let v = map.next_value_seed(inner)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
        parse_strict(bytes, JsonLimits::default())
    }

    #[test]
    fn strings_and_keys_past_the_limit_are_refused() {
        let limits = JsonLimits {
            max_depth: 8,
            max_string_bytes: 4,
        };
        assert!(parse_strict(br#"{"abcd": "wxyz"}"#, limits).is_ok());
        assert_eq!(
            parse_strict(br#"{"a": "wxyz5"}"#, limits),
            Err(JsonError::StringTooLong(4))
        );
        assert_eq!(
            parse_strict(br#"{"abcde": 1}"#, limits),
            Err(JsonError::StringTooLong(4))
        );
        // Escapes count after unescaping: six bytes of text, one character.
        assert!(parse_strict(br#"["\u00e9\u00e9"]"#, limits).is_ok());
    }

    #[test]
    fn refusals_are_typed() {
        assert_eq!(parse(b"\xEF\xBB\xBF{}"), Err(JsonError::Bom));
        assert_eq!(parse(b"{\"a\": \"\xff\"}"), Err(JsonError::NotUtf8));
        assert_eq!(parse(br#"{"a":1,"a":1}"#), Err(JsonError::DuplicateKey));
        let deep = "[".repeat(100_000);
        assert_eq!(parse(deep.as_bytes()), Err(JsonError::TooDeep(64)));
        let huge = format!("{{\"n\": 1{}}}", "0".repeat(1000));
        assert!(matches!(
            parse(huge.as_bytes()),
            Err(JsonError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b"{\"a\": 1}\0"),
            Err(JsonError::Malformed { .. })
        ));
    }
}
