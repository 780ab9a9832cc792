//! Declared adapters: a partner format described in the config directory instead of code.
//!
//! ```text
//! <adapters_dir>/<name>/adapter.toml   codec, message types, clearance, codec options
//!                      /decode.vrl     partner document (the codec's view) → canonical envelope
//!                      /encode.vrl     canonical envelope (after the field policy) → partner document
//!                      /golden/encode/<case>.canonical.json + <case>.wire.<ext>
//!                      /golden/decode/<case>.wire.<ext>     + <case>.canonical.json
//! ```
//!
//! Both programs are VRL ([`program`]), compiled when the config loads: a program that does
//! not compile is a config error at `file:line:column`, and a reload with one is refused.
//! A declared adapter is used exactly like a built-in one: a destination's field policy and
//! the clinical rules apply before `encode`, whatever the program does; the envelope a
//! `decode` produces is validated against the schemas like any other.
//!
//! Reading the directory is the one place this crate touches files, and it happens only when
//! a config is loaded.

pub mod codec;
pub mod golden;
pub mod program;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};
use vrl::value::Value as VrlValue;
use wingspan_core::Envelope;

pub use codec::{Codec, XmlOptions};
pub use program::{CompileProblem, Program, RunError};

use crate::{Adapter, AdapterError, Canonical, Clearance, Encoded, Inbound};

/// The largest partner document a declared adapter reads or writes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// `adapter.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefinition {
    #[serde(default)]
    description: String,
    codec: String,
    message_types: Vec<String>,
    #[serde(default)]
    clearance: Option<String>,
    #[serde(default)]
    max_steps: Option<u64>,
    #[serde(default)]
    xml: Option<RawXml>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXml {
    namespace: Option<String>,
    #[serde(default)]
    repeated: Vec<String>,
}

/// One problem with a declared adapter, at `file:line[:column]` where it can be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProblem {
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// A partner format declared in configuration.
#[derive(Debug)]
pub struct Declared {
    name: String,
    description: String,
    dir: PathBuf,
    codec: Codec,
    message_types: Vec<String>,
    clearance: Clearance,
    decode: Program,
    encode: Program,
}

fn problem(at: impl Into<String>, message: impl Into<String>) -> LoadProblem {
    LoadProblem {
        at: at.into(),
        message: message.into(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.matches('\n').count() + 1)
}

impl Declared {
    /// Read and compile the adapter in `dir` (named after the directory).
    pub fn load(dir: &Path) -> Result<Self, Vec<LoadProblem>> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shown = |f: &str| dir.join(f).display().to_string();
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map_err(|e| vec![problem(shown(f), format!("cannot read: {e}"))])
        };
        let mut problems = Vec::new();
        if !wingspan_core::config::valid_id(&name) {
            problems.push(problem(
                dir.display().to_string(),
                "an adapter's directory name is its name: lowercase letters, digits, '-' and '_'",
            ));
        }
        let text = read("adapter.toml")?;
        let raw: RawDefinition = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&text, s.start));
            vec![problem(
                format!("{}:{line}", shown("adapter.toml")),
                e.message().to_owned(),
            )]
        })?;
        let xml = raw.xml.clone().map(|x| XmlOptions {
            namespace: x.namespace,
            repeated: x.repeated,
        });
        let codec = Codec::from_name(&raw.codec, xml.clone().unwrap_or_default());
        let codec = match codec {
            Some(c) => {
                if xml.is_some() && !matches!(c, Codec::Xml(_) | Codec::FhirXml(_)) {
                    problems.push(problem(
                        shown("adapter.toml"),
                        "[xml] is for the xml codecs only",
                    ));
                }
                Some(c)
            }
            None => {
                problems.push(problem(
                    shown("adapter.toml"),
                    format!(
                        "codec {:?} is not one of {}",
                        raw.codec,
                        Codec::NAMES.join(", ")
                    ),
                ));
                None
            }
        };
        let clearance = match raw.clearance.as_deref() {
            None | Some("ordinary") => Clearance::Ordinary,
            Some("medical-justification") => Clearance::MedicalJustification,
            Some("clinical") => {
                if codec.as_ref().is_some_and(|c| !c.clinical()) {
                    problems.push(problem(
                        shown("adapter.toml"),
                        "clearance = \"clinical\" is for health formats only (fhir+json, fhir+xml, hl7v2)",
                    ));
                }
                Clearance::Clinical
            }
            Some(other) => {
                problems.push(problem(
                    shown("adapter.toml"),
                    format!("clearance {other:?} is not one of ordinary, medical-justification, clinical"),
                ));
                Clearance::Ordinary
            }
        };
        if raw.message_types.is_empty() {
            problems.push(problem(
                shown("adapter.toml"),
                "list at least one message type",
            ));
        }
        let max_steps = raw.max_steps.unwrap_or(program::DEFAULT_MAX_STEPS);
        if max_steps == 0 {
            problems.push(problem(shown("adapter.toml"), "max_steps must be above 0"));
        }
        let mut compile = |file: &str| -> Option<Program> {
            let source = match read(file) {
                Ok(s) => s,
                Err(mut p) => {
                    problems.append(&mut p);
                    return None;
                }
            };
            match Program::compile(&source, max_steps) {
                Ok(p) => Some(p),
                Err(list) => {
                    problems.extend(
                        list.into_iter()
                            .map(|p| problem(format!("{}:{}", shown(file), p.at), p.message)),
                    );
                    None
                }
            }
        };
        let decode = compile("decode.vrl");
        let encode = compile("encode.vrl");
        match (codec, decode, encode) {
            (Some(codec), Some(decode), Some(encode)) if problems.is_empty() => Ok(Self {
                name,
                description: raw.description,
                dir: dir.to_path_buf(),
                codec,
                message_types: raw.message_types,
                clearance,
                decode,
                encode,
            }),
            _ => Err(problems),
        }
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// What the decode program makes of a document, before it becomes an envelope (for
    /// `wingspan decode` and the golden cases).
    pub fn decode_value(&self, bytes: &[u8]) -> Result<Value, AdapterError> {
        let view = self.codec.read(bytes, MAX_DOCUMENT_BYTES)?;
        let out = self
            .decode
            .run(VrlValue::from(view))
            .map_err(|e| AdapterError::Unmappable(format!("decode.vrl: {e}")))?;
        to_json(out).map_err(|what| AdapterError::Unmappable(format!("decode.vrl: {what}")))
    }

    /// The partner document value the encode program makes of an envelope.
    pub fn encode_value(&self, envelope: &Envelope) -> Result<VrlValue, AdapterError> {
        self.encode
            .run(envelope_to_vrl(envelope))
            .map_err(|e| AdapterError::Encode(format!("encode.vrl: {e}")))
    }
}

/// The envelope as the encode program's `.`, built from references (no intermediate JSON
/// value): `message_id`, `message_type`, `schema_version`, `source`, `sent_at`,
/// `correlation_id` (when set) and `payload`.
fn envelope_to_vrl(env: &Envelope) -> VrlValue {
    let text = |s: &str| VrlValue::from(s);
    let mut map = vrl::value::ObjectMap::new();
    map.insert("message_id".into(), text(&env.message_id));
    map.insert("message_type".into(), text(&env.message_type));
    map.insert("schema_version".into(), text(&env.schema_version));
    map.insert("source".into(), text(&env.source));
    map.insert("sent_at".into(), text(&env.sent_at));
    if let Some(c) = &env.correlation_id {
        map.insert("correlation_id".into(), text(c));
    }
    map.insert("payload".into(), json_to_vrl(&env.payload));
    VrlValue::Object(map)
}

/// A JSON value as a VRL value, by reference.
fn json_to_vrl(v: &Value) -> VrlValue {
    match v {
        Value::Null => VrlValue::Null,
        Value::Bool(b) => VrlValue::Boolean(*b),
        Value::String(s) => VrlValue::from(s.as_str()),
        Value::Array(items) => VrlValue::Array(items.iter().map(json_to_vrl).collect()),
        Value::Object(map) => VrlValue::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), json_to_vrl(v)))
                .collect(),
        ),
        // Integers stay integers; other numbers as VRL's own conversion has them.
        Value::Number(_) => VrlValue::from(v.clone()),
    }
}

/// A program's result as JSON, moving what can be moved; bytes must be UTF-8.
pub(crate) fn to_json(v: VrlValue) -> Result<Value, &'static str> {
    const NOT_UTF8: &str = "the result holds bytes that are not UTF-8";
    Ok(match v {
        VrlValue::Null => Value::Null,
        VrlValue::Boolean(b) => Value::Bool(b),
        VrlValue::Bytes(b) => Value::String(String::from_utf8(Vec::from(b)).map_err(|_| NOT_UTF8)?),
        VrlValue::Array(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        VrlValue::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| Ok((String::from(k), to_json(v)?)))
                .collect::<Result<Map<_, _>, &'static str>>()?,
        ),
        other => other.try_into().map_err(|_| NOT_UTF8)?,
    })
}

fn text(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, AdapterError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AdapterError::Unmappable(format!(
            "decode.vrl: the result's {key} is not a string"
        ))),
    }
}

fn envelope_from(value: Value, source: &str) -> Result<Envelope, AdapterError> {
    let Value::Object(mut map) = value else {
        return Err(AdapterError::unmappable(
            "decode.vrl: the result is not an object",
        ));
    };
    let required = |map: &mut Map<String, Value>, key: &str| {
        text(map, key)?
            .ok_or_else(|| AdapterError::Unmappable(format!("decode.vrl: the result has no {key}")))
    };
    let message_id = required(&mut map, "message_id")?;
    let message_type = required(&mut map, "message_type")?;
    let schema_version = required(&mut map, "schema_version")?;
    let sent_at = required(&mut map, "sent_at")?;
    let correlation_id = text(&mut map, "correlation_id")?;
    map.remove("source");
    let payload = match map.remove("payload") {
        Some(p @ Value::Object(_)) => p,
        _ => {
            return Err(AdapterError::unmappable(
                "decode.vrl: the result's payload is not an object",
            ));
        }
    };
    if !map.is_empty() {
        return Err(AdapterError::unmappable(
            "decode.vrl: the result has a field that is not part of the envelope",
        ));
    }
    Ok(Envelope {
        message_id,
        message_type,
        schema_version,
        source: source.to_owned(),
        sent_at,
        correlation_id,
        payload,
    })
}

impl Adapter for Declared {
    fn name(&self) -> &str {
        &self.name
    }

    fn content_types(&self) -> &[&'static str] {
        self.codec.content_types()
    }

    fn message_types(&self) -> Vec<&str> {
        self.message_types.iter().map(String::as_str).collect()
    }

    fn clearance(&self) -> Clearance {
        self.clearance
    }

    fn decode(&self, input: Inbound<'_>) -> Result<Envelope, AdapterError> {
        crate::check_content_type(self, input.content_type)?;
        let value = self.decode_value(input.bytes)?;
        let envelope = envelope_from(value, input.source)?;
        if !self.message_types.contains(&envelope.message_type) {
            return Err(AdapterError::UnsupportedType(envelope.message_type));
        }
        Ok(envelope)
    }

    fn encode<'a>(
        &self,
        message: Canonical<'a>,
        content_type: Option<&str>,
    ) -> Result<Encoded<'a>, AdapterError> {
        crate::check_content_type(self, content_type)?;
        let env = message.envelope;
        if !self.message_types.contains(&env.message_type) {
            return Err(AdapterError::UnsupportedType(env.message_type.clone()));
        }
        let value = self.encode_value(env)?;
        let body = self.codec.write(value)?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(AdapterError::Encode(format!(
                "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        Ok(Encoded {
            content_type: self.codec.content_types()[0],
            body: body.into(),
        })
    }
}

/// Every adapter declared under `dir` (one sub-directory each, sorted by name). A missing
/// directory declares none.
pub fn load_all(dir: &Path) -> Result<Vec<Arc<Declared>>, Vec<LoadProblem>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for d in dirs {
        match Declared::load(&d) {
            Ok(a) => out.push(Arc::new(a)),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A digest of every file of every declared adapter under `dir`, so a reload notices a
/// changed program even when the config file is unchanged.
pub fn digest(dir: &Path) -> String {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    let mut all = Vec::new();
    for (p, bytes) in files {
        let rel = p
            .strip_prefix(dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        all.extend_from_slice(&(rel.len() as u64).to_be_bytes());
        all.extend_from_slice(rel.as_bytes());
        all.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        all.extend_from_slice(&bytes);
    }
    wingspan_core::audit::sha256_hex(&all)
}
