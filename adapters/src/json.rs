//! Strict JSON for partner documents, shared by every JSON adapter.
//!
//! `serde_json` on its own keeps the last of two equal keys and nests up to 128 levels. A
//! partner document is refused ([`AdapterError::Refused`]) when it
//! - starts with a byte-order mark or is not UTF-8,
//! - repeats a key in one object (also when the repeat is spelled with escapes, `"a"` and
//!   `"\u0061"`): two readers could disagree about which value counts,
//! - nests arrays and objects deeper than [`MAX_DEPTH`].
//!
//! Anything else that is not JSON is [`AdapterError::Malformed`], described by category only
//! (the parser's position text could quote the input).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::AdapterError;
use crate::rehab::json_error_kind;

/// Arrays and objects nested deeper than this are refused (the top-level value is depth 1).
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    DuplicateKey,
    TooDeep,
}

/// Parse one partner JSON document strictly (see the module documentation).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, AdapterError> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(AdapterError::Refused("byte-order mark".into()));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| AdapterError::Refused("encoding other than UTF-8".into()))?;
    let refusal = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Strict {
        depth: 0,
        refusal: &refusal,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match refusal.get() {
        Some(Refusal::DuplicateKey) => {
            AdapterError::Refused("duplicate key in a JSON object".into())
        }
        Some(Refusal::TooDeep) => {
            AdapterError::Refused(format!("JSON nested deeper than {MAX_DEPTH}"))
        }
        None => AdapterError::Malformed {
            format: "JSON",
            detail: json_error_kind(&e).into(),
        },
    })
}

/// Builds a [`Value`] like serde_json's own, counting depth and refusing repeated keys.
/// A refusal is recorded in `refusal` (serde errors are strings; the cell keeps it typed).
#[derive(Clone, Copy)]
struct Strict<'r> {
    depth: usize,
    refusal: &'r Cell<Option<Refusal>>,
}

impl Strict<'_> {
    fn nested<E: de::Error>(&self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            self.refusal.set(Some(Refusal::TooDeep));
            return Err(E::custom("too deep"));
        }
        Ok(Strict {
            depth,
            refusal: self.refusal,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
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
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
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
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                self.refusal.set(Some(Refusal::DuplicateKey));
                return Err(de::Error::custom("duplicate key"));
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
    use serde_json::json;

    fn corpus(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus/hostile/json")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn refused(r: Result<Value, AdapterError>) -> bool {
        matches!(r, Err(AdapterError::Refused(_)))
    }

    #[test]
    fn parses_like_serde_json() {
        let doc = br#"{"a": [1, -2, 3.5, true, null, "x\u00e9\"<&>"], "b": {"c": {}}, "d": []}"#;
        let strict = parse_strict(doc).expect("parse");
        let plain: Value = serde_json::from_slice(doc).expect("serde");
        assert_eq!(strict, plain);
        assert_eq!(strict["a"][5], json!("x\u{e9}\"<&>"));
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth_and_however_spelled() {
        assert!(refused(parse_strict(&corpus(
            "y_object_duplicated_key_and_value.json"
        ))));
        assert!(refused(parse_strict(br#"{"a": 1, "a": 2}"#)));
        assert!(refused(parse_strict(
            br#"{"x": [{"b": 1, "c": 2, "b": 1}]}"#
        )));
        assert!(refused(parse_strict(br#"{"a": 1, "\u0061": 2}"#)));
        // Equal values in different objects are fine.
        assert!(parse_strict(br#"{"a": {"a": 1}, "b": {"a": 1}}"#).is_ok());
    }

    #[test]
    fn refuses_deep_nesting_bom_and_bad_encoding() {
        assert!(refused(parse_strict(&corpus(
            "n_structure_100000_opening_arrays.json"
        ))));
        assert!(refused(parse_strict(&corpus(
            "i_structure_UTF-8_BOM_empty_object.json"
        ))));
        assert!(refused(parse_strict(&corpus(
            "n_structure_lone-invalid-utf-8.json"
        ))));
        let at_limit = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse_strict(at_limit.as_bytes()).is_ok());
        let past = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(refused(parse_strict(past.as_bytes())));
        let objects = "{\"a\":".repeat(MAX_DEPTH + 1) + "1" + &"}".repeat(MAX_DEPTH + 1);
        assert!(refused(parse_strict(objects.as_bytes())));
    }

    #[test]
    fn malformed_input_is_malformed_and_never_panics() {
        for name in [
            "n_number_infinity.json",
            "n_object_single_quote.json",
            "n_object_unquoted_key.json",
            "n_string_invalid_unicode_escape.json",
            "n_structure_null-byte-outside-string.json",
            "n_structure_object_with_trailing_garbage.json",
            "n_structure_unclosed_array.json",
        ] {
            assert!(
                matches!(
                    parse_strict(&corpus(name)),
                    Err(AdapterError::Malformed { .. })
                ),
                "{name}"
            );
        }
        // The implementation-defined ones: any typed outcome, no panic.
        for name in [
            "i_number_huge_exp.json",
            "i_number_too_big_pos_int.json",
            "i_object_key_lone_2nd_surrogate.json",
            "i_string_UTF8_surrogate_U+D800.json",
            "i_string_iso_latin_1.json",
            "i_string_utf16BE_no_BOM.json",
        ] {
            let _ = parse_strict(&corpus(name));
        }
        assert!(matches!(
            parse_strict(b""),
            Err(AdapterError::Malformed { .. })
        ));
    }
}
