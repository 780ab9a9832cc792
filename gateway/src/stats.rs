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
    /// message type → destination → counts; nested so that counting allocates only the first time.
    inner: Arc<Mutex<BTreeMap<String, BTreeMap<String, Counts>>>>,
    rejected: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl Stats {
    pub fn record(&self, message_type: &str, destination: &str, event: Event) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !map
            .get(message_type)
            .is_some_and(|d| d.contains_key(destination))
        {
            map.entry(message_type.to_owned())
                .or_default()
                .insert(destination.to_owned(), Counts::default());
        }
        let Some(c) = map
            .get_mut(message_type)
            .and_then(|d| d.get_mut(destination))
        else {
            return;
        };
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

    /// Counts per (message type, destination).
    pub fn snapshot(&self) -> BTreeMap<(String, String), Counts> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .flat_map(|(t, d)| {
                d.iter()
                    .map(move |(dest, c)| ((t.clone(), dest.clone()), *c))
            })
            .collect()
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
