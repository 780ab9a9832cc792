//! Codecs: partner bytes ↔ the JSON value a mapping program reads or writes. Every codec
//! parses with the same hardened parsers as the built-in adapters.
//!
//! - `json` / `fhir+json`: the strict JSON reader (duplicate keys, BOM, depth refused); the
//!   program sees the document itself and writes one (serialised compactly, keys sorted).
//! - `xml` / `fhir+xml`: the bounded, DOCTYPE-refusing XML parser. Reading gives
//!   `{"<root>": content}` where an element's content is its text when it has neither
//!   attributes nor children, else an object: attributes as `"@name"`, text as `"#text"`,
//!   children by local name — an array when the name is listed in `repeated`, else the one
//!   child (a second one is refused). Only elements and attributes in the adapter's
//!   `namespace` are read; others are extensions and ignored, as XML's extensibility model
//!   has it. Writing takes `{"<root>": content}` where content is a string, number or
//!   boolean (text), `null` or `[]` (no element), an array of one-key objects (the children,
//!   in order), or an object with `"@name"` attributes and `"$"` (the children or the text).
//!   Output is indented by two spaces, one element per line, like the built-in XML adapters.
//! - `hl7v2`: HL7 v2 ER7 (see [`crate::hl7v2`]).

use serde_json::{Map, Value};

use std::borrow::Cow;

use vrl::value::Value as VrlValue;

use crate::xml::{self, Element};
use crate::{AdapterError, hl7v2};

/// A wire format a declared adapter can speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    Json,
    FhirJson,
    Xml(XmlOptions),
    FhirXml(XmlOptions),
    Hl7v2,
}

/// How the XML view is shaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XmlOptions {
    /// The partner's namespace (`None`: elements without one).
    pub namespace: Option<String>,
    /// Local names always read as arrays.
    pub repeated: Vec<String>,
}

impl Codec {
    pub const NAMES: [&'static str; 5] = ["json", "fhir+json", "xml", "fhir+xml", "hl7v2"];

    pub fn from_name(name: &str, xml: XmlOptions) -> Option<Self> {
        Some(match name {
            "json" => Self::Json,
            "fhir+json" => Self::FhirJson,
            "xml" => Self::Xml(xml),
            "fhir+xml" => Self::FhirXml(xml),
            "hl7v2" => Self::Hl7v2,
            _ => return None,
        })
    }

    /// Whether the format is a health format (the only ones that may carry clinical fields).
    pub fn clinical(&self) -> bool {
        matches!(self, Self::FhirJson | Self::FhirXml(_) | Self::Hl7v2)
    }

    pub fn content_types(&self) -> &'static [&'static str] {
        match self {
            Self::Json => &["application/json"],
            Self::FhirJson => &["application/fhir+json"],
            Self::Xml(_) => &["application/xml", "text/xml"],
            Self::FhirXml(_) => &["application/fhir+xml"],
            Self::Hl7v2 => &["application/hl7-v2"],
        }
    }

    /// Partner bytes → the program's input.
    pub fn read(&self, bytes: &[u8], max_bytes: usize) -> Result<Value, AdapterError> {
        match self {
            Self::Json | Self::FhirJson => crate::json::parse_strict(bytes),
            Self::Xml(o) | Self::FhirXml(o) => {
                let limits = xml::Limits {
                    max_bytes,
                    ..xml::Limits::default()
                };
                let root = xml::parse(bytes, &limits).map_err(|e| e.into_adapter_error("XML"))?;
                read_xml(&root, o)
            }
            Self::Hl7v2 => {
                let limits = hl7v2::Limits {
                    max_bytes,
                    ..hl7v2::Limits::default()
                };
                hl7v2::parse(bytes, &limits).map_err(|e| match e {
                    hl7v2::Hl7Error::Malformed(_) => AdapterError::Malformed {
                        format: "HL7 v2",
                        detail: e.to_string(),
                    },
                    other => AdapterError::Refused(other.to_string()),
                })
            }
        }
    }

    /// The program's output → partner bytes. XML is written from the program's value itself;
    /// JSON and HL7 v2 from its JSON form.
    pub fn write(&self, value: VrlValue) -> Result<Vec<u8>, AdapterError> {
        let json = |v| {
            super::to_json(v).map_err(|what| AdapterError::Encode(format!("encode.vrl: {what}")))
        };
        match self {
            Self::Json | Self::FhirJson => {
                serde_json::to_vec(&json(value)?).map_err(|e| AdapterError::Encode(e.to_string()))
            }
            Self::Xml(_) | Self::FhirXml(_) => write_xml(&value),
            Self::Hl7v2 => {
                hl7v2::write(&json(value)?).map_err(|e| AdapterError::Encode(e.to_string()))
            }
        }
    }
}

fn ours(ns: Option<&str>, o: &XmlOptions) -> bool {
    ns == o.namespace.as_deref()
}

fn read_element(el: &Element<'_>, o: &XmlOptions) -> Result<Value, AdapterError> {
    let mut map = Map::new();
    for a in &el.attrs {
        // Un-prefixed attributes belong to their element; prefixed ones in our namespace too.
        if a.ns.is_none() || ours(a.ns.as_deref(), o) {
            map.insert(format!("@{}", a.name), Value::String(a.value.to_string()));
        }
    }
    for c in el.children.iter().filter(|c| ours(c.ns.as_deref(), o)) {
        let value = read_element(c, o)?;
        let name = c.name.to_string();
        if o.repeated.contains(&name) {
            match map.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(items) => items.push(value),
                _ => {
                    return Err(AdapterError::unmappable(
                        "an element clashes with an attribute",
                    ));
                }
            }
        } else if map.contains_key(&name) {
            // Refused like a duplicate JSON key: two readers could pick different ones.
            return Err(AdapterError::Refused(format!(
                "element {} appears more than once in {}",
                c.name, el.name
            )));
        } else {
            map.insert(name, value);
        }
    }
    // Text exactly as sent (whitespace between child elements is not text): a program trims
    // identifiers and codes itself (`strip_whitespace`), as free text must arrive unchanged.
    let text = &el.text;
    if map.is_empty() {
        return Ok(Value::String(text.to_string()));
    }
    if !text.trim().is_empty() {
        map.insert("#text".into(), Value::String(text.to_string()));
    }
    Ok(Value::Object(map))
}

fn read_xml(root: &Element<'_>, o: &XmlOptions) -> Result<Value, AdapterError> {
    if !ours(root.ns.as_deref(), o) {
        return Err(AdapterError::unmappable(
            "the root element is not in the partner's namespace",
        ));
    }
    let mut top = Map::new();
    top.insert(root.name.to_string(), read_element(root, o)?);
    Ok(Value::Object(top))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// Whether XML 1.0 can carry `c` at all (its Char production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Text refused when XML 1.0 cannot carry it (control characters): the partner would receive a
/// document that is not well-formed.
fn carried<'t>(name: &str, text: Cow<'t, str>) -> Result<Cow<'t, str>, AdapterError> {
    if text.chars().all(xml_char) {
        Ok(text)
    } else {
        Err(AdapterError::Encode(format!(
            "{name} contains a character XML 1.0 cannot carry"
        )))
    }
}

/// A scalar's text (`None`: not a scalar; text must be UTF-8), borrowed where it can be.
fn text_of(v: &VrlValue) -> Result<Option<Cow<'_, str>>, AdapterError> {
    Ok(Some(match v {
        VrlValue::Bytes(b) => Cow::Borrowed(
            std::str::from_utf8(b)
                .map_err(|_| AdapterError::Encode("a text is not UTF-8".into()))?,
        ),
        VrlValue::String(t) => Cow::Owned(t.to_string()),
        VrlValue::Integer(n) => Cow::Owned(n.to_string()),
        // Written as JSON writes numbers (`1.0`, not `1`).
        VrlValue::Float(f) => Cow::Owned(
            serde_json::Number::from_f64(f.into_inner())
                .map_or_else(|| f.to_string(), |n| n.to_string()),
        ),
        VrlValue::Boolean(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        _ => return Ok(None),
    }))
}

fn write_element(w: &mut xml::Writer, name: &str, content: &VrlValue) -> Result<(), AdapterError> {
    if !valid_name(name) {
        return Err(AdapterError::Encode(
            "an element name is not a valid XML name".into(),
        ));
    }
    let null = VrlValue::Null;
    let (attrs, body): (Vec<(&str, Cow<'_, str>)>, &VrlValue) = match content {
        VrlValue::Object(map) => {
            let mut attrs = Vec::new();
            for (k, v) in map {
                if let Some(a) = k.strip_prefix('@') {
                    if !valid_name(a) {
                        return Err(AdapterError::Encode(
                            "an attribute name is not a valid XML name".into(),
                        ));
                    }
                    if let Some(t) = text_of(v)? {
                        attrs.push((a, carried(name, t)?));
                    } else if !v.is_null() {
                        return Err(AdapterError::Encode(format!(
                            "attribute {a} of {name} is not a value"
                        )));
                    }
                } else if k.as_str() != "$" {
                    return Err(AdapterError::Encode(format!(
                        "{name}: an object holds \"@attributes\" and \"$\" only"
                    )));
                }
            }
            (attrs, map.get("$").unwrap_or(&null))
        }
        other => (Vec::new(), other),
    };
    let attrs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    // Nothing inside (`null`, or children that are all `null`): no element at all, unless it
    // has attributes or is asked for in the object form (`{"$": []}`: an empty list that keeps
    // its wrapper).
    if body.is_null()
        || body
            .as_array()
            .is_some_and(|c| c.iter().all(VrlValue::is_null))
    {
        if !attrs.is_empty() || (content.is_object() && body.is_array()) {
            w.empty(name, &attrs);
        }
        return Ok(());
    }
    match body {
        VrlValue::Array(children) => {
            w.start(name, &attrs);
            for c in children {
                match c {
                    VrlValue::Null => {}
                    VrlValue::Object(one) if one.len() == 1 => {
                        if let Some((k, v)) = one.iter().next() {
                            write_element(w, k.as_str(), v)?;
                        }
                    }
                    _ => {
                        return Err(AdapterError::Encode(format!(
                            "{name}: each child is an object with one key (its name)"
                        )));
                    }
                }
            }
            w.end(name);
        }
        VrlValue::Object(_) => {
            return Err(AdapterError::Encode(format!(
                "{name}: \"$\" holds the children (an array) or the text"
            )));
        }
        scalar => {
            let Some(text) = text_of(scalar)? else {
                return Err(AdapterError::Encode(format!(
                    "{name}: the content is not text, children or null"
                )));
            };
            w.text_element_with(name, &attrs, &carried(name, text)?);
        }
    }
    Ok(())
}

fn write_xml(value: &VrlValue) -> Result<Vec<u8>, AdapterError> {
    let root = value
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
        .ok_or_else(|| {
            AdapterError::Encode("expected an object with one key, the root element".into())
        })?;
    let mut w = xml::Writer::new();
    write_element(&mut w, root.0.as_str(), root.1)?;
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts() -> XmlOptions {
        XmlOptions {
            namespace: Some("urn:example".into()),
            repeated: vec!["Item".into()],
        }
    }

    #[test]
    fn xml_reads_our_namespace_and_skips_extensions() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<p:Doc xmlns:p="urn:example" xmlns:x="urn:other" x:ext="1" version="2">
  <p:Id> a-1 </p:Id>
  <x:Extra>ignored</x:Extra>
  <p:Items><p:Item>one</p:Item><p:Item>two &amp; three</p:Item></p:Items>
  <p:Only><p:Item>solo</p:Item></p:Only>
</p:Doc>"#;
        let v = Codec::Xml(opts()).read(doc, 1 << 20).expect("reads");
        assert_eq!(
            v,
            json!({"Doc": {"@version": "2", "Id": " a-1 ",
                           "Items": {"Item": ["one", "two & three"]},
                           "Only": {"Item": ["solo"]}}})
        );
        let twice = br#"<Doc xmlns="urn:example"><Id>1</Id><Id>2</Id></Doc>"#;
        let e = Codec::Xml(opts()).read(twice, 1 << 20).expect_err("twice");
        assert_eq!(e.slug(), "refused-document");
        let foreign = br#"<Doc xmlns="urn:else"/>"#;
        assert_eq!(
            Codec::Xml(opts())
                .read(foreign, 1 << 20)
                .expect_err("ns")
                .slug(),
            "unmappable-document"
        );
        let doctype = br#"<!DOCTYPE d [<!ENTITY e "x">]><Doc xmlns="urn:example">&e;</Doc>"#;
        assert_eq!(
            Codec::Xml(opts())
                .read(doctype, 1 << 20)
                .expect_err("doctype")
                .slug(),
            "refused-document"
        );
    }

    #[test]
    fn xml_writes_in_order_and_reads_back() {
        let v = json!({"Doc": {"@xmlns": "urn:example", "$": [
            {"Id": "a-1"}, null, {"Missing": null}, {"Empty": []},
            {"Items": [{"Item": "one"}, {"Item": "<two>"}]},
            {"Count": 3}, {"Flag": {"@code": "x", "$": "text"}}, {"Kept": {"$": []}}
        ]}});
        let bytes = Codec::Xml(opts()).write(VrlValue::from(v)).expect("writes");
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert_eq!(
            text,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Doc xmlns=\"urn:example\">\n  <Id>a-1</Id>\n  <Items>\n    <Item>one</Item>\n    <Item>&lt;two&gt;</Item>\n  </Items>\n  <Count>3</Count>\n  <Flag code=\"x\">text</Flag>\n  <Kept/>\n</Doc>\n"
        );
        let back = Codec::Xml(opts()).read(&bytes, 1 << 20).expect("reads");
        assert_eq!(back["Doc"]["Items"]["Item"], json!(["one", "<two>"]));
        assert_eq!(back["Doc"]["Flag"], json!({"@code": "x", "#text": "text"}));
        for bad in [
            json!({"a": 1, "b": 2}),
            json!({"1x": "v"}),
            json!({"D": [1]}),
            json!({"D": "bell \u{7}"}),
            json!({"D": {"@a": "nul \u{0}", "$": "x"}}),
        ] {
            assert_eq!(
                Codec::Xml(opts())
                    .write(VrlValue::from(bad))
                    .expect_err("bad")
                    .slug(),
                "cannot-encode"
            );
        }
    }
}
