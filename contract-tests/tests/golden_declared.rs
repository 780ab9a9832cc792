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
const TWINS: [(AdapterKind, &str, &str, &str); 3] = [
    (AdapterKind::Hr, "hr-declared", "hr", "json"),
    (AdapterKind::Civil, "civil-declared", "civil", "json"),
    (AdapterKind::Police, "police-declared", "police", "xml"),
];

/// The outcome of one side of a differential case: the bytes or envelope, or the refusal's kind.
fn outcome<T: std::fmt::Debug>(r: Result<T, wingspan_adapters::AdapterError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("refused ({})", e.slug()),
    }
}

/// Beyond the golden files: the police twin and the built-in agree on edge cases and hostile
/// documents, each accepted the same way or refused with the same kind of problem.
#[test]
fn the_police_twin_agrees_with_the_builtin_on_edge_cases() {
    let declared = load("police-declared");
    let builtin = AdapterKind::Police;
    let base = std::fs::read_to_string(contract::path(
        "police/decode/decision-rejected-prefixed.wire.xml",
    ))
    .expect("fixture");
    let swaps: &[(&str, &str)] = &[
        ("", ""),
        (
            "<ps:Decision>Rejected</ps:Decision>",
            "<ps:Decision>Maybe</ps:Decision>",
        ),
        (
            "<ps:Decision>Rejected</ps:Decision>",
            "<ps:Decision> Rejected </ps:Decision>",
        ),
        (
            "<ps:MaterialId>mat-2026-0117</ps:MaterialId>",
            "<ps:MaterialId>  </ps:MaterialId>",
        ),
        ("<ps:MaterialId>mat-2026-0117</ps:MaterialId>", ""),
        ("<ps:Bureau>", "<ps:Surprise>x</ps:Surprise><ps:Bureau>"),
        (
            "<ps:BureauId>psb-3204</ps:BureauId>",
            "<ps:BureauId>psb-3204</ps:BureauId><ps:Rank>3</ps:Rank>",
        ),
        ("<ps:InReplyTo>enforcement-3f2c9a</ps:InReplyTo>", ""),
        (
            "<ps:InReplyTo>enforcement-3f2c9a</ps:InReplyTo>",
            "<ps:InReplyTo></ps:InReplyTo>",
        ),
        ("<ps:Reasons>", "<ps:Reasons><cz:Note>extension</cz:Note>"),
        (
            "<ps:Reason>The annex is unsigned.</ps:Reason>",
            "<ps:Reason>  The annex is unsigned.\n</ps:Reason>",
        ),
        (
            "<ps:Reason>The annex is unsigned.</ps:Reason>",
            "<ps:Reason></ps:Reason>",
        ),
        (
            "<ps:Reason>The annex is unsigned.</ps:Reason>",
            "<ps:Reason><ps:B>x</ps:B></ps:Reason>",
        ),
        (
            "<ps:DocumentType>enforcement.material.decision</ps:DocumentType>",
            "<ps:DocumentType>enforcement.material.submit</ps:DocumentType>",
        ),
        (
            "<ps:Header>",
            "<ps:Header><ps:DocumentId>again</ps:DocumentId>",
        ),
        (
            "<ps:MaterialDecision>",
            "<ps:MaterialSubmission/><ps:MaterialDecision>",
        ),
        ("ps:ExchangeDocument xmlns:ps", "ps:ExchangeDoc xmlns:ps"),
        (
            "<!-- Written",
            "<!DOCTYPE x [<!ENTITY e \"e\">]><!-- Written",
        ),
        ("</ps:ExchangeDocument>", ""),
    ];
    for (from, to) in swaps {
        let mut doc = base.replacen(from, to, 1);
        if from.starts_with("ps:ExchangeDocument") {
            doc = doc.replace("</ps:ExchangeDocument>", "</ps:ExchangeDoc>");
        }
        let inbound = |a: &dyn Adapter| {
            outcome(a.decode(Inbound {
                source: "partner",
                content_type: None,
                bytes: doc.as_bytes(),
            }))
        };
        assert_eq!(
            inbound(declared.as_ref()),
            inbound(&builtin),
            "decode, {from:?} → {to:?}"
        );
    }
    // An empty list keeps its wrapper and reads back empty.
    let rejected: Envelope = serde_json::from_slice(
        &std::fs::read(contract::path(
            "police/encode/decision-rejected.decoded.json",
        ))
        .expect("read"),
    )
    .expect("envelope");
    let submission: Envelope = serde_json::from_slice(
        &std::fs::read(contract::path(
            "police/encode/submission-release-notice.decoded.json",
        ))
        .expect("read"),
    )
    .expect("envelope");
    let edits: Vec<(&Envelope, &str, serde_json::Value)> = vec![
        (&rejected, "/payload/reasons", serde_json::json!([])),
        (
            &rejected,
            "/payload/requested_materials",
            serde_json::json!(["One", "Two <&>"]),
        ),
        (&rejected, "/payload/decision", serde_json::json!("maybe")),
        (
            &rejected,
            "/payload/decided_at",
            serde_json::json!("2026-11-30 15:19"),
        ),
        (
            &rejected,
            "/payload/decided_at",
            serde_json::json!("2026-11-30T15:19:00.125Z"),
        ),
        (
            &submission,
            "/payload/summary",
            serde_json::json!("line 1\r\nline 2\t中文"),
        ),
        (
            &submission,
            "/payload/summary",
            serde_json::json!("bell \u{7}"),
        ),
        (
            &submission,
            "/payload/respond_by",
            serde_json::json!("tomorrow"),
        ),
        (
            &submission,
            "/payload/medical_justification",
            serde_json::json!("clinical words"),
        ),
        (
            &submission,
            "/payload/material_type",
            serde_json::json!("outside_medical_treatment"),
        ),
        (&submission, "/payload/documents", serde_json::json!([])),
        (
            &submission,
            "/payload/centre/alliance",
            serde_json::json!("ma01"),
        ),
        (
            &submission,
            "/payload/person/gender",
            serde_json::json!("other"),
        ),
        (
            &submission,
            "/payload/person/birth_date",
            serde_json::Value::Null,
        ),
    ];
    let mut with_justification = submission.clone();
    with_justification.payload["material_type"] = serde_json::json!("outside_medical_treatment");
    with_justification.payload["medical_justification"] = serde_json::json!("clinical words");
    let mut cases: Vec<Envelope> = vec![with_justification];
    for (env, pointer, value) in edits {
        let mut env = env.clone();
        let (parent, key) = pointer.rsplit_once('/').expect("pointer");
        let map = env
            .payload
            .pointer_mut(parent.trim_start_matches("/payload"))
            .and_then(serde_json::Value::as_object_mut)
            .expect("parent");
        if value.is_null() {
            map.remove(key);
        } else {
            map.insert(key.to_owned(), value);
        }
        cases.push(env);
    }
    for env in &cases {
        let outbound = |a: &dyn Adapter| {
            outcome(
                a.encode(
                    Canonical {
                        envelope: env,
                        bytes: None,
                    },
                    None,
                )
                .map(|e| String::from_utf8_lossy(&e.body).into_owned()),
            )
        };
        assert_eq!(
            outbound(declared.as_ref()),
            outbound(&builtin),
            "encode {:?}",
            env.payload
        );
    }
}

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
