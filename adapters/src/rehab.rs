//! The canonical JSON envelope as its own wire format (the rehabilitation platform speaks it).
//! Encoding forwards the exact bytes the gateway accepted: what was validated is what is sent.

use std::borrow::Cow;

use crate::{Adapter, AdapterError, Canonical, Encoded};
use wingspan_core::Envelope;

#[derive(Debug, Clone, Copy)]
pub struct Rehab;

impl Adapter for Rehab {
    fn decode(&self, bytes: &[u8]) -> Result<Envelope, AdapterError> {
        serde_json::from_slice(bytes)
            .map_err(|e| AdapterError::Decode(format!("canonical JSON: {}", e.classify_name())))
    }

    fn encode<'a>(&self, message: Canonical<'a>) -> Result<Encoded<'a>, AdapterError> {
        Ok(Encoded {
            content_type: "application/json",
            body: Cow::Borrowed(message.bytes),
        })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "i/o",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong shape",
            serde_json::error::Category::Eof => "truncated",
        }
    }
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
            .encode(Canonical {
                envelope: &e,
                bytes: &bytes,
            })
            .expect("encode");
        assert_eq!(encoded.content_type, "application/json");
        assert_eq!(&*encoded.body, bytes.as_slice(), "forwarded byte for byte");
        assert_eq!(Rehab.decode(&encoded.body).expect("decode"), e);
        assert!(matches!(
            Rehab.decode(b"{\"message_id\":"),
            Err(AdapterError::Decode(_))
        ));
    }
}
