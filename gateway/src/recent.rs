//! The last hour at a glance, for the console: the gateway's own counters, sampled once a
//! minute and kept for an hour, turned into per-minute figures — messages accepted,
//! delivered, refused and parked, and the accept and delivery latency (p50, p99, from the
//! latency histograms' buckets). Nothing here names a message or a person.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::stats::{Histogram, Stats};

/// Samples kept: an hour of minutes and the one before it.
const KEPT: usize = 61;
/// Between samples.
pub const EVERY: Duration = Duration::from_secs(60);

/// The counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// RFC 3339, UTC.
    pub at: String,
    pub accepted: u64,
    pub delivered: u64,
    pub refused: u64,
    pub parked: u64,
    pub accept: Histogram,
    pub delivery: Histogram,
}

impl Sample {
    pub fn of(stats: &Stats, at: String) -> Self {
        let totals = stats.totals();
        Self {
            at,
            accepted: stats.accepted_total(),
            delivered: totals.delivered,
            refused: stats.refused_total(),
            parked: totals.dead_lettered,
            accept: stats.accept_histogram(),
            delivery: stats.delivery_histogram(),
        }
    }
}

/// What happened between two samples; the time is the later one's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Minute {
    pub at: String,
    pub accepted: u64,
    pub delivered: u64,
    pub refused: u64,
    pub parked: u64,
    pub accept_p50_ms: Option<f64>,
    pub accept_p99_ms: Option<f64>,
    pub delivery_p50_ms: Option<f64>,
    pub delivery_p99_ms: Option<f64>,
}

/// Between `before` and `after`, pure.
pub fn between(before: &Sample, after: &Sample) -> Minute {
    let ms = |h: &Histogram, q: f64| h.quantile(q).map(|s| (s * 1e4).round() / 10.0);
    let accept = after.accept.since(&before.accept);
    let delivery = after.delivery.since(&before.delivery);
    Minute {
        at: after.at.clone(),
        accepted: after.accepted.saturating_sub(before.accepted),
        delivered: after.delivered.saturating_sub(before.delivered),
        refused: after.refused.saturating_sub(before.refused),
        parked: after.parked.saturating_sub(before.parked),
        accept_p50_ms: ms(&accept, 0.5),
        accept_p99_ms: ms(&accept, 0.99),
        delivery_p50_ms: ms(&delivery, 0.5),
        delivery_p99_ms: ms(&delivery, 0.99),
    }
}

/// The samples of the last hour. Clone freely.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    samples: Arc<Mutex<VecDeque<Sample>>>,
}

impl Recent {
    pub fn push(&self, sample: Sample) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back(sample);
        while s.len() > KEPT {
            s.pop_front();
        }
    }

    /// Each whole minute kept, oldest first, then the one under way until `now`.
    pub fn minutes(&self, now: Sample) -> Vec<Minute> {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Minute> = s
            .iter()
            .zip(s.iter().skip(1))
            .map(|(a, b)| between(a, b))
            .collect();
        if let Some(last) = s.back() {
            out.push(between(last, &now));
        }
        out
    }
}

/// Sample `stats` into `recent` every [`EVERY`] until `stop`; the first sample at once.
pub async fn sample(recent: Recent, stats: Stats, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => recent.push(Sample::of(&stats, crate::audit::now())),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(observations: &[f64]) -> Histogram {
        let mut h = Histogram::default();
        for &s in observations {
            h.observe(Duration::from_secs_f64(s));
        }
        h
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket_and_need_observations() {
        assert_eq!(Histogram::default().quantile(0.5), None);
        // 100 observations in the (0.005, 0.01] bucket: the median is half-way through it.
        let h = hist(&[0.008; 100]);
        let p50 = h.quantile(0.5).expect("p50");
        assert!((p50 - 0.0075).abs() < 1e-9, "{p50}");
        // 99 fast and 1 slow: p99 stays in the fast bucket, p100 reaches the slow one.
        let mut obs = vec![0.0008; 99];
        obs.push(0.4);
        let h = hist(&obs);
        assert!(h.quantile(0.99).expect("p99") <= 0.001);
        assert!(h.quantile(1.0).expect("max") > 0.25);
        // Past the last bucket: its bound.
        assert_eq!(hist(&[30.0]).quantile(0.5), Some(10.0));
    }

    #[test]
    fn a_minute_is_the_difference_of_two_samples() {
        let before = Sample {
            at: "2026-12-06T10:00:00Z".into(),
            accepted: 10,
            delivered: 8,
            refused: 1,
            parked: 0,
            accept: hist(&[0.002; 10]),
            delivery: hist(&[0.02; 8]),
        };
        let mut after = before.clone();
        after.at = "2026-12-06T10:01:00Z".into();
        after.accepted = 70;
        after.delivered = 66;
        after.refused = 3;
        after.parked = 2;
        after.accept.add(&hist(&[0.03; 60]));
        after.delivery.add(&hist(&[0.2; 58]));
        let m = between(&before, &after);
        assert_eq!(
            (m.accepted, m.delivered, m.refused, m.parked),
            (60, 58, 2, 2)
        );
        assert_eq!(m.at, "2026-12-06T10:01:00Z");
        // Only this minute's observations count: all accepts were 30 ms, not 2 ms.
        let p50 = m.accept_p50_ms.expect("p50");
        assert!((25.0..=50.0).contains(&p50), "{p50}");
        let d99 = m.delivery_p99_ms.expect("p99");
        assert!((100.0..=250.0).contains(&d99), "{d99}");
    }

    #[test]
    fn an_hour_is_kept_and_the_minute_under_way_comes_last() {
        let recent = Recent::default();
        assert!(recent.minutes(Sample::default()).is_empty());
        for i in 0..100u64 {
            recent.push(Sample {
                at: format!("t{i}"),
                accepted: i * 10,
                ..Sample::default()
            });
        }
        let now = Sample {
            at: "now".into(),
            accepted: 99 * 10 + 4,
            ..Sample::default()
        };
        let minutes = recent.minutes(now);
        assert_eq!(minutes.len(), KEPT);
        assert!(minutes[..KEPT - 1].iter().all(|m| m.accepted == 10));
        assert_eq!(
            minutes.last().map(|m| (m.at.as_str(), m.accepted)),
            Some(("now", 4))
        );
    }
}
