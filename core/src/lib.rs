//! wingspan-core: the pure core of the gateway. No I/O, no clock, no async.
//!
//! Map of the crate:
//! - [`adapter`]: the adapter interface (partner bytes ↔ canonical envelope) and the set a config carries.
//! - [`audit`]: audit records, the hash chain, signed checkpoints, verification.
//! - [`envelope`]: the canonical envelope every message travels in.
//! - [`json`]: the strict JSON reader for everything from outside (duplicate keys, depth, string length).
//! - [`schema`]: the JSON Schema catalogue, compiled once; payload validation with JSON pointers.
//! - [`config`]: gateway config, raw (serde, unknown keys are errors) → checked (every problem at once)
//!   → compiled (ready-to-use route table, source rules, destinations).
//! - [`policy`]: field policies (data minimisation per destination and message type).
//! - [`route`]: the route decision, a pure function of (envelope, route table) → destinations.
//! - [`admit`]: the ingress pipeline as one pure function: bytes → admitted message or typed rejection.
//! - [`subject`]: the subject access report, assembled from audit records (JSON and HTML).
//! - [`trace`]: W3C Trace Context (`traceparent`) read from upstream and written to partners.
//!
//! The shell (the `wingspan` crate) owns every socket, file, timer and broker channel.

pub mod adapter;
pub mod admit;
pub mod audit;
pub mod config;
pub mod envelope;
pub mod json;
pub mod policy;
pub mod route;
pub mod schema;
pub mod subject;
pub mod trace;
pub mod tsa;

pub use admit::{Admitted, Rejection, RejectionKind, Sender, admit, admit_as};
pub use config::{CompiledConfig, ConfigError};
pub use envelope::Envelope;
pub use route::{Decision, RouteTable};
pub use schema::SchemaCatalog;
