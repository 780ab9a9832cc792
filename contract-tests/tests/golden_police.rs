//! The police exchange document against its golden files, both ways, and against the
//! published XSD (`schemas/police/exchange-1.xsd`) with xmllint.
//!
//! - `golden/police/encode/<case>.xml`: what the adapter writes for a canonical message, and
//!   `<case>.decoded.json`: what reading it back gives (the round trip, minus what police never
//!   receive);
//! - `golden/police/decode/<case>.wire.xml`: documents as the police system writes them
//!   (hand-written fixtures: other prefixes, comments, extension elements), and
//!   `<case>.canonical.json`: the canonical message they become.
//!
//! `UPDATE_GOLDEN=1` rewrites the golden outputs (never the `.wire.xml` inputs).

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use wingspan_adapters::police::Police;
use wingspan_adapters::{Adapter, AdapterError, Canonical, Inbound};
use wingspan_core::Envelope;
use wingspan_sim::golden::{self, Kind};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xsd() -> PathBuf {
    root().join("schemas/police/exchange-1.xsd")
}

fn submission(material_type: &str) -> Envelope {
    Envelope {
        message_id: "enforcement-3f2c9a".into(),
        message_type: "enforcement.material.submit".into(),
        schema_version: "1.0".into(),
        source: "rehab".into(),
        sent_at: "2026-11-29T10:00:00+08:00".into(),
        correlation_id: None,
        payload: json!({
            "material_id": "mat-2026-0117",
            "material_type": material_type,
            "centre": {"id": "centre-03", "name": "Provincial Compulsory Isolation Rehabilitation Centre No. 3",
                       "alliance": "ma01", "division_code": "320400"},
            "person": {"person_id": "320411199000000117", "name": "Li Wenjing", "birth_date": "1990-03-14", "gender": "female"},
            "police_bureau": {"division_code": "320400", "name": "Changzhou Public Security Bureau"},
            "summary": "Request & notice for \"online\" approval <batch 7>.",
            "documents": [
                {"uri": "https://docs.rehab.example/materials/mat-2026-0117.pdf",
                 "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                 "title": "Signed notice", "media_type": "application/pdf"},
                {"uri": "https://docs.rehab.example/materials/mat-2026-0117-annex.pdf",
                 "sha256": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
                 "title": "Annex: ward register extract"}
            ],
            "medical_justification": "Suspected appendicitis; surgery is not available in the centre.",
            "respond_by": "2026-12-01"
        }),
    }
}

fn decision(code: &str, extra: Value) -> Envelope {
    let mut payload = json!({
        "material_id": "mat-2026-0117",
        "police_case_number": "JS-CZ-2026-000123",
        "decision": code,
        "decided_at": "2026-11-30T15:19:00+08:00",
        "bureau": {"id": "psb-3204", "name": "Changzhou Public Security Bureau"}
    });
    if let (Some(p), Value::Object(extra)) = (payload.as_object_mut(), extra) {
        p.extend(extra);
    }
    Envelope {
        message_id: "psb-3204-000123".into(),
        message_type: "enforcement.material.decision".into(),
        schema_version: "1.0".into(),
        source: "police".into(),
        sent_at: "2026-11-30T15:20:00+08:00".into(),
        correlation_id: Some("enforcement-3f2c9a".into()),
        payload,
    }
}

fn encode_cases() -> Vec<(&'static str, Envelope)> {
    let mut minimal = submission("admission_receipt");
    if let Some(p) = minimal.payload.as_object_mut() {
        p.remove("medical_justification");
        p.remove("respond_by");
        p["centre"] = json!({"id": "centre-03", "name": "Provincial Compulsory Isolation Rehabilitation Centre No. 3"});
        p["person"] = json!({"person_id": "320411199000000117", "name": "Li Wenjing"});
        p["police_bureau"] = json!({"division_code": "320400"});
        p["documents"] = json!([{"uri": "https://docs.rehab.example/materials/mat-2026-0117.pdf",
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "title": "Admission receipt"}]);
    }
    vec![
        (
            "submission-outside-medical-treatment",
            submission("outside_medical_treatment"),
        ),
        // The canonical message carries a medical justification: it is not written.
        ("submission-release-notice", submission("release_notice")),
        ("submission-minimal", minimal),
        ("decision-approved", decision("approved", json!({}))),
        (
            "decision-rejected",
            decision(
                "rejected",
                json!({"reasons": ["The annex is unsigned.", "Release date differs from the register."]}),
            ),
        ),
        (
            "decision-more-material-needed",
            decision(
                "more_material_needed",
                json!({"requested_materials": ["Signed annex", "Copy of the admission decision"]}),
            ),
        ),
    ]
}

fn encode(env: &Envelope) -> Result<Vec<u8>, AdapterError> {
    Police
        .encode(
            Canonical {
                envelope: env,
                bytes: None,
            },
            None,
        )
        .map(|e| {
            assert_eq!(e.content_type, "application/xml");
            e.body.into_owned()
        })
}

fn decode(bytes: &[u8]) -> Result<Envelope, AdapterError> {
    Police.decode(Inbound {
        source: "police",
        content_type: Some("application/xml"),
        bytes,
    })
}

fn pretty(env: &Envelope) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(env).expect("json");
    out.push(b'\n');
    out
}

#[test]
fn canonical_in_police_xml_out() {
    let mut files = Vec::new();
    for (name, env) in encode_cases() {
        golden::assert_canonical(&env, name);
        let xml = encode(&env).unwrap_or_else(|e| panic!("{name}: {e}"));
        golden::check(&format!("police/encode/{name}.xml"), &xml, Kind::Xml);
        let back = decode(&xml).unwrap_or_else(|e| panic!("{name}: {e}"));
        golden::assert_canonical(&back, name);
        assert_eq!(back, round_trip_expectation(&env), "{name}");
        golden::check(
            &format!("police/encode/{name}.decoded.json"),
            &pretty(&back),
            Kind::Json,
        );
        files.push(golden::path(&format!("police/encode/{name}.xml")));
    }
    // The golden files hold what was just written (checked above): they must be schema-valid.
    if let Err(e) = xmllint(&files) {
        panic!("golden police documents do not validate against the XSD:\n{e}");
    }
}

fn wire_fixtures() -> Vec<(String, PathBuf)> {
    let dir = golden::path("police/decode");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let case = file.strip_suffix(".wire.xml")?.to_owned();
            Some((case, e.path()))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn police_xml_in_canonical_out() {
    let fixtures = wire_fixtures();
    assert!(fixtures.len() >= 3, "decode fixtures missing");
    let files: Vec<PathBuf> = fixtures.iter().map(|(_, p)| p.clone()).collect();
    if let Err(e) = xmllint(&files) {
        panic!("police fixtures do not validate against the XSD:\n{e}");
    }
    for (case, path) in fixtures {
        let bytes = std::fs::read(&path).expect("fixture");
        let env = decode(&bytes).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(env.source, "police");
        golden::assert_canonical(&env, &case);
        golden::check(
            &format!("police/decode/{case}.canonical.json"),
            &pretty(&env),
            Kind::Json,
        );
    }
}

/// Run xmllint with the published XSD over `files`; `Ok` when all validate, else its output.
fn xmllint(files: &[PathBuf]) -> Result<(), String> {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--nonet")
        .arg("--schema")
        .arg(xsd())
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!("xmllint is required for this test (apt-get install libxml2-utils): {e}")
        });
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wingspan-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_xsd_check_fails_on_a_document_outside_the_schema() {
    let tmp = TempDir::new("police-xsd-negative");
    let good = encode(&submission("release_notice")).expect("encode");
    let text = String::from_utf8(good).expect("utf-8");
    let bad = [
        ("type", text.replace("ReleaseNotice", "Parole")),
        (
            "order",
            text.replace("<MaterialId>mat-2026-0117</MaterialId>\n", "")
                .replace(
                    "<Summary>",
                    "<MaterialId>mat-2026-0117</MaterialId><Summary>",
                ),
        ),
        ("hash", text.replace("9f86d0", "XYZ")),
    ];
    for (name, doc) in bad {
        // Still decodable by the (lenient) adapter or not; the schema must say no.
        let file = tmp.0.join(format!("{name}.xml"));
        std::fs::write(&file, doc).expect("write");
        assert!(xmllint(&[file]).is_err(), "{name} validated");
    }
}

fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex(
        "[a-zA-Z0-9 <>&\"'\\t\\n\\r\u{4E2D}\u{6587}\u{E9}\u{1F600}\\]]{1,60}",
    )
    .expect("regex")
}

/// Random variations of the fixtures: any material type or decision, free text with XML
/// specials and non-ASCII, every optional field present or not.
fn variations() -> impl Strategy<Value = Envelope> {
    let submit = (
        prop::sample::select(vec![
            "admission_receipt",
            "release_notice",
            "term_extension_request",
            "early_release_request",
            "outside_medical_treatment",
        ]),
        (text(), text(), text(), text()),
        prop::collection::vec(any::<bool>(), 8),
    )
        .prop_map(|(kind, (name, summary, title, just), keep)| {
            let mut e = submission(kind);
            let p = &mut e.payload;
            p["person"]["name"] = json!(name.chars().take(64).collect::<String>());
            p["summary"] = json!(summary);
            p["documents"][0]["title"] = json!(title);
            p["medical_justification"] = json!(just);
            let optional = [
                ("centre", "alliance"),
                ("centre", "division_code"),
                ("person", "birth_date"),
                ("person", "gender"),
                ("police_bureau", "name"),
                ("", "medical_justification"),
                ("", "respond_by"),
            ];
            for ((parent, key), keep) in optional.iter().zip(&keep) {
                if !keep {
                    let obj = if parent.is_empty() {
                        p.as_object_mut()
                    } else {
                        p[*parent].as_object_mut()
                    };
                    if let Some(o) = obj {
                        o.remove(*key);
                    }
                }
            }
            if keep.get(7) == Some(&false) {
                e.correlation_id = Some("rehab-earlier-1".into());
            }
            e
        });
    let decide = (
        prop::sample::select(vec!["approved", "rejected", "more_material_needed"]),
        prop::option::of(prop::collection::vec(text(), 0..3)),
        prop::option::of(prop::collection::vec(text(), 0..3)),
        text(),
        any::<bool>(),
    )
        .prop_map(|(code, reasons, requested, case, bureau)| {
            let mut e = decision(code, json!({}));
            let p = &mut e.payload;
            p["police_case_number"] = json!(case);
            if let Some(r) = reasons {
                p["reasons"] = json!(r);
            }
            if let Some(r) = requested {
                p["requested_materials"] = json!(r);
            }
            if let Some(o) = p.as_object_mut().filter(|_| !bureau) {
                o.remove("bureau");
            }
            e
        });
    prop_oneof![submit, decide]
}

/// What reading back what was written gives: the police never receive the centre's medical
/// alliance, nor a medical justification for other material types.
fn round_trip_expectation(env: &Envelope) -> Envelope {
    let mut want = env.clone();
    want.source = "police".into();
    let outside = want.payload["material_type"] == json!("outside_medical_treatment");
    if let Some(p) = want.payload.as_object_mut() {
        if !outside {
            p.remove("medical_justification");
        }
        if let Some(c) = p.get_mut("centre").and_then(Value::as_object_mut) {
            c.remove("alliance");
        }
    }
    want
}

#[test]
fn random_documents_validate_against_the_published_xsd() {
    let tmp = TempDir::new("police-xsd-random");
    let mut runner = TestRunner::deterministic();
    let strategy = variations();
    let mut files = Vec::new();
    for i in 0..64 {
        let env = strategy.new_tree(&mut runner).expect("value").current();
        golden::assert_canonical(&env, "variation");
        let xml = encode(&env).expect("encode");
        let back = decode(&xml).expect("decode");
        assert_eq!(back, round_trip_expectation(&env));
        let file = tmp.0.join(format!("{i}.xml"));
        std::fs::write(&file, &xml).expect("write");
        files.push(file);
    }
    if let Err(e) = xmllint(&files) {
        panic!("generated police documents do not validate against the XSD:\n{e}");
    }
}
