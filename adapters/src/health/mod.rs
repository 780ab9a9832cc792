//! Hospitals of the medical alliances: HL7 FHIR R4, JSON and XML representations.
//!
//! Encode writes a FHIR message `Bundle` (MessageHeader first, then the focus resource and
//! what it references): a consultation request focuses on a `ServiceRequest`, a consultation
//! result on a `DiagnosticReport`. Decode reads those back, and what hospitals send instead: a
//! message Bundle focused on a `DiagnosticReport`, a `Task` or a `ServiceRequest` status
//! update, or any of those resources on its own. FHIR XML is converted into the FHIR JSON value
//! shape first, so one mapping serves both. The mapping is documented in
//! `docs/partners/health.md`.

mod decode;
mod encode;
mod from_xml;
mod tree;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use crate::xml::{self, XmlError};
use crate::{Adapter, AdapterError, Canonical, Encoded, Inbound};
use wingspan_core::Envelope;

/// The adapter for `adapter = "health"`.
#[derive(Debug, Clone, Copy)]
pub struct Health;

pub const REQUEST: &str = "telemedicine.consultation.request";
pub const RESULT: &str = "telemedicine.consultation.result";
const MESSAGE_TYPES: &[&str] = &[REQUEST, RESULT];

pub const FHIR_JSON: &str = "application/fhir+json";
pub const FHIR_XML: &str = "application/fhir+xml";
/// FHIR's own media types first (the first is the default for encode), then the generic
/// aliases some FHIR servers still send.
const CONTENT_TYPES: &[&str] = &[FHIR_JSON, FHIR_XML, "application/json", "application/xml"];

pub(crate) const FHIR_NS: &str = "http://hl7.org/fhir";

// Identifier systems, extension urls and codes of our own (all `urn:wingspan:`).
pub const SYS_MESSAGE_ID: &str = "urn:wingspan:message-id";
pub const SYS_MESSAGE_TYPE: &str = "urn:wingspan:message-type";
pub const SYS_CONSULTATION_ID: &str = "urn:wingspan:consultation-id";
pub const SYS_PERSON_ID: &str = "urn:wingspan:person-id";
pub const SYS_ORGANIZATION_ID: &str = "urn:wingspan:organization-id";
pub const SYS_OBSERVATION: &str = "urn:wingspan:observation";
pub const SYS_CONSULTATION_STATUS: &str = "urn:wingspan:consultation-status";
pub const EXT_ALLIANCE: &str = "urn:wingspan:extension:alliance";
pub const EXT_DIVISION_CODE: &str = "urn:wingspan:extension:division-code";
pub const EXT_CONSULTATION_STATUS: &str = "urn:wingspan:extension:consultation-status";
pub const EXT_EMPTY_LIST: &str = "urn:wingspan:extension:empty-list";
pub const SOURCE_PREFIX: &str = "urn:wingspan:source:";
pub const DEFINITION_PREFIX: &str = "urn:wingspan:message-definition:";
pub const ENTRY_PREFIX: &str = "urn:wingspan:entry:";
const CODE_SUBSTANCE_USE: &str = "substance-use";
const CODE_RECOMMENDATION: &str = "recommendation";
const DEFAULT_SCHEMA_VERSION: &str = "1.0";

// Public code systems.
const SNOMED: &str = "http://snomed.info/sct";
const SNOMED_CONSULTATION: &str = "11429006";
const LOINC: &str = "http://loinc.org";
const LOINC_CONSULT_NOTE: &str = "11488-4";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repr {
    Json,
    Xml,
}

/// The representation of inbound bytes: by content type, else by the first non-blank byte.
fn inbound_repr(content_type: Option<&str>, bytes: &[u8]) -> Result<Repr, AdapterError> {
    if let Some(ct) = content_type {
        let m = crate::media_type(ct);
        return match m.as_str() {
            FHIR_JSON | "application/json" => Ok(Repr::Json),
            FHIR_XML | "application/xml" => Ok(Repr::Xml),
            _ => Err(AdapterError::UnsupportedContentType(m)),
        };
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => Ok(Repr::Xml),
        Some(b'{') => Ok(Repr::Json),
        _ => Err(AdapterError::Malformed {
            format: "FHIR",
            detail: "neither JSON nor XML".into(),
        }),
    }
}

/// The representation and content type to encode as; `None` means FHIR JSON.
fn outbound_repr(content_type: Option<&str>) -> Result<(Repr, &'static str), AdapterError> {
    let Some(ct) = content_type else {
        return Ok((Repr::Json, FHIR_JSON));
    };
    let m = crate::media_type(ct);
    match m.as_str() {
        FHIR_JSON => Ok((Repr::Json, FHIR_JSON)),
        "application/json" => Ok((Repr::Json, "application/json")),
        FHIR_XML => Ok((Repr::Xml, FHIR_XML)),
        "application/xml" => Ok((Repr::Xml, "application/xml")),
        _ => Err(AdapterError::UnsupportedContentType(m)),
    }
}

fn xml_error(e: XmlError) -> AdapterError {
    match e {
        XmlError::DocType
        | XmlError::UnknownEntity
        | XmlError::TooLarge(_)
        | XmlError::TooDeep(_)
        | XmlError::TooManyAttributes(_)
        | XmlError::TooManyElements(_)
        | XmlError::Encoding
        | XmlError::ProcessingInstruction => AdapterError::Refused(e.to_string()),
        XmlError::UnknownPrefix | XmlError::Malformed(_) | XmlError::Empty => {
            AdapterError::Malformed {
                format: "FHIR XML",
                detail: e.to_string(),
            }
        }
    }
}

/// Parse inbound bytes into the FHIR JSON value shape.
fn parse(repr: Repr, bytes: &[u8]) -> Result<serde_json::Value, AdapterError> {
    match repr {
        // Attachments carry base64 text: strings may be as long as the body.
        Repr::Json => wingspan_core::json::parse_strict(
            bytes,
            wingspan_core::json::JsonLimits {
                max_depth: crate::json::MAX_DEPTH,
                max_string_bytes: bytes.len(),
            },
        )
        .map_err(|e| match e {
            wingspan_core::json::JsonError::Malformed { kind, .. } => AdapterError::Malformed {
                format: "FHIR JSON",
                detail: kind.into(),
            },
            refused => AdapterError::Refused(refused.to_string()),
        }),
        Repr::Xml => {
            let root = xml::parse(bytes, &xml::Limits::default()).map_err(xml_error)?;
            from_xml::to_value(&root)
        }
    }
}

impl Adapter for Health {
    fn clearance(&self) -> wingspan_core::adapter::Clearance {
        wingspan_core::adapter::Clearance::Clinical
    }

    fn name(&self) -> &str {
        "health"
    }

    fn content_types(&self) -> &[&'static str] {
        CONTENT_TYPES
    }

    fn message_types(&self) -> Vec<&str> {
        MESSAGE_TYPES.to_vec()
    }

    fn decode(&self, input: Inbound<'_>) -> Result<Envelope, AdapterError> {
        let repr = inbound_repr(input.content_type, input.bytes)?;
        let value = parse(repr, input.bytes)?;
        decode::envelope(&value, input.source)
    }

    fn encode<'a>(
        &self,
        message: Canonical<'a>,
        content_type: Option<&str>,
    ) -> Result<Encoded<'a>, AdapterError> {
        let (repr, content_type) = outbound_repr(content_type)?;
        let env = message.envelope;
        let tree = match env.message_type.as_str() {
            REQUEST => encode::request(env)?,
            RESULT => encode::result(env)?,
            other => return Err(AdapterError::UnsupportedType(other.to_owned())),
        };
        let body = match repr {
            Repr::Json => tree::to_json(&tree),
            Repr::Xml => tree::to_xml(&tree),
        };
        Ok(Encoded {
            content_type,
            body: Cow::Owned(body),
        })
    }
}
