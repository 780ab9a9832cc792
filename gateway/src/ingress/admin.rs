//! The admin listener: compliance endpoints over the audit trail (operator endpoints join it
//! with the operations work). Bound to localhost by default. Every request carries an admin
//! user's bearer token (`[[admin.users]]`, stored as SHA-256): none or unknown → 401; the
//! audit endpoints need the compliance role, an operator gets 403. Answers never include
//! message payloads — the audit trail has none.
//!
//! For any admin user: `GET /v1/whoami` (name, role, whether payloads may be shown), which the
//! console asks to know which views to draw.
//!
//! For the compliance role:
//! - `GET /v1/audit/messages/{id}`: the trail of a message and its replies.
//! - `GET /v1/audit/search?since&until&source&destination&type&outcome&event&limit&after`:
//!   records in chain order, at most `limit` (default 100, at most 1,000), and `next_after`
//!   to page on. A person is never named in a URL: `subject` here is refused.
//! - `POST /v1/audit/search` with the same fields as JSON, plus `subject` (a person id, turned
//!   into its keyed reference here) and `reason`: a search by person needs a reason and is
//!   itself recorded (`subject_searched`: who, why, whose reference) before it runs.
//! - `GET` or `POST /v1/audit/verify`: verify every chain (archives included) now; the
//!   result, with its time, is kept as the last verification (`GET /v1/audit/status`).
//! - `POST /v1/audit/export` (`{"since", "until"}`): a signed export of the window, as
//!   `wingspan audit export` writes it (a records file and a manifest per chain), fetched by
//!   `GET /v1/audit/exports/{id}/{file}`; exports are kept an hour.
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
//! - `GET /admin/dead-letters/{id}`: one message's parked copies, metadata only.
//! - `POST /admin/dead-letters/{id}/payload` (`{"reason": …}`): the same with the payload,
//!   only for a user with `payloads = true`, and audited as `payload_viewed` with the user
//!   and the reason.
//! - `POST /admin/dead-letters/{id}/replay`, `POST /admin/dead-letters/{id}/discard`,
//!   `POST /admin/dead-letters/replay` (`{"destination": …}` or `{"all": true}`): each with a
//!   `reason`, audited with the user as actor.
//! - `GET /admin/messages/{id}`: a message's receipt, delivery states and timeline (audit
//!   records without hashes or subject references).
//! - `POST /admin/reload`, `POST /admin/rollback` (`{"sha256": …}`), `GET /admin/config`
//!   (the version in force and every version run), `GET /admin/config/{sha256}` (one
//!   version's text, for a diff).
//! - `POST /admin/explain` (a canonical message as the body): which routes take it and why,
//!   and what each destination would receive; nothing is sent.
//! - `GET /admin/live`: the last hour per minute (accepted, delivered, refused, parked,
//!   accept and delivery latency p50/p99), from the gateway's own counters.
//! - `GET /console`: the console (a page of its own, for both roles; it asks for a token
//!   and calls the endpoints above).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use wingspan_core::audit::{Entry, Event};
use wingspan_core::config::{AdminUser, Role};

use crate::audit::{self, Filter};
use crate::broker::{Broker, Names, bounded};
use crate::dlq::{Action, DeadLetters, DlqError, Select};
use crate::ingress::auth;
use crate::live::Live;
use crate::problem::Problem;
use crate::recent::{Recent, Sample};
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
    /// The last hour's counters, for the console's charts.
    pub recent: Recent,
    /// Where signed exports are written for download (`<state_dir>/exports`).
    pub exports_dir: PathBuf,
    /// The last verification run over HTTP, with its time.
    pub last_verification: Arc<Mutex<Option<serde_json::Value>>>,
    /// Where spans go (its failed exports are a metric).
    pub telemetry: crate::telemetry::Telemetry,
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
        .route(
            "/admin/dead-letters/{id}/payload",
            post(dead_letter_payload),
        )
        .route("/admin/dead-letters/{id}/replay", post(replay_one))
        .route("/admin/dead-letters/{id}/discard", post(discard_one))
        .route("/admin/messages/{id}", get(message))
        .route("/admin/config", get(config_info))
        .route("/admin/config/{sha}", get(config_version))
        .route("/admin/reload", post(reload))
        .route("/admin/rollback", post(rollback))
        .route("/admin/explain", post(explain))
        .route("/admin/live", get(live_minutes))
        .route("/admin/audit/rotate-key", post(rotate_key))
        .route_layer(middleware::from_fn_with_state(
            (config.clone(), Some(Role::Operator)),
            require,
        ))
        .with_state(state.clone());
    let audit = Router::new()
        .route("/v1/audit/messages/{id}", get(trail))
        .route("/v1/audit/search", get(search).post(search_posted))
        .route("/v1/audit/verify", get(verify).post(verify))
        .route("/v1/audit/status", get(audit_status))
        .route("/v1/audit/export", post(export))
        .route("/v1/audit/exports/{id}/{file}", get(exported_file))
        .route("/v1/audit/subject-report", post(subject_report))
        .route_layer(middleware::from_fn_with_state(
            (config.clone(), Some(Role::Compliance)),
            require,
        ))
        .with_state(state);
    let anyone =
        Router::new()
            .route("/v1/whoami", get(whoami))
            .route_layer(middleware::from_fn_with_state(
                (config, None::<Role>),
                require,
            ));
    Router::new()
        .route("/console", get(crate::console::page))
        .route("/console.js", get(crate::console::script))
        .route("/console-strings.js", get(crate::console::strings))
        .route("/console.css", get(crate::console::style))
        .merge(anyone)
        .merge(audit)
        .merge(operator)
        .fallback(|| async { Problem::new(404, "not-found", "Not found", "no such endpoint") })
}

/// Let the request through only for an admin user with `role` (any admin user for `None`);
/// the user is passed on as a request extension (the actor of what the request does).
async fn require(
    State((live, role)): State<(Live, Option<Role>)>,
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
    if let Some(role) = role
        && user.role != role
    {
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

async fn whoami(Extension(user): Extension<AdminUser>) -> Response {
    axum::Json(serde_json::json!({
        "name": user.name,
        "role": user.role.as_str(),
        "payloads": user.payloads,
    }))
    .into_response()
}

async fn trail(State(st): State<AdminState>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    match st.store.audit_read(move |c| audit::trail(c, &key)).await {
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

async fn search(State(st): State<AdminState>, Query(q): Query<SearchQuery>) -> Response {
    if q.subject.is_some() {
        return Problem::new(
            400,
            "person-in-url",
            "No person ids in URLs",
            "search by person with POST /v1/audit/search, the person id and a reason in the body",
        )
        .into_response();
    }
    let filter = Filter {
        since: q.since,
        until: q.until,
        source: q.source,
        destination: q.destination,
        message_type: q.message_type,
        outcome: q.outcome,
        event: q.event,
        subject_ref: None,
        earlier_subject_refs: Vec::new(),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
        after_seq: q.after.unwrap_or(0),
    };
    run_search(&st.store, filter).await
}

/// A search's JSON body: the query's fields, and a person id with a reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    since: Option<String>,
    until: Option<String>,
    source: Option<String>,
    destination: Option<String>,
    #[serde(rename = "type")]
    message_type: Option<String>,
    outcome: Option<String>,
    event: Option<String>,
    subject: Option<String>,
    reason: Option<String>,
    limit: Option<usize>,
    after: Option<u64>,
}

async fn search_posted(
    State(st): State<AdminState>,
    Extension(user): Extension<AdminUser>,
    body: axum::body::Bytes,
) -> Response {
    let q: SearchBody = match json_body(&body) {
        Ok(q) => q,
        Err(problem) => return problem,
    };
    let person = q
        .subject
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let subject_ref = person.map(|p| st.store.subject_ref(p));
    if let Some(reference) = &subject_ref {
        let reason = q.reason.as_deref().map(str::trim).unwrap_or_default();
        if reason.is_empty() {
            return Problem::new(
                400,
                "reason-required",
                "A reason is required",
                "a search by person needs a reason; it is kept in the audit trail (one line, 200 characters)",
            )
            .into_response();
        }
        // On record (committed) before the search runs: none goes unrecorded.
        let mut e = Entry::new(Event::SubjectSearched, audit::now());
        e.actor = Some(user.name.clone());
        e.reason = Some(audit::bounded_reason(reason));
        e.subject_ref = Some(reference.clone());
        if let Err(err) = st.store.audit(vec![e]).await {
            return unavailable(err);
        }
    }
    let filter = Filter {
        since: q.since,
        until: q.until,
        source: q.source,
        destination: q.destination,
        message_type: q.message_type,
        outcome: q.outcome,
        event: q.event,
        earlier_subject_refs: person
            .map(|p| st.store.earlier_subject_refs(p))
            .unwrap_or_default(),
        subject_ref,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
        after_seq: q.after.unwrap_or(0),
    };
    run_search(&st.store, filter).await
}

async fn run_search(store: &Store, filter: Filter) -> Response {
    let limit = filter.limit;
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

async fn verify(State(st): State<AdminState>) -> Response {
    let key = st.store.public_key();
    let tsa_cert = st.store.tsa_cert();
    match st
        .store
        .audit_read(move |c| audit::verify_store_with(c, &key, tsa_cert.as_deref()))
        .await
    {
        Ok(reports) => {
            let ok = reports.iter().all(|r| r.ok());
            let result = serde_json::json!({"at": audit::now(), "ok": ok, "chains": reports});
            *st.last_verification
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
            axum::Json(result).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// `POST /admin/audit/rotate-key`: hand this instance's audit chain to a fresh signing key
/// (see `Store::rotate_key`); the `key_rotated` record names the operator as its actor.
async fn rotate_key(
    State(st): State<AdminState>,
    Extension(user): Extension<AdminUser>,
) -> Response {
    match st.store.rotate_key(&user.name).await {
        Ok(r) => {
            tracing::warn!(
                chain = %r.chain_id,
                seq = r.seq,
                old_key = %r.old_key,
                new_key = %r.new_key,
                actor = %user.name,
                "audit signing key rotated"
            );
            axum::Json(serde_json::json!({
                "chain_id": r.chain_id,
                "seq": r.seq,
                "at": r.at,
                "old_key": r.old_key,
                "new_key": r.new_key,
            }))
            .into_response()
        }
        Err(crate::store::StoreError::Refused(why)) => Problem::new(
            409,
            "rotation-refused",
            "The signing key cannot be rotated here",
            why,
        )
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "audit key rotation failed");
            Problem::unavailable(
                "the key rotation could not be recorded; the old key stays in force",
            )
            .into_response()
        }
    }
}

/// The last verification run over HTTP (none since the gateway started: `null`).
async fn audit_status(State(st): State<AdminState>) -> Response {
    let last = st
        .last_verification
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    axum::Json(serde_json::json!({ "last_verification": last })).into_response()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExportBody {
    since: Option<String>,
    until: Option<String>,
}

/// How long an export waits to be fetched.
const EXPORT_KEPT: std::time::Duration = std::time::Duration::from_secs(3600);
/// The largest export file served over HTTP; larger windows are for `wingspan audit export`.
const EXPORT_SERVED_MAX: u64 = 256 * 1024 * 1024;

/// A subject access report's request: the person id (in the body, never a URL), why, and
/// `json` (default) or `html`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectReportBody {
    subject: String,
    reason: String,
    #[serde(default)]
    format: Option<String>,
}

/// `POST /v1/audit/subject-report`: a person's subject access report (PIPL Arts. 44–45),
/// recorded (`subject_reported`: who, why, whose reference) before it is made.
async fn subject_report(
    State(st): State<AdminState>,
    Extension(user): Extension<AdminUser>,
    body: axum::body::Bytes,
) -> Response {
    let q: SubjectReportBody = match json_body(&body) {
        Ok(q) => q,
        Err(problem) => return problem,
    };
    let (person, reason) = (q.subject.trim(), q.reason.trim());
    if person.is_empty() || reason.is_empty() {
        return Problem::new(
            400,
            "reason-required",
            "A person and a reason are required",
            "give the person's id as `subject` and why the report is made as `reason` (kept in the audit trail; one line, 200 characters)",
        )
        .into_response();
    }
    let html = match q.format.as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(_) => {
            return Problem::new(
                400,
                "invalid-body",
                "Unknown format",
                "`format` is `json` or `html`",
            )
            .into_response();
        }
    };
    let reference = st.store.subject_ref(person);
    let earlier = st.store.earlier_subject_refs(person);
    let mut e = Entry::new(Event::SubjectReported, audit::now());
    e.actor = Some(user.name.clone());
    e.reason = Some(audit::bounded_reason(reason));
    e.subject_ref = Some(reference.clone());
    if let Err(err) = st.store.audit(vec![e]).await {
        return unavailable(err);
    }
    let wanted = reference.clone();
    let (records, configs) = match st
        .store
        .audit_read(move |c| audit::subject::subject_records(c, &wanted, &earlier))
        .await
    {
        Ok(found) => found,
        Err(e) => return unavailable(e),
    };
    let hashes = audit::subject::config_hashes(&configs);
    let texts = match st
        .store
        .read(move |c| {
            let mut texts = Vec::new();
            for h in &hashes {
                if let Some(found) = crate::store::config_text(c, h)? {
                    texts.push(found);
                }
            }
            Ok(texts)
        })
        .await
    {
        Ok(t) => t,
        Err(e) => return unavailable(e),
    };
    let config_dir = st.reloader.config_dir();
    let made = tokio::task::spawn_blocking(move || {
        let policies = audit::subject::Policies::compile(&texts, &config_dir);
        wingspan_core::subject::assemble(
            &audit::now(),
            &reference,
            &records,
            &configs,
            &mut |sha: &str, dest: &str, ty: &str| policies.received(sha, dest, ty),
        )
    })
    .await;
    let Ok(report) = made else {
        return Problem::unavailable("the report could not be made").into_response();
    };
    if html {
        let mut resp = wingspan_core::subject::to_html(&report).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        resp.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"subject-report.html\""),
        );
        return resp;
    }
    axum::Json(report).into_response()
}

async fn export(State(st): State<AdminState>, body: axum::body::Bytes) -> Response {
    let q: ExportBody = match json_body_or_default(&body) {
        Ok(q) => q,
        Err(problem) => return problem,
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let root = st.exports_dir.clone();
    let dir = root.join(&id);
    let made = st
        .store
        .audit_read(move |c| {
            forget_old_exports(&root);
            let manifests =
                audit::export(c, q.since.as_deref(), q.until.as_deref(), "jsonl", &dir)?;
            let mut files = Vec::new();
            for entry in std::fs::read_dir(&dir)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                files.push(serde_json::json!({"name": name, "bytes": entry.metadata()?.len()}));
            }
            files.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            let count: u64 = manifests.iter().map(|m| m.count).sum();
            Ok((files, count))
        })
        .await;
    match made {
        Ok((files, count)) => {
            axum::Json(serde_json::json!({"id": id, "count": count, "files": files}))
                .into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// Exports older than [`EXPORT_KEPT`] go.
fn forget_old_exports(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > EXPORT_KEPT);
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

async fn exported_file(
    State(st): State<AdminState>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let not_found = || {
        Problem::new(
            404,
            "unknown-export",
            "Unknown export",
            "no such export file (exports are kept an hour)",
        )
        .into_response()
    };
    // Names as this listener made them: hex ids, plain file names.
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !plain(&id) || !plain(&file) {
        return not_found();
    }
    let path = st.exports_dir.join(&id).join(&file);
    enum Served {
        Missing,
        TooLarge,
        Bytes(Vec<u8>),
    }
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Served> {
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Served::Missing),
            Err(e) => return Err(e),
        };
        if meta.len() > EXPORT_SERVED_MAX {
            return Ok(Served::TooLarge);
        }
        std::fs::read(&path).map(Served::Bytes)
    })
    .await;
    match read {
        Ok(Ok(Served::Bytes(bytes))) => {
            let content_type = if file.ends_with(".json") {
                "application/json"
            } else {
                "application/x-ndjson"
            };
            let disposition = format!("attachment; filename=\"{file}\"");
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                    (
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_str(&disposition)
                            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                bytes,
            )
                .into_response()
        }
        Ok(Ok(Served::Missing)) => not_found(),
        Ok(Ok(Served::TooLarge)) => Problem::new(
            413,
            "export-too-large",
            "Export too large to download here",
            "use wingspan audit export for windows this large",
        )
        .into_response(),
        Ok(Err(e)) => unavailable(e),
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
    let mut text = render_prometheus(&st.stats, &queues, &st.store.times());
    if st.telemetry.exporting() {
        use std::fmt::Write as _;
        let _ = writeln!(
            text,
            "# HELP wingspan_trace_exports_failed_total Span batches the trace collector refused or never answered.\n# TYPE wingspan_trace_exports_failed_total counter\nwingspan_trace_exports_failed_total {}",
            st.telemetry.failed_exports()
        );
    }
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
        wingspan_core::config::Transport::Amqp { exchange, once, .. } => {
            serde_json::json!({"transport": "amqp", "target": exchange, "once": once})
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
        DlqError::Sealed(_) => (
            409,
            "sealed-copy",
            "The parked copy cannot be opened with this gateway's payload key",
        ),
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

/// A request's JSON body, or the 400 problem that says why it is unreadable.
#[allow(clippy::result_large_err)]
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
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

/// [`json_body`], with nothing (or only white space) meaning every field's default.
#[allow(clippy::result_large_err)]
fn json_body_or_default<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json_body(body)
}

/// The JSON body of an action (`{}` or nothing when it needs no fields).
#[allow(clippy::result_large_err)]
fn why(body: &[u8]) -> Result<Why, Response> {
    json_body_or_default(body)
}

fn acted(list: Vec<crate::dlq::Handled>) -> Response {
    axum::Json(serde_json::json!({ "count": list.len(), "handled": list })).into_response()
}

#[derive(Debug, Deserialize)]
struct ShowQuery {
    #[serde(default)]
    payload: bool,
}

/// One message's parked copies (metadata), or a problem.
#[allow(clippy::result_large_err)]
async fn parked_copies(
    st: &AdminState,
    id: &str,
) -> Result<Vec<crate::store::DeadLetter>, Response> {
    let key = id.to_owned();
    let listed = st
        .store
        .read(move |c| Ok(crate::store::dead_letters(c, None)?))
        .await;
    let copies: Vec<_> = match listed {
        Ok(l) => l.into_iter().filter(|d| d.message_id == key).collect(),
        Err(e) => return Err(unavailable(e)),
    };
    if copies.is_empty() {
        return Err(dlq_problem(DlqError::NotParked));
    }
    Ok(copies)
}

async fn dead_letter(
    State(st): State<AdminState>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    if q.payload {
        return Problem::new(
            400,
            "reason-required",
            "A reason is required",
            "a payload is shown by POST /admin/dead-letters/{id}/payload with a reason; it is kept in the audit trail",
        )
        .into_response();
    }
    match parked_copies(&st, &id).await {
        Ok(copies) => {
            axum::Json(serde_json::json!({ "message_id": id, "copies": copies })).into_response()
        }
        Err(r) => r,
    }
}

/// A parked message's payload, for a user allowed to see payloads, with a reason; audited.
async fn dead_letter_payload(
    State(st): State<AdminState>,
    Extension(user): Extension<AdminUser>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if !user.payloads {
        return Problem::new(
            403,
            "payload-not-allowed",
            "Not allowed to see payloads",
            "this admin user has no payloads permission",
        )
        .into_response();
    }
    let why = match why(&body) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let copies = match parked_copies(&st, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match st
        .dead_letters
        .act(
            &Select::Message(id.clone()),
            Action::Show,
            &user.name,
            &why.reason,
        )
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

/// One config version's text, by its SHA-256 (or a unique prefix of it).
async fn config_version(State(st): State<AdminState>, Path(sha): Path<String>) -> Response {
    if sha.is_empty() || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Problem::new(
            400,
            "invalid-version",
            "Not a version",
            "give a SHA-256 in hex",
        )
        .into_response();
    }
    let key = sha.to_ascii_lowercase();
    match st
        .store
        .read(move |c| Ok(crate::store::config_text(c, &key)?))
        .await
    {
        Ok(Some((sha256, text))) => {
            axum::Json(serde_json::json!({"sha256": sha256, "text": text})).into_response()
        }
        Ok(None) => Problem::new(
            404,
            "unknown-version",
            "Unknown config version",
            "no config the gateway ran has this hash (or the prefix names several)",
        )
        .into_response(),
        Err(e) => unavailable(e),
    }
}

/// `wingspan explain` over HTTP, against the config in force: nothing is sent.
async fn explain(State(st): State<AdminState>, body: axum::body::Bytes) -> Response {
    let config = st.live.get();
    let x = crate::preview::explain(&config, &body);
    let routes: Vec<serde_json::Value> = x
        .routes
        .iter()
        .map(|r| {
            serde_json::json!({
                "route": r.route,
                "for_type": r.for_type,
                "predicates": r.predicates.iter()
                    .map(|(text, holds)| serde_json::json!({"text": text, "holds": holds}))
                    .collect::<Vec<_>>(),
                "matched": r.matched,
                "destinations": r.destinations,
            })
        })
        .collect();
    let deliveries: Vec<serde_json::Value> = x
        .deliveries
        .iter()
        .map(|d| {
            let (body, error) = match &d.body {
                Ok(b) => (Some(String::from_utf8_lossy(b).into_owned()), None),
                Err(e) => (None, Some(e.clone())),
            };
            serde_json::json!({
                "destination": d.destination,
                "adapter": d.adapter,
                "content_type": d.content_type,
                "body": body,
                "error": error,
            })
        })
        .collect();
    let refused = x.refused.as_ref().map(|r| {
        serde_json::json!({
            "type": format!("/problems/{}", r.kind.slug()),
            "status": r.kind.status(),
            "detail": r.detail,
        })
    });
    axum::Json(serde_json::json!({
        "refused": refused,
        "routes": routes,
        "deliveries": deliveries,
    }))
    .into_response()
}

/// The last hour, per minute, for the console's charts.
async fn live_minutes(State(st): State<AdminState>) -> Response {
    let now = Sample::of(&st.stats, audit::now());
    axum::Json(serde_json::json!({ "minutes": st.recent.minutes(now) })).into_response()
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
