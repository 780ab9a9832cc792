//! HTTP ingress (axum), served on the HTTPS listener (mutual TLS) and, for local development,
//! plain HTTP: `POST /v1/messages` with the canonical envelope,
//! `POST /v1/sources/{source}/messages` in the source's own format, `GET /v1/messages/{id}`,
//! `GET /healthz`, `GET /readyz`. Every post is authenticated and rate-limited first
//! ([`auth`]). 202 only after every copy is confirmed and the receipt is
//! committed; while the broker is away, 503 with `Retry-After` instead of accepting what
//! cannot be made durable.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use futures_lite::StreamExt;
use tokio::sync::watch;

use crate::broker::{Broker, PublishError, Publisher, Session};
use crate::ingress::auth::{self, Caller, Limiters, Peer};
use crate::intake::{Intake, IntakeError, Outcome};
use crate::problem::Problem;
use crate::telemetry::Upstream;
use wingspan_adapters::Inbound;
use wingspan_core::Sender;

/// The confirm-mode publisher of the current broker session, kept fresh by [`keep_publisher`].
pub type PublisherSlot = watch::Receiver<Option<(Publisher, Session)>>;

#[derive(Debug, Clone)]
pub struct HttpState {
    pub intake: Arc<Intake>,
    pub publisher: PublisherSlot,
    /// Asks [`keep_publisher`] for a fresh channel (after the broker refused a publish).
    pub renew: Arc<tokio::sync::Notify>,
    pub broker: Broker,
    pub limiters: Arc<Limiters>,
}

impl HttpState {
    /// Authenticate and rate-limit one request; the refusal, already audited, otherwise.
    // The refusal is the response itself, built once on a cold path.
    #[allow(clippy::result_large_err)]
    fn caller(&self, peer: Option<&Peer>, headers: &HeaderMap) -> Result<Caller, Response> {
        let intake = &self.intake;
        let caller = match auth::authenticate(&intake.config(), peer, headers) {
            Ok(c) => c,
            Err(denied) => {
                if let Err(limited) = self.limiters.check_failure() {
                    if limited.first {
                        intake.refused(None, None, None, 429, "rate-limited");
                    }
                    return Err(limited.problem());
                }
                intake.refused(None, None, None, denied.status(), denied.slug());
                intake.stats.rejected(denied.slug());
                return Err(denied.problem());
            }
        };
        if let Err(limited) = self.limiters.check(&caller) {
            if limited.first {
                intake.refused(caller.source(), None, None, 429, "rate-limited");
            }
            intake.stats.rejected("rate-limited");
            return Err(limited.problem());
        }
        Ok(caller)
    }

    /// Read a body of at most the caller's limit. A body over it (declared, or found while
    /// reading) is refused with 413 — after what is left of it has been read and thrown away,
    /// within a bound ([`drain`]), so that a client still sending reads the refusal instead of
    /// a connection reset.
    #[allow(clippy::result_large_err)]
    async fn body(
        &self,
        caller: &Caller,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Bytes, Response> {
        let config = self.intake.config();
        let limit = caller
            .source()
            .and_then(|s| config.sources.get(s))
            .map_or(config.limits.max_body_bytes, |s| s.max_body_bytes);
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let read = match declared.is_none_or(|n| n <= limit as u64) {
            true => read_at_most(body, limit).await,
            false => {
                drain(body.into_data_stream(), limit).await;
                Err(())
            }
        };
        read.map_err(|()| {
            self.intake
                .refused(caller.source(), None, None, 413, "too-large");
            self.intake.stats.rejected("too-large");
            Problem::new(
                413,
                "too-large",
                "Message too large",
                format!("body exceeds {limit} bytes"),
            )
            .into_response()
        })
    }
}

/// How much of a refused body is read and thrown away, at most, before the refusal: a multiple
/// of the limit, and a time. Past either the connection is closed unread (the client may then
/// see a reset instead of the 413, as with nginx's `lingering_close`).
const DRAIN_LIMITS: usize = 16;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// The whole body if it holds at most `limit` bytes (a body in one chunk, the usual case, is
/// kept as it came, without a copy); otherwise the rest is drained and `Err`. A body the
/// client broke off is `Err` too.
async fn read_at_most(body: Body, limit: usize) -> Result<Bytes, ()> {
    let mut stream = body.into_data_stream();
    let (mut chunks, mut held) = (Vec::<Bytes>::new(), 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ())?;
        held += chunk.len();
        if held > limit {
            drain(stream, limit).await;
            return Err(());
        }
        chunks.push(chunk);
    }
    Ok(match chunks.len() {
        0 | 1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    })
}

/// Read and discard the rest of a refused body, bounded by [`DRAIN_LIMITS`] × `limit` bytes
/// and [`DRAIN_TIME`].
async fn drain(mut stream: axum::body::BodyDataStream, limit: usize) {
    let most = limit.saturating_mul(DRAIN_LIMITS);
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > most {
                break;
            }
        }
    })
    .await;
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/messages", post(post_message))
        .route("/v1/messages/{id}", get(get_message))
        .route("/v1/sources/{source}/messages", post(post_native))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(ready))
        .fallback(|| async { Problem::new(404, "not-found", "Not found", "no such endpoint") })
        .with_state(state)
}

/// Keep one publisher open per broker session for the HTTP handlers, and open a fresh
/// channel when asked (`renew`): a channel whose publishes the broker refuses (nack) can stay
/// refused after a quorum queue changed leader, while a new channel is served.
pub async fn keep_publisher(
    broker: Broker,
    slot: watch::Sender<Option<(Publisher, Session)>>,
    renew: Arc<tokio::sync::Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut generation = 0;
    'sessions: while let Some(session) = broker.next_session(generation, &mut shutdown).await {
        generation = session.generation;
        loop {
            match Publisher::open(&session, broker.op_timeout).await {
                Ok(p) => {
                    let old = slot.send_replace(Some((p, session.clone())));
                    if let Some((old, _)) = old {
                        // Publishes still awaiting confirms on it finish first (each is bounded).
                        let grace = broker.op_timeout * 2;
                        tokio::spawn(async move {
                            tokio::time::sleep(grace).await;
                            old.close().await;
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the HTTP ingress publisher");
                    session.poison();
                    continue 'sessions;
                }
            }
            tokio::select! {
                () = broker.until_ended(generation, &mut shutdown) => break,
                () = renew.notified() => {
                    tracing::warn!("the broker refused a publish: HTTP ingress moves to a fresh channel");
                    // At most one new channel per 200 ms, however many refusals.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
        let _ = slot.send(None);
    }
    let _ = slot.send(None);
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn post_message(
    State(st): State<HttpState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match st.caller(peer.as_deref(), &headers) {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    if !is_json(&headers) {
        st.intake
            .refused(caller.source(), None, None, 415, "unsupported-media-type");
        return Problem::new(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "send the canonical envelope as application/json",
        )
        .into_response();
    }
    let bytes = match st.body(&caller, &headers, body).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let upstream = Upstream::from_http(&headers);
    submit(
        &st,
        bytes.to_vec(),
        caller.source().map(str::to_owned),
        upstream,
    )
    .await
}

/// A partner posts its own format; the source's adapter decodes it into the canonical
/// envelope, which then takes exactly the path a canonical post takes (schema, authorization,
/// routing, durability). The envelope's `source` is the path's source: a partner cannot
/// speak for another through its document.
async fn post_native(
    State(st): State<HttpState>,
    Path(source): Path<String>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match st.caller(peer.as_deref(), &headers) {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    if caller.source().is_some_and(|s| s != source) {
        st.intake
            .refused(caller.source(), None, None, 403, "source-mismatch");
        st.intake.stats.rejected("source-mismatch");
        return Problem::new(
            403,
            "source-mismatch",
            "Source does not match the authenticated sender",
            "a source may post only to its own path",
        )
        .into_response();
    }
    let config = st.intake.config();
    let Some(src) = config.sources.get(&source) else {
        st.intake.refused(None, None, None, 403, "unknown-source");
        return Problem::new(
            403,
            "unknown-source",
            "Unknown source",
            "no such source is configured",
        )
        .into_response();
    };
    let adapter = src.codec.clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(wingspan_adapters::media_type);
    if content_type
        .as_deref()
        .is_none_or(|ct| !adapter.content_types().contains(&ct))
    {
        st.intake
            .refused(Some(&source), None, None, 415, "unsupported-media-type");
        return Problem::new(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            format!(
                "source {source} posts {}",
                adapter.content_types().join(" or ")
            ),
        )
        .into_response();
    }
    let bytes = match st.body(&caller, &headers, body).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let envelope = match adapter.decode(Inbound {
        source: &source,
        content_type: content_type.as_deref(),
        bytes: &bytes,
    }) {
        Ok(e) => e,
        Err(e) => {
            let p = Problem::from(e.clone());
            st.intake
                .refused(Some(&source), None, Some(&bytes), p.status, e.slug());
            st.intake.stats.rejected(e.slug());
            tracing::debug!(source = %source, kind = e.slug(), "partner document refused");
            return Problem::from(e).into_response();
        }
    };
    let canonical = match serde_json::to_vec(&envelope) {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                500,
                "internal",
                "Internal error",
                "cannot serialise envelope",
            )
            .into_response();
        }
    };
    submit(&st, canonical, Some(source), Upstream::from_http(&headers)).await
}

/// Take canonical bytes from `sender` (`None`: anonymous, local development) through intake
/// and answer: 202 accepted, 200 duplicate, problem.
async fn submit(
    st: &HttpState,
    bytes: Vec<u8>,
    sender: Option<String>,
    upstream: Upstream,
) -> Response {
    let Some((publisher, session)) = st.publisher.borrow().clone() else {
        return Problem::unavailable("the broker is not connected; retry later").into_response();
    };
    if session.blocked() {
        st.intake.stats.rejected("unavailable");
        return Problem::unavailable(
            "the broker refuses new messages for now (a resource alarm); retry later",
        )
        .into_response();
    }
    // Finish the intake even if the client goes away, so that no copy is left half-accounted.
    let intake = st.intake.clone();
    let task = tokio::spawn(async move {
        let sender = sender.as_deref().map_or(Sender::Unchecked, Sender::Source);
        intake.take(&publisher, &bytes, sender, &upstream).await
    });
    let result = match task.await {
        Ok(r) => r,
        Err(_) => {
            return Problem::new(500, "internal", "Internal error", "intake task failed")
                .into_response();
        }
    };
    match result {
        Ok(Outcome::Accepted(receipt)) => {
            (StatusCode::ACCEPTED, axum::Json(receipt)).into_response()
        }
        Ok(Outcome::Duplicate(receipt)) => (StatusCode::OK, axum::Json(receipt)).into_response(),
        Ok(Outcome::Rejected(r)) => Problem::from(r).into_response(),
        Err(IntakeError::Busy) => {
            let mut p = Problem::new(
                409,
                "in-progress",
                "Already in progress",
                "the same message is being accepted right now; retry to get its receipt",
            );
            p.retry_after = Some(1);
            p.into_response()
        }
        Err(IntakeError::Publish(e)) => {
            match e {
                PublishError::Broker(_) => session.poison(),
                PublishError::Nacked => st.renew.notify_one(),
                PublishError::Unroutable => {}
            }
            tracing::warn!(error = %e, "could not make a message durable");
            Problem::unavailable("the broker did not confirm the message; retry later")
                .into_response()
        }
        Err(IntakeError::Store(e)) => {
            tracing::error!(error = %e, "state store unavailable");
            Problem::unavailable("the gateway cannot record the message right now; retry later")
                .into_response()
        }
    }
}

async fn get_message(State(st): State<HttpState>, Path(id): Path<String>) -> Response {
    match st.intake.store.status(&id).await {
        Ok(Some(s)) => axum::Json(s).into_response(),
        Ok(None) => Problem::new(
            404,
            "unknown-message",
            "Unknown message",
            "no message with this id was accepted",
        )
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "state store read failed");
            Problem::unavailable("status unavailable").into_response()
        }
    }
}

async fn ready(State(st): State<HttpState>) -> Response {
    if st.broker.blocked() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                serde_json::json!({"status": "not ready", "broker": "blocked (resource alarm)"}),
            ),
        )
            .into_response();
    }
    if st.broker.connected() && st.publisher.borrow().is_some() {
        axum::Json(serde_json::json!({"status": "ready", "broker": "connected"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not ready", "broker": "disconnected"})),
        )
            .into_response()
    }
}
