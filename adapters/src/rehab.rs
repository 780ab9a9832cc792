//! The canonical JSON envelope as its own wire format (the rehabilitation platform speaks it).
//! Encoding forwards the exact bytes the gateway accepted when the field policy kept the whole
//! message (what was validated is what is sent), and serialises the cut-down envelope otherwise.

use std::borrow::Cow;

use crate::{Adapter, AdapterError, Canonical, Encoded, Inbound};
use wingspan_core::Envelope;

#[derive(Debug, Clone, Copy)]
pub struct Rehab;

/// Every message type with a schema: the canonical form carries them all.
pub const MESSAGE_TYPES: &[&str] = &[
    "enforcement.material.submit",
    "enforcement.material.decision",
    "telemedicine.consultation.request",
    "telemedicine.consultation.result",
    "emergency.transfer.request",
    "emergency.transfer.acknowledged",
    "referral.handover",
    "referral.acknowledged",
    "referral.outcome",
];

impl Adapter for Rehab {
    fn clearance(&self) -> wingspan_core::adapter::Clearance {
        wingspan_core::adapter::Clearance::Clinical
    }

    fn name(&self) -> &str {
        "rehab"
    }

    fn content_types(&self) -> &[&'static str] {
        &["application/json"]
    }

    fn message_types(&self) -> Vec<&str> {
        MESSAGE_TYPES.to_vec()
    }

    fn decode(&self, input: Inbound<'_>) -> Result<Envelope, AdapterError> {
        crate::check_content_type(self, input.content_type)?;
        let value = crate::json::parse_strict(input.bytes)?;
        let mut env: Envelope =
            serde_json::from_value(value).map_err(|e| AdapterError::Malformed {
                format: "JSON",
                detail: json_error_kind(&e).into(),
            })?;
        env.source = input.source.to_owned();
        Ok(env)
    }

    fn encode<'a>(
        &self,
        message: Canonical<'a>,
        _content_type: Option<&str>,
    ) -> Result<Encoded<'a>, AdapterError> {
        let body = match message.bytes {
            Some(b) => Cow::Borrowed(b),
            None => Cow::Owned(
                serde_json::to_vec(message.envelope)
                    .map_err(|e| AdapterError::Encode(e.to_string()))?,
            ),
        };
        Ok(Encoded {
            content_type: "application/json",
            body,
        })
    }
}

/// A serde_json error's category, without the position text (which can quote input).
pub fn json_error_kind(e: &serde_json::Error) -> &'static str {
    wingspan_core::json::error_kind(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let e = Envelope {
            message_id: "m-1".into(),
            message_type: "referral.outcome".into(),
            schema_version: "1.0".into(),
            source: "hr".into(),
            sent_at: "2026-11-29T10:00:00Z".into(),
            correlation_id: Some("m-0".into()),
            payload: json!({"referral_id": "r-1"}),
        };
        let bytes = serde_json::to_vec_pretty(&e).expect("json");
        let encoded = Rehab
            .encode(
                Canonical {
                    envelope: &e,
                    bytes: Some(&bytes),
                },
                None,
            )
            .expect("encode");
        assert_eq!(encoded.content_type, "application/json");
        assert_eq!(&*encoded.body, bytes.as_slice(), "forwarded byte for byte");
        let inbound = |bytes| Inbound {
            source: "hr",
            content_type: Some("application/json"),
            bytes,
        };
        assert_eq!(Rehab.decode(inbound(&encoded.body)).expect("decode"), e);
        let cut = Rehab
            .encode(
                Canonical {
                    envelope: &e,
                    bytes: None,
                },
                None,
            )
            .expect("encode");
        assert_eq!(Rehab.decode(inbound(&cut.body)).expect("decode"), e);
        assert!(matches!(
            Rehab.decode(inbound(b"{\"message_id\":")),
            Err(AdapterError::Malformed { .. })
        ));
        assert!(matches!(
            Rehab.decode(Inbound {
                content_type: Some("application/xml"),
                ..inbound(b"{}")
            }),
            Err(AdapterError::UnsupportedContentType(_))
        ));
    }
}
