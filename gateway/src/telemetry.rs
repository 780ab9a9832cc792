//! Traces: one W3C trace per message across the platform, the gateway and its partners.
//!
//! Every message carries a trace context from the moment it is admitted, whether or not spans
//! are exported: upstream's `traceparent` (HTTP header or AMQP header) when it sent a valid
//! one, else a new trace. The context rides on the internal copies (AMQP headers), reaches
//! partners (HTTP `traceparent` header, AMQP header of their copy), and its trace id is kept
//! in the message's `received` audit record.
//!
//! Spans (`admit`, `publish` per destination, `deliver` per attempt, `reply` when a reply is
//! correlated) are exported over OTLP/HTTP only when `[telemetry] otlp_endpoint` is set: the
//! OpenTelemetry SDK's batch processor on its own thread, a bounded queue (a span that finds
//! it full is dropped and counted by the SDK, never waited for), our HTTP client as the
//! transport. Off, no SDK object exists and a step costs two random numbers.
//!
//! Span names are step names; attributes are ids, types, destinations, attempts and outcomes —
//! the fields an audit record holds — never a payload field or a person id.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use wingspan_core::trace::{TraceContext, tracestate};

use crate::broker::publish::{HeaderValue, Outgoing};

/// The W3C header names, on HTTP requests and as AMQP message headers.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Spans waiting for export; beyond this a span is dropped (and counted), never waited for.
const QUEUE: usize = 4096;

/// The trace context a message arrived with: nothing (or nothing valid) starts a new trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstream {
    pub parent: Option<TraceContext>,
    /// Passed on as it came (printable, bounded), or dropped.
    pub state: Option<String>,
}

impl Upstream {
    /// From the two header values, however they were carried.
    pub fn from_values(traceparent: Option<&str>, state: Option<&str>) -> Self {
        let parent = traceparent.and_then(TraceContext::parse);
        Self {
            parent,
            // A tracestate without a valid traceparent means nothing.
            state: parent.and(state).and_then(tracestate).map(str::to_owned),
        }
    }

    /// Pass this context on, unchanged, to a message that replaces the one it came with (a
    /// retry or parked copy): the attempts are siblings under the step that queued it.
    pub fn pass_on(&self, out: &mut Outgoing<'_>) {
        if let Some(parent) = &self.parent {
            carry(out, parent, self.state.as_deref());
        }
    }

    /// From HTTP request headers.
    pub fn from_http(headers: &http::HeaderMap) -> Self {
        let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
        Self::from_values(get(TRACEPARENT), get(TRACESTATE))
    }
}

/// Put a trace context on an outgoing message (internal copy or partner's copy).
pub fn carry(out: &mut Outgoing<'_>, cx: &TraceContext, state: Option<&str>) {
    out.headers
        .push((TRACEPARENT, HeaderValue::Text(cx.header())));
    if let Some(s) = state {
        out.headers
            .push((TRACESTATE, HeaderValue::Text(s.to_owned())));
    }
}

/// Where traces go: nowhere (the default), or an OTLP collector.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    exporter: Option<Arc<Exporter>>,
}

#[derive(Debug)]
struct Exporter {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    failures: Arc<AtomicU64>,
}

impl Telemetry {
    /// No export: contexts are still carried, ids still drawn.
    pub fn off() -> Self {
        Self::default()
    }

    /// Export to the OTLP/HTTP traces endpoint `endpoint` (a URL with no path gets
    /// `/v1/traces`), as `service.name = wingspan`, `service.instance.id = instance`. Call
    /// from inside the tokio runtime: exports run on it, sent by `http`.
    pub fn otlp(endpoint: &str, instance: &str, http: reqwest::Client) -> anyhow::Result<Self> {
        use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
        let failures = Arc::new(AtomicU64::new(0));
        let client = Client {
            http,
            runtime: tokio::runtime::Handle::try_current()
                .map_err(|_| anyhow::anyhow!("telemetry starts inside the runtime"))?,
            failures: failures.clone(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .with_timeout(Duration::from_secs(10))
            .with_http_client(client)
            .build()?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(QUEUE)
                    .with_max_export_batch_size(512)
                    .with_scheduled_delay(Duration::from_secs(1))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_service_name("wingspan")
                    .with_attribute(KeyValue::new("service.instance.id", instance.to_owned()))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("wingspan");
        Ok(Self {
            exporter: Some(Arc::new(Exporter {
                provider,
                tracer,
                failures,
            })),
        })
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.exporter.is_some()
    }

    /// Exports the collector refused or never answered.
    pub fn failed_exports(&self) -> u64 {
        self.exporter
            .as_ref()
            .map_or(0, |e| e.failures.load(Ordering::Relaxed))
    }

    /// Start a step of a message's trace, as a child of `parent` (`None`: a new trace).
    pub fn step(&self, name: &'static str, kind: SpanKind, parent: Option<&TraceContext>) -> Step {
        let Some(e) = &self.exporter else {
            let cx = match parent {
                Some(p) => p.child(random_span_id()),
                None => TraceContext {
                    trace_id: random_trace_id(),
                    span_id: random_span_id(),
                    // Nothing was recorded here; a partner that samples decides for itself.
                    sampled: false,
                },
            };
            return Step { cx, span: None };
        };
        let parent_cx = match parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id),
                SpanId::from_bytes(p.span_id),
                if p.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                TraceState::NONE,
            )),
            None => Context::new(),
        };
        let span = e
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&e.tracer, &parent_cx);
        let sc = span.span_context();
        let cx = TraceContext {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            sampled: sc.is_sampled(),
        };
        Step {
            cx,
            span: Some(span),
        }
    }

    /// Send what is queued and stop the exporter (bounded: a collector that does not answer
    /// costs at most the export timeout).
    pub async fn shutdown(&self) {
        self.on_provider(|p| drop(p.shutdown())).await;
    }

    /// Send what is queued now (tests, and before a planned stop).
    pub async fn flush(&self) {
        self.on_provider(|p| drop(p.force_flush())).await;
    }

    /// Run a blocking call of the provider off the runtime, bounded in time.
    async fn on_provider(&self, f: impl FnOnce(SdkTracerProvider) + Send + 'static) {
        if let Some(e) = &self.exporter {
            let provider = e.provider.clone();
            let _ = tokio::time::timeout(
                Duration::from_secs(15),
                tokio::task::spawn_blocking(move || f(provider)),
            )
            .await;
        }
    }
}

/// One step of a message's trace. Ends (and is queued for export) when dropped.
#[derive(Debug)]
pub struct Step {
    cx: TraceContext,
    span: Option<opentelemetry_sdk::trace::Span>,
}

impl Step {
    /// The context naming this step: what the steps after it, and partners, take as parent.
    pub fn context(&self) -> &TraceContext {
        &self.cx
    }

    /// The trace id, as audit records keep it.
    pub fn trace_id(&self) -> String {
        self.cx.trace_id_hex()
    }

    /// Whether the span is recorded (exported): callers skip building attributes otherwise.
    pub fn recording(&self) -> bool {
        self.span.as_ref().is_some_and(|s| s.is_recording())
    }

    /// An attribute of the step: an id, a type, a destination, an outcome — never content.
    pub fn set(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(s) = &mut self.span {
            s.set_attribute(KeyValue::new(key, value));
        }
    }

    /// The step failed, for a reason of the gateway's own wording (never content).
    pub fn failed(&mut self, reason: &str) {
        if let Some(s) = &mut self.span {
            s.set_status(Status::error(reason.to_owned()));
        }
    }
}

/// `endpoint` as the traces URL: one with no path gets the OTLP default `/v1/traces`.
fn traces_url(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    if rest.trim_end_matches('/').contains('/') {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }
}

/// The exporter's transport: our reqwest client, run on the gateway's runtime (the batch
/// processor's thread has none of its own).
#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    failures: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let http = self.http.clone();
        let failures = self.failures.clone();
        // Built and sent on the runtime: the request's timer needs its reactor.
        let answered = self.runtime.spawn(async move {
            let resp = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .timeout(Duration::from_secs(10))
                .body(body)
                .send()
                .await?;
            let mut out = http::Response::builder().status(resp.status());
            if let Some(h) = out.headers_mut() {
                *h = resp.headers().clone();
            }
            // A collector's answer is a small status document; a big one is not read whole.
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>(out.body(body.slice(..body.len().min(64 << 10))))
        });
        match answered.await {
            Ok(Ok(Ok(resp))) => {
                if !resp.status().is_success() {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        status = resp.status().as_u16(),
                        "the trace collector refused a batch of spans"
                    );
                }
                Ok(resp)
            }
            Ok(Ok(Err(e))) => Err(Box::new(e)),
            Ok(Err(e)) => {
                failures.fetch_add(1, Ordering::Relaxed);
                let e = e.without_url();
                tracing::warn!(error = %e, "spans not exported: the trace collector did not answer");
                Err(Box::new(e))
            }
            Err(e) => {
                failures.fetch_add(1, Ordering::Relaxed);
                Err(Box::new(e))
            }
        }
    }
}

// ── Ids when nothing is exported ────────────────────────────────────────────────────────────

thread_local! {
    /// SplitMix64, seeded once per thread from the OS's generator: ids that are unique and
    /// unpredictable enough for tracing (they are not secrets), without a system call each.
    static IDS: Cell<u64> = Cell::new(uuid::Uuid::new_v4().as_u64_pair().0);
}

fn next_random() -> u64 {
    IDS.with(|s| {
        let mut z = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn random_span_id() -> [u8; 8] {
    loop {
        let v = next_random();
        if v != 0 {
            return v.to_be_bytes();
        }
    }
}

fn random_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_random().to_be_bytes());
    id[8..].copy_from_slice(&random_span_id());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_context_is_kept_and_a_bad_one_starts_a_new_trace() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let up = Upstream::from_values(Some(good), Some("congo=t61rcWkgMzE"));
        let step = Telemetry::off().step("admit", SpanKind::Server, up.parent.as_ref());
        assert_eq!(step.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(
            step.context().span_id,
            up.parent.as_ref().map(|p| p.span_id).unwrap_or_default()
        );
        assert!(step.context().sampled);
        assert_eq!(up.state.as_deref(), Some("congo=t61rcWkgMzE"));

        let bad = Upstream::from_values(Some("00-nonsense"), Some("congo=t61rcWkgMzE"));
        assert_eq!(bad, Upstream::default(), "no state without a parent");
        let a = Telemetry::off().step("admit", SpanKind::Server, None);
        let b = Telemetry::off().step("admit", SpanKind::Server, None);
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(a.trace_id().len(), 32);
        assert!(!a.recording());
    }

    #[test]
    fn an_endpoint_without_a_path_gets_the_traces_path() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c/otlp/v1/traces"),
            "https://c/otlp/v1/traces"
        );
    }
}
