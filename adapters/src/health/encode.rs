//! Canonical consultation messages → a FHIR R4 message `Bundle` (as an ordered [`Node`] tree).
//!
//! Every canonical field present is written somewhere the decoder reads it back from; a field
//! the mapping needs but the (policy-filtered) message lacks, a value FHIR cannot carry, or a
//! field the mapping does not know is an [`AdapterError::Encode`], never a silent loss.

use serde_json::{Map, Value};
use wingspan_core::Envelope;

use super::tree::Node;
use super::*;
use crate::AdapterError;

type Fields<'a> = Vec<(&'static str, Node<'a>)>;

fn err(what: String) -> AdapterError {
    AdapterError::Encode(what)
}

/// XML 1.0 cannot carry most control characters at all, and FHIR strings should not contain
/// them; refusing them in both representations keeps JSON and XML interchangeable.
fn fhir_text(s: &str) -> bool {
    s.chars().all(|c| {
        !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
    })
}

fn check_text<'a>(s: &'a str, path: &str, key: &str) -> Result<&'a str, AdapterError> {
    if s.trim().is_empty() {
        return Err(err(format!("{path}{key} is empty")));
    }
    if !fhir_text(s) {
        return Err(err(format!(
            "{path}{key} contains control characters FHIR cannot carry"
        )));
    }
    Ok(s)
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, AdapterError> {
    v.as_object()
        .ok_or_else(|| err(format!("{path} must be an object")))
}

fn opt_str<'a>(
    m: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a str>, AdapterError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => check_text(s, path, key).map(Some),
        Some(_) => Err(err(format!("{path}{key} must be a string"))),
    }
}

fn req_str<'a>(m: &'a Map<String, Value>, path: &str, key: &str) -> Result<&'a str, AdapterError> {
    opt_str(m, path, key)?
        .ok_or_else(|| err(format!("{path}{key} is required by the FHIR mapping")))
}

fn req_obj<'a>(
    m: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<&'a Map<String, Value>, AdapterError> {
    match m.get(key) {
        None => Err(err(format!("{path}{key} is required by the FHIR mapping"))),
        Some(v) => object(v, key),
    }
}

fn opt_arr<'a>(
    m: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a [Value]>, AdapterError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a.as_slice())),
        Some(_) => Err(err(format!("{path}{key} must be an array"))),
    }
}

/// Refuse fields the mapping does not know: dropping them would lose data silently. The key
/// is named only when it looks like a schema field name (a key is payload content too).
fn only_keys(m: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), AdapterError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) if k.len() <= 40 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
            Err(err(format!("{path}{k} has no FHIR mapping")))
        }
        Some(_) => Err(err(format!("{path}: a field has no FHIR mapping"))),
    }
}

fn coding<'a>(system: &'a str, code: &'a str, display: Option<&'a str>) -> Node<'a> {
    let mut f: Fields<'a> = vec![("system", Node::s(system)), ("code", Node::s(code))];
    if let Some(d) = display {
        f.push(("display", Node::s(d)));
    }
    Node::Obj(f)
}

fn concept<'a>(coding: Node<'a>, text: Option<&'a str>) -> Node<'a> {
    let mut f: Fields<'a> = vec![("coding", Node::Arr(vec![coding]))];
    if let Some(t) = text {
        f.push(("text", Node::s(t)));
    }
    Node::Obj(f)
}

fn text_concept(text: &str) -> Node<'_> {
    Node::Obj(vec![("text", Node::s(text))])
}

fn identifier<'a>(system: &'a str, value: &'a str) -> Node<'a> {
    Node::Obj(vec![("system", Node::s(system)), ("value", Node::s(value))])
}

fn reference(url: String) -> Node<'static> {
    Node::Obj(vec![("reference", Node::owned(url))])
}

fn extension<'a>(url: &'a str, kind: &'static str, value: &'a str) -> Node<'a> {
    Node::Obj(vec![("url", Node::s(url)), (kind, Node::s(value))])
}

fn entry<'a>(url: String, resource: Node<'a>) -> Node<'a> {
    Node::Obj(vec![("fullUrl", Node::owned(url)), ("resource", resource)])
}

fn entry_url(name: &str) -> String {
    format!("{ENTRY_PREFIX}{name}")
}

/// The Bundle around a focus resource: identifier, timestamp, MessageHeader, then `rest`.
fn bundle<'a>(
    env: &'a Envelope,
    focus_url: &str,
    rest: Vec<Node<'a>>,
) -> Result<Node<'a>, AdapterError> {
    let header_fields = [
        ("message_id", env.message_id.as_str()),
        ("sent_at", env.sent_at.as_str()),
        ("schema_version", env.schema_version.as_str()),
        ("source", env.source.as_str()),
    ];
    for (key, value) in header_fields {
        check_text(value, "", key)?;
    }
    let mut header: Fields<'a> = vec![
        (
            "eventCoding",
            Node::Obj(vec![
                ("system", Node::s(SYS_MESSAGE_TYPE)),
                ("code", Node::s(&env.message_type)),
            ]),
        ),
        (
            "source",
            Node::Obj(vec![(
                "endpoint",
                Node::owned(format!("{SOURCE_PREFIX}{}", env.source)),
            )]),
        ),
    ];
    if let Some(c) = &env.correlation_id {
        check_text(c, "", "correlation_id")?;
        header.push((
            "response",
            Node::Obj(vec![("identifier", Node::s(c)), ("code", Node::s("ok"))]),
        ));
    }
    header.push(("focus", Node::Arr(vec![reference(focus_url.to_owned())])));
    header.push((
        "definition",
        Node::owned(format!(
            "{DEFINITION_PREFIX}{}|{}",
            env.message_type, env.schema_version
        )),
    ));
    let mut entries = Vec::with_capacity(rest.len() + 1);
    entries.push(entry(
        entry_url("header"),
        Node::Res("MessageHeader", header),
    ));
    entries.extend(rest);
    Ok(Node::Res(
        "Bundle",
        vec![
            ("identifier", identifier(SYS_MESSAGE_ID, &env.message_id)),
            ("type", Node::s("message")),
            ("timestamp", Node::s(&env.sent_at)),
            ("entry", Node::Arr(entries)),
        ],
    ))
}

pub(super) fn request(env: &Envelope) -> Result<Node<'_>, AdapterError> {
    let p = object(&env.payload, "payload")?;
    only_keys(
        p,
        "",
        &[
            "consultation_id",
            "urgency",
            "centre",
            "person",
            "specialty",
            "reason",
            "clinical_summary",
            "substance_history",
            "medications",
            "requested_at",
        ],
    )?;
    let consultation_id = req_str(p, "", "consultation_id")?;
    let priority = match req_str(p, "", "urgency")? {
        "routine" => "routine",
        "urgent" => "urgent",
        "emergency" => "stat",
        _ => return Err(err("urgency has no FHIR priority".into())),
    };
    let specialty = req_str(p, "", "specialty")?;
    let reason = req_str(p, "", "reason")?;
    let summary = opt_str(p, "", "clinical_summary")?;
    let requested_at = opt_str(p, "", "requested_at")?;

    let centre = req_obj(p, "", "centre")?;
    only_keys(
        centre,
        "centre.",
        &["id", "name", "alliance", "division_code"],
    )?;
    let centre_id = req_str(centre, "centre.", "id")?;
    let centre_name = req_str(centre, "centre.", "name")?;
    let mut org_ext = Vec::new();
    if let Some(a) = opt_str(centre, "centre.", "alliance")? {
        org_ext.push(extension(EXT_ALLIANCE, "valueString", a));
    }
    if let Some(d) = opt_str(centre, "centre.", "division_code")? {
        org_ext.push(extension(EXT_DIVISION_CODE, "valueCode", d));
    }
    let mut org: Fields<'_> = Vec::with_capacity(3);
    if !org_ext.is_empty() {
        org.push(("extension", Node::Arr(org_ext)));
    }
    org.push((
        "identifier",
        Node::Arr(vec![identifier(SYS_ORGANIZATION_ID, centre_id)]),
    ));
    org.push(("name", Node::s(centre_name)));

    let person = req_obj(p, "", "person")?;
    only_keys(
        person,
        "person.",
        &["person_id", "name", "birth_date", "gender"],
    )?;
    let mut patient: Fields<'_> = vec![
        (
            "identifier",
            Node::Arr(vec![identifier(
                SYS_PERSON_ID,
                req_str(person, "person.", "person_id")?,
            )]),
        ),
        (
            "name",
            Node::Arr(vec![text_concept(req_str(person, "person.", "name")?)]),
        ),
    ];
    if let Some(g) = opt_str(person, "person.", "gender")? {
        if !matches!(g, "male" | "female" | "unknown") {
            return Err(err("person.gender has no FHIR administrative gender".into()));
        }
        patient.push(("gender", Node::s(g)));
    }
    if let Some(b) = opt_str(person, "person.", "birth_date")? {
        patient.push(("birthDate", Node::s(b)));
    }

    let patient_url = entry_url("patient");
    let mut supporting = Vec::new();
    let mut extra = Vec::new();
    let mut empty_lists = Vec::new();
    match opt_arr(p, "", "substance_history")? {
        Some([]) => empty_lists.push(extension(EXT_EMPTY_LIST, "valueCode", "substance_history")),
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let s = object(item, "substance_history item")?;
                only_keys(s, "substance_history.", &["substance", "since"])?;
                let substance = req_str(s, "substance_history.", "substance")?;
                let mut obs: Fields<'_> = vec![
                    ("status", Node::s("final")),
                    (
                        "category",
                        Node::Arr(vec![concept(
                            coding(
                                OBSERVATION_CATEGORY,
                                "social-history",
                                Some("Social History"),
                            ),
                            None,
                        )]),
                    ),
                    (
                        "code",
                        concept(
                            coding(SYS_OBSERVATION, CODE_SUBSTANCE_USE, Some("Substance use")),
                            Some("Substance use"),
                        ),
                    ),
                    ("subject", reference(patient_url.clone())),
                ];
                if let Some(since) = opt_str(s, "substance_history.", "since")? {
                    obs.push((
                        "effectivePeriod",
                        Node::Obj(vec![("start", Node::s(since))]),
                    ));
                }
                obs.push(("valueCodeableConcept", text_concept(substance)));
                let url = entry_url(&format!("substance-{}", i + 1));
                supporting.push(reference(url.clone()));
                extra.push(entry(url, Node::Res("Observation", obs)));
            }
        }
        None => {}
    }
    match opt_arr(p, "", "medications")? {
        Some([]) => empty_lists.push(extension(EXT_EMPTY_LIST, "valueCode", "medications")),
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let Value::String(m) = item else {
                    return Err(err("medications items must be strings".into()));
                };
                let m = check_text(m, "medications", " item")?;
                let url = entry_url(&format!("medication-{}", i + 1));
                supporting.push(reference(url.clone()));
                extra.push(entry(
                    url,
                    Node::Res(
                        "MedicationStatement",
                        vec![
                            ("status", Node::s("active")),
                            ("medicationCodeableConcept", text_concept(m)),
                            ("subject", reference(patient_url.clone())),
                        ],
                    ),
                ));
            }
        }
        None => {}
    }

    let mut sr: Fields<'_> = Vec::with_capacity(14);
    if !empty_lists.is_empty() {
        sr.push(("extension", Node::Arr(empty_lists)));
    }
    sr.push((
        "identifier",
        Node::Arr(vec![identifier(SYS_CONSULTATION_ID, consultation_id)]),
    ));
    sr.push(("status", Node::s("active")));
    sr.push(("intent", Node::s("order")));
    sr.push((
        "category",
        Node::Arr(vec![concept(
            coding(SNOMED, SNOMED_CONSULTATION, Some("Consultation")),
            None,
        )]),
    ));
    sr.push(("priority", Node::s(priority)));
    sr.push(("code", text_concept(specialty)));
    sr.push(("subject", reference(patient_url.clone())));
    if let Some(t) = requested_at {
        sr.push(("authoredOn", Node::s(t)));
    }
    sr.push(("requester", reference(entry_url("centre"))));
    sr.push(("reasonCode", Node::Arr(vec![text_concept(reason)])));
    if !supporting.is_empty() {
        sr.push(("supportingInfo", Node::Arr(supporting)));
    }
    if let Some(s) = summary {
        sr.push(("note", Node::Arr(vec![text_concept(s)])));
    }

    let focus = entry_url("request");
    let mut rest = Vec::with_capacity(3 + extra.len());
    rest.push(entry(focus.clone(), Node::Res("ServiceRequest", sr)));
    rest.push(entry(patient_url, Node::Res("Patient", patient)));
    rest.push(entry(entry_url("centre"), Node::Res("Organization", org)));
    rest.extend(extra);
    bundle(env, &focus, rest)
}

pub(super) fn result(env: &Envelope) -> Result<Node<'_>, AdapterError> {
    let p = object(&env.payload, "payload")?;
    only_keys(
        p,
        "",
        &[
            "consultation_id",
            "hospital",
            "status",
            "findings",
            "diagnoses",
            "recommendations",
            "completed_at",
        ],
    )?;
    let consultation_id = req_str(p, "", "consultation_id")?;
    let status = req_str(p, "", "status")?;
    let report_status = match status {
        "completed" | "referred" => "final",
        "declined" => "cancelled",
        _ => return Err(err("status has no FHIR report status".into())),
    };
    let completed_at = req_str(p, "", "completed_at")?;
    let findings = opt_str(p, "", "findings")?;

    let hospital = req_obj(p, "", "hospital")?;
    only_keys(hospital, "hospital.", &["id", "name"])?;
    let org: Fields<'_> = vec![
        (
            "identifier",
            Node::Arr(vec![identifier(
                SYS_ORGANIZATION_ID,
                req_str(hospital, "hospital.", "id")?,
            )]),
        ),
        ("name", Node::s(req_str(hospital, "hospital.", "name")?)),
    ];

    let mut ext = vec![extension(EXT_CONSULTATION_STATUS, "valueCode", status)];
    let mut conclusion_codes = Vec::new();
    match opt_arr(p, "", "diagnoses")? {
        Some([]) => ext.push(extension(EXT_EMPTY_LIST, "valueCode", "diagnoses")),
        Some(items) => {
            for item in items {
                let d = object(item, "diagnoses item")?;
                only_keys(d, "diagnoses.", &["system", "code", "display"])?;
                let mut c: Fields<'_> = Vec::with_capacity(3);
                if let Some(s) = opt_str(d, "diagnoses.", "system")? {
                    c.push(("system", Node::s(s)));
                }
                c.push(("code", Node::s(req_str(d, "diagnoses.", "code")?)));
                if let Some(s) = opt_str(d, "diagnoses.", "display")? {
                    c.push(("display", Node::s(s)));
                }
                conclusion_codes.push(Node::Obj(vec![("coding", Node::Arr(vec![Node::Obj(c)]))]));
            }
        }
        None => {}
    }
    let mut results = Vec::new();
    let mut extra = Vec::new();
    match opt_arr(p, "", "recommendations")? {
        Some([]) => ext.push(extension(EXT_EMPTY_LIST, "valueCode", "recommendations")),
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let Value::String(r) = item else {
                    return Err(err("recommendations items must be strings".into()));
                };
                let r = check_text(r, "recommendations", " item")?;
                let url = entry_url(&format!("recommendation-{}", i + 1));
                results.push(reference(url.clone()));
                extra.push(entry(
                    url,
                    Node::Res(
                        "Observation",
                        vec![
                            ("status", Node::s("final")),
                            (
                                "code",
                                concept(
                                    coding(
                                        SYS_OBSERVATION,
                                        CODE_RECOMMENDATION,
                                        Some("Recommendation"),
                                    ),
                                    Some("Recommendation"),
                                ),
                            ),
                            ("valueString", Node::s(r)),
                        ],
                    ),
                ));
            }
        }
        None => {}
    }

    let mut dr: Fields<'_> = Vec::with_capacity(10);
    dr.push(("extension", Node::Arr(ext)));
    dr.push((
        "basedOn",
        Node::Arr(vec![Node::Obj(vec![
            ("type", Node::s("ServiceRequest")),
            (
                "identifier",
                identifier(SYS_CONSULTATION_ID, consultation_id),
            ),
        ])]),
    ));
    dr.push(("status", Node::s(report_status)));
    dr.push((
        "code",
        concept(
            coding(LOINC, LOINC_CONSULT_NOTE, Some("Consult note")),
            Some("Telemedicine consultation"),
        ),
    ));
    dr.push(("issued", Node::s(completed_at)));
    dr.push((
        "performer",
        Node::Arr(vec![reference(entry_url("hospital"))]),
    ));
    if !results.is_empty() {
        dr.push(("result", Node::Arr(results)));
    }
    if let Some(f) = findings {
        dr.push(("conclusion", Node::s(f)));
    }
    if !conclusion_codes.is_empty() {
        dr.push(("conclusionCode", Node::Arr(conclusion_codes)));
    }

    let focus = entry_url("report");
    let mut rest = Vec::with_capacity(2 + extra.len());
    rest.push(entry(focus.clone(), Node::Res("DiagnosticReport", dr)));
    rest.push(entry(entry_url("hospital"), Node::Res("Organization", org)));
    rest.extend(extra);
    bundle(env, &focus, rest)
}
