//! The config in force, swappable at run time (reload, rollback).
//!
//! Every reader takes a snapshot (`get`) and keeps it for the whole of one piece of work: a
//! message is admitted, routed and published under exactly one config, never half of two.
//! Components that hold per-config state (delivery workers, rate limiters) `subscribe` and
//! rebuild when the config changes.

use std::sync::Arc;

use tokio::sync::watch;
use wingspan_core::CompiledConfig;

#[derive(Debug, Clone)]
pub struct Live {
    tx: Arc<watch::Sender<Arc<CompiledConfig>>>,
}

impl Live {
    pub fn new(config: Arc<CompiledConfig>) -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(config)),
        }
    }

    /// The config in force now.
    pub fn get(&self) -> Arc<CompiledConfig> {
        self.tx.borrow().clone()
    }

    /// Notified at every swap.
    pub fn subscribe(&self) -> watch::Receiver<Arc<CompiledConfig>> {
        self.tx.subscribe()
    }

    /// Put `config` in force; returns the one it replaces.
    pub fn swap(&self, config: Arc<CompiledConfig>) -> Arc<CompiledConfig> {
        self.tx.send_replace(config)
    }
}
