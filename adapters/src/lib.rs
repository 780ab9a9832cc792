//! Partner adapters: one module per partner wire format behind one small trait.
//! `decode` turns partner bytes into a canonical envelope, `encode` turns a canonical envelope
//! (already cut down to the destination's field policy) into what the destination receives.
//! Both are pure: adapters never retry, reconnect, read a clock or ack.
//!
//! Every adapter decodes what it encodes (so a simulator can read what it was sent, and a
//! round trip canonical → wire → canonical can be checked), for every message type it lists.
//!
//! The built-in adapters are [`AdapterKind`], a closed enum with an exhaustive `match`;
//! [`declared`] adapters are read from a config directory (a codec and two mapping programs)
//! and join them in the [`AdapterSet`] a compiled config carries. The interface itself is in
//! `wingspan_core::adapter`, re-exported here.

pub mod declared;
pub mod health;
pub mod hl7v2;
pub mod json;
pub mod json_partners;
pub mod police;
pub mod rehab;
pub mod render;
pub mod xml;

use std::sync::Arc;

pub use wingspan_core::adapter::{
    Adapter, AdapterError, AdapterSet, Canonical, Clearance, Encoded, Inbound, check_content_type,
    media_type,
};

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

/// The built-in adapters as a set a config can extend with declared ones.
pub fn builtins() -> AdapterSet {
    let mut set = AdapterSet::new();
    for kind in AdapterKind::ALL {
        set.insert(Arc::new(kind));
    }
    set
}

/// A built-in adapter is its kind: the set holds it by value.
impl Adapter for AdapterKind {
    fn name(&self) -> &str {
        self.adapter().name()
    }
    fn content_types(&self) -> &[&'static str] {
        self.adapter().content_types()
    }
    fn message_types(&self) -> Vec<&str> {
        self.adapter().message_types()
    }
    fn clearance(&self) -> Clearance {
        self.adapter().clearance()
    }
    fn decode(&self, input: Inbound<'_>) -> Result<wingspan_core::Envelope, AdapterError> {
        self.adapter().decode(input)
    }
    fn encode<'a>(
        &self,
        message: Canonical<'a>,
        content_type: Option<&str>,
    ) -> Result<Encoded<'a>, AdapterError> {
        self.adapter().encode(message, content_type)
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
