//! Traces across the platform, the gateway and its partners: W3C `traceparent` read from
//! HTTP and AMQP upstreams, passed to HTTP and AMQP partners, continued by a partner's reply,
//! kept in every audit record; spans exported over OTLP/HTTP to a collector run by the test
//! (it decodes the protobuf it gets); a collector that does not answer costs nothing but spans.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message as _;
use support::{AMQP, World, civil_over_amqp, declare_partner_queue, drain_until, eventually};
use wingspan::audit;
use wingspan_sim::samples;

const UP_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const UP_SPAN: &str = "b7ad6b7169203331";

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: HashMap<String, String>,
}

/// A tiny OTLP/HTTP collector: `POST /v1/traces`, protobuf in, spans kept.
struct Collector {
    addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
                    let mut kept = kept.lock().expect("spans");
                    for rs in req.resource_spans {
                        for ss in rs.scope_spans {
                            for s in ss.spans {
                                kept.push(Span {
                                    trace_id: hex(&s.trace_id),
                                    span_id: hex(&s.span_id),
                                    parent: hex(&s.parent_span_id),
                                    name: s.name,
                                    kind: s.kind,
                                    attributes: s
                                        .attributes
                                        .into_iter()
                                        .map(|kv| {
                                            let v = match kv.value.and_then(|v| v.value) {
                                                Some(Any::StringValue(s)) => s,
                                                Some(Any::IntValue(i)) => i.to_string(),
                                                Some(Any::BoolValue(b)) => b.to_string(),
                                                other => format!("{other:?}"),
                                            };
                                            (kv.key, v)
                                        })
                                        .collect(),
                                });
                            }
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, spans }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("spans").clone()
    }
}

/// The trace ids of the received records from `source` in a trail.
fn traces_received(trail: &[wingspan_core::audit::Record], source: &str) -> Vec<String> {
    trail
        .iter()
        .filter(|r| {
            r.entry.event == wingspan_core::audit::Event::Received
                && r.entry.source.as_deref() == Some(source)
        })
        .map(|r| r.entry.trace_id.clone().unwrap_or_default())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The traceparent's trace id and parent span id.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_one_trace_from_upstream_through_partners_and_back() {
    let collector = Collector::start().await;
    let world = World::new("tracing", true).await;
    let prefix = world.prefix.clone();
    let endpoint = format!("http://{}", collector.addr);
    world.rewrite(|t| {
        format!(
            "{}\n[telemetry]\notlp_endpoint = \"{endpoint}\"\n",
            civil_over_amqp(t, &prefix, "")
        )
    });
    let civil_queue = declare_partner_queue(&prefix).await;
    let (gateway, base) = world.start_gateway().await;
    assert!(gateway.telemetry.exporting());
    let client = reqwest::Client::new();

    // A material for the police (who reply), sent inside the platform's trace.
    let material = samples::material_submit(1);
    let material_id = material["message_id"].as_str().expect("id").to_owned();
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(wingspan_sim::dev_token("rehab"))
        .header("traceparent", format!("00-{UP_TRACE}-{UP_SPAN}-01"))
        .header("tracestate", "rehab=t61rcWkgMzE")
        .json(&material)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    // A handover for civil affairs (over AMQP), sent with no trace: it starts one.
    let handover = samples::handover(2, "320411", false, true);
    let handover_id = handover["message_id"].as_str().expect("id").to_owned();
    let (status, receipt) = support::post(&client, &base, &handover).await;
    assert_eq!(status, 202, "{receipt}");

    let police = world.partner("police");
    let rehab = world.partner("rehab");
    assert!(eventually(Duration::from_secs(20), || police.accepted_count() == 1).await);
    assert!(
        eventually(Duration::from_secs(20), || rehab.accepted_count() >= 1).await,
        "the police reply reached rehab"
    );
    // The police got the platform's trace, under a step of the gateway's.
    let got = police.accepted()[0]
        .traceparent
        .clone()
        .expect("traceparent at the partner");
    let (police_trace, police_parent) = ids(&got);
    assert_eq!(police_trace, UP_TRACE);
    assert_ne!(police_parent, UP_SPAN);
    // Civil affairs got the handover's own new trace, as an AMQP header.
    let civil = drain_until(&civil_queue, 1, Duration::from_secs(20)).await;
    assert_eq!(civil.len(), 1);
    let civil_tp = civil[0]
        .1
        .get("traceparent")
        .expect("traceparent header")
        .clone();
    let (handover_trace, civil_parent) = ids(&civil_tp);
    assert_eq!(handover_trace.len(), 32);
    assert_ne!(handover_trace, UP_TRACE);

    // The spans, as the collector decoded them.
    gateway.telemetry.flush().await;
    let wanted = |spans: &[Span]| {
        spans.iter().filter(|s| s.trace_id == UP_TRACE).count() >= 5
            && spans
                .iter()
                .any(|s| s.trace_id == handover_trace && s.name == "deliver")
    };
    assert!(
        eventually(Duration::from_secs(20), || wanted(&collector.spans())).await,
        "spans: {:#?}",
        collector.spans()
    );
    let spans = collector.spans();
    let find = |trace: &str, name: &str, parent: &str| -> Span {
        spans
            .iter()
            .find(|s| s.trace_id == trace && s.name == name && s.parent == parent)
            .unwrap_or_else(|| panic!("no {name} under {parent} in {spans:#?}"))
            .clone()
    };
    // admit (server) under the platform's span → publish (producer) → deliver (client),
    // whose id the police received as their parent.
    let admit = find(UP_TRACE, "admit", UP_SPAN);
    assert_eq!(admit.kind, 2, "server");
    assert_eq!(admit.attributes["messaging.message.id"], material_id);
    assert_eq!(admit.attributes["wingspan.outcome"], "accepted");
    let publish = find(UP_TRACE, "publish", &admit.span_id);
    assert_eq!(publish.attributes["wingspan.destination"], "police");
    let deliver = find(UP_TRACE, "deliver", &publish.span_id);
    assert_eq!(deliver.kind, 3, "client");
    assert_eq!(deliver.attributes["wingspan.outcome"], "delivered");
    assert_eq!(deliver.span_id, police_parent);
    // The reply came back in the same trace (the partner continued it) and was correlated.
    let reply_admit = spans
        .iter()
        .find(|s| s.trace_id == UP_TRACE && s.name == "admit" && s.span_id != admit.span_id)
        .expect("the reply's admit span");
    let reply = find(UP_TRACE, "reply", &reply_admit.span_id);
    assert_eq!(reply.attributes["wingspan.outcome"], "matched");
    assert_eq!(reply.attributes["wingspan.correlation_id"], material_id);
    // The handover: a root admit, the AMQP delivery (producer) under it, whose id civil got.
    let root = find(&handover_trace, "admit", "");
    let direct = find(&handover_trace, "deliver", &root.span_id);
    assert_eq!(direct.kind, 4, "producer");
    assert_eq!(direct.span_id, civil_parent);
    assert_eq!(direct.attributes["wingspan.destination"], "civil");

    // No personal data in span names or attributes.
    for m in [&material, &handover] {
        let person = &m["payload"]["person"];
        for field in ["person_id", "name", "id_number"] {
            if let Some(v) = person[field].as_str() {
                for s in &spans {
                    assert!(
                        !s.name.contains(v) && s.attributes.values().all(|a| !a.contains(v)),
                        "{field} in span {s:?}"
                    );
                }
            }
        }
    }

    // Each message's received record names its trace (its other records are its thread),
    // the police reply's names the same trace, and the chain verifies.
    let loaded = world.load();
    let mut store = audit::open_store(&loaded).expect("store");
    let trail = audit::trail(&mut store, &material_id).expect("trail");
    // The material's received and delivered records, the reply's received, correlation and
    // delivered records.
    assert!(trail.len() >= 5, "{}", audit::table(&trail));
    assert_eq!(traces_received(&trail, "rehab"), vec![UP_TRACE.to_owned()]);
    assert_eq!(traces_received(&trail, "police"), vec![UP_TRACE.to_owned()]);
    assert!(
        trail
            .iter()
            .filter(|r| r.entry.event != wingspan_core::audit::Event::Received)
            .all(|r| r.entry.trace_id.is_none()),
        "{}",
        audit::table(&trail)
    );
    let trail = audit::trail(&mut store, &handover_id).expect("trail");
    assert_eq!(
        traces_received(&trail, "rehab"),
        vec![handover_trace.clone()]
    );
    gateway.shutdown().await;
    let key = audit::trusted_key(&loaded, None).expect("key");
    for report in audit::verify_store(&mut store, &key).expect("verify") {
        assert!(report.ok(), "{report:?}");
    }
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_upstreams_are_traced_and_a_silent_collector_disturbs_nothing() {
    let world = World::new("tracing-amqp", false).await;
    // A collector that is not there: exports fail, intake does not notice.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", gone.local_addr().expect("addr"));
    drop(gone);
    world.rewrite(|t| format!("{t}\n[telemetry]\notlp_endpoint = \"{dead}\"\n"));
    let (gateway, _base) = world.start_gateway().await;

    let traced = samples::handover(1, "320506", false, false);
    let garbled = samples::handover(2, "320506", false, false);
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    for (m, tp) in [
        (&traced, format!("00-{UP_TRACE}-{UP_SPAN}-01")),
        (
            &garbled,
            format!("00-{}-{UP_SPAN}-01", UP_TRACE.to_uppercase()),
        ),
    ] {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("traceparent"),
            AMQPValue::LongString(LongString::from(tp.into_bytes())),
        );
        ch.basic_publish(
            "".into(),
            gateway.names.ingress().as_str().into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(m).expect("json"),
            BasicProperties::default()
                .with_user_id("guest".into())
                .with_delivery_mode(2)
                .with_headers(headers),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    let _ = conn.close(200, "sent".into()).await;
    let aftercare = world.partner("aftercare");
    assert!(eventually(Duration::from_secs(20), || aftercare.accepted_count() == 2).await);
    let by_key: HashMap<String, String> = aftercare
        .accepted()
        .into_iter()
        .map(|r| (r.idempotency_key, r.traceparent.expect("traceparent")))
        .collect();
    let id = |m: &serde_json::Value| m["message_id"].as_str().expect("id").to_owned();
    assert_eq!(ids(&by_key[&id(&traced)]).0, UP_TRACE);
    // Upper-case hex is not a valid traceparent: ignored, never refused; a new trace started.
    let (fresh, _) = ids(&by_key[&id(&garbled)]);
    assert_ne!(fresh, UP_TRACE.to_uppercase());
    assert_ne!(fresh, UP_TRACE);

    let loaded = world.load();
    let mut store = audit::open_store(&loaded).expect("store");
    for (m, trace) in [(&traced, UP_TRACE), (&garbled, fresh.as_str())] {
        let trail = audit::trail(&mut store, &id(m)).expect("trail");
        assert_eq!(
            traces_received(&trail, "rehab"),
            vec![trace.to_owned()],
            "{}",
            audit::table(&trail)
        );
    }
    gateway.telemetry.flush().await;
    assert!(
        eventually(Duration::from_secs(20), || gateway
            .telemetry
            .failed_exports()
            > 0)
        .await,
        "a failed export is counted"
    );
    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    let metrics = reqwest::Client::new()
        .get(format!("{admin}/metrics"))
        .bearer_auth("dev-operator-token")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let failed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wingspan_trace_exports_failed_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(failed.is_some_and(|n| n > 0), "{metrics}");
    gateway.shutdown().await;
    world.cleanup().await;
}
