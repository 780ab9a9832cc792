//! In-process counters and latency histograms: the demo's summary table and the Prometheus
//! `GET /metrics` of the admin listener ([`render_prometheus`]). Labels are bounded:
//! configured sources, types and destinations, and the fixed problem slugs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of every latency histogram's buckets.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A Prometheus-style histogram: cumulative counts per bucket, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations ≤ each bound of [`BUCKETS`] (not cumulative here; summed when rendered).
    buckets: [u64; BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }

    /// What was observed since `earlier` (an earlier copy of this histogram).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut d = Histogram::default();
        for (i, b) in d.buckets.iter_mut().enumerate() {
            *b = self.buckets[i].saturating_sub(earlier.buckets[i]);
        }
        d.sum = (self.sum - earlier.sum).max(0.0);
        d.count = self.count.saturating_sub(earlier.count);
        d
    }

    /// Another histogram's observations added to this one's.
    pub fn add(&mut self, other: &Histogram) {
        for (b, o) in self.buckets.iter_mut().zip(other.buckets) {
            *b += o;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The `q`-quantile (0..=1) in seconds, interpolated within its bucket as Prometheus's
    /// `histogram_quantile` does; `None` without observations. Observations past the last
    /// bucket read as its bound (a floor).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let (mut below, mut lower) = (0u64, 0.0);
        for (bound, n) in BUCKETS.iter().zip(self.buckets) {
            if n > 0 && (below + n) as f64 >= rank {
                let into = (rank - below as f64).max(0.0) / n as f64;
                return Some(lower + (bound - lower) * into);
            }
            below += n;
            lower = *bound;
        }
        Some(lower)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The last delivery error of a destination and when it happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LastError {
    pub error: String,
    pub at: String,
}

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
    /// source → message type → messages accepted (nested: counting allocates only the first
    /// time a pair is seen).
    accepted: Arc<Mutex<BTreeMap<String, BTreeMap<String, u64>>>>,
    /// From the upstream's request to its acceptance (every copy confirmed, receipt durable).
    accept_latency: Arc<Mutex<Histogram>>,
    /// Destination → from acceptance to the partner's confirmation.
    delivery_latency: Arc<Mutex<BTreeMap<String, Histogram>>>,
    /// From acceptance to a delivery worker receiving a first copy: its time in the broker
    /// (queue and transfer), which with `delivery_latency` tells the broker's share of a slow
    /// delivery from the gateway's and the partner's.
    queued_latency: Arc<Mutex<Histogram>>,
    last_error: Arc<Mutex<BTreeMap<String, LastError>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

    /// One message accepted from `source`, `elapsed` after its intake began.
    pub fn accepted(&self, source: &str, message_type: &str, elapsed: Duration) {
        let mut accepted = lock(&self.accepted);
        match accepted
            .get_mut(source)
            .and_then(|t| t.get_mut(message_type))
        {
            Some(n) => *n += 1,
            None => {
                accepted
                    .entry(source.to_owned())
                    .or_default()
                    .insert(message_type.to_owned(), 1);
            }
        }
        lock(&self.accept_latency).observe(elapsed);
    }

    /// A first copy in a delivery worker's hands, `elapsed` after the message was accepted.
    pub fn consumed_after(&self, elapsed: Duration) {
        lock(&self.queued_latency).observe(elapsed);
    }

    /// One copy delivered to `destination`, `elapsed` after the message was accepted.
    pub fn delivered_after(&self, destination: &str, elapsed: Duration) {
        let mut map = lock(&self.delivery_latency);
        if let Some(h) = map.get_mut(destination) {
            h.observe(elapsed);
        } else {
            let mut h = Histogram::default();
            h.observe(elapsed);
            map.insert(destination.to_owned(), h);
        }
    }

    /// A delivery to `destination` failed (retried or parked); `error` names no payload value.
    pub fn destination_error(&self, destination: &str, error: &str, at: String) {
        lock(&self.last_error).insert(
            destination.to_owned(),
            LastError {
                error: error.to_owned(),
                at,
            },
        );
    }

    pub fn last_error(&self, destination: &str) -> Option<LastError> {
        lock(&self.last_error).get(destination).cloned()
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

    /// Messages accepted, from every source.
    pub fn accepted_total(&self) -> u64 {
        lock(&self.accepted).values().flat_map(|t| t.values()).sum()
    }

    /// Messages refused, for every reason.
    pub fn refused_total(&self) -> u64 {
        lock(&self.rejected).values().sum()
    }

    /// From request to acceptance, every message so far.
    pub fn accept_histogram(&self) -> Histogram {
        lock(&self.accept_latency).clone()
    }

    /// From acceptance to the partner's confirmation, every destination together.
    pub fn delivery_histogram(&self) -> Histogram {
        let mut all = Histogram::default();
        for h in lock(&self.delivery_latency).values() {
            all.add(h);
        }
        all
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

/// One queue's depth and consumers, as the broker reported them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    pub queue: String,
    pub messages: u32,
    pub consumers: u32,
}

/// The Prometheus text exposition of everything counted, the queue depths and the store's
/// commit lag.
/// The state store writer's timings.
#[derive(Debug, Clone, Default)]
pub struct StoreTimes {
    /// From a batch's first command to its commit.
    pub commit_lag: Histogram,
    /// Each time the writer stopped between batches to have the write-ahead log restarted.
    pub wal_restart: Histogram,
    /// Each copy of the write-ahead log into the database, with its sync (checkpoint thread;
    /// the writer does not wait for it, but its writes share the disk with the broker's).
    pub checkpoint: Histogram,
    /// Rows pruned past their retention windows: receipts, delivery states, parked states,
    /// archived audit records.
    pub pruned: [u64; 4],
}

/// A histogram without labels, with its HELP and TYPE lines.
fn unlabelled_histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    h.render(out, name, "");
}

pub fn render_prometheus(stats: &Stats, queues: &[QueueDepth], store: &StoreTimes) -> String {
    let mut out = String::new();
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let _ = writeln!(
        out,
        "# HELP wingspan_messages_accepted_total Messages accepted (copies confirmed, receipt durable)."
    );
    let _ = writeln!(out, "# TYPE wingspan_messages_accepted_total counter");
    let accepted = lock(&stats.accepted);
    for (source, t, n) in accepted
        .iter()
        .flat_map(|(s, types)| types.iter().map(move |(t, n)| (s, t, n)))
    {
        let _ = writeln!(
            out,
            "wingspan_messages_accepted_total{{source=\"{}\",type=\"{}\"}} {n}",
            esc(source),
            esc(t)
        );
    }
    let _ = writeln!(
        out,
        "# HELP wingspan_messages_rejected_total Messages and requests refused, by problem type."
    );
    let _ = writeln!(out, "# TYPE wingspan_messages_rejected_total counter");
    for (reason, n) in stats.rejections() {
        let _ = writeln!(
            out,
            "wingspan_messages_rejected_total{{reason=\"{reason}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP wingspan_copies_total Destination copies by outcome: routed, delivered, retried, parked."
    );
    let _ = writeln!(out, "# TYPE wingspan_copies_total counter");
    let _ = writeln!(
        out,
        "# HELP wingspan_replies_correlated_total Replies matched to a request this gateway carried."
    );
    let _ = writeln!(out, "# TYPE wingspan_replies_correlated_total counter");
    for ((t, d), c) in stats.snapshot() {
        let labels = format!("type=\"{}\",destination=\"{}\"", esc(&t), esc(&d));
        for (outcome, n) in [
            ("routed", c.routed),
            ("delivered", c.delivered),
            ("retried", c.retried),
            ("parked", c.dead_lettered),
        ] {
            let _ = writeln!(
                out,
                "wingspan_copies_total{{{labels},outcome=\"{outcome}\"}} {n}"
            );
        }
        if c.replies_correlated > 0 {
            let _ = writeln!(
                out,
                "wingspan_replies_correlated_total{{{labels}}} {}",
                c.replies_correlated
            );
        }
    }
    unlabelled_histogram(
        &mut out,
        "wingspan_accept_seconds",
        "From intake to acceptance (copies confirmed, receipt and audit durable).",
        &lock(&stats.accept_latency),
    );
    let _ = writeln!(
        out,
        "# HELP wingspan_delivery_seconds From acceptance to the partner's confirmation, per destination."
    );
    let _ = writeln!(out, "# TYPE wingspan_delivery_seconds histogram");
    for (d, h) in lock(&stats.delivery_latency).iter() {
        h.render(
            &mut out,
            "wingspan_delivery_seconds",
            &format!("destination=\"{}\"", esc(d)),
        );
    }
    unlabelled_histogram(
        &mut out,
        "wingspan_delivery_queued_seconds",
        "From acceptance to a delivery worker receiving the message's first copy (time in the broker).",
        &lock(&stats.queued_latency),
    );
    unlabelled_histogram(
        &mut out,
        "wingspan_audit_write_lag_seconds",
        "From a state/audit command's arrival at the store to its commit.",
        &store.commit_lag,
    );
    unlabelled_histogram(
        &mut out,
        "wingspan_store_wal_restart_seconds",
        "Pauses of the state store writer, between batches, to have its write-ahead log restarted.",
        &store.wal_restart,
    );
    unlabelled_histogram(
        &mut out,
        "wingspan_store_checkpoint_seconds",
        "Copies of the state store's write-ahead log into its database, each with its sync (off the writer's path).",
        &store.checkpoint,
    );
    let _ = writeln!(
        out,
        "# HELP wingspan_store_pruned_total Rows pruned from the state store past their retention window."
    );
    let _ = writeln!(out, "# TYPE wingspan_store_pruned_total counter");
    for (kind, n) in ["receipts", "deliveries", "parked"]
        .iter()
        .zip(store.pruned)
    {
        let _ = writeln!(out, "wingspan_store_pruned_total{{kind=\"{kind}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP wingspan_queue_messages Messages ready in a gateway queue (destination, retry, parked, ingress)."
    );
    let _ = writeln!(out, "# TYPE wingspan_queue_messages gauge");
    let _ = writeln!(
        out,
        "# HELP wingspan_queue_consumers Consumers of a gateway queue."
    );
    let _ = writeln!(out, "# TYPE wingspan_queue_consumers gauge");
    for q in queues {
        let _ = writeln!(
            out,
            "wingspan_queue_messages{{queue=\"{}\"}} {}",
            esc(&q.queue),
            q.messages
        );
        let _ = writeln!(
            out,
            "wingspan_queue_consumers{{queue=\"{}\"}} {}",
            esc(&q.queue),
            q.consumers
        );
    }
    out
}
