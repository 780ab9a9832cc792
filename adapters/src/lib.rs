//! Partner adapters: one module per partner wire format behind one small trait.
//! `decode` turns partner bytes into a canonical envelope, `encode` turns a canonical envelope
//! into what a destination receives. Both are pure: adapters never retry, reconnect or ack.
//!
//! The registry is [`AdapterKind`]: a closed enum with an exhaustive `match`.

pub mod rehab;

use wingspan_core::Envelope;

/// Why an adapter could not decode or encode. Adapter errors are permanent for the message:
/// the same bytes will fail the same way, so the message is rejected or parked, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// A canonical message as the gateway holds it: the parsed envelope, and the exact bytes it
/// was accepted as (an adapter that forwards the canonical form sends those, unchanged).
#[derive(Debug, Clone, Copy)]
pub struct Canonical<'a> {
    pub envelope: &'a Envelope,
    pub bytes: &'a [u8],
}

/// What an adapter produced for a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded<'a> {
    pub content_type: &'static str,
    pub body: std::borrow::Cow<'a, [u8]>,
}

/// One partner format.
pub trait Adapter {
    /// Partner wire bytes → canonical envelope.
    fn decode(&self, bytes: &[u8]) -> Result<Envelope, AdapterError>;
    /// Canonical message → partner wire bytes.
    fn encode<'a>(&self, message: Canonical<'a>) -> Result<Encoded<'a>, AdapterError>;
}

/// Every adapter the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    /// The canonical JSON itself (pass-through).
    Rehab,
}

impl AdapterKind {
    pub const NAMES: [&'static str; 1] = ["rehab"];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "rehab" => Some(Self::Rehab),
            _ => None,
        }
    }

    pub fn adapter(self) -> &'static dyn Adapter {
        match self {
            Self::Rehab => &rehab::Rehab,
        }
    }
}
