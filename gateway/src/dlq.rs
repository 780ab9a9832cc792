//! Operator actions on parked copies: show, replay, discard.
//!
//! A parked copy lives in `<prefix>.parked.<destination>` (the only payload the gateway keeps,
//! with a per-type expiry). To act on one message without disturbing the others, a *sweep*
//! takes the queue's messages one by one (`basic.get`, manual ack), as many as the queue held
//! when it started:
//! - a selected copy is acted on (replay: a fresh copy, attempt 1, to `<prefix>.deliver` with
//!   the destination's key — delivered through the config in force now; discard: nothing), its
//!   audit record committed, then acked;
//! - any other copy is republished, confirmed, to the back of the same queue with what is left
//!   of its expiry, then acked. (Returning it with a nack would count as a delivery attempt on
//!   a quorum queue and, after the delivery limit, drop it.)
//!
//! Every ack follows the confirm of whatever replaces the copy, so a crash mid-sweep can leave
//! a parked copy twice, never none. One sweep runs at a time.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use serde::Serialize;
use wingspan_core::Envelope;
use wingspan_core::audit::{Entry, Event};

use crate::audit;
use crate::broker::publish::{HeaderValue, Outgoing};
use crate::broker::{Broker, BrokerError, Names, PublishError, Publisher, Session, bounded};
use crate::delivery::{header_int, header_text};
use crate::intake::{ACCEPTED_HEADER, ATTEMPT_HEADER, PARKED_HEADER, REASON_HEADER, SOURCE_HEADER};
use crate::live::Live;
use crate::store::{DeliveryState, Store};

/// Header naming who replayed a copy.
pub const REPLAYED_HEADER: &str = "x-wingspan-replayed-by";

/// Which parked copies.
#[derive(Debug, Clone)]
pub enum Select {
    /// Every parked copy of one message (all destinations it is parked for).
    Message(String),
    /// Every parked copy of one destination.
    Destination(String),
    /// Every parked copy.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Show,
    Replay,
    Discard,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Show => "show",
            Self::Replay => "replay",
            Self::Discard => "discard",
        }
    }
}

/// One parked copy acted on.
#[derive(Debug, Clone, Serialize)]
pub struct Handled {
    pub message_id: String,
    pub destination: String,
    pub message_type: String,
    pub source: String,
    /// Why it was parked.
    pub reason: Option<String>,
    pub attempts: i64,
    /// The canonical envelope as parked (`show` only).
    #[serde(skip)]
    pub payload: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("no parked copy of this message")]
    NotParked,
    #[error("destination {0} is not in the config in force")]
    UnknownDestination(String),
    #[error("a reason is required")]
    ReasonRequired,
    #[error("the broker is not connected")]
    NoBroker,
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("the audit or state store refused: {0}")]
    Store(String),
    /// A copy sealed at rest that this gateway cannot open (it stays parked).
    #[error("{0}")]
    Sealed(crate::seal::SealError),
}

impl From<PublishError> for DlqError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Broker(b) => Self::Broker(b),
            other => Self::Broker(BrokerError::Refused(other.to_string())),
        }
    }
}

/// What the operator actions need; cheap to clone.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    pub live: Live,
    pub names: Names,
    pub store: Store,
    pub broker: Broker,
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

fn prop(v: &Option<lapin::types::ShortString>) -> String {
    v.as_ref()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default()
}

impl DeadLetters {
    pub fn new(live: Live, names: Names, store: Store, broker: Broker) -> Self {
        Self {
            live,
            names,
            store,
            broker,
            lock: Default::default(),
        }
    }

    /// Act on the selected parked copies as `actor`; returns those acted on.
    pub async fn act(
        &self,
        select: &Select,
        action: Action,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<Handled>, DlqError> {
        // Showing a payload needs a reason as much as replaying or discarding does.
        if reason.trim().is_empty() {
            return Err(DlqError::ReasonRequired);
        }
        let config = self.live.get();
        let configured = |d: &str| config.destinations.iter().any(|x| x.id == d);
        let destinations: Vec<String> = match select {
            Select::All => config.destinations.iter().map(|d| d.id.clone()).collect(),
            Select::Destination(d) if configured(d) => vec![d.clone()],
            Select::Destination(d) => return Err(DlqError::UnknownDestination(d.clone())),
            Select::Message(id) => {
                let key = id.clone();
                let parked = self
                    .store
                    .read(move |c| Ok(crate::store::dead_letters(c, None)?))
                    .await
                    .map_err(|e| DlqError::Store(e.to_string()))?;
                let mut ds: Vec<String> = parked
                    .into_iter()
                    .filter(|p| p.message_id == key)
                    .map(|p| p.destination)
                    .collect();
                ds.dedup();
                if ds.is_empty() {
                    return Err(DlqError::NotParked);
                }
                if action == Action::Replay
                    && let Some(d) = ds.iter().find(|d| !configured(d))
                {
                    return Err(DlqError::UnknownDestination(d.clone()));
                }
                ds
            }
        };
        let _one_at_a_time = self.lock.lock().await;
        let session = self.broker.current().ok_or(DlqError::NoBroker)?;
        let mut handled = Vec::new();
        for dest in &destinations {
            let wanted = |id: &str| match select {
                Select::Message(m) => m == id,
                _ => true,
            };
            self.sweep(&session, dest, &wanted, action, actor, reason, &mut handled)
                .await?;
        }
        if matches!(select, Select::Message(_)) && handled.is_empty() {
            return Err(DlqError::NotParked);
        }
        Ok(handled)
    }

    #[allow(clippy::too_many_arguments)]
    async fn sweep(
        &self,
        session: &Session,
        dest: &str,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        action: Action,
        actor: &str,
        reason: &str,
        handled: &mut Vec<Handled>,
    ) -> Result<(), DlqError> {
        let limit = self.broker.op_timeout;
        let queue = self.names.parked(dest);
        let channel = bounded(limit, session.connection.create_channel()).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let count = bounded(
            limit,
            channel.queue_declare(queue.as_str().into(), passive, Default::default()),
        )
        .await?
        .message_count();
        let publisher = Publisher::open(session, limit).await?;
        let config = self.live.get();
        for _ in 0..count {
            let get = BasicGetOptions { no_ack: false };
            let Some(got) = bounded(limit, channel.basic_get(queue.as_str().into(), get)).await?
            else {
                break;
            };
            let d = got.delivery;
            let message_id = prop(d.properties.message_id());
            let item = Handled {
                message_id: message_id.clone(),
                destination: dest.to_owned(),
                message_type: prop(d.properties.kind()),
                source: header_text(&d, SOURCE_HEADER).unwrap_or_default(),
                reason: header_text(&d, REASON_HEADER),
                attempts: header_int(&d, ATTEMPT_HEADER).unwrap_or(1),
                payload: None,
            };
            if !wanted(&message_id) || action == Action::Show {
                // Keep it parked: to the back of the queue, with what is left of its expiry.
                let expiry = config.retention.parked_ms(&item.message_type);
                self.republish(&publisher, &d, dest, expiry).await?;
                bounded(limit, d.acker.ack(BasicAckOptions::default())).await?;
                if wanted(&message_id) {
                    let mut shown = item;
                    shown.payload = Some(
                        self.opened(&d, &message_id)
                            .map_err(DlqError::Sealed)?
                            .into_owned(),
                    );
                    self.record(Event::PayloadViewed, &shown, actor, reason, &d)
                        .await?;
                    handled.push(shown);
                }
                continue;
            }
            match action {
                Action::Replay => {
                    self.store.delivery(
                        &item.source,
                        &item.message_id,
                        dest,
                        DeliveryState::Replayed,
                        0,
                        None,
                    );
                    self.record(Event::Replayed, &item, actor, reason, &d)
                        .await?;
                    let accepted =
                        header_int(&d, ACCEPTED_HEADER).unwrap_or_else(crate::intake::now_ms);
                    let out = Outgoing {
                        expiration_ms: None,
                        message_id: &item.message_id,
                        message_type: &item.message_type,
                        content_type: "application/json",
                        correlation_id: d.properties.correlation_id().as_ref().map(|c| c.as_str()),
                        headers: vec![
                            (ATTEMPT_HEADER, HeaderValue::Int(1)),
                            (SOURCE_HEADER, HeaderValue::Text(item.source.clone())),
                            (ACCEPTED_HEADER, HeaderValue::Int(accepted)),
                            (REPLAYED_HEADER, HeaderValue::Text(actor.to_owned())),
                        ],
                    };
                    // Still sealed as it was parked (the delivery worker opens it), and in the
                    // message's trace.
                    let mut out = out;
                    for name in [
                        crate::seal::SEALED_HEADER,
                        crate::telemetry::TRACEPARENT,
                        crate::telemetry::TRACESTATE,
                    ] {
                        if let Some(v) = header_text(&d, name) {
                            out.headers.push((name, HeaderValue::Text(v)));
                        }
                    }
                    if let Err(e) = publisher
                        .publish(&self.names.deliver_exchange(), dest, &d.data, &out)
                        .await
                    {
                        // Still parked (not acked): say so in the state and the trail.
                        self.store.delivery(
                            &item.source,
                            &item.message_id,
                            dest,
                            DeliveryState::DeadLettered,
                            u32::try_from(item.attempts).unwrap_or(0),
                            item.reason.clone(),
                        );
                        let mut failed = item.clone();
                        failed.reason = Some(format!("replay failed: {e}"));
                        let _ = self
                            .record(Event::Replayed, &failed, actor, reason, &d)
                            .await;
                        return Err(e.into());
                    }
                }
                Action::Discard => {
                    self.record(Event::Discarded, &item, actor, reason, &d)
                        .await?;
                    self.store.delivery(
                        &item.source,
                        &item.message_id,
                        dest,
                        DeliveryState::Discarded,
                        u32::try_from(item.attempts).unwrap_or(0),
                        Some(format!("discarded by {actor}")),
                    );
                }
                Action::Show => unreachable!("shown copies are kept above"),
            }
            bounded(limit, d.acker.ack(BasicAckOptions::default())).await?;
            tracing::info!(message_id = %item.message_id, destination = dest, action = action.as_str(), actor, "dead letter handled");
            handled.push(item);
        }
        let _ = bounded(limit, channel.close(200, "sweep done".into())).await;
        Ok(())
    }

    /// Put a copy back at the end of its parked queue, keeping its headers and what is left
    /// of its expiry (`expiry_ms` from when it was parked).
    async fn republish(
        &self,
        publisher: &Publisher,
        d: &Delivery,
        dest: &str,
        expiry_ms: u64,
    ) -> Result<(), DlqError> {
        let p = &d.properties;
        let message_id = prop(p.message_id());
        let message_type = prop(p.kind());
        let remaining = match header_int(d, PARKED_HEADER) {
            Some(at) => {
                let age = u64::try_from(crate::intake::now_ms() - at).unwrap_or(0);
                Some(expiry_ms.saturating_sub(age).max(1))
            }
            None => p
                .expiration()
                .as_ref()
                .and_then(|e| e.as_str().parse().ok()),
        };
        let mut headers = Vec::new();
        for (name, value) in [
            (
                ATTEMPT_HEADER,
                header_int(d, ATTEMPT_HEADER).map(HeaderValue::Int),
            ),
            (
                SOURCE_HEADER,
                header_text(d, SOURCE_HEADER).map(HeaderValue::Text),
            ),
            (
                ACCEPTED_HEADER,
                header_int(d, ACCEPTED_HEADER).map(HeaderValue::Int),
            ),
            (
                REASON_HEADER,
                header_text(d, REASON_HEADER).map(HeaderValue::Text),
            ),
            (
                PARKED_HEADER,
                header_int(d, PARKED_HEADER).map(HeaderValue::Int),
            ),
            (
                crate::seal::SEALED_HEADER,
                header_text(d, crate::seal::SEALED_HEADER).map(HeaderValue::Text),
            ),
            (
                crate::telemetry::TRACEPARENT,
                header_text(d, crate::telemetry::TRACEPARENT).map(HeaderValue::Text),
            ),
            (
                crate::telemetry::TRACESTATE,
                header_text(d, crate::telemetry::TRACESTATE).map(HeaderValue::Text),
            ),
        ] {
            if let Some(v) = value {
                headers.push((name, v));
            }
        }
        let out = Outgoing {
            expiration_ms: remaining,
            message_id: &message_id,
            message_type: &message_type,
            content_type: "application/json",
            correlation_id: p.correlation_id().as_ref().map(|c| c.as_str()),
            headers,
        };
        publisher
            .publish(&self.names.park_exchange(), dest, &d.data, &out)
            .await?;
        Ok(())
    }

    /// A parked copy's canonical bytes, opened if it was sealed at rest.
    fn opened<'d>(
        &self,
        d: &'d Delivery,
        message_id: &str,
    ) -> Result<std::borrow::Cow<'d, [u8]>, crate::seal::SealError> {
        crate::seal::plain(
            self.store.sealer(),
            header_text(d, crate::seal::SEALED_HEADER).as_deref(),
            message_id,
            &d.data,
        )
    }

    /// The action's audit record, committed before the ack it accounts for.
    async fn record(
        &self,
        event: Event,
        item: &Handled,
        actor: &str,
        reason: &str,
        d: &Delivery,
    ) -> Result<(), DlqError> {
        let opened = self.opened(d, &item.message_id);
        let parsed = opened
            .ok()
            .and_then(|data| serde_json::from_slice::<Envelope>(&data).ok());
        let mut e = match parsed {
            Some(env) => audit::about(event, &env),
            None => {
                let mut e = Entry::new(event, audit::now());
                e.message_id = Some(item.message_id.clone());
                e.source = Some(item.source.clone());
                e.message_type = Some(item.message_type.clone());
                e
            }
        };
        e.destination = Some(item.destination.clone());
        e.actor = Some(actor.to_owned());
        e.reason = (!reason.trim().is_empty()).then(|| audit::bounded_reason(reason));
        e.outcome = match (&event, &item.reason) {
            (Event::Replayed, Some(r)) if r.starts_with("replay failed") => Some(r.clone()),
            (Event::Replayed, _) => Some("back to its destination".into()),
            (Event::Discarded, _) => Some("discarded".into()),
            _ => None,
        };
        self.store
            .audit(vec![e])
            .await
            .map_err(|e| DlqError::Store(e.to_string()))
    }
}
