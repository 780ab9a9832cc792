//! Before a change goes live: `wingspan explain` (which routes take a message and why, which
//! destinations, and what each would receive after its field policy) and `wingspan test` (the
//! route test cases kept beside the config). Nothing is sent: the same admit, route and render
//! code the running gateway uses, on a file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wingspan_adapters::{Inbound, render};
use wingspan_core::route::RouteVerdict;
use wingspan_core::{CompiledConfig, Envelope, Rejection, admit};

/// What one destination would receive.
#[derive(Debug, Clone)]
pub struct Preview {
    pub destination: String,
    pub adapter: String,
    pub content_type: String,
    /// The encoded body, or why it cannot be encoded.
    pub body: Result<Vec<u8>, String>,
}

/// The route decision on one message, explained.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The envelope as read from the file (`None`: not an envelope at all).
    pub envelope: Option<Envelope>,
    /// Refused at admission (schema, source, type…); routes are still explained when the
    /// envelope could be read.
    pub refused: Option<Rejection>,
    pub routes: Vec<RouteVerdict>,
    pub deliveries: Vec<Preview>,
}

/// Explain what the gateway would do with `bytes` (a canonical envelope).
pub fn explain(config: &CompiledConfig, bytes: &[u8]) -> Explanation {
    let envelope: Option<Envelope> = serde_json::from_slice(bytes).ok();
    let routes = envelope
        .as_ref()
        .map(|e| config.routes.explain(e))
        .unwrap_or_default();
    match admit(config, bytes) {
        Err(r) => Explanation {
            envelope,
            refused: Some(r),
            routes,
            deliveries: Vec::new(),
        },
        Ok(admitted) => {
            let deliveries = admitted
                .destinations
                .iter()
                .map(|&d| {
                    let dest = &config.destinations[d];
                    let encoded = render::for_destination(dest, &admitted.envelope, Some(bytes));
                    Preview {
                        destination: dest.id.clone(),
                        adapter: dest.adapter.clone(),
                        content_type: encoded
                            .as_ref()
                            .map(|e| e.content_type.to_owned())
                            .unwrap_or_default(),
                        body: encoded
                            .map(|e| e.body.into_owned())
                            .map_err(|e| format!("error[{}]: {e}", e.slug())),
                    }
                })
                .collect();
            Explanation {
                envelope: Some(admitted.envelope),
                refused: None,
                routes,
                deliveries,
            }
        }
    }
}

/// The explanation as text for a terminal.
pub fn describe(x: &Explanation) -> String {
    let mut out = String::new();
    match &x.envelope {
        Some(e) => {
            let _ = writeln!(
                out,
                "message {} ({} v{}) from {}",
                e.message_id, e.message_type, e.schema_version, e.source
            );
        }
        None => {
            let _ = writeln!(out, "not a canonical envelope");
        }
    }
    if let Some(r) = &x.refused {
        let _ = writeln!(out, "refused: {} ({})", r.kind.slug(), r.detail);
        for v in &r.errors {
            let _ = writeln!(out, "  {}: {}", v.pointer, v.message);
        }
    }
    if !x.routes.is_empty() {
        let _ = writeln!(out, "routes:");
    }
    for v in &x.routes {
        let mark = if v.matched {
            "match"
        } else if v.for_type {
            "no   "
        } else {
            "-    "
        };
        let why = if !v.for_type {
            "not for this message type".to_owned()
        } else if v.predicates.is_empty() {
            "every message of this type".to_owned()
        } else {
            v.predicates
                .iter()
                .map(|(p, holds)| {
                    format!("{p}: {}", if *holds { "holds" } else { "does not hold" })
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            out,
            "  {mark} {:<32} → {:<28} {why}",
            v.route,
            v.destinations.join(", ")
        );
    }
    if x.refused.is_none() {
        let _ = writeln!(out, "destinations:");
        for p in &x.deliveries {
            match &p.body {
                Ok(body) => {
                    let _ = writeln!(
                        out,
                        "── {} ({} adapter, {}, {} bytes)",
                        p.destination,
                        p.adapter,
                        p.content_type,
                        body.len()
                    );
                    let _ = writeln!(out, "{}", String::from_utf8_lossy(body));
                }
                Err(e) => {
                    let _ = writeln!(out, "── {} ({} adapter): {e}", p.destination, p.adapter);
                }
            }
        }
    }
    out
}

/// One file of route test cases (`<config dir>/tests/*.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    cases: Vec<Case>,
}

/// One route test case: an input message, the destinations it must reach (exactly), and per
/// destination the payload fields that must be present or absent in what it receives (read
/// back through the destination's own adapter) and text its wire body must or must not hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// A canonical envelope, relative to the test file.
    input: String,
    /// Exactly these destinations (an empty list: the message must be refused).
    destinations: Vec<String>,
    #[serde(default)]
    present: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    absent: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    contains: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    excludes: BTreeMap<String, Vec<String>>,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: PathBuf,
    pub name: String,
    /// Empty when the case passed; otherwise each difference, diff-style.
    pub problems: Vec<String>,
}

/// Whether a dotted path (`person.name`) names a present, non-null value; through arrays, any
/// element counts.
fn present(value: &serde_json::Value, path: &str) -> bool {
    fn walk(v: &serde_json::Value, parts: &[&str]) -> bool {
        match (parts.split_first(), v) {
            (None, v) => !v.is_null(),
            (Some(_), serde_json::Value::Array(items)) => items.iter().any(|i| walk(i, parts)),
            (Some((first, rest)), serde_json::Value::Object(m)) => {
                m.get(*first).is_some_and(|v| walk(v, rest))
            }
            _ => false,
        }
    }
    walk(value, &path.split('.').collect::<Vec<_>>())
}

fn run_case(config: &CompiledConfig, base: &Path, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let input = base.join(&case.input);
    let bytes = match std::fs::read(&input) {
        Ok(b) => b,
        Err(e) => return vec![format!("cannot read {}: {e}", input.display())],
    };
    let x = explain(config, &bytes);
    let got: Vec<&str> = x
        .deliveries
        .iter()
        .map(|p| p.destination.as_str())
        .collect();
    let mut want: Vec<&str> = case.destinations.iter().map(String::as_str).collect();
    want.sort_unstable();
    let mut got_sorted = got.clone();
    got_sorted.sort_unstable();
    if want != got_sorted {
        let mut diff = String::from("destinations differ:");
        for w in &want {
            if !got_sorted.contains(w) {
                let _ = write!(diff, "\n    - {w} (expected, not reached)");
            }
        }
        for g in &got_sorted {
            if !want.contains(g) {
                let _ = write!(diff, "\n    + {g} (reached, not expected)");
            }
        }
        if let Some(r) = &x.refused {
            let _ = write!(diff, "\n    (refused: {} — {})", r.kind.slug(), r.detail);
        }
        problems.push(diff);
    }
    let checked = case
        .present
        .keys()
        .chain(case.absent.keys())
        .chain(case.contains.keys())
        .chain(case.excludes.keys());
    for dest in checked {
        if !case.destinations.contains(dest) {
            problems.push(format!(
                "{dest}: field expectations for a destination not expected"
            ));
        }
    }
    for p in &x.deliveries {
        let body = match &p.body {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{}: cannot encode: {e}", p.destination));
                continue;
            }
        };
        let text = String::from_utf8_lossy(body);
        for needle in case.contains.get(&p.destination).into_iter().flatten() {
            if !text.contains(needle.as_str()) {
                problems.push(format!("{}: body lacks {needle:?}", p.destination));
            }
        }
        for needle in case.excludes.get(&p.destination).into_iter().flatten() {
            if text.contains(needle.as_str()) {
                problems.push(format!("{}: body holds {needle:?}", p.destination));
            }
        }
        let wants_fields =
            case.present.contains_key(&p.destination) || case.absent.contains_key(&p.destination);
        if !wants_fields {
            continue;
        }
        // What the destination received, read back by its own adapter.
        let Some(adapter) = config.adapters.get(&p.adapter) else {
            continue;
        };
        let received = match adapter.decode(Inbound {
            source: "test",
            content_type: Some(&p.content_type),
            bytes: body,
        }) {
            Ok(e) => e.payload,
            Err(e) => {
                problems.push(format!(
                    "{}: its adapter cannot read back what it would receive ({e})",
                    p.destination
                ));
                continue;
            }
        };
        for f in case.present.get(&p.destination).into_iter().flatten() {
            if !present(&received, f) {
                problems.push(format!(
                    "{}: - {f} (must be present, is absent)",
                    p.destination
                ));
            }
        }
        for f in case.absent.get(&p.destination).into_iter().flatten() {
            if present(&received, f) {
                problems.push(format!(
                    "{}: + {f} (must be absent, is present)",
                    p.destination
                ));
            }
        }
    }
    problems
}

/// Run every case in `<config dir>/tests/*.toml`, in file order.
pub fn run_tests(config: &CompiledConfig, config_dir: &Path) -> Result<Vec<CaseResult>, String> {
    let dir = config_dir.join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut results = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let parsed: CaseFile = wingspan_core::config::parse_as(&file.display().to_string(), &text)
            .map_err(|e| e.to_string())?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        for case in &parsed.cases {
            results.push(CaseResult {
                file: file.clone(),
                name: case.name.clone(),
                problems: run_case(config, &base, case),
            });
        }
    }
    Ok(results)
}
