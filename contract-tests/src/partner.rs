//! One simulated partner system: an HTTP server on a fixed or ephemeral port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wingspan_adapters::{Adapter, AdapterKind, Canonical, Inbound};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

/// How the partner answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 for new messages, 200 for repeats (already done).
    Accept,
    /// Answer every request with this status (e.g. 503).
    Fail(u16),
    /// Answer the next `n` requests with 503, then accept.
    FailFirst(u32),
    /// Reject everything as invalid (400).
    Reject,
    /// Accept after this delay.
    Delay(Duration),
    /// Reject (400) messages whose Idempotency-Key starts with this; accept the others
    /// (poison messages among good ones).
    RejectKeysWithPrefix(String),
}

#[derive(Debug, Clone)]
pub struct PartnerOptions {
    /// Partner name (for the summary and logs).
    pub name: String,
    /// Source id the partner uses when it replies; `None`: it does not reply.
    pub reply_as: Option<String>,
    /// Gateway base URL replies are posted to (`http://127.0.0.1:8080`).
    pub gateway: Option<String>,
    /// The partner's wire format (an adapter name): what it receives is decoded with it —
    /// a document it cannot read is refused with 400, as a real partner would — and its
    /// replies are written in it and posted to `/v1/sources/{reply_as}/messages`.
    /// `rehab` speaks the canonical envelope and replies on `/v1/messages`. A path to a
    /// declared adapter's directory (`config/adapters/hl7v2`) makes the partner speak that
    /// adapter's format, read and written by its own programs.
    pub adapter: String,
}

/// The adapter a partner speaks: a built-in by name, or the declared one in a directory.
pub fn resolve_adapter(adapter: &str) -> anyhow::Result<Arc<dyn Adapter>> {
    if let Some(kind) = AdapterKind::from_name(adapter) {
        return Ok(Arc::new(kind));
    }
    let dir = std::path::Path::new(adapter);
    if dir.join("adapter.toml").is_file() {
        return wingspan_adapters::declared::Declared::load(dir)
            .map(|a| Arc::new(a) as Arc<dyn Adapter>)
            .map_err(|problems| {
                anyhow::anyhow!(
                    "{}",
                    problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
    }
    anyhow::bail!("no adapter {adapter:?}: neither a built-in nor a declared adapter's directory")
}

/// One message the partner accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub idempotency_key: String,
    pub path: String,
    pub content_type: String,
    pub body: Bytes,
    /// The body decoded by the partner's adapter (the canonical envelope it understood).
    pub canonical: Option<serde_json::Value>,
    /// When it arrived.
    pub at: std::time::Instant,
    /// The W3C `traceparent` it came with.
    pub traceparent: Option<String>,
}

#[derive(Debug, Default)]
struct Book {
    /// Every POST, including failures and repeats.
    posts: u64,
    /// POSTs whose Idempotency-Key had already been accepted.
    repeats: u64,
    accepted: Vec<Received>,
    seen: HashMap<String, u32>,
    replies_sent: u64,
    reply_failures: u64,
}

#[derive(Debug)]
struct Shared {
    options: PartnerOptions,
    adapter: Arc<dyn Adapter>,
    gateway: Mutex<Option<String>>,
    behaviour: Mutex<Behaviour>,
    book: Mutex<Book>,
    http: reqwest::Client,
    /// Keep what each accepted message said (body, decoded envelope); off for long runs,
    /// which keep only keys, paths and arrival times.
    keep_bodies: std::sync::atomic::AtomicBool,
}

/// A running (or stopped) simulated partner.
#[derive(Debug)]
pub struct Partner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Partner {
    /// Start on `addr` (port 0 for an ephemeral port).
    pub async fn start(addr: &str, options: PartnerOptions) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shared = Arc::new(Shared {
            adapter: resolve_adapter(&options.adapter)?,
            gateway: Mutex::new(options.gateway.clone()),
            options,
            behaviour: Mutex::new(Behaviour::Accept),
            book: Mutex::new(Book::default()),
            http: reqwest::Client::builder().build()?,
            keep_bodies: std::sync::atomic::AtomicBool::new(true),
        });
        let addr: SocketAddr = addr.parse()?;
        let mut p = Self {
            shared,
            addr,
            stop: None,
            task: None,
        };
        p.listen().await?;
        Ok(p)
    }

    async fn listen(&mut self) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.addr = listener.local_addr()?;
        let app = Router::new()
            .fallback(receive)
            .with_state(self.shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        }));
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.shared.options.name
    }

    /// Take the partner off the network (connections are refused) until [`Partner::restart`].
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Come back on the same port, keeping everything recorded so far.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let mut last = None;
        for _ in 0..50 {
            match self.listen().await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("cannot rebind")))
    }

    /// Where replies go (the gateway's base URL), when it is known only after start.
    pub fn set_gateway(&self, base_url: &str) {
        *self
            .shared
            .gateway
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(base_url.to_owned());
    }

    /// Whether to keep each accepted message's body and decoded envelope (default: yes).
    pub fn keep_bodies(&self, keep: bool) {
        self.shared
            .keep_bodies
            .store(keep, std::sync::atomic::Ordering::Relaxed);
    }

    /// Make room for `n` more accepted messages now. The book grows under the lock every
    /// request takes: past a million entries, growing its table and list on the way (a
    /// rehash, a copy) held every request for up to seconds, which a long run measuring
    /// latency must not mistake for the gateway's.
    pub fn reserve(&self, n: usize) {
        let mut book = self.shared.book.lock().unwrap_or_else(|p| p.into_inner());
        book.accepted.reserve(n);
        book.seen.reserve(n);
    }

    /// (key, arrival) of the messages accepted from the `from`-th on, and the next index.
    pub fn arrivals_since(&self, from: usize) -> (Vec<(String, std::time::Instant)>, usize) {
        self.book(|b| {
            let new = b
                .accepted
                .get(from..)
                .unwrap_or_default()
                .iter()
                .map(|r| (r.idempotency_key.clone(), r.at))
                .collect();
            (new, b.accepted.len())
        })
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *self
            .shared
            .behaviour
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = b;
    }

    fn book<T>(&self, f: impl FnOnce(&Book) -> T) -> T {
        f(&self.shared.book.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Messages accepted (first time each key was seen).
    pub fn accepted(&self) -> Vec<Received> {
        self.book(|b| b.accepted.clone())
    }

    /// The Idempotency-Keys accepted, sorted (each appears once: repeats are not accepted).
    pub fn accepted_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.book(|b| {
            b.accepted
                .iter()
                .map(|r| r.idempotency_key.clone())
                .collect()
        });
        keys.sort();
        keys
    }

    pub fn accepted_count(&self) -> usize {
        self.book(|b| b.accepted.len())
    }

    /// All POSTs, including failures and repeats.
    pub fn posts(&self) -> u64 {
        self.book(|b| b.posts)
    }

    /// Deliveries of a key already accepted (absorbed as "already done").
    pub fn repeats(&self) -> u64 {
        self.book(|b| b.repeats)
    }

    /// How many times each key was delivered (accepted or repeated).
    pub fn deliveries_by_key(&self) -> HashMap<String, u32> {
        self.book(|b| b.seen.clone())
    }

    pub fn replies_sent(&self) -> u64 {
        self.book(|b| b.replies_sent)
    }
}

impl Drop for Partner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let behaviour = {
        let mut b = shared.behaviour.lock().unwrap_or_else(|p| p.into_inner());
        let current = b.clone();
        if let Behaviour::FailFirst(n) = current {
            *b = if n <= 1 {
                Behaviour::Accept
            } else {
                Behaviour::FailFirst(n - 1)
            };
        }
        current
    };
    shared.book.lock().unwrap_or_else(|p| p.into_inner()).posts += 1;
    match behaviour {
        Behaviour::Fail(status) => {
            return StatusCode::from_u16(status)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
                .into_response();
        }
        Behaviour::FailFirst(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Behaviour::Reject => {
            return (StatusCode::BAD_REQUEST, "invalid message for this partner").into_response();
        }
        Behaviour::Delay(d) => tokio::time::sleep(d).await,
        Behaviour::RejectKeysWithPrefix(prefix) => {
            let poison = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|k| k.starts_with(&prefix));
            if poison {
                return (StatusCode::BAD_REQUEST, "this partner refuses this message")
                    .into_response();
            }
        }
        Behaviour::Accept => {}
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (StatusCode::BAD_REQUEST, "Idempotency-Key required").into_response();
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let adapter = shared.adapter.clone();
    let request = match adapter.decode(Inbound {
        source: "gateway",
        content_type: Some(&wingspan_adapters::media_type(&content_type)),
        bytes: &body,
    }) {
        Ok(env) => env,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("cannot read document: {e}"),
            )
                .into_response();
        }
    };
    let first = {
        let mut book = shared.book.lock().unwrap_or_else(|p| p.into_inner());
        let count = book.seen.entry(key.clone()).or_insert(0);
        *count += 1;
        let first = *count == 1;
        if first {
            let keep = shared
                .keep_bodies
                .load(std::sync::atomic::Ordering::Relaxed);
            book.accepted.push(Received {
                idempotency_key: key.clone(),
                path: uri.path().to_owned(),
                content_type: content_type.clone(),
                body: if keep { body.clone() } else { Bytes::new() },
                canonical: if keep {
                    serde_json::to_value(&request).ok()
                } else {
                    None
                },
                at: std::time::Instant::now(),
                traceparent: traceparent(&headers).map(|cx| cx.header()),
            });
        } else {
            book.repeats += 1;
        }
        first
    };
    if first {
        let gateway = shared
            .gateway
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let (Some(source), Some(gateway)) = (&shared.options.reply_as, gateway)
            && let Ok(request) = serde_json::to_value(&request)
            && let Some(reply) = crate::samples::reply_for(&request, source)
            && let Some((url, content_type, bytes)) =
                native_reply(adapter.as_ref(), &gateway, source, &reply, &content_type)
        {
            // The reply continues the request's trace, as a traced partner's would: its own
            // span (a new id) under the gateway's delivery.
            let reply_trace = traceparent(&headers).map(|cx| {
                let id = uuid::Uuid::new_v4().as_u64_pair().0.max(1);
                cx.child(id.to_be_bytes()).header()
            });
            tokio::spawn(send_reply(
                shared.clone(),
                url,
                content_type,
                bytes,
                reply_trace,
            ));
        }
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "accepted"})),
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "already done"})),
        )
            .into_response()
    }
}

/// The reply in the partner's own format and where it goes: canonical partners post to
/// `/v1/messages`, the others to `/v1/sources/{source}/messages`, in the representation the
/// request came in (a hospital sent FHIR XML answers in FHIR XML).
fn native_reply(
    adapter: &dyn Adapter,
    gateway: &str,
    source: &str,
    reply: &serde_json::Value,
    request_content_type: &str,
) -> Option<(String, &'static str, Vec<u8>)> {
    let envelope: wingspan_core::Envelope = serde_json::from_value(reply.clone()).ok()?;
    if adapter.name() == "rehab" {
        let bytes = serde_json::to_vec(&envelope).ok()?;
        return Some((format!("{gateway}/v1/messages"), "application/json", bytes));
    }
    let wanted = wingspan_adapters::media_type(request_content_type);
    let encoded = adapter
        .encode(
            Canonical {
                envelope: &envelope,
                bytes: None,
            },
            Some(wanted.as_str()),
        )
        .ok()?;
    Some((
        format!("{gateway}/v1/sources/{source}/messages"),
        encoded.content_type,
        encoded.body.into_owned(),
    ))
}

/// The trace context a request came with, if valid.
fn traceparent(headers: &HeaderMap) -> Option<wingspan_core::trace::TraceContext> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(wingspan_core::trace::TraceContext::parse)
}

/// Post a reply to the gateway, retrying while it answers 503 or 409.
async fn send_reply(
    shared: Arc<Shared>,
    url: String,
    content_type: &'static str,
    body: Vec<u8>,
    traceparent: Option<String>,
) {
    let token = shared
        .options
        .reply_as
        .as_deref()
        .map(crate::dev_token)
        .unwrap_or_default();
    for attempt in 0..30u32 {
        let mut post = shared
            .http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", content_type);
        if let Some(t) = &traceparent {
            post = post.header("traceparent", t);
        }
        let sent = post.body(body.clone()).send().await;
        match sent {
            Ok(r) if r.status().is_success() => {
                shared
                    .book
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .replies_sent += 1;
                return;
            }
            Ok(r) if r.status().as_u16() != 503 && r.status().as_u16() != 409 => break,
            _ => {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1).min(10)))
                    .await
            }
        }
    }
    shared
        .book
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .reply_failures += 1;
}
