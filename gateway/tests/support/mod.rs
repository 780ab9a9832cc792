//! Shared test harness: partner simulators on ephemeral ports, a config derived from the
//! example config with this test's own queue prefix and state directory, and broker helpers.
#![allow(dead_code)]

pub mod pki;
pub mod private_broker;
pub mod webdriver;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use lapin::{Connection, ConnectionProperties};
use wingspan::broker::topology::{self, Names};
use wingspan::load::{self, Loaded};
use wingspan::{Gateway, GatewayOptions};
use wingspan_sim::{Partner, PartnerOptions};

pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct World {
    pub prefix: String,
    pub dir: PathBuf,
    pub partners: HashMap<&'static str, Partner>,
    pub config_file: PathBuf,
}

impl World {
    /// Partners on ephemeral ports (replying when `replies`), and a config file pointing at them.
    pub async fn new(test: &str, replies: bool) -> Self {
        Self::with_broker(test, replies, "127.0.0.1:5672").await
    }

    /// Like [`World::new`], with the gateway reaching RabbitMQ at `broker` (a `wingspan_chaos::relay::Relay`).
    pub async fn with_broker(test: &str, replies: bool, broker: &str) -> Self {
        let prefix = format!(
            "t-{test}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut partners = HashMap::new();
        let mut text =
            std::fs::read_to_string(repo().join("config/wingspan.toml")).expect("example config");
        for ex in wingspan_sim::EXAMPLE_PARTNERS {
            let (name, port) = (ex.name, ex.port);
            let p = Partner::start(
                "127.0.0.1:0",
                PartnerOptions {
                    name: name.into(),
                    reply_as: if replies {
                        ex.reply_as.map(str::to_owned)
                    } else {
                        None
                    },
                    gateway: None,
                    adapter: ex.adapter.into(),
                },
            )
            .await
            .expect("partner");
            text = text.replace(&format!("127.0.0.1:{port}"), &p.addr().to_string());
            partners.insert(name, p);
        }
        let text = text
            .replace("prefix = \"wingspan\"", &format!("prefix = \"{prefix}\""))
            .replace(
                "schemas_dir = \"../schemas\"",
                &format!(
                    "schemas_dir = {:?}",
                    repo().join("schemas").display().to_string()
                ),
            )
            .replace(
                "adapters_dir = \"adapters\"",
                &format!(
                    "adapters_dir = {:?}",
                    repo().join("config/adapters").display().to_string()
                ),
            )
            .replace(
                "state_dir = \"../var\"",
                &format!("state_dir = {:?}", dir.join("state").display().to_string()),
            )
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
            .replace("listen = \"127.0.0.1:8081\"", "listen = \"127.0.0.1:0\"")
            .replace("instance = \"gw-1\"", &format!("instance = \"{prefix}\""))
            .replace("guest@127.0.0.1:5672/", &format!("guest@{broker}/"))
            .replace(
                "retry_delays_ms = [1000, 5000, 30000, 120000, 600000]",
                "retry_delays_ms = [300, 600, 1200, 2400]",
            )
            .replace(
                "retry = { max_attempts = 8 }",
                "retry = { max_attempts = 12 }",
            );
        let config_file = dir.join("wingspan.toml");
        std::fs::write(&config_file, text).expect("write config");
        Self {
            prefix,
            dir,
            partners,
            config_file,
        }
    }

    /// Start a gateway on this world's config (HTTP on an ephemeral port), wait until it is
    /// ready (broker session and HTTP publisher), and point the partners' replies at it.
    pub async fn start_gateway(&self) -> (Gateway, String) {
        let gateway = Gateway::start(&self.load(), GatewayOptions::default())
            .await
            .expect("gateway");
        assert!(
            gateway.wait_ready(Duration::from_secs(10)).await,
            "broker session"
        );
        let base = format!("http://{}", gateway.http_addr.expect("http"));
        self.set_gateway(&base);
        let client = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..100 {
            if client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "readyz");
        (gateway, base)
    }

    pub fn load(&self) -> Loaded {
        load::load(&self.config_file).unwrap_or_else(|e| panic!("config: {e:?}"))
    }

    pub fn partner(&self, name: &str) -> &Partner {
        &self.partners[name]
    }

    pub fn partner_mut(&mut self, name: &str) -> &mut Partner {
        self.partners.get_mut(name).expect("partner")
    }

    pub fn set_gateway(&self, base: &str) {
        for p in self.partners.values() {
            p.set_gateway(base);
        }
    }

    /// Change this world's config text (before the gateway starts).
    pub fn rewrite(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config_file).expect("config");
        std::fs::write(&self.config_file, f(text)).expect("write config");
    }

    /// Remove this test's queues and exchanges and its state directory.
    pub async fn cleanup(&self) {
        let loaded = self.load();
        if let Ok(conn) = Connection::connect(AMQP, ConnectionProperties::default()).await {
            let names = Names::new(&self.prefix);
            let _ = topology::delete(&conn, &loaded.config, &names, Duration::from_secs(5)).await;
            let _ = conn.close(200, "test done".into()).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Poll `f` until it is true or `within` passes.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// Publish bodies to a queue (default exchange), persistent and confirmed.
pub async fn publish_to_queue(queue: &str, bodies: &[Vec<u8>]) {
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("amqp");
    wingspan::broker::publish::fill_queue(
        &conn,
        queue,
        bodies,
        Some("guest"),
        Duration::from_secs(30),
    )
    .await
    .expect("fill queue");
    let _ = conn.close(200, "done".into()).await;
}

/// Take every message currently in a queue: (body, headers as text).
pub async fn drain_queue(queue: &str) -> Vec<(Vec<u8>, HashMap<String, String>)> {
    read_queue(queue, true).await
}

/// Every message currently in a queue as the broker stores it, left in place.
pub async fn peek_queue(queue: &str) -> Vec<(Vec<u8>, HashMap<String, String>)> {
    read_queue(queue, false).await
}

async fn read_queue(queue: &str, take: bool) -> Vec<(Vec<u8>, HashMap<String, String>)> {
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let mut out = Vec::new();
    while let Ok(Some(msg)) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: take })
        .await
    {
        let mut headers = HashMap::new();
        if let Some(h) = msg.delivery.properties.headers() {
            for (k, v) in h.inner() {
                let text = match v {
                    lapin::types::AMQPValue::LongString(s) => {
                        String::from_utf8_lossy(s.as_bytes()).into_owned()
                    }
                    other => format!("{other:?}"),
                };
                headers.insert(k.as_str().to_owned(), text);
            }
        }
        out.push((msg.delivery.data.clone(), headers));
    }
    // What was not taken is unacknowledged: closing the channel gives it back to the queue.
    let _ = ch.close(200, "read".into()).await;
    let _ = conn.close(200, "done".into()).await;
    out
}

/// Run `wingspan <args> --admin-url <admin>` as the admin user with `token`: whether it
/// succeeded, its stdout and its stderr.
pub fn admin_cli(admin: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(args)
        .args(["--admin-url", admin])
        .env("WINGSPAN_ADMIN_TOKEN", token)
        .output()
        .expect("wingspan");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `GET /v1/audit/verify` on the admin listener as the user with `token`.
pub async fn verify_over_api(
    client: &reqwest::Client,
    admin: &str,
    token: &str,
) -> serde_json::Value {
    client
        .get(format!("{admin}/v1/audit/verify"))
        .bearer_auth(token)
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json")
}

pub fn body_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("json body")
}

/// POST a canonical envelope; the status and the JSON answer (receipt or problem).
pub async fn post(
    client: &reqwest::Client,
    base: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let source = body["source"].as_str().unwrap_or_default();
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(wingspan_sim::dev_token(source))
        .json(body)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// GET a message's status document.
pub async fn status_of(
    client: &reqwest::Client,
    base: &str,
    message_id: &str,
) -> serde_json::Value {
    client
        .get(format!("{base}/v1/messages/{message_id}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// Drain `queue` until at least `n` messages were taken or `within` passes.
pub async fn drain_until(
    queue: &str,
    n: usize,
    within: Duration,
) -> Vec<(Vec<u8>, HashMap<String, String>)> {
    let deadline = Instant::now() + within;
    let mut taken = Vec::new();
    while taken.len() < n && Instant::now() < deadline {
        taken.extend(drain_queue(queue).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    taken
}

/// POST a partner's own document to `/v1/sources/{source}/messages`.
pub async fn post_native(
    client: &reqwest::Client,
    base: &str,
    source: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let r = client
        .post(format!("{base}/v1/sources/{source}/messages"))
        .bearer_auth(wingspan_sim::dev_token(source))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// A canonical envelope written in `adapter`'s wire format.
pub fn native(adapter: &str, envelope: &serde_json::Value, content_type: Option<&str>) -> Vec<u8> {
    let env: wingspan_core::Envelope =
        serde_json::from_value(envelope.clone()).expect("canonical envelope");
    wingspan_adapters::AdapterKind::from_name(adapter)
        .expect("adapter")
        .adapter()
        .encode(
            wingspan_adapters::Canonical {
                envelope: &env,
                bytes: None,
            },
            content_type,
        )
        .expect("encode")
        .body
        .into_owned()
}

/// A fresh schema in the local PostgreSQL `test` database (trust auth), as a store URL whose
/// connections use it. Synchronous: call it off the async runtime.
pub fn pg_schema() -> String {
    let schema = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = postgres::Client::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        postgres::NoTls,
    )
    .expect("PostgreSQL at 127.0.0.1:5432 (bash .ci/run starts it)");
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .expect("schema");
    format!("postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}")
}

/// Drop a schema made by [`pg_schema`]. Synchronous.
pub fn pg_drop(url: &str) {
    if let Some(schema) = url.rsplit("%3D").next()
        && let Ok(mut admin) = postgres::Client::connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test",
            postgres::NoTls,
        )
    {
        let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    }
}

/// (source, reason) of every `rejected` audit record of this gateway, in chain order.
pub async fn rejected_reasons(gateway: &Gateway) -> Vec<(Option<String>, String)> {
    gateway
        .store
        .audit_read(|c| {
            wingspan::audit::search(
                c,
                &wingspan::audit::Filter {
                    event: Some("rejected".into()),
                    limit: 1000,
                    ..Default::default()
                },
            )
        })
        .await
        .expect("search")
        .into_iter()
        .filter_map(|r| r.entry.reason.map(|why| (r.entry.source, why)))
        .collect()
}

/// Log output captured in memory (a `tracing_subscriber` writer).
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Rewrite the `civil` destination to an AMQP partner (the exchange `<prefix>.partner`, key
/// `in`), with `options` added to its `amqp` table (e.g. `", once = true"`).
pub fn civil_over_amqp(text: String, prefix: &str, options: &str) -> String {
    let at = text
        .find("id = \"civil\"\nadapter = \"civil\"\nhttp =")
        .expect("civil");
    let line_start = at + text[at..].find("http =").expect("http");
    let line_end = line_start + text[line_start..].find('\n').expect("eol");
    format!(
        "{}amqp = {{ exchange = \"{prefix}.partner\", routing_key = \"in\"{options} }}{}",
        &text[..line_start],
        &text[line_end..]
    )
}

/// Declare the civil partner's side of [`civil_over_amqp`]: its exchange and a queue bound to
/// it with key `in`; the queue's name.
pub async fn declare_partner_queue(prefix: &str) -> String {
    use lapin::ExchangeKind;
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let exchange = format!("{prefix}.partner");
    let queue = format!("{prefix}.civil-in");
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue");
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "in".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let _ = conn.close(200, "declared".into()).await;
    queue
}
