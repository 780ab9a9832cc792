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

/// One exchange the gateway owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: ExchangeKind,
}

/// One queue the gateway owns, with its arguments and its binding (exchange, key).
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub args: FieldTable,
    pub binding: Option<(String, String)>,
}

/// Everything the gateway declares, in declaration order (exchanges before the queues bound
/// to them). [`declare`] and [`delete`] both walk this one list.
#[derive(Debug, Clone)]
pub struct Plan {
    pub exchanges: Vec<ExchangeSpec>,
    pub queues: Vec<QueueSpec>,
    /// Partner exchanges of AMQP destinations: declared if missing, never deleted.
    pub partner_exchanges: Vec<ExchangeSpec>,
}

pub fn plan(config: &CompiledConfig, names: &Names) -> Plan {
    let x = |name: String, kind: ExchangeKind| ExchangeSpec { name, kind };
    let q = |name: String, args: FieldTable, binding: Option<(String, String)>| QueueSpec {
        name,
        args,
        binding,
    };
    let mut exchanges = vec![
        x(names.rejects(), ExchangeKind::Fanout),
        x(names.deliver_exchange(), ExchangeKind::Direct),
        x(names.park_exchange(), ExchangeKind::Direct),
    ];
    let mut queues = vec![
        q(
            names.rejects(),
            queue_args(config, None, None),
            Some((names.rejects(), String::new())),
        ),
        q(
            names.ingress(),
            queue_args(config, Some(&names.rejects()), None),
            None,
        ),
    ];
    let mut partner_exchanges = Vec::new();
    for d in &config.destinations {
        queues.push(q(
            names.parked(&d.id),
            queue_args(config, None, None),
            Some((names.park_exchange(), d.id.clone())),
        ));
        queues.push(q(
            names.destination(&d.id),
            queue_args(config, Some(&names.park_exchange()), None),
            Some((names.deliver_exchange(), d.id.clone())),
        ));
        if let Transport::Amqp { exchange, .. } = &d.transport {
            partner_exchanges.push(x(exchange.clone(), ExchangeKind::Direct));
        }
    }
    for (tier, delay) in config.broker.retry_delays_ms.iter().enumerate() {
        exchanges.push(x(names.retry(tier), ExchangeKind::Fanout));
        queues.push(q(
            names.retry(tier),
            queue_args(config, Some(&names.deliver_exchange()), Some(*delay)),
            Some((names.retry(tier), String::new())),
        ));
    }
    Plan {
        exchanges,
        queues,
        partner_exchanges,
    }
}

/// Declare everything in the [`plan`]; safe to repeat.
pub async fn declare(
    conn: &Connection,
    config: &CompiledConfig,
    names: &Names,
    limit: Duration,
) -> Result<(), BrokerError> {
    let plan = plan(config, names);
    let ch = bounded(limit, conn.create_channel()).await?;
    let durable_x = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    for e in plan.exchanges.iter().chain(&plan.partner_exchanges) {
        bounded(
            limit,
            ch.exchange_declare(
                e.name.as_str().into(),
                e.kind.clone(),
                durable_x,
                FieldTable::default(),
            ),
        )
        .await?;
    }
    for q in &plan.queues {
        bounded(
            limit,
            ch.queue_declare(q.name.as_str().into(), durable_q, q.args.clone()),
        )
        .await?;
        if let Some((exchange, key)) = &q.binding {
            bounded(
                limit,
                ch.queue_bind(
                    q.name.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
        }
    }
    let _ = bounded(limit, ch.close(200, "topology declared".into())).await;
    Ok(())
}

/// Delete the gateway's own queues and exchanges (demo and test clean-up; never used by `run`).
pub async fn delete(
    conn: &Connection,
    config: &CompiledConfig,
    names: &Names,
    limit: Duration,
) -> Result<(), BrokerError> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let plan = plan(config, names);
    let ch = bounded(limit, conn.create_channel()).await?;
    for q in &plan.queues {
        bounded(
            limit,
            ch.queue_delete(q.name.as_str().into(), QueueDeleteOptions::default()),
        )
        .await?;
    }
    for e in &plan.exchanges {
        bounded(
            limit,
            ch.exchange_delete(e.name.as_str().into(), ExchangeDeleteOptions::default()),
        )
        .await?;
    }
    let _ = bounded(limit, ch.close(200, "deleted".into())).await;
    Ok(())
}
