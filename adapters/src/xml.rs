//! Safe XML for partner documents: a bounded parser into a small namespace-resolved tree, and a
//! writer. Shared by the police document and FHIR's XML representation.
//!
//! The parser refuses, before anything is expanded: a DOCTYPE (and so every entity
//! declaration), any entity reference other than XML's five predefined ones and character
//! references, processing instructions other than the declaration, an encoding other than
//! UTF-8, a byte-order mark, and documents past the size, depth, attribute or element limits.
//! It never fetches anything and never panics on input.

use std::borrow::Cow;
use std::sync::Arc;

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::attributes::Attributes;
use quick_xml::events::{BytesStart, Event};

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
pub struct Attr<'a> {
    pub ns: Option<Arc<str>>,
    pub name: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

/// One element, namespace resolved; `text` is the concatenated character data directly inside
/// it (whitespace between child elements is not kept). Names, values and text borrow from the
/// document wherever no unescaping was needed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element<'a> {
    /// Shared between elements of the same namespace (a document has few).
    pub ns: Option<Arc<str>>,
    pub name: Cow<'a, str>,
    pub attrs: Vec<Attr<'a>>,
    pub children: Vec<Element<'a>>,
    pub text: Cow<'a, str>,
}

impl<'a> Element<'a> {
    /// Whether this element has local name `name` in namespace `ns`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.name == name && self.ns.as_deref() == Some(ns)
    }

    /// First child with this local name in namespace `ns`.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element<'a>> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// Every child with this local name in namespace `ns`.
    pub fn children_named<'s>(
        &'s self,
        ns: &'s str,
        name: &'s str,
    ) -> impl Iterator<Item = &'s Element<'a>> + 's {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    /// An un-namespaced attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_none() && a.name == name)
            .map(|a| &*a.value)
    }

    /// Trimmed text of a child element, if present and not empty.
    pub fn child_text(&self, ns: &str, name: &str) -> Option<&str> {
        self.child(ns, name)
            .map(|c| c.text.trim())
            .filter(|t| !t.is_empty())
    }
}

impl XmlError {
    /// The adapter error for a refused document of `format`: limits and forbidden constructs
    /// are refusals; not well-formed is malformed, by category only (the parser's own detail
    /// can name input tags).
    pub fn into_adapter_error(self, format: &'static str) -> crate::AdapterError {
        use crate::AdapterError;
        match self {
            Self::DocType
            | Self::UnknownEntity
            | Self::TooLarge(_)
            | Self::TooDeep(_)
            | Self::TooManyAttributes(_)
            | Self::TooManyElements(_)
            | Self::Encoding
            | Self::ProcessingInstruction => AdapterError::Refused(self.to_string()),
            Self::Malformed(_) => AdapterError::Malformed {
                format,
                detail: "not well-formed".into(),
            },
            Self::UnknownPrefix | Self::Empty => AdapterError::Malformed {
                format,
                detail: self.to_string(),
            },
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// The XML namespace, bound to the `xml` prefix by definition.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Namespace bindings in scope, innermost last; namespace names are allocated once per
/// document and shared between elements.
#[derive(Default)]
struct Scopes<'a> {
    /// (prefix, namespace name; `None` undeclares a default namespace with `xmlns=""`).
    bindings: Vec<(&'a str, Option<Arc<str>>)>,
    /// Bindings length at each open element's start.
    marks: Vec<usize>,
    interned: Vec<Arc<str>>,
}

impl<'a> Scopes<'a> {
    fn intern(&mut self, uri: &str) -> Arc<str> {
        if let Some(known) = self.interned.iter().find(|k| &***k == uri) {
            return known.clone();
        }
        let new: Arc<str> = Arc::from(uri);
        self.interned.push(new.clone());
        new
    }

    fn bind(&mut self, prefix: &'a str, uri: &str) {
        let ns = (!uri.is_empty()).then(|| self.intern(uri));
        self.bindings.push((prefix, ns));
    }

    /// The namespace of a prefix (`""`: the default namespace).
    fn lookup(&self, prefix: &str) -> Result<Option<Arc<str>>, XmlError> {
        let found = if prefix.is_empty() {
            self.bindings.iter().rev().find(|(p, _)| p.is_empty())
        } else {
            self.bindings.iter().rev().find(|(p, _)| *p == prefix)
        };
        match found {
            Some((_, ns)) => Ok(ns.clone()),
            None if prefix.is_empty() => Ok(None),
            None => Err(XmlError::UnknownPrefix),
        }
    }
}

fn split_qname(q: &str) -> (&str, &str) {
    match q.split_once(':') {
        Some((p, l)) => (p, l),
        None => ("", q),
    }
}

/// Build an element from its start tag, pushing its namespace bindings onto `scopes` (the
/// caller pops them at the end tag, or at once for an empty element).
fn element<'a>(
    doc: &'a str,
    scopes: &mut Scopes<'a>,
    start: &BytesStart<'a>,
    limits: &Limits,
) -> Result<Element<'a>, XmlError> {
    let name_len = start.name().into_inner().len();
    // The tag's text as a slice of the document itself (the reader reads from a `&str`
    // and hands out borrowed events), so names and values can borrow for `'a`.
    let tag: &str = start;
    let offset = (tag.as_ptr() as usize).wrapping_sub(doc.as_ptr() as usize);
    let raw: &'a str = match doc.get(offset..offset.saturating_add(tag.len())) {
        Some(r) if r.as_ptr() == tag.as_ptr() => r,
        _ => return Err(XmlError::Malformed("tag outside the document".into())),
    };
    let qname = raw.get(..name_len).unwrap_or("");
    // Attributes go straight into the element; prefixed ones are resolved once the tag's own
    // namespace declarations are known.
    let mut attrs: Vec<Attr<'a>> = Vec::new();
    let mut count = 0usize;
    for a in Attributes::new(raw, name_len) {
        let a = a.map_err(malformed)?;
        count += 1;
        if count > limits.max_attributes {
            return Err(XmlError::TooManyAttributes(limits.max_attributes));
        }
        let key: &'a str = match a.key.into_inner() {
            k if k.len() <= raw.len() => {
                let off = (k.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
                raw.get(off..off.saturating_add(k.len())).unwrap_or("")
            }
            _ => "",
        };
        let value = match a.value {
            // No reference to resolve and no whitespace to normalise: borrow as is.
            Cow::Borrowed(v) if !v.contains(['&', '\t', '\n', '\r']) => Cow::Borrowed(v),
            _ => Cow::Owned(
                a.normalized_value_with(XmlVersion::Implicit1_0, 1, resolve_predefined_entity)
                    .map_err(|_| XmlError::UnknownEntity)?
                    .into_owned(),
            ),
        };
        // (First byte first: most attributes are not namespace declarations, and this runs
        // for every attribute of every element.)
        if key.as_bytes().first() != Some(&b'x') {
            attrs.push(Attr {
                ns: None,
                name: Cow::Borrowed(key),
                value,
            });
        } else if key == "xmlns" {
            scopes.bind("", &value);
        } else if let Some(prefix) = key.strip_prefix("xmlns:") {
            if value.is_empty() {
                return Err(XmlError::Malformed("a prefix cannot be undeclared".into()));
            }
            scopes.bind(prefix, &value);
        } else {
            attrs.push(Attr {
                ns: None,
                name: Cow::Borrowed(key),
                value,
            });
        }
    }
    let (prefix, local) = split_qname(qname);
    let ns = if prefix.len() == 3 && prefix == "xml" {
        Some(scopes.intern(XML_NS))
    } else {
        scopes.lookup(prefix)?
    };
    for attr in &mut attrs {
        let Cow::Borrowed(key) = attr.name else {
            continue;
        };
        let (prefix, local) = split_qname(key);
        attr.ns = match prefix {
            "" => continue,
            "xml" => Some(scopes.intern(XML_NS)),
            p => Some(scopes.lookup(p)?.ok_or(XmlError::UnknownPrefix)?),
        };
        attr.name = Cow::Borrowed(local);
    }
    Ok(Element {
        ns,
        name: Cow::Borrowed(local),
        attrs,
        children: Vec::new(),
        text: Cow::Borrowed(""),
    })
}

/// Append character data to an element's text, borrowing while it is a single piece.
fn push_text<'a>(text: &mut Cow<'a, str>, more: Cow<'a, str>) {
    if text.is_empty() {
        *text = more;
    } else {
        text.to_mut().push_str(&more);
    }
}

/// Parse one document into its root element, within `limits`.
pub fn parse<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Element<'a>, XmlError> {
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
    // XML 1.0 allows no control characters but tab, line feed and carriage return, not even
    // as character references' results; NUL in particular ends strings in other readers.
    if bytes
        .iter()
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return Err(XmlError::Malformed(
            "a control character is not allowed in XML".into(),
        ));
    }
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element<'a>> = Vec::new();
    let mut root: Option<Element<'a>> = None;
    // Whitespace-only text is held back: kept if more character data follows in the same
    // element (`a &amp; &amp; b`), dropped if markup follows (indentation).
    let mut pending_ws: Option<Cow<'a, str>> = None;
    let mut elements = 0usize;
    let mut scopes = Scopes::default();
    loop {
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Start(ref s) | Event::Empty(ref s) => {
                pending_ws = None;
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                let mark = scopes.bindings.len();
                let el = element(text, &mut scopes, s, limits)?;
                if matches!(event, Event::Start(_)) {
                    if stack.len() >= limits.max_depth {
                        return Err(XmlError::TooDeep(limits.max_depth));
                    }
                    scopes.marks.push(mark);
                    stack.push(el);
                } else {
                    scopes.bindings.truncate(mark);
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
            }
            Event::End(_) => {
                let Some(mut done) = stack.pop() else {
                    return Err(XmlError::Malformed("unbalanced end tag".into()));
                };
                if let Some(mark) = scopes.marks.pop() {
                    scopes.bindings.truncate(mark);
                }
                // Trailing whitespace of a text-only element is content; after child
                // elements it is indentation.
                if let Some(ws) = pending_ws.take()
                    && done.children.is_empty()
                {
                    push_text(&mut done.text, ws);
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let content = t.xml_content(XmlVersion::Implicit1_0);
                let Some(el) = stack.last_mut() else {
                    if content.trim().is_empty() {
                        continue;
                    }
                    return Err(XmlError::Malformed("text outside the root element".into()));
                };
                if content.trim().is_empty() {
                    match pending_ws.as_mut() {
                        Some(p) => p.to_mut().push_str(&content),
                        None => pending_ws = Some(content),
                    }
                } else {
                    if let Some(ws) = pending_ws.take() {
                        push_text(&mut el.text, ws);
                    }
                    push_text(&mut el.text, content);
                }
            }
            Event::CData(c) => {
                let Some(el) = stack.last_mut() else {
                    return Err(XmlError::Malformed("CDATA outside the root element".into()));
                };
                if let Some(ws) = pending_ws.take() {
                    push_text(&mut el.text, ws);
                }
                push_text(&mut el.text, c.into_inner());
            }
            Event::GeneralRef(r) => {
                let resolved: Cow<'a, str> = if r.is_char_ref() {
                    Cow::Owned(
                        r.resolve_char_ref()
                            .map_err(|_| XmlError::UnknownEntity)?
                            .ok_or(XmlError::UnknownEntity)?
                            .to_string(),
                    )
                } else {
                    let name = r.into_inner();
                    Cow::Borrowed(resolve_predefined_entity(&name).ok_or(XmlError::UnknownEntity)?)
                };
                let Some(el) = stack.last_mut() else {
                    return Err(XmlError::Malformed(
                        "reference outside the root element".into(),
                    ));
                };
                if let Some(ws) = pending_ws.take() {
                    push_text(&mut el.text, ws);
                }
                push_text(&mut el.text, resolved);
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

    /// `<name a="v">text</name>`.
    pub fn text_element_with(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.open_tag(name, attrs);
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
        assert_eq!(root.text, "", "indentation is not text");
        let mixed = parse(b"<r>  a &amp; &amp; b  <x/>  </r>", &Limits::default()).expect("parse");
        assert_eq!(mixed.text, "  a & & b  ");
        let ws = parse(b"<r><t>x &amp; </t><u>  </u></r>", &Limits::default()).expect("parse");
        assert_eq!(ws.children[0].text, "x & ");
        assert_eq!(ws.children[1].text, "  ");
        assert_eq!(root.attr("a"), Some("1 & 2"));
        let kids: Vec<_> = root.children_named(NS, "child").collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0].text, "x < y 中");
        assert_eq!(kids[1].text, "<raw>");
        assert!(root.child("urn:other", "other").is_some());
        let scoped = parse(
            b"<r xmlns=\"urn:a\" xml:lang=\"zh\"><b xmlns=\"\" q:x=\"1\" xmlns:q=\"urn:q\"/></r>",
            &Limits::default(),
        )
        .expect("parse");
        assert_eq!(scoped.ns.as_deref(), Some("urn:a"));
        assert_eq!(scoped.attrs[0].ns.as_deref(), Some(XML_NS));
        assert_eq!(
            scoped.children[0].ns, None,
            "xmlns=\"\" undeclares the default"
        );
        let q = &scoped.children[0].attrs[0];
        assert_eq!(
            (q.ns.as_deref(), &*q.name, &*q.value),
            (Some("urn:q"), "x", "1")
        );
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
