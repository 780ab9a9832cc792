//! The JSON partners: 120 emergency dispatch, employment offices (HR), aftercare stations and
//! civil affairs. One engine, four descriptions ([`EMERGENCY`], [`HR`], [`AFTERCARE`], [`CIVIL`]).
//!
//! Each partner document is one object with one key naming the document kind, whose value
//! holds a header and the partner's own field names:
//!
//! ```json
//! {"dispatch_ack": {"message_no": "…", "version": "1.0", "sent_at": "…", "in_reply_to": "…",
//!                   "request_no": "tr-1", "dispatch_id": "120-7", "status": "DISPATCHED", …}}
//! ```
//!
//! A description is a table of [`Field`]s (canonical path ↔ partner path, value kind, required),
//! [`Implied`] canonical values the document kind stands for (a `placement_referral` is a
//! handover with `employment_needed = true`), and the canonical fields the partner never
//! receives. A partner shape has no field for anything not in its table, so it cannot carry it.
//!
//! Decoding is strict: a key that is neither in the table nor the header is refused as
//! unmappable, except inside the document's `extensions` object, which is where a partner puts
//! additions of its own (ignored). `null` counts as absent. Duplicate keys, a BOM, bad UTF-8 and
//! deep nesting are refused by [`crate::json::parse_strict`].

pub mod tables;
#[cfg(test)]
pub(crate) mod testgen;
#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::{Map, Value};
use wingspan_core::Envelope;

use crate::{Adapter, AdapterError, Canonical, Encoded, Inbound};

pub use tables::{AFTERCARE, CIVIL, EMERGENCY, HR};

/// Header keys every document carries (`in_reply_to` only on replies), and the extension object.
pub const MESSAGE_NO: &str = "message_no";
pub const VERSION: &str = "version";
pub const SENT_AT: &str = "sent_at";
pub const IN_REPLY_TO: &str = "in_reply_to";
pub const EXTENSIONS: &str = "extensions";
/// Keys no table field may use at the top of a document.
pub const RESERVED: [&str; 5] = [MESSAGE_NO, VERSION, SENT_AT, IN_REPLY_TO, EXTENSIONS];

const CONTENT_TYPES: &[&str] = &["application/json"];

/// How a value is written on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    Integer,
    Boolean,
    TextList,
    /// A code list: (canonical code, partner code). A canonical code without a partner code
    /// cannot be sent to this partner.
    Code(&'static [(&'static str, &'static str)]),
}

/// One value: where it is in the canonical payload and in the partner document.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub canonical: &'static [&'static str],
    pub partner: &'static [&'static str],
    pub ty: Ty,
    /// Required on both sides (absent on encode: [`AdapterError::Encode`]; on decode:
    /// [`AdapterError::Unmappable`]).
    pub required: bool,
}

/// A canonical value the document kind stands for: checked on encode (anything else is not
/// sent to this partner), set on decode, never written.
#[derive(Debug, Clone, Copy)]
pub struct Implied {
    pub canonical: &'static str,
    pub value: Fixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixed {
    Text(&'static str),
    Boolean(bool),
}

impl Fixed {
    fn value(self) -> Value {
        match self {
            Self::Text(s) => Value::String(s.to_owned()),
            Self::Boolean(b) => Value::Bool(b),
        }
    }

    fn matches(self, v: &Value) -> bool {
        match self {
            Self::Text(s) => v.as_str() == Some(s),
            Self::Boolean(b) => v.as_bool() == Some(b),
        }
    }
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(s) => f.write_str(s),
            Self::Boolean(b) => write!(f, "{b}"),
        }
    }
}

/// One partner document kind and the canonical message type it carries.
#[derive(Debug)]
pub struct Document {
    pub message_type: &'static str,
    /// The document's single top-level key.
    pub kind: &'static str,
    pub fields: &'static [Field],
    pub implied: &'static [Implied],
    /// Canonical fields (dotted paths) this partner never receives: dropped on encode, so a
    /// round trip excludes them.
    pub dropped: &'static [&'static str],
}

/// One JSON partner.
#[derive(Debug)]
pub struct JsonPartner {
    pub name: &'static str,
    pub message_types: &'static [&'static str],
    pub documents: &'static [Document],
}

struct Dotted(&'static [&'static str]);

impl fmt::Display for Dotted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

fn get<'v>(map: &'v Map<String, Value>, path: &[&str]) -> Option<&'v Value> {
    let (last, parents) = path.split_last()?;
    let mut map = map;
    for p in parents {
        map = map.get(*p)?.as_object()?;
    }
    map.get(*last)
}

fn insert(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let slot = map
                .entry(*first)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = slot {
                insert(inner, rest, value);
            }
        }
    }
}

/// Remove the value at `path`; `Err(depth)` when the object at `path[..depth]` is not an object.
fn take(map: &mut Map<String, Value>, path: &[&str]) -> Result<Option<Value>, usize> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(None);
    };
    let mut map = map;
    for (depth, p) in parents.iter().enumerate() {
        match map.get_mut(*p) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(inner)) => map = inner,
            Some(_) => return Err(depth + 1),
        }
    }
    Ok(map.remove(*last).filter(|v| !v.is_null()))
}

impl Ty {
    /// Canonical value → partner value; `Err` says why not (never quoting the value).
    fn to_partner(self, v: &Value) -> Result<Value, &'static str> {
        const WRONG: &str = "has the wrong type";
        match (self, v) {
            (Self::Text, Value::String(s)) => Ok(Value::String(s.clone())),
            (Self::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(v.clone()),
            (Self::Boolean, Value::Bool(b)) => Ok(Value::Bool(*b)),
            (Self::TextList, Value::Array(items)) if items.iter().all(Value::is_string) => {
                Ok(v.clone())
            }
            (Self::Code(codes), Value::String(s)) => codes
                .iter()
                .find(|(c, _)| c == s)
                .map(|(_, p)| Value::String((*p).to_owned()))
                .ok_or("has no code in this partner's code list"),
            _ => Err(WRONG),
        }
    }

    /// Partner value → canonical value (moving strings, not copying them).
    fn to_canonical(self, v: Value) -> Result<Value, &'static str> {
        const WRONG: &str = "has the wrong type";
        match (self, v) {
            (Self::Text, v @ Value::String(_)) => Ok(v),
            (Self::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Value::Number(n)),
            (Self::Boolean, v @ Value::Bool(_)) => Ok(v),
            (Self::TextList, Value::Array(items)) if items.iter().all(Value::is_string) => {
                Ok(Value::Array(items))
            }
            (Self::Code(codes), Value::String(s)) => codes
                .iter()
                .find(|(_, p)| *p == s)
                .map(|(c, _)| Value::String((*c).to_owned()))
                .ok_or("has an unknown code"),
            _ => Err(WRONG),
        }
    }
}

impl Document {
    /// Whether `prefix` (partner path) is a container of some field.
    fn is_container(&self, prefix: &[&str]) -> bool {
        self.fields
            .iter()
            .any(|f| f.partner.len() > prefix.len() && f.partner.starts_with(prefix))
    }

    /// After every field was taken: what is left must be empty containers of the table.
    fn check_leftovers<'a>(
        &self,
        map: &'a Map<String, Value>,
        prefix: &mut Vec<&'a str>,
    ) -> Result<(), AdapterError> {
        for (k, v) in map {
            prefix.push(k.as_str());
            let ok = match v {
                Value::Object(inner) if self.is_container(prefix) => {
                    self.check_leftovers(inner, prefix)?;
                    true
                }
                // `"patient": null`: an absent container (its required fields were missing).
                Value::Null => self.is_container(prefix),
                _ => false,
            };
            prefix.pop();
            if !ok {
                // The key is the partner's, so it is not repeated; its parent path is ours.
                let mut at = String::from(self.kind);
                for p in prefix.iter() {
                    at.push('.');
                    at.push_str(p);
                }
                return Err(AdapterError::unmappable(format!("unknown field in {at}")));
            }
        }
        Ok(())
    }
}

fn header_text(
    body: &mut Map<String, Value>,
    kind: &str,
    key: &'static str,
) -> Result<Option<String>, AdapterError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AdapterError::unmappable(format!(
            "{kind}.{key} has the wrong type"
        ))),
    }
}

fn required_header(
    body: &mut Map<String, Value>,
    kind: &str,
    key: &'static str,
) -> Result<String, AdapterError> {
    header_text(body, kind, key)?
        .ok_or_else(|| AdapterError::unmappable(format!("{kind}.{key} is missing")))
}

impl JsonPartner {
    fn document_for(&self, message_type: &str) -> Option<&'static Document> {
        self.documents
            .iter()
            .find(|d| d.message_type == message_type)
    }

    /// Canonical envelope → partner document bytes.
    pub fn encode_envelope(&self, env: &Envelope) -> Result<Vec<u8>, AdapterError> {
        let doc = self
            .document_for(&env.message_type)
            .ok_or_else(|| AdapterError::UnsupportedType(env.message_type.clone()))?;
        let payload = env
            .payload
            .as_object()
            .ok_or_else(|| AdapterError::Encode("payload is not an object".into()))?;
        for i in doc.implied {
            if !payload.get(i.canonical).is_some_and(|v| i.value.matches(v)) {
                return Err(AdapterError::Encode(format!(
                    "{} receives {} only with {} = {}",
                    self.name, doc.message_type, i.canonical, i.value
                )));
            }
        }
        let mut body = Map::new();
        body.insert(MESSAGE_NO.into(), Value::String(env.message_id.clone()));
        body.insert(VERSION.into(), Value::String(env.schema_version.clone()));
        body.insert(SENT_AT.into(), Value::String(env.sent_at.clone()));
        if let Some(c) = &env.correlation_id {
            body.insert(IN_REPLY_TO.into(), Value::String(c.clone()));
        }
        for f in doc.fields {
            match get(payload, f.canonical) {
                None if f.required => {
                    return Err(AdapterError::Encode(format!(
                        "{} is required by the {} document",
                        Dotted(f.canonical),
                        doc.kind
                    )));
                }
                None => {}
                Some(v) => {
                    let w = f.ty.to_partner(v).map_err(|why| {
                        AdapterError::Encode(format!("{} {why}", Dotted(f.canonical)))
                    })?;
                    insert(&mut body, f.partner, w);
                }
            }
        }
        let mut top = Map::new();
        top.insert(doc.kind.to_owned(), Value::Object(body));
        serde_json::to_vec(&Value::Object(top)).map_err(|e| AdapterError::Encode(e.to_string()))
    }

    /// Partner document bytes → canonical envelope with `source` set.
    pub fn decode_bytes(&self, bytes: &[u8], source: &str) -> Result<Envelope, AdapterError> {
        let Value::Object(top) = crate::json::parse_strict(bytes)? else {
            return Err(AdapterError::unmappable("expected a JSON object"));
        };
        if top.len() != 1 {
            return Err(AdapterError::unmappable(
                "expected an object with exactly one document",
            ));
        }
        let Some((kind, body)) = top.into_iter().next() else {
            return Err(AdapterError::unmappable("empty object"));
        };
        let doc = self
            .documents
            .iter()
            .find(|d| d.kind == kind)
            .ok_or_else(|| {
                AdapterError::unmappable(format!("not a document kind {} sends", self.name))
            })?;
        let Value::Object(mut body) = body else {
            return Err(AdapterError::unmappable(format!(
                "{} is not an object",
                doc.kind
            )));
        };
        let message_id = required_header(&mut body, doc.kind, MESSAGE_NO)?;
        let schema_version = required_header(&mut body, doc.kind, VERSION)?;
        let sent_at = required_header(&mut body, doc.kind, SENT_AT)?;
        let correlation_id = header_text(&mut body, doc.kind, IN_REPLY_TO)?;
        match body.remove(EXTENSIONS) {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(_) => {
                return Err(AdapterError::unmappable(format!(
                    "{}.{EXTENSIONS} is not an object",
                    doc.kind
                )));
            }
        }
        let mut payload = Map::new();
        for f in doc.fields {
            let taken = take(&mut body, f.partner).map_err(|depth| {
                let parent = f.partner.get(..depth).unwrap_or(f.partner);
                AdapterError::unmappable(format!(
                    "{}.{} is not an object",
                    doc.kind,
                    Dotted(parent)
                ))
            })?;
            match taken {
                None if f.required => {
                    return Err(AdapterError::unmappable(format!(
                        "{}.{} is missing",
                        doc.kind,
                        Dotted(f.partner)
                    )));
                }
                None => {}
                Some(v) => {
                    let c = f.ty.to_canonical(v).map_err(|why| {
                        AdapterError::unmappable(format!(
                            "{}.{} {why}",
                            doc.kind,
                            Dotted(f.partner)
                        ))
                    })?;
                    insert(&mut payload, f.canonical, c);
                }
            }
        }
        doc.check_leftovers(&body, &mut Vec::new())?;
        for i in doc.implied {
            payload.insert(i.canonical.to_owned(), i.value.value());
        }
        Ok(Envelope {
            message_id,
            message_type: doc.message_type.to_owned(),
            schema_version,
            source: source.to_owned(),
            sent_at,
            correlation_id,
            payload: Value::Object(payload),
        })
    }
}

impl Adapter for JsonPartner {
    fn name(&self) -> &str {
        self.name
    }

    fn content_types(&self) -> &[&'static str] {
        CONTENT_TYPES
    }

    fn message_types(&self) -> Vec<&str> {
        self.message_types.to_vec()
    }

    fn decode(&self, input: Inbound<'_>) -> Result<Envelope, AdapterError> {
        crate::check_content_type(self, input.content_type)?;
        self.decode_bytes(input.bytes, input.source)
    }

    fn encode<'a>(
        &self,
        message: Canonical<'a>,
        content_type: Option<&str>,
    ) -> Result<Encoded<'a>, AdapterError> {
        crate::check_content_type(self, content_type)?;
        let body = self.encode_envelope(message.envelope)?;
        Ok(Encoded {
            content_type: "application/json",
            body: body.into(),
        })
    }
}
