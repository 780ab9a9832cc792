//! The adapter interface: one partner wire format, `decode` (partner bytes → canonical
//! envelope) and `encode` (canonical envelope, already cut to the destination's field policy →
//! partner bytes). Both are pure: adapters never retry, reconnect, read a clock or ack.
//!
//! The interface lives in the core because a compiled config carries its adapters
//! ([`AdapterSet`]): the built-in ones (the `wingspan-adapters` crate) and those declared in
//! the config directory, compiled when the config loads and swapped with it on a reload.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::Envelope;

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

    pub fn unmappable(what: impl Into<String>) -> Self {
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

/// Which protected fields an adapter's partner may receive at all, whatever a field policy
/// says (see [`crate::policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clearance {
    /// No clinical field and no medical justification.
    #[default]
    Ordinary,
    /// The medical justification of outside-medical-treatment materials (the police document).
    MedicalJustification,
    /// Clinical fields: hospitals and the platform itself.
    Clinical,
}

/// One partner format.
pub trait Adapter: Send + Sync + fmt::Debug {
    /// The name config uses (`adapter = "police"`).
    fn name(&self) -> &str;
    /// Content types `decode` reads; the first is what `encode` writes by default.
    fn content_types(&self) -> &[&'static str];
    /// Message types this adapter encodes and decodes.
    fn message_types(&self) -> Vec<&str>;
    /// What protected fields the partner may receive.
    fn clearance(&self) -> Clearance {
        Clearance::Ordinary
    }
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

/// Every adapter a config can name, by name.
#[derive(Clone, Default)]
pub struct AdapterSet {
    by_name: BTreeMap<String, Arc<dyn Adapter>>,
}

impl fmt::Debug for AdapterSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl AdapterSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an adapter under its own name; `false` (and nothing changed) when the name is taken.
    pub fn insert(&mut self, adapter: Arc<dyn Adapter>) -> bool {
        let name = adapter.name().to_owned();
        if self.by_name.contains_key(&name) {
            return false;
        }
        self.by_name.insert(name, adapter);
        true
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Adapter>> {
        self.by_name.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Adapter>> {
        self.by_name.values()
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
