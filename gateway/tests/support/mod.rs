//! Shared test harness: partner simulators on ephemeral ports, a config derived from the
//! example config with this test's own queue prefix and state directory, and broker helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use wingspan::broker::topology::{self, Names};
use wingspan::load::{self, Loaded};
use wingspan_sim::{Partner, PartnerOptions};

pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Partners of the example config: (destination name, example port, replies as).
pub const PARTNERS: [(&str, u16, Option<&str>); 8] = [
    ("rehab", 18080, None),
    ("police", 18081, Some("police")),
    ("hospital-ma01", 18082, Some("health")),
    ("emergency", 18083, Some("emergency")),
    ("hr", 18084, Some("hr")),
    ("aftercare", 18085, Some("aftercare")),
    ("civil", 18086, Some("civil")),
    ("hospital-ma02", 18087, Some("health")),
];

pub struct World {
    pub prefix: String,
    pub dir: PathBuf,
    pub partners: HashMap<&'static str, Partner>,
    pub config_file: PathBuf,
}

impl World {
    /// Partners on ephemeral ports (replying when `replies`), and a config file pointing at them.
    pub async fn new(test: &str, replies: bool) -> Self {
        let prefix = format!(
            "t-{test}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut partners = HashMap::new();
        let mut text =
            std::fs::read_to_string(repo().join("config/wingspan.toml")).expect("example config");
        for (name, port, reply_as) in PARTNERS {
            let p = Partner::start(
                "127.0.0.1:0",
                PartnerOptions {
                    name: name.into(),
                    reply_as: if replies {
                        reply_as.map(str::to_owned)
                    } else {
                        None
                    },
                    gateway: None,
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
                "state_dir = \"../var\"",
                &format!("state_dir = {:?}", dir.join("state").display().to_string()),
            )
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
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
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    for chunk in bodies.chunks(500) {
        let mut pending = Vec::new();
        for b in chunk {
            pending.push(
                ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    b,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("publish"),
            );
        }
        for p in pending {
            assert!(p.await.expect("confirm").is_ack());
        }
    }
    let _ = conn.close(200, "done".into()).await;
}

/// Take every message currently in a queue: (body, headers as text).
pub async fn drain_queue(queue: &str) -> Vec<(Vec<u8>, HashMap<String, String>)> {
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let mut out = Vec::new();
    while let Ok(Some(msg)) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
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
    let _ = conn.close(200, "done".into()).await;
    out
}

pub fn body_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("json body")
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}
