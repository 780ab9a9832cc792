//! An ordered FHIR element tree, written as FHIR JSON or FHIR XML. The encoder builds one tree
//! in FHIR's element order (XML requires it; JSON does not care) and both representations come
//! from it, so they cannot drift apart.

use std::borrow::Cow;

use super::FHIR_NS;

/// One FHIR value: a primitive, a complex element, a repeating element or a resource.
#[derive(Debug)]
pub(super) enum Node<'a> {
    /// A primitive (every primitive the encoder writes is a JSON string).
    Str(Cow<'a, str>),
    /// A complex element: its children in FHIR order. In an `extension`, the `url` child is
    /// written as the XML attribute.
    Obj(Vec<(&'static str, Node<'a>)>),
    /// A repeating element (never empty: FHIR forbids empty arrays).
    Arr(Vec<Node<'a>>),
    /// A resource: its type and its elements in FHIR order.
    Res(&'static str, Vec<(&'static str, Node<'a>)>),
}

impl<'a> Node<'a> {
    pub(super) fn s(v: &'a str) -> Self {
        Self::Str(Cow::Borrowed(v))
    }

    pub(super) fn owned(v: String) -> Self {
        Self::Str(Cow::Owned(v))
    }
}

/// Compact FHIR JSON.
pub(super) fn to_json(root: &Node<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(2048);
    json_node(&mut out, root);
    out.into_bytes()
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_fields(out: &mut String, fields: &[(&'static str, Node<'_>)], mut first: bool) {
    for (k, v) in fields {
        if !first {
            out.push(',');
        }
        first = false;
        json_string(out, k);
        out.push(':');
        json_node(out, v);
    }
}

fn json_node(out: &mut String, n: &Node<'_>) {
    match n {
        Node::Str(s) => json_string(out, s),
        Node::Obj(fields) => {
            out.push('{');
            json_fields(out, fields, true);
            out.push('}');
        }
        Node::Arr(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_node(out, v);
            }
            out.push(']');
        }
        Node::Res(t, fields) => {
            out.push_str("{\"resourceType\":");
            json_string(out, t);
            json_fields(out, fields, false);
            out.push('}');
        }
    }
}

/// FHIR XML, two-space indented. `root` must be a resource (anything else writes nothing).
pub(super) fn to_xml(root: &Node<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(4096);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if let Node::Res(t, fields) = root {
        out.push('<');
        out.push_str(t);
        out.push_str(" xmlns=\"");
        out.push_str(FHIR_NS);
        out.push_str("\">\n");
        for (k, v) in fields {
            xml_field(&mut out, 1, k, v);
        }
        out.push_str("</");
        out.push_str(t);
        out.push_str(">\n");
    }
    out.into_bytes()
}

/// Escape an attribute value. Tab, CR and LF become character references: written literally,
/// XML attribute-value normalisation would turn them into spaces.
fn xml_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn xml_field(out: &mut String, depth: usize, name: &str, n: &Node<'_>) {
    match n {
        Node::Str(v) => {
            indent(out, depth);
            out.push('<');
            out.push_str(name);
            out.push_str(" value=\"");
            xml_attr(out, v);
            out.push_str("\"/>\n");
        }
        Node::Obj(fields) => {
            indent(out, depth);
            out.push('<');
            out.push_str(name);
            let url_attr = name == "extension" || name == "modifierExtension";
            if url_attr {
                for (k, v) in fields {
                    if let (&"url", Node::Str(u)) = (k, v) {
                        out.push_str(" url=\"");
                        xml_attr(out, u);
                        out.push('"');
                    }
                }
            }
            let is_child = |k: &str| !(url_attr && k == "url");
            if !fields.iter().any(|(k, _)| is_child(k)) {
                out.push_str("/>\n");
                return;
            }
            out.push_str(">\n");
            for (k, v) in fields.iter().filter(|(k, _)| is_child(k)) {
                xml_field(out, depth + 1, k, v);
            }
            indent(out, depth);
            out.push_str("</");
            out.push_str(name);
            out.push_str(">\n");
        }
        Node::Arr(items) => {
            for v in items {
                xml_field(out, depth, name, v);
            }
        }
        Node::Res(t, fields) => {
            indent(out, depth);
            out.push('<');
            out.push_str(name);
            out.push_str(">\n");
            indent(out, depth + 1);
            out.push('<');
            out.push_str(t);
            out.push_str(">\n");
            for (k, v) in fields {
                xml_field(out, depth + 2, k, v);
            }
            indent(out, depth + 1);
            out.push_str("</");
            out.push_str(t);
            out.push_str(">\n");
            indent(out, depth);
            out.push_str("</");
            out.push_str(name);
            out.push_str(">\n");
        }
    }
}
