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

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use wingspan_core::CompiledConfig;
use wingspan_core::config::Role;

use crate::audit::{self, Filter};
use crate::broker::{Broker, Names, bounded};
use crate::ingress::auth;
use crate::problem::Problem;
use crate::stats::{QueueDepth, Stats, render_prometheus};
use crate::store::Store;

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub store: Store,
    pub config: Arc<CompiledConfig>,
    pub stats: Stats,
    pub broker: Broker,
    pub names: Names,
}

pub fn router(state: AdminState) -> Router {
    let config = state.config.clone();
    let operator = Router::new()
        .route("/metrics", get(metrics))
        .route("/admin/routes", get(routes))
        .route("/admin/destinations", get(destinations))
        .route("/admin/dead-letters", get(dead_letters))
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
        .merge(audit)
        .merge(operator)
        .fallback(|| async { Problem::new(404, "not-found", "Not found", "no such endpoint") })
}

/// Let the request through only for an admin user with `role`; the user is passed on as a
/// request extension (the actor of what the request does).
async fn require(
    State((config, role)): State<(Arc<CompiledConfig>, Role)>,
    mut req: Request,
    next: Next,
) -> Response {
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
    for d in &st.config.destinations {
        queues.push(n.destination(&d.id));
        queues.push(n.parked(&d.id));
    }
    for tier in 0..st.config.broker.retry_delays_ms.len() {
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
    let text = render_prometheus(&st.stats, &queues, &st.store.commit_lag());
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
    let routes: Vec<serde_json::Value> = st
        .config
        .routes
        .routes()
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "message_types": r.message_types,
                "when": r.when.iter().map(|p| p.describe()).collect::<Vec<_>>(),
                "destinations": r.destinations.iter()
                    .map(|&d| st.config.routes.destination_name(d))
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
    let list: Vec<serde_json::Value> = st
        .config
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
