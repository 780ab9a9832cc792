//! Realistic canonical messages. Every name and identifier is invented.

use serde_json::{Value, json};

const NAMES: [&str; 8] = [
    "Zhao Minghui",
    "Qian Lixin",
    "Sun Haoran",
    "Li Wenjing",
    "Zhou Yutong",
    "Wu Jianguo",
    "Zheng Xiaomei",
    "Wang Dapeng",
];

pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "2026-01-01T00:00:00Z".into())
}

fn today() -> String {
    now()[..10].to_owned()
}

/// A made-up 18-character resident-ID-shaped identifier.
pub fn person_id(i: u64) -> String {
    format!("3204111990{:07}X", i % 10_000_000)
}

fn person(i: u64) -> Value {
    json!({"person_id": person_id(i), "name": NAMES[(i % 8) as usize], "birth_date": "1990-03-14", "gender": if i.is_multiple_of(2) { "male" } else { "female" }})
}

fn centre(alliance: &str) -> Value {
    json!({"id": "centre-03", "name": "Provincial Compulsory Isolation Rehabilitation Centre No. 3", "alliance": alliance, "division_code": "320400"})
}

pub fn envelope(
    message_type: &str,
    source: &str,
    payload: Value,
    correlation_id: Option<&str>,
) -> Value {
    let mut e = json!({
        "message_id": format!("{}-{}", message_type.split('.').next().unwrap_or("msg"), uuid::Uuid::new_v4()),
        "message_type": message_type,
        "schema_version": "1.0",
        "source": source,
        "sent_at": now(),
        "payload": payload,
    });
    if let Some(c) = correlation_id {
        e["correlation_id"] = json!(c);
    }
    e
}

pub fn material_submit(i: u64) -> Value {
    let kinds = [
        "admission_receipt",
        "release_notice",
        "term_extension_request",
        "early_release_request",
    ];
    envelope(
        "enforcement.material.submit",
        "rehab",
        json!({
            "material_id": format!("mat-{i}"),
            "material_type": kinds[(i % 4) as usize],
            "centre": centre("ma01"),
            "person": person(i),
            "police_bureau": {"division_code": "320400", "name": "Changzhou Public Security Bureau"},
            "summary": "Material for online circulation and approval.",
            "documents": [{"uri": format!("https://docs.rehab.example/materials/{i}.pdf"), "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "title": "Signed notice"}],
        }),
        None,
    )
}

pub fn consultation_request(i: u64, alliance: &str, urgency: &str) -> Value {
    envelope(
        "telemedicine.consultation.request",
        "rehab",
        json!({
            "consultation_id": format!("cons-{i}"),
            "urgency": urgency,
            "centre": centre(alliance),
            "person": person(i),
            "specialty": "psychiatry",
            "reason": "Persistent insomnia and withdrawal symptoms.",
            "clinical_summary": "Week 6 of admission; vitals stable; requests specialist review.",
            "requested_at": now(),
        }),
        None,
    )
}

pub fn transfer_request(i: u64) -> Value {
    envelope(
        "emergency.transfer.request",
        "rehab",
        json!({
            "transfer_id": format!("tr-{i}"),
            "centre": centre("ma01"),
            "person": person(i),
            "pickup": {"address": "18 Example Road, Wujin District", "division_code": "320412"},
            "condition": "Suspected acute cardiac event.",
            "requested_at": now(),
        }),
        None,
    )
}

pub fn handover(i: u64, division_code: &str, employment: bool, allowance: bool) -> Value {
    envelope(
        "referral.handover",
        "rehab",
        json!({
            "referral_id": format!("ref-{i}"),
            "person": person(i),
            "centre": centre("ma01"),
            "release_date": today(),
            "residence": {"division_code": division_code, "address": "7 Sample Lane"},
            "supervision_type": "aftercare",
            "supervision_months": 36,
            "employment_needed": employment,
            "subsistence_eligible": allowance,
            // The platform's record carries this; the field policies keep it from every
            // handover partner.
            "substance_history": [{"substance": "heroin", "since": "2019-03-01"}],
            "clinical_summary": "Completed detoxification; methadone taper finished in week 10.",
        }),
        None,
    )
}

/// The reply a partner (`source`) sends for a request it received, if it replies at all.
pub fn reply_for(request: &Value, source: &str) -> Option<Value> {
    let id = request.get("message_id")?.as_str()?;
    let p = request.get("payload")?;
    let field = |name: &str| {
        p.get(name)
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned()
    };
    let (message_type, payload) = match request.get("message_type")?.as_str()? {
        "enforcement.material.submit" => (
            "enforcement.material.decision",
            json!({"material_id": field("material_id"), "police_case_number": format!("JS-CZ-{}", &id[id.len().saturating_sub(6)..]), "decision": "approved", "decided_at": now(), "bureau": {"id": "psb-3204", "name": "Changzhou Public Security Bureau"}}),
        ),
        // A hospital (the FHIR alliances reply as `health`, the HL7 v2 ones as `hospital-…`).
        "telemedicine.consultation.request"
            if source == "health" || source.starts_with("hospital") =>
        {
            (
                "telemedicine.consultation.result",
                json!({"consultation_id": field("consultation_id"), "hospital": {"id": "hosp-1", "name": "Changzhou Second People's Hospital"}, "status": "completed", "findings": "Reviewed; adjust sleep hygiene.", "recommendations": ["Follow-up in two weeks"], "completed_at": now()}),
            )
        }
        "telemedicine.consultation.request" | "emergency.transfer.request" => {
            let key = if p.get("transfer_id").is_some() {
                "transfer_id"
            } else {
                "consultation_id"
            };
            (
                "emergency.transfer.acknowledged",
                json!({"transfer_id": field(key), "dispatch_id": format!("120-{}", &id[id.len().saturating_sub(6)..]), "status": "dispatched", "eta_minutes": 12, "acknowledged_at": now()}),
            )
        }
        "referral.handover" => (
            "referral.acknowledged",
            json!({"referral_id": field("referral_id"), "receiving_unit": {"id": format!("{source}-unit"), "name": "Receiving unit"}, "accepted": true, "acknowledged_at": now()}),
        ),
        _ => return None,
    };
    Some(envelope(message_type, source, payload, Some(id)))
}
