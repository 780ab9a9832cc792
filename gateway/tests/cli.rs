//! `wingspan decode` and `wingspan encode`: an adapter by hand, exit codes and typed errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use wingspan_sim::samples;

fn wingspan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run wingspan")
}

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wingspan-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn encode_applies_the_destination_policy_and_decode_reads_it_back() {
    let handover = samples::handover(1, "320411", true, true);
    let file = temp(
        "handover.json",
        &serde_json::to_vec(&handover).expect("json"),
    );
    let f = file.to_str().expect("path");

    let out = wingspan(&["encode", "--adapter", "hr", "--destination", "hr", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("content-type: application/json"));
    let body = text(&out.stdout);
    assert!(body.contains("ref-1"));
    for secret in ["heroin", "methadone", "substance", "clinical"] {
        assert!(!body.contains(secret), "hr would receive {secret}: {body}");
    }
    // What HR receives decodes with the HR adapter into the handover, cut to the policy.
    let wire = temp("hr-wire.json", body.as_bytes());
    let out = wingspan(&[
        "decode",
        "--adapter",
        "hr",
        "--source",
        "rehab",
        wire.to_str().expect("path"),
    ]);
    // The cut handover lacks nothing HR's shape needs, but it is no longer a complete
    // canonical handover for the schema (supervision type is cut): decode reports that.
    let decoded_or_violation = text(&out.stdout) + &text(&out.stderr);
    assert!(
        decoded_or_violation.contains("ref-1")
            || decoded_or_violation.contains("error[schema-violation]"),
        "{decoded_or_violation}"
    );

    // Police XML for a material, and back.
    let material = samples::material_submit(2);
    let mfile = temp(
        "material.json",
        &serde_json::to_vec(&material).expect("json"),
    );
    let out = wingspan(&[
        "encode",
        "--adapter",
        "police",
        "--destination",
        "police",
        mfile.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("<?xml"));
    let xml = temp("material.xml", &out.stdout);
    let out = wingspan(&[
        "decode",
        "--adapter",
        "police",
        "--source",
        "rehab",
        xml.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let back: Value = serde_json::from_slice(&out.stdout).expect("canonical JSON");
    assert_eq!(back["message_id"], material["message_id"]);
    // The police policy names the centre's id, name and division, not its medical alliance.
    let mut expected = material["payload"].clone();
    expected["centre"]
        .as_object_mut()
        .expect("centre")
        .remove("alliance");
    assert_eq!(back["payload"], expected);
}

#[test]
fn errors_are_typed_with_exit_code_1() {
    let doctype = temp(
        "bomb.xml",
        b"<!DOCTYPE l [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;\">]><l>&b;</l>",
    );
    let out = wingspan(&[
        "decode",
        "--adapter",
        "police",
        doctype.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error[refused-document]"),
        "{}",
        text(&out.stderr)
    );

    let out = wingspan(&["decode", "--adapter", "nope", doctype.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error[unknown-adapter]"));

    let patient = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/health/json/Patient-f001.json");
    let out = wingspan(&[
        "decode",
        "--adapter",
        "health",
        patient.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error[unmappable-document]"),
        "{}",
        text(&out.stderr)
    );

    let handover = temp(
        "h.json",
        &serde_json::to_vec(&samples::handover(3, "320411", true, false)).expect("json"),
    );
    let out = wingspan(&[
        "encode",
        "--adapter",
        "hr",
        "--destination",
        "mars",
        handover.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error[unknown-destination]"));
    let garbage = temp("g.json", b"{\"not\": \"an envelope\"}");
    let out = wingspan(&[
        "encode",
        "--adapter",
        "hr",
        "--destination",
        "hr",
        garbage.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error[invalid-canonical]"));
}
