//! The scenarios. Each is bounded in count and time, uses only 127.0.0.1, runs on a private
//! broker node (or cluster) of its own, and ends with a ledger and its checks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wingspan_sim::Behaviour;

use crate::node::Node;
use crate::relay::{Relay, pg_drop, pg_schema};
use crate::rig::{Ledger, Plan, Rig, RigOptions, Upstream, send, settle};

/// Full size (the documented runs) or reduced (CI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Full,
    Reduced,
}

impl Size {
    fn pick<T>(self, full: T, reduced: T) -> T {
        match self {
            Self::Full => full,
            Self::Reduced => reduced,
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    pub ledger: Ledger,
    /// (what, passed).
    pub checks: Vec<(String, bool)>,
    pub figures: Vec<String>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|(_, ok)| *ok)
    }

    pub fn check(&mut self, what: impl Into<String>, ok: bool) {
        self.checks.push((what.into(), ok));
    }

    /// lost 0, duplicated downstream 0, parked as expected, the audit chain verifies.
    pub fn standard(&mut self, parked_expected: usize) {
        let l = self.ledger.clone();
        self.check(format!("lost {} = 0", l.lost), l.lost == 0);
        self.check(
            format!("duplicated downstream {} = 0", l.duplicated_downstream),
            l.duplicated_downstream == 0,
        );
        self.check(
            format!("parked {} = {parked_expected}", l.parked),
            l.parked == parked_expected,
        );
        self.check("audit chain verifies", l.audit_verified);
        if !l.lost_ids.is_empty() {
            let some: Vec<&String> = l.lost_ids.iter().take(5).collect();
            self.figures.push(format!("lost ids (first 5): {some:?}"));
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "── {} ({:.1} s): {}",
            self.name,
            self.elapsed.as_secs_f64(),
            if self.passed() { "PASSED" } else { "FAILED" }
        )?;
        writeln!(f, "   ledger: {}", self.ledger)?;
        for fig in &self.figures {
            writeln!(f, "   {fig}")?;
        }
        for (what, ok) in &self.checks {
            writeln!(f, "   [{}] {what}", if *ok { "ok" } else { "FAIL" })?;
        }
        Ok(())
    }
}

/// A small deterministic generator for the schedule (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = usize::try_from(self.next_u64() % (i as u64 + 1)).unwrap_or(0);
            v.swap(i, j);
        }
    }
}

/// Where a run keeps its nodes, configs, state and logs.
fn run_dir(base: &Path, name: &str, seed: u64) -> PathBuf {
    base.join(format!("{name}-{seed}"))
}

/// A private broker node for scenario `name`, under the run directory.
async fn private_node(base: &Path, name: &str, seed: u64) -> anyhow::Result<(PathBuf, Arc<Node>)> {
    let dir = run_dir(base, name, seed);
    let tag = format!("{name}{seed}");
    let node_dir = dir.join("node");
    let node = blocking(move || Node::start(&node_dir, &tag)).await?;
    Ok((dir, Arc::new(node)))
}

/// The upstream load against every gateway of the rig, in the background.
fn start_load(
    rig: &Rig,
    plan: Plan,
    concurrency: usize,
    upstream: &Arc<Upstream>,
) -> tokio::task::JoinHandle<()> {
    let bases = rig.gateways.iter().map(|g| g.base()).collect();
    tokio::spawn(send(
        rig.http.clone(),
        bases,
        plan,
        concurrency,
        upstream.clone(),
    ))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// Wait until the upstream has `n` receipts or the load is over.
async fn until_accepted(upstream: &Upstream, n: usize, load: &tokio::task::JoinHandle<()>) {
    while upstream.accepted_count() < n && !load.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long after `t` the gateway took to issue a receipt again (up to 60 s).
async fn resumed_after(
    upstream: &Upstream,
    t: Instant,
    load: &tokio::task::JoinHandle<()>,
) -> Option<Duration> {
    let deadline = t + Duration::from_secs(60);
    loop {
        if let Some(a) = upstream.first_accept_after(t) {
            return Some(a - t);
        }
        if Instant::now() > deadline || load.is_finished() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    BrokerRestart,
    BrokerKill,
    CloseConnections,
    GatewayKill,
}

/// 1. Messages while the broker is restarted, killed and has its connections closed, and the
///    gateway is SIGKILLed.
pub async fn broker_and_gateway_faults(
    base: &Path,
    size: Size,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (dir, node) = private_node(base, "faults", seed).await?;
    let mut rig = Rig::start(&dir.join("rig"), &RigOptions::new(node.url())).await?;
    let n = size.pick(200_000, 3_000);
    let mut faults = Vec::new();
    for (fault, count) in [
        (Fault::BrokerRestart, size.pick(3, 1)),
        (Fault::BrokerKill, size.pick(2, 1)),
        (Fault::CloseConnections, size.pick(5, 2)),
        (Fault::GatewayKill, size.pick(10, 2)),
    ] {
        faults.extend(std::iter::repeat_n(fault, count));
    }
    let mut rng = Rng::new(seed);
    rng.shuffle(&mut faults);
    let upstream = Arc::new(Upstream::default());
    let plan = Plan {
        seed,
        n,
        transfer_every: 5,
        poison_every: None,
    };
    let load = start_load(&rig, plan, 32, &upstream);
    let mut resumes = Vec::new();
    let mut gateway_restarts = Vec::new();
    let mut unresumed = 0;
    for (k, fault) in faults.iter().enumerate() {
        until_accepted(&upstream, n * (k + 1) / (faults.len() + 1), &load).await;
        let answered = match fault {
            Fault::BrokerRestart => {
                let node = node.clone();
                blocking(move || node.restart()).await?;
                Some(Instant::now())
            }
            Fault::BrokerKill => {
                let node = node.clone();
                blocking(move || {
                    node.kill9()?;
                    std::thread::sleep(Duration::from_secs(1));
                    node.boot()
                })
                .await?;
                Some(Instant::now())
            }
            Fault::CloseConnections => {
                let node = node.clone();
                blocking(move || node.close_all_connections()).await?;
                Some(Instant::now())
            }
            Fault::GatewayKill => {
                let i = usize::try_from(rng.next_u64()).unwrap_or(0) % rig.gateways.len();
                gateway_restarts.push(rig.crash_and_restart(i).await?);
                None
            }
        };
        if let Some(t) = answered {
            match resumed_after(&upstream, t, &load).await {
                Some(d) => resumes.push((*fault, d)),
                None if load.is_finished() => {}
                None => unresumed += 1,
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(size.pick(3600, 300)), load).await;
    let ledger = settle(&mut rig, &upstream, Duration::from_secs(180)).await?;
    let mut out = Outcome {
        name: "1 broker restarted/killed/connections closed, gateway SIGKILLed",
        ledger,
        checks: Vec::new(),
        figures: Vec::new(),
        elapsed: started.elapsed(),
    };
    out.standard(0);
    let worst = resumes.iter().map(|(_, d)| *d).max().unwrap_or_default();
    out.figures.push(format!(
        "faults {} ({:?}); receipts again after the broker answered: worst {:.2} s, each {:?}",
        faults.len(),
        faults,
        worst.as_secs_f64(),
        resumes
            .iter()
            .map(|(f, d)| format!("{f:?} {:.2}s", d.as_secs_f64()))
            .collect::<Vec<_>>()
    ));
    out.figures.push(format!(
        "gateway restarts to ready: {:?}; upstream attempts {} for {} messages",
        gateway_restarts
            .iter()
            .map(|d| format!("{:.2}s", d.as_secs_f64()))
            .collect::<Vec<_>>(),
        upstream.attempts.load(std::sync::atomic::Ordering::Relaxed),
        n
    ));
    out.check(
        format!(
            "resumed within 5 s of the broker answering (worst {:.2} s)",
            worst.as_secs_f64()
        ),
        worst <= Duration::from_secs(5) && unresumed == 0,
    );
    out.check(
        format!("all {n} messages accepted"),
        out.ledger.accepted == n,
    );
    Ok(out)
}

/// 2. Connections closed between publish and confirm, many times.
pub async fn confirms_interrupted(base: &Path, size: Size, seed: u64) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (dir, node) = private_node(base, "confirms", seed).await?;
    let mut rig = Rig::start(&dir.join("rig"), &RigOptions::new(node.url())).await?;
    // Time-bounded: the load runs until the closes are done.
    let n = 10_000_000;
    let upstream = Arc::new(Upstream::default());
    let plan = Plan {
        seed,
        n,
        transfer_every: 3,
        poison_every: None,
    };
    let load = start_load(&rig, plan, 32, &upstream);
    let mut closes = 0;
    let limit = size.pick(100, 6);
    let mut rng = Rng::new(seed);
    while !load.is_finished() && closes < limit {
        // Publishes are in flight all the time under this load: cut every connection under
        // them every 100–300 ms.
        let pause = 100 + rng.next_u64() % 200;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let node = node.clone();
        blocking(move || node.close_all_connections()).await?;
        closes += 1;
    }
    // A last stretch after the last close, then stop taking new messages.
    tokio::time::sleep(Duration::from_secs(2)).await;
    upstream
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(300), load).await;
    let sent = upstream.sent.load(std::sync::atomic::Ordering::Relaxed);
    let ledger = settle(&mut rig, &upstream, Duration::from_secs(120)).await?;
    let refused = upstream
        .refusals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    let mut out = Outcome {
        name: "2 connections closed between publish and confirm",
        ledger,
        checks: Vec::new(),
        figures: vec![format!(
            "{closes} connection closes; upstream told to retry {refused} times (503 / refused), every retry absorbed by the receipt check or the partner's Idempotency-Key"
        )],
        elapsed: started.elapsed(),
    };
    out.standard(0);
    out.check(
        format!("{closes} of {limit} closes under load"),
        closes == limit,
    );
    out.check(
        format!(
            "every message sent got a receipt ({} of {sent})",
            out.ledger.accepted
        ),
        out.ledger.accepted == sent,
    );
    Ok(out)
}

/// Time until every non-poison message of `upstream` is delivered (or `within` passes).
async fn until_good_delivered(rig: &Rig, upstream: &Upstream, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let delivered: std::collections::HashSet<String> = rig
            .police
            .accepted_keys()
            .into_iter()
            .chain(rig.emergency.accepted_keys())
            .collect();
        let pending = upstream
            .accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|id| !id.starts_with("poison-") && !delivered.contains(*id))
            .count();
        if pending == 0 || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 3. Poison messages among good ones: every poison parked with its reason, no good one
///    parked, good throughput ≥ 0.8 of a clean run.
///
/// The throughput ratio is taken between the medians of interleaved clean and poisoned
/// rounds (one round of each at full size; three of each, 4,000 good messages a round, when
/// reduced): one reduced pair on two shared cores can differ by a quarter with no poison at all.
pub async fn poison(base: &Path, size: Size, seed: u64) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (dir, node) = private_node(base, "poison", seed).await?;
    let good = size.pick(100_000, 4_000);
    let rounds = size.pick(1, 3);
    let (mut clean_rates, mut poison_rates) = (Vec::new(), Vec::new());
    let mut ledger: Option<Ledger> = None;
    let (mut poison_total, mut poison_parked, mut good_parked, mut without_reason) = (0, 0, 0, 0);
    for round in 0..rounds {
        clean_rates
            .push(clean_round(&dir.join(format!("clean-{round}")), &node, seed, good).await?);
        let r = poison_round(&dir.join(format!("poisoned-{round}")), &node, seed, good).await?;
        poison_rates.push(r.rate);
        poison_total += r.poison_total;
        poison_parked += r.poison_parked;
        good_parked += r.good_parked;
        without_reason += r.without_reason;
        ledger = Some(match ledger {
            None => r.ledger,
            Some(l) => l.plus(r.ledger),
        });
    }
    let (clean_rate, poison_rate) = (
        crate::soak::median(clean_rates.clone()),
        crate::soak::median(poison_rates.clone()),
    );
    let ratio = poison_rate / clean_rate;
    let rates = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Outcome {
        name: "3 poison messages among good ones",
        ledger: ledger.expect("at least one round"),
        checks: Vec::new(),
        figures: vec![format!(
            "good throughput (median of {rounds}): clean {clean_rate:.0} msg/s ({}), with poison {poison_rate:.0} msg/s ({}) → {ratio:.2}",
            rates(&clean_rates),
            rates(&poison_rates),
        )],
        elapsed: started.elapsed(),
    };
    out.standard(poison_total);
    out.check(
        format!(
            "all {poison_total} poison parked ({poison_parked}), each with a reason ({without_reason} without)"
        ),
        poison_parked == poison_total && without_reason == 0,
    );
    out.check(
        format!("no good message parked ({good_parked})"),
        good_parked == 0,
    );
    out.check(
        format!("good throughput {ratio:.2} ≥ 0.8 of a clean run"),
        ratio >= 0.8,
    );
    Ok(out)
}

/// The good messages alone, on a rig of their own: their rate to the partner.
async fn clean_round(dir: &Path, node: &Node, seed: u64, good: usize) -> anyhow::Result<f64> {
    let mut rig = Rig::start(dir, &RigOptions::new(node.url())).await?;
    let (rate, _) = good_rate(&rig, seed, good, None).await;
    rig.stop();
    Ok(rate)
}

/// Send `good` messages (and, with `poison_every`, one poison after every `poison_every - 1`)
/// and wait until every good one has reached its partner: the good messages' rate.
async fn good_rate(
    rig: &Rig,
    seed: u64,
    good: usize,
    poison_every: Option<usize>,
) -> (f64, Arc<Upstream>) {
    let total = good + poison_every.map_or(0, |_| good / 100);
    let upstream = Arc::new(Upstream::default());
    let t = Instant::now();
    let plan = Plan {
        seed,
        n: total,
        transfer_every: 0,
        poison_every,
    };
    let bases = rig.gateways.iter().map(|g| g.base()).collect();
    send(rig.http.clone(), bases, plan, 32, upstream.clone()).await;
    until_good_delivered(rig, &upstream, Duration::from_secs(600)).await;
    (good as f64 / t.elapsed().as_secs_f64(), upstream)
}

struct PoisonRound {
    rate: f64,
    poison_total: usize,
    poison_parked: usize,
    good_parked: usize,
    without_reason: usize,
    ledger: Ledger,
}

/// The same good messages with one poison in every 101, refused by the partner.
async fn poison_round(
    dir: &Path,
    node: &Node,
    seed: u64,
    good: usize,
) -> anyhow::Result<PoisonRound> {
    let mut rig = Rig::start(dir, &RigOptions::new(node.url())).await?;
    rig.police
        .set_behaviour(Behaviour::RejectKeysWithPrefix("poison-".into()));
    let (rate, upstream) = good_rate(&rig, seed, good, Some(101)).await;
    let total = good + good / 100;
    let plan = Plan {
        seed,
        n: total,
        transfer_every: 0,
        poison_every: Some(101),
    };
    let mut parked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let poison_ids: std::collections::HashSet<String> = (0..total)
        .map(|i| plan.message(i).0)
        .filter(|id| id.starts_with("poison-"))
        .collect();
    while Instant::now() < deadline {
        parked = rig.gateways[0].parked(&rig.http).await.unwrap_or_default();
        if parked.len() >= poison_ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ledger = settle(&mut rig, &upstream, Duration::from_secs(120)).await?;
    Ok(PoisonRound {
        rate,
        poison_total: poison_ids.len(),
        poison_parked: parked
            .iter()
            .filter(|(id, _)| poison_ids.contains(id))
            .count(),
        good_parked: parked
            .iter()
            .filter(|(id, _)| !poison_ids.contains(id))
            .count(),
        without_reason: parked.iter().filter(|(_, r)| r.is_empty()).count(),
        ledger,
    })
}

/// 4. A partner down during the load: everything delivered after it returns, bounded
///    attempts per message, the other partner unaffected.
pub async fn partner_down(base: &Path, size: Size, seed: u64) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (dir, node) = private_node(base, "partner", seed).await?;
    let mut options = RigOptions::new(node.url());
    let outage = Duration::from_secs(size.pick(90, 8));
    if size == Size::Full {
        // Production-like tiers: 1 s, 5 s, 30 s, 120 s, 8 attempts (covers ~156 s).
        options.retry_delays_ms = vec![1000, 5000, 30000, 120_000];
        options.max_attempts = 8;
    }
    let max_attempts = options.max_attempts;
    let mut rig = Rig::start(&dir.join("rig"), &options).await?;
    let n = size.pick(50_000, 3_000);
    let upstream = Arc::new(Upstream::default());
    let plan = Plan {
        seed,
        n,
        transfer_every: 2,
        poison_every: None,
    };
    // Paced so that the load spans the outage.
    let load = start_load(&rig, plan, 4, &upstream);
    until_accepted(&upstream, n / 5, &load).await;
    rig.police.stop().await;
    let down = Instant::now();
    tokio::time::sleep(outage).await;
    // The other partner during the outage: every transfer accepted until a second before
    // its end is delivered by then.
    let emergency_now: std::collections::HashSet<String> =
        rig.emergency.accepted_keys().into_iter().collect();
    let cutoff = Instant::now() - Duration::from_secs(1);
    let (mut during, mut late) = (0, 0);
    for (id, at) in upstream
        .accepted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        if id.starts_with("transfer-") && *at > down && *at < cutoff {
            during += 1;
            if !emergency_now.contains(id) {
                late += 1;
            }
        }
    }
    rig.police.restart().await?;
    let back = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(size.pick(1800, 300)), load).await;
    let police_accepted = upstream
        .accepted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .filter(|id| id.starts_with("material-"))
        .count();
    let wait = Duration::from_secs(size.pick(400, 120));
    let deadline = Instant::now() + wait;
    while rig.police.accepted_count() < police_accepted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = back.elapsed();
    let attempts = most_attempts(&rig, "police");
    let ledger = settle(&mut rig, &upstream, Duration::from_secs(60)).await?;
    let mut out = Outcome {
        name: "4 a partner down during the load",
        ledger,
        checks: Vec::new(),
        figures: vec![format!(
            "police down {:.0} s; all its copies delivered {:.1} s after it returned; most attempts for one copy {attempts}; transfers to 120 accepted during the outage {during}, not yet delivered a second later {late}",
            outage.as_secs_f64(),
            drained.as_secs_f64()
        )],
        elapsed: started.elapsed(),
    };
    out.standard(0);
    out.check(
        format!("attempts per message bounded ({attempts} ≤ {max_attempts})"),
        attempts > 1 && attempts <= i64::from(max_attempts),
    );
    out.check(
        format!("the other partner unaffected ({late} of {during} transfers late)"),
        during > 0 && late == 0,
    );
    Ok(out)
}

/// The most delivery attempts any one copy had at `destination`, over every instance.
fn most_attempts(rig: &Rig, destination: &str) -> i64 {
    let mut most = 0;
    for g in &rig.gateways {
        let db = g.state_dir.join("wingspan-state.db");
        let Ok(conn) =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            continue;
        };
        let n: i64 = conn
            .query_row(
                // An attempt's record: `delivery_attempt`, or `delivered` with the bytes' hash
                // (`wingspan_core::audit::attempted`).
                "SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM audit WHERE (event = 'delivery_attempt' OR (event = 'delivered' AND payload_sha256 IS NOT NULL)) AND destination = ?1 GROUP BY message_id)",
                [destination],
                |r| r.get(0),
            )
            .unwrap_or(0);
        most = most.max(n);
    }
    most
}

/// 7. The audit store unavailable: fail closed within 1 s, resume by itself.
pub async fn audit_store_down(base: &Path, size: Size, seed: u64) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (dir, node) = private_node(base, "auditdown", seed).await?;
    let relay = Relay::start("127.0.0.1:5432".parse()?).await?;
    let via = relay.addr;
    let (schema, url) = blocking(move || pg_schema(via)).await?;
    let mut options = RigOptions::new(node.url());
    options.audit_store = Some(url);
    let mut rig = Rig::start(&dir.join("rig"), &options).await?;
    let n = size.pick(30_000, 3_000);
    let outage = Duration::from_secs(size.pick(30, 5));
    let upstream = Arc::new(Upstream::default());
    let plan = Plan {
        seed,
        n,
        transfer_every: 4,
        poison_every: None,
    };
    let load = start_load(&rig, plan, 16, &upstream);
    until_accepted(&upstream, n / 3, &load).await;
    relay.cut();
    let cut = Instant::now();
    tokio::time::sleep(outage).await;
    let restore = Instant::now();
    let first_refusal = upstream.first_refusal_after(cut).map(|t| t - cut);
    let accepted_while_down = upstream
        .accepted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter(|a| **a > cut + Duration::from_secs(1) && **a < restore)
        .count();
    relay.restore();
    let resumed = resumed_after(&upstream, restore, &load).await;
    let _ = tokio::time::timeout(Duration::from_secs(size.pick(1800, 300)), load).await;
    let ledger = settle(&mut rig, &upstream, Duration::from_secs(120)).await?;
    blocking(move || {
        pg_drop(&schema);
        Ok(())
    })
    .await?;
    let mut out = Outcome {
        name: "7 audit store unavailable",
        ledger,
        checks: Vec::new(),
        figures: vec![format!(
            "audit store cut for {:.0} s: first 503 after {:?}; receipts issued more than 1 s into the outage: {accepted_while_down}; receipts again {:?} after it returned",
            outage.as_secs_f64(),
            first_refusal.map(|d| format!("{:.2} s", d.as_secs_f64())),
            resumed.map(|d| format!("{:.2} s", d.as_secs_f64()))
        )],
        elapsed: started.elapsed(),
    };
    out.standard(0);
    out.check(
        "fail closed within 1 s (a 503 within 1 s, no receipt after)",
        first_refusal.is_some_and(|d| d <= Duration::from_secs(1)) && accepted_while_down == 0,
    );
    out.check(
        "resumed by itself (receipts within 10 s of the store returning)",
        resumed.is_some_and(|d| d <= Duration::from_secs(10)),
    );
    Ok(out)
}

/// 5. The broker's memory alarm, then its disk alarm, under twice the load: nothing accepted
///    without a confirm, the upstream told to back off within 1 s, the gateway's memory
///    bounded, a full drain afterwards.
pub async fn broker_alarms(base: &Path, size: Size, seed: u64) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (dir, node) = private_node(base, "alarms", seed).await?;
    let mut rig = Rig::start(&dir.join("rig"), &RigOptions::new(node.url())).await?;
    // Time-bounded: the load runs until both alarms are over.
    let n = 10_000_000;
    let steady = Duration::from_secs(size.pick(20, 3));
    let alarm = Duration::from_secs(size.pick(20, 4));
    let upstream = Arc::new(Upstream::default());
    let plan = Plan {
        seed,
        n,
        transfer_every: 3,
        poison_every: None,
    };
    // Twice the senders of the other scenarios.
    let load = start_load(&rig, plan, 64, &upstream);
    let mut figures = Vec::new();
    let mut backed_off = true;
    let mut leaked = 0;
    let mut peak_rss = 0u64;
    for what in ["memory", "disk"] {
        tokio::time::sleep(steady).await;
        let on = node.clone();
        blocking(move || {
            if what == "memory" {
                on.memory_alarm(true)
            } else {
                on.disk_alarm(true)
            }
        })
        .await?;
        let raised = Instant::now();
        let end = raised + alarm;
        while Instant::now() < end {
            peak_rss = peak_rss.max(rig.gateways[0].rss_kib());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let refused = upstream.first_refusal_after(raised).map(|t| t - raised);
        // A receipt more than the confirm bound after the alarm would be a publish accepted
        // without a confirm.
        let after = upstream
            .accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|a| **a > raised + Duration::from_secs(1) && **a < end)
            .count();
        leaked += after;
        backed_off &= refused.is_some_and(|d| d <= Duration::from_secs(1));
        figures.push(format!(
            "{what} alarm {:.0} s: first 503 after {:?}, receipts during it {after}",
            alarm.as_secs_f64(),
            refused.map(|d| format!("{:.2} s", d.as_secs_f64()))
        ));
        let off = node.clone();
        blocking(move || {
            if what == "memory" {
                off.memory_alarm(false)
            } else {
                off.disk_alarm(false)
            }
        })
        .await?;
    }
    tokio::time::sleep(steady).await;
    upstream
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(300), load).await;
    let sent = upstream.sent.load(std::sync::atomic::Ordering::Relaxed);
    let ledger = settle(&mut rig, &upstream, Duration::from_secs(120)).await?;
    figures.push(format!(
        "gateway peak RSS during the alarms {} MiB",
        peak_rss / 1024
    ));
    let mut out = Outcome {
        name: "5 broker memory and disk alarms under 2× load",
        ledger,
        checks: Vec::new(),
        figures,
        elapsed: started.elapsed(),
    };
    out.standard(0);
    out.check(
        "upstream told to back off within 1 s of each alarm",
        backed_off,
    );
    out.check(
        format!("nothing accepted during an alarm ({leaked})"),
        leaked == 0,
    );
    out.check(
        format!(
            "gateway memory bounded (peak {} MiB ≤ 512)",
            peak_rss / 1024
        ),
        peak_rss > 0 && peak_rss <= 512 * 1024,
    );
    out.check(
        format!(
            "full drain: every message sent got a receipt ({} of {sent})",
            out.ledger.accepted
        ),
        out.ledger.accepted == sent,
    );
    Ok(out)
}

/// 6. The broker frozen (SIGSTOP): the connection declared dead within the heartbeat bound,
///    nothing hangs, receipts again within 5 s of SIGCONT.
pub async fn broker_frozen(base: &Path, size: Size, seed: u64) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (dir, node) = private_node(base, "frozen", seed).await?;
    let options = RigOptions::new(node.url());
    let heartbeat = Duration::from_secs(u64::from(options.heartbeat_secs));
    let mut rig = Rig::start(&dir.join("rig"), &options).await?;
    let n = size.pick(30_000, 3_000);
    let frozen_for = Duration::from_secs(size.pick(60, 15));
    let upstream = Arc::new(Upstream::default());
    let plan = Plan {
        seed,
        n,
        transfer_every: 3,
        poison_every: None,
    };
    let load = start_load(&rig, plan, 16, &upstream);
    until_accepted(&upstream, n / 3, &load).await;
    let freeze = node.clone();
    blocking(move || freeze.freeze()).await?;
    let frozen = Instant::now();
    // Declared dead: /readyz turns 503.
    let mut dead_after = None;
    while frozen.elapsed() < frozen_for {
        if dead_after.is_none() && !rig.gateways[0].ready(&rig.http).await {
            dead_after = Some(frozen.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let thaw = node.clone();
    blocking(move || thaw.thaw()).await?;
    let thawed = Instant::now();
    let resumed = resumed_after(&upstream, thawed, &load).await;
    let _ = tokio::time::timeout(Duration::from_secs(size.pick(1800, 300)), load).await;
    let ledger = settle(&mut rig, &upstream, Duration::from_secs(120)).await?;
    // lapin declares a connection dead after two missed heartbeats; allow one more interval
    // for the supervisor's check and the readiness probe.
    let bound = heartbeat * 3 + Duration::from_secs(1);
    let mut out = Outcome {
        name: "6 broker frozen (SIGSTOP)",
        ledger,
        checks: Vec::new(),
        figures: vec![format!(
            "frozen {:.0} s (heartbeat {} s): declared dead after {:?}; receipts again {:?} after SIGCONT",
            frozen_for.as_secs_f64(),
            heartbeat.as_secs(),
            dead_after.map(|d| format!("{:.2} s", d.as_secs_f64())),
            resumed.map(|d| format!("{:.2} s", d.as_secs_f64()))
        )],
        elapsed: started.elapsed(),
    };
    out.standard(0);
    out.check(
        format!(
            "connection declared dead within {:.0} s",
            bound.as_secs_f64()
        ),
        dead_after.is_some_and(|d| d <= bound),
    );
    out.check(
        "receipts again within 5 s of SIGCONT",
        resumed.is_some_and(|d| d <= Duration::from_secs(5)),
    );
    Ok(out)
}

/// A three-node cluster, quorum queues across it; the node the gateway uses is killed during
/// the load.
pub async fn cluster_node_kill(base: &Path, size: Size, seed: u64) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let dir = run_dir(base, "cluster", seed);
    let d = dir.clone();
    let nodes = blocking(move || {
        let a = Node::start(&d.join("a"), &format!("k{seed}a"))?;
        let b = Node::start(&d.join("b"), &format!("k{seed}b"))?;
        let c = Node::start(&d.join("c"), &format!("k{seed}c"))?;
        b.join(&a)?;
        c.join(&a)?;
        Ok(vec![Arc::new(a), Arc::new(b), Arc::new(c)])
    })
    .await?;
    let mut options = RigOptions::new(nodes[0].url());
    options.broker_urls = nodes.iter().map(|n| n.url()).collect();
    let mut rig = Rig::start(&dir.join("rig"), &options).await?;
    let members = blocking({
        let a = nodes[0].clone();
        move || {
            let out = a.ctl(&["cluster_status", "--formatter", "json"])?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            Ok(v["running_nodes"].as_array().map_or(0, Vec::len))
        }
    })
    .await?;
    let n = size.pick(50_000, 3_000);
    let upstream = Arc::new(Upstream::default());
    let plan = Plan {
        seed,
        n,
        transfer_every: 3,
        poison_every: None,
    };
    let load = start_load(&rig, plan, 16, &upstream);
    until_accepted(&upstream, n / 3, &load).await;
    let victim = nodes[0].clone();
    blocking(move || victim.kill9()).await?;
    let killed = Instant::now();
    let resumed = resumed_after(&upstream, killed, &load).await;
    let _ = tokio::time::timeout(Duration::from_secs(size.pick(1800, 300)), load).await;
    let ledger = settle(&mut rig, &upstream, Duration::from_secs(120)).await?;
    let mut out = Outcome {
        name: "cluster: 3 nodes, quorum queues, one node killed",
        ledger,
        checks: Vec::new(),
        figures: vec![format!(
            "{members} nodes running before the kill; receipts again {:?} after node a was killed (gateway moved to a surviving node)",
            resumed.map(|d| format!("{:.2} s", d.as_secs_f64()))
        )],
        elapsed: started.elapsed(),
    };
    out.standard(0);
    out.check(format!("a three-node cluster ({members})"), members == 3);
    out.check(
        "the gateway reconnected to a surviving node (receipts within 15 s)",
        resumed.is_some_and(|d| d <= Duration::from_secs(15)),
    );
    out.check(
        format!("all {n} messages accepted"),
        out.ledger.accepted == n,
    );
    Ok(out)
}

/// Two and three gateway instances as competing consumers, one PostgreSQL audit store:
/// correctness (ledger, every chain verifies) and throughput with 1, 2, 3 instances.
pub async fn instances(base: &Path, size: Size, seed: u64) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (dir, node) = private_node(base, "instances", seed).await?;
    let n = size.pick(30_000, 3_000);
    let mut ledgers = Vec::new();
    let mut rates = Vec::new();
    for count in 1..=3 {
        let relay = Relay::start("127.0.0.1:5432".parse()?).await?;
        let via = relay.addr;
        let (schema, url) = blocking(move || pg_schema(via)).await?;
        let mut options = RigOptions::new(node.url());
        options.audit_store = Some(url);
        options.instances = count;
        let mut rig = Rig::start(&dir.join(format!("x{count}")), &options).await?;
        let upstream = Arc::new(Upstream::default());
        let plan = Plan {
            seed: seed + count as u64,
            n,
            transfer_every: 3,
            poison_every: None,
        };
        let bases = rig.gateways.iter().map(|g| g.base()).collect();
        let t = Instant::now();
        send(rig.http.clone(), bases, plan, 32, upstream.clone()).await;
        until_good_delivered(&rig, &upstream, Duration::from_secs(600)).await;
        rates.push(n as f64 / t.elapsed().as_secs_f64());
        ledgers.push(settle(&mut rig, &upstream, Duration::from_secs(120)).await?);
        blocking(move || {
            pg_drop(&schema);
            Ok(())
        })
        .await?;
    }
    // Three instances, one of them SIGKILLed again and again mid-load, the upstream's retries
    // going round-robin to the others, the police materials going to an AMQP partner as
    // well: nothing lost, nothing delivered twice (by Idempotency-Key at the HTTP partners,
    // by message id at the AMQP partner, which has nothing to absorb a repeat with).
    let kills = 5;
    let relay = Relay::start("127.0.0.1:5432".parse()?).await?;
    let via = relay.addr;
    let (schema, url) = blocking(move || pg_schema(via)).await?;
    let mut options = RigOptions::new(node.url());
    options.audit_store = Some(url);
    options.instances = 3;
    options.amqp_partner = true;
    let mut rig = Rig::start(&dir.join("kill"), &options).await?;
    let upstream = Arc::new(Upstream::default());
    upstream.round_robin.store(true, Ordering::Relaxed);
    let plan = Plan {
        seed: seed + 10,
        n,
        transfer_every: 3,
        poison_every: None,
    };
    let bases = rig.gateways.iter().map(|g| g.base()).collect();
    let sender = tokio::spawn(send(rig.http.clone(), bases, plan, 32, upstream.clone()));
    let mut restarts = Vec::new();
    for k in 0..kills {
        let due = n * (k + 1) / (kills + 1);
        let deadline = Instant::now() + Duration::from_secs(300);
        while upstream.accepted_count() < due && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        restarts.push(rig.crash_and_restart(k % rig.gateways.len()).await?);
    }
    let _ = sender.await;
    until_good_delivered(&rig, &upstream, Duration::from_secs(600)).await;
    let killed = settle(&mut rig, &upstream, Duration::from_secs(120)).await?;
    let dropped = blocking(move || {
        let dropped = crate::relay::pg_discarded(&schema);
        pg_drop(&schema);
        dropped
    })
    .await?;
    let retries =
        upstream.attempts.load(Ordering::Relaxed) as usize - upstream.sent.load(Ordering::Relaxed);
    let kill_figure = format!(
        "3 instances, {kills} SIGKILLs mid-load, retries round-robin ({retries} retries): {killed}; copies of attempts that never committed, dropped at the AMQP partner's destination (delivers once): {dropped}; restarts took {:?}",
        restarts
            .iter()
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    ledgers.push(killed.clone());
    let total = ledgers.into_iter().reduce(Ledger::plus).unwrap_or_default();
    let mut out = Outcome {
        name: "1, 2 and 3 gateway instances sharing one PostgreSQL store; one SIGKILLed under round-robin retries",
        ledger: total,
        checks: Vec::new(),
        figures: vec![
            format!(
                "end-to-end throughput (accepted → delivered, {n} messages each): 1 instance {:.0} msg/s, 2 instances {:.0}, 3 instances {:.0}",
                rates[0], rates[1], rates[2]
            ),
            kill_figure,
        ],
        elapsed: started.elapsed(),
    };
    out.standard(0);
    out.check(
        format!(
            "the AMQP partner received every material once ({} twice, {} never)",
            killed.amqp_duplicated, killed.amqp_missing
        ),
        killed.amqp_duplicated == 0 && killed.amqp_missing == 0,
    );
    Ok(out)
}
