//! The health adapter (HL7 FHIR R4) against golden files, the canonical schemas and random
//! messages: canonical → FHIR JSON/XML, hospitals' FHIR → canonical, and
//! decode(encode(x)) == x for generated requests and results in both representations.
//!
//! `UPDATE_GOLDEN=1 cargo test -p wingspan-sim --test golden_health` rewrites the golden files.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wingspan_adapters::health::{FHIR_JSON, FHIR_XML, Health};
use wingspan_adapters::{Adapter, AdapterError, Canonical, Inbound};
use wingspan_core::Envelope;
use wingspan_sim::golden::{self, Kind};

const REQUEST: &str = "telemedicine.consultation.request";
const RESULT: &str = "telemedicine.consultation.result";

fn encode(env: &Envelope, content_type: &str) -> Result<Vec<u8>, AdapterError> {
    Health
        .encode(
            Canonical {
                envelope: env,
                bytes: None,
            },
            Some(content_type),
        )
        .map(|e| e.body.into_owned())
}

fn decode(
    bytes: &[u8],
    content_type: Option<&str>,
    source: &str,
) -> Result<Envelope, AdapterError> {
    Health.decode(Inbound {
        source,
        content_type,
        bytes,
    })
}

/// Re-indent compact JSON without reordering its members (FHIR order stays readable).
fn pretty(compact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(compact.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 2));
    };
    let mut bytes = compact.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                if matches!(bytes.peek(), Some(b'}' | b']')) {
                    continue;
                }
                depth += 1;
                newline(&mut out, depth);
            }
            b'}' | b']' => {
                if !matches!(out.last(), Some(b'{' | b'[')) {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
    }
    out.push(b'\n');
    out
}

fn canonical_request() -> Envelope {
    Envelope {
        message_id: "telemedicine-5b1f0c9e-3d2a-4c61-9f0e-1a2b3c4d5e6f".into(),
        message_type: REQUEST.into(),
        schema_version: "1.0".into(),
        source: "rehab".into(),
        sent_at: "2026-03-02T08:15:00+08:00".into(),
        correlation_id: None,
        payload: json!({
            "consultation_id": "cons-2026-0042",
            "urgency": "urgent",
            "centre": {
                "id": "centre-03",
                "name": "江苏省第三强制隔离戒毒所",
                "alliance": "ma01",
                "division_code": "320411"
            },
            "person": {
                "person_id": "32041119850312001X",
                "name": "王小明",
                "birth_date": "1985-03-12",
                "gender": "male"
            },
            "specialty": "addiction psychiatry",
            "reason": "Persistent insomnia and withdrawal symptoms in week 6 of admission.",
            "clinical_summary": "Admitted 2026-01-19. Sleeps 3-4 h a night since week 2.\nVitals stable; BP 128/82, HR 88. No self-harm ideation reported.",
            "substance_history": [
                {"substance": "methamphetamine", "since": "2019-05-01"},
                {"substance": "ketamine"}
            ],
            "medications": ["zopiclone 7.5 mg at night"],
            "requested_at": "2026-03-02T08:10:00+08:00"
        }),
    }
}

fn canonical_result() -> Envelope {
    Envelope {
        message_id: "health-3e2d1c0b-9a8f-4e7d-b6c5-a4b3c2d1e0f9".into(),
        message_type: RESULT.into(),
        schema_version: "1.0".into(),
        source: "health".into(),
        sent_at: "2026-03-03T10:31:12+08:00".into(),
        correlation_id: Some("telemedicine-5b1f0c9e-3d2a-4c61-9f0e-1a2b3c4d5e6f".into()),
        payload: json!({
            "consultation_id": "cons-2026-0042",
            "hospital": {"id": "hosp-czsy", "name": "常州市第二人民医院"},
            "status": "completed",
            "findings": "Sleep disturbance secondary to stimulant withdrawal. No psychotic features.",
            "diagnoses": [
                {"system": "http://hl7.org/fhir/sid/icd-10", "code": "F15.3", "display": "Stimulant withdrawal state"},
                {"system": "http://hl7.org/fhir/sid/icd-10", "code": "G47.0"}
            ],
            "recommendations": [
                "Zopiclone 3.75 mg at night for two weeks, then stop.",
                "Telemedicine follow-up in two weeks."
            ],
            "completed_at": "2026-03-03T10:30:00+08:00"
        }),
    }
}

#[test]
fn canonical_to_fhir_goldens() {
    for (name, env) in [
        ("request", canonical_request()),
        ("result", canonical_result()),
    ] {
        golden::assert_canonical(&env, "decoded");
        let json = encode(&env, FHIR_JSON).expect("encode json");
        golden::check(
            &format!("health/{name}.fhir.json"),
            &pretty(&json),
            Kind::Json,
        );
        let xml = encode(&env, FHIR_XML).expect("encode xml");
        golden::check(&format!("health/{name}.fhir.xml"), &xml, Kind::Xml);
        // What the goldens hold decodes back to the canonical message.
        for (bytes, ct) in [(&json, FHIR_JSON), (&xml, FHIR_XML)] {
            assert_eq!(
                decode(bytes, Some(ct), &env.source).expect("decode"),
                env,
                "{name} {ct}"
            );
        }
    }
}

#[test]
fn hospital_fhir_to_canonical_goldens() {
    for (name, ct) in [
        ("report-message.fhir.xml", FHIR_XML),
        ("task-update.fhir.json", FHIR_JSON),
        ("report.fhir.json", FHIR_JSON),
    ] {
        let path = golden::path(&format!("health/inbound/{name}"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let env = decode(&bytes, Some(ct), "health").unwrap_or_else(|e| panic!("{name}: {e}"));
        golden::assert_canonical(&env, "decoded");
        let stem = name.split('.').next().unwrap_or(name);
        let out = serde_json::to_vec_pretty(&env).expect("json");
        golden::check(
            &format!("health/inbound/{stem}.canonical.json"),
            &out,
            Kind::Json,
        );
        // The same message sniffed, without a content type.
        assert_eq!(decode(&bytes, None, "health").expect("sniffed"), env);
    }
}

// ---------------------------------------------------------------------------------------
// Generated messages

/// Text as people type it: CJK, XML and JSON specials, tabs and line breaks; never blank.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(
        r#"[A-Za-z王小明常州医院戒毒所][A-Za-z0-9 王小明常州医院<>&"'\\/.;:,()\n\t\r-]{{0,{max}}}"#
    ))
    .expect("regex")
}

fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._:-]{0,40}"
}

fn date() -> impl Strategy<Value = String> {
    "(19[5-9][0-9]|20[0-2][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
}

fn date_time() -> impl Strategy<Value = String> {
    (
        date(),
        "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])",
    )
        .prop_map(|(d, t)| format!("{d}T{t}"))
}

fn put(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.into(), v);
    }
}

fn request_payload() -> impl Strategy<Value = Value> {
    let centre = (
        id(),
        text(60),
        proptest::option::of(id()),
        proptest::option::of("[0-9]{6}"),
    )
        .prop_map(|(id, name, alliance, division)| {
            let mut m = Map::new();
            put(&mut m, "id", Some(json!(id)));
            put(&mut m, "name", Some(json!(name)));
            put(&mut m, "alliance", alliance.map(Value::from));
            put(&mut m, "division_code", division.map(Value::from));
            Value::Object(m)
        });
    let person = (
        "[0-9]{17}[0-9X]",
        text(30),
        proptest::option::of(date()),
        proptest::option::of(prop_oneof!["male", "female", "unknown"]),
    )
        .prop_map(|(pid, name, birth, gender)| {
            let mut m = Map::new();
            put(&mut m, "person_id", Some(json!(pid)));
            put(&mut m, "name", Some(json!(name)));
            put(&mut m, "birth_date", birth.map(Value::from));
            put(&mut m, "gender", gender.map(Value::from));
            Value::Object(m)
        });
    let substance = (text(30), proptest::option::of(date())).prop_map(|(s, since)| {
        let mut m = Map::new();
        put(&mut m, "substance", Some(json!(s)));
        put(&mut m, "since", since.map(Value::from));
        Value::Object(m)
    });
    (
        (
            id(),
            prop_oneof!["routine", "urgent", "emergency"],
            centre,
            person,
        ),
        (text(40), text(200), proptest::option::of(text(300))),
        (
            proptest::option::of(proptest::collection::vec(substance, 0..4)),
            proptest::option::of(proptest::collection::vec(text(50), 0..4)),
            proptest::option::of(date_time()),
        ),
    )
        .prop_map(
            |((cid, urgency, centre, person), (specialty, reason, summary), (subst, meds, at))| {
                let mut m = Map::new();
                put(&mut m, "consultation_id", Some(json!(cid)));
                put(&mut m, "urgency", Some(json!(urgency)));
                put(&mut m, "centre", Some(centre));
                put(&mut m, "person", Some(person));
                put(&mut m, "specialty", Some(json!(specialty)));
                put(&mut m, "reason", Some(json!(reason)));
                put(&mut m, "clinical_summary", summary.map(Value::from));
                put(&mut m, "substance_history", subst.map(Value::from));
                put(&mut m, "medications", meds.map(Value::from));
                put(&mut m, "requested_at", at.map(Value::from));
                Value::Object(m)
            },
        )
}

fn result_payload() -> impl Strategy<Value = Value> {
    let diagnosis = (
        proptest::option::of(prop_oneof![
            Just("http://hl7.org/fhir/sid/icd-10".to_owned()),
            Just("http://snomed.info/sct".to_owned()),
            text(30)
        ]),
        "[A-Z0-9][A-Z0-9.]{0,7}",
        proptest::option::of(text(40)),
    )
        .prop_map(|(system, code, display)| {
            let mut m = Map::new();
            put(&mut m, "system", system.map(Value::from));
            put(&mut m, "code", Some(json!(code)));
            put(&mut m, "display", display.map(Value::from));
            Value::Object(m)
        });
    (
        (
            id(),
            id(),
            text(60),
            prop_oneof!["completed", "declined", "referred"],
        ),
        (
            proptest::option::of(text(300)),
            proptest::option::of(proptest::collection::vec(diagnosis, 0..4)),
            proptest::option::of(proptest::collection::vec(text(80), 0..4)),
            date_time(),
        ),
    )
        .prop_map(
            |((cid, hid, hname, status), (findings, diagnoses, recommendations, at))| {
                let mut m = Map::new();
                put(&mut m, "consultation_id", Some(json!(cid)));
                put(&mut m, "hospital", Some(json!({"id": hid, "name": hname})));
                put(&mut m, "status", Some(json!(status)));
                put(&mut m, "findings", findings.map(Value::from));
                put(&mut m, "diagnoses", diagnoses.map(Value::from));
                put(&mut m, "recommendations", recommendations.map(Value::from));
                put(&mut m, "completed_at", Some(json!(at)));
                Value::Object(m)
            },
        )
}

fn envelope(
    message_type: &'static str,
    payload: impl Strategy<Value = Value>,
) -> impl Strategy<Value = Envelope> {
    (
        id(),
        "[1-3]\\.[0-9]{1,2}",
        prop_oneof!["rehab", "health", "hospital-ma01"],
        date_time(),
        proptest::option::of(id()),
        payload,
    )
        .prop_map(
            move |(message_id, version, source, sent_at, correlation_id, payload)| Envelope {
                message_id,
                message_type: message_type.to_owned(),
                schema_version: version,
                source: source.to_owned(),
                sent_at,
                correlation_id,
                payload,
            },
        )
}

fn message() -> impl Strategy<Value = Envelope> {
    prop_oneof![
        envelope(REQUEST, request_payload()),
        envelope(RESULT, result_payload())
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_of_encode_is_identity(env in message()) {
        golden::assert_canonical(&env, "decoded");
        for ct in [FHIR_JSON, FHIR_XML] {
            let bytes = encode(&env, ct).expect("encode");
            let back = decode(&bytes, Some(ct), &env.source).expect("decode");
            prop_assert_eq!(&back, &env, "{}", String::from_utf8_lossy(&bytes));
        }
    }
}
