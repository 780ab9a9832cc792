//! The JSON partners (emergency, hr, aftercare, civil) against their golden files, both ways.
//!
//! - `golden/<partner>/encode/<case>.json`: what the adapter sends for a canonical message, and
//!   `<case>.decoded.json`: what reading it back gives (the round trip, minus what the partner
//!   never receives);
//! - `golden/<partner>/decode/<case>.wire.json`: documents as the partner writes them
//!   (hand-written fixtures), and `<case>.canonical.json`: the canonical message they become.
//!
//! `UPDATE_GOLDEN=1` rewrites the golden outputs (never the `.wire.json` inputs).

use std::path::PathBuf;

use serde_json::{Value, json};
use wingspan_adapters::json_partners::{AFTERCARE, CIVIL, EMERGENCY, HR, JsonPartner};
use wingspan_adapters::{Adapter, AdapterError, Canonical, Inbound};
use wingspan_core::Envelope;
use wingspan_sim::golden::{self, Kind};

fn envelope(message_type: &str, id: &str, correlation: Option<&str>, payload: Value) -> Envelope {
    Envelope {
        message_id: id.into(),
        message_type: message_type.into(),
        schema_version: "1.0".into(),
        source: "rehab".into(),
        sent_at: "2026-11-29T10:00:00+08:00".into(),
        correlation_id: correlation.map(str::to_owned),
        payload,
    }
}

fn person() -> Value {
    json!({"person_id": "320411199000000117", "name": "Li Wenjing", "birth_date": "1990-03-14", "gender": "female"})
}

fn centre() -> Value {
    json!({"id": "centre-03", "name": "Provincial Compulsory Isolation Rehabilitation Centre No. 3",
           "alliance": "ma01", "division_code": "320400"})
}

/// A full handover, clinical fields included: the encoders must drop them.
fn handover(employment: bool, allowance: bool) -> Envelope {
    envelope(
        "referral.handover",
        "referral-5d1e07",
        None,
        json!({
            "referral_id": "ref-2026-0117",
            "person": person(),
            "centre": centre(),
            "release_date": "2026-12-01",
            "residence": {"division_code": "320411", "address": "7 Sample Lane, Xinbei District"},
            "supervision_type": "aftercare",
            "supervision_months": 36,
            "employment_needed": employment,
            "subsistence_eligible": allowance,
            "skills": ["forklift licence", "basic welding"],
            "contact_phone": "+86 519 8888 0117",
            "substance_history": [{"substance": "methamphetamine", "since": "2019-05-01"}],
            "clinical_summary": "Hepatitis C, treated; stable."
        }),
    )
}

fn acknowledged(unit: (&str, &str), accepted: bool) -> Envelope {
    let mut p = json!({
        "referral_id": "ref-2026-0117",
        "receiving_unit": {"id": unit.0, "name": unit.1},
        "accepted": accepted,
        "case_officer": "Sun Haoran",
        "acknowledged_at": "2026-12-01T09:30:00+08:00"
    });
    if !accepted {
        p["reason"] = json!("The registered residence is outside our district.");
    }
    envelope(
        "referral.acknowledged",
        "ack-5d1e07",
        Some("referral-5d1e07"),
        p,
    )
}

fn outcome(unit: (&str, &str), code: &str, details: &str) -> Envelope {
    envelope(
        "referral.outcome",
        "outcome-5d1e07",
        Some("referral-5d1e07"),
        json!({
            "referral_id": "ref-2026-0117",
            "receiving_unit": {"id": unit.0, "name": unit.1},
            "outcome": code,
            "details": details,
            "effective_date": "2026-12-15"
        }),
    )
}

fn encode_cases(partner: &str) -> Vec<(&'static str, Envelope)> {
    match partner {
        "emergency" => vec![
            (
                "transfer-request",
                envelope(
                    "emergency.transfer.request",
                    "emergency-8a41c2",
                    None,
                    json!({
                        "transfer_id": "tr-2026-0042",
                        "consultation_id": "cons-2026-0311",
                        "centre": centre(),
                        "person": person(),
                        "pickup": {"address": "18 Example Road, Wujin District (north gate)", "division_code": "320412"},
                        "condition": "Suspected acute cardiac event; conscious, chest pain for 20 minutes.",
                        "requested_at": "2026-11-29T09:58:00+08:00"
                    }),
                ),
            ),
            (
                "transfer-request-minimal",
                envelope(
                    "emergency.transfer.request",
                    "emergency-8a41c3",
                    None,
                    json!({
                        "transfer_id": "tr-2026-0043",
                        "centre": {"id": "centre-03", "name": "Provincial Compulsory Isolation Rehabilitation Centre No. 3"},
                        "person": {"person_id": "320411199000000125", "name": "Wu Jianguo"},
                        "pickup": {"address": "18 Example Road, Wujin District", "division_code": "320412"},
                        "condition": "Unresponsive after a fall."
                    }),
                ),
            ),
            (
                // An emergency consultation, alerted to 120: the clinical fields are not sent.
                "consultation-alert",
                envelope(
                    "telemedicine.consultation.request",
                    "telemedicine-2c77f0",
                    None,
                    json!({
                        "consultation_id": "cons-2026-0311",
                        "urgency": "emergency",
                        "centre": centre(),
                        "person": person(),
                        "specialty": "cardiology",
                        "reason": "Chest pain radiating to the left arm; sweating.",
                        "clinical_summary": "Week 6 of admission; vitals were stable until this morning.",
                        "substance_history": [{"substance": "methamphetamine", "since": "2019-05-01"}],
                        "medications": ["mirtazapine 15 mg"],
                        "requested_at": "2026-11-29T09:57:00+08:00"
                    }),
                ),
            ),
            (
                "transfer-acknowledged",
                envelope(
                    "emergency.transfer.acknowledged",
                    "120-cz-ack-0042",
                    Some("emergency-8a41c2"),
                    json!({"transfer_id": "tr-2026-0042", "dispatch_id": "120-CZ-20261129-0088", "status": "dispatched",
                           "eta_minutes": 12, "acknowledged_at": "2026-11-29T10:00:30+08:00"}),
                ),
            ),
        ],
        "hr" => vec![
            ("placement-referral", handover(true, true)),
            (
                "placement-acknowledged",
                acknowledged(("hr-3204-wj", "Wujin District Employment Office"), true),
            ),
            (
                "placement-outcome",
                outcome(
                    ("hr-3204-wj", "Wujin District Employment Office"),
                    "placed",
                    "Placed with a logistics company as a forklift operator.",
                ),
            ),
        ],
        "aftercare" => vec![
            ("handover-record", handover(false, false)),
            (
                "handover-receipt-refused",
                acknowledged(("ac-320411", "Xinbei District Aftercare Station"), false),
            ),
            (
                "supervision-outcome",
                outcome(
                    ("ac-320411", "Xinbei District Aftercare Station"),
                    "supervision_started",
                    "First meeting held; monthly reporting agreed.",
                ),
            ),
        ],
        "civil" => vec![
            ("allowance-referral", handover(false, true)),
            (
                "allowance-acknowledged",
                acknowledged(("ca-320411", "Xinbei District Civil Affairs Office"), true),
            ),
            (
                "allowance-decision",
                outcome(
                    ("ca-320411", "Xinbei District Civil Affairs Office"),
                    "allowance_denied",
                    "Household income above the local threshold.",
                ),
            ),
        ],
        other => panic!("no cases for {other}"),
    }
}

const PARTNERS: [&JsonPartner; 4] = [&EMERGENCY, &HR, &AFTERCARE, &CIVIL];

fn encode(p: &JsonPartner, env: &Envelope) -> Result<Vec<u8>, AdapterError> {
    p.encode(
        Canonical {
            envelope: env,
            bytes: None,
        },
        None,
    )
    .map(|e| {
        assert_eq!(e.content_type, "application/json");
        e.body.into_owned()
    })
}

fn decode(p: &JsonPartner, bytes: &[u8]) -> Result<Envelope, AdapterError> {
    p.decode(Inbound {
        source: p.name,
        content_type: Some("application/json"),
        bytes,
    })
}

fn pretty<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).expect("json");
    out.push(b'\n');
    out
}

/// The partner's document for the message type, and what it never receives.
fn dropped(p: &JsonPartner, message_type: &str) -> &'static [&'static str] {
    p.documents
        .iter()
        .find(|d| d.message_type == message_type)
        .map_or(&[], |d| d.dropped)
}

fn without(mut env: Envelope, source: &str, paths: &[&str]) -> Envelope {
    env.source = source.to_owned();
    for path in paths {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().expect("path");
        let mut at = &mut env.payload;
        for part in parts {
            at = &mut at[part];
        }
        if let Some(o) = at.as_object_mut() {
            o.remove(last);
        }
    }
    env
}

#[test]
fn canonical_in_partner_json_out() {
    for p in PARTNERS {
        for (case, env) in encode_cases(p.name) {
            let what = format!("{}/{case}", p.name);
            golden::assert_canonical(&env, &what);
            let wire = encode(p, &env).unwrap_or_else(|e| panic!("{what}: {e}"));
            let text = String::from_utf8(wire.clone()).expect("utf-8");
            for never in [
                "methamphetamine",
                "Hepatitis",
                "mirtazapine",
                "Week 6",
                "\"ma01\"",
            ] {
                assert!(!text.contains(never), "{what} sent {never}");
            }
            let value: Value = serde_json::from_slice(&wire).expect("json");
            golden::check(
                &format!("{}/encode/{case}.json", p.name),
                &pretty(&value),
                Kind::Json,
            );
            let back = decode(p, &wire).unwrap_or_else(|e| panic!("{what}: {e}"));
            golden::assert_canonical(&back, &what);
            assert_eq!(
                back,
                without(env.clone(), p.name, dropped(p, &env.message_type)),
                "{what}: round trip"
            );
            golden::check(
                &format!("{}/encode/{case}.decoded.json", p.name),
                &pretty(&back),
                Kind::Json,
            );
        }
    }
}

fn wire_fixtures(partner: &str) -> Vec<(String, PathBuf)> {
    let dir = golden::path(&format!("{partner}/decode"));
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let case = file.strip_suffix(".wire.json")?.to_owned();
            Some((case, e.path()))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn partner_json_in_canonical_out() {
    for p in PARTNERS {
        let fixtures = wire_fixtures(p.name);
        assert!(fixtures.len() >= 2, "{}: decode fixtures missing", p.name);
        for (case, path) in fixtures {
            let what = format!("{}/{case}", p.name);
            let bytes = std::fs::read(&path).expect("fixture");
            let env = decode(p, &bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(env.source, p.name);
            golden::assert_canonical(&env, &what);
            golden::check(
                &format!("{}/decode/{case}.canonical.json", p.name),
                &pretty(&env),
                Kind::Json,
            );
        }
    }
}
