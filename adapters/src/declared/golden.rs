//! A declared adapter's golden cases, both directions, and its round trips:
//!
//! - `golden/encode/<case>.canonical.json` → encode → must equal `<case>.wire.<ext>`;
//! - `golden/decode/<case>.wire.<ext>` → decode → must equal `<case>.canonical.json`
//!   (the envelope's `source` is the adapter's name);
//! - every encode case read back and written again gives the same document.
//!
//! JSON documents compare as values (formatting aside); XML and HL7 v2 compare byte for byte
//! (HL7 v2 files end each segment with CR). `wingspan adapter test` prints these results.

use std::path::{Path, PathBuf};

use serde_json::Value;
use wingspan_core::Envelope;

use super::{Codec, Declared};
use crate::{Adapter, Canonical, Inbound};

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `encode/<case>`, `decode/<case>` or `round-trip/<case>`.
    pub name: String,
    /// `None` when it passed; otherwise what differed.
    pub failure: Option<String>,
}

fn wire_ext(codec: &Codec) -> &'static str {
    match codec {
        Codec::Json | Codec::FhirJson => "json",
        Codec::Xml(_) | Codec::FhirXml(_) => "xml",
        Codec::Hl7v2 => "hl7",
    }
}

/// The files in `dir` whose names end with `suffix`, as (name without the suffix, path),
/// sorted; none when `dir` is missing.
pub fn cases(dir: &Path, suffix: &str) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((name.strip_suffix(suffix)?.to_owned(), e.path()))
        })
        .collect();
    out.sort();
    out
}

/// A line-by-line difference, expected first (`-`) then actual (`+`), of the lines that differ.
pub fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!("  line {}: - {x}\n", i + 1));
                }
                if let Some(y) = y {
                    out.push_str(&format!("  line {}: + {y}\n", i + 1));
                }
            }
        }
    }
    out
}

fn shown(codec: &Codec, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match codec {
        Codec::Hl7v2 => text.replace('\r', "\n"),
        Codec::Json | Codec::FhirJson => serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| text.into_owned()),
        _ => text.into_owned(),
    }
}

fn same_document(codec: &Codec, expected: &[u8], actual: &[u8]) -> bool {
    match codec {
        Codec::Json | Codec::FhirJson => {
            match (
                serde_json::from_slice::<Value>(expected),
                serde_json::from_slice::<Value>(actual),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => expected == actual,
            }
        }
        _ => expected == actual,
    }
}

fn encode(a: &Declared, env: &Envelope) -> Result<Vec<u8>, String> {
    a.encode(
        Canonical {
            envelope: env,
            bytes: None,
        },
        None,
    )
    .map(|e| e.body.into_owned())
    .map_err(|e| e.to_string())
}

fn decode(a: &Declared, bytes: &[u8]) -> Result<Envelope, String> {
    a.decode(Inbound {
        source: a.name(),
        content_type: None,
        bytes,
    })
    .map_err(|e| e.to_string())
}

fn pretty(env: &Envelope) -> String {
    serde_json::to_string_pretty(env).unwrap_or_default()
}

/// Run every golden case of `a` and its round trips.
pub fn run(a: &Declared) -> Vec<Outcome> {
    run_with(a, false)
}

/// Like [`run`]; with `update`, an encode case whose expected document is missing or differs
/// gets the actual one written (review the diff before committing it).
pub fn run_with(a: &Declared, update: bool) -> Vec<Outcome> {
    let ext = wire_ext(a.codec());
    let golden = a.dir().join("golden");
    let mut out = Vec::new();
    let fail = |name: String, why: String| Outcome {
        name,
        failure: Some(why),
    };
    for (case, path) in cases(&golden.join("encode"), ".canonical.json") {
        let name = format!("encode/{case}");
        let wire_path = golden.join("encode").join(format!("{case}.wire.{ext}"));
        let env = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Envelope>(&b).map_err(|e| e.to_string()))
        {
            Ok(env) => env,
            Err(e) => {
                out.push(fail(name, format!("{}: {e}", path.display())));
                continue;
            }
        };
        let wire = match encode(a, &env) {
            Ok(w) => w,
            Err(e) => {
                out.push(fail(name, e));
                continue;
            }
        };
        if update
            && std::fs::read(&wire_path)
                .ok()
                .is_none_or(|e| !same_document(a.codec(), &e, &wire))
            && let Err(e) = std::fs::write(&wire_path, &wire)
        {
            out.push(fail(name.clone(), format!("{}: {e}", wire_path.display())));
        }
        match std::fs::read(&wire_path) {
            Ok(expected) if same_document(a.codec(), &expected, &wire) => out.push(Outcome {
                name,
                failure: None,
            }),
            Ok(expected) => out.push(fail(
                name,
                diff(&shown(a.codec(), &expected), &shown(a.codec(), &wire)),
            )),
            Err(e) => out.push(fail(name, format!("{}: {e}", wire_path.display()))),
        }
        let trip = format!("round-trip/{case}");
        match decode(a, &wire).and_then(|back| encode(a, &back)) {
            Ok(again) if again == wire => out.push(Outcome {
                name: trip,
                failure: None,
            }),
            Ok(again) => out.push(fail(
                trip,
                diff(&shown(a.codec(), &wire), &shown(a.codec(), &again)),
            )),
            Err(e) => out.push(fail(trip, e)),
        }
    }
    for (case, path) in cases(&golden.join("decode"), &format!(".wire.{ext}")) {
        let name = format!("decode/{case}");
        let canonical_path = golden.join("decode").join(format!("{case}.canonical.json"));
        let result = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| decode(a, &b));
        let env = match result {
            Ok(env) => env,
            Err(e) => {
                out.push(fail(name, e));
                continue;
            }
        };
        match std::fs::read(&canonical_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Envelope>(&b).map_err(|e| e.to_string()))
        {
            Ok(expected) if expected == env => out.push(Outcome {
                name,
                failure: None,
            }),
            Ok(expected) => out.push(fail(name, diff(&pretty(&expected), &pretty(&env)))),
            Err(e) => out.push(fail(name, format!("{}: {e}", canonical_path.display()))),
        }
    }
    out
}
