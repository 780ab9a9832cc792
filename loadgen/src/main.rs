//! HTTPS ingress benchmark: the same load, side by side in one run, against
//! - the gateway's HTTPS listener, each connection authenticated by a client certificate
//!   (mutual TLS, keep-alive),
//! - the gateway's plain-HTTP listener (bearer token, keep-alive),
//! - the raw HTTP floor: an axum handler in a process of its own that only publishes each
//!   body with confirms to a quorum queue on the same broker (see `floor.rs`), over the same
//!   number of keep-alive connections,
//! - the broker itself: persistent publishes to a quorum queue, each awaiting its confirm
//!   (the raw rate an upstream could reach with no gateway and no HTTP at all).
//!
//! The gateway runs as a process of its own (`wingspan run`, the release binary beside this
//! one, or `WINGSPAN_BIN`), the floor as another (this binary, `floor PORT QUEUE`); this
//! process is the load generator. Every request is a distinct ~1 KB
//! `enforcement.material.submit` from rehab, answered 202 by the gateway only once its copy to
//! the partner (police adapter, XML) is confirmed and its receipt and audit records are
//! durable. Each HTTP run also reports the CPU its server process spent per request (user +
//! system, every thread, from /proc/<pid>/stat: the gateway or the floor alone, not the broker
//! and not this process). Runs alternate (raw, floor, HTTPS, HTTP, …); medians and ratios are
//! printed, the last line as `tls_cost=<1 - https/http> https_over_raw=<https/raw>
//! http_over_floor=<http/floor> http_cpu_us=<gateway µs/request> floor_cpu_us=<floor
//! µs/request> https=<req/s> http=<req/s> floor=<req/s> raw=<msg/s>`.
//!
//! `cargo build --release -p wingspan -p wingspan-loadgen &&
//!  target/release/wingspan-ingress-bench [SECONDS_PER_RUN] [RUNS] [CONNECTIONS]`
//! (defaults 10 5 32). The broker is `WINGSPAN_AMQP_URL` or 127.0.0.1:5672 (guest).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wingspan::usage::Usage;

mod floor;

const TOKEN: &str = "ingress-bench-token";

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

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh CA, a server certificate for 127.0.0.1 and a client certificate naming rehab.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "ingress bench CA");
    let issuer = CertifiedIssuer::self_signed(ca, ca_key)?;
    let issue = |name: &str, usage| -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec![name.to_owned()])?;
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    Ok(Pki {
        ca: issuer.pem(),
        server: issue("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth)?,
        client: issue("rehab", ExtendedKeyUsagePurpose::ClientAuth)?,
    })
}

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Setup {
    dir: PathBuf,
    prefix: String,
    http: u16,
    https: u16,
    pki: Pki,
}

fn write_config(setup: &Setup) -> anyhow::Result<PathBuf> {
    let d = &setup.dir;
    std::fs::write(d.join("ca.pem"), &setup.pki.ca)?;
    std::fs::write(d.join("server.pem"), &setup.pki.server.0)?;
    std::fs::write(d.join("server.key"), &setup.pki.server.1)?;
    let text = format!(
        r#"[gateway]
instance = "ingress-bench"
schemas_dir = {schemas:?}
state_dir = {state:?}
[http]
listen = "127.0.0.1:{http}"
plaintext = true
[tls]
listen = "127.0.0.1:{https}"
cert_file = "server.pem"
key_file = "server.key"
client_ca_file = "ca.pem"
[admin]
listen = "127.0.0.1:{admin}"
[broker]
url = {url:?}
prefix = "{prefix}"
[limits]
rate_per_sec = 1000000
burst = 1000000
[[sources]]
id = "rehab"
message_types = ["enforcement.material.submit"]
tokens_sha256 = ["{token}"]
[[destinations]]
id = "partner"
adapter = "police"
amqp = {{ exchange = "{prefix}.partner", routing_key = "in" }}
fields = {{ "enforcement.material.submit" = ["material_id", "material_type", "centre", "person", "police_bureau", "summary", "documents", "respond_by"] }}
[[routes]]
name = "all"
message_types = ["enforcement.material.submit"]
destinations = ["partner"]
"#,
        schemas = repo().join("schemas").display().to_string(),
        state = d.join("state").display().to_string(),
        http = setup.http,
        https = setup.https,
        admin = free_port()?,
        url = url(),
        prefix = setup.prefix,
        token = sha256_hex(TOKEN),
    );
    let file = d.join("wingspan.toml");
    std::fs::write(&file, text)?;
    Ok(file)
}

fn gateway_binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("WINGSPAN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    let beside = me
        .parent()
        .map(|p| p.join("wingspan"))
        .ok_or_else(|| anyhow::anyhow!("no directory"))?;
    anyhow::ensure!(
        beside.exists(),
        "build the gateway first: cargo build --release -p wingspan"
    );
    Ok(beside)
}

/// Messages of about 1 KB, each with its own id.
fn body(i: u64) -> Vec<u8> {
    let mut m = wingspan_sim::samples::material_submit(i);
    let size = serde_json::to_vec(&m).map(|b| b.len()).unwrap_or(0);
    if size < 1024
        && let Some(summary) = m["payload"]["summary"].as_str()
    {
        let padded = format!("{summary} {}", "·".repeat((1024 - size) / 2));
        m["payload"]["summary"] = padded.into();
    }
    serde_json::to_vec(&m).unwrap_or_default()
}

/// One timed HTTP run: accepted requests per second and the CPU its server process spent
/// per request.
#[derive(Debug, Clone, Copy)]
struct HttpRun {
    rate: f64,
    cpu_us: f64,
}

/// `connections` keep-alive clients posting for `secs` to the server process `server`.
async fn measured_load(
    server: u32,
    client: reqwest::Client,
    url: String,
    token: Option<&'static str>,
    secs: u64,
    connections: usize,
    next: Arc<AtomicU64>,
) -> anyhow::Result<HttpRun> {
    let before = Usage::of(server);
    let started = Instant::now();
    let n = http_load(client, url, token, secs, connections, next).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let used = Usage::of(server).since(before);
    Ok(HttpRun {
        rate: n as f64 / elapsed,
        cpu_us: used.cpu.as_secs_f64() * 1e6 / n.max(1) as f64,
    })
}

/// `connections` keep-alive clients posting for `secs`; the number of accepted requests.
async fn http_load(
    client: reqwest::Client,
    url: String,
    token: Option<&'static str>,
    secs: u64,
    connections: usize,
    next: Arc<AtomicU64>,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body(next.fetch_add(1, Ordering::Relaxed)));
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let r = req.send().await?;
                anyhow::ensure!(r.status() == 202, "status {}", r.status());
                let _ = r.bytes().await?;
                done += 1;
            }
            Ok::<u64, anyhow::Error>(done)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok(total)
}

/// `connections` publishers, each publishing one persistent message and awaiting its
/// confirm before the next; messages per second.
async fn raw_load(
    conn: &Connection,
    queue: &str,
    secs: u64,
    connections: usize,
    next: Arc<AtomicU64>,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let (queue, next) = (queue.to_owned(), next.clone());
        tasks.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let confirm = ch
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &body(next.fetch_add(1, Ordering::Relaxed)),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?
                    .await?;
                anyhow::ensure!(confirm.is_ack(), "nack");
                done += 1;
            }
            Ok::<u64, anyhow::Error>(done)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn tls_client(pki: &Pki) -> anyhow::Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca.as_bytes()) {
        roots.add(c?)?;
    }
    let chain =
        CertificateDer::pem_slice_iter(pki.client.0.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(pki.client.1.as_bytes())?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .pool_max_idle_per_host(1024)
        .build()?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn wait_ready(http: u16, what: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client
            .get(format!("http://127.0.0.1:{http}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the {what} did not become ready")
}

async fn cleanup(conn: &Connection, setup: &Setup, raw_queue: &str) -> anyhow::Result<()> {
    let ch = conn.create_channel().await?;
    let loaded = wingspan::load::load(&setup.dir.join("wingspan.toml"))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let names = wingspan::broker::Names::new(&setup.prefix);
    wingspan::broker::topology::delete(conn, &loaded.config, &names, Duration::from_secs(10))
        .await?;
    for q in [
        raw_queue.to_owned(),
        format!("{}.floor", setup.prefix),
        format!("{}.partner.queue", setup.prefix),
    ] {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    ch.exchange_delete(
        format!("{}.partner", setup.prefix).as_str().into(),
        Default::default(),
    )
    .await?;
    Ok(())
}

fn stop(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("floor") {
        let port = args.get(2).and_then(|p| p.parse().ok());
        let queue = args.get(3).cloned();
        let (Some(port), Some(queue)) = (port, queue) else {
            anyhow::bail!("usage: wingspan-ingress-bench floor PORT QUEUE");
        };
        return floor::serve(&url(), port, queue).await;
    }
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (secs, runs, connections) = (arg(1, 10), arg(2, 5) as usize, arg(3, 32) as usize);
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let dir = std::env::temp_dir().join(format!("wingspan-ingress-bench-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let setup = Setup {
        dir: dir.clone(),
        prefix: format!("bench-in-{tag}"),
        http: free_port()?,
        https: free_port()?,
        pki: pki()?,
    };
    let config = write_config(&setup)?;

    let conn = Connection::connect(&url(), ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let raw_queue = format!("{}.raw", setup.prefix);
    let floor_queue = format!("{}.floor", setup.prefix);
    for q in [&raw_queue, &floor_queue] {
        ch.queue_declare(q.as_str().into(), durable, quorum())
            .await?;
    }
    let sink = format!("{}.partner.queue", setup.prefix);
    ch.exchange_declare(
        format!("{}.partner", setup.prefix).as_str().into(),
        lapin::ExchangeKind::Direct,
        lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(sink.as_str().into(), durable, quorum())
        .await?;
    ch.queue_bind(
        sink.as_str().into(),
        format!("{}.partner", setup.prefix).as_str().into(),
        "in".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;

    let log = std::fs::File::create(dir.join("gateway.log"))?;
    let mut child = std::process::Command::new(gateway_binary()?)
        .args(["run", "--config"])
        .arg(&config)
        .env("WINGSPAN_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let floor_port = free_port()?;
    let mut floor_child = std::process::Command::new(std::env::current_exe()?)
        .arg("floor")
        .arg(floor_port.to_string())
        .arg(&floor_queue)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let (gateway, floor) = (child.id(), floor_child.id());
    let result = async {
        wait_ready(setup.http, "gateway").await?;
        wait_ready(floor_port, "floor").await?;
        let next = Arc::new(AtomicU64::new(1));
        let https_url = format!("https://127.0.0.1:{}/v1/messages", setup.https);
        let http_url = format!("http://127.0.0.1:{}/v1/messages", setup.http);
        let floor_url = format!("http://127.0.0.1:{floor_port}/v1/messages");
        let tls = tls_client(&setup.pki)?;
        let plain = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()?;
        // Warm up both listeners and the broker's queues.
        http_load(
            tls.clone(),
            https_url.clone(),
            None,
            2,
            connections,
            next.clone(),
        )
        .await?;
        http_load(
            plain.clone(),
            http_url.clone(),
            Some(TOKEN),
            2,
            connections,
            next.clone(),
        )
        .await?;
        http_load(
            plain.clone(),
            floor_url.clone(),
            None,
            2,
            connections,
            next.clone(),
        )
        .await?;
        let line = |run: usize, side: &str, r: HttpRun| {
            println!(
                "run {run}: {side:<6} {:>8.0} req/s  {:>6.1} µs CPU/req (its server alone)",
                r.rate, r.cpu_us
            );
        };
        let (mut raw, mut floors, mut https, mut http) = (vec![], vec![], vec![], vec![]);
        for run in 1..=runs {
            let r = raw_load(&conn, &raw_queue, secs, connections, next.clone()).await?;
            println!("run {run}: raw    {r:>8.0} msg/s");
            let f = measured_load(
                floor,
                plain.clone(),
                floor_url.clone(),
                None,
                secs,
                connections,
                next.clone(),
            )
            .await?;
            line(run, "floor", f);
            let s = measured_load(
                gateway,
                tls.clone(),
                https_url.clone(),
                None,
                secs,
                connections,
                next.clone(),
            )
            .await?;
            line(run, "https", s);
            let h = measured_load(
                gateway,
                plain.clone(),
                http_url.clone(),
                Some(TOKEN),
                secs,
                connections,
                next.clone(),
            )
            .await?;
            line(run, "http", h);
            raw.push(r);
            floors.push(f);
            https.push(s);
            http.push(h);
        }
        let rates = |v: &[HttpRun]| median(v.iter().map(|r| r.rate).collect());
        let cpus = |v: &[HttpRun]| median(v.iter().map(|r| r.cpu_us).collect());
        let (r, f, s, h) = (median(raw), rates(&floors), rates(&https), rates(&http));
        let (f_cpu, s_cpu, h_cpu) = (cpus(&floors), cpus(&https), cpus(&http));
        println!(
            "median of {runs} ({secs} s each, {connections} connections): https {s:.0} req/s \
             ({s_cpu:.1} µs CPU/req), http {h:.0} req/s ({h_cpu:.1} µs), floor {f:.0} req/s \
             ({f_cpu:.1} µs), raw {r:.0} msg/s"
        );
        println!(
            "tls_cost={:.3} https_over_raw={:.3} http_over_floor={:.3} http_cpu_us={h_cpu:.1} \
             floor_cpu_us={f_cpu:.1} https={s:.0} http={h:.0} floor={f:.0} raw={r:.0}",
            1.0 - s / h,
            s / r,
            h / f
        );
        Ok::<(), anyhow::Error>(())
    }
    .await;
    stop(&mut child);
    stop(&mut floor_child);
    cleanup(&conn, &setup, &raw_queue).await?;
    let _ = conn.close(200, "bench".into()).await;
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("gateway log: {}", dir.join("gateway.log").display());
    }
    result
}
