//! Fuzzing every decoder, proptest-driven and bounded: arbitrary bytes, and mutations
//! (flipped, inserted, deleted and repeated bytes, truncation) of valid documents of every
//! partner format. No input may panic; every outcome is a value or a typed error.
//!
//! Targets: each adapter's decode for each of its media types, the declared adapters of the
//! example config (codec and decode program, seeded with their golden documents), the safe XML
//! parser, the strict JSON reader and the whole ingress pipeline (`admit`) under the example
//! config.
//! `WINGSPAN_FUZZ_CASES` sets the cases per target (default 1,000, which keeps CI's run to
//! seconds); e.g. `WINGSPAN_FUZZ_CASES=200000 cargo test --release -p wingspan --test fuzz`
//! for a longer hunt.

mod support;

use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use wingspan_adapters::{Adapter, AdapterKind, Canonical, Inbound};
use wingspan_core::Envelope;
use wingspan_sim::samples;

fn cases() -> u32 {
    std::env::var("WINGSPAN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

/// Valid documents: every sample request and reply, encoded by every adapter that can, in
/// every media type it speaks.
fn seeds() -> &'static Vec<(AdapterKind, &'static str, Vec<u8>)> {
    static SEEDS: OnceLock<Vec<(AdapterKind, &'static str, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut canonical = vec![
            samples::material_submit(1),
            samples::consultation_request(2, "ma01", "urgent"),
            samples::transfer_request(3),
            samples::handover(4, "320411", true, true),
        ];
        let replies: Vec<_> = canonical
            .iter()
            .flat_map(|r| {
                ["police", "health", "emergency", "hr", "aftercare", "civil"]
                    .into_iter()
                    .filter_map(|s| samples::reply_for(r, s))
            })
            .collect();
        canonical.extend(replies);
        let mut out = Vec::new();
        for value in canonical {
            let Ok(envelope) = serde_json::from_value::<Envelope>(value) else {
                continue;
            };
            for kind in AdapterKind::ALL {
                let adapter = kind.adapter();
                for &ct in adapter.content_types() {
                    if let Ok(encoded) = adapter.encode(
                        Canonical {
                            envelope: &envelope,
                            bytes: None,
                        },
                        Some(ct),
                    ) {
                        out.push((kind, ct, encoded.body.into_owned()));
                    }
                }
            }
        }
        out
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Repeat(usize, usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![any::<u8>(), Just(b'<'), Just(b'{'), Just(b'"'), Just(b'&')],
                1..16
            )
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..64, 2usize..64).prop_map(|(i, n, k)| Mutation::Repeat(i, n, k)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(doc: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut d = doc.to_vec();
    for m in mutations {
        let len = d.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if !d.is_empty() {
                    d[i % len] ^= b | 1;
                }
            }
            Mutation::Insert(i, v) => {
                let at = i % (d.len() + 1);
                d.splice(at..at, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(d.len());
                if at < end {
                    d.drain(at..end);
                }
            }
            Mutation::Repeat(i, n, k) => {
                let at = i % len;
                let end = (at + n).min(d.len());
                if at < end {
                    let piece = d[at..end].to_vec();
                    for _ in 1..*k {
                        d.splice(end..end, piece.iter().copied());
                    }
                }
            }
            Mutation::Truncate(i) => d.truncate(i % len),
        }
    }
    d
}

/// Run `check` on mutated seeds and on arbitrary bytes.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, check: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..seeds.len(),
        prop::collection::vec(mutation(), 1..6),
        prop::collection::vec(any::<u8>(), 0..512),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(seed, mutations, noise, arbitrary)| {
            let input = if arbitrary {
                noise
            } else {
                apply(&seeds[seed], &mutations)
            };
            check(&input);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn every_adapter_decoder_survives_mutated_and_arbitrary_input() {
    for kind in AdapterKind::ALL {
        let adapter = kind.adapter();
        for &ct in adapter.content_types() {
            let docs: Vec<Vec<u8>> = seeds()
                .iter()
                .filter(|(k, c, _)| *k == kind && *c == ct)
                .map(|(_, _, d)| d.clone())
                .collect();
            if docs.is_empty() {
                continue;
            }
            fuzz(&format!("{} {ct}", adapter.name()), docs, |bytes| {
                let _ = adapter.decode(Inbound {
                    source: "fuzz",
                    content_type: Some(ct),
                    bytes,
                });
            });
        }
    }
}

#[test]
fn every_declared_adapter_survives_mutated_and_arbitrary_input() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/adapters");
    let declared = wingspan_adapters::declared::load_all(&dir)
        .unwrap_or_else(|p| panic!("declared adapters do not load: {p:?}"));
    assert!(declared.len() >= 4, "the example config declares adapters");
    for adapter in declared {
        // Every partner document of its golden cases, both directions.
        let mut seeds = Vec::new();
        for sub in ["encode", "decode"] {
            let Ok(entries) = std::fs::read_dir(adapter.dir().join("golden").join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().contains(".wire.") {
                    seeds.push(std::fs::read(e.path()).expect("golden document"));
                }
            }
        }
        let ct = adapter.content_types()[0];
        fuzz(&format!("{} (declared)", adapter.name()), seeds, |bytes| {
            let _ = adapter.decode(Inbound {
                source: "fuzz",
                content_type: Some(ct),
                bytes,
            });
        });
    }
}

#[test]
fn the_xml_parser_and_the_json_reader_survive_mutated_and_arbitrary_input() {
    let xml: Vec<Vec<u8>> = seeds()
        .iter()
        .filter(|(_, ct, _)| ct.ends_with("xml"))
        .map(|(_, _, d)| d.clone())
        .collect();
    fuzz("xml", xml, |bytes| {
        let _ = wingspan_adapters::xml::parse(bytes, &wingspan_adapters::xml::Limits::default());
    });
    let json: Vec<Vec<u8>> = seeds()
        .iter()
        .filter(|(_, ct, _)| ct.ends_with("json"))
        .map(|(_, _, d)| d.clone())
        .collect();
    fuzz("json", json, |bytes| {
        let _ =
            wingspan_core::json::parse_strict(bytes, wingspan_core::json::JsonLimits::default());
    });
}

#[test]
fn admit_survives_mutated_and_arbitrary_envelopes() {
    let loaded = wingspan::load::load(&support::repo().join("config")).expect("example config");
    let canonical: Vec<Vec<u8>> = seeds()
        .iter()
        .filter(|(k, _, _)| *k == AdapterKind::Rehab)
        .map(|(_, _, d)| d.clone())
        .collect();
    fuzz("admit", canonical, |bytes| {
        let _ = wingspan_core::admit(&loaded.config, bytes);
    });
}
