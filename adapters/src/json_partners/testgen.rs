//! Test-only: random canonical messages (every optional field present or not, text with XML
//! specials, quotes, control whitespace and non-ASCII), the schema catalogue to check them
//! against, and helpers shared by the police and JSON partner tests.

use std::path::Path;
use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde_json::{Map, Value};
use wingspan_core::schema::SchemaDoc;
use wingspan_core::{Envelope, SchemaCatalog};

/// The canonical schemas of `schemas/v1`, compiled once.
pub fn catalog() -> &'static SchemaCatalog {
    static CATALOG: OnceLock<SchemaCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/v1");
        let mut docs = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("schemas/v1").flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".schema.json") else {
                continue;
            };
            let text = std::fs::read_to_string(entry.path()).expect("read schema");
            docs.push(SchemaDoc {
                major: 1,
                name: name.to_owned(),
                origin: file.clone(),
                schema: serde_json::from_str(&text).expect("schema JSON"),
            });
        }
        SchemaCatalog::compile(&docs).expect("schemas compile")
    })
}

/// The payload schema document of a message type.
pub fn schema(message_type: &str) -> &'static Value {
    catalog()
        .payload_schema(message_type)
        .expect("known message type")
}

/// Panics unless the envelope and its payload are valid canonical messages.
pub fn assert_valid(env: &Envelope) {
    let value = serde_json::to_value(env).expect("envelope JSON");
    if let Err(v) = catalog().validate_envelope(&value) {
        panic!("envelope invalid: {v:?}\n{value:#}");
    }
    if let Err(e) = catalog().validate_payload(1, &env.message_type, &env.payload) {
        panic!("payload invalid: {e:?}\n{:#}", env.payload);
    }
}

/// Remove a dotted path (`centre.alliance`) from a payload, if present.
pub fn remove_path(payload: &mut Value, dotted: &str) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut at = payload;
    for p in parts {
        match at.get_mut(p) {
            Some(v) => at = v,
            None => return,
        }
    }
    if let Some(m) = at.as_object_mut() {
        m.remove(last);
    }
}

/// Free text of 1..=max characters drawn from XML specials, quotes, whitespace (CR included)
/// and non-ASCII.
pub fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(
        "[a-zA-Z0-9 <>&\"'\\t\\n\\r\u{4E2D}\u{6587}\u{E9}\u{20AC}\u{1F600}]{{1,{max}}}"
    ))
    .expect("regex")
}

pub fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._:-]{0,30}"
}

pub fn division() -> impl Strategy<Value = String> {
    "[0-9]{6}"
}

pub fn date() -> impl Strategy<Value = String> {
    (1950u32..2040, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
}

pub fn date_time() -> impl Strategy<Value = String> {
    (
        date(),
        0u32..24,
        0u32..60,
        0u32..60,
        option::of("[0-9]{1,6}"),
        prop::sample::select(vec!["Z", "+08:00", "-05:30", "+14:00"]),
    )
        .prop_map(|(d, h, m, s, frac, tz)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{d}T{h:02}:{m:02}:{s:02}{frac}{tz}")
        })
}

fn one_of(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(items).prop_map(str::to_owned)
}

/// An object from (key, value if present) pairs.
pub fn obj<const N: usize>(pairs: [(&str, Option<Value>); N]) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    }
    Value::Object(m)
}

fn s(v: String) -> Option<Value> {
    Some(Value::String(v))
}

fn os(v: Option<String>) -> Option<Value> {
    v.map(Value::String)
}

fn texts(v: Option<Vec<String>>) -> Option<Value> {
    v.map(|items| Value::Array(items.into_iter().map(Value::String).collect()))
}

pub fn person() -> impl Strategy<Value = Value> {
    (
        "[0-9]{17}[0-9X]",
        text(40),
        option::of(date()),
        option::of(one_of(&["male", "female", "unknown"])),
    )
        .prop_map(|(pid, name, birth, gender)| {
            obj([
                ("person_id", s(pid)),
                ("name", s(name)),
                ("birth_date", os(birth)),
                ("gender", os(gender)),
            ])
        })
}

pub fn centre() -> impl Strategy<Value = Value> {
    (id(), text(40), option::of(id()), option::of(division())).prop_map(
        |(cid, name, alliance, div)| {
            obj([
                ("id", s(cid)),
                ("name", s(name)),
                ("alliance", os(alliance)),
                ("division_code", os(div)),
            ])
        },
    )
}

fn unit() -> impl Strategy<Value = Value> {
    (id(), text(40)).prop_map(|(uid, name)| obj([("id", s(uid)), ("name", s(name))]))
}

fn substance_history() -> impl Strategy<Value = Option<Value>> {
    option::of(vec((text(20), option::of(date())), 0..3)).prop_map(|items| {
        items.map(|items| {
            Value::Array(
                items
                    .into_iter()
                    .map(|(substance, since)| {
                        obj([("substance", s(substance)), ("since", os(since))])
                    })
                    .collect(),
            )
        })
    })
}

/// A whole envelope around a payload strategy; `message_type` fixes the type.
pub fn envelope(
    message_type: &'static str,
    payload: impl Strategy<Value = Value>,
) -> impl Strategy<Value = Envelope> {
    (
        "[A-Za-z0-9][A-Za-z0-9._:-]{0,127}",
        "1\\.[0-9]{1,3}",
        date_time(),
        option::of(id()),
        payload,
    )
        .prop_map(
            move |(message_id, schema_version, sent_at, correlation_id, payload)| Envelope {
                message_id,
                message_type: message_type.to_owned(),
                schema_version,
                source: "rehab".to_owned(),
                sent_at,
                correlation_id,
                payload,
            },
        )
}

pub fn material_submit() -> impl Strategy<Value = Value> {
    let document = (
        "https://docs\\.example/[a-z0-9]{1,12}\\.pdf",
        "[0-9a-f]{64}",
        text(40),
        option::of(text(30)),
    )
        .prop_map(|(uri, sha, title, media)| {
            obj([
                ("uri", s(uri)),
                ("sha256", s(sha)),
                ("title", s(title)),
                ("media_type", os(media)),
            ])
        });
    (
        (
            id(),
            one_of(&[
                "admission_receipt",
                "release_notice",
                "term_extension_request",
                "early_release_request",
                "outside_medical_treatment",
            ]),
            centre(),
            person(),
            (division(), option::of(text(40))),
        ),
        (
            text(60),
            vec(document, 1..4),
            option::of(text(60)),
            option::of(date()),
        ),
    )
        .prop_map(
            |((mid, kind, centre, person, (bdiv, bname)), (summary, docs, just, respond))| {
                obj([
                    ("material_id", s(mid)),
                    ("material_type", s(kind)),
                    ("centre", Some(centre)),
                    ("person", Some(person)),
                    (
                        "police_bureau",
                        Some(obj([("division_code", s(bdiv)), ("name", os(bname))])),
                    ),
                    ("summary", s(summary)),
                    ("documents", Some(Value::Array(docs))),
                    ("medical_justification", os(just)),
                    ("respond_by", os(respond)),
                ])
            },
        )
}

pub fn material_decision() -> impl Strategy<Value = Value> {
    (
        id(),
        text(40),
        one_of(&["approved", "rejected", "more_material_needed"]),
        option::of(vec(text(40), 0..3)),
        option::of(vec(text(40), 0..3)),
        date_time(),
        option::of(unit()),
    )
        .prop_map(
            |(mid, case, decision, reasons, requested, decided, bureau)| {
                obj([
                    ("material_id", s(mid)),
                    ("police_case_number", s(case)),
                    ("decision", s(decision)),
                    ("reasons", texts(reasons)),
                    ("requested_materials", texts(requested)),
                    ("decided_at", s(decided)),
                    ("bureau", bureau),
                ])
            },
        )
}

pub fn transfer_request() -> impl Strategy<Value = Value> {
    (
        id(),
        option::of(id()),
        centre(),
        person(),
        (text(60), division()),
        text(60),
        option::of(date_time()),
    )
        .prop_map(|(tid, cid, centre, person, (addr, div), condition, at)| {
            obj([
                ("transfer_id", s(tid)),
                ("consultation_id", os(cid)),
                ("centre", Some(centre)),
                ("person", Some(person)),
                (
                    "pickup",
                    Some(obj([("address", s(addr)), ("division_code", s(div))])),
                ),
                ("condition", s(condition)),
                ("requested_at", os(at)),
            ])
        })
}

pub fn transfer_ack() -> impl Strategy<Value = Value> {
    (
        id(),
        text(40),
        one_of(&["dispatched", "declined"]),
        option::of(0u32..=1440),
        date_time(),
    )
        .prop_map(|(tid, did, status, eta, at)| {
            obj([
                ("transfer_id", s(tid)),
                ("dispatch_id", s(did)),
                ("status", s(status)),
                ("eta_minutes", eta.map(Value::from)),
                ("acknowledged_at", s(at)),
            ])
        })
}

/// A consultation request of the given urgency, clinical fields randomly present.
pub fn consultation_request(urgency: &'static str) -> impl Strategy<Value = Value> {
    (
        (id(), centre(), person(), text(30), text(60)),
        (
            option::of(text(80)),
            substance_history(),
            option::of(vec(text(30), 0..3)),
            option::of(date_time()),
        ),
    )
        .prop_map(
            move |((cid, centre, person, specialty, reason), (summary, history, meds, at))| {
                obj([
                    ("consultation_id", s(cid)),
                    ("urgency", s(urgency.to_owned())),
                    ("centre", Some(centre)),
                    ("person", Some(person)),
                    ("specialty", s(specialty)),
                    ("reason", s(reason)),
                    ("clinical_summary", os(summary)),
                    ("substance_history", history),
                    ("medications", texts(meds)),
                    ("requested_at", os(at)),
                ])
            },
        )
}

/// A handover; `employment` / `subsistence` fix those flags when given.
pub fn handover(
    employment: Option<bool>,
    subsistence: Option<bool>,
) -> impl Strategy<Value = Value> {
    let flag = |fixed: Option<bool>| match fixed {
        Some(b) => Just(b).boxed(),
        None => any::<bool>().boxed(),
    };
    (
        (
            id(),
            person(),
            centre(),
            date(),
            (division(), text(60)),
            one_of(&["aftercare", "community_rehabilitation"]),
            option::of(1u32..=120),
        ),
        (
            flag(employment),
            flag(subsistence),
            option::of(vec(text(30), 0..3)),
            option::of("[0-9+ -]{5,20}"),
            substance_history(),
            option::of(text(80)),
        ),
    )
        .prop_map(
            |(
                (rid, person, centre, release, (div, addr), kind, months),
                (emp, sub, skills, phone, history, summary),
            )| {
                obj([
                    ("referral_id", s(rid)),
                    ("person", Some(person)),
                    ("centre", Some(centre)),
                    ("release_date", s(release)),
                    (
                        "residence",
                        Some(obj([("division_code", s(div)), ("address", s(addr))])),
                    ),
                    ("supervision_type", s(kind)),
                    ("supervision_months", months.map(Value::from)),
                    ("employment_needed", Some(Value::Bool(emp))),
                    ("subsistence_eligible", Some(Value::Bool(sub))),
                    ("skills", texts(skills)),
                    ("contact_phone", os(phone)),
                    ("substance_history", history),
                    ("clinical_summary", os(summary)),
                ])
            },
        )
}

pub fn referral_ack() -> impl Strategy<Value = Value> {
    (
        id(),
        unit(),
        any::<bool>(),
        option::of(text(40)),
        option::of(text(60)),
        date_time(),
    )
        .prop_map(|(rid, unit, accepted, officer, reason, at)| {
            obj([
                ("referral_id", s(rid)),
                ("receiving_unit", Some(unit)),
                ("accepted", Some(Value::Bool(accepted))),
                ("case_officer", os(officer)),
                ("reason", os(reason)),
                ("acknowledged_at", s(at)),
            ])
        })
}

/// An outcome with one of `outcomes`.
pub fn referral_outcome(outcomes: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        id(),
        unit(),
        one_of(outcomes),
        option::of(text(60)),
        option::of(date()),
    )
        .prop_map(|(rid, unit, outcome, details, effective)| {
            obj([
                ("referral_id", s(rid)),
                ("receiving_unit", Some(unit)),
                ("outcome", s(outcome)),
                ("details", os(details)),
                ("effective_date", os(effective)),
            ])
        })
}
