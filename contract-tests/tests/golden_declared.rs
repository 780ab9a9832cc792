//! Declared adapters (config/adapters/) against the built-in adapters they re-express, on the
//! built-ins' golden files: byte-identical documents out, the same envelopes in; and every
//! declared adapter's own golden cases and round trips (what `wingspan adapter test` runs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wingspan_adapters::declared::{self, Declared, golden};
use wingspan_adapters::{Adapter, AdapterKind, Canonical, Inbound};
use wingspan_core::Envelope;
use wingspan_sim::golden as contract;

fn adapters_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/adapters")
}

fn load(name: &str) -> Arc<Declared> {
    declared::load_all(&adapters_dir())
        .unwrap_or_else(|p| panic!("declared adapters do not load: {p:?}"))
        .into_iter()
        .find(|a| a.name() == name)
        .unwrap_or_else(|| panic!("no declared adapter {name}"))
}

fn encode(a: &dyn Adapter, env: &Envelope) -> Vec<u8> {
    a.encode(
        Canonical {
            envelope: env,
            bytes: None,
        },
        None,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", a.name()))
    .body
    .into_owned()
}

fn decode(a: &dyn Adapter, bytes: &[u8]) -> Envelope {
    a.decode(Inbound {
        source: "partner",
        content_type: None,
        bytes,
    })
    .unwrap_or_else(|e| panic!("{}: {e}", a.name()))
}

/// Every re-expressed partner: the built-in, its declared twin, the golden directory, the
/// extension of its wire files.
const TWINS: [(AdapterKind, &str, &str, &str); 2] = [
    (AdapterKind::Hr, "hr-declared", "hr", "json"),
    (AdapterKind::Civil, "civil-declared", "civil", "json"),
];

#[test]
fn declared_twins_write_the_same_bytes_and_read_the_same_envelopes() {
    for (builtin, name, dir, ext) in TWINS {
        let declared = load(name);
        let encode_dir = contract::path(&format!("{dir}/encode"));
        let cases = golden::cases(&encode_dir, ".decoded.json");
        assert!(cases.len() >= 3, "{dir}: encode cases missing");
        for (case, path) in cases {
            let env: Envelope =
                serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("envelope");
            let ours = encode(declared.as_ref(), &env);
            let theirs = encode(&builtin, &env);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{name}/{case}: not byte-identical"
            );
            // And both are what the golden file holds.
            let golden = std::fs::read(encode_dir.join(format!("{case}.{ext}"))).expect("golden");
            let kind = contract::Kind::of(ext);
            assert_eq!(
                contract::canonical(&ours, kind),
                contract::canonical(&golden, kind),
                "{name}/{case}: golden"
            );
        }
        let decode_dir = contract::path(&format!("{dir}/decode"));
        let fixtures = golden::cases(&decode_dir, &format!(".wire.{ext}"));
        assert!(fixtures.len() >= 2, "{dir}: decode fixtures missing");
        for (case, path) in fixtures {
            let bytes = std::fs::read(&path).expect("fixture");
            assert_eq!(
                decode(declared.as_ref(), &bytes),
                decode(&builtin, &bytes),
                "{name}/{case}: a different envelope"
            );
        }
    }
}

#[test]
fn every_declared_adapter_passes_its_golden_cases_and_round_trips() {
    let all = declared::load_all(&adapters_dir()).expect("load");
    assert!(all.len() >= 2, "the example config declares adapters");
    for a in all {
        let outcomes = golden::run(&a);
        assert!(
            outcomes.iter().any(|o| o.name.starts_with("encode/"))
                && outcomes.iter().any(|o| o.name.starts_with("decode/"))
                && outcomes.iter().any(|o| o.name.starts_with("round-trip/")),
            "{}: golden cases in both directions and round trips",
            a.name()
        );
        for o in outcomes {
            assert!(
                o.failure.is_none(),
                "{}: {}\n{}",
                a.name(),
                o.name,
                o.failure.unwrap_or_default()
            );
        }
    }
}

#[test]
fn a_broken_golden_case_fails_with_a_diff() {
    let tmp = std::env::temp_dir().join(format!("wingspan-golden-{}", std::process::id()));
    let dir = tmp.join("hr-declared");
    let src = adapters_dir().join("hr-declared");
    std::fs::create_dir_all(dir.join("golden/encode")).expect("mkdir");
    for f in ["adapter.toml", "decode.vrl", "encode.vrl"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy");
    }
    let case = "golden/encode/placement-outcome";
    std::fs::copy(
        src.join(format!("{case}.canonical.json")),
        dir.join(format!("{case}.canonical.json")),
    )
    .expect("copy");
    let wire = std::fs::read_to_string(src.join(format!("{case}.wire.json"))).expect("read");
    std::fs::write(
        dir.join(format!("{case}.wire.json")),
        wire.replace("PLACED", "NOT_PLACED"),
    )
    .expect("write");
    let a = Declared::load(&dir).expect("loads");
    let outcomes = golden::run(&a);
    let failed: Vec<_> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    assert_eq!(failed.len(), 1, "{outcomes:?}");
    let why = failed[0].failure.as_deref().unwrap_or_default();
    assert!(
        why.contains("- ") && why.contains("NOT_PLACED") && why.contains("+ "),
        "{why}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
