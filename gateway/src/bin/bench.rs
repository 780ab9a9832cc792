//! End-to-end throughput benchmark, side by side with a raw pass-through on the same broker.
//!
//! Both sides start from N persistent canonical messages pre-filled in a quorum queue and end
//! when all N are confirmed into a quorum queue behind the destination exchange:
//! - raw: consume → publish (persistent, mandatory, confirmed) → ack; no processing at all;
//! - gateway: the real gateway (AMQP ingress → decode, validate, route, encode → confirmed
//!   delivery to an AMQP destination → receipt committed to SQLite → ack), with the police
//!   adapter's field policy and XML encoder on (`WINGSPAN_BENCH_ADAPTER=rehab` for the
//!   canonical pass-through, `police-declared` for the police document written by the example
//!   config's declared adapter).
//!
//! Runs alternate (raw, gateway, raw, gateway, …); each run prints its rate, the CPU this
//! process spent per message (from /proc/self/stat: the side under test alone, not the
//! broker) and the bytes it wrote to storage per message (/proc/self/io); the medians and the
//! ratio follow, and the last line reads `ratio=<gateway/raw> gateway=<msg/s> raw=<msg/s>`.
//!
//! `cargo run --release -p wingspan --bin wingspan-bench -- [N] [RUNS] [gateway|raw]` (defaults
//! 50000 5, both sides). `… [N] [RUNS] declared` alternates the gateway with the built-in
//! `police` adapter and with its declared twin `police-declared` (VRL) instead, and ends with
//! `declared_ratio=<declared/built-in> declared=<msg/s> builtin=<msg/s>`.
//! `… [N] [RUNS] telemetry` alternates the gateway with no `[telemetry]` (the default) and
//! with spans exported over OTLP/HTTP to a collector in this process that reads and discards
//! them, and ends with `telemetry_ratio=<on/off> on=<msg/s> off=<msg/s>` and the CPU of each.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use wingspan::usage::Usage;
use wingspan::{Gateway, GatewayOptions};

// mimalloc: the gateway allocates many short-lived buffers per message; glibc malloc was
// ~15% of its CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Unacknowledged deliveries per consumer, the same on both sides (`WINGSPAN_BENCH_PREFETCH`).
fn prefetch() -> u16 {
    std::env::var("WINGSPAN_BENCH_PREFETCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// The destination's adapter (`WINGSPAN_BENCH_ADAPTER`, default `police`: the real XML
/// encoder on every message; `rehab` forwards the canonical bytes).
fn adapter() -> String {
    std::env::var("WINGSPAN_BENCH_ADAPTER").unwrap_or_else(|_| "police".into())
}

/// The broker login in the URL: the `user_id` the upstream's messages carry.
fn amqp_user() -> String {
    let url = url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    rest.split_once(':').map_or("guest", |(u, _)| u).to_owned()
}

fn url() -> String {
    std::env::var("WINGSPAN_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn quorum() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
    );
    t
}

async fn declare_sink(ch: &Channel, exchange: &str, queue: &str) -> anyhow::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        quorum(),
    )
    .await?;
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        "in".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// One timed run of one side.
#[derive(Debug, Clone, Copy)]
struct Run {
    rate: f64,
    /// CPU per message, microseconds (this process alone).
    cpu_us: f64,
    /// Bytes written to storage per message (this process alone).
    disk_bytes: f64,
}

impl Run {
    fn measure(n: usize, started: Instant, before: Usage) -> Self {
        let used = Usage::of_self().since(before);
        let n = n as f64;
        Self {
            rate: n / started.elapsed().as_secs_f64(),
            cpu_us: used.cpu.as_secs_f64() * 1e6 / n,
            disk_bytes: used.written as f64 / n,
        }
    }

    fn line(&self) -> String {
        format!(
            "{:>9.0} msg/s  {:>6.1} µs CPU/msg  {:>7.0} B written/msg",
            self.rate, self.cpu_us, self.disk_bytes
        )
    }
}

fn bodies(n: usize) -> Vec<Vec<u8>> {
    (0..n as u64)
        .map(|i| serde_json::to_vec(&wingspan_sim::samples::material_submit(i)).unwrap_or_default())
        .collect()
}

/// consume → publish with confirm → ack, no processing.
async fn raw(n: usize, bodies: &[Vec<u8>]) -> anyhow::Result<Run> {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (input, exchange, sink) = (
        format!("bench-raw-{tag}.in"),
        format!("bench-raw-{tag}.x"),
        format!("bench-raw-{tag}.out"),
    );
    let conn = Connection::connect(&url(), ConnectionProperties::default()).await?;
    let setup = conn.create_channel().await?;
    setup
        .queue_declare(
            input.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            quorum(),
        )
        .await?;
    declare_sink(&setup, &exchange, &sink).await?;
    wingspan::broker::publish::fill_queue(&conn, &input, bodies, None, Duration::from_secs(30))
        .await?;

    let consume = conn.create_channel().await?;
    consume
        .basic_qos(prefetch(), BasicQosOptions::default())
        .await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let before = Usage::of_self();
    let mut consumer = consume
        .basic_consume(
            input.as_str().into(),
            "raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    while done.load(Ordering::Relaxed) < n {
        tokio::select! {
            Some(delivery) = consumer.next() => {
                let delivery = delivery?;
                let (publish, exchange, done) = (publish.clone(), exchange.clone(), done.clone());
                tasks.spawn(async move {
                    let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
                    let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
                    let confirm = publish.basic_publish(exchange.as_str().into(), "in".into(), opts, &delivery.data, props).await?.await?;
                    anyhow::ensure!(confirm.is_ack() && confirm.take_message().is_none(), "raw publish not confirmed");
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                });
            }
            Some(r) = tasks.join_next() => { r??; }
        }
    }
    let rate = Run::measure(n, started, before);
    for q in [&input, &sink] {
        setup
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    setup
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await?;
    let _ = conn.close(200, "bench".into()).await;
    Ok(rate)
}

/// The real gateway with one AMQP destination.
async fn gateway(
    n: usize,
    bodies: &[Vec<u8>],
    adapter: &str,
    otlp: Option<&str>,
) -> anyhow::Result<Run> {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let prefix = format!("bench-gw-{tag}");
    let dir = std::env::temp_dir().join(&prefix);
    let schemas = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let adapters = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/adapters");
    let text = format!(
        r#"
[gateway]
instance = "bench"
schemas_dir = {schemas:?}
adapters_dir = {adapters:?}
state_dir = {state:?}
[broker]
url = {url:?}
prefix = "{prefix}"
prefetch = {prefetch}
[[sources]]
id = "rehab"
message_types = ["enforcement.material.submit"]
amqp_users = [{user:?}]
[[destinations]]
id = "partner"
adapter = "{adapter}"
amqp = {{ exchange = "{prefix}.partner", routing_key = "in" }}
fields = {{ "enforcement.material.submit" = ["material_id", "material_type", "centre", "person", "police_bureau", "summary", "documents", "respond_by"] }}
[[routes]]
name = "all"
message_types = ["enforcement.material.submit"]
destinations = ["partner"]
{telemetry}
"#,
        telemetry = otlp
            .map(|url| format!("[telemetry]\notlp_endpoint = {url:?}"))
            .unwrap_or_default(),
        schemas = schemas.display().to_string(),
        adapters = adapters.display().to_string(),
        state = dir.display().to_string(),
        url = url(),
        prefetch = prefetch(),
        user = amqp_user(),
    );
    let loaded = wingspan::load::load_str("bench.toml", &text, &dir)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let topology_only = GatewayOptions {
        http: false,
        amqp_ingress: false,
        delivery: false,
        http_listen: None,
        tls_listen: None,
        admin: false,
        admin_listen: None,
    };
    let g = Gateway::start(&loaded, topology_only).await?;
    anyhow::ensure!(
        g.wait_ready(Duration::from_secs(10)).await,
        "broker not ready"
    );
    g.shutdown().await;

    let conn = Connection::connect(&url(), ConnectionProperties::default()).await?;
    let setup = conn.create_channel().await?;
    let sink = format!("{prefix}.partner.queue");
    declare_sink(&setup, &format!("{prefix}.partner"), &sink).await?;
    let names = wingspan::broker::Names::new(&prefix);
    wingspan::broker::publish::fill_queue(
        &conn,
        &names.ingress(),
        bodies,
        Some(&amqp_user()),
        Duration::from_secs(30),
    )
    .await?;

    let started = Instant::now();
    let before = Usage::of_self();
    let options = GatewayOptions {
        http: false,
        admin: false,
        ..GatewayOptions::default()
    };
    let g = Gateway::start(&loaded, options).await?;
    while (g.stats.totals().delivered as usize) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "gateway run did not finish"
        );
    }
    let rate = Run::measure(n, started, before);
    let config = g.config.clone();
    g.shutdown().await;
    wingspan::broker::topology::delete(&conn, &config, &names, Duration::from_secs(10)).await?;
    setup
        .queue_delete(sink.as_str().into(), QueueDeleteOptions::default())
        .await?;
    setup
        .exchange_delete(
            format!("{prefix}.partner").as_str().into(),
            Default::default(),
        )
        .await?;
    let _ = conn.close(200, "bench".into()).await;
    // `WINGSPAN_BENCH_KEEP=1` keeps the state directory (database, audit trail) for a look.
    if std::env::var_os("WINGSPAN_BENCH_KEEP").is_some() {
        println!("state kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(rate)
}

/// An OTLP/HTTP collector that reads each batch and discards it (counting its bytes): the
/// exporter's cost, not a collector's.
async fn sink_collector() -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let received = Arc::new(AtomicUsize::new(0));
    let counted = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            counted.fetch_add(body.len(), Ordering::Relaxed);
            async { axum::http::StatusCode::OK }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, received))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Append `n` audit records the way intake does — five per message (received, accepted,
/// routed, attempt, delivered), from 256 concurrent callers each awaiting its commit — into a
/// fresh SQLite store, and return records per second.
async fn audit_append(n: usize) -> anyhow::Result<f64> {
    use wingspan_core::audit::{Entry, Event};
    let dir = std::env::temp_dir().join(format!("wingspan-bench-audit-{}", uuid::Uuid::new_v4()));
    let keys = wingspan::audit::AuditKeys::from_parts(
        wingspan_core::audit::Suite::default(),
        &"42".repeat(32),
        b"bench",
    )
    .ok_or_else(|| anyhow::anyhow!("keys"))?;
    let store = wingspan::store::Store::open(
        &dir,
        wingspan::store::AuditSetup {
            chain_id: "bench".into(),
            postgres: std::env::var("WINGSPAN_AUDIT_STORE")
                .ok()
                .filter(|u| !u.is_empty()),
            keys: Arc::new(keys),
            checkpoint_every: 1000,
            checkpoint_secs: 10,
            archive: None,
        },
    )?;
    let messages = n / 5;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..256 {
        let (store, next) = (store.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= messages {
                    return Ok::<(), anyhow::Error>(());
                }
                let entries = [
                    Event::Received,
                    Event::Accepted,
                    Event::Routed,
                    Event::DeliveryAttempt,
                    Event::Delivered,
                ]
                .into_iter()
                .map(|event| {
                    let mut e = Entry::new(event, wingspan::audit::now());
                    e.message_id = Some(format!("enforcement-{i:012}"));
                    e.source = Some("rehab".into());
                    e.message_type = Some("enforcement.material.submit".into());
                    e.destination = Some("police".into());
                    e.payload_sha256 = Some(wingspan_core::audit::sha256_hex(e.at.as_bytes()));
                    e.subject_ref = Some(wingspan_core::audit::sha256_hex(b"subject"));
                    e.outcome = Some("ok".into());
                    e
                })
                .collect();
                store.audit(entries).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let rate = (messages * 5) as f64 / started.elapsed().as_secs_f64();
    drop(store);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    // `gateway` or `raw` runs one side only (for profiling); the ratio needs both.
    // `audit` measures the audit store's append throughput alone (N records, RUNS runs).
    let only = args.next();
    if only.as_deref() == Some("audit") {
        let mut rates = Vec::new();
        for run in 1..=runs {
            let rate = audit_append(n).await?;
            println!("run {run}: audit append {rate:>9.0} records/s");
            rates.push(rate);
        }
        println!("audit_append_median={:.0} records/s", median(rates));
        return Ok(());
    }
    if only.as_deref() == Some("declared") {
        let bodies = bodies(n);
        println!(
            "wingspan-bench declared: N={n} persistent messages, police vs police-declared, {runs} run(s) each, alternating"
        );
        let (mut builtins, mut declared) = (Vec::new(), Vec::new());
        for run in 1..=runs {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let b = gateway(n, &bodies, "police", None).await?;
            println!("run {run}: police          {}", b.line());
            tokio::time::sleep(Duration::from_secs(3)).await;
            let d = gateway(n, &bodies, "police-declared", None).await?;
            println!("run {run}: police-declared {}", d.line());
            builtins.push(b.rate);
            declared.push(d.rate);
        }
        let (b, d) = (median(builtins), median(declared));
        println!("declared_ratio={:.3} declared={d:.0} builtin={b:.0}", d / b);
        return Ok(());
    }
    if only.as_deref() == Some("telemetry") {
        let bodies = bodies(n);
        let (collector, received) = sink_collector().await?;
        println!(
            "wingspan-bench telemetry: N={n} persistent messages, spans off vs exported over OTLP, {runs} run(s) each, alternating"
        );
        let (mut offs, mut ons, mut off_cpu, mut on_cpu) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 1..=runs {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let off = gateway(n, &bodies, &adapter(), None).await?;
            println!("run {run}: off {}", off.line());
            tokio::time::sleep(Duration::from_secs(3)).await;
            let on = gateway(n, &bodies, &adapter(), Some(&collector)).await?;
            println!("run {run}: on  {}", on.line());
            offs.push(off.rate);
            ons.push(on.rate);
            off_cpu.push(off.cpu_us);
            on_cpu.push(on.cpu_us);
        }
        println!(
            "collector received {} MB of spans",
            received.load(Ordering::Relaxed) >> 20
        );
        let (off, on) = (median(offs), median(ons));
        println!(
            "cpu_us_per_msg on={:.1} off={:.1} (medians)",
            median(on_cpu),
            median(off_cpu)
        );
        println!("telemetry_ratio={:.3} on={on:.0} off={off:.0}", on / off);
        return Ok(());
    }
    if let Some(side) = only.as_deref() {
        let bodies = bodies(n);
        for run in 1..=runs {
            let run_ = if side == "raw" {
                raw(n, &bodies).await?
            } else {
                gateway(n, &bodies, &adapter(), None).await?
            };
            println!("run {run}: {side} {}", run_.line());
        }
        return Ok(());
    }
    let bodies = bodies(n);
    println!(
        "wingspan-bench: N={n} persistent messages ({} bytes each), quorum queues, prefetch {}, {runs} run(s) each, alternating",
        bodies[0].len(),
        prefetch()
    );
    let (mut raws, mut gws) = (Vec::new(), Vec::new());
    let (mut raw_cpu, mut gw_cpu, mut gw_disk) = (Vec::new(), Vec::new(), Vec::new());
    // The broker keeps working after a run (deleting queues, compacting its logs); give it a
    // moment so one side does not pay for the other's clean-up.
    let settle = || tokio::time::sleep(Duration::from_secs(3));
    for run in 1..=runs {
        settle().await;
        let r = raw(n, &bodies).await?;
        println!("run {run}: raw     {}", r.line());
        settle().await;
        let g = gateway(n, &bodies, &adapter(), None).await?;
        println!("run {run}: gateway {}", g.line());
        raws.push(r.rate);
        gws.push(g.rate);
        raw_cpu.push(r.cpu_us);
        gw_cpu.push(g.cpu_us);
        gw_disk.push(g.disk_bytes);
    }
    let (r, g) = (median(raws), median(gws));
    println!(
        "cpu_us_per_msg gateway={:.1} raw={:.1}; disk_bytes_per_msg gateway={:.0} (medians)",
        median(gw_cpu),
        median(raw_cpu),
        median(gw_disk)
    );
    println!("ratio={:.3} gateway={g:.0} raw={r:.0}", g / r);
    Ok(())
}
