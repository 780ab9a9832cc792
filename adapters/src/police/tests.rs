use proptest::prelude::*;
use serde_json::{Value, json};
use wingspan_core::Envelope;

use super::*;
use crate::json_partners::testgen::{self, assert_valid, remove_path};

fn submit(material_type: &str) -> Envelope {
    Envelope {
        message_id: "enforcement-7f3a".into(),
        message_type: SUBMIT.into(),
        schema_version: "1.0".into(),
        source: "rehab".into(),
        sent_at: "2026-11-29T10:00:00+08:00".into(),
        correlation_id: None,
        payload: json!({
            "material_id": "mat-17",
            "material_type": material_type,
            "centre": {"id": "centre-03", "name": "Provincial Compulsory Isolation Rehabilitation Centre No. 3",
                       "alliance": "ma01", "division_code": "320400"},
            "person": {"person_id": "32041119900000017X", "name": "Zhou Yutong", "birth_date": "1990-03-14", "gender": "female"},
            "police_bureau": {"division_code": "320400", "name": "Changzhou Public Security Bureau"},
            "summary": "Request for treatment at Changzhou No. 2 Hospital <ward 5> & follow-up.",
            "documents": [
                {"uri": "https://docs.rehab.example/materials/17.pdf", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                 "title": "Signed request", "media_type": "application/pdf"},
                {"uri": "https://docs.rehab.example/materials/17-annex.pdf", "sha256": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
                 "title": "Annex"}
            ],
            "medical_justification": "Suspected appendicitis; surgery not available in the centre.",
            "respond_by": "2026-12-01"
        }),
    }
}

fn decision(code: &str) -> Envelope {
    Envelope {
        message_id: "psb-3204-000123".into(),
        message_type: DECISION.into(),
        schema_version: "1.0".into(),
        source: "police".into(),
        sent_at: "2026-11-30T15:20:00+08:00".into(),
        correlation_id: Some("enforcement-7f3a".into()),
        payload: json!({
            "material_id": "mat-17",
            "police_case_number": "JS-CZ-2026-000123",
            "decision": code,
            "reasons": ["The annex is unsigned.", "Dates do not match <the register>."],
            "requested_materials": ["Signed annex"],
            "decided_at": "2026-11-30T15:19:00+08:00",
            "bureau": {"id": "psb-3204", "name": "Changzhou Public Security Bureau"}
        }),
    }
}

fn inbound(bytes: &[u8]) -> Inbound<'_> {
    Inbound {
        source: "police",
        content_type: Some("application/xml"),
        bytes,
    }
}

fn encode(e: &Envelope) -> Result<Vec<u8>, AdapterError> {
    Police
        .encode(
            Canonical {
                envelope: e,
                bytes: None,
            },
            None,
        )
        .map(|x| x.body.into_owned())
}

/// The round-trip expectation: source from the inbound, the alliance never sent, the medical
/// justification only for outside medical treatment.
fn expected(e: &Envelope) -> Envelope {
    let mut want = e.clone();
    want.source = "police".into();
    remove_path(&mut want.payload, "centre.alliance");
    if want.payload["material_type"] != json!(OUTSIDE_MEDICAL) {
        remove_path(&mut want.payload, "medical_justification");
    }
    want
}

fn round_trip(e: &Envelope) -> Envelope {
    let bytes = encode(e).unwrap_or_else(|err| panic!("encode: {err}"));
    Police
        .decode(inbound(&bytes))
        .unwrap_or_else(|err| panic!("decode: {err}\n{}", String::from_utf8_lossy(&bytes)))
}

fn decode_err(bytes: &[u8]) -> AdapterError {
    match Police.decode(inbound(bytes)) {
        Ok(e) => panic!("accepted {}: {e:?}", String::from_utf8_lossy(bytes)),
        Err(e) => e,
    }
}

fn text_of(e: &Envelope) -> String {
    String::from_utf8(encode(e).expect("encode")).expect("utf-8")
}

// ── Round trips ──────────────────────────────────────────────────────────────────────────────

#[test]
fn every_material_type_and_decision_round_trips() {
    for (t, _) in MATERIAL_TYPES {
        let e = submit(t);
        assert_valid(&e);
        let back = round_trip(&e);
        assert_eq!(back, expected(&e), "{t}");
        assert_valid(&back);
    }
    for (d, _) in DECISIONS {
        let e = decision(d);
        assert_valid(&e);
        let back = round_trip(&e);
        assert_eq!(back, expected(&e), "{d}");
        assert_valid(&back);
    }
}

#[test]
fn medical_justification_is_written_only_for_outside_medical_treatment() {
    let outside = text_of(&submit(OUTSIDE_MEDICAL));
    assert!(outside.contains("<MedicalJustification>Suspected appendicitis"));
    for (t, _) in MATERIAL_TYPES.iter().filter(|(t, _)| *t != OUTSIDE_MEDICAL) {
        let doc = text_of(&submit(t));
        assert!(!doc.contains("MedicalJustification"), "{t}");
        assert!(!doc.contains("appendicitis"), "{t}");
    }
    // The alliance is never written.
    assert!(!outside.contains("ma01"));
}

#[test]
fn minimal_documents_round_trip() {
    let mut s = submit("release_notice");
    let p = &mut s.payload;
    for path in [
        "centre.alliance",
        "centre.division_code",
        "person.birth_date",
        "person.gender",
        "police_bureau.name",
        "medical_justification",
        "respond_by",
    ] {
        remove_path(p, path);
    }
    if let Some(docs) = p["documents"].as_array_mut() {
        docs.truncate(1);
        remove_path(&mut docs[0], "media_type");
    }
    assert_valid(&s);
    assert_eq!(round_trip(&s), expected(&s));

    let mut d = decision("approved");
    d.correlation_id = None;
    for path in ["reasons", "requested_materials", "bureau"] {
        remove_path(&mut d.payload, path);
    }
    assert_valid(&d);
    assert_eq!(round_trip(&d), expected(&d));

    // An empty list keeps its wrapper and comes back empty, not absent.
    let mut d = decision("approved");
    d.payload["reasons"] = json!([]);
    assert!(text_of(&d).contains("<Reasons/>\n"));
    assert_eq!(round_trip(&d), expected(&d));
}

#[test]
fn carriage_returns_specials_and_non_ascii_survive() {
    let mut e = submit(OUTSIDE_MEDICAL);
    e.payload["summary"] = json!(" line 1\r\nline 2\r<&>\"' 中文 😀\t ");
    e.payload["person"]["name"] = json!("  ");
    let doc = text_of(&e);
    assert!(doc.contains("&#13;") && doc.contains("&lt;&amp;&gt;"));
    assert_eq!(round_trip(&e), expected(&e));
}

#[test]
fn header_carries_ids_type_version_time_and_reply_to() {
    let doc = text_of(&decision("rejected"));
    for needle in [
        "<ExchangeDocument xmlns=\"urn:wingspan:police:exchange:1\">",
        "<DocumentId>psb-3204-000123</DocumentId>",
        "<DocumentType>enforcement.material.decision</DocumentType>",
        "<SchemaVersion>1.0</SchemaVersion>",
        "<SentAt>2026-11-30T15:20:00+08:00</SentAt>",
        "<InReplyTo>enforcement-7f3a</InReplyTo>",
        "<Decision>Rejected</Decision>",
    ] {
        assert!(doc.contains(needle), "{needle} in\n{doc}");
    }
}

// ── Namespaces ───────────────────────────────────────────────────────────────────────────────

const PREFIXED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- written by the police system -->
<ps:ExchangeDocument xmlns:ps="urn:wingspan:police:exchange:1" xmlns:x="urn:psb:internal" x:batch="7">
  <ps:Header>
    <ps:SentAt>2026-11-30T15:20:00+08:00</ps:SentAt>
    <ps:DocumentId> psb-3204-000123 </ps:DocumentId>
    <ps:DocumentType>enforcement.material.decision</ps:DocumentType>
    <ps:SchemaVersion>1.0</ps:SchemaVersion>
    <ps:InReplyTo>enforcement-7f3a</ps:InReplyTo>
    <x:Operator>Officer 0042</x:Operator>
  </ps:Header>
  <ps:MaterialDecision>
    <ps:MaterialId>mat-17</ps:MaterialId>
    <ps:PoliceCaseNumber>JS-CZ-2026-000123</ps:PoliceCaseNumber>
    <ps:Decision>Rejected</ps:Decision>
    <ps:Reasons>
      <ps:Reason>The annex is unsigned.</ps:Reason>
      <x:Internal>do not forward</x:Internal>
      <ps:Reason><![CDATA[Dates do not match <the register>.]]></ps:Reason>
    </ps:Reasons>
    <ps:RequestedMaterials><ps:RequestedMaterial>Signed annex</ps:RequestedMaterial></ps:RequestedMaterials>
    <ps:DecidedAt>2026-11-30T15:19:00+08:00</ps:DecidedAt>
    <Bureau xmlns="urn:wingspan:police:exchange:1"><BureauId>psb-3204</BureauId><Name>Changzhou Public Security Bureau</Name></Bureau>
  </ps:MaterialDecision>
  <x:Signature>…</x:Signature>
</ps:ExchangeDocument>"#;

#[test]
fn any_prefix_default_namespace_and_foreign_elements_decode_identically() {
    let ours = encode(&decision("rejected")).expect("encode");
    let a = Police.decode(inbound(&ours)).expect("ours");
    let b = Police
        .decode(inbound(PREFIXED.as_bytes()))
        .expect("prefixed");
    assert_eq!(a, b);
    assert_eq!(b, expected(&decision("rejected")));
}

#[test]
fn namespace_mistakes_are_typed() {
    let ours = text_of(&decision("approved"));
    // The right names in another namespace are not our document.
    let other = ours.replace(NS, "urn:wingspan:police:exchange:2");
    assert!(matches!(
        decode_err(other.as_bytes()),
        AdapterError::Unmappable(_)
    ));
    // An undeclared prefix is not well-formed in the namespace sense.
    let undeclared = ours
        .replace("<MaterialId>", "<q:MaterialId>")
        .replace("</MaterialId>", "</q:MaterialId>");
    assert!(matches!(
        decode_err(undeclared.as_bytes()),
        AdapterError::Malformed { .. }
    ));
    // No namespace at all.
    let none = ours.replace(&format!(" xmlns=\"{NS}\""), "");
    assert!(matches!(
        decode_err(none.as_bytes()),
        AdapterError::Unmappable(_)
    ));
}

// ── Errors ───────────────────────────────────────────────────────────────────────────────────

#[test]
fn hostile_documents_are_refused() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/hostile/xml");
    for name in [
        "defusedxml-xmlbomb.xml",
        "defusedxml-xmlbomb2.xml",
        "defusedxml-quadratic.xml",
        "defusedxml-dtd.xml",
        "defusedxml-external.xml",
        "defusedxml-external_file.xml",
        "defusedxml-cyclic.xml",
    ] {
        let bytes = std::fs::read(dir.join(name)).expect("corpus");
        assert!(
            matches!(decode_err(&bytes), AdapterError::Refused(_)),
            "{name}"
        );
    }
    let ours = text_of(&submit("release_notice"));
    let with_doctype = ours.replacen("?>\n", "?>\n<!DOCTYPE ExchangeDocument>\n", 1);
    assert!(matches!(
        decode_err(with_doctype.as_bytes()),
        AdapterError::Refused(_)
    ));
    let entity = ours.replace("Zhou Yutong", "&name;");
    assert!(matches!(
        decode_err(entity.as_bytes()),
        AdapterError::Refused(_)
    ));
    let pi = ours.replacen("?>\n", "?>\n<?xml-stylesheet href=\"x\"?>\n", 1);
    assert!(matches!(
        decode_err(pi.as_bytes()),
        AdapterError::Refused(_)
    ));
    let bom = [&[0xEF, 0xBB, 0xBF][..], ours.as_bytes()].concat();
    assert!(matches!(decode_err(&bom), AdapterError::Refused(_)));
}

#[test]
fn decode_errors_are_typed_and_quote_no_data() {
    let ours = text_of(&submit(OUTSIDE_MEDICAL));
    assert!(matches!(
        decode_err(b"<ExchangeDocument"),
        AdapterError::Malformed { .. }
    ));
    assert!(matches!(decode_err(b""), AdapterError::Malformed { .. }));
    assert!(matches!(
        Police.decode(Inbound {
            content_type: Some("application/json"),
            ..inbound(ours.as_bytes())
        }),
        Err(AdapterError::UnsupportedContentType(_))
    ));
    let cases: Vec<(String, &str)> = vec![
        (
            format!("<Invoice xmlns=\"{NS}\"/>"),
            "unknown document kind",
        ),
        (
            ours.replace("<MaterialSubmission>", "<MaterialNotice>")
                .replace("</MaterialSubmission>", "</MaterialNotice>"),
            "unknown body",
        ),
        (
            ours.replace("<Summary>", "<Remark>Zhou Yutong</Remark><Summary>"),
            "unknown element of ours",
        ),
        (
            ours.replace("<MaterialId>mat-17</MaterialId>", ""),
            "missing MaterialId",
        ),
        (
            ours.replace(
                "<MaterialId>mat-17</MaterialId>",
                "<MaterialId>  </MaterialId>",
            ),
            "empty MaterialId",
        ),
        (
            ours.replace("OutsideMedicalTreatment", "Zhou Yutong"),
            "unknown material type",
        ),
        (
            ours.replace("<Gender>2</Gender>", "<Gender>Zhou Yutong</Gender>"),
            "unknown gender",
        ),
        (
            ours.replace(
                "enforcement.material.submit",
                "enforcement.material.decision",
            ),
            "type mismatch",
        ),
        (
            ours.replace("<Header>", "<Hdr>")
                .replace("</Header>", "</Hdr>"),
            "unknown header element",
        ),
        (
            ours.replace(
                "<Name>Zhou Yutong</Name>",
                "<Name><PersonId>x</PersonId></Name>",
            ),
            "element inside a leaf",
        ),
        (
            ours.replace("OutsideMedicalTreatment", "ReleaseNotice"),
            "medical justification on another material type",
        ),
        (
            {
                let start = ours.find("<Documents>").unwrap_or(0);
                let end = ours
                    .find("</Documents>")
                    .map_or(0, |i| i + "</Documents>".len());
                format!("{}<Documents></Documents>{}", &ours[..start], &ours[end..])
            },
            "no document reference",
        ),
    ];
    for (doc, what) in cases {
        let err = decode_err(doc.as_bytes());
        assert!(
            matches!(err, AdapterError::Unmappable(_)),
            "{what}: {err:?}"
        );
        assert!(!err.to_string().contains("Zhou"), "{what}: {err}");
    }
    let dup = ours.replace(
        "<MaterialId>mat-17</MaterialId>",
        "<MaterialId>mat-17</MaterialId><MaterialId>mat-18</MaterialId>",
    );
    assert!(matches!(
        decode_err(dup.as_bytes()),
        AdapterError::Refused(_)
    ));
}

#[test]
fn encode_errors_are_typed() {
    let mut e = submit("release_notice");
    e.payload["summary"] = json!("bell \u{7}");
    assert_eq!(
        encode(&e),
        Err(AdapterError::Encode(
            "Summary contains a character XML 1.0 cannot carry".into()
        ))
    );
    let mut e = submit("release_notice");
    e.sent_at = "2026-11-29t10:00:00z".into();
    assert!(matches!(encode(&e), Err(AdapterError::Encode(_))));
    let mut e = submit("release_notice");
    e.payload["documents"] = json!([]);
    assert!(matches!(encode(&e), Err(AdapterError::Encode(_))));
    let mut e = submit("release_notice");
    remove_path(&mut e.payload, "documents");
    assert!(matches!(encode(&e), Err(AdapterError::Encode(_))));
    let mut e = submit("release_notice");
    remove_path(&mut e.payload, "person.name");
    assert_eq!(
        encode(&e),
        Err(AdapterError::Encode(
            "person.name is required by the police document".into()
        ))
    );
    let mut e = submit("release_notice");
    e.payload["material_type"] = json!("parole");
    assert!(matches!(encode(&e), Err(AdapterError::Encode(_))));
    let mut e = submit("release_notice");
    e.message_type = "referral.handover".into();
    assert!(matches!(encode(&e), Err(AdapterError::UnsupportedType(_))));
    assert!(matches!(
        Police.encode(
            Canonical {
                envelope: &submit("release_notice"),
                bytes: None
            },
            Some("application/json")
        ),
        Err(AdapterError::UnsupportedContentType(_))
    ));
}

#[test]
fn xml_schema_date_forms() {
    for ok in ["2026-11-29", "2024-02-29", "0001-01-01"] {
        assert!(xs_date(ok), "{ok}");
    }
    for bad in [
        "2026-11-31",
        "2023-02-29",
        "0000-01-01",
        "2026-1-01",
        "2026-13-01",
        "2026-11-29Z",
        "２０２６-11-29",
    ] {
        assert!(!xs_date(bad), "{bad}");
    }
    for ok in [
        "2026-11-29T10:00:00Z",
        "2026-11-29T23:59:59.123456+08:00",
        "2026-11-29T00:00:00-14:00",
        "2026-11-29T00:00:00+13:59",
    ] {
        assert!(xs_date_time(ok), "{ok}");
    }
    for bad in [
        "2026-11-29t10:00:00z",
        "2026-11-29 10:00:00Z",
        "2026-11-29T10:00:60Z",
        "2026-11-29T24:00:00Z",
        "2026-11-29T10:00:00",
        "2026-11-29T10:00:00.Z",
        "2026-11-29T10:00:00+14:30",
        "2026-11-29T10:00:00+0800",
        "2026-11-29T10:00Z",
    ] {
        assert!(!xs_date_time(bad), "{bad}");
    }
}

// ── Properties ───────────────────────────────────────────────────────────────────────────────

fn check_round_trip(e: &Envelope) -> Result<(), TestCaseError> {
    assert_valid(e);
    let bytes = encode(e).map_err(|err| TestCaseError::fail(err.to_string()))?;
    let back = Police
        .decode(inbound(&bytes))
        .map_err(|err| TestCaseError::fail(err.to_string()))?;
    prop_assert_eq!(back, expected(e));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn submissions_round_trip(e in testgen::envelope(SUBMIT, testgen::material_submit())) {
        check_round_trip(&e)?;
    }

    #[test]
    fn decisions_round_trip(e in testgen::envelope(DECISION, testgen::material_decision())) {
        check_round_trip(&e)?;
    }

    /// Arbitrary bytes, and our own document cut anywhere: a typed result, never a panic.
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), cut in 0usize..4000) {
        let _ = Police.decode(inbound(&bytes));
        let doc = encode(&submit(OUTSIDE_MEDICAL)).expect("encode");
        let _ = Police.decode(inbound(doc.get(..cut).unwrap_or(&doc)));
    }
}

#[test]
fn payload_values_of_the_wrong_type_are_encode_errors_not_panics() {
    for (path, v) in [
        ("summary", json!(5)),
        ("person", json!("x")),
        ("documents", json!({})),
        ("documents", json!([1])),
        ("centre", Value::Null),
    ] {
        let mut e = submit(OUTSIDE_MEDICAL);
        e.payload[path] = v;
        assert!(matches!(encode(&e), Err(AdapterError::Encode(_))), "{path}");
    }
    let mut e = decision("rejected");
    e.payload["reasons"] = json!([1]);
    assert!(matches!(encode(&e), Err(AdapterError::Encode(_))));
    let mut e = decision("rejected");
    e.payload = json!([]);
    assert!(matches!(encode(&e), Err(AdapterError::Encode(_))));
}

/// Throughput of encode + decode on a ~2 KB submission (run in release: `--ignored`).
#[test]
#[ignore = "measurement; run with --release -- --ignored"]
fn throughput() {
    let e = submit(OUTSIDE_MEDICAL);
    let bytes = encode(&e).expect("encode");
    let n = 20_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let b = encode(&e).expect("encode");
        std::hint::black_box(b);
    }
    let enc = start.elapsed();
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(Police.decode(inbound(&bytes)).expect("decode"));
    }
    let dec = start.elapsed();
    eprintln!(
        "police ({} bytes): encode {:.0}/s, decode {:.0}/s",
        bytes.len(),
        f64::from(n) / enc.as_secs_f64(),
        f64::from(n) / dec.as_secs_f64()
    );
}
