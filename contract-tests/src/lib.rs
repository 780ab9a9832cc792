//! Partner simulators for wingspan, and realistic sample messages.
//!
//! - [`samples`]: canonical requests of every family, and the reply each partner sends.
//! - [`partner`]: an HTTP server standing in for one partner system. It records what it
//!   receives, treats a repeated `Idempotency-Key` as already done (as partners are asked to),
//!   can be told to fail, delay or reject, can be stopped and restarted on the same port, and
//!   sends its replies back through the gateway's ingress.

pub mod golden;
pub mod partner;
pub mod samples;

pub use partner::{Behaviour, Partner, PartnerOptions};

/// The partners of the example config (`config/wingspan.toml`): the destination or partner
/// name, the port its URL names, and the source id it replies as (`None`: it does not reply).
pub const EXAMPLE_PARTNERS: [(&str, u16, Option<&str>); 8] = [
    ("rehab", 18080, None),
    ("police", 18081, Some("police")),
    ("hospital-ma01", 18082, Some("health")),
    ("emergency", 18083, Some("emergency")),
    ("hr", 18084, Some("hr")),
    ("aftercare", 18085, Some("aftercare")),
    ("civil", 18086, Some("civil")),
    ("hospital-ma02", 18087, Some("health")),
];
