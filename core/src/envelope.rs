//! The canonical envelope: the one shape every message has inside the gateway.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A message in canonical form. The header fields are typed; the payload is validated
/// against the schema of its `message_type` and `schema_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Unique per source; the deduplication key end to end (and the partner's `Idempotency-Key`).
    pub message_id: String,
    /// One of the message types that have a schema, e.g. `referral.handover`.
    pub message_type: String,
    /// `MAJOR.MINOR`; the major version selects the schema directory (`schemas/v1`).
    pub schema_version: String,
    /// The sending system's source id, as configured.
    pub source: String,
    /// When the sender created the message (RFC 3339).
    pub sent_at: String,
    /// For replies: the `message_id` of the request this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The message body; its shape is defined by the message type's schema.
    pub payload: Value,
}

impl Envelope {
    /// The message family a type belongs to: the part before the first dot
    /// (`enforcement`, `telemedicine`, `emergency`, `referral`).
    pub fn family(message_type: &str) -> &str {
        message_type.split('.').next().unwrap_or(message_type)
    }

    /// Schema major version, if `schema_version` is `MAJOR.MINOR` with numeric parts.
    pub fn schema_major(&self) -> Option<u32> {
        let (major, minor) = self.schema_version.split_once('.')?;
        minor.parse::<u32>().ok()?;
        major.parse().ok()
    }

    /// Resolve a predicate field: `/payload/...` is a JSON pointer into the payload, a bare
    /// name is a header field. Returns the value as text (strings as-is, numbers and booleans
    /// by their JSON text); `None` when absent or not a scalar.
    pub fn field_text(&self, field: &str) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        if let Some(pointer) = field.strip_prefix("/payload") {
            return match self.payload.pointer(pointer)? {
                Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                Value::Number(n) => Some(Cow::Owned(n.to_string())),
                Value::Bool(b) => Some(Cow::Owned(b.to_string())),
                _ => None,
            };
        }
        let text = match field {
            "message_id" => &self.message_id,
            "message_type" => &self.message_type,
            "schema_version" => &self.schema_version,
            "source" => &self.source,
            "correlation_id" => self.correlation_id.as_ref()?,
            _ => return None,
        };
        Some(Cow::Borrowed(text.as_str()))
    }

    /// Header fields a route predicate may name (besides `/payload/...` pointers).
    pub const HEADER_FIELDS: [&'static str; 5] = [
        "message_id",
        "message_type",
        "schema_version",
        "source",
        "correlation_id",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Envelope {
        Envelope {
            message_id: "m-1".into(),
            message_type: "referral.handover".into(),
            schema_version: "1.0".into(),
            source: "rehab".into(),
            sent_at: "2026-11-29T10:00:00Z".into(),
            correlation_id: None,
            payload: json!({"residence": {"division_code": "320411"}, "n": 3, "flag": true}),
        }
    }

    #[test]
    fn field_text_reads_headers_and_payload_pointers() {
        let e = sample();
        assert_eq!(e.field_text("source").as_deref(), Some("rehab"));
        assert_eq!(
            e.field_text("/payload/residence/division_code").as_deref(),
            Some("320411")
        );
        assert_eq!(e.field_text("/payload/n").as_deref(), Some("3"));
        assert_eq!(e.field_text("/payload/flag").as_deref(), Some("true"));
        assert_eq!(e.field_text("/payload/residence").as_deref(), None);
        assert_eq!(e.field_text("correlation_id"), None);
        assert_eq!(e.field_text("nonsense"), None);
    }

    #[test]
    fn family_and_major() {
        assert_eq!(
            Envelope::family("telemedicine.consultation.request"),
            "telemedicine"
        );
        assert_eq!(sample().schema_major(), Some(1));
        let mut e = sample();
        e.schema_version = "1".into();
        assert_eq!(e.schema_major(), None);
    }
}
