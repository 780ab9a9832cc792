//! The rig a scenario runs on: partner simulators, one or more gateway processes (the real
//! `wingspan` binary, so it can be SIGKILLed), a config written for them, an upstream load
//! that behaves like the platform (it sends each message until it gets a receipt), and the
//! ledger at the end.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use wingspan_sim::{Partner, PartnerOptions, samples};

use crate::node::free_port;

/// `dev-rehab-token`, the example config's development token for the platform.
const REHAB_TOKEN: &str = "dev-rehab-token";
const REHAB_TOKEN_SHA256: &str = "61185c9583910ab3f7a3aad05723a82d67d35c50adde742ccf8744b0a86e4823";
/// `dev-operator-token`.
pub const OPERATOR_TOKEN: &str = "dev-operator-token";
const OPERATOR_TOKEN_SHA256: &str =
    "277e6a75a6980887d1bc5c738e59a2504e3e2696d8f9fbf675b7fc49dabd2cf8";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `wingspan` binary: `WINGSPAN_BIN`, else beside this executable (or one level up, for
/// test executables in `deps/`).
pub fn gateway_binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("WINGSPAN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    for dir in me.ancestors().skip(1).take(2) {
        let candidate = dir.join("wingspan");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("build the gateway first (cargo build --release -p wingspan) or set WINGSPAN_BIN")
}

/// What a rig is built with.
#[derive(Debug, Clone)]
pub struct RigOptions {
    /// Every broker node's URL (the gateway tries them in turn).
    pub broker_urls: Vec<String>,
    /// The shared PostgreSQL audit store, or `None` for each instance's SQLite.
    pub audit_store: Option<String>,
    pub instances: usize,
    pub retry_delays_ms: Vec<u64>,
    pub max_attempts: u32,
    pub heartbeat_secs: u16,
    pub operation_timeout_ms: u64,
    /// Retention windows and archiving, for runs long enough to reach their steady state
    /// (`None`: the gateway's defaults, windows of 30 days).
    pub windows: Option<Windows>,
    /// Police materials go to an AMQP partner as well (a queue bound to the exchange the
    /// gateway publishes to), whose copies are counted by message id: this partner has no
    /// `Idempotency-Key` and cannot deduplicate, so its destination delivers once
    /// (`amqp.once`).
    pub amqp_partner: bool,
}

/// `[retention]` receipts and audit-live windows and `[audit] archive_secs`, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub receipts_secs: u64,
    pub audit_live_secs: u64,
    pub archive_secs: u64,
}

impl RigOptions {
    pub fn new(broker_url: String) -> Self {
        Self {
            broker_urls: vec![broker_url],
            audit_store: None,
            instances: 1,
            retry_delays_ms: vec![300, 600, 1200, 2400],
            max_attempts: 12,
            heartbeat_secs: 5,
            operation_timeout_ms: 3000,
            windows: None,
            amqp_partner: false,
        }
    }
}

/// One gateway process.
#[derive(Debug)]
pub struct GatewayProc {
    pub instance: String,
    pub http: u16,
    pub admin: u16,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl GatewayProc {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(gateway_binary()?)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("WINGSPAN_LOG", "warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawn the gateway")?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, reaped.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the graceful stop (final audit checkpoint).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    pub async fn wait_ready(&self, http: &reqwest::Client, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let ready = http
                .get(format!("{}/readyz", self.base()))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Whether `/readyz` answers 200 now.
    pub async fn ready(&self, http: &reqwest::Client) -> bool {
        http.get(format!("{}/readyz", self.base()))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's resident set, KiB (0 when it is not running).
    pub fn rss_kib(&self) -> u64 {
        let Some(c) = &self.child else { return 0 };
        std::fs::read_to_string(format!("/proc/{}/status", c.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// The Prometheus text of `GET /metrics` on the admin listener.
    pub async fn metrics(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        Ok(http
            .get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// Parked message ids, from the operator API.
    pub async fn parked(&self, http: &reqwest::Client) -> anyhow::Result<Vec<(String, String)>> {
        let v: Value = http
            .get(format!(
                "http://127.0.0.1:{}/admin/dead-letters",
                self.admin
            ))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        Ok(v["dead_letters"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|d| {
                        Some((
                            d["message_id"].as_str()?.to_owned(),
                            d["reason"].as_str().unwrap_or("").to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `wingspan audit verify` over this instance's store (all chains of a shared store).
    pub fn verify_audit(&self) -> anyhow::Result<bool> {
        let out = Command::new(gateway_binary()?)
            .args(["audit", "verify", "--config"])
            .arg(&self.config)
            .output()?;
        Ok(out.status.success())
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Partners, gateways and their config.
#[derive(Debug)]
pub struct Rig {
    pub dir: PathBuf,
    pub prefix: String,
    pub police: Partner,
    pub emergency: Partner,
    pub gateways: Vec<GatewayProc>,
    pub http: reqwest::Client,
    pub amqp_partner: Option<AmqpPartner>,
}

/// A partner reached over AMQP: a durable queue bound to the exchange the gateway publishes
/// the police materials to, read at the end.
#[derive(Debug, Clone)]
pub struct AmqpPartner {
    url: String,
    pub exchange: String,
    queue: String,
}

/// The police materials' field policy (the HTTP police partner's and the AMQP partner's).
const POLICE_FIELDS: &str = r#"{ "enforcement.material.submit" = ["material_id", "material_type", "centre.id", "centre.name", "centre.division_code", "person", "police_bureau", "summary", "documents", "respond_by"] }"#;

/// The AMQP partner's routing key.
const AMQP_PARTNER_KEY: &str = "materials";

impl AmqpPartner {
    /// Declare the partner's exchange (as the gateway would: durable, direct), its queue and
    /// the binding, before any gateway publishes there.
    async fn declare(url: &str, prefix: &str) -> anyhow::Result<Self> {
        use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let partner = Self {
            url: url.to_owned(),
            exchange: format!("{prefix}.partner.police-mq"),
            queue: format!("{prefix}.partner.police-mq.in"),
        };
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        ch.exchange_declare(
            partner.exchange.as_str().into(),
            lapin::ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(
            partner.queue.as_str().into(),
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.queue_bind(
            partner.queue.as_str().into(),
            partner.exchange.as_str().into(),
            AMQP_PARTNER_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        let _ = conn.close(200, "declared".into()).await;
        Ok(partner)
    }

    /// Take every copy received so far: how many of each message id.
    pub async fn drain(&self) -> anyhow::Result<HashMap<String, usize>> {
        let conn =
            lapin::Connection::connect(&self.url, lapin::ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        let mut copies: HashMap<String, usize> = HashMap::new();
        while let Some(msg) = ch
            .basic_get(
                self.queue.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await?
        {
            let id = msg
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map_or_else(|| "(no message id)".to_owned(), |m| m.as_str().to_owned());
            *copies.entry(id).or_default() += 1;
        }
        let _ = conn.close(200, "drained".into()).await;
        Ok(copies)
    }
}

#[allow(clippy::too_many_arguments)]
fn config_text(
    o: &RigOptions,
    instance: &str,
    prefix: &str,
    state: &Path,
    http: u16,
    admin: u16,
    police: &str,
    emergency: &str,
) -> String {
    let audit = match &o.audit_store {
        Some(url) => format!("store = {url:?}\n"),
        None => String::new(),
    };
    let (mq_destination, mq_route) = if o.amqp_partner {
        (
            format!(
                r#"
[[destinations]]
id = "police-mq"
adapter = "police"
amqp = {{ exchange = "{prefix}.partner.police-mq", routing_key = "{AMQP_PARTNER_KEY}", once = true }}
retry = {{ max_attempts = {max_attempts} }}
fields = {POLICE_FIELDS}
"#,
                max_attempts = o.max_attempts
            ),
            ", \"police-mq\"",
        )
    } else {
        (String::new(), "")
    };
    let (archive, retention) = match o.windows {
        Some(w) => (
            format!("archive_secs = {}\n", w.archive_secs),
            format!(
                "[retention]\nreceipts_secs = {}\naudit_live_secs = {}\n\n",
                w.receipts_secs, w.audit_live_secs
            ),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"# Written by wingspan-chaos for one scenario run.
[gateway]
instance = "{instance}"
schemas_dir = {schemas:?}
state_dir = {state:?}

[http]
listen = "127.0.0.1:{http}"
plaintext = true

[admin]
listen = "127.0.0.1:{admin}"

[[admin.users]]
name = "chaos-operator"
role = "operator"
token_sha256 = "{OPERATOR_TOKEN_SHA256}"

[broker]
urls = {urls:?}
prefix = "{prefix}"
queue_type = "quorum"
prefetch = 256
heartbeat_secs = {heartbeat}
operation_timeout_ms = {op_timeout}
retry_delays_ms = {delays:?}
delivery_limit = 20

[limits]
rate_per_sec = 1000000
burst = 1000000

{retention}[audit]
{audit}{archive}# Shared by every instance of the rig: one signing key, one subject-reference secret.
signing_key_file = {signing:?}
subject_key_file = {subject:?}
checkpoint_every = 1000
checkpoint_secs = 5

[[sources]]
id = "rehab"
message_types = ["enforcement.material.submit", "emergency.transfer.request"]
tokens_sha256 = ["{REHAB_TOKEN_SHA256}"]

[[destinations]]
id = "police"
adapter = "police"
concurrency = 16
http = {{ url = "http://{police}/messages", timeout_ms = 5000 }}
retry = {{ max_attempts = {max_attempts} }}
fields = {POLICE_FIELDS}

[[destinations]]
id = "emergency"
adapter = "emergency"
concurrency = 16
http = {{ url = "http://{emergency}/messages", timeout_ms = 5000 }}
retry = {{ max_attempts = {max_attempts} }}
fields = {{ "emergency.transfer.request" = ["transfer_id", "consultation_id", "centre", "person", "pickup", "condition", "requested_at"] }}
{mq_destination}
[[routes]]
name = "materials-to-police"
message_types = ["enforcement.material.submit"]
destinations = ["police"{mq_route}]

[[routes]]
name = "transfers-to-120"
message_types = ["emergency.transfer.request"]
destinations = ["emergency"]
"#,
        schemas = repo().join("schemas").display().to_string(),
        state = state.display().to_string(),
        signing = state
            .parent()
            .unwrap_or(state)
            .join("audit-signing.key")
            .display()
            .to_string(),
        subject = state
            .parent()
            .unwrap_or(state)
            .join("audit-subject.key")
            .display()
            .to_string(),
        urls = o.broker_urls,
        heartbeat = o.heartbeat_secs,
        op_timeout = o.operation_timeout_ms,
        delays = o.retry_delays_ms,
        max_attempts = o.max_attempts,
    )
}

impl Rig {
    /// Partners up, configs written, gateways started and ready.
    pub async fn start(dir: &Path, options: &RigOptions) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        std::fs::create_dir_all(dir)?;
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let prefix = format!("chaos-{tag}");
        let partner = |name: &str, adapter: &str| PartnerOptions {
            name: name.into(),
            reply_as: None,
            gateway: None,
            adapter: adapter.into(),
        };
        let police = Partner::start("127.0.0.1:0", partner("police", "police")).await?;
        let emergency = Partner::start("127.0.0.1:0", partner("emergency", "emergency")).await?;
        let amqp_partner = match (options.amqp_partner, options.broker_urls.first()) {
            (true, Some(url)) => Some(AmqpPartner::declare(url, &prefix).await?),
            _ => None,
        };
        // An experiment's knob: the gateways' state stores on another file system (a tmpfs,
        // say), to tell what their disk writes cost everything else on the machine.
        let state_root = std::env::var_os("WINGSPAN_CHAOS_STATE_ROOT")
            .map_or_else(|| dir.to_path_buf(), |r| PathBuf::from(r).join(&prefix));
        let mut gateways = Vec::new();
        for n in 0..options.instances {
            let instance = format!("{prefix}-gw{n}");
            let state_dir = state_root.join(format!("state-{n}"));
            let (http, admin) = (free_port()?, free_port()?);
            let config = dir.join(format!("gateway-{n}.toml"));
            std::fs::write(
                &config,
                config_text(
                    options,
                    &instance,
                    &prefix,
                    &state_dir,
                    http,
                    admin,
                    &police.addr().to_string(),
                    &emergency.addr().to_string(),
                ),
            )?;
            gateways.push(GatewayProc {
                instance,
                http,
                admin,
                config,
                state_dir,
                log: dir.join(format!("gateway-{n}.log")),
                child: None,
            });
        }
        let rig = Self {
            dir: dir.to_path_buf(),
            prefix,
            police,
            emergency,
            gateways,
            amqp_partner,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()?,
        };
        let mut rig = rig;
        // One after the other: the first creates the shared audit keys.
        for g in &mut rig.gateways {
            g.spawn()?;
            anyhow::ensure!(
                g.wait_ready(&rig.http, Duration::from_secs(60)).await,
                "gateway {} not ready (see {})",
                g.instance,
                g.log.display()
            );
        }
        Ok(rig)
    }

    /// Gateway `n` killed (SIGKILL) and started again at once, as a supervisor would.
    pub async fn crash_and_restart(&mut self, n: usize) -> anyhow::Result<Duration> {
        let g = &mut self.gateways[n];
        g.kill9();
        let t = Instant::now();
        g.spawn()?;
        anyhow::ensure!(
            g.wait_ready(&self.http, Duration::from_secs(60)).await,
            "gateway {} did not come back",
            g.instance
        );
        Ok(t.elapsed())
    }

    /// Every gateway stopped gracefully.
    pub fn stop(&mut self) {
        for g in &mut self.gateways {
            g.stop();
        }
    }
}

/// What to send: `n` messages, `mix` = every k-th a 120 transfer (others police materials),
/// every `poison_every`-th (if any) a message the police partner will refuse.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub n: usize,
    pub transfer_every: usize,
    pub poison_every: Option<usize>,
}

impl Plan {
    /// Message `i`'s id after its kind: a version 4 UUID, random as real upstreams send
    /// them (sequential ids would hide the store's random-write costs), yet the same for the
    /// same seed and `i`, so a ledger can be checked again.
    fn uuid(&self, i: usize) -> uuid::Uuid {
        fn mix(mut z: u64) -> u64 {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        let a = mix(self.seed ^ mix(i as u64));
        let b = mix(a ^ 0x5851_f42d_4c95_7f2d);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    pub fn message(&self, i: usize) -> (String, Value) {
        let k = i as u64;
        let (mut msg, id) = if self.poison_every.is_some_and(|p| i % p == p - 1) {
            (
                samples::material_submit(k),
                format!("poison-{}", self.uuid(i)),
            )
        } else if self.transfer_every > 0 && i % self.transfer_every == self.transfer_every - 1 {
            (
                samples::transfer_request(k),
                format!("transfer-{}", self.uuid(i)),
            )
        } else {
            (
                samples::material_submit(k),
                format!("material-{}", self.uuid(i)),
            )
        };
        msg["message_id"] = Value::String(id.clone());
        (id, msg)
    }
}

/// What the upstream saw.
#[derive(Debug, Default)]
pub struct Upstream {
    /// Message id → when its receipt came (first time).
    pub accepted: Mutex<HashMap<String, Instant>>,
    /// (when, status) of every answer that was not a receipt (503, 409, connection refused = 0).
    pub refusals: Mutex<Vec<(Instant, u16)>>,
    pub sent: AtomicUsize,
    pub attempts: AtomicU64,
    /// Set to stop taking new messages (each one started is still sent until it has a receipt).
    pub stop: std::sync::atomic::AtomicBool,
    /// Send every retry to the next instance (as a load balancer spreading an upstream's
    /// retries would), not only after a refused connection.
    pub round_robin: std::sync::atomic::AtomicBool,
}

impl Upstream {
    /// Make room for `n` more receipts now, not by growing the table under its lock while
    /// senders wait (see `Partner::reserve`).
    pub fn reserve(&self, n: usize) {
        self.accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reserve(n);
    }

    /// The ids of every message that has a receipt.
    pub fn accepted_ids<C: FromIterator<String>>(&self) -> C {
        self.accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn accepted_count(&self) -> usize {
        self.accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn last_accept(&self) -> Option<Instant> {
        self.accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .max()
            .copied()
    }

    /// The first receipt after `t`.
    pub fn first_accept_after(&self, t: Instant) -> Option<Instant> {
        self.accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|a| **a > t)
            .min()
            .copied()
    }

    pub fn first_refusal_after(&self, t: Instant) -> Option<Instant> {
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(a, s)| *a > t && *s == 503)
            .map(|(a, _)| *a)
            .min()
    }
}

/// Send the plan as the platform would: `concurrency` senders, each message until it has a
/// receipt (same message id every time), spread over the gateways' HTTP listeners.
pub async fn send(
    http: reqwest::Client,
    bases: Vec<String>,
    plan: Plan,
    concurrency: usize,
    upstream: Arc<Upstream>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, bases, plan, upstream, next) = (
            http.clone(),
            bases.clone(),
            plan.clone(),
            upstream.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                if upstream.stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.n {
                    break;
                }
                send_one(&http, &bases, &plan, i, &upstream).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Message `i` of the plan, sent until it has a receipt: 503, 409, 429 and refused
/// connections are retried with backoff (another instance after a refused connection); any
/// other answer is a refusal for good, reported.
pub async fn send_one(
    http: &reqwest::Client,
    bases: &[String],
    plan: &Plan,
    i: usize,
    upstream: &Upstream,
) {
    let (id, msg) = plan.message(i);
    let body = serde_json::to_vec(&msg).unwrap_or_default();
    upstream.sent.fetch_add(1, Ordering::Relaxed);
    let mut backoff = Duration::from_millis(20);
    let mut target = i;
    loop {
        upstream.attempts.fetch_add(1, Ordering::Relaxed);
        let base = &bases[target % bases.len()];
        let answer = http
            .post(format!("{base}/v1/messages"))
            .bearer_auth(REHAB_TOKEN)
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(15))
            .body(body.clone())
            .send()
            .await;
        let status = answer.as_ref().map_or(0, |r| r.status().as_u16());
        if status == 200 || status == 202 {
            upstream
                .accepted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(id)
                .or_insert_with(Instant::now);
            return;
        }
        if !(status == 0 || status == 409 || status == 429 || status == 503) {
            let text = match answer {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            eprintln!("upstream: message {id} refused for good ({status}): {text}");
            return;
        }
        {
            let mut r = upstream.refusals.lock().unwrap_or_else(|p| p.into_inner());
            if r.len() < 1_000_000 {
                r.push((Instant::now(), status));
            }
        }
        // A refused connection: try another instance next (every retry, round-robin).
        if status == 0 || upstream.round_robin.load(Ordering::Relaxed) {
            target += 1;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// The end of a scenario: every accepted message accounted for.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub accepted: usize,
    pub delivered: usize,
    pub parked: usize,
    pub lost: usize,
    /// Messages a partner acted on more than once (accepted under two keys, or a key twice).
    pub duplicated_downstream: usize,
    /// Repeat deliveries of a key the partner had already done, absorbed by Idempotency-Key.
    pub redeliveries_absorbed: u64,
    /// Of `duplicated_downstream`, messages the AMQP partner (when the rig has one) received
    /// more than once, by message id; and the materials it never received (in `lost`).
    pub amqp_duplicated: usize,
    pub amqp_missing: usize,
    pub audit_verified: bool,
    pub lost_ids: Vec<String>,
}

impl Ledger {
    /// Two runs' ledgers as one: counts added, the audit verified only if both verified.
    pub fn plus(mut self, other: Ledger) -> Ledger {
        self.accepted += other.accepted;
        self.delivered += other.delivered;
        self.parked += other.parked;
        self.lost += other.lost;
        self.duplicated_downstream += other.duplicated_downstream;
        self.redeliveries_absorbed += other.redeliveries_absorbed;
        self.amqp_duplicated += other.amqp_duplicated;
        self.amqp_missing += other.amqp_missing;
        self.audit_verified &= other.audit_verified;
        self.lost_ids.extend(other.lost_ids);
        self
    }
}

impl std::fmt::Display for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "accepted {}, delivered {}, parked {}, lost {}, duplicated downstream {} (at the AMQP partner {}), redeliveries absorbed {}, audit chain verified {}",
            self.accepted,
            self.delivered,
            self.parked,
            self.lost,
            self.duplicated_downstream,
            self.amqp_duplicated,
            self.redeliveries_absorbed,
            if self.audit_verified { "yes" } else { "no" }
        )
    }
}

/// Wait (up to `within`) until every accepted message is delivered or parked, then count.
/// Verifies the audit trail of every instance after stopping them gracefully.
pub async fn settle(
    rig: &mut Rig,
    upstream: &Upstream,
    within: Duration,
) -> anyhow::Result<Ledger> {
    let accepted: HashSet<String> = upstream.accepted_ids();
    let deadline = Instant::now() + within;
    let mut parked: HashSet<String> = HashSet::new();
    loop {
        let delivered = delivered_ids(rig);
        parked.clear();
        for g in &rig.gateways {
            if let Ok(p) = g.parked(&rig.http).await {
                parked.extend(p.into_iter().map(|(id, _)| id));
            }
        }
        let missing = accepted
            .iter()
            .filter(|id| !delivered.contains(*id) && !parked.contains(*id))
            .count();
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Late repeats would show up within a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = delivered_ids(rig);
    let lost_ids: Vec<String> = accepted
        .iter()
        .filter(|id| !delivered.contains(*id) && !parked.contains(*id))
        .cloned()
        .collect();
    let mut duplicated = 0;
    for p in [&rig.police, &rig.emergency] {
        let received = p.accepted();
        let mut by_message: HashMap<String, usize> = HashMap::new();
        for r in &received {
            let id = r
                .canonical
                .as_ref()
                .and_then(|c| c["message_id"].as_str())
                .unwrap_or(&r.idempotency_key)
                .to_owned();
            *by_message.entry(id).or_default() += 1;
        }
        duplicated += by_message.values().filter(|n| **n > 1).count();
    }
    // The AMQP partner: every material once, counted by message id (its copies are published
    // at intake, or through the destination queue's retries, both done by now).
    let (mut amqp_duplicated, mut amqp_missing) = (0, 0);
    if let Some(p) = &rig.amqp_partner {
        let copies = p.drain().await?;
        amqp_duplicated = copies.values().filter(|n| **n > 1).count();
        amqp_missing = accepted
            .iter()
            .filter(|id| id.starts_with("material-") && !copies.contains_key(*id))
            .count();
        duplicated += amqp_duplicated;
    }
    rig.stop();
    let mut verified = true;
    for g in &rig.gateways {
        verified &= g.verify_audit()?;
    }
    Ok(Ledger {
        accepted: accepted.len(),
        delivered: accepted.iter().filter(|id| delivered.contains(*id)).count(),
        parked: accepted.iter().filter(|id| parked.contains(*id)).count(),
        lost: lost_ids.len() + amqp_missing,
        duplicated_downstream: duplicated,
        amqp_duplicated,
        amqp_missing,
        redeliveries_absorbed: rig.police.repeats() + rig.emergency.repeats(),
        audit_verified: verified,
        lost_ids,
    })
}

fn delivered_ids(rig: &Rig) -> HashSet<String> {
    let mut ids: HashSet<String> = rig.police.accepted_keys().into_iter().collect();
    ids.extend(rig.emergency.accepted_keys());
    ids
}
