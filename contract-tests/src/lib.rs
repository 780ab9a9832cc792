//! Partner simulators for wingspan, and realistic sample messages.
//!
//! - [`samples`]: canonical requests of every family, and the reply each partner sends.
//! - [`partner`]: an HTTP server standing in for one partner system. It records what it
//!   receives, treats a repeated `Idempotency-Key` as already done (as partners are asked to),
//!   can be told to fail, delay or reject, can be stopped and restarted on the same port, and
//!   sends its replies back through the gateway's ingress.
//! - [`node`]: a private RabbitMQ node (own name, ports and data directory), for the demo on
//!   a machine where no broker runs and for the fault-injection suite.

pub mod generate;
pub mod golden;
pub mod node;
pub mod partner;
pub mod samples;

pub use partner::{Behaviour, Partner, PartnerOptions};

/// The bearer token a source presents to the example config's gateway
/// (`config/wingspan.toml` holds its SHA-256). For local development and tests only: a real
/// deployment issues its own tokens, or client certificates.
pub fn dev_token(source: &str) -> String {
    format!("dev-{source}-token")
}

/// One partner of the example config (`config/wingspan.toml`).
#[derive(Debug, Clone, Copy)]
pub struct ExamplePartner {
    /// The destination or partner name.
    pub name: &'static str,
    /// The port its URL names in the example config.
    pub port: u16,
    /// The source id it replies as (`None`: it does not reply).
    pub reply_as: Option<&'static str>,
    /// Its wire format (adapter name).
    pub adapter: &'static str,
}

const fn partner(
    name: &'static str,
    port: u16,
    reply_as: Option<&'static str>,
    adapter: &'static str,
) -> ExamplePartner {
    ExamplePartner {
        name,
        port,
        reply_as,
        adapter,
    }
}

/// The partners of the example config.
pub const EXAMPLE_PARTNERS: [ExamplePartner; 9] = [
    partner("rehab", 18080, None, "rehab"),
    partner("police", 18081, Some("police"), "police"),
    partner("hospital-ma01", 18082, Some("health"), "health"),
    partner("emergency", 18083, Some("emergency"), "emergency"),
    partner("hr", 18084, Some("hr"), "hr"),
    partner("aftercare", 18085, Some("aftercare"), "aftercare"),
    partner("civil", 18086, Some("civil"), "civil"),
    partner("hospital-ma02", 18087, Some("health"), "health"),
    // Declared in configuration, not in code: the simulator reads and writes HL7 v2 with the
    // example config's own adapter definition.
    partner("hospital-ma03", 18088, Some("hospital-ma03"), HL7V2_ADAPTER),
];

/// The example config's declared HL7 v2 adapter, as a simulator names it (its directory).
pub const HL7V2_ADAPTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/adapters/hl7v2");
