//! Intake: the one path every upstream message takes, whichever front door it came through.
//!
//! admit (pure) → claim the (source, message_id) → already accepted? return the original
//! receipt → publish one confirmed copy per destination → commit the receipt → only then
//! may the caller acknowledge upstream (HTTP 202, AMQP ack).
//!
//! Copies for HTTP destinations go to the destination's queue, where its delivery worker takes
//! over. Copies for AMQP destinations are encoded and published straight to the partner's
//! exchange — a confirmed, routed publish there *is* the delivery — and fall back to the
//! destination queue (and its retries) when the partner's exchange cannot take them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;
use wingspan_adapters::render;
use wingspan_core::config::Transport;
use wingspan_core::{Admitted, CompiledConfig, Envelope, Rejection, Sender, admit_as};

use crate::audit;
use crate::broker::publish::{HeaderValue, Outgoing};
use crate::broker::{Names, PublishError, Publisher};
use crate::live::Live;
use crate::stats::{Event, Stats};
use crate::store::{NewReceipt, Receipt, Store, StoreError};
use crate::telemetry::{Step, Telemetry, Upstream, carry};
use opentelemetry::trace::SpanKind;
use wingspan_core::audit::{Entry, Event as Audit};
use wingspan_core::trace::TraceContext;

/// Header carrying the delivery attempt number on internal copies.
pub const ATTEMPT_HEADER: &str = "x-wingspan-attempt";
/// Header carrying the sending source on internal copies.
pub const SOURCE_HEADER: &str = "x-wingspan-source";
/// Header carrying when the message was accepted (milliseconds since the epoch) on internal
/// copies, for the end-to-end delivery latency.
pub const ACCEPTED_HEADER: &str = "x-wingspan-accepted-ms";
/// Header carrying the reason on parked and rejected messages.
pub const REASON_HEADER: &str = "x-wingspan-reason";
/// When a copy was parked (ms since the epoch): its expiry counts from here.
pub const PARKED_HEADER: &str = "x-wingspan-parked-ms";
/// Header carrying the problem type on rejected messages.
pub const PROBLEM_HEADER: &str = "x-wingspan-problem";
/// Header naming the intake attempt that published a copy for a destination that delivers
/// once; the message's receipt names the attempt that committed (see `delivery::fence`).
pub const CLAIM_HEADER: &str = "x-wingspan-claim";

#[derive(Debug)]
pub enum Outcome {
    /// Every copy confirmed and the receipt committed.
    Accepted(Receipt),
    /// Accepted before; nothing was published again.
    Duplicate(Receipt),
    /// Refused; nothing was published.
    Rejected(Rejection),
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the same message is being accepted right now")]
    Busy,
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug)]
pub struct Intake {
    /// The config in force; each message takes one snapshot and keeps it.
    pub live: Live,
    pub names: Names,
    pub store: Store,
    pub stats: Stats,
    /// Where spans go (nowhere by default); trace context is carried either way.
    pub telemetry: Telemetry,
    in_flight: Mutex<HashSet<(String, String)>>,
}

/// A message's place in its trace while intake works on it: the step's context (the parent
/// of each copy's) and what upstream asked to pass on.
#[derive(Debug, Clone, Copy)]
struct Traced<'a> {
    cx: &'a TraceContext,
    /// `cx`'s trace id as records keep it.
    trace_id: &'a str,
    state: Option<&'a str>,
}

/// Now, in milliseconds since the epoch (for the accepted-at header).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What publishing a message's copies left for its receipt.
struct Published {
    /// Destinations delivered at intake (AMQP destinations published to directly).
    delivered: Vec<String>,
    /// The name of this intake attempt, when a destination delivers once.
    claim: Option<String>,
}

/// Releases a claimed (source, message_id) when dropped.
struct Claim<'a> {
    set: &'a Mutex<HashSet<(String, String)>>,
    key: (String, String),
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl Intake {
    pub fn new(live: Live, store: Store, stats: Stats, telemetry: Telemetry) -> Self {
        let names = Names::new(&live.get().broker.prefix);
        Self {
            live,
            names,
            store,
            stats,
            telemetry,
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// The config in force now.
    pub fn config(&self) -> Arc<CompiledConfig> {
        self.live.get()
    }

    fn claim(&self, source: &str, message_id: &str) -> Option<Claim<'_>> {
        let key = (source.to_owned(), message_id.to_owned());
        let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(key.clone()) {
            return None;
        }
        Some(Claim {
            set: &self.in_flight,
            key,
        })
    }

    /// Record a refusal made before intake proper (size, media type, a partner document its
    /// adapter could not read): received and rejected, with what is known.
    pub fn refused(
        &self,
        source: Option<&str>,
        message_id: Option<&str>,
        bytes: Option<&[u8]>,
        status: u16,
        slug: &str,
    ) {
        self.refused_in(None, source, message_id, bytes, status, slug);
    }

    /// [`Intake::refused`] within a trace.
    fn refused_in(
        &self,
        trace_id: Option<&str>,
        source: Option<&str>,
        message_id: Option<&str>,
        bytes: Option<&[u8]>,
        status: u16,
        slug: &str,
    ) {
        let mut received = Entry::new(Audit::Received, audit::now());
        received.source = source.map(str::to_owned);
        received.message_id = message_id.map(str::to_owned);
        received.payload_sha256 = bytes.map(wingspan_core::audit::sha256_hex);
        received.actor = Some("gateway".into());
        let mut rejected = received.clone();
        received.trace_id = trace_id.map(str::to_owned);
        rejected.event = Audit::Rejected;
        rejected.payload_sha256 = None;
        rejected.outcome = Some(status.to_string());
        rejected.reason = Some(slug.to_owned());
        self.store.audit_later(vec![received, rejected]);
    }

    /// Whether `corr` names a message this gateway accepted. A partner can answer before the
    /// request's own intake has finished writing its receipt (the copy is out before the
    /// receipt is durable), so a request still in flight here is waited for, briefly.
    async fn correlates(&self, corr: &str) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            if self.store.known(corr).await.unwrap_or(false) {
                return true;
            }
            let in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|(_, id)| id == corr);
            if !in_flight || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Take one upstream message from `sender`, as its transport authenticated it, in the
    /// trace `upstream` names (or a new one). `Ok` means the caller may acknowledge upstream.
    pub async fn take(
        &self,
        publisher: &Publisher,
        bytes: &[u8],
        sender: Sender<'_>,
        upstream: &Upstream,
    ) -> Result<Outcome, IntakeError> {
        let started = std::time::Instant::now();
        // One config for the whole of this message, even if a reload swaps it meanwhile.
        let config = self.live.get();
        let kind = match sender {
            Sender::BrokerUser(_) => SpanKind::Consumer,
            _ => SpanKind::Server,
        };
        let mut step = self.telemetry.step("admit", kind, upstream.parent.as_ref());
        let trace_id = step.trace_id();
        let admitted = match admit_as(&config, bytes, sender) {
            Ok(a) => a,
            Err(r) => {
                step.set("wingspan.outcome", "rejected");
                step.failed(r.kind.slug());
                self.refused_in(
                    Some(&trace_id),
                    sender.source(),
                    r.message_id.as_deref(),
                    Some(bytes),
                    r.kind.status(),
                    r.kind.slug(),
                );
                self.stats.rejected(r.kind.slug());
                tracing::debug!(
                    kind = r.kind.slug(),
                    message_id = r.message_id.as_deref(),
                    "message rejected"
                );
                return Ok(Outcome::Rejected(r));
            }
        };
        // Every line logged for this message's intake names it (never its payload).
        let env = &admitted.envelope;
        let span = tracing::info_span!(
            "intake",
            message_id = %env.message_id,
            correlation_id = env.correlation_id.as_deref().unwrap_or_default(),
            source = %env.source,
            message_type = %env.message_type,
            trace_id = %trace_id,
        );
        if step.recording() {
            step.set("messaging.message.id", env.message_id.clone());
            step.set("wingspan.source", env.source.clone());
            step.set("wingspan.message_type", env.message_type.clone());
        }
        let cx = *step.context();
        let traced = Traced {
            cx: &cx,
            trace_id: &trace_id,
            state: upstream.state.as_deref(),
        };
        let outcome = self
            .accept(&config, publisher, &admitted, bytes, traced)
            .instrument(span)
            .await;
        match &outcome {
            Ok(Outcome::Accepted(_)) => {
                step.set("wingspan.outcome", "accepted");
                self.stats
                    .accepted(&env.source, &env.message_type, started.elapsed());
            }
            Ok(Outcome::Duplicate(_)) => step.set("wingspan.outcome", "duplicate"),
            Ok(Outcome::Rejected(_)) => step.set("wingspan.outcome", "rejected"),
            Err(IntakeError::Busy) => step.set("wingspan.outcome", "in progress"),
            Err(_) => step.failed("unavailable"),
        }
        outcome
    }

    /// Intake of an admitted message: duplicate check, copies, receipt.
    async fn accept(
        &self,
        config: &CompiledConfig,
        publisher: &Publisher,
        admitted: &Admitted,
        bytes: &[u8],
        traced: Traced<'_>,
    ) -> Result<Outcome, IntakeError> {
        let env = &admitted.envelope;
        // The received record names the trace, as it names the person: the message's other
        // records (its thread, found from that one) are in the same trace.
        let payload_sha256 = wingspan_core::audit::sha256_hex(bytes);
        let _in_flight = self
            .claim(&env.source, &env.message_id)
            .ok_or(IntakeError::Busy)?;
        // With several instances, the claim is taken in the shared store too, and the receipt
        // is read there after it: another instance's receipt committed before the claim was
        // free is found; its claim still fresh means it is accepting the message now.
        let mut claim = self
            .store
            .claim(&env.source, &env.message_id)
            .await?
            .ok_or(IntakeError::Busy)?;
        if let Some(receipt) = claim.receipt.take() {
            let mut received = audit::about(Audit::Received, env);
            received.payload_sha256 = Some(payload_sha256);
            received.trace_id = Some(traced.trace_id.to_owned());
            let mut duplicate = audit::about(Audit::Duplicate, env);
            duplicate.outcome = Some("original receipt returned".into());
            self.store.audit_later(vec![received, duplicate]);
            tracing::debug!(message_id = %env.message_id, "duplicate of an accepted message");
            return Ok(Outcome::Duplicate(receipt));
        }

        let destinations: Vec<String> = admitted
            .destinations
            .iter()
            .map(|&d| config.destinations[d].id.clone())
            .collect();
        // One record says the message was received, accepted and routed (to which destinations,
        // by which routes): it is queued to the store before any copy goes out, so it precedes
        // every delivery record in the chain (the writer applies commands in order); its commit
        // is awaited, with the receipt's, before the upstream ack. A refusal or a duplicate is
        // a `received` record without that outcome, followed by the record saying which.
        // The person is named (by reference) once, in this record: a search by person finds
        // it, and the message's trail the rest.
        let mut received = audit::about(Audit::Received, env);
        received.payload_sha256 = Some(payload_sha256);
        received.trace_id = Some(traced.trace_id.to_owned());
        received.subject_ref = audit::person_id(env).map(|p| self.store.subject_ref(p));
        received.outcome = Some(wingspan_core::audit::ACCEPTED.into());
        received.destination = Some(destinations.join(","));
        received.reason = Some(
            admitted
                .routes
                .iter()
                .filter_map(|&i| config.routes.routes().get(i).map(|r| r.name.as_str()))
                .collect::<Vec<_>>()
                .join(","),
        );
        let correlated = match &env.correlation_id {
            Some(corr) => {
                let mut reply = self
                    .telemetry
                    .step("reply", SpanKind::Internal, Some(traced.cx));
                let matched = self.correlates(corr).await;
                if reply.recording() {
                    reply.set("wingspan.correlation_id", corr.clone());
                    reply.set(
                        "wingspan.outcome",
                        if matched { "matched" } else { "unknown" },
                    );
                }
                Some(matched)
            }
            None => None,
        };
        let mut early = vec![received];
        match correlated {
            Some(true) => {
                let mut e = audit::about(Audit::ReplyCorrelated, env);
                e.outcome = Some("matched".into());
                early.push(e);
            }
            Some(false) => {
                let mut e = audit::about(Audit::ReplyCorrelated, env);
                e.outcome = Some("unknown".into());
                e.reason = Some("correlation id names no accepted message".into());
                early.push(e);
            }
            None => {}
        }
        let early = self.store.audit_enqueue(early).await?;
        // Destinations delivered at intake are recorded with the receipt itself.
        let Published {
            delivered,
            claim: attempt,
        } = match self
            .publish_copies(
                config,
                publisher,
                env,
                bytes,
                &admitted.destinations,
                traced,
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                // The upstream is told 503 and will send again: say so in the trail.
                let mut failed = audit::about(Audit::Rejected, env);
                failed.outcome = Some("503".into());
                failed.reason = Some("unavailable: copies not confirmed by the broker".into());
                self.store.audit_later(vec![failed]);
                return Err(e);
            }
        };
        let mut entries = Vec::new();
        for d in &delivered {
            let mut e = audit::about(Audit::Delivered, env);
            e.destination = Some(d.clone());
            e.outcome = Some("published to the partner exchange".into());
            entries.push(e);
        }
        self.store
            .put_receipt(
                NewReceipt {
                    source: env.source.clone(),
                    message_id: env.message_id.clone(),
                    message_type: env.message_type.clone(),
                    correlation_id: env.correlation_id.clone(),
                    correlation_unknown: correlated == Some(false),
                    destinations: destinations.clone(),
                    delivered,
                    claim: attempt,
                },
                entries,
                Some(&early),
            )
            .await?;
        claim.committed();
        // The early records' batch committed before (or with) the receipt's (had it failed,
        // the receipt would have been refused with it).
        early
            .outcome
            .await
            .map_err(|_| StoreError::Stopped)?
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        match correlated {
            Some(true) => {
                for d in &destinations {
                    self.stats
                        .record(&env.message_type, d, Event::ReplyCorrelated);
                }
            }
            Some(false) => {
                tracing::warn!(message_id = %env.message_id, "reply names a correlation id this gateway never accepted; delivered and flagged");
            }
            None => {}
        }
        tracing::debug!(message_id = %env.message_id, correlation_id = env.correlation_id.as_deref(), ?destinations, "accepted");
        Ok(Outcome::Accepted(Receipt {
            message_id: env.message_id.clone(),
            status: "accepted".into(),
            destinations,
        }))
    }

    /// The copy a destination queue holds: the exact bytes received.
    pub fn queued_copy<'a>(env: &'a Envelope, attempt: i64, accepted_ms: i64) -> Outgoing<'a> {
        Outgoing {
            expiration_ms: None,
            message_id: &env.message_id,
            message_type: &env.message_type,
            content_type: "application/json",
            correlation_id: env.correlation_id.as_deref(),
            headers: vec![
                (ATTEMPT_HEADER, HeaderValue::Int(attempt)),
                (SOURCE_HEADER, HeaderValue::Text(env.source.clone())),
                (ACCEPTED_HEADER, HeaderValue::Int(accepted_ms)),
            ],
        }
    }

    /// [`Intake::queued_copy`] of a body sealed as `sealed` (see [`crate::seal`]), if it is.
    pub fn sealed_copy<'a>(
        env: &'a Envelope,
        attempt: i64,
        accepted_ms: i64,
        sealed: Option<&str>,
    ) -> Outgoing<'a> {
        let mut out = Self::queued_copy(env, attempt, accepted_ms);
        if let Some(label) = sealed {
            out.headers.push((
                crate::seal::SEALED_HEADER,
                HeaderValue::Text(label.to_owned()),
            ));
        }
        out
    }

    async fn publish_copies(
        &self,
        config: &CompiledConfig,
        publisher: &Publisher,
        env: &Envelope,
        bytes: &[u8],
        dests: &[usize],
        traced: Traced<'_>,
    ) -> Result<Published, IntakeError> {
        // A destination that delivers once takes only copies of the attempt that commits: this
        // attempt is named in its copies and in the receipt.
        let claim = dests
            .iter()
            .any(|&d| config.destinations[d].delivers_once())
            .then(|| uuid::Uuid::new_v4().simple().to_string());
        let deliver = self.names.deliver_exchange();
        let mut delivered = Vec::new();
        let mut pending = Vec::with_capacity(dests.len());
        // What goes into the gateway's own queues: sealed at rest when a payload key is set.
        let sealed = match self.store.sealer() {
            Some(s) => Some((
                s.seal(&env.message_id, bytes).map_err(|e| {
                    IntakeError::Store(StoreError::Io(std::io::Error::other(e.to_string())))
                })?,
                s.label(),
            )),
            None => None,
        };
        let (queued, label) = match &sealed {
            Some((body, label)) => (body.as_slice(), Some(*label)),
            None => (bytes, None),
        };
        // The copy for a destination's queue, in the trace of the step that sends it.
        let queued_copy = |step: &Step| {
            let mut out = Self::sealed_copy(env, 1, now_ms(), label);
            carry(&mut out, step.context(), traced.state);
            out
        };
        for &d in dests {
            let dest = &config.destinations[d];
            match &dest.transport {
                Transport::Amqp { once: true, .. } => {
                    // Published by the destination's worker, in a transaction with the copy's
                    // ack; the copy names this attempt.
                    let step = self.step(traced, "publish", SpanKind::Producer, &dest.id);
                    let mut out = queued_copy(&step);
                    if let Some(claim) = &claim {
                        out.headers
                            .push((CLAIM_HEADER, HeaderValue::Text(claim.to_owned())));
                    }
                    let p = publisher.send(&deliver, &dest.id, queued, &out).await?;
                    pending.push((d, false, p, step));
                }
                Transport::Amqp {
                    exchange,
                    routing_key,
                    once: false,
                } => {
                    // A confirmed publish to the partner's exchange is the delivery itself.
                    let step = self.step(traced, "deliver", SpanKind::Producer, &dest.id);
                    let encoded = render::for_destination(dest, env, Some(bytes));
                    if let Ok(encoded) = encoded {
                        let mut out = Outgoing {
                            expiration_ms: None,
                            message_id: &env.message_id,
                            message_type: &env.message_type,
                            content_type: encoded.content_type,
                            correlation_id: env.correlation_id.as_deref(),
                            headers: vec![(SOURCE_HEADER, HeaderValue::Text(env.source.clone()))],
                        };
                        carry(&mut out, step.context(), traced.state);
                        let p = publisher
                            .send(exchange, routing_key, &encoded.body, &out)
                            .await?;
                        pending.push((d, true, p, step));
                        continue;
                    }
                    // An encoding failure is handled (and parked) by the delivery worker.
                    let step = self.step(traced, "publish", SpanKind::Producer, &dest.id);
                    let p = publisher
                        .send(&deliver, &dest.id, queued, &queued_copy(&step))
                        .await?;
                    pending.push((d, false, p, step));
                }
                Transport::Http { .. } => {
                    let step = self.step(traced, "publish", SpanKind::Producer, &dest.id);
                    let p = publisher
                        .send(&deliver, &dest.id, queued, &queued_copy(&step))
                        .await?;
                    pending.push((d, false, p, step));
                }
            }
        }
        for (d, direct, p, mut step) in pending {
            let dest = &config.destinations[d];
            match publisher.confirmed(p).await {
                Ok(()) => {
                    step.set(
                        "wingspan.outcome",
                        if direct { "delivered" } else { "queued" },
                    );
                    self.stats
                        .record(&env.message_type, &dest.id, Event::Routed);
                    if direct {
                        self.stats
                            .record(&env.message_type, &dest.id, Event::Delivered);
                        delivered.push(dest.id.clone());
                    }
                }
                Err(PublishError::Unroutable | PublishError::Nacked) if direct => {
                    // The partner's exchange could not take it: hand it to the destination
                    // queue, whose worker retries with backoff.
                    tracing::warn!(destination = %dest.id, "partner exchange refused a direct delivery; queued for retry");
                    step.set(
                        "wingspan.outcome",
                        "partner exchange refused; queued for retry",
                    );
                    publisher
                        .publish(&deliver, &dest.id, queued, &queued_copy(&step))
                        .await?;
                    self.stats
                        .record(&env.message_type, &dest.id, Event::Routed);
                }
                Err(e) => {
                    step.failed("not confirmed by the broker");
                    return Err(e.into());
                }
            }
        }
        Ok(Published { delivered, claim })
    }

    /// A step of this message's trace about one destination.
    fn step(&self, traced: Traced<'_>, name: &'static str, kind: SpanKind, dest: &str) -> Step {
        let mut step = self.telemetry.step(name, kind, Some(traced.cx));
        if step.recording() {
            step.set("wingspan.destination", dest.to_owned());
        }
        step
    }
}
