//! Confirmed, mandatory publishing. A publish succeeds only when the broker confirmed it *and*
//! routed it to at least one queue; anything else — nack, return, timeout, channel error — is a
//! failure, and after a channel error every unconfirmed publish is unknown, so the caller
//! republishes with the same message id and the partner deduplicates.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};

use super::{BrokerError, Session, bounded};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker could not route the message (no queue bound)")]
    Unroutable,
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// A channel in confirm mode. Cheap to share: publishes from many tasks pipeline on it.
#[derive(Debug, Clone)]
pub struct Publisher {
    channel: Channel,
    limit: Duration,
}

/// Properties the gateway sets on every message it publishes. Nothing is copied from upstream:
/// RabbitMQ acts on properties such as CC, BCC, user-id and expiration.
#[derive(Debug, Clone, Default)]
pub struct Outgoing<'a> {
    pub message_id: &'a str,
    pub message_type: &'a str,
    pub content_type: &'a str,
    pub correlation_id: Option<&'a str>,
    pub headers: Vec<(&'static str, HeaderValue)>,
    /// Per-message TTL: the broker drops the copy after this many milliseconds.
    pub expiration_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum HeaderValue {
    Text(String),
    Int(i64),
}

impl Outgoing<'_> {
    fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (k, v) in &self.headers {
            let v = match v {
                HeaderValue::Text(s) => {
                    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
                }
                HeaderValue::Int(i) => AMQPValue::LongLongInt(*i),
            };
            headers.insert(ShortString::from(*k), v);
        }
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(self.message_id.into())
            .with_type(self.message_type.into())
            .with_content_type(self.content_type.into())
            .with_app_id("wingspan".into())
            .with_headers(headers);
        if let Some(c) = self.correlation_id {
            props = props.with_correlation_id(c.into());
        }
        if let Some(ms) = self.expiration_ms {
            props = props.with_expiration(ms.to_string().into());
        }
        props
    }
}

impl Publisher {
    pub async fn open(session: &Session, limit: Duration) -> Result<Self, BrokerError> {
        let channel = bounded(limit, session.connection.create_channel()).await?;
        bounded(
            limit,
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        Ok(Self { channel, limit })
    }

    /// Close the channel (publishes still pending on it fail, and are retried by their callers).
    pub async fn close(&self) {
        let _ = bounded(self.limit, self.channel.close(200, "replaced".into())).await;
    }

    /// Send without waiting for the confirm; pair with [`Publisher::confirmed`].
    pub async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        out: &Outgoing<'_>,
    ) -> Result<PublisherConfirm, PublishError> {
        Ok(mandatory(&self.channel, self.limit, exchange, routing_key, body, out).await?)
    }

    /// Wait for the broker's verdict on one sent message.
    pub async fn confirmed(&self, pending: PublisherConfirm) -> Result<(), PublishError> {
        match bounded(self.limit, pending).await? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            Confirmation::NotRequested => Err(PublishError::Nacked),
        }
    }

    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        out: &Outgoing<'_>,
    ) -> Result<(), PublishError> {
        let pending = self.send(exchange, routing_key, body, out).await?;
        self.confirmed(pending).await
    }
}

/// Publish with the mandatory flag (an unroutable message comes back); on a confirm channel
/// the broker's verdict follows through the returned [`PublisherConfirm`].
async fn mandatory(
    channel: &Channel,
    limit: Duration,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    out: &Outgoing<'_>,
) -> Result<PublisherConfirm, BrokerError> {
    let opts = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    bounded(
        limit,
        channel.basic_publish(
            exchange.into(),
            routing_key.into(),
            opts,
            body,
            out.properties(),
        ),
    )
    .await
}

/// Publish `bodies` to `queue` through the default exchange, persistent and confirmed, in
/// pipelined chunks — as an upstream system would. Used to pre-fill queues in tests and
/// benchmarks; the gateway itself publishes through [`Publisher`]. `user_id`, when given,
/// must be the connection's login (the broker checks it): the AMQP ingress's sender.
pub async fn fill_queue(
    connection: &lapin::Connection,
    queue: &str,
    bodies: &[Vec<u8>],
    user_id: Option<&str>,
    limit: Duration,
) -> Result<(), PublishError> {
    let channel = bounded(limit, connection.create_channel()).await?;
    bounded(
        limit,
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await?;
    let publisher = Publisher { channel, limit };
    let opts = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    for chunk in bodies.chunks(1000) {
        let mut pending = Vec::with_capacity(chunk.len());
        for body in chunk {
            let mut props = BasicProperties::default().with_delivery_mode(2);
            if let Some(user) = user_id {
                props = props.with_user_id(user.into());
            }
            pending.push(
                bounded(
                    limit,
                    publisher
                        .channel
                        .basic_publish("".into(), queue.into(), opts, body, props),
                )
                .await?,
            );
        }
        for p in pending {
            publisher.confirmed(p).await?;
        }
    }
    let _ = bounded(limit, publisher.channel.close(200, "filled".into())).await;
    Ok(())
}

/// What the partner's exchange did with a copy published in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// Routed to at least one queue; the copy's ack committed with it.
    Taken,
    /// Returned (no queue bound); the copy's ack committed all the same, so the caller puts
    /// the copy back itself.
    Returned,
}

/// The consumer channel of a destination that delivers once, in AMQP transaction mode: a
/// copy's publish to the partner and its ack commit together or not at all — a gateway that
/// dies before `tx.commit` leaves the copy in its queue and nothing at the partner, one that
/// dies after has nothing left to redo. Every ack and nack on the channel commits under one
/// lock, a copy at a time, so no transaction carries another copy's half.
#[derive(Debug)]
pub struct Transacted {
    channel: Channel,
    limit: Duration,
    one: tokio::sync::Mutex<()>,
    /// The last copy came back from the partner's exchange: publish with confirms until one
    /// is taken again (see `delivery`).
    returned: std::sync::atomic::AtomicBool,
}

impl Transacted {
    pub async fn open(channel: Channel, limit: Duration) -> Result<Self, BrokerError> {
        bounded(limit, channel.tx_select()).await?;
        Ok(Self {
            channel,
            limit,
            one: tokio::sync::Mutex::new(()),
            returned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether the partner's exchange returned the last copy offered to it.
    pub fn returning(&self) -> bool {
        self.returned.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_returning(&self, returning: bool) {
        self.returned
            .store(returning, std::sync::atomic::Ordering::Relaxed);
    }

    /// Publish `body` (mandatory) and ack the copy it came from, in one transaction.
    pub async fn publish_and_ack(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        out: &Outgoing<'_>,
        acker: &lapin::Acker,
    ) -> Result<Handed, BrokerError> {
        let _one = self.one.lock().await;
        mandatory(&self.channel, self.limit, exchange, routing_key, body, out).await?;
        bounded(
            self.limit,
            acker.ack(lapin::options::BasicAckOptions::default()),
        )
        .await?;
        bounded(self.limit, self.channel.tx_commit()).await?;
        // A return precedes `tx.commit-ok` on the channel, so it has arrived by now. (No
        // confirms are pending on a transacted channel: this only collects returns.)
        let returned = bounded(self.limit, self.channel.wait_for_confirms()).await?;
        Ok(if returned.is_empty() {
            Handed::Taken
        } else {
            Handed::Returned
        })
    }

    /// Ack a copy (committed at once).
    pub async fn ack(&self, acker: &lapin::Acker) -> Result<(), BrokerError> {
        let _one = self.one.lock().await;
        bounded(
            self.limit,
            acker.ack(lapin::options::BasicAckOptions::default()),
        )
        .await?;
        bounded(self.limit, self.channel.tx_commit()).await
    }

    /// Give a copy back to its queue (committed at once).
    pub async fn requeue(&self, acker: &lapin::Acker) -> Result<(), BrokerError> {
        let _one = self.one.lock().await;
        bounded(
            self.limit,
            acker.nack(lapin::options::BasicNackOptions {
                requeue: true,
                ..Default::default()
            }),
        )
        .await?;
        bounded(self.limit, self.channel.tx_commit()).await
    }
}
