//! Partner adapters: one module per partner wire format behind one small trait.
//! `decode` turns partner bytes into a canonical envelope, `encode` turns a canonical envelope
//! (already cut down to the destination's field policy) into what the destination receives.
//! Both are pure: adapters never retry, reconnect, read a clock or ack.
//!
//! Every adapter decodes what it encodes (so a simulator can read what it was sent, and a
//! round trip canonical → wire → canonical can be checked), for every message type it lists.
//!
//! The registry is [`AdapterKind`]: a closed enum with an exhaustive `match`.

pub mod health;
pub mod json;
pub mod json_partners;
pub mod police;
pub mod rehab;
pub mod render;
pub mod xml;

use std::borrow::Cow;

use wingspan_core::Envelope;

/// Why an adapter could not decode or encode. Adapter errors are permanent for the message:
/// the same bytes fail the same way, so the message is rejected or parked, never retried.
/// No variant repeats message content, so every one is safe to log and to return upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The bytes are not well-formed in the adapter's format (JSON syntax, XML well-formedness).
    #[error("malformed {format}: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    /// Well-formed, but refused on principle: DOCTYPE/entities, size, depth, attribute limits.
    #[error("refused: {0}")]
    Refused(String),
    /// Well-formed, but it does not map onto any canonical message this adapter knows
    /// (wrong document kind, a required element missing, a code with no canonical meaning).
    #[error("cannot map to a canonical message: {0}")]
    Unmappable(String),
    /// The adapter does not speak this message type in this direction.
    #[error("message type {0} is not supported by this adapter")]
    UnsupportedType(String),
    /// The content type is not one this adapter reads.
    #[error("content type {0} is not supported by this adapter")]
    UnsupportedContentType(String),
    /// The canonical message lacks something the partner format requires (after the field
    /// policy, a required field may be gone: that is a config error surfaced per message).
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl AdapterError {
    /// Stable machine-readable kind, used as the problem type slug and in audit reason codes.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed-document",
            Self::Refused(_) => "refused-document",
            Self::Unmappable(_) => "unmappable-document",
            Self::UnsupportedType(_) => "unsupported-message-type",
            Self::UnsupportedContentType(_) => "unsupported-media-type",
            Self::Encode(_) => "cannot-encode",
        }
    }

    pub(crate) fn unmappable(what: impl Into<String>) -> Self {
        Self::Unmappable(what.into())
    }
}

/// Partner bytes as they arrived, with what the shell knows about them.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The authenticated source id; the decoded envelope's `source` is set to it.
    pub source: &'a str,
    /// The request's content type without parameters (`application/xml`), if given.
    pub content_type: Option<&'a str>,
    pub bytes: &'a [u8],
}

/// A canonical message as the gateway holds it: the envelope (after the destination's field
/// policy) and, when the policy kept everything, the exact bytes it was accepted as (an
/// adapter that forwards the canonical form sends those unchanged).
#[derive(Debug, Clone, Copy)]
pub struct Canonical<'a> {
    pub envelope: &'a Envelope,
    pub bytes: Option<&'a [u8]>,
}

/// What an adapter produced for a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded<'a> {
    pub content_type: &'static str,
    pub body: Cow<'a, [u8]>,
}

/// One partner format.
pub trait Adapter: Sync {
    /// The name config uses (`adapter = "police"`).
    fn name(&self) -> &'static str;
    /// Content types `decode` reads; the first is what `encode` writes by default.
    fn content_types(&self) -> &'static [&'static str];
    /// Message types this adapter encodes and decodes.
    fn message_types(&self) -> &'static [&'static str];
    /// Partner wire bytes → canonical envelope (not yet schema-validated: the gateway
    /// validates every decoded envelope exactly like one posted in canonical form).
    fn decode(&self, input: Inbound<'_>) -> Result<Envelope, AdapterError>;
    /// Canonical message → partner wire bytes. `content_type` picks a representation among
    /// `content_types()` (FHIR JSON or XML); `None` means the first.
    fn encode<'a>(
        &self,
        message: Canonical<'a>,
        content_type: Option<&str>,
    ) -> Result<Encoded<'a>, AdapterError>;
}

/// Every adapter the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    /// The canonical JSON itself (pass-through).
    Rehab,
    /// Hospitals of the medical alliances: HL7 FHIR R4 (JSON and XML), consultations.
    Health,
    /// Public security bureaus: the police exchange document (XML, `schemas/police/exchange-1.xsd`).
    Police,
    /// City 120 emergency dispatch centres (JSON): transfer requests and emergency consultation alerts.
    Emergency,
    /// Employment offices of human resources and social security (JSON): placement referrals.
    Hr,
    /// Aftercare supervision stations (JSON): handover records.
    Aftercare,
    /// Civil affairs offices (JSON): subsistence-allowance referrals.
    Civil,
}

impl AdapterKind {
    pub const ALL: [AdapterKind; 7] = [
        Self::Rehab,
        Self::Health,
        Self::Police,
        Self::Emergency,
        Self::Hr,
        Self::Aftercare,
        Self::Civil,
    ];
    pub const NAMES: [&'static str; 7] = [
        "rehab",
        "health",
        "police",
        "emergency",
        "hr",
        "aftercare",
        "civil",
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.adapter().name() == name)
    }

    /// What the config checker needs to know of every adapter.
    pub fn infos() -> Vec<wingspan_core::config::AdapterInfo> {
        Self::ALL
            .iter()
            .map(|k| {
                let a = k.adapter();
                wingspan_core::config::AdapterInfo {
                    name: a.name(),
                    content_types: a.content_types(),
                    message_types: a.message_types(),
                }
            })
            .collect()
    }

    pub fn adapter(self) -> &'static dyn Adapter {
        match self {
            Self::Rehab => &rehab::Rehab,
            Self::Health => &health::Health,
            Self::Police => &police::Police,
            Self::Emergency => &json_partners::EMERGENCY,
            Self::Hr => &json_partners::HR,
            Self::Aftercare => &json_partners::AFTERCARE,
            Self::Civil => &json_partners::CIVIL,
        }
    }
}

/// Strip parameters and case from a content type: `Application/XML; charset=utf-8` → `application/xml`.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Check an inbound content type against what an adapter reads.
pub fn check_content_type(
    adapter: &dyn Adapter,
    content_type: Option<&str>,
) -> Result<(), AdapterError> {
    match content_type {
        None => Ok(()),
        Some(ct) => {
            let m = media_type(ct);
            if adapter.content_types().iter().any(|c| *c == m) {
                Ok(())
            } else {
                Err(AdapterError::UnsupportedContentType(m))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_registry() {
        for (k, n) in AdapterKind::ALL.iter().zip(AdapterKind::NAMES) {
            assert_eq!(k.adapter().name(), n);
            assert_eq!(AdapterKind::from_name(n), Some(*k));
        }
        assert_eq!(AdapterKind::from_name("nope"), None);
    }
}
