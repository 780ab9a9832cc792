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
        let opts = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        Ok(bounded(
            self.limit,
            self.channel.basic_publish(
                exchange.into(),
                routing_key.into(),
                opts,
                body,
                out.properties(),
            ),
        )
        .await?)
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
