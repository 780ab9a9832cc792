//! A destination that delivers once (`amqp.once`, for an AMQP partner that cannot deduplicate
//! by message id): copies go through the destination's queue and reach the partner in an AMQP
//! transaction with their ack; only the copies of the intake attempt named by the message's
//! receipt are delivered. Here, with the real broker and store: a message is delivered once;
//! a copy left by an attempt that never committed is dropped and the drop recorded; a copy
//! whose receipt commits after it arrived waits for it and is then delivered; an orphan (no
//! receipt long after its attempt) is dropped; a partner exchange with no queue bound returns
//! the copy, which is delivered once the partner's queue is bound again.

mod support;

use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use support::{
    AMQP, World, civil_over_amqp, declare_partner_queue, drain_queue, drain_until, post,
};
use wingspan::audit;
use wingspan::broker::Names;
use wingspan::intake::{ACCEPTED_HEADER, ATTEMPT_HEADER, CLAIM_HEADER, SOURCE_HEADER};
use wingspan::store::NewReceipt;
use wingspan_core::audit::Event;
use wingspan_sim::samples;

struct Partner {
    conn: Connection,
    exchange: String,
    queue: String,
}

impl Partner {
    async fn declare(prefix: &str) -> Self {
        let queue = declare_partner_queue(prefix).await;
        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .expect("amqp");
        Self {
            conn,
            exchange: format!("{prefix}.partner"),
            queue,
        }
    }

    async fn bind(&self, bound: bool) {
        let ch = self.conn.create_channel().await.expect("channel");
        if bound {
            ch.queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                "in".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        } else {
            ch.queue_unbind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                "in".into(),
                FieldTable::default(),
            )
            .await
            .expect("unbind");
        }
        let _ = ch.close(200, "done".into()).await;
    }

    /// The message ids the partner holds now, taken.
    async fn take(&self) -> Vec<String> {
        drain_queue(&self.queue)
            .await
            .into_iter()
            .map(|(body, _)| {
                let v: serde_json::Value = serde_json::from_slice(&body).expect("civil json");
                v["message_id"]
                    .as_str()
                    .or_else(|| v["messageId"].as_str())
                    .map(str::to_owned)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
            })
            .collect()
    }
}

/// Put a copy of `envelope` in the civil destination's queue as an intake attempt named
/// `claim` would, accepted `age` ago.
async fn queue_copy(prefix: &str, envelope: &serde_json::Value, claim: &str, age: Duration) {
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let accepted = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .saturating_sub(age)
        .as_millis() as i64;
    let mut headers = FieldTable::default();
    headers.insert(ShortString::from(ATTEMPT_HEADER), AMQPValue::LongLongInt(1));
    headers.insert(
        ShortString::from(SOURCE_HEADER),
        AMQPValue::LongString(LongString::from(
            envelope["source"]
                .as_str()
                .expect("source")
                .as_bytes()
                .to_vec(),
        )),
    );
    headers.insert(
        ShortString::from(ACCEPTED_HEADER),
        AMQPValue::LongLongInt(accepted),
    );
    headers.insert(
        ShortString::from(CLAIM_HEADER),
        AMQPValue::LongString(LongString::from(claim.as_bytes().to_vec())),
    );
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(envelope["message_id"].as_str().expect("id").into())
        .with_type(envelope["message_type"].as_str().expect("type").into())
        .with_content_type("application/json".into())
        .with_headers(headers);
    let body = serde_json::to_vec(envelope).expect("json");
    ch.basic_publish(
        "".into(),
        Names::new(prefix).destination("civil").as_str().into(),
        BasicPublishOptions::default(),
        &body,
        props,
    )
    .await
    .expect("publish")
    .await
    .expect("routed");
    let _ = conn.close(200, "done".into()).await;
}

/// The records about `message_id` with `event`, once there are any (or none after 10 s).
async fn records_eventually(
    world: &World,
    message_id: &str,
    event: Event,
) -> Vec<wingspan_core::audit::Entry> {
    for _ in 0..100 {
        let found = records(world, message_id, event);
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Vec::new()
}

/// The records about `message_id` with `event`, read from the store.
fn records(world: &World, message_id: &str, event: Event) -> Vec<wingspan_core::audit::Entry> {
    let mut store = audit::open_store(&world.load()).expect("store");
    audit::trail(&mut store, message_id)
        .expect("trail")
        .into_iter()
        .filter(|r| r.entry.event == event)
        .map(|r| r.entry)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_committed_attempt_reaches_a_partner_that_cannot_deduplicate() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,lapin=off")
        .with_test_writer()
        .try_init();
    let world = World::new("once", false).await;
    let prefix = world.prefix.clone();
    world.rewrite(|t| civil_over_amqp(t, &prefix, ", once = true"));
    let partner = Partner::declare(&prefix).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();

    // Accepted once, delivered once, through the destination's queue.
    let first = samples::handover(1, "320411", false, true);
    let first_id = first["message_id"].as_str().expect("id").to_owned();
    let (status, receipt) = post(&client, &base, &first).await;
    assert_eq!(status, 202, "{receipt}");
    assert!(
        receipt["destinations"]
            .as_array()
            .expect("destinations")
            .iter()
            .any(|d| d == "civil"),
        "{receipt}"
    );
    let got = drain_until(&partner.queue, 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1);

    // A copy of the same message from an attempt that never committed (its intake died
    // between the copy's confirm and the receipt): dropped, and the drop is in the trail.
    queue_copy(&prefix, &first, "an-attempt-that-died", Duration::ZERO).await;
    let dropped = records_eventually(&world, &first_id, Event::Discarded).await;
    assert_eq!(dropped.len(), 1, "one drop recorded");
    assert_eq!(dropped[0].destination.as_deref(), Some("civil"));
    assert!(
        dropped[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("never committed")),
        "{:?}",
        dropped[0].reason
    );
    assert!(
        partner.take().await.is_empty(),
        "nothing more at the partner"
    );

    // A copy that arrives before its receipt commits waits for it (here the receipt is
    // committed 1.5 s later, past the worker's hold: the copy waited in the retry tier).
    let late = samples::handover(2, "320411", false, true);
    let late_id = late["message_id"].as_str().expect("id").to_owned();
    queue_copy(&prefix, &late, "the-attempt-that-commits", Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(partner.take().await.is_empty(), "not before its receipt");
    gateway
        .store
        .put_receipt(
            NewReceipt {
                source: late["source"].as_str().expect("source").to_owned(),
                message_id: late_id.clone(),
                message_type: late["message_type"].as_str().expect("type").to_owned(),
                correlation_id: None,
                correlation_unknown: false,
                destinations: vec!["civil".into()],
                delivered: vec![],
                claim: Some("the-attempt-that-commits".into()),
            },
            vec![],
            None,
        )
        .await
        .expect("receipt");
    let got = drain_until(&partner.queue, 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "delivered once its receipt committed");
    assert!(records(&world, &late_id, Event::Discarded).is_empty());

    // An orphan: no receipt, its attempt began longer ago than a sender's retry would take.
    let orphan = samples::handover(3, "320411", false, true);
    let orphan_id = orphan["message_id"].as_str().expect("id").to_owned();
    queue_copy(
        &prefix,
        &orphan,
        "an-attempt-nobody-finished",
        wingspan::delivery::ORPHAN_AFTER + Duration::from_secs(1),
    )
    .await;
    let dropped = records_eventually(&world, &orphan_id, Event::Discarded).await;
    assert_eq!(dropped.len(), 1, "the orphan's drop recorded");
    assert!(partner.take().await.is_empty());

    // The partner's queue is unbound: the transaction's publish comes back, the copy is put
    // back for a retry, and reaches the partner once the queue is bound again — once.
    partner.bind(false).await;
    let returned = samples::handover(4, "320411", false, true);
    let (status, receipt) = post(&client, &base, &returned).await;
    assert_eq!(status, 202, "{receipt}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    partner.bind(true).await;
    let got = drain_until(&partner.queue, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(partner.take().await.is_empty(), "delivered once");
    let returned_id = returned["message_id"].as_str().expect("id");
    let retries = records(&world, returned_id, Event::RetryScheduled);
    assert!(!retries.is_empty(), "the return is in the trail");

    gateway.shutdown().await;
    world.cleanup().await;
}
