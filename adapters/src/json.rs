//! Strict JSON for partner documents, shared by every JSON adapter: the core's strict reader
//! ([`wingspan_core::json`]) with the adapters' error type.
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

use serde_json::Value;
use wingspan_core::json::{JsonError, JsonLimits};

use crate::AdapterError;

/// Arrays and objects nested deeper than this are refused (the top-level value is depth 1).
pub const MAX_DEPTH: usize = 64;

/// Parse one partner JSON document strictly (see the module documentation).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, AdapterError> {
    let limits = JsonLimits {
        max_depth: MAX_DEPTH,
        ..JsonLimits::default()
    };
    wingspan_core::json::parse_strict(bytes, limits).map_err(|e| match e {
        JsonError::Malformed { kind, .. } => AdapterError::Malformed {
            format: "JSON",
            detail: kind.into(),
        },
        refused => AdapterError::Refused(refused.to_string()),
    })
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
