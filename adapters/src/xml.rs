//! Safe XML for partner documents: a bounded parser into a small namespace-resolved tree, and a
//! writer. Shared by the police document and FHIR's XML representation.
//!
//! The parser refuses, before anything is expanded: a DOCTYPE (and so every entity
//! declaration), any entity reference other than XML's five predefined ones and character
//! references, processing instructions other than the declaration, an encoding other than
//! UTF-8, a byte-order mark, and documents past the size, depth, attribute or element limits.
//! It never fetches anything and never panics on input.

use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

/// Bounds on one document. The defaults suit messages of a few kilobytes with room to spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_attributes: usize,
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_depth: 64,
            max_attributes: 32,
            max_elements: 20_000,
        }
    }
}

/// Why a document was refused. Every variant is safe to show: none repeats document content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("document larger than {0} bytes")]
    TooLarge(usize),
    #[error("DOCTYPE and entity declarations are refused")]
    DocType,
    #[error("entity reference other than the predefined ones")]
    UnknownEntity,
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    #[error("more than {0} attributes on one element")]
    TooManyAttributes(usize),
    #[error("more than {0} elements")]
    TooManyElements(usize),
    #[error("byte-order mark or encoding other than UTF-8")]
    Encoding,
    #[error("processing instructions are refused")]
    ProcessingInstruction,
    #[error("namespace prefix not declared")]
    UnknownPrefix,
    #[error("not well-formed: {0}")]
    Malformed(String),
    #[error("no root element")]
    Empty,
}

/// One attribute, namespace resolved. `xmlns` declarations are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ns: Option<String>,
    pub name: String,
    pub value: String,
}

/// One element, namespace resolved; `text` is the concatenated character data directly inside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// Whether this element has local name `name` in namespace `ns`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.name == name && self.ns.as_deref() == Some(ns)
    }

    /// First child with this local name in namespace `ns`.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// Every child with this local name in namespace `ns`.
    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    /// An un-namespaced attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_none() && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// Trimmed text of a child element, if present and not empty.
    pub fn child_text(&self, ns: &str, name: &str) -> Option<&str> {
        self.child(ns, name)
            .map(|c| c.text.trim())
            .filter(|t| !t.is_empty())
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

fn namespace(r: ResolveResult<'_>) -> Result<Option<String>, XmlError> {
    match r {
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Bound(ns) => Ok(Some(ns.into_inner().to_owned())),
        ResolveResult::Unknown(_) => Err(XmlError::UnknownPrefix),
    }
}

fn element(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
    limits: &Limits,
) -> Result<Element, XmlError> {
    let (ns, _) = reader.resolver().resolve_element(start.name());
    let name = start.local_name().into_inner().to_owned();
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(malformed)?;
        let key = a.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        if attrs.len() >= limits.max_attributes {
            return Err(XmlError::TooManyAttributes(limits.max_attributes));
        }
        let (ans, local) = reader.resolver().resolve_attribute(key);
        let value = a
            .normalized_value_with(XmlVersion::Implicit1_0, 1, resolve_predefined_entity)
            .map_err(|_| XmlError::UnknownEntity)?
            .into_owned();
        attrs.push(Attr {
            ns: namespace(ans)?,
            name: local.into_inner().to_owned(),
            value,
        });
    }
    Ok(Element {
        ns: namespace(ns)?,
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Parse one document into its root element, within `limits`.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Element, XmlError> {
    if bytes.len() > limits.max_bytes {
        return Err(XmlError::TooLarge(limits.max_bytes));
    }
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF])
        || bytes.starts_with(&[0xFE, 0xFF])
        || bytes.starts_with(&[0xFF, 0xFE])
    {
        return Err(XmlError::Encoding);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| XmlError::Encoding)?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Start(ref s) | Event::Empty(ref s) => {
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                let el = element(&reader, s, limits)?;
                if matches!(event, Event::Start(_)) {
                    if stack.len() >= limits.max_depth {
                        return Err(XmlError::TooDeep(limits.max_depth));
                    }
                    stack.push(el);
                } else {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(XmlError::Malformed("unbalanced end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let content = t.xml_content(XmlVersion::Implicit1_0);
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => {
                        return Err(XmlError::Malformed("text outside the root element".into()));
                    }
                }
            }
            Event::CData(c) => {
                let content = c.into_inner().into_owned();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&content),
                    None => {
                        return Err(XmlError::Malformed("CDATA outside the root element".into()));
                    }
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|_| XmlError::UnknownEntity)?
                        .ok_or(XmlError::UnknownEntity)?
                        .to_string()
                } else {
                    let name = r.into_inner();
                    resolve_predefined_entity(&name)
                        .ok_or(XmlError::UnknownEntity)?
                        .to_owned()
                };
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&resolved),
                    None => {
                        return Err(XmlError::Malformed(
                            "reference outside the root element".into(),
                        ));
                    }
                }
            }
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(malformed)?;
                    if !enc.eq_ignore_ascii_case("utf-8") {
                        return Err(XmlError::Encoding);
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::DocType),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unclosed element".into()));
    }
    root.ok_or(XmlError::Empty)
}

/// A small XML writer: elements, attributes and text, escaped; no pretty-printing surprises
/// (two-space indentation, one element per line, text kept inline).
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
    depth: usize,
}

fn escape_into(out: &mut String, s: &str) {
    escape(out, s, false);
}

/// Attribute values also escape tab, CR and LF: a parser normalises them to spaces otherwise.
fn escape(out: &mut String, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

impl Writer {
    pub fn new() -> Self {
        let mut w = Self::default();
        w.out
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        w
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open_tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape(&mut self.out, v, true);
            self.out.push('"');
        }
    }

    /// `<name a="v">` and a new nesting level.
    pub fn start(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.open_tag(name, attrs);
        self.out.push_str(">\n");
        self.depth += 1;
    }

    /// `</name>`.
    pub fn end(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    /// `<name a="v"/>`.
    pub fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.open_tag(name, attrs);
        self.out.push_str("/>\n");
    }

    /// `<name>text</name>`.
    pub fn text_element(&mut self, name: &str, text: &str) {
        self.open_tag(name, &[]);
        self.out.push('>');
        escape_into(&mut self.out, text);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    /// `<name>text</name>` when there is a value.
    pub fn opt_text_element(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.text_element(name, t);
        }
    }

    pub fn finish(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "urn:example";

    #[test]
    fn parses_namespaces_entities_and_cdata() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<p:root xmlns:p="urn:example" xmlns="urn:example" a="1 &amp; 2">
  <child>x &lt; y &#x4E2D;</child>
  <child><![CDATA[<raw>]]></child>
  <other xmlns="urn:other"/>
</p:root>"#;
        let root = parse(doc, &Limits::default()).expect("parse");
        assert!(root.is(NS, "root"));
        assert_eq!(root.attr("a"), Some("1 & 2"));
        let kids: Vec<_> = root.children_named(NS, "child").collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0].text, "x < y 中");
        assert_eq!(kids[1].text, "<raw>");
        assert!(root.child("urn:other", "other").is_some());
        assert!(root.child(NS, "other").is_none(), "namespace matters");
    }

    #[test]
    fn refuses_what_it_must() {
        let l = Limits::default();
        let cases: &[(&[u8], XmlError)] = &[
            (
                b"<!DOCTYPE r [<!ENTITY a \"b\">]><r>&a;</r>",
                XmlError::DocType,
            ),
            (b"<r>&custom;</r>", XmlError::UnknownEntity),
            (b"<r a=\"&custom;\"/>", XmlError::UnknownEntity),
            (b"\xEF\xBB\xBF<r/>", XmlError::Encoding),
            (
                b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r/>",
                XmlError::Encoding,
            ),
            (b"<r>\xff</r>", XmlError::Encoding),
            (b"<?php x ?><r/>", XmlError::ProcessingInstruction),
            (b"<p:r/>", XmlError::UnknownPrefix),
            (b"", XmlError::Empty),
        ];
        for (doc, want) in cases {
            assert_eq!(parse(doc, &l).as_ref().err(), Some(want), "{doc:?}");
        }
        assert!(matches!(
            parse(b"<r><a></r>", &l),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"<r/><r/>", &l),
            Err(XmlError::Malformed(_))
        ));
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(parse(deep.as_bytes(), &l), Err(XmlError::TooDeep(64)));
        let attrs: String = (0..40).map(|i| format!(" a{i}=\"x\"")).collect();
        assert_eq!(
            parse(format!("<r{attrs}/>").as_bytes(), &l),
            Err(XmlError::TooManyAttributes(32))
        );
        let small = Limits { max_bytes: 10, ..l };
        assert_eq!(
            parse(b"<r>0123456789</r>", &small),
            Err(XmlError::TooLarge(10))
        );
        let many = "<r>".to_owned() + &"<a/>".repeat(30_000) + "</r>";
        assert_eq!(
            parse(many.as_bytes(), &l),
            Err(XmlError::TooManyElements(20_000))
        );
    }

    #[test]
    fn hostile_corpus_is_refused_without_expansion() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus/hostile/xml");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            panic!("corpus missing at {}", dir.display());
        };
        let mut n = 0;
        for e in entries.flatten() {
            let bytes = std::fs::read(e.path()).expect("read");
            let r = parse(&bytes, &Limits::default());
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".xml") {
                assert!(r.is_err(), "{name} was accepted");
            }
            n += 1;
        }
        assert!(n >= 9);
    }

    #[test]
    fn writer_escapes_and_round_trips() {
        let mut w = Writer::new();
        w.start(
            "r",
            &[("xmlns", NS), ("a", "\"<&>'"), ("lines", "a\tb\nc\r\nd")],
        );
        w.text_element("t", "x < y & 'z' 中");
        w.empty("e", &[("value", "1")]);
        w.end("r");
        let bytes = w.finish();
        let root = parse(&bytes, &Limits::default()).expect("parse");
        assert_eq!(root.attr("a"), Some("\"<&>'"));
        assert_eq!(
            root.attr("lines"),
            Some("a\tb\nc\r\nd"),
            "whitespace survives in attributes"
        );
        assert_eq!(root.child_text(NS, "t"), Some("x < y & 'z' 中"));
        assert_eq!(root.child(NS, "e").and_then(|e| e.attr("value")), Some("1"));
    }
}
