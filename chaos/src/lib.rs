//! wingspan-chaos: fault injection with numbers anyone can reproduce.
//!
//! - [`node`]: private RabbitMQ nodes (restart, kill -9, SIGSTOP, alarms, clustering), from
//!   `wingspan-sim`, which the demo shares.
//! - [`relay`]: a TCP relay to cut a dependency (the PostgreSQL audit store) and restore it.
//! - [`rig`]: partner simulators, real `wingspan` processes, the upstream load, the ledger.
//! - [`scenarios`]: the scenarios, each ending with a ledger and its checks.
//! - [`soak`]: half capacity for a long time; memory, files, threads and latency sampled.

pub use wingspan_sim::node;
pub mod relay;
pub mod rig;
pub mod scenarios;
pub mod soak;

use std::path::Path;

use scenarios::{Outcome, Size};

/// Every scenario by name, in the order `all` runs them.
pub const SCENARIOS: [&str; 9] = [
    "faults",
    "confirms",
    "poison",
    "partner",
    "alarms",
    "frozen",
    "auditdown",
    "cluster",
    "instances",
];

/// The reduced set CI runs.
pub const CI: [&str; 6] = [
    "faults",
    "confirms",
    "poison",
    "partner",
    "auditdown",
    "cluster",
];

/// Run one scenario by name.
pub async fn run(name: &str, base: &Path, size: Size, seed: u64) -> anyhow::Result<Outcome> {
    match name {
        "faults" => scenarios::broker_and_gateway_faults(base, size, seed).await,
        "confirms" => scenarios::confirms_interrupted(base, size, seed).await,
        "poison" => scenarios::poison(base, size, seed).await,
        "partner" => scenarios::partner_down(base, size, seed).await,
        "alarms" => scenarios::broker_alarms(base, size, seed).await,
        "frozen" => scenarios::broker_frozen(base, size, seed).await,
        "auditdown" => scenarios::audit_store_down(base, size, seed).await,
        "cluster" => scenarios::cluster_node_kill(base, size, seed).await,
        "instances" => scenarios::instances(base, size, seed).await,
        other => anyhow::bail!("no scenario {other:?}; one of {SCENARIOS:?}"),
    }
}
