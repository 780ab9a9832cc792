//! `wingspan demo`: the gateway doing its main job on this machine. Starts the partner
//! simulators on the ports the example config names, starts the gateway with that config (its
//! own queue prefix; the config's state directory, so that `wingspan audit … --config config/`
//! finds the demo's audit trail afterwards), sends a realistic batch of all three
//! families over HTTP, waits until every copy is delivered or parked and every reply has come
//! back, prints the summary table, and removes its queues.
//!
//! When no broker answers at the config's URL (and `WINGSPAN_AMQP_URL` does not name one) but
//! RabbitMQ is installed, the demo starts a private node of its own — its own node name,
//! ports and data directory (`<state_dir>/demo-broker`), listening on 127.0.0.1 only — and
//! stops it at the end; where RabbitMQ is not installed it names the command that installs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use wingspan_sim::{Behaviour, Partner, PartnerOptions, samples};

use wingspan_sim::node::{self, Node};

use crate::broker::{self, topology};
use crate::gateway::{Gateway, GatewayOptions};
use crate::load::{self, Loaded};
use crate::stats::Counts;

/// The demo's config: the example's, with its own queue prefix, short retry tiers (so the
/// demo shows retries within seconds) and, when given, another broker.
fn demo_config(
    config_dir: &Path,
    prefix: &str,
    broker_url: Option<&str>,
) -> anyhow::Result<Loaded> {
    load::load_with(config_dir, |raw| {
        raw.broker.prefix = prefix.to_owned();
        raw.broker.retry_delays_ms = vec![300, 600, 1200];
        if let Some(url) = broker_url {
            raw.broker.url = url.to_owned();
            raw.broker.urls.clear();
        }
    })
    .map_err(|errs| {
        anyhow::anyhow!(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

pub async fn run(config_dir: &Path) -> anyhow::Result<i32> {
    let prefix = format!(
        "wingspan-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut loaded = demo_config(config_dir, &prefix, None)?;
    // A broker of the demo's own when none answers; stopped when the demo ends (dropped).
    let mut _private: Option<Node> = None;
    if let Err(e) = broker::probe(&loaded.config).await {
        let named = std::env::var("WINGSPAN_AMQP_URL").is_ok_and(|u| !u.is_empty());
        let url = broker::redacted(&loaded.config.broker.url);
        if named {
            eprintln!(
                "wingspan: cannot reach RabbitMQ at {url} ({e}), which WINGSPAN_AMQP_URL names. Start it, or unset WINGSPAN_AMQP_URL to let the demo start a broker of its own."
            );
            return Ok(2);
        }
        if !node::installed() {
            eprintln!(
                "wingspan: no RabbitMQ answers at {url} ({e}) and none is installed here. Install it (Debian: `apt-get install rabbitmq-server`) and run the demo again, or point WINGSPAN_AMQP_URL at a running broker."
            );
            return Ok(2);
        }
        let dir = loaded.state_dir.join("demo-broker");
        println!(
            "wingspan demo: no broker answers at {url}; starting a private RabbitMQ node (data in {}) …",
            dir.display()
        );
        let started = tokio::task::spawn_blocking(move || Node::start(&dir, "demo")).await?;
        let node = match started {
            Ok(n) => n,
            Err(e) => {
                eprintln!("wingspan: the private RabbitMQ node did not start: {e:#}");
                return Ok(2);
            }
        };
        println!(
            "wingspan demo: private RabbitMQ node {} on 127.0.0.1:{}",
            node.name, node.port
        );
        loaded = demo_config(config_dir, &prefix, Some(&node.url()))?;
        _private = Some(node);
        if let Err(e) = broker::probe(&loaded.config).await {
            eprintln!("wingspan: the private RabbitMQ node does not answer: {e}");
            return Ok(2);
        }
    }
    let config = loaded.config.clone();

    let gateway_url = format!("http://{}", config.http_listen);
    let mut partners = Vec::new();
    for ex in wingspan_sim::EXAMPLE_PARTNERS {
        let (name, port) = (ex.name, ex.port);
        let options = PartnerOptions {
            name: name.into(),
            reply_as: ex.reply_as.map(str::to_owned),
            gateway: Some(gateway_url.clone()),
            adapter: ex.adapter.into(),
        };
        let p = Partner::start(&format!("127.0.0.1:{port}"), options)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot start the {name} simulator on port {port}: {e}")
            })?;
        partners.push(p);
    }
    let partner = |name: &str| partners.iter().find(|p| p.name() == name);
    // Police is flaky for its first few requests (retries), the second alliance's hospital
    // rejects what it gets (dead letters).
    if let Some(p) = partner("police") {
        p.set_behaviour(Behaviour::FailFirst(4));
    }
    if let Some(p) = partner("hospital-ma02") {
        p.set_behaviour(Behaviour::Reject);
    }

    let gateway = Gateway::start(&loaded, GatewayOptions::default()).await?;
    if !gateway.wait_ready(Duration::from_secs(10)).await {
        eprintln!(
            "wingspan: the broker accepted a connection but the gateway could not declare its topology"
        );
        gateway.shutdown().await;
        return Ok(2);
    }
    println!(
        "wingspan demo: gateway on {gateway_url}, queues under '{prefix}', partner simulators on ports 18080-18088"
    );

    let mut batch: Vec<Value> = Vec::new();
    for i in 0..12 {
        batch.push(samples::material_submit(i));
    }
    for i in 0..12 {
        let urgency = ["routine", "urgent", "routine", "emergency"][(i % 4) as usize];
        batch.push(samples::consultation_request(i, "ma01", urgency));
    }
    for i in 12..14 {
        batch.push(samples::consultation_request(i, "ma02", "routine"));
    }
    for i in 14..18 {
        let urgency = ["routine", "urgent"][(i % 2) as usize];
        batch.push(samples::consultation_request(i, "ma03", urgency));
    }
    for i in 0..4 {
        batch.push(samples::transfer_request(i));
    }
    for i in 0..16 {
        let division = ["320411", "320506", "320412", "320583"][(i % 4) as usize];
        batch.push(samples::handover(i, division, i % 2 == 0, i % 3 == 0));
    }

    let client = reqwest::Client::new();
    let post = |body: &Value| {
        client
            .post(format!("{gateway_url}/v1/messages"))
            .bearer_auth(wingspan_sim::dev_token(
                body["source"].as_str().unwrap_or_default(),
            ))
            .json(body)
            .send()
    };
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    for m in &batch {
        let status = post(m).await?.status().as_u16();
        *statuses.entry(status).or_default() += 1;
    }
    // The same message again: the original receipt, nothing delivered twice.
    let again = post(&batch[0]).await?.status().as_u16();
    // And something no schema allows.
    let mut bad = samples::handover(99, "320411", false, false);
    bad["payload"]["residence"]["division_code"] = Value::from("32-04");
    let invalid = post(&bad).await?;
    let invalid_status = invalid.status().as_u16();
    let invalid_body: Value = invalid.json().await.unwrap_or(Value::Null);

    // Wait until every copy is delivered or parked and every reply has been routed back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let settled = gateway
            .stats
            .snapshot()
            .values()
            .all(|c| c.routed == c.delivered + c.dead_lettered);
        let replies: u64 = partners.iter().map(Partner::replies_sent).sum();
        let rehab_got = partner("rehab").map(Partner::accepted_count).unwrap_or(0) as u64;
        if settled && replies > 0 && rehab_got >= replies || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    print_summary(&gateway.stats.snapshot());
    println!();
    println!(
        "HTTP answers to the batch: {statuses:?}; the first message sent again: {again} (original receipt, not delivered twice)"
    );
    println!(
        "an invalid handover: {invalid_status} {} at {}",
        invalid_body["type"].as_str().unwrap_or("?"),
        invalid_body["errors"][0]["pointer"].as_str().unwrap_or("?")
    );
    println!(
        "refused at intake, by problem type: {:?}",
        gateway.stats.rejections()
    );
    let repeats: u64 = partners.iter().map(Partner::repeats).sum();
    println!("repeated deliveries absorbed by partners (Idempotency-Key): {repeats}");

    gateway.shutdown().await;
    if let Ok(conn) =
        lapin::Connection::connect(&config.broker.url, lapin::ConnectionProperties::default()).await
    {
        let names = topology::Names::new(&config.broker.prefix);
        let _ = topology::delete(&conn, &config, &names, Duration::from_secs(5)).await;
        let _ = conn.close(200, "demo done".into()).await;
    }
    println!(
        "audit trail: {} — try `wingspan audit verify --config config/` or `wingspan audit trail <message-id> --config config/`",
        loaded.state_dir.join("wingspan-state.db").display()
    );
    Ok(0)
}

fn print_summary(rows: &BTreeMap<(String, String), Counts>) {
    let mut grouped: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for ((message_type, destination), c) in rows {
        let family = wingspan_core::Envelope::family(message_type).to_owned();
        let g = grouped.entry((family, destination.clone())).or_default();
        g.routed += c.routed;
        g.delivered += c.delivered;
        g.retried += c.retried;
        g.dead_lettered += c.dead_lettered;
        g.replies_correlated += c.replies_correlated;
    }
    println!();
    println!(
        "{:<14} {:<16} {:>6} {:>10} {:>8} {:>14} {:>18}",
        "family",
        "destination",
        "sent",
        "delivered",
        "retried",
        "dead-lettered",
        "replies correlated"
    );
    println!("{}", "-".repeat(92));
    for ((family, destination), c) in &grouped {
        println!(
            "{:<14} {:<16} {:>6} {:>10} {:>8} {:>14} {:>18}",
            family,
            destination,
            c.routed,
            c.delivered,
            c.retried,
            c.dead_lettered,
            c.replies_correlated
        );
    }
}
