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
use crate::ingress::auth;
use crate::problem::Problem;
use crate::store::Store;

pub fn router(store: Store, config: Arc<CompiledConfig>) -> Router {
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
