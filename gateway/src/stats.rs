//! In-process counters per (message type, destination): the demo's summary table and, later,
//! the metrics endpoint. Labels are bounded: configured types and destinations only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Copies published to this destination.
    pub routed: u64,
    pub delivered: u64,
    /// Retries scheduled.
    pub retried: u64,
    pub dead_lettered: u64,
    /// Replies of this type whose correlation id names a message the gateway accepted.
    pub replies_correlated: u64,
}

#[derive(Debug, Clone, Copy)]
pub enum Event {
    Routed,
    Delivered,
    Retried,
    DeadLettered,
    ReplyCorrelated,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    inner: Arc<Mutex<BTreeMap<(String, String), Counts>>>,
    rejected: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl Stats {
    pub fn record(&self, message_type: &str, destination: &str, event: Event) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let c = map
            .entry((message_type.to_owned(), destination.to_owned()))
            .or_default();
        match event {
            Event::Routed => c.routed += 1,
            Event::Delivered => c.delivered += 1,
            Event::Retried => c.retried += 1,
            Event::DeadLettered => c.dead_lettered += 1,
            Event::ReplyCorrelated => c.replies_correlated += 1,
        }
    }

    pub fn rejected(&self, kind: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<(String, String), Counts> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn rejections(&self) -> BTreeMap<&'static str, u64> {
        self.rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sum over all rows.
    pub fn totals(&self) -> Counts {
        self.snapshot()
            .values()
            .fold(Counts::default(), |mut t, c| {
                t.routed += c.routed;
                t.delivered += c.delivered;
                t.retried += c.retried;
                t.dead_lettered += c.dead_lettered;
                t.replies_correlated += c.replies_correlated;
                t
            })
    }
}
