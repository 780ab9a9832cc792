//! Partner simulators for wingspan, and realistic sample messages.
//!
//! - [`samples`]: canonical requests of every family, and the reply each partner sends.
//! - [`partner`]: an HTTP server standing in for one partner system. It records what it
//!   receives, treats a repeated `Idempotency-Key` as already done (as partners are asked to),
//!   can be told to fail, delay or reject, can be stopped and restarted on the same port, and
//!   sends its replies back through the gateway's ingress.

pub mod partner;
pub mod samples;

pub use partner::{Behaviour, Partner, PartnerOptions};
