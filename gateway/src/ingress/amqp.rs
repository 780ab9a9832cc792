//! AMQP ingress: consume the durable ingress queue with manual acks. The sender is the
//! message's `user_id` property, which RabbitMQ checks against the connection's login; the
//! envelope's source must list that user in its `amqp_users`. A message is acked only
//! after its copies are confirmed and its receipt committed; a refused message is published,
//! confirmed, to the rejects queue with the reason in its headers, then acked — never dropped.
//!
//! Acks are batched ([`Acks`]): a message is acknowledged once it and every message delivered
//! before it on the channel are done, with one `multiple` ack for all of them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::publish::{HeaderValue, Outgoing};
use crate::broker::{Broker, BrokerError, PublishError, Publisher, Session, bounded};
use crate::delivery::header_text;
use crate::intake::{Intake, IntakeError, Outcome, PROBLEM_HEADER, REASON_HEADER};
use crate::problem::problem_type;
use crate::telemetry::{TRACEPARENT, TRACESTATE, Upstream};
use wingspan_core::{Rejection, RejectionKind, Sender};

pub async fn run(intake: Arc<Intake>, broker: Broker, mut shutdown: watch::Receiver<bool>) {
    let mut generation = 0;
    while let Some(session) = broker.next_session(generation, &mut shutdown).await {
        generation = session.generation;
        if let Err(e) = consume(&intake, &session, &broker, shutdown.clone()).await {
            tracing::warn!(error = %e, "AMQP ingress lost its channel");
            session.poison();
        }
    }
}

async fn consume(
    intake: &Arc<Intake>,
    session: &Session,
    broker: &Broker,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BrokerError> {
    let limit = broker.op_timeout;
    let channel = bounded(limit, session.connection.create_channel()).await?;
    bounded(
        limit,
        channel.basic_qos(intake.config().broker.prefetch, BasicQosOptions::default()),
    )
    .await?;
    let publisher = Publisher::open(session, limit).await?;
    let tag = format!("wingspan-{}-ingress", intake.config().instance);
    let mut consumer = bounded(
        limit,
        channel.basic_consume(
            intake.names.ingress().as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;
    let mut tasks: JoinSet<Result<u64, BrokerError>> = JoinSet::new();
    let mut acks = Acks::default();
    let result = loop {
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    acks.delivered(delivery.delivery_tag);
                    let (intake, publisher) = (intake.clone(), publisher.clone());
                    tasks.spawn(async move { handle(&intake, &publisher, delivery).await });
                }
                Some(Err(e)) => break Err(e.into()),
                None => break Err(BrokerError::Disconnected),
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                // Everything else already finished goes in the same ack.
                let mut failed = None;
                for done in std::iter::once(done).chain(std::iter::from_fn(|| tasks.try_join_next())) {
                    match done {
                        Ok(Ok(tag)) => acks.done(tag),
                        Ok(Err(e)) => failed = Some(e),
                        Err(_) => {}
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                if let Err(e) = acks.send(&channel, limit).await {
                    break Err(e);
                }
            }
            _ = shutdown.changed() => break Ok(()),
        }
    };
    if result.is_ok() {
        let _ = bounded(
            limit,
            channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()),
        )
        .await;
        let _ = tokio::time::timeout(limit * 2, async {
            while let Some(done) = tasks.join_next().await {
                if let Ok(Ok(tag)) = done {
                    acks.done(tag);
                }
            }
        })
        .await;
        let _ = acks.send(&channel, limit).await;
        let _ = bounded(limit, channel.close(200, "shutdown".into())).await;
    }
    result
}

/// The ingress channel's acknowledgements. Delivery tags rise in delivery order; messages
/// finish out of order (each waits for its receipt's group commit). Everything delivered
/// below the lowest tag still in flight is done, so one `multiple` ack covers it — a
/// message is never acknowledged before it and all before it are done. A message whose
/// handling failed takes the channel down with it: nothing after it is acked on this channel,
/// and the broker hands every unacknowledged message out again (the receipts answer for the
/// ones already accepted).
#[derive(Debug, Default)]
struct Acks {
    in_flight: BTreeSet<u64>,
    /// The highest tag done.
    done_max: u64,
    /// Acknowledged up to and including this tag.
    acked: u64,
}

impl Acks {
    fn delivered(&mut self, tag: u64) {
        self.in_flight.insert(tag);
    }

    fn done(&mut self, tag: u64) {
        self.in_flight.remove(&tag);
        self.done_max = self.done_max.max(tag);
    }

    /// The tag a `multiple` ack may cover now, if it covers anything new.
    fn ackable(&self) -> Option<u64> {
        // Tags rise by one per delivery, so every tag below the lowest in flight is done.
        let upto = match self.in_flight.first() {
            Some(&lowest) => lowest - 1,
            None => self.done_max,
        };
        (upto > self.acked).then_some(upto)
    }

    async fn send(&mut self, channel: &lapin::Channel, limit: Duration) -> Result<(), BrokerError> {
        if let Some(upto) = self.ackable() {
            bounded(
                limit,
                channel.basic_ack(upto, BasicAckOptions { multiple: true }),
            )
            .await?;
            self.acked = upto;
        }
        Ok(())
    }
}

/// Take one message (or refuse it, into the rejects queue); its delivery tag once it may be
/// acknowledged.
async fn handle(
    intake: &Intake,
    publisher: &Publisher,
    delivery: Delivery,
) -> Result<u64, BrokerError> {
    // The broker refuses a user_id that is not the connection's login, so this is the
    // sender's authenticated name; a message without one is refused.
    let user = delivery
        .properties
        .user_id()
        .as_ref()
        .map(|u| u.as_str().to_owned());
    let upstream = Upstream::from_values(
        header_text(&delivery, TRACEPARENT).as_deref(),
        header_text(&delivery, TRACESTATE).as_deref(),
    );
    let mut busy_waits = 0;
    let outcome = loop {
        let Some(user) = user.as_deref() else {
            intake.refused(None, None, Some(&delivery.data), 401, "unauthenticated");
            intake.stats.rejected("unauthenticated");
            break Outcome::Rejected(Rejection {
                kind: RejectionKind::Unauthenticated,
                detail: "the message has no user_id property naming its sender".into(),
                errors: Vec::new(),
                message_id: None,
            });
        };
        match intake
            .take(
                publisher,
                &delivery.data,
                Sender::BrokerUser(user),
                &upstream,
            )
            .await
        {
            Ok(o) => break o,
            Err(IntakeError::Busy) if busy_waits < 100 => {
                // The same message is being taken by another delivery: wait for its verdict.
                busy_waits += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(IntakeError::Busy) => {
                return Err(BrokerError::Refused("duplicate stuck in flight".into()));
            }
            Err(IntakeError::Publish(PublishError::Broker(e))) => return Err(e),
            Err(IntakeError::Publish(e)) => return Err(BrokerError::Refused(e.to_string())),
            Err(IntakeError::Store(e)) => {
                // Cannot account for it: leave it unacknowledged and start over.
                tracing::error!(error = %e, "state store unavailable; not acknowledging");
                return Err(BrokerError::Refused(e.to_string()));
            }
        }
    };
    if let Outcome::Rejected(r) = &outcome {
        let message_id = r
            .message_id
            .clone()
            .unwrap_or_else(|| format!("rejected-{}", uuid::Uuid::new_v4()));
        let out = Outgoing {
            expiration_ms: None,
            message_id: &message_id,
            message_type: "rejected",
            content_type: "application/octet-stream",
            correlation_id: None,
            headers: vec![
                (REASON_HEADER, HeaderValue::Text(r.detail.clone())),
                (
                    PROBLEM_HEADER,
                    HeaderValue::Text(problem_type(r.kind.slug())),
                ),
            ],
        };
        publisher
            .publish(&intake.names.rejects(), "", &delivery.data, &out)
            .await
            .map_err(|e| match e {
                PublishError::Broker(b) => b,
                other => BrokerError::Refused(other.to_string()),
            })?;
    }
    Ok(delivery.delivery_tag)
}

#[cfg(test)]
mod tests {
    use super::Acks;

    #[test]
    fn a_message_is_acknowledged_only_with_everything_before_it() {
        let mut acks = Acks::default();
        for tag in 1..=5 {
            acks.delivered(tag);
        }
        assert_eq!(acks.ackable(), None);
        // 2 and 3 done, 1 still in flight: nothing yet.
        acks.done(3);
        acks.done(2);
        assert_eq!(acks.ackable(), None);
        // 1 done: 1–3 in one ack; 4 and 5 still in flight.
        acks.done(1);
        assert_eq!(acks.ackable(), Some(3));
        acks.acked = 3;
        assert_eq!(acks.ackable(), None);
        // 5 done before 4: held back until 4 is.
        acks.done(5);
        assert_eq!(acks.ackable(), None);
        acks.delivered(6);
        acks.done(4);
        assert_eq!(acks.ackable(), Some(5));
        acks.acked = 5;
        acks.done(6);
        assert_eq!(acks.ackable(), Some(6));
    }
}
