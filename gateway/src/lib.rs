//! wingspan: the message gateway's shell. Everything here does I/O; every decision it acts on
//! comes from the pure core (`wingspan-core`) and the adapters (`wingspan-adapters`).
//!
//! Map of the crate:
//! - [`audit`]: the audit trail's keys, entries and compliance commands (records are written
//!   by [`store`], hashed and verified by the core).
//! - [`load`]: read the config file and the schema directory, compile them.
//! - [`broker`]: the connection supervisor, topology, confirmed publishing.
//! - [`intake`]: admit → deduplicate → publish one confirmed copy per destination → receipt.
//! - [`ingress`]: HTTPS (mutual TLS), HTTP, AMQP and admin front doors; authentication and
//!   rate limits; all feeding [`intake`].
//! - [`delivery`]: one worker per destination: encode, deliver, retry, park.
//! - [`store`]: receipts and delivery status in SQLite (WAL, group commit).
//! - [`stats`]: in-process counters and latency histograms (summary table, metrics).
//! - [`recent`]: the last hour of those counters per minute, for the console's charts.
//! - [`tools`]: `wingspan decode` / `wingspan encode`: an adapter by hand, no broker.
//! - [`preview`]: `wingspan explain` / `wingspan test`: route decisions explained, route test
//!   cases run, before a config goes live.
//! - [`live`]: the config in force, swapped by [`reload`] (SIGHUP, `POST /admin/reload`,
//!   rollback) after the same checks as `wingspan check`.
//! - [`dlq`]: operator actions on parked copies (show, replay, discard), audited.
//! - [`console`]: the console for compliance officers and operators, on the admin listener.
//! - [`gateway`]: starts and stops all of the above.
//! - [`demo`]: the self-contained demonstration with partner simulators.
//! - [`usage`]: a process's CPU time and bytes written, from /proc, for the benchmarks.

pub mod audit;
pub mod broker;
pub mod console;
pub mod delivery;
pub mod demo;
pub mod dlq;
pub mod gateway;
pub mod ingress;
pub mod intake;
pub mod live;
pub mod load;
pub mod preview;
pub mod problem;
pub mod recent;
pub mod reload;
pub mod seal;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod usage;

pub use gateway::{Gateway, GatewayOptions};
