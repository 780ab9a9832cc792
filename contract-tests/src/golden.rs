//! Golden files: what an adapter produces, compared with what is checked in under
//! `contract-tests/golden/`, after canonicalisation (JSON: parsed and re-serialised with
//! sorted keys; XML: parsed into a namespace-resolved tree with whitespace-only text dropped),
//! so formatting never fails a test but any change of content does.
//!
//! `UPDATE_GOLDEN=1 cargo test -p wingspan-sim` rewrites the files instead of comparing; review
//! the diff before committing it.

use std::path::{Path, PathBuf};

use wingspan_adapters::xml;

/// How to canonicalise the bytes before comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Json,
    Xml,
}

impl Kind {
    /// The kind for a content type (`application/fhir+xml` → XML).
    pub fn of(content_type: &str) -> Self {
        if content_type.contains("xml") {
            Self::Xml
        } else {
            Self::Json
        }
    }
}

/// `contract-tests/golden/<relative>`.
pub fn path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(relative)
}

fn strip(mut e: xml::Element<'_>) -> xml::Element<'_> {
    if e.text.trim().is_empty() {
        e.text = std::borrow::Cow::Borrowed("");
    }
    e.children = e.children.into_iter().map(strip).collect();
    e
}

/// A canonical text of `bytes`, or why they are not valid `kind`.
pub fn canonical(bytes: &[u8], kind: Kind) -> Result<String, String> {
    match kind {
        Kind::Json => {
            let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
        }
        Kind::Xml => {
            let root = xml::parse(bytes, &xml::Limits::default()).map_err(|e| e.to_string())?;
            Ok(format!("{:#?}", strip(root)))
        }
    }
}

/// Compare `actual` with the golden file (or write it under `UPDATE_GOLDEN=1`).
/// Panics with both canonical texts on a difference: this is for tests.
#[allow(clippy::panic)]
pub fn check(relative: &str, actual: &[u8], kind: Kind) {
    let file = path(relative);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(&file, actual).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        return;
    }
    let expected = std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            file.display()
        )
    });
    let want = canonical(&expected, kind).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let got = canonical(actual, kind).unwrap_or_else(|e| panic!("output of {relative}: {e}"));
    if want != got {
        panic!(
            "{relative} differs from the golden file (UPDATE_GOLDEN=1 to accept)\n--- golden\n{want}\n--- actual\n{got}"
        );
    }
}

/// The repository's `schemas/v1` compiled once per test binary, to check that what an adapter
/// decodes is a valid canonical message.
pub fn schemas() -> &'static wingspan_core::SchemaCatalog {
    static SCHEMAS: std::sync::OnceLock<wingspan_core::SchemaCatalog> = std::sync::OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/v1");
        let mut docs = Vec::new();
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
        {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".schema.json") else {
                continue;
            };
            let text =
                std::fs::read_to_string(entry.path()).unwrap_or_else(|e| panic!("{file}: {e}"));
            docs.push(wingspan_core::schema::SchemaDoc {
                major: 1,
                name: name.to_owned(),
                origin: file.clone(),
                schema: serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}")),
            });
        }
        wingspan_core::SchemaCatalog::compile(&docs).unwrap_or_else(|e| panic!("schemas: {e:?}"))
    })
}

/// Panic unless the envelope and its payload are valid canonical messages.
pub fn assert_canonical(env: &wingspan_core::Envelope, what: &str) {
    let value = serde_json::to_value(env).unwrap_or_else(|e| panic!("{what}: {e}"));
    if let Err(v) = schemas().validate_envelope(&value) {
        panic!("{what}: envelope violates the schema: {v:?}\n{value:#}");
    }
    if let Err(e) = schemas().validate_payload(1, &env.message_type, &env.payload) {
        panic!("{what}: payload violates the schema: {e:?}\n{value:#}");
    }
}
