//! FHIR (as a JSON value; XML is converted first) → canonical consultation envelope.
//!
//! Reads what [`super::encode`] writes, and what hospitals send: a message `Bundle` whose
//! focus is a `DiagnosticReport`, a `Task` or a `ServiceRequest`, or one of those resources on
//! its own. Accessors accept a single value where FHIR JSON has an array (the XML converter
//! cannot tell) and treat empty strings as absent. No error text repeats document content
//! except FHIR codes from closed value sets and resource type names.

use serde_json::{Map, Value};
use wingspan_core::Envelope;

use super::*;
use crate::AdapterError;

fn unmappable(what: impl Into<String>) -> AdapterError {
    AdapterError::unmappable(what)
}

// ---------------------------------------------------------------------------------------
// Accessors

/// The members of a repeating element (a single value counts as one).
fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    match v.get(key) {
        Some(Value::Array(a)) => a.as_slice(),
        None | Some(Value::Null) => &[],
        Some(x) => std::slice::from_ref(x),
    }
}

/// At most this many references in one element are followed (the canonical lists hold at
/// most 50), contained resources in one resource, and entries in one Bundle: reference
/// resolution scans, so these keep hostile documents from costing quadratic time.
const MAX_REFS: usize = 256;
const MAX_CONTAINED: usize = 1000;
const MAX_ENTRIES: usize = 1000;

/// The members of a repeating element of references that will be resolved.
fn refs<'a>(v: &'a Value, key: &str) -> Result<&'a [Value], AdapterError> {
    let r = items(v, key);
    if r.len() > MAX_REFS {
        return Err(AdapterError::Refused(format!(
            "more than {MAX_REFS} references in one element"
        )));
    }
    Ok(r)
}

/// The first member of an element that may repeat.
fn first<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    items(v, key).first()
}

/// A non-blank string member.
fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    match v.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.as_str()),
        _ => None,
    }
}

fn is_true(v: &Value, key: &str) -> bool {
    match v.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

fn resource_type(v: &Value) -> Option<&str> {
    text(v, "resourceType")
}

/// A resource type name safe to repeat in an error (FHIR type names are short ASCII words).
fn type_name(v: &Value) -> &str {
    match resource_type(v) {
        Some(t) if t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric()) => t,
        _ => "unknown",
    }
}

/// The value of the first identifier (in `key`) with this system.
fn identifier_with<'a>(v: &'a Value, key: &str, system: &str) -> Option<&'a str> {
    items(v, key)
        .iter()
        .filter(|i| text(i, "system") == Some(system))
        .find_map(|i| text(i, "value"))
}

/// A canonical id (`^[A-Za-z0-9][A-Za-z0-9._:-]*$`, at most 64): fallbacks only take these.
fn id_like(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// RFC 3339 date-time with seconds and an offset (what the canonical `date-time` needs).
fn date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// The first candidate that is a full date-time.
fn first_time<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> Option<&'a str> {
    candidates.into_iter().flatten().find(|s| date_time(s))
}

fn last_updated(v: &Value) -> Option<&str> {
    v.get("meta").and_then(|m| text(m, "lastUpdated"))
}

/// A CodeableConcept's words: its text, else its first coding's display, else its code.
fn concept_text(c: &Value) -> Option<&str> {
    text(c, "text").or_else(|| {
        items(c, "coding")
            .iter()
            .find_map(|k| text(k, "display").or_else(|| text(k, "code")))
    })
}

fn has_coding(c: &Value, system: &str, code: &str) -> bool {
    items(c, "coding")
        .iter()
        .any(|k| text(k, "system") == Some(system) && text(k, "code") == Some(code))
}

/// The value (`valueCode` or `valueString`) of the extensions with this url.
fn extension_values<'a>(v: &'a Value, url: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    items(v, "extension")
        .iter()
        .filter(move |e| text(e, "url") == Some(url))
        .filter_map(|e| text(e, "valueCode").or_else(|| text(e, "valueString")))
}

fn notes(v: &Value) -> Option<String> {
    let texts: Vec<&str> = items(v, "note")
        .iter()
        .filter_map(|n| text(n, "text"))
        .collect();
    if texts.is_empty() {
        None
    } else {
        Some(texts.join("\n"))
    }
}

/// Refuse resources that carry modifiers we do not understand (FHIR: a system that does not
/// understand a modifier must not process the resource). Iterative, linear in the resource.
fn check_modifiers(resource: &Value) -> Result<(), AdapterError> {
    if resource.get("implicitRules").is_some() {
        return Err(unmappable(format!(
            "a {} resource carries implicitRules",
            type_name(resource)
        )));
    }
    let mut stack = vec![resource];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if m.contains_key("modifierExtension") {
                    return Err(unmappable(format!(
                        "a {} resource carries a modifierExtension",
                        type_name(resource)
                    )));
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// References

/// The resources a reference may point at: the Bundle's entries (none for a bare resource).
struct Ctx<'a> {
    entries: Vec<(Option<&'a str>, &'a Value)>,
    /// Bundle.timestamp: the last fallback for a result's completion time.
    timestamp: Option<&'a str>,
}

/// `Type/id` from a relative or absolute reference, `_history` stripped.
fn type_and_id(reference: &str) -> Option<(&str, &str)> {
    let r = match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    };
    let (rest, id) = r.rsplit_once('/')?;
    let ty = rest.rsplit('/').next()?;
    if ty.is_empty() || id.is_empty() || !is_type_name(ty) {
        return None;
    }
    Some((ty, id))
}

fn is_type_name(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
        && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl<'a> Ctx<'a> {
    /// Resolve a Reference element: `#id` in the container's `contained`, a Bundle entry by
    /// `fullUrl`, or a Bundle entry by `Type/id`.
    fn resolve(&self, container: &'a Value, reference: &'a Value) -> Option<&'a Value> {
        let r = text(reference, "reference")?;
        if let Some(id) = r.strip_prefix('#') {
            return items(container, "contained")
                .iter()
                .find(|c| text(c, "id") == Some(id));
        }
        if let Some((_, res)) = self.entries.iter().find(|(url, _)| *url == Some(r)) {
            return Some(res);
        }
        let (ty, id) = type_and_id(r)?;
        self.entries
            .iter()
            .map(|(_, res)| *res)
            .find(|res| resource_type(res) == Some(ty) && text(res, "id") == Some(id))
    }
}

// ---------------------------------------------------------------------------------------
// Shared pieces

/// An organisation behind a reference: the resolved Organization (identifier with our system,
/// else its first identifier value, else its id; name), or, unresolved, `Organization/<id>`
/// and the reference's display. `None` when the reference is to something else.
fn organization<'a>(
    ctx: &Ctx<'a>,
    container: &'a Value,
    reference: &'a Value,
) -> Result<Option<Map<String, Value>>, AdapterError> {
    let (id, name) = match ctx.resolve(container, reference) {
        Some(org) if resource_type(org) == Some("Organization") => {
            let id = identifier_with(org, "identifier", SYS_ORGANIZATION_ID)
                .or_else(|| {
                    items(org, "identifier")
                        .iter()
                        .filter_map(|i| text(i, "value"))
                        .find(|v| id_like(v))
                })
                .or_else(|| text(org, "id").filter(|v| id_like(v)));
            (id, text(org, "name").or_else(|| text(reference, "display")))
        }
        Some(_) => return Ok(None),
        None => {
            let by_ref = text(reference, "reference")
                .and_then(type_and_id)
                .filter(|(ty, _)| *ty == "Organization")
                .map(|(_, id)| id);
            let by_identifier = reference.get("identifier").and_then(|i| text(i, "value"));
            let typed_org = text(reference, "type") == Some("Organization");
            if by_ref.is_none() && !(typed_org && by_identifier.is_some()) {
                return Ok(None);
            }
            (
                by_ref.or(by_identifier).filter(|v| id_like(v)),
                text(reference, "display"),
            )
        }
    };
    match (id, name) {
        (Some(id), Some(name)) => {
            let mut m = Map::new();
            m.insert("id".into(), Value::String(id.to_owned()));
            m.insert("name".into(), Value::String(name.to_owned()));
            Ok(Some(m))
        }
        _ => Err(unmappable("an organisation lacks an identifier or a name")),
    }
}

/// The consultation a result (or status update) is about. Our identifier system wins, on a
/// basedOn/focus reference, on the referenced resource, or on the resource itself; then the
/// documented fallbacks for HL7-style resources: the id of a referenced ServiceRequest, the
/// resource's first identifier value, the resource's id.
fn consultation_id<'a>(ctx: &Ctx<'a>, res: &'a Value) -> Result<&'a str, AdapterError> {
    let (based_on, focus) = (refs(res, "basedOn")?, refs(res, "focus")?);
    let links = || based_on.iter().chain(focus);
    let ours = links()
        .find_map(|r| {
            r.get("identifier")
                .filter(|i| text(i, "system") == Some(SYS_CONSULTATION_ID))
                .and_then(|i| text(i, "value"))
        })
        .or_else(|| identifier_with(res, "identifier", SYS_CONSULTATION_ID))
        .or_else(|| {
            links()
                .filter_map(|r| ctx.resolve(res, r))
                .find_map(|t| identifier_with(t, "identifier", SYS_CONSULTATION_ID))
        });
    if let Some(id) = ours {
        return Ok(id);
    }
    links()
        .filter_map(|r| text(r, "reference").and_then(type_and_id))
        .filter(|(ty, _)| *ty == "ServiceRequest")
        .map(|(_, id)| id)
        .chain(
            items(res, "identifier")
                .iter()
                .filter_map(|i| text(i, "value")),
        )
        .chain(text(res, "id"))
        .find(|v| id_like(v))
        .ok_or_else(|| unmappable("no consultation identifier"))
}

/// A message id a reference carries (`identifier.system` = our message-id system).
fn referenced_message_id(res: &Value) -> Option<&str> {
    items(res, "basedOn")
        .iter()
        .chain(items(res, "focus"))
        .filter_map(|r| r.get("identifier"))
        .find(|i| text(i, "system") == Some(SYS_MESSAGE_ID))
        .and_then(|i| text(i, "value"))
}

/// The canonical status refined by our extension (or a Task's businessStatus coding).
fn refined_status(res: &Value, base: &'static str) -> &'static str {
    let from_ext = extension_values(res, EXT_CONSULTATION_STATUS).next();
    let from_business = res.get("businessStatus").and_then(|b| {
        items(b, "coding")
            .iter()
            .filter(|k| text(k, "system") == Some(SYS_CONSULTATION_STATUS))
            .find_map(|k| text(k, "code"))
    });
    match from_ext.or(from_business) {
        Some("completed") => "completed",
        Some("declined") => "declined",
        Some("referred") => "referred",
        _ => base,
    }
}

/// Mark lists that were sent empty (our extension), where no member arrived.
fn empty_lists(res: &Value, payload: &mut Map<String, Value>, lists: &[&str]) {
    for name in extension_values(res, EXT_EMPTY_LIST) {
        if let Some(key) = lists.iter().find(|l| **l == name) {
            payload
                .entry(*key)
                .or_insert_with(|| Value::Array(Vec::new()));
        }
    }
}

fn put(m: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(key.into(), Value::String(v.to_owned()));
    }
}

fn put_list(m: &mut Map<String, Value>, key: &str, list: Vec<Value>) {
    if !list.is_empty() {
        m.insert(key.into(), Value::Array(list));
    }
}

/// What a mapped resource contributes to the envelope.
struct Mapped<'a> {
    message_type: &'static str,
    payload: Map<String, Value>,
    /// The resource's own time, for a bare resource's `sent_at`.
    time: Option<&'a str>,
}

// ---------------------------------------------------------------------------------------
// Requests

fn request<'a>(ctx: &Ctx<'a>, sr: &'a Value) -> Result<Mapped<'a>, AdapterError> {
    match text(sr, "status") {
        Some("active") => {}
        Some(
            s @ ("draft" | "on-hold" | "revoked" | "completed" | "entered-in-error" | "unknown"),
        ) => {
            return Err(unmappable(format!(
                "a service request with status {s} is not a consultation request"
            )));
        }
        _ => return Err(unmappable("unrecognised service request status")),
    }
    if is_true(sr, "doNotPerform") {
        return Err(unmappable("a do-not-perform service request"));
    }
    let mut p = Map::new();
    let id = identifier_with(sr, "identifier", SYS_CONSULTATION_ID)
        .or_else(|| {
            items(sr, "identifier")
                .iter()
                .filter_map(|i| text(i, "value"))
                .chain(text(sr, "id"))
                .find(|v| id_like(v))
        })
        .ok_or_else(|| unmappable("no consultation identifier"))?;
    put(&mut p, "consultation_id", Some(id));
    let urgency = match text(sr, "priority") {
        None | Some("routine") => "routine",
        Some("urgent") => "urgent",
        Some("asap" | "stat") => "emergency",
        Some(_) => return Err(unmappable("unrecognised priority")),
    };
    put(&mut p, "urgency", Some(urgency));
    let specialty = sr
        .get("code")
        .and_then(concept_text)
        .ok_or_else(|| unmappable("no requested specialty (ServiceRequest.code)"))?;
    put(&mut p, "specialty", Some(specialty));
    let reason = items(sr, "reasonCode")
        .iter()
        .find_map(concept_text)
        .ok_or_else(|| unmappable("no reason (ServiceRequest.reasonCode)"))?;
    put(&mut p, "reason", Some(reason));
    if let Some(n) = notes(sr) {
        p.insert("clinical_summary".into(), Value::String(n));
    }
    put(&mut p, "requested_at", text(sr, "authoredOn"));

    // The centre: the requesting organisation, with our extensions.
    let requester = sr
        .get("requester")
        .ok_or_else(|| unmappable("no requester"))?;
    let mut centre = organization(ctx, sr, requester)?
        .ok_or_else(|| unmappable("the requester is not an organisation"))?;
    if let Some(org) = ctx.resolve(sr, requester) {
        put(
            &mut centre,
            "alliance",
            extension_values(org, EXT_ALLIANCE).next(),
        );
        put(
            &mut centre,
            "division_code",
            extension_values(org, EXT_DIVISION_CODE).next(),
        );
    }
    p.insert("centre".into(), Value::Object(centre));

    // The person: the subject Patient.
    let patient = sr
        .get("subject")
        .and_then(|s| ctx.resolve(sr, s))
        .ok_or_else(|| unmappable("the subject patient is not in the message"))?;
    if resource_type(patient) != Some("Patient") {
        return Err(unmappable(format!(
            "the subject is a {}, not a Patient",
            type_name(patient)
        )));
    }
    p.insert("person".into(), Value::Object(person(patient)?));

    // Supporting information: substance use observations and medication statements.
    let mut substances = Vec::new();
    let mut medications = Vec::new();
    for r in refs(sr, "supportingInfo")? {
        let Some(res) = ctx.resolve(sr, r) else {
            continue;
        };
        match resource_type(res) {
            Some("Observation")
                if res
                    .get("code")
                    .is_some_and(|c| has_coding(c, SYS_OBSERVATION, CODE_SUBSTANCE_USE)) =>
            {
                let substance = res
                    .get("valueCodeableConcept")
                    .and_then(concept_text)
                    .or_else(|| text(res, "valueString"))
                    .ok_or_else(|| unmappable("a substance-use observation has no value"))?;
                let mut s = Map::new();
                put(&mut s, "substance", Some(substance));
                put(
                    &mut s,
                    "since",
                    res.get("effectivePeriod")
                        .and_then(|e| text(e, "start"))
                        .or_else(|| text(res, "effectiveDateTime")),
                );
                substances.push(Value::Object(s));
            }
            Some("MedicationStatement") => {
                let m = res
                    .get("medicationCodeableConcept")
                    .and_then(concept_text)
                    .ok_or_else(|| unmappable("a medication statement has no medication text"))?;
                medications.push(Value::String(m.to_owned()));
            }
            _ => {}
        }
    }
    put_list(&mut p, "substance_history", substances);
    put_list(&mut p, "medications", medications);
    empty_lists(sr, &mut p, &["substance_history", "medications"]);
    Ok(Mapped {
        message_type: REQUEST,
        payload: p,
        time: first_time([text(sr, "authoredOn"), last_updated(sr)]),
    })
}

fn person(patient: &Value) -> Result<Map<String, Value>, AdapterError> {
    let mut m = Map::new();
    let id = identifier_with(patient, "identifier", SYS_PERSON_ID)
        .or_else(|| {
            items(patient, "identifier")
                .iter()
                .filter_map(|i| text(i, "value"))
                .find(|v| resident_id(v))
        })
        .ok_or_else(|| unmappable("no resident identity number for the patient"))?;
    put(&mut m, "person_id", Some(id));
    let name = first(patient, "name").and_then(|n| {
        text(n, "text").map(str::to_owned).or_else(|| {
            let parts: Vec<&str> = text(n, "family")
                .into_iter()
                .chain(items(n, "given").iter().filter_map(Value::as_str))
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
    });
    let name = name.ok_or_else(|| unmappable("no patient name"))?;
    m.insert("name".into(), Value::String(name));
    put(&mut m, "birth_date", text(patient, "birthDate"));
    // `other` has no canonical code: left out rather than guessed.
    if let Some(g @ ("male" | "female" | "unknown")) = text(patient, "gender") {
        put(&mut m, "gender", Some(g));
    }
    Ok(m)
}

/// An 18-character resident identity number shape (`^[0-9]{17}[0-9X]$`).
fn resident_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 18
        && b[..17].iter().all(u8::is_ascii_digit)
        && (b[17].is_ascii_digit() || b[17] == b'X')
}

// ---------------------------------------------------------------------------------------
// Results

fn result_payload(
    consultation_id: &str,
    hospital: Map<String, Value>,
    status: &str,
    completed_at: &str,
) -> Map<String, Value> {
    let mut p = Map::new();
    put(&mut p, "consultation_id", Some(consultation_id));
    p.insert("hospital".into(), Value::Object(hospital));
    put(&mut p, "status", Some(status));
    put(&mut p, "completed_at", Some(completed_at));
    p
}

/// The first organisation among these references.
fn first_organization<'a>(
    ctx: &Ctx<'a>,
    res: &'a Value,
    refs: &'a [Value],
) -> Result<Option<Map<String, Value>>, AdapterError> {
    for r in refs {
        if let Some(org) = organization(ctx, res, r)? {
            return Ok(Some(org));
        }
    }
    Ok(None)
}

fn report<'a>(ctx: &Ctx<'a>, dr: &'a Value) -> Result<Mapped<'a>, AdapterError> {
    let base = match text(dr, "status") {
        Some("final" | "amended" | "corrected" | "appended") => "completed",
        Some("cancelled") => "declined",
        Some(s @ ("registered" | "partial" | "preliminary" | "entered-in-error" | "unknown")) => {
            return Err(unmappable(format!(
                "a report with status {s} is not a consultation result"
            )));
        }
        _ => return Err(unmappable("unrecognised report status")),
    };
    let status = refined_status(dr, base);
    let cid = consultation_id(ctx, dr)?;
    let hospital = first_organization(ctx, dr, refs(dr, "performer")?)?
        .ok_or_else(|| unmappable("no performing organisation"))?;
    // `issued` is an instant (always a full date-time) and taken as sent; fallbacks are checked.
    let completed_at = text(dr, "issued")
        .or_else(|| {
            first_time([
                text(dr, "effectiveDateTime"),
                dr.get("effectivePeriod").and_then(|e| text(e, "end")),
                last_updated(dr),
                ctx.timestamp,
            ])
        })
        .ok_or_else(|| unmappable("no completion time"))?;
    let mut p = result_payload(cid, hospital, status, completed_at);
    put(&mut p, "findings", text(dr, "conclusion"));
    let diagnoses = items(dr, "conclusionCode")
        .iter()
        .filter_map(|c| {
            items(c, "coding").iter().find_map(|k| {
                let code = text(k, "code")?;
                let mut d = Map::new();
                put(&mut d, "system", text(k, "system"));
                put(&mut d, "code", Some(code));
                put(&mut d, "display", text(k, "display"));
                Some(Value::Object(d))
            })
        })
        .collect();
    put_list(&mut p, "diagnoses", diagnoses);
    let mut recommendations = Vec::new();
    for r in refs(dr, "result")? {
        let Some(obs) = ctx.resolve(dr, r) else {
            continue;
        };
        if resource_type(obs) == Some("Observation")
            && obs
                .get("code")
                .is_some_and(|c| has_coding(c, SYS_OBSERVATION, CODE_RECOMMENDATION))
        {
            let t = text(obs, "valueString")
                .ok_or_else(|| unmappable("a recommendation observation has no text"))?;
            recommendations.push(Value::String(t.to_owned()));
        }
    }
    put_list(&mut p, "recommendations", recommendations);
    empty_lists(dr, &mut p, &["diagnoses", "recommendations"]);
    Ok(Mapped {
        message_type: RESULT,
        payload: p,
        time: first_time([text(dr, "issued"), last_updated(dr)]),
    })
}

fn is_recommendation(output: &Value) -> bool {
    output.get("type").is_some_and(|t| {
        has_coding(t, SYS_OBSERVATION, CODE_RECOMMENDATION)
            || text(t, "text").is_some_and(|s| s.eq_ignore_ascii_case("recommendation"))
    })
}

fn task<'a>(ctx: &Ctx<'a>, t: &'a Value) -> Result<Mapped<'a>, AdapterError> {
    let base = match text(t, "status") {
        Some("completed") => "completed",
        Some("rejected" | "cancelled" | "failed") => "declined",
        Some(
            s @ ("draft" | "requested" | "received" | "accepted" | "ready" | "in-progress"
            | "on-hold" | "entered-in-error"),
        ) => {
            return Err(unmappable(format!(
                "a task with status {s} is not a consultation outcome"
            )));
        }
        _ => return Err(unmappable("unrecognised task status")),
    };
    let status = refined_status(t, base);
    let cid = consultation_id(ctx, t)?;
    let hospital = first_organization(ctx, t, refs(t, "owner")?)?
        .ok_or_else(|| unmappable("no owning organisation"))?;
    let completed_at = first_time([
        t.get("executionPeriod").and_then(|e| text(e, "end")),
        text(t, "lastModified"),
        last_updated(t),
        ctx.timestamp,
    ])
    .ok_or_else(|| unmappable("no completion time"))?;
    let mut p = result_payload(cid, hospital, status, completed_at);
    let outputs = items(t, "output");
    let findings: Vec<&str> = outputs
        .iter()
        .filter(|o| !is_recommendation(o))
        .filter_map(|o| text(o, "valueString"))
        .collect();
    if findings.is_empty() {
        if let Some(n) = notes(t) {
            p.insert("findings".into(), Value::String(n));
        }
    } else {
        p.insert("findings".into(), Value::String(findings.join("\n")));
    }
    let recommendations = outputs
        .iter()
        .filter(|o| is_recommendation(o))
        .filter_map(|o| text(o, "valueString"))
        .map(|s| Value::String(s.to_owned()))
        .collect();
    put_list(&mut p, "recommendations", recommendations);
    empty_lists(t, &mut p, &["recommendations"]);
    Ok(Mapped {
        message_type: RESULT,
        payload: p,
        time: first_time([text(t, "lastModified"), last_updated(t)]),
    })
}

/// A ServiceRequest whose status says the hospital finished (`completed`) or withdrew
/// (`revoked`) it: a result without a report.
fn request_update<'a>(ctx: &Ctx<'a>, sr: &'a Value) -> Result<Mapped<'a>, AdapterError> {
    let base = match text(sr, "status") {
        Some("completed") => "completed",
        Some("revoked") => "declined",
        Some(s @ ("draft" | "active" | "on-hold" | "entered-in-error" | "unknown")) => {
            return Err(unmappable(format!(
                "a service request with status {s} is not a consultation outcome"
            )));
        }
        _ => return Err(unmappable("unrecognised service request status")),
    };
    let status = refined_status(sr, base);
    let cid = identifier_with(sr, "identifier", SYS_CONSULTATION_ID)
        .or_else(|| {
            items(sr, "identifier")
                .iter()
                .filter_map(|i| text(i, "value"))
                .chain(text(sr, "id"))
                .find(|v| id_like(v))
        })
        .ok_or_else(|| unmappable("no consultation identifier"))?;
    let hospital = first_organization(ctx, sr, refs(sr, "performer")?)?
        .ok_or_else(|| unmappable("no performing organisation"))?;
    let completed_at = first_time([last_updated(sr), ctx.timestamp])
        .ok_or_else(|| unmappable("no completion time"))?;
    let mut p = result_payload(cid, hospital, status, completed_at);
    if let Some(n) = notes(sr) {
        p.insert("findings".into(), Value::String(n));
    }
    Ok(Mapped {
        message_type: RESULT,
        payload: p,
        time: first_time([last_updated(sr)]),
    })
}

/// Map the focus resource; `hint` is the message type a Bundle's MessageHeader named.
fn map_focus<'a>(
    ctx: &Ctx<'a>,
    res: &'a Value,
    hint: Option<&'static str>,
) -> Result<Mapped<'a>, AdapterError> {
    if items(res, "contained").len() > MAX_CONTAINED {
        return Err(AdapterError::Refused(format!(
            "more than {MAX_CONTAINED} contained resources"
        )));
    }
    match (resource_type(res), hint) {
        (Some("ServiceRequest"), Some(REQUEST)) => request(ctx, res),
        (Some("ServiceRequest"), Some(_)) => request_update(ctx, res),
        (Some("ServiceRequest"), None) => match text(res, "status") {
            Some("completed" | "revoked") => request_update(ctx, res),
            _ => request(ctx, res),
        },
        (Some("DiagnosticReport" | "Task"), Some(REQUEST)) => Err(unmappable(
            "a consultation request must focus on a ServiceRequest",
        )),
        (Some("DiagnosticReport"), _) => report(ctx, res),
        (Some("Task"), _) => task(ctx, res),
        _ => Err(unmappable(format!(
            "resource type {} does not map to a consultation message",
            type_name(res)
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Envelopes

/// Decode a FHIR resource (a message Bundle or a bare DiagnosticReport/Task/ServiceRequest).
pub(super) fn envelope(root: &Value, source: &str) -> Result<Envelope, AdapterError> {
    if !root.is_object() || resource_type(root).is_none() {
        return Err(unmappable("not a FHIR resource (no resourceType)"));
    }
    if resource_type(root) == Some("Bundle") {
        return bundle(root, source);
    }
    check_modifiers(root)?;
    let ctx = Ctx {
        entries: Vec::new(),
        timestamp: None,
    };
    let mapped = map_focus(&ctx, root, None)?;
    let version = root
        .get("meta")
        .and_then(|m| text(m, "versionId"))
        .filter(|v| id_like(v));
    let message_id = match identifier_with(root, "identifier", SYS_MESSAGE_ID) {
        Some(id) => id.to_owned(),
        None => {
            let base = text(root, "id")
                .into_iter()
                .chain(
                    items(root, "identifier")
                        .iter()
                        .filter_map(|i| text(i, "value")),
                )
                .find(|v| id_like(v))
                .ok_or_else(|| unmappable("no message identifier (resource id)"))?;
            match version {
                Some(v) => format!("{base}:v{v}"),
                None => base.to_owned(),
            }
        }
    };
    let sent_at = mapped
        .time
        .ok_or_else(|| unmappable("no time the resource was issued or last modified"))?;
    Ok(Envelope {
        message_id,
        message_type: mapped.message_type.to_owned(),
        schema_version: DEFAULT_SCHEMA_VERSION.to_owned(),
        source: source.to_owned(),
        sent_at: sent_at.to_owned(),
        correlation_id: referenced_message_id(root).map(str::to_owned),
        payload: Value::Object(mapped.payload),
    })
}

const BUNDLE_TYPES: [&str; 9] = [
    "document",
    "message",
    "transaction",
    "transaction-response",
    "batch",
    "batch-response",
    "history",
    "searchset",
    "collection",
];

fn bundle(root: &Value, source: &str) -> Result<Envelope, AdapterError> {
    match text(root, "type") {
        Some("message") => {}
        Some(t) if BUNDLE_TYPES.contains(&t) => {
            return Err(unmappable(format!("a Bundle of type {t} is not a message")));
        }
        _ => return Err(unmappable("a Bundle that is not a message")),
    }
    let entries = items(root, "entry");
    if entries.len() > MAX_ENTRIES {
        return Err(AdapterError::Refused(format!(
            "a Bundle with more than {MAX_ENTRIES} entries"
        )));
    }
    let entries: Vec<(Option<&str>, &Value)> = entries
        .iter()
        .filter_map(|e| Some((text(e, "fullUrl"), e.get("resource")?)))
        .collect();
    // Every resource is checked once here; references resolve only to these (or to resources
    // contained in them), so nothing is scanned twice.
    for (_, r) in &entries {
        check_modifiers(r)?;
    }
    let header = match entries.first() {
        Some((_, h)) if resource_type(h) == Some("MessageHeader") => *h,
        _ => {
            return Err(unmappable(
                "a message Bundle must start with a MessageHeader",
            ));
        }
    };
    let ctx = Ctx {
        entries,
        timestamp: text(root, "timestamp"),
    };

    let hint = match header.get("eventCoding") {
        Some(c) if text(c, "system") == Some(SYS_MESSAGE_TYPE) => match text(c, "code") {
            Some(REQUEST) => Some(REQUEST),
            Some(RESULT) => Some(RESULT),
            Some(t) if message_type_like(t) => {
                return Err(AdapterError::UnsupportedType(t.to_owned()));
            }
            _ => return Err(unmappable("unrecognised message event")),
        },
        _ => None,
    };
    let focus = refs(header, "focus")?
        .iter()
        .find_map(|f| ctx.resolve(header, f))
        .or_else(|| {
            ctx.entries.iter().skip(1).map(|(_, r)| *r).find(|r| {
                matches!(
                    resource_type(r),
                    Some("DiagnosticReport" | "Task" | "ServiceRequest")
                )
            })
        })
        .ok_or_else(|| unmappable("the message has no focus resource in the Bundle"))?;
    let mapped = map_focus(&ctx, focus, hint)?;

    let message_id = root
        .get("identifier")
        .and_then(|i| match i {
            Value::Array(a) => a.first().and_then(|i| text(i, "value")),
            i => text(i, "value"),
        })
        .or_else(|| text(root, "id"))
        .ok_or_else(|| unmappable("no message identifier (Bundle.identifier)"))?;
    let sent_at = text(root, "timestamp")
        .or(mapped.time)
        .ok_or_else(|| unmappable("no message timestamp (Bundle.timestamp)"))?;
    let correlation_id = header
        .get("response")
        .and_then(|r| text(r, "identifier"))
        .or_else(|| referenced_message_id(focus));
    let schema_version = text(header, "definition")
        .and_then(|d| d.strip_prefix(DEFINITION_PREFIX))
        .and_then(|d| d.rsplit_once('|'))
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_SCHEMA_VERSION);
    Ok(Envelope {
        message_id: message_id.to_owned(),
        message_type: mapped.message_type.to_owned(),
        schema_version: schema_version.to_owned(),
        source: source.to_owned(),
        sent_at: sent_at.to_owned(),
        correlation_id: correlation_id.map(str::to_owned),
        payload: Value::Object(mapped.payload),
    })
}

/// A message type name (`family.kind`, lowercase) safe to repeat in an error.
fn message_type_like(s: &str) -> bool {
    s.len() <= 128
        && s.contains('.')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
}
