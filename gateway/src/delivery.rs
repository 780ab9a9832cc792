//! Delivery workers: one per destination, each with its own channel, prefetch (= the
//! destination's concurrency) and HTTP timeouts, so one slow or absent partner never holds
//! back another.
//!
//! For each copy: encode through the destination's adapter → deliver (HTTP POST with
//! `Idempotency-Key: <message_id>`, or a confirmed mandatory AMQP publish) →
//! - success: ack;
//! - transient failure (timeout, connection error, 408/429/5xx, broker refused): publish to the
//!   next retry tier with the attempt count, then ack; after `max_attempts`, park;
//! - permanent failure (other 4xx, unencodable message): park at once with the reason.
//!
//! Every ack comes after the confirm of whatever replaced the message (retry copy or parked
//! copy), so a crash in between duplicates at worst — the partner deduplicates — and never loses.
//!
//! A destination that delivers once (`amqp.once`, for partners that cannot deduplicate) consumes
//! on a transacted channel: each copy is first checked against the message's receipt (only the
//! copies of the intake attempt that committed go out, see [`fence`]), then published to the
//! partner together with its own ack in one AMQP transaction.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;
use wingspan_adapters::render;
use wingspan_core::config::{Destination, Transport};
use wingspan_core::{CompiledConfig, Envelope};

use crate::audit;
use crate::broker::publish::{HeaderValue, Outgoing};
use crate::broker::{
    Broker, BrokerError, Handed, Names, PublishError, Publisher, Session, Transacted, bounded,
};
use crate::intake::{
    ACCEPTED_HEADER, ATTEMPT_HEADER, CLAIM_HEADER, Intake, REASON_HEADER, SOURCE_HEADER,
};
use crate::stats::{Event, Stats};
use crate::store::{DeliveryState, Store};
use crate::telemetry::{TRACEPARENT, TRACESTATE, Telemetry, Upstream, carry};
use opentelemetry::trace::SpanKind;
use wingspan_core::audit::Event as Audit;
use wingspan_core::trace::TraceContext;

/// What happened to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again later.
    Transient(String),
    /// Will fail the same way every time.
    Permanent(String),
}

/// Classify an HTTP status from a partner.
pub fn classify_status(status: u16) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        408 | 425 | 429 | 500..=599 => Attempt::Transient(format!("HTTP {status}")),
        _ => Attempt::Permanent(format!("HTTP {status} from partner")),
    }
}

#[derive(Debug, Clone)]
pub struct DeliveryContext {
    pub config: Arc<CompiledConfig>,
    pub names: Names,
    pub store: Store,
    pub stats: Stats,
    pub http: reqwest::Client,
    pub telemetry: Telemetry,
}

/// An integer header of a delivered message (any AMQP integer width).
pub fn header_int(d: &Delivery, name: &str) -> Option<i64> {
    match header(d, name)? {
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortInt(i) => Some(i64::from(*i)),
        _ => None,
    }
}

/// A text header of a delivered message.
pub fn header_text(d: &Delivery, name: &str) -> Option<String> {
    match header(d, name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn header<'a>(d: &'a Delivery, name: &str) -> Option<&'a AMQPValue> {
    d.properties.headers().as_ref()?.inner().get(name)
}

/// How long a copy for a destination that delivers once waits for its intake's receipt
/// before it counts as an orphan (its intake died and its sender never sent it again).
pub const ORPHAN_AFTER: Duration = Duration::from_secs(600);
/// How long a worker holds such a copy waiting for the receipt before setting it aside in the
/// first retry tier.
const HOLD: Duration = Duration::from_secs(1);
/// Slack for clocks and pruning passes when telling a pruned receipt from a missing one.
const PRUNE_MARGIN: Duration = Duration::from_secs(5);

/// What a destination that delivers once does with a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    Deliver,
    /// Published by an intake attempt that never committed; another attempt's did.
    Superseded,
    /// Its intake has not committed (yet): ask again later.
    Wait,
    /// Its intake never committed and nobody sent the message again: the sender was never
    /// answered, so the message was never accepted.
    Orphan,
}

/// The fence of a destination that delivers once: `copy` is the intake attempt the copy
/// names, `receipt` the attempt named by the message's committed receipt (`None`: no receipt),
/// `age` how long ago the copy's attempt began, `window` the receipts' retention window.
///
/// Two attempts can each publish a copy (the first died between its copies' confirms and its
/// receipt's commit; the sender's retry claimed the message again), but only one receipt
/// commits: the copies it names are delivered, the others dropped.
pub fn fence(
    copy: Option<&str>,
    receipt: Option<Option<&str>>,
    age: Duration,
    window: Duration,
) -> Fence {
    // Copies queued before attempts were named, and replays an operator asked for.
    let Some(copy) = copy else {
        return Fence::Deliver;
    };
    match receipt {
        Some(Some(named)) if named == copy => Fence::Deliver,
        Some(_) => Fence::Superseded,
        // Past the window its receipt may have been pruned: nothing is left to tell by.
        None if age + PRUNE_MARGIN >= window => Fence::Deliver,
        None if age < ORPHAN_AFTER => Fence::Wait,
        None => Fence::Orphan,
    }
}

/// When the message was accepted (the header, or now for copies from before it existed).
fn accepted_ms(d: &Delivery) -> i64 {
    header_int(d, ACCEPTED_HEADER).unwrap_or_else(crate::intake::now_ms)
}

/// How long ago the message was accepted, if the copy says when.
fn since_accepted(d: &Delivery) -> Option<Duration> {
    let at = header_int(d, ACCEPTED_HEADER)?;
    Some(Duration::from_millis(
        u64::try_from(crate::intake::now_ms() - at).unwrap_or(0),
    ))
}

/// Run one worker per destination of the config in force until shutdown; when a reload
/// swaps the config, stop them all gracefully (no new deliveries, in-flight ones finish,
/// the unacknowledged return to their queues) and start the new config's. Nothing is lost in
/// between: the copies wait in their queues.
pub async fn manage(
    base: DeliveryContext,
    live: crate::live::Live,
    broker: Broker,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = live.subscribe();
    loop {
        changes.mark_unchanged();
        let config = live.get();
        let ctx = Arc::new(DeliveryContext {
            config: config.clone(),
            ..base.clone()
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut workers = JoinSet::new();
        for index in 0..config.destinations.len() {
            workers.spawn(run(ctx.clone(), index, broker.clone(), stop_rx.clone()));
        }
        let reload = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => false,
            changed = changes.changed() => changed.is_ok(),
        };
        let _ = stop.send(true);
        while workers.join_next().await.is_some() {}
        if !reload || *shutdown.borrow() {
            return;
        }
        tracing::info!("config swapped: delivery workers restarted");
    }
}

/// Run the worker of destination `index` until shutdown, across reconnects.
pub async fn run(
    ctx: Arc<DeliveryContext>,
    index: usize,
    broker: Broker,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut generation = 0;
    while let Some(session) = broker.next_session(generation, &mut shutdown).await {
        generation = session.generation;
        if let Err(e) = consume(&ctx, index, &session, &broker, shutdown.clone()).await {
            tracing::warn!(destination = %ctx.config.destinations[index].id, error = %e, "delivery worker lost its channel");
            session.poison();
        }
    }
}

async fn consume(
    ctx: &Arc<DeliveryContext>,
    index: usize,
    session: &Session,
    broker: &Broker,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BrokerError> {
    let dest = &ctx.config.destinations[index];
    let limit = broker.op_timeout;
    let channel = bounded(limit, session.connection.create_channel()).await?;
    bounded(
        limit,
        channel.basic_qos(dest.concurrency, BasicQosOptions::default()),
    )
    .await?;
    // A destination that delivers once publishes on this channel, in transactions with the
    // copies' acks.
    let once = if dest.delivers_once() {
        Some(Arc::new(Transacted::open(channel.clone(), limit).await?))
    } else {
        None
    };
    let publisher = Publisher::open(session, limit).await?;
    let tag = format!("wingspan-{}-{}", ctx.config.instance, dest.id);
    let mut consumer = bounded(
        limit,
        channel.basic_consume(
            ctx.names.destination(&dest.id).as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;
    let mut tasks: JoinSet<Result<(), BrokerError>> = JoinSet::new();
    let result = loop {
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let (ctx, publisher, once) = (ctx.clone(), publisher.clone(), once.clone());
                    // Every line logged for this delivery names the message it is about.
                    // Recorded when the span is made: borrowed here, nothing copied.
                    let props = &delivery.properties;
                    let span = tracing::info_span!(
                        "delivery",
                        message_id = props.message_id().as_ref().map_or("", |v| v.as_str()),
                        correlation_id = props.correlation_id().as_ref().map_or("", |v| v.as_str()),
                        destination = ctx.config.destinations[index].id.as_str(),
                    );
                    tasks.spawn(
                        async move {
                            handle(&ctx, index, &publisher, once.as_deref(), delivery, limit).await
                        }
                            .instrument(span),
                    );
                }
                Some(Err(e)) => break Err(e.into()),
                None => break Err(BrokerError::Disconnected),
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(Err(e)) = done { break Err(e); }
            }
            _ = shutdown.changed() => break Ok(()),
        }
    };
    if result.is_ok() {
        // Graceful stop: no new deliveries, let in-flight ones finish (each is bounded by its
        // transport timeout); anything unacknowledged returns to the queue when the channel closes.
        let _ = bounded(
            limit,
            channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()),
        )
        .await;
        let grace = Duration::from_millis(http_timeout(dest).max(limit.as_millis() as u64)) + limit;
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        let _ = bounded(limit, channel.close(200, "shutdown".into())).await;
    }
    result
}

fn http_timeout(dest: &Destination) -> u64 {
    match dest.transport {
        Transport::Http { timeout_ms, .. } => timeout_ms,
        Transport::Amqp { .. } => 0,
    }
}

async fn handle(
    ctx: &DeliveryContext,
    index: usize,
    publisher: &Publisher,
    once: Option<&Transacted>,
    delivery: Delivery,
    limit: Duration,
) -> Result<(), BrokerError> {
    let dest = &ctx.config.destinations[index];
    let attempt = header_int(&delivery, ATTEMPT_HEADER).unwrap_or(1).max(1);
    if attempt == 1
        && let Some(elapsed) = since_accepted(&delivery)
    {
        ctx.stats.consumed_after(elapsed);
    }
    let source = header_text(&delivery, SOURCE_HEADER).unwrap_or_default();
    // This attempt is a step of the message's trace, under the step that queued the copy.
    let upstream = Upstream::from_values(
        header_text(&delivery, TRACEPARENT).as_deref(),
        header_text(&delivery, TRACESTATE).as_deref(),
    );
    let kind = match dest.transport {
        Transport::Http { .. } => SpanKind::Client,
        Transport::Amqp { .. } => SpanKind::Producer,
    };
    let mut step = ctx
        .telemetry
        .step("deliver", kind, upstream.parent.as_ref());
    if step.recording() {
        step.set("wingspan.destination", dest.id.clone());
        step.set("wingspan.attempt", attempt);
    }
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    // A copy sealed at rest is opened here; one that cannot be opened (its key is not this
    // gateway's, or it does not authenticate) is parked as it is, with the reason.
    let sealed = header_text(&delivery, crate::seal::SEALED_HEADER);
    let opened = crate::seal::plain(
        ctx.store.sealer(),
        sealed.as_deref(),
        &message_id,
        &delivery.data,
    );
    let parsed = match &opened {
        Ok(data) => serde_json::from_slice::<Envelope>(data)
            .map_err(|_| "queued copy is not a canonical envelope".to_owned()),
        Err(e) => Err(format!("queued copy cannot be opened: {e}")),
    };
    let envelope: Envelope = match parsed {
        Ok(e) => e,
        Err(reason) => {
            if opened.is_err() {
                tracing::error!(%message_id, destination = %dest.id, %reason, "a sealed copy could not be opened; parked as it is");
            }
            let env = Envelope {
                message_id,
                message_type: "unknown".into(),
                schema_version: String::new(),
                source: source.clone(),
                sent_at: String::new(),
                correlation_id: None,
                payload: serde_json::Value::Null,
            };
            step.failed("queued copy unreadable; parked");
            return park(
                ctx, dest, publisher, once, false, &delivery, &env, attempt, &reason, limit, None,
                &upstream,
            )
            .await;
        }
    };
    let data = opened.unwrap_or_default();
    if let Some(tx) = once
        && !fenced(
            ctx,
            tx,
            publisher,
            dest,
            &delivery,
            &envelope,
            attempt,
            sealed.as_deref(),
            &upstream,
            limit,
        )
        .await?
    {
        return Ok(());
    }
    let mut wire_sha256 = None;
    // Recorded and acknowledged already, in the transaction that published the copy.
    let mut settled = false;
    let outcome = match render::for_destination(dest, &envelope, Some(&data)) {
        Ok(encoded) => match &dest.transport {
            Transport::Http { url, timeout_ms } => {
                wire_sha256 = Some(wingspan_core::audit::sha256_hex(&encoded.body));
                deliver_http(
                    &ctx.http,
                    url,
                    *timeout_ms,
                    &envelope,
                    encoded,
                    step.context(),
                    upstream.state.as_deref(),
                )
                .await
            }
            Transport::Amqp {
                exchange,
                routing_key,
                once: delivers_once,
            } => {
                wire_sha256 = Some(wingspan_core::audit::sha256_hex(&encoded.body));
                let mut out = Outgoing {
                    expiration_ms: None,
                    message_id: &envelope.message_id,
                    message_type: &envelope.message_type,
                    content_type: encoded.content_type,
                    correlation_id: envelope.correlation_id.as_deref(),
                    headers: vec![(SOURCE_HEADER, HeaderValue::Text(envelope.source.clone()))],
                };
                carry(&mut out, step.context(), upstream.state.as_deref());
                match once.filter(|tx| *delivers_once && !tx.returning()) {
                    Some(tx) => {
                        // Fail closed: the attempt is in the trail before its transaction
                        // commits (a transaction that fails leaves the copy to be tried again).
                        let done = attempt_record(
                            &envelope,
                            dest,
                            wire_sha256.clone(),
                            (Audit::Delivered, "delivered".into()),
                            attempt,
                            delivery.redelivered,
                        );
                        if !record(ctx, &delivery, limit, once, vec![done]).await? {
                            return Ok(());
                        }
                        settled = true;
                        match tx
                            .publish_and_ack(
                                exchange,
                                routing_key,
                                &encoded.body,
                                &out,
                                &delivery.acker,
                            )
                            .await?
                        {
                            Handed::Taken => Attempt::Delivered,
                            Handed::Returned => {
                                // Acknowledged with it: the copy is put back below, and the
                                // next ones go with confirms until the partner takes one.
                                tx.set_returning(true);
                                Attempt::Transient(
                                    "partner exchange returned it (no queue bound)".into(),
                                )
                            }
                        }
                    }
                    None => match publisher
                        .publish(exchange, routing_key, &encoded.body, &out)
                        .await
                    {
                        Ok(()) => {
                            if let Some(tx) = once {
                                tx.set_returning(false);
                            }
                            Attempt::Delivered
                        }
                        Err(PublishError::Unroutable) => {
                            Attempt::Transient("partner exchange has no queue bound".into())
                        }
                        Err(PublishError::Nacked) => {
                            Attempt::Transient("broker refused the message".into())
                        }
                        Err(PublishError::Broker(e)) => return Err(e),
                    },
                }
            }
        },
        Err(e) => Attempt::Permanent(e.to_string()),
    };
    let attempts = u32::try_from(attempt).unwrap_or(u32::MAX);
    // The attempt's record: which bytes went where, what came back; a copy the broker hands
    // out again after a crash or a lost channel is marked as a redelivery. A successful
    // attempt's record is the delivery's (`delivered`, with the bytes' hash and the attempt).
    match &outcome {
        Attempt::Delivered => step.set("wingspan.outcome", "delivered"),
        Attempt::Transient(r) | Attempt::Permanent(r) => step.failed(r),
    }
    drop(step);
    let tried = (!settled).then(|| {
        attempt_record(
            &envelope,
            dest,
            wire_sha256,
            match &outcome {
                Attempt::Delivered => (Audit::Delivered, "delivered".into()),
                Attempt::Transient(r) | Attempt::Permanent(r) => {
                    (Audit::DeliveryAttempt, r.clone())
                }
            },
            attempt,
            delivery.redelivered,
        )
    });
    match outcome {
        Attempt::Delivered => {
            if let Some(done) = tried
                && !record_then_ack(ctx, &delivery, limit, once, false, vec![done]).await?
            {
                return Ok(());
            }
            ctx.stats
                .record(&envelope.message_type, &dest.id, Event::Delivered);
            if let Some(elapsed) = since_accepted(&delivery) {
                ctx.stats.delivered_after(&dest.id, elapsed);
            }
            ctx.store.delivery(
                &envelope.source,
                &envelope.message_id,
                &dest.id,
                DeliveryState::Delivered,
                attempts,
                None,
            );
            tracing::debug!(message_id = %envelope.message_id, destination = %dest.id, attempt, "delivered");
            Ok(())
        }
        Attempt::Transient(reason) if attempt < i64::from(dest.max_attempts) => {
            let tiers = ctx.config.broker.retry_delays_ms.len();
            let tier = usize::try_from(attempt - 1).unwrap_or(0).min(tiers - 1);
            let mut out = Intake::sealed_copy(
                &envelope,
                attempt + 1,
                accepted_ms(&delivery),
                sealed.as_deref(),
            );
            out.headers
                .push((REASON_HEADER, HeaderValue::Text(reason.clone())));
            keep_claim(&delivery, &mut out);
            upstream.pass_on(&mut out);
            publisher
                .publish(&ctx.names.retry(tier), &dest.id, &delivery.data, &out)
                .await
                .map_err(into_broker)?;
            let mut retry = audit::about(Audit::RetryScheduled, &envelope);
            retry.destination = Some(dest.id.clone());
            retry.reason = Some(reason.clone());
            retry.outcome = Some(format!(
                "attempt {} in {} ms",
                attempt + 1,
                ctx.config
                    .broker
                    .retry_delays_ms
                    .get(tier)
                    .copied()
                    .unwrap_or(0)
            ));
            let entries = tried.into_iter().chain([retry]).collect();
            if !record_then_ack(ctx, &delivery, limit, once, settled, entries).await? {
                return Ok(());
            }
            ctx.stats
                .record(&envelope.message_type, &dest.id, Event::Retried);
            ctx.stats.destination_error(&dest.id, &reason, audit::now());
            ctx.store.delivery(
                &envelope.source,
                &envelope.message_id,
                &dest.id,
                DeliveryState::Retrying,
                attempts,
                Some(reason.clone()),
            );
            tracing::debug!(message_id = %envelope.message_id, destination = %dest.id, attempt, %reason, "retry scheduled");
            Ok(())
        }
        Attempt::Transient(reason) => {
            let reason = format!("{reason}; gave up after {attempt} attempts");
            park(
                ctx, dest, publisher, once, settled, &delivery, &envelope, attempt, &reason, limit,
                tried, &upstream,
            )
            .await
        }
        Attempt::Permanent(reason) => {
            park(
                ctx, dest, publisher, once, settled, &delivery, &envelope, attempt, &reason, limit,
                tried, &upstream,
            )
            .await
        }
    }
}

/// The record of one delivery attempt: `delivery_attempt` with what came back, or, for the
/// attempt that delivered, `delivered` (see [`wingspan_core::audit::attempted`]).
fn attempt_record(
    env: &Envelope,
    dest: &Destination,
    wire_sha256: Option<String>,
    (event, outcome): (Audit, String),
    attempt: i64,
    redelivered: bool,
) -> wingspan_core::audit::Entry {
    let mut tried = audit::about(event, env);
    tried.destination = Some(dest.id.clone());
    tried.payload_sha256 = wire_sha256;
    tried.outcome = Some(outcome);
    tried.reason = Some(if redelivered {
        format!("attempt {attempt}, redelivery")
    } else {
        format!("attempt {attempt}")
    });
    tried
}

/// A retry, parked or set-aside copy names the intake attempt its original named.
fn keep_claim(delivery: &Delivery, out: &mut Outgoing<'_>) {
    if let Some(claim) = header_text(delivery, CLAIM_HEADER) {
        out.headers.push((CLAIM_HEADER, HeaderValue::Text(claim)));
    }
}

/// Commit the records, then ack the copy they account for (see [`record`]): `false` when the
/// store refused them and the copy went back to its queue instead. A copy `acked` already, in
/// the transaction that published it (the partner's exchange returned it), only gets its
/// records: a store that cannot take them can no longer send it back, so that is logged.
async fn record_then_ack(
    ctx: &DeliveryContext,
    delivery: &Delivery,
    limit: Duration,
    once: Option<&Transacted>,
    acked: bool,
    entries: Vec<wingspan_core::audit::Entry>,
) -> Result<bool, BrokerError> {
    if acked {
        if let Err(e) = ctx.store.audit(entries).await {
            tracing::error!(error = %e, "audit store unavailable; the records of a copy acknowledged in its transaction were not written");
        }
        return Ok(true);
    }
    if !record(ctx, delivery, limit, once, entries).await? {
        return Ok(false);
    }
    ack(once, delivery, limit).await?;
    Ok(true)
}

/// Ack a copy; on a transacted channel the ack commits at once.
async fn ack(
    once: Option<&Transacted>,
    delivery: &Delivery,
    limit: Duration,
) -> Result<(), BrokerError> {
    match once {
        Some(tx) => tx.ack(&delivery.acker).await,
        None => bounded(limit, delivery.acker.ack(BasicAckOptions::default()))
            .await
            .map(|_| ()),
    }
}

/// Check a copy for a destination that delivers once against the message's receipt (see
/// [`fence`]): `true` to deliver it. Otherwise it was dropped (with a record saying why) or
/// set aside in the first retry tier to wait for its receipt, holding nothing here.
#[allow(clippy::too_many_arguments)]
async fn fenced(
    ctx: &DeliveryContext,
    tx: &Transacted,
    publisher: &Publisher,
    dest: &Destination,
    delivery: &Delivery,
    env: &Envelope,
    attempt: i64,
    sealed: Option<&str>,
    upstream: &Upstream,
    limit: Duration,
) -> Result<bool, BrokerError> {
    let Some(claim) = header_text(delivery, CLAIM_HEADER) else {
        return Ok(true);
    };
    let age = since_accepted(delivery).unwrap_or_default();
    let window = Duration::from_secs(ctx.config.retention.receipts_secs);
    // The copy usually arrives a few milliseconds before its receipt commits.
    let mut pause = Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    let verdict = loop {
        let named = match ctx.store.receipt_claim(&env.source, &env.message_id).await {
            Ok(named) => named,
            Err(e) => {
                tracing::error!(error = %e, "state store unavailable; a copy to deliver once returned to its queue");
                tokio::time::sleep(Duration::from_millis(500)).await;
                tx.requeue(&delivery.acker).await?;
                return Ok(false);
            }
        };
        let verdict = fence(
            Some(&claim),
            named.as_ref().map(|n| n.as_deref()),
            age + waited,
            window,
        );
        if verdict != Fence::Wait || waited >= HOLD {
            break verdict;
        }
        tokio::time::sleep(pause).await;
        waited += pause;
        pause = (pause * 2).min(Duration::from_millis(250));
    };
    let reason = match verdict {
        Fence::Deliver => return Ok(true),
        Fence::Wait => {
            // Set aside in the first retry tier (its attempt count unchanged), moved there in
            // one transaction with its ack.
            let mut out = Intake::sealed_copy(env, attempt, accepted_ms(delivery), sealed);
            keep_claim(delivery, &mut out);
            upstream.pass_on(&mut out);
            let tier = ctx.names.retry(0);
            match tx
                .publish_and_ack(&tier, &dest.id, &delivery.data, &out, &delivery.acker)
                .await?
            {
                Handed::Taken => {}
                // The gateway's own tier always routes unless its topology is gone: the copy
                // goes straight back to its queue, confirmed.
                Handed::Returned => publisher
                    .publish(
                        &ctx.names.deliver_exchange(),
                        &dest.id,
                        &delivery.data,
                        &out,
                    )
                    .await
                    .map_err(into_broker)?,
            }
            return Ok(false);
        }
        Fence::Superseded => {
            "a later attempt of the message was accepted; this copy's attempt never committed"
        }
        Fence::Orphan => "its intake never committed and the sender did not send it again",
    };
    let mut dropped = audit::about(Audit::Discarded, env);
    dropped.destination = Some(dest.id.clone());
    dropped.reason = Some(reason.into());
    dropped.outcome = Some("copy not delivered".into());
    if record_then_ack(ctx, delivery, limit, Some(tx), false, vec![dropped]).await? {
        tracing::info!(message_id = %env.message_id, destination = %dest.id, reason, "copy not delivered");
    }
    Ok(false)
}

/// Commit audit records before the ack they account for. When the store cannot take them,
/// the delivery goes back to its queue (fail closed: nothing is acknowledged that the audit
/// trail does not show) and `false` tells the caller not to ack.
async fn record(
    ctx: &DeliveryContext,
    delivery: &Delivery,
    limit: Duration,
    once: Option<&Transacted>,
    entries: Vec<wingspan_core::audit::Entry>,
) -> Result<bool, BrokerError> {
    match ctx.store.audit(entries).await {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::error!(error = %e, "audit store unavailable; delivery returned to its queue");
            tokio::time::sleep(Duration::from_millis(500)).await;
            match once {
                Some(tx) => tx.requeue(&delivery.acker).await?,
                None => {
                    bounded(
                        limit,
                        delivery.acker.nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        }),
                    )
                    .await?;
                }
            }
            Ok(false)
        }
    }
}

fn into_broker(e: PublishError) -> BrokerError {
    match e {
        PublishError::Broker(b) => b,
        // Our own exchanges always route; if they do not, the topology is gone: reconnect.
        other => BrokerError::Refused(other.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn park(
    ctx: &DeliveryContext,
    dest: &Destination,
    publisher: &Publisher,
    once: Option<&Transacted>,
    acked: bool,
    delivery: &Delivery,
    env: &Envelope,
    attempt: i64,
    reason: &str,
    limit: Duration,
    tried: Option<wingspan_core::audit::Entry>,
    upstream: &Upstream,
) -> Result<(), BrokerError> {
    let sealed = header_text(delivery, crate::seal::SEALED_HEADER);
    let mut out = Intake::sealed_copy(env, attempt, accepted_ms(delivery), sealed.as_deref());
    out.headers
        .push((REASON_HEADER, HeaderValue::Text(reason.to_owned())));
    keep_claim(delivery, &mut out);
    out.headers.push((
        crate::intake::PARKED_HEADER,
        HeaderValue::Int(crate::intake::now_ms()),
    ));
    // A replay continues the message's trace.
    upstream.pass_on(&mut out);
    // The parked copy is the only payload the gateway keeps; it expires per message type.
    out.expiration_ms = Some(ctx.config.retention.parked_ms(&env.message_type));
    publisher
        .publish(&ctx.names.park_exchange(), &dest.id, &delivery.data, &out)
        .await
        .map_err(into_broker)?;
    let mut parked = audit::about(Audit::Parked, env);
    parked.destination = Some(dest.id.clone());
    parked.reason = Some(reason.to_owned());
    parked.outcome = Some(format!("after {attempt} attempt(s)"));
    let entries = tried.into_iter().chain([parked]).collect();
    if !record_then_ack(ctx, delivery, limit, once, acked, entries).await? {
        return Ok(());
    }
    ctx.stats
        .record(&env.message_type, &dest.id, Event::DeadLettered);
    ctx.stats.destination_error(&dest.id, reason, audit::now());
    let attempts = u32::try_from(attempt).unwrap_or(u32::MAX);
    ctx.store.delivery(
        &env.source,
        &env.message_id,
        &dest.id,
        DeliveryState::DeadLettered,
        attempts,
        Some(reason.to_owned()),
    );
    tracing::warn!(message_id = %env.message_id, destination = %dest.id, %reason, "message parked");
    Ok(())
}

async fn deliver_http(
    client: &reqwest::Client,
    url: &str,
    timeout_ms: u64,
    env: &Envelope,
    encoded: wingspan_adapters::Encoded<'_>,
    trace: &TraceContext,
    tracestate: Option<&str>,
) -> Attempt {
    let mut req = client
        .post(url)
        .timeout(Duration::from_millis(timeout_ms))
        .header(reqwest::header::CONTENT_TYPE, encoded.content_type)
        .header("Idempotency-Key", &env.message_id)
        .header("X-Wingspan-Message-Type", &env.message_type)
        .header(TRACEPARENT, trace.header());
    if let Some(s) = tracestate {
        req = req.header(TRACESTATE, s);
    }
    if let Some(c) = &env.correlation_id {
        req = req.header("X-Wingspan-Correlation-Id", c);
    }
    match req.body(encoded.body.into_owned()).send().await {
        Ok(resp) => classify_status(resp.status().as_u16()),
        Err(e) if e.is_timeout() => Attempt::Transient(format!("no answer within {timeout_ms} ms")),
        Err(e) if e.is_connect() => {
            Attempt::Transient("partner unreachable (connection failed)".into())
        }
        Err(e) => Attempt::Transient(format!("HTTP transport error: {}", e.without_url())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_by_what_must_happen_next() {
        assert_eq!(classify_status(200), Attempt::Delivered);
        assert_eq!(classify_status(204), Attempt::Delivered);
        assert!(matches!(classify_status(503), Attempt::Transient(_)));
        assert!(matches!(classify_status(429), Attempt::Transient(_)));
        assert!(matches!(classify_status(408), Attempt::Transient(_)));
        assert!(matches!(classify_status(400), Attempt::Permanent(_)));
        assert!(matches!(classify_status(404), Attempt::Permanent(_)));
        assert!(matches!(classify_status(302), Attempt::Permanent(_)));
    }

    #[test]
    fn only_the_copies_of_the_attempt_that_committed_go_out() {
        let (day, s) = (Duration::from_secs(86_400), Duration::from_secs);
        // Copies that name no attempt (queued before, or replayed) are not fenced.
        assert_eq!(fence(None, None, s(0), day), Fence::Deliver);
        assert_eq!(fence(None, Some(Some("b")), s(0), day), Fence::Deliver);
        // The receipt names this copy's attempt, another's, or none.
        assert_eq!(fence(Some("a"), Some(Some("a")), s(0), day), Fence::Deliver);
        assert_eq!(
            fence(Some("a"), Some(Some("b")), s(0), day),
            Fence::Superseded
        );
        assert_eq!(fence(Some("a"), Some(None), s(0), day), Fence::Superseded);
        // No receipt: not yet (wait), never (orphan), or pruned (past the window).
        assert_eq!(fence(Some("a"), None, s(0), day), Fence::Wait);
        assert_eq!(
            fence(Some("a"), None, ORPHAN_AFTER - s(1), day),
            Fence::Wait
        );
        assert_eq!(fence(Some("a"), None, ORPHAN_AFTER, day), Fence::Orphan);
        assert_eq!(fence(Some("a"), None, day, day), Fence::Deliver);
        assert_eq!(fence(Some("a"), None, day - s(4), day), Fence::Deliver);
        // A window shorter than the orphan's wait: past the window, delivered.
        assert_eq!(fence(Some("a"), None, s(40), s(30)), Fence::Deliver);
        assert_eq!(fence(Some("a"), None, s(10), s(30)), Fence::Wait);
    }
}
