//! Every adapter's encode (canonical → partner wire, after the destination's field policy,
//! exactly as delivery runs it) and decode (partner wire → canonical), per message, on one
//! core, for ~1–2 KB messages: the built-in adapters, then the declared ones of the example
//! config (VRL programs) on the same destinations — `police`, `hr`, `civil` through their
//! declared twins — and the HL7 v2 hospital. Goals: built-in ≥ 50,000 messages/s; declared
//! ≥ 50,000 (JSON) and ≥ 25,000 (XML, HL7 v2) in each direction.
//! `cargo bench -p wingspan --bench adapters` (`-- declared` for the declared ones only)

// The allocator the `wingspan` binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wingspan_adapters::{Inbound, render};
use wingspan_core::Envelope;
use wingspan_sim::samples;

fn adapters(c: &mut Criterion) {
    let config_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config");
    let loaded = wingspan::load::load(&config_dir).expect("example config");
    let config = loaded.config;
    let dest = |id: &str| {
        config
            .destinations
            .iter()
            .find(|d| d.id == id)
            .cloned()
            .expect("destination")
    };
    let mut xml_ma = dest("hospital-ma01");
    xml_ma.content_type = Some("application/fhir+xml".into());
    xml_ma.id = "hospital-xml".into();
    let cases: Vec<(wingspan_core::config::Destination, serde_json::Value)> = vec![
        (dest("police"), samples::material_submit(7)),
        (
            dest("hospital-ma01"),
            samples::consultation_request(7, "ma01", "urgent"),
        ),
        (xml_ma, samples::consultation_request(7, "ma01", "urgent")),
        (dest("emergency"), samples::transfer_request(7)),
        (dest("hr"), samples::handover(7, "320411", true, true)),
        (
            dest("aftercare-3204"),
            samples::handover(7, "320411", true, true),
        ),
        (dest("civil"), samples::handover(7, "320411", true, true)),
        (dest("rehab"), {
            let m = samples::material_submit(7);
            samples::reply_for(&m, "police").expect("reply")
        }),
    ];
    // The declared twins on the built-ins' destinations (same field policy, same documents).
    let twin = |id: &str, adapter: &str| {
        let mut d = dest(id);
        d.codec = config
            .adapters
            .get(adapter)
            .cloned()
            .expect("declared adapter");
        d.adapter = adapter.to_owned();
        d.id = format!("{id} declared");
        d
    };
    let mut cases = cases;
    cases.extend([
        (
            twin("police", "police-declared"),
            samples::material_submit(7),
        ),
        (
            twin("hr", "hr-declared"),
            samples::handover(7, "320411", true, true),
        ),
        (
            twin("civil", "civil-declared"),
            samples::handover(7, "320411", true, true),
        ),
        (
            dest("hospital-ma03"),
            samples::consultation_request(7, "ma03", "urgent"),
        ),
    ]);
    let mut group = c.benchmark_group("adapters");
    group.throughput(Throughput::Elements(1));
    for (d, value) in &cases {
        let env: Envelope = serde_json::from_value(value.clone()).expect("envelope");
        let bytes = serde_json::to_vec(&env).expect("json");
        let wire = render::for_destination(d, &env, Some(&bytes))
            .expect("encode")
            .body
            .into_owned();
        let adapter = &d.codec;
        let ct = d
            .content_type
            .clone()
            .unwrap_or_else(|| adapter.content_types()[0].to_owned());
        let label = format!(
            "{}/{} ({} B canonical, {} B wire)",
            d.id,
            env.message_type,
            bytes.len(),
            wire.len()
        );
        group.bench_function(format!("encode {label}"), |b| {
            b.iter(|| {
                render::for_destination(d, black_box(&env), Some(&bytes)).map(|e| e.body.len())
            })
        });
        let inbound = Inbound {
            source: "bench",
            content_type: Some(&ct),
            bytes: &wire,
        };
        adapter.decode(inbound).expect("decodes what it encodes");
        group.bench_function(format!("decode {label}"), |b| {
            b.iter(|| {
                adapter
                    .decode(black_box(inbound))
                    .map(|e| e.payload.is_object())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, adapters);
criterion_main!(benches);
