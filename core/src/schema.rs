//! The schema catalogue: every message type's payload schema and the envelope schema,
//! compiled once at start (draft 2020-12, linear-time `regex` engine, no `$ref` retrieval).

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

/// One schema document as read from `schemas/v<major>/<name>.schema.json`.
#[derive(Debug, Clone)]
pub struct SchemaDoc {
    /// Schema major version (the `v1` directory → 1).
    pub major: u32,
    /// `envelope` or a message type such as `referral.handover`.
    pub name: String,
    /// Where it came from, for error messages.
    pub origin: String,
    pub schema: Value,
}

/// One schema violation: where (JSON pointer into the envelope) and what.
/// The message never repeats the offending value, so it is safe to log and audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

/// Why a payload could not be validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("unknown message type")]
    UnknownType,
    #[error("unsupported schema version")]
    UnsupportedVersion,
    #[error("{} schema violation(s)", .0.len())]
    Violations(Vec<Violation>),
}

/// A schema that failed to compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct SchemaCompileError {
    pub origin: String,
    pub reason: String,
}

/// At most this many violations are reported for one message.
pub const MAX_VIOLATIONS: usize = 20;

/// Compiled validators, keyed by (major version, message type).
pub struct SchemaCatalog {
    envelope: HashMap<u32, jsonschema::Validator>,
    /// message type → major version → validator (nested so a lookup allocates nothing).
    payloads: HashMap<String, HashMap<u32, jsonschema::Validator>>,
    /// message type → (newest major version, its schema document), for field-policy checks.
    documents: HashMap<String, (u32, Value)>,
}

impl std::fmt::Debug for SchemaCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCatalog")
            .field(
                "envelope_versions",
                &self.envelope.keys().collect::<Vec<_>>(),
            )
            .field("payload_types", &self.payloads.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn compile(doc: &SchemaDoc) -> Result<jsonschema::Validator, SchemaCompileError> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .should_validate_formats(true)
        .build(&doc.schema)
        .map_err(|e| SchemaCompileError {
            origin: doc.origin.clone(),
            reason: e.masked().to_string(),
        })
}

fn violations(validator: &jsonschema::Validator, value: &Value, prefix: &str) -> Vec<Violation> {
    validator
        .iter_errors(value)
        .take(MAX_VIOLATIONS)
        .map(|e| Violation {
            pointer: format!("{prefix}{}", e.instance_path().as_str()),
            message: e.masked().to_string(),
        })
        .collect()
}

impl SchemaCatalog {
    /// Compile every document; all failures are returned together.
    pub fn compile(docs: &[SchemaDoc]) -> Result<Self, Vec<SchemaCompileError>> {
        let mut errors = Vec::new();
        let mut catalog = SchemaCatalog {
            envelope: HashMap::new(),
            payloads: HashMap::new(),
            documents: HashMap::new(),
        };
        for doc in docs {
            match compile(doc) {
                Ok(v) if doc.name == "envelope" => {
                    catalog.envelope.insert(doc.major, v);
                }
                Ok(v) => {
                    let newest = catalog
                        .documents
                        .get(&doc.name)
                        .is_none_or(|(major, _)| *major < doc.major);
                    if newest {
                        catalog
                            .documents
                            .insert(doc.name.clone(), (doc.major, doc.schema.clone()));
                    }
                    catalog
                        .payloads
                        .entry(doc.name.clone())
                        .or_default()
                        .insert(doc.major, v);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(catalog)
        } else {
            Err(errors)
        }
    }

    /// Message types that have a payload schema in some version.
    pub fn message_types(&self) -> impl Iterator<Item = &str> {
        self.payloads.keys().map(String::as_str)
    }

    /// The newest payload schema document of a message type.
    pub fn payload_schema(&self, message_type: &str) -> Option<&Value> {
        self.documents.get(message_type).map(|(_, v)| v)
    }

    pub fn has_type(&self, message_type: &str) -> bool {
        self.payloads.contains_key(message_type)
    }

    /// Validate the envelope's header shape. Unknown versions use the newest envelope schema.
    pub fn validate_envelope(&self, value: &Value) -> Result<(), Vec<Violation>> {
        let Some(validator) = self
            .envelope
            .iter()
            .max_by_key(|(major, _)| **major)
            .map(|(_, v)| v)
        else {
            return Ok(());
        };
        let v = violations(validator, value, "");
        if v.is_empty() { Ok(()) } else { Err(v) }
    }

    /// Validate a payload against its type's schema; pointers are prefixed with `/payload`.
    pub fn validate_payload(
        &self,
        major: u32,
        message_type: &str,
        payload: &Value,
    ) -> Result<(), PayloadError> {
        let versions = self
            .payloads
            .get(message_type)
            .ok_or(PayloadError::UnknownType)?;
        let validator = versions
            .get(&major)
            .ok_or(PayloadError::UnsupportedVersion)?;
        if validator.is_valid(payload) {
            return Ok(());
        }
        Err(PayloadError::Violations(violations(
            validator, payload, "/payload",
        )))
    }
}
