//! The pure core's speed: decode (bytes → JSON → envelope) + validate (envelope and payload
//! schemas) + route, per message, on one core. Goal: ≥ 100,000 messages/s.
//! `cargo bench -p wingspan --bench core`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn pipeline(c: &mut Criterion) {
    let config_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config");
    let loaded = wingspan::load::load(&config_dir).expect("example config");
    let config = loaded.config;
    let messages: Vec<(&str, Vec<u8>)> = vec![
        (
            "material",
            serde_json::to_vec(&wingspan_sim::samples::material_submit(7)).expect("json"),
        ),
        (
            "consultation",
            serde_json::to_vec(&wingspan_sim::samples::consultation_request(
                7,
                "ma01",
                "emergency",
            ))
            .expect("json"),
        ),
        (
            "handover",
            serde_json::to_vec(&wingspan_sim::samples::handover(7, "320411", true, true))
                .expect("json"),
        ),
    ];
    let mut group = c.benchmark_group("admit");
    group.throughput(Throughput::Elements(1));
    for (name, bytes) in &messages {
        assert!(wingspan_core::admit(&config, bytes).is_ok());
        group.bench_function(*name, |b| {
            b.iter(|| wingspan_core::admit(&config, black_box(bytes)).map(|a| a.destinations.len()))
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
