//! The admin listener: compliance endpoints over the audit trail (operator endpoints join it
//! with the operations work). Bound to localhost by default. Every request carries an admin
//! user's bearer token (`[[admin.users]]`, stored as SHA-256): none or unknown → 401; the
//! audit endpoints need the compliance role, an operator gets 403. Answers never include
//! message payloads — the audit trail has none.
//!
//! - `GET /v1/audit/messages/{id}`: the trail of a message and its replies.
//! - `GET /v1/audit/search?since&until&source&destination&type&outcome&event&subject&limit&after`:
//!   records in chain order, at most `limit` (default 100, at most 1,000), and `next_after`
//!   to page on. `subject` is a person id, turned into its keyed reference here.
//! - `GET /v1/audit/verify`: the verification report of every chain.
//!
//! For the operator role:
//! - `GET /metrics`: Prometheus text: accepted per source and type, refusals per problem type,
//!   copies per type, destination and outcome, accept and delivery latency histograms, the
//!   store's write lag, every gateway queue's depth and consumers.
//! - `GET /admin/routes`: the routes in force, predicates in words.
//! - `GET /admin/destinations`: per destination its transport, queue depth and consumers,
//!   parked copies, routed/delivered/retried/parked counts, and the last error and when.
//! - `GET /admin/dead-letters?destination=`: parked copies, metadata only (message id, type,
//!   reason, attempts, first and last failure).
//! - `GET /admin/dead-letters/{id}[?payload=true]`: one message's parked copies; the payload
//!   only for a user with `payloads = true` (audited as `payload_viewed`).
//! - `POST /admin/dead-letters/{id}/replay`, `POST /admin/dead-letters/{id}/discard`,
//!   `POST /admin/dead-letters/replay` (`{"destination": …}` or `{"all": true}`): each with a
//!   `reason`, audited with the user as actor.
//! - `GET /admin/messages/{id}`: a message's receipt, delivery states and timeline (audit
//!   records without hashes or subject references).
//! - `POST /admin/reload`, `POST /admin/rollback` (`{"sha256": …}`), `GET /admin/config`.
//! - `GET /console`: the operator console (a page of its own; it asks for a token and calls
//!   the endpoints above).

use axum::Extension;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use wingspan_core::config::{AdminUser, Role};

use crate::audit::{self, Filter};
use crate::broker::{Broker, Names, bounded};
use crate::dlq::{Action, DeadLetters, DlqError, Select};
use crate::ingress::auth;
use crate::live::Live;
use crate::problem::Problem;
use crate::reload::{Offer, ReloadError, Reloader};
use crate::stats::{QueueDepth, Stats, render_prometheus};
use crate::store::Store;

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub store: Store,
    pub live: Live,
    pub stats: Stats,
    pub broker: Broker,
    pub names: Names,
    pub dead_letters: DeadLetters,
    pub reloader: Reloader,
}

pub fn router(state: AdminState) -> Router {
    let config = state.live.clone();
    let operator = Router::new()
        .route("/metrics", get(metrics))
        .route("/admin/routes", get(routes))
        .route("/admin/destinations", get(destinations))
        .route("/admin/dead-letters", get(dead_letters))
        .route("/admin/dead-letters/replay", post(replay_many))
        .route("/admin/dead-letters/{id}", get(dead_letter))
        .route("/admin/dead-letters/{id}/replay", post(replay_one))
        .route("/admin/dead-letters/{id}/discard", post(discard_one))
        .route("/admin/messages/{id}", get(message))
        .route("/admin/config", get(config_info))
        .route("/admin/reload", post(reload))
        .route("/admin/rollback", post(rollback))
        .route_layer(middleware::from_fn_with_state(
            (config.clone(), Role::Operator),
            require,
        ))
        .with_state(state.clone());
    let store = state.store;
    let audit = Router::new()
        .route("/v1/audit/messages/{id}", get(trail))
        .route("/v1/audit/search", get(search))
        .route("/v1/audit/verify", get(verify))
        .route_layer(middleware::from_fn_with_state(
            (config.clone(), Role::Compliance),
            require,
        ))
        .with_state(store);
    Router::new()
        .route("/console", get(crate::console::page))
        .route("/console.js", get(crate::console::script))
        .route("/console.css", get(crate::console::style))
        .merge(audit)
        .merge(operator)
        .fallback(|| async { Problem::new(404, "not-found", "Not found", "no such endpoint") })
}

/// Let the request through only for an admin user with `role`; the user is passed on as a
/// request extension (the actor of what the request does).
async fn require(
    State((live, role)): State<(Live, Role)>,
    mut req: Request,
    next: Next,
) -> Response {
    let config = live.get();
    let Some(user) = auth::admin_user(&config, req.headers()) else {
        let mut resp = Problem::new(
            401,
            "unauthenticated",
            "Authentication required",
            "present an admin user's bearer token",
        )
        .into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"wingspan-admin\""),
        );
        return resp;
    };
    if user.role != role {
        tracing::info!(user = %user.name, needed = role.as_str(), "admin request refused: wrong role");
        return Problem::new(
            403,
            "forbidden",
            "Not allowed for this role",
            format!("this endpoint needs the {} role", role.as_str()),
        )
        .into_response();
    }
    req.extensions_mut().insert(user.clone());
    next.run(req).await
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "audit store read failed");
    Problem::unavailable("the audit store cannot be read right now").into_response()
}

async fn trail(State(store): State<Store>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    match store.audit_read(move |c| audit::trail(c, &key)).await {
        Ok(records) if records.is_empty() => Problem::new(
            404,
            "unknown-message",
            "Unknown message",
            "no audit records for this message id",
        )
        .into_response(),
        Ok(records) => {
            axum::Json(serde_json::json!({"message_id": id, "records": records})).into_response()
        }
        Err(e) => unavailable(e),
    }
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    since: Option<String>,
    until: Option<String>,
    source: Option<String>,
    destination: Option<String>,
    #[serde(rename = "type")]
    message_type: Option<String>,
    outcome: Option<String>,
    event: Option<String>,
    subject: Option<String>,
    limit: Option<usize>,
    after: Option<u64>,
}

async fn search(State(store): State<Store>, Query(q): Query<SearchQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = Filter {
        since: q.since,
        until: q.until,
        source: q.source,
        destination: q.destination,
        message_type: q.message_type,
        outcome: q.outcome,
        event: q.event,
        subject_ref: q.subject.map(|p| store.subject_ref(&p)),
        limit,
        after_seq: q.after.unwrap_or(0),
    };
    match store.audit_read(move |c| audit::search(c, &filter)).await {
        Ok(records) => {
            let next_after = (records.len() == limit)
                .then(|| records.last().map(|r| r.seq))
                .flatten();
            axum::Json(serde_json::json!({"records": records, "next_after": next_after}))
                .into_response()
        }
        Err(e) => unavailable(e),
    }
}

async fn verify(State(store): State<Store>) -> Response {
    let key = store.public_key();
    match store
        .audit_read(move |c| audit::verify_store(c, &key))
        .await
    {
        Ok(reports) => {
            let ok = reports.iter().all(|r| r.ok());
            axum::Json(serde_json::json!({"ok": ok, "chains": reports})).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// Depth and consumers of every queue the gateway declared (those the broker knows).
async fn queue_depths(st: &AdminState) -> Vec<QueueDepth> {
    let Some(session) = st.broker.current() else {
        return Vec::new();
    };
    let n = &st.names;
    let mut queues = vec![n.ingress(), n.rejects()];
    let config = st.live.get();
    for d in &config.destinations {
        queues.push(n.destination(&d.id));
        queues.push(n.parked(&d.id));
    }
    for tier in 0..config.broker.retry_delays_ms.len() {
        queues.push(n.retry(tier));
    }
    let limit = st.broker.op_timeout;
    let mut out = Vec::new();
    let mut channel = None;
    for q in queues {
        if channel.is_none() {
            channel = bounded(limit, session.connection.create_channel())
                .await
                .ok();
        }
        let Some(ch) = &channel else {
            break;
        };
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match bounded(
            limit,
            ch.queue_declare(q.as_str().into(), passive, Default::default()),
        )
        .await
        {
            Ok(queue) => out.push(QueueDepth {
                queue: q,
                messages: queue.message_count(),
                consumers: queue.consumer_count(),
            }),
            // A missing queue closes the channel: open another for the next one.
            Err(_) => channel = None,
        }
    }
    if let Some(ch) = channel {
        let _ = bounded(limit, ch.close(200, "depths read".into())).await;
    }
    out
}

async fn metrics(State(st): State<AdminState>) -> Response {
    let queues = queue_depths(&st).await;
    let text = render_prometheus(&st.stats, &queues, &st.store.times());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

async fn routes(State(st): State<AdminState>) -> Response {
    let config = st.live.get();
    let routes: Vec<serde_json::Value> = config
        .routes
        .routes()
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "message_types": r.message_types,
                "when": r.when.iter().map(|p| p.describe()).collect::<Vec<_>>(),
                "destinations": r.destinations.iter()
                    .map(|&d| config.routes.destination_name(d))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "routes": routes })).into_response()
}

/// Where a destination delivers, without credentials or query strings.
fn target(t: &wingspan_core::config::Transport) -> serde_json::Value {
    match t {
        wingspan_core::config::Transport::Http { url, .. } => {
            let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            let scheme = url.split_once("://").map_or("http", |(s, _)| s);
            let host_path = host.split(['?', '#']).next().unwrap_or(host);
            serde_json::json!({"transport": "http", "target": format!("{scheme}://{host_path}")})
        }
        wingspan_core::config::Transport::Amqp { exchange, .. } => {
            serde_json::json!({"transport": "amqp", "target": exchange})
        }
    }
}

async fn destinations(State(st): State<AdminState>) -> Response {
    let depths = queue_depths(&st).await;
    let depth = |q: &str| depths.iter().find(|d| d.queue == q).cloned();
    let counts = st.stats.snapshot();
    let config = st.live.get();
    let list: Vec<serde_json::Value> = config
        .destinations
        .iter()
        .map(|d| {
            let mut total = crate::stats::Counts::default();
            for ((_, dest), c) in &counts {
                if dest == &d.id {
                    total.routed += c.routed;
                    total.delivered += c.delivered;
                    total.retried += c.retried;
                    total.dead_lettered += c.dead_lettered;
                }
            }
            let queue = depth(&st.names.destination(&d.id));
            let parked = depth(&st.names.parked(&d.id));
            let mut v = serde_json::json!({
                "id": d.id,
                "adapter": d.adapter,
                "queue": queue.as_ref().map(|q| serde_json::json!({"messages": q.messages, "consumers": q.consumers})),
                "parked_in_queue": parked.map(|q| q.messages),
                "counts": {
                    "routed": total.routed,
                    "delivered": total.delivered,
                    "retried": total.retried,
                    "parked": total.dead_lettered,
                },
                "last_error": st.stats.last_error(&d.id),
            });
            if let (Some(obj), serde_json::Value::Object(t)) = (v.as_object_mut(), target(&d.transport)) {
                obj.extend(t);
            }
            v
        })
        .collect();
    axum::Json(serde_json::json!({ "destinations": list })).into_response()
}

#[derive(Debug, Deserialize)]
struct DeadLetterQuery {
    destination: Option<String>,
}

async fn dead_letters(State(st): State<AdminState>, Query(q): Query<DeadLetterQuery>) -> Response {
    match st
        .store
        .read(move |c| Ok(crate::store::dead_letters(c, q.destination.as_deref())?))
        .await
    {
        Ok(list) => axum::Json(serde_json::json!({ "dead_letters": list })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "state store read failed");
            Problem::unavailable("the state store cannot be read right now").into_response()
        }
    }
}

fn dlq_problem(e: DlqError) -> Response {
    let (status, slug, title) = match &e {
        DlqError::NotParked => (404, "not-parked", "No parked copy"),
        DlqError::UnknownDestination(_) => (
            409,
            "destination-not-configured",
            "Destination not in the config in force",
        ),
        DlqError::ReasonRequired => (400, "reason-required", "A reason is required"),
        DlqError::NoBroker | DlqError::Broker(_) | DlqError::Store(_) => {
            tracing::error!(error = %e, "dead-letter action failed");
            (503, "unavailable", "Service unavailable")
        }
    };
    Problem::new(status, slug, title, e.to_string()).into_response()
}

#[derive(Debug, Deserialize, Default)]
struct Why {
    #[serde(default)]
    reason: String,
    destination: Option<String>,
    #[serde(default)]
    all: bool,
    sha256: Option<String>,
}

/// The JSON body of an action (`{}` or nothing when it needs no fields).
#[allow(clippy::result_large_err)]
fn why(body: &[u8]) -> Result<Why, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Why::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            400,
            "invalid-body",
            "Unreadable request body",
            e.to_string(),
        )
        .into_response()
    })
}

fn acted(list: Vec<crate::dlq::Handled>) -> Response {
    axum::Json(serde_json::json!({ "count": list.len(), "handled": list })).into_response()
}

#[derive(Debug, Deserialize)]
struct ShowQuery {
    #[serde(default)]
    payload: bool,
}

async fn dead_letter(
    State(st): State<AdminState>,
    Extension(user): Extension<AdminUser>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let key = id.clone();
    let listed = st
        .store
        .read(move |c| Ok(crate::store::dead_letters(c, None)?))
        .await;
    let copies: Vec<_> = match listed {
        Ok(l) => l.into_iter().filter(|d| d.message_id == key).collect(),
        Err(e) => return unavailable(e),
    };
    if copies.is_empty() {
        return dlq_problem(DlqError::NotParked);
    }
    if !q.payload {
        return axum::Json(serde_json::json!({ "message_id": id, "copies": copies }))
            .into_response();
    }
    if !user.payloads {
        return Problem::new(
            403,
            "payload-not-allowed",
            "Not allowed to see payloads",
            "this admin user has no payloads permission",
        )
        .into_response();
    }
    match st
        .dead_letters
        .act(&Select::Message(id.clone()), Action::Show, &user.name, "")
        .await
    {
        Ok(shown) => {
            let payload = shown.first().and_then(|h| h.payload.as_deref()).map(|b| {
                serde_json::from_slice::<serde_json::Value>(b)
                    .unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned().into())
            });
            axum::Json(
                serde_json::json!({ "message_id": id, "copies": copies, "payload": payload }),
            )
            .into_response()
        }
        Err(e) => dlq_problem(e),
    }
}

/// Replay or discard one message's parked copies, as the calling user, with the body's reason.
async fn act_on_one(
    st: &AdminState,
    user: &AdminUser,
    id: String,
    body: &[u8],
    action: Action,
) -> Response {
    let why = match why(body) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match st
        .dead_letters
        .act(&Select::Message(id), action, &user.name, &why.reason)
        .await
    {
        Ok(list) => acted(list),
        Err(e) => dlq_problem(e),
    }
}

async fn replay_one(
    State(st): State<AdminState>,
    Extension(user): Extension<AdminUser>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    act_on_one(&st, &user, id, &body, Action::Replay).await
}

async fn discard_one(
    State(st): State<AdminState>,
    Extension(user): Extension<AdminUser>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    act_on_one(&st, &user, id, &body, Action::Discard).await
}

async fn replay_many(
    State(st): State<AdminState>,
    Extension(user): Extension<AdminUser>,
    body: axum::body::Bytes,
) -> Response {
    let why = match why(&body) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let select = match (why.destination, why.all) {
        (Some(d), false) => Select::Destination(d),
        (None, true) => Select::All,
        _ => {
            return Problem::new(
                400,
                "selection-required",
                "Say which parked copies",
                "give either \"destination\" or \"all\": true",
            )
            .into_response();
        }
    };
    match st
        .dead_letters
        .act(&select, Action::Replay, &user.name, &why.reason)
        .await
    {
        Ok(list) => acted(list),
        Err(e) => dlq_problem(e),
    }
}

/// A message's receipt, delivery states and timeline, for the console's tracker.
async fn message(State(st): State<AdminState>, Path(id): Path<String>) -> Response {
    let status = match st.store.status(&id).await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    let key = id.clone();
    let records = match st.store.audit_read(move |c| audit::trail(c, &key)).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    if status.is_none() && records.is_empty() {
        return Problem::new(
            404,
            "unknown-message",
            "Unknown message",
            "nothing known of this message id",
        )
        .into_response();
    }
    let timeline: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let e = &r.entry;
            serde_json::json!({
                "at": e.at, "event": e.event.as_str(), "message_id": e.message_id,
                "destination": e.destination, "outcome": e.outcome, "reason": e.reason, "actor": e.actor,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "message_id": id, "status": status, "timeline": timeline }))
        .into_response()
}

async fn config_info(State(st): State<AdminState>) -> Response {
    let history = st
        .store
        .read(|c| Ok(crate::store::config_history(c)?))
        .await;
    match history {
        Ok(h) => axum::Json(serde_json::json!({
            "current": st.reloader.current_sha256(),
            "history": h,
        }))
        .into_response(),
        Err(e) => unavailable(e),
    }
}

fn reloaded(result: Result<crate::reload::Reloaded, ReloadError>) -> Response {
    match result {
        Ok(r) => axum::Json(r).into_response(),
        Err(e @ (ReloadError::Store(_) | ReloadError::Topology(_))) => {
            let mut p = Problem::unavailable(e.to_string());
            p.retry_after = Some(5);
            p.into_response()
        }
        Err(e) => {
            let status = if matches!(e, ReloadError::UnknownVersion(_)) {
                404
            } else {
                422
            };
            let mut resp = axum::Json(serde_json::json!({
                "type": "/problems/config-refused",
                "title": "Config refused; the running config is kept",
                "status": status,
                "detail": e.to_string(),
                "problems": e.problems(),
            }))
            .into_response();
            *resp.status_mut() = axum::http::StatusCode::from_u16(status)
                .unwrap_or(axum::http::StatusCode::UNPROCESSABLE_ENTITY);
            resp
        }
    }
}

async fn reload(State(st): State<AdminState>, Extension(user): Extension<AdminUser>) -> Response {
    reloaded(st.reloader.reload(Offer::File, &user.name).await)
}

async fn rollback(
    State(st): State<AdminState>,
    Extension(user): Extension<AdminUser>,
    body: axum::body::Bytes,
) -> Response {
    let body = match why(&body) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(sha) = body.sha256 else {
        return Problem::new(
            400,
            "version-required",
            "Say which version",
            "give \"sha256\"",
        )
        .into_response();
    };
    reloaded(st.reloader.reload(Offer::Stored(sha), &user.name).await)
}
