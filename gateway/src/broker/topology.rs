//! Broker topology, declared idempotently at every (re)connect.
//!
//! ```text
//! {p}.ingress ──(poison: delivery-limit)──► exchange {p}.rejects ─► {p}.rejects
//! exchange {p}.deliver (direct, key = destination id) ─► {p}.dest.<id>
//! {p}.dest.<id> ──(delivery-limit)──► exchange {p}.park (direct) ─► {p}.parked.<id>
//! exchange {p}.retry.<n> (fanout) ─► {p}.retry.<n> (queue TTL = delay n) ──► {p}.deliver
//! ```
//! Quorum queues get a `x-delivery-limit` (they have none by default, so a poison message
//! would loop forever) and lossless dead-lettering (`at-least-once` with `reject-publish`).
//! Retry delays use one queue per tier with a queue-level TTL, because per-message TTL only
//! expires at the head of a queue.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Connection, ExchangeKind};
use wingspan_core::CompiledConfig;
use wingspan_core::config::{QueueType, Transport};

use super::{BrokerError, bounded};

/// Every queue and exchange name, derived from the prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    pub fn ingress(&self) -> String {
        format!("{}.ingress", self.prefix)
    }
    pub fn rejects(&self) -> String {
        format!("{}.rejects", self.prefix)
    }
    pub fn deliver_exchange(&self) -> String {
        format!("{}.deliver", self.prefix)
    }
    pub fn destination(&self, id: &str) -> String {
        format!("{}.dest.{id}", self.prefix)
    }
    pub fn park_exchange(&self) -> String {
        format!("{}.park", self.prefix)
    }
    pub fn parked(&self, id: &str) -> String {
        format!("{}.parked.{id}", self.prefix)
    }
    pub fn retry(&self, tier: usize) -> String {
        format!("{}.retry.{tier}", self.prefix)
    }
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn queue_args(
    config: &CompiledConfig,
    dead_letter_exchange: Option<&str>,
    ttl_ms: Option<u64>,
) -> FieldTable {
    let mut args = FieldTable::default();
    let quorum = config.broker.queue_type == QueueType::Quorum;
    args.insert(
        ShortString::from("x-queue-type"),
        long(if quorum { "quorum" } else { "classic" }),
    );
    if let Some(dlx) = dead_letter_exchange {
        args.insert(ShortString::from("x-dead-letter-exchange"), long(dlx));
        if quorum {
            args.insert(
                ShortString::from("x-dead-letter-strategy"),
                long("at-least-once"),
            );
            args.insert(ShortString::from("x-overflow"), long("reject-publish"));
        }
    }
    if quorum && ttl_ms.is_none() {
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongLongInt(i64::from(config.broker.delivery_limit)),
        );
    }
    if let Some(ttl) = ttl_ms {
        args.insert(
            ShortString::from("x-message-ttl"),
            AMQPValue::LongLongInt(i64::try_from(ttl).unwrap_or(i64::MAX)),
        );
    }
    args
}

/// Declare everything; safe to repeat.
pub async fn declare(
    conn: &Connection,
    config: &CompiledConfig,
    names: &Names,
    limit: Duration,
) -> Result<(), BrokerError> {
    let ch = bounded(limit, conn.create_channel()).await?;
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let durable_x = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let no_args = FieldTable::default;
    let exchange = |name: String, kind: ExchangeKind| {
        let ch = ch.clone();
        async move {
            bounded(
                limit,
                ch.exchange_declare(name.as_str().into(), kind, durable_x, no_args()),
            )
            .await
        }
    };
    let queue = |name: String, args: FieldTable| {
        let ch = ch.clone();
        async move {
            bounded(
                limit,
                ch.queue_declare(name.as_str().into(), durable_q, args),
            )
            .await
            .map(|_| ())
        }
    };
    let bind = |queue: String, exchange: String, key: String| {
        let ch = ch.clone();
        async move {
            bounded(
                limit,
                ch.queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    no_args(),
                ),
            )
            .await
        }
    };

    exchange(names.rejects(), ExchangeKind::Fanout).await?;
    queue(names.rejects(), queue_args(config, None, None)).await?;
    bind(names.rejects(), names.rejects(), String::new()).await?;
    queue(
        names.ingress(),
        queue_args(config, Some(&names.rejects()), None),
    )
    .await?;

    exchange(names.deliver_exchange(), ExchangeKind::Direct).await?;
    exchange(names.park_exchange(), ExchangeKind::Direct).await?;
    for d in &config.destinations {
        queue(names.parked(&d.id), queue_args(config, None, None)).await?;
        bind(names.parked(&d.id), names.park_exchange(), d.id.clone()).await?;
        queue(
            names.destination(&d.id),
            queue_args(config, Some(&names.park_exchange()), None),
        )
        .await?;
        bind(
            names.destination(&d.id),
            names.deliver_exchange(),
            d.id.clone(),
        )
        .await?;
        if let Transport::Amqp { exchange: x, .. } = &d.transport {
            exchange(x.clone(), ExchangeKind::Direct).await?;
        }
    }
    for (tier, delay) in config.broker.retry_delays_ms.iter().enumerate() {
        exchange(names.retry(tier), ExchangeKind::Fanout).await?;
        queue(
            names.retry(tier),
            queue_args(config, Some(&names.deliver_exchange()), Some(*delay)),
        )
        .await?;
        bind(names.retry(tier), names.retry(tier), String::new()).await?;
    }
    let _ = bounded(limit, ch.close(200, "topology declared".into())).await;
    Ok(())
}

/// Delete everything [`declare`] made (demo and test clean-up; never used by `run`).
pub async fn delete(
    conn: &Connection,
    config: &CompiledConfig,
    names: &Names,
    limit: Duration,
) -> Result<(), BrokerError> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let ch = bounded(limit, conn.create_channel()).await?;
    let mut queues = vec![names.ingress(), names.rejects()];
    let mut exchanges = vec![
        names.rejects(),
        names.deliver_exchange(),
        names.park_exchange(),
    ];
    for d in &config.destinations {
        queues.push(names.destination(&d.id));
        queues.push(names.parked(&d.id));
    }
    for tier in 0..config.broker.retry_delays_ms.len() {
        queues.push(names.retry(tier));
        exchanges.push(names.retry(tier));
    }
    for q in queues {
        bounded(
            limit,
            ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()),
        )
        .await?;
    }
    for x in exchanges {
        bounded(
            limit,
            ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()),
        )
        .await?;
    }
    let _ = bounded(limit, ch.close(200, "deleted".into())).await;
    Ok(())
}
