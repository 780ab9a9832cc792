//! The soak: half of the measured capacity for a long time (30 minutes by default), sampling
//! the gateway's resident memory, open file descriptors and threads, the end-to-end latency
//! (upstream send → partner arrival), and the gateway's own count of slow acceptances and
//! deliveries and of its store's pauses (to tell the gateway's stalls from the broker's or the
//! tool's) every interval; a CSV and an SVG plot of the run.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::node::Node;
use crate::rig::{Plan, Rig, RigOptions, Upstream, Windows, send, settle};
use crate::scenarios::Outcome;

#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub at_s: f64,
    pub rss_kib: u64,
    /// The anonymous part of it (heap, stacks); the rest is mapped files (the binary, the
    /// state database's memory maps).
    pub anon_kib: u64,
    pub fds: usize,
    pub threads: u64,
    pub delivered: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Over the interval, as the gateway itself measured: messages whose acceptance, and
    /// copies whose delivery, took over 0.1 s; the state store's pauses (log restarts) and
    /// their total.
    pub slow_accepts: u64,
    pub slow_deliveries: u64,
    /// First copies that reached a delivery worker over 0.1 s after acceptance (their time
    /// in the broker), and state and audit commands that waited over 0.1 s for their commit.
    pub slow_queued: u64,
    pub slow_commits: u64,
    pub store_pauses: u64,
    pub store_pause_s: f64,
    /// The state store's checkpoints (log copied into the database, and synced) over the
    /// interval: how many, and their mean length.
    pub checkpoints: u64,
    pub checkpoint_ms: f64,
    /// Over the interval: what the gateway wrote to storage, and what the whole machine's
    /// disks wrote (the broker's share is most of the rest), in MB/s.
    pub gateway_write_mbs: f64,
    pub disk_write_mbs: f64,
    /// The live state database, its write-ahead log, and the audit archive, at the end of
    /// the interval.
    pub state_db_mib: f64,
    pub wal_mib: f64,
    pub archive_mib: f64,
}

impl Sample {
    const CSV_HEADER: &str = "seconds,rss_kib,anon_kib,fds,threads,delivered,p50_ms,p99_ms,slow_accepts,slow_deliveries,slow_queued,slow_commits,store_pauses,store_pause_s,checkpoints,checkpoint_ms,gateway_write_mbs,disk_write_mbs,state_db_mib,wal_mib,archive_mib";

    /// One line of `soak.csv` (also the progress line, after the `soak columns:` header).
    fn csv_row(&self) -> String {
        format!(
            "{:.0},{},{},{},{},{},{:.2},{:.2},{},{},{},{},{},{:.3},{},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1}",
            self.at_s,
            self.rss_kib,
            self.anon_kib,
            self.fds,
            self.threads,
            self.delivered,
            self.p50_ms,
            self.p99_ms,
            self.slow_accepts,
            self.slow_deliveries,
            self.slow_queued,
            self.slow_commits,
            self.store_pauses,
            self.store_pause_s,
            self.checkpoints,
            self.checkpoint_ms,
            self.gateway_write_mbs,
            self.disk_write_mbs,
            self.state_db_mib,
            self.wal_mib,
            self.archive_mib
        )
    }
}

/// One of the gateway's latency histograms, summed over its label sets: how many it
/// observed, and how many of those within 0.1 s.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Latency {
    count: f64,
    fast: f64,
}

impl Latency {
    /// Observations over 0.1 s since `before`.
    fn slow_since(self, before: Self) -> u64 {
        ((self.count - before.count) - (self.fast - before.fast)).max(0.0) as u64
    }
}

/// A histogram's observations and their sum in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    count: f64,
    sum_s: f64,
}

impl Totals {
    fn since(self, before: Self) -> Self {
        Self {
            count: (self.count - before.count).max(0.0),
            sum_s: (self.sum_s - before.sum_s).max(0.0),
        }
    }
}

/// The gateway's own cumulative counters the soak reads from `/metrics` at every sample.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    accepts: Latency,
    deliveries: Latency,
    queued: Latency,
    commits: Latency,
    /// The store's log restarts (its writer's pauses) and checkpoints.
    pauses: Totals,
    checkpoints: Totals,
}

impl Counters {
    /// Sums over label sets (deliveries have one per destination); "fast" is ≤ 0.1 s.
    fn parse(text: &str) -> Self {
        let mut c = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            // `histogram_part{labels}`: the part is count, sum or bucket.
            let metric = name.split_once('{').map_or(name, |(m, _)| m);
            let Some((histogram, part)) = metric.rsplit_once('_') else {
                continue;
            };
            let fast = name.contains("le=\"0.1\"");
            let totals = match histogram {
                "wingspan_store_wal_restart_seconds" => Some(&mut c.pauses),
                "wingspan_store_checkpoint_seconds" => Some(&mut c.checkpoints),
                _ => None,
            };
            if let Some(t) = totals {
                match part {
                    "count" => t.count += v,
                    "sum" => t.sum_s += v,
                    _ => {}
                }
                continue;
            }
            let latency = match histogram {
                "wingspan_accept_seconds" => &mut c.accepts,
                "wingspan_delivery_seconds" => &mut c.deliveries,
                "wingspan_delivery_queued_seconds" => &mut c.queued,
                "wingspan_audit_write_lag_seconds" => &mut c.commits,
                _ => continue,
            };
            match part {
                "count" => latency.count += v,
                "bucket" if fast => latency.fast += v,
                _ => {}
            }
        }
        c
    }
}

fn proc_stat(pid: u32) -> (u64, u64, usize, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (field("VmRSS:"), field("RssAnon:"), fds, field("Threads:"))
}

/// Bytes this process has had written to storage (`/proc/PID/io`).
fn proc_written(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes written to the machine's whole disks (`/proc/diskstats`, partitions and virtual
/// devices left out).
fn disk_written() -> u64 {
    let stats = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
    stats
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = *f.get(2)?;
            let whole = std::path::Path::new(&format!("/sys/block/{name}/device")).exists();
            let sectors: u64 = f.get(9)?.parse().ok()?;
            whole.then_some(sectors * 512)
        })
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// The run's plot: RSS (MiB) and p99 latency (ms) against minutes.
fn svg(samples: &[Sample]) -> String {
    let (w, h, m) = (900.0, 420.0, 60.0);
    let t_max = samples.last().map_or(1.0, |s| s.at_s.max(1.0)) / 60.0;
    let rss_max = samples
        .iter()
        .map(|s| s.rss_kib as f64 / 1024.0)
        .fold(1.0, f64::max)
        * 1.2;
    let p99_max = samples.iter().map(|s| s.p99_ms).fold(1.0, f64::max) * 1.2;
    let db_max = samples
        .iter()
        .map(|s| s.state_db_mib + s.wal_mib)
        .fold(1.0, f64::max)
        * 1.2;
    let x = |t: f64| m + (t / 60.0) / t_max * (w - 2.0 * m);
    let y = |v: f64, max: f64| h - m - v / max * (h - 2.0 * m);
    let line = |f: &dyn Fn(&Sample) -> f64, max: f64| {
        samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.at_s), y(f(s), max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{m}" y="24" font-size="15">wingspan soak: gateway RSS (MiB, blue) and p99 end-to-end latency (ms, red), live database + WAL (MiB, green)</text>
<line x1="{m}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{m}" y1="{m}" x2="{m}" y2="{b}" stroke="black"/>
<text x="{r}" y="{bl}" text-anchor="end">{t_max:.0} min</text><text x="{m}" y="{bl}">0</text>
<text x="8" y="{m}" fill="#1f5fbf">{rss_max:.0} MiB</text><text x="{rl}" y="{m}" fill="#b42318">{p99_max:.0} ms</text>
<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="{rss}"/>
<polyline fill="none" stroke="#b42318" stroke-width="1.5" points="{p99}"/>
<text x="{rl}" y="{m2}" fill="#2e7d32">{db_max:.0} MiB</text>
<polyline fill="none" stroke="#2e7d32" stroke-width="1.5" points="{db}"/>
</svg>
"##,
        b = h - m,
        r = w - m,
        bl = h - m + 18.0,
        rl = w - m - 40.0,
        rss = line(&|s| s.rss_kib as f64 / 1024.0, rss_max),
        p99 = line(&|s| s.p99_ms, p99_max),
        m2 = m + 16.0,
        db = line(&|s| s.state_db_mib + s.wal_mib, db_max),
    );
    out
}

/// Capacity bursts per soak; the soak runs at half their median.
const BURSTS: u64 = 3;
/// How long each burst sends.
const BURST_SECS: u64 = 20;

/// One capacity burst: the rate at which it was accepted, and the rate at which it was
/// accepted and delivered (its messages over the time until the last reached its partner).
struct Burst {
    intake: f64,
    end_to_end: f64,
}

async fn burst(rig: &Rig, bases: &[String], seed: u64) -> Burst {
    let probe = Arc::new(Upstream::default());
    let plan = Plan {
        seed,
        n: 10_000_000,
        transfer_every: 3,
        poison_every: None,
    };
    // Where the partners' arrivals stand before the burst: its own come after.
    let mut cursors = [&rig.police, &rig.emergency].map(|p| p.accepted_count());
    let t0 = Instant::now();
    let sending = tokio::spawn(send(
        rig.http.clone(),
        bases.to_vec(),
        plan,
        32,
        probe.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(BURST_SECS)).await;
    probe.stop.store(true, Ordering::Relaxed);
    let _ = sending.await;
    let mut waiting: HashSet<String> = probe.accepted_ids();
    let accepted = waiting.len() as f64;
    let intake = accepted / t0.elapsed().as_secs_f64();
    // Until every accepted message has arrived (bounded: a stuck one shows in the rate). Only
    // the partners' new arrivals are read each time: this runs on the machine it measures.
    let deadline = Instant::now() + Duration::from_secs(BURST_SECS * 6);
    loop {
        for (k, p) in [&rig.police, &rig.emergency].into_iter().enumerate() {
            let (new, next) = p.arrivals_since(cursors[k]);
            cursors[k] = next;
            for (id, _) in new {
                waiting.remove(&id);
            }
        }
        if waiting.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end_to_end = accepted / t0.elapsed().as_secs_f64();
    println!("soak capacity burst: intake {intake:.0} msg/s, end to end {end_to_end:.0} msg/s");
    Burst { intake, end_to_end }
}

/// The retention windows a soak of `minutes` runs with: receipts a twelfth of the run, audit
/// records live a quarter, a segment archived every twelfth (2 hours: 10 min, 30 min, 10 min),
/// so that the live store reaches its steady state in the first half of the run.
pub fn windows_for(minutes: u64) -> Windows {
    let run = (minutes * 60).max(60);
    Windows {
        receipts_secs: run / 12,
        audit_live_secs: run / 4,
        archive_secs: run / 12,
    }
}

/// Bytes under `dir`, recursively (0 when it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Soak for `minutes` at half the capacity measured first (or `fixed_rate`); `sample_secs`
/// between samples; the retention windows those of a run of `windows_of` minutes (default:
/// this one's), so that a shorter run can reach a longer run's steady state.
pub async fn soak(
    base: &Path,
    minutes: u64,
    sample_secs: u64,
    seed: u64,
    fixed_rate: Option<f64>,
    windows_of: Option<u64>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let dir = base.join(format!("soak-{seed}"));
    let node_dir = dir.join("node");
    let tag = format!("s{seed}");
    let node = Arc::new(tokio::task::spawn_blocking(move || Node::start(&node_dir, &tag)).await??);
    let windows = windows_for(windows_of.unwrap_or(minutes));
    let mut options = RigOptions::new(node.url());
    options.windows = Some(windows);
    let mut rig = Rig::start(&dir.join("rig"), &options).await?;
    rig.police.keep_bodies(false);
    rig.emergency.keep_bodies(false);
    let pid = rig.gateways[0].pid().unwrap_or(0);

    // Capacity, end to end: three bursts, each 20 s as fast as 32 senders go, then until
    // every message it had accepted has reached its partner; the median of the three.
    let bases: Vec<String> = rig.gateways.iter().map(|g| g.base()).collect();
    let mut bursts = Vec::new();
    for k in 0..BURSTS {
        bursts.push(burst(&rig, &bases, seed.wrapping_mul(10).wrapping_add(k + 1)).await);
    }
    let capacity = median(bursts.iter().map(|b| b.end_to_end).collect());
    // `--rate` holds the rate of an earlier run, so that two builds are compared at the same
    // load.
    let rate = fixed_rate.unwrap_or(capacity / 2.0).max(1.0);
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Half of it, paced, for `minutes`. The upstream's and partners' books are sized for the
    // whole run first: grown on the way, past a million entries each growth held the books'
    // locks for up to seconds (the late p99 spikes of the runs before 2026-11-30's fifth).
    let upstream = Arc::new(Upstream::default());
    let expected = (rate * (minutes * 60) as f64 * 1.1) as usize;
    upstream.reserve(expected);
    rig.police.reserve(expected);
    rig.emergency.reserve(expected);
    let sent_at: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::new(std::sync::Mutex::new(
        HashMap::with_capacity((rate * sample_secs as f64 * 4.0) as usize),
    ));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let next = Arc::new(AtomicUsize::new(1_000_000_000));
    let run_for = Duration::from_secs(minutes * 60);
    let load = {
        let (http, bases, upstream, sent_at, in_flight, next) = (
            rig.http.clone(),
            bases.clone(),
            upstream.clone(),
            sent_at.clone(),
            in_flight.clone(),
            next.clone(),
        );
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut due = 0.0;
            let mut tasks = tokio::task::JoinSet::new();
            while t0.elapsed() < run_for {
                tick.tick().await;
                due += rate / 100.0;
                while due >= 1.0 {
                    due -= 1.0;
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        break;
                    };
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let plan = Plan {
                        seed,
                        n: i + 1,
                        transfer_every: 3,
                        poison_every: None,
                    };
                    let (id, _) = plan.message(i);
                    sent_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id, Instant::now());
                    let one = Plan {
                        seed,
                        n: 1,
                        transfer_every: 3,
                        poison_every: None,
                    };
                    let (http, bases, upstream) = (http.clone(), bases.clone(), upstream.clone());
                    // One message: `send` with a plan that starts at message i.
                    tasks.spawn(async move {
                        crate::rig::send_one(&http, &bases, &one, i, &upstream).await;
                        drop(permit);
                    });
                    while tasks.try_join_next().is_some() {}
                }
            }
            while tasks.join_next().await.is_some() {}
        })
    };
    println!("soak columns: {}", Sample::CSV_HEADER);
    let mut samples = Vec::new();
    let mut cursors = [0usize, 0usize];
    let t0 = Instant::now();
    let mut delivered = 0usize;
    let gateway_counters = async || match rig.gateways[0].metrics(&rig.http).await {
        Ok(text) => Counters::parse(&text),
        Err(_) => Counters::default(),
    };
    let mut counters = gateway_counters().await;
    let state_dir = rig.gateways[0].state_dir.clone();
    let mib = |file: &str| {
        std::fs::metadata(state_dir.join(file)).map_or(0.0, |m| m.len() as f64 / 1048576.0)
    };
    let archive_dir = state_dir.join("audit-archive");
    let (mut gw_written, mut disk) = (proc_written(pid), disk_written());
    let mut sampled = Instant::now();
    while !load.is_finished() {
        tokio::time::sleep(Duration::from_secs(sample_secs)).await;
        let mut lat = Vec::new();
        for (k, p) in [&rig.police, &rig.emergency].into_iter().enumerate() {
            let (new, next_cursor) = p.arrivals_since(cursors[k]);
            cursors[k] = next_cursor;
            let mut sent = sent_at.lock().unwrap_or_else(|p| p.into_inner());
            for (key, at) in new {
                if let Some(s) = sent.remove(&key) {
                    lat.push(at.saturating_duration_since(s).as_secs_f64() * 1000.0);
                }
            }
        }
        delivered += lat.len();
        lat.sort_by(f64::total_cmp);
        let (rss_kib, anon_kib, fds, threads) = proc_stat(pid);
        let now = gateway_counters().await;
        let (slow_accepts, slow_deliveries, slow_queued, slow_commits) = (
            now.accepts.slow_since(counters.accepts),
            now.deliveries.slow_since(counters.deliveries),
            now.queued.slow_since(counters.queued),
            now.commits.slow_since(counters.commits),
        );
        let (pauses, checkpoints) = (
            now.pauses.since(counters.pauses),
            now.checkpoints.since(counters.checkpoints),
        );
        counters = now;
        let (gw_now, disk_now) = (proc_written(pid), disk_written());
        let secs = sampled.elapsed().as_secs_f64().max(0.001);
        sampled = Instant::now();
        let mbs = |now: u64, before: u64| now.saturating_sub(before) as f64 / 1e6 / secs;
        let (gateway_write_mbs, disk_write_mbs) = (mbs(gw_now, gw_written), mbs(disk_now, disk));
        (gw_written, disk) = (gw_now, disk_now);
        samples.push(Sample {
            at_s: t0.elapsed().as_secs_f64(),
            rss_kib,
            anon_kib,
            fds,
            threads,
            delivered,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            slow_accepts,
            slow_deliveries,
            slow_queued,
            slow_commits,
            store_pauses: pauses.count as u64,
            store_pause_s: pauses.sum_s,
            checkpoints: checkpoints.count as u64,
            checkpoint_ms: if checkpoints.count > 0.0 {
                checkpoints.sum_s / checkpoints.count * 1000.0
            } else {
                0.0
            },
            gateway_write_mbs,
            disk_write_mbs,
            state_db_mib: mib("wingspan-state.db"),
            wal_mib: mib("wingspan-state.db-wal"),
            archive_mib: dir_bytes(&archive_dir) as f64 / 1048576.0,
        });
        if let Some(s) = samples.last() {
            println!("soak {:>6.0} s: {}", s.at_s, s.csv_row());
        }
    }
    let _ = load.await;
    let mut csv = format!("{}\n", Sample::CSV_HEADER);
    for s in &samples {
        let _ = writeln!(csv, "{}", s.csv_row());
    }
    std::fs::write(dir.join("soak.csv"), &csv)?;
    std::fs::write(dir.join("soak.svg"), svg(&samples))?;
    let ledger = settle(&mut rig, &upstream, Duration::from_secs(120)).await?;

    // After a warm-up of a tenth of the run (at least 2 minutes' worth of samples), compare
    // the first third with the last third.
    let warm = (samples.len() / 10).max(1);
    let body = samples.get(warm..).unwrap_or_default();
    let third = (body.len() / 3).max(1);
    let (first, last) = (
        &body[..third.min(body.len())],
        &body[body.len().saturating_sub(third)..],
    );
    let m = |s: &[Sample], f: &dyn Fn(&Sample) -> f64| median(s.iter().map(f).collect());
    let rss0 = m(first, &|s| s.rss_kib as f64);
    let rss1 = m(last, &|s| s.rss_kib as f64);
    let growth = if rss0 > 0.0 {
        (rss1 - rss0) / rss0
    } else {
        0.0
    };
    let anon0 = m(first, &|s| s.anon_kib as f64);
    let anon1 = m(last, &|s| s.anon_kib as f64);
    let p0 = m(first, &|s| s.p99_ms);
    let p1 = m(last, &|s| s.p99_ms);
    let fd0 = m(first, &|s| s.fds as f64);
    let fd1 = m(last, &|s| s.fds as f64);
    let th0 = m(first, &|s| s.threads as f64);
    let th1 = m(last, &|s| s.threads as f64);
    // The live store over the last hour (the last half of a shorter run), once its windows
    // are reached: the median of its first tenth against that of its last tenth.
    let span = (minutes * 30).min(3600) as f64;
    let end = samples.last().map_or(0.0, |s| s.at_s);
    let tail: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= end - span).collect();
    let tenth = (tail.len() / 10).max(1);
    let growth_of = |f: &dyn Fn(&Sample) -> f64| {
        let part_median = |part: &[&Sample]| median(part.iter().map(|s| f(s)).collect());
        let before = part_median(&tail[..tenth.min(tail.len())]);
        let after = part_median(&tail[tail.len().saturating_sub(tenth)..]);
        let growth = if before > 0.0 {
            (after - before) / before
        } else {
            0.0
        };
        (before, after, growth)
    };
    // The log is reused from its beginning once at its bound, so the two together can look
    // flat while the database grows: both are checked.
    let (db0, db1, db_growth) = growth_of(&|s| s.state_db_mib + s.wal_mib);
    let (file0, file1, file_growth) = growth_of(&|s| s.state_db_mib);
    let archive_mib = samples.last().map_or(0.0, |s| s.archive_mib);
    let segments = std::fs::read_dir(archive_dir.join(&rig.gateways[0].instance))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
                .count()
        })
        .unwrap_or(0);
    let mut out = Outcome {
        name: "soak at half capacity",
        ledger,
        checks: Vec::new(),
        figures: vec![
            format!(
                "capacity {capacity:.0} msg/s end to end (median of {}) → soak at {rate:.0} msg/s{} for {minutes} min ({} samples, every {sample_secs} s)",
                bursts
                    .iter()
                    .map(|b| format!("{:.0} (intake {:.0})", b.end_to_end, b.intake))
                    .collect::<Vec<_>>()
                    .join(", "),
                if fixed_rate.is_some() {
                    " (fixed by --rate)"
                } else {
                    ""
                },
                samples.len()
            ),
            format!(
                "RSS {:.1} → {:.1} MiB ({:+.1} %; anonymous {:.1} → {:.1} MiB), p99 {p0:.1} → {p1:.1} ms, fds {fd0:.0} → {fd1:.0}, threads {th0:.0} → {th1:.0}",
                rss0 / 1024.0,
                rss1 / 1024.0,
                growth * 100.0,
                anon0 / 1024.0,
                anon1 / 1024.0,
            ),
            format!(
                "windows: receipts {} s, audit live {} s, a segment archived every {} s; live database + WAL {db0:.1} → {db1:.1} MiB over the last {:.0} min ({:+.1} %; the database alone {file0:.1} → {file1:.1} MiB, {:+.1} %), archive {archive_mib:.1} MiB in {segments} segments",
                windows.receipts_secs,
                windows.audit_live_secs,
                windows.archive_secs,
                span / 60.0,
                db_growth * 100.0,
                file_growth * 100.0
            ),
            format!("curve: {} and soak.csv", dir.join("soak.svg").display()),
        ],
        elapsed: started.elapsed(),
    };
    out.standard(0);
    out.check(
        format!("RSS growth {:+.1} % ≤ 5 %", growth * 100.0),
        growth <= 0.05,
    );
    out.check(
        format!("p99 stable ({p1:.1} ms ≤ 1.5 × {p0:.1} ms + 5 ms)"),
        p1 <= p0 * 1.5 + 5.0,
    );
    out.check(
        format!(
            "live database + WAL flat over the last {:.0} min ({:+.1} % ≤ 10 %)",
            span / 60.0,
            db_growth * 100.0
        ),
        db_growth <= 0.10,
    );
    out.check(
        format!(
            "live database alone flat over the last {:.0} min ({:+.1} % ≤ 10 %)",
            span / 60.0,
            file_growth * 100.0
        ),
        file_growth <= 0.10,
    );
    out.check(
        format!(
            "the audit trail archived ({segments} sealed segments; the chain check above reads them with the live store)"
        ),
        segments > 0,
    );
    out.check(
        format!("no growth in open files ({fd0:.0} → {fd1:.0})"),
        fd1 <= fd0 + 5.0,
    );
    out.check(
        format!("no growth in threads ({th0:.0} → {th1:.0})"),
        th1 <= th0 + 2.0,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Counters, Latency, Totals, windows_for};

    #[test]
    fn a_two_hour_soak_reaches_its_windows_in_its_first_half() {
        let w = windows_for(120);
        assert_eq!(
            (w.receipts_secs, w.audit_live_secs, w.archive_secs),
            (600, 1800, 600)
        );
        let short = windows_for(0);
        assert!(short.receipts_secs > 0 && short.archive_secs > 0);
    }

    #[test]
    fn the_gateways_counters_are_read_from_its_metrics() {
        let text = "\
# HELP wingspan_accept_seconds From intake to acceptance.
# TYPE wingspan_accept_seconds histogram
wingspan_accept_seconds_bucket{le=\"0.05\"} 90
wingspan_accept_seconds_bucket{le=\"0.1\"} 95
wingspan_accept_seconds_bucket{le=\"+Inf\"} 100
wingspan_accept_seconds_sum 3.5
wingspan_accept_seconds_count 100
wingspan_delivery_seconds_bucket{destination=\"police\",le=\"0.1\"} 60
wingspan_delivery_seconds_count{destination=\"police\"} 70
wingspan_delivery_seconds_bucket{destination=\"emergency\",le=\"0.1\"} 30
wingspan_delivery_seconds_count{destination=\"emergency\"} 30
wingspan_store_wal_restart_seconds_bucket{le=\"0.1\"} 1
wingspan_store_wal_restart_seconds_sum 0.25
wingspan_store_wal_restart_seconds_count 2
wingspan_store_checkpoint_seconds_bucket{le=\"0.1\"} 40
wingspan_store_checkpoint_seconds_sum 1.5
wingspan_store_checkpoint_seconds_count 50
wingspan_delivery_queued_seconds_bucket{le=\"0.1\"} 7
wingspan_delivery_queued_seconds_count 9
wingspan_audit_write_lag_seconds_bucket{le=\"0.1\"} 990
wingspan_audit_write_lag_seconds_count 999
";
        let c = Counters::parse(text);
        let latency = |count, fast| Latency { count, fast };
        let totals = |count, sum_s| Totals { count, sum_s };
        assert_eq!(c.accepts, latency(100.0, 95.0));
        assert_eq!(c.deliveries, latency(100.0, 90.0));
        assert_eq!(c.pauses, totals(2.0, 0.25));
        assert_eq!(c.checkpoints, totals(50.0, 1.5));
        assert_eq!(c.commits, latency(999.0, 990.0));
        assert_eq!(c.queued, latency(9.0, 7.0));
        assert_eq!(c.accepts.slow_since(latency(40.0, 38.0)), 3);
    }
}
