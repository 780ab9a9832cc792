//! Reading configuration and schemas from disk; everything after reading is the core's `compile`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wingspan_adapters::{AdapterSet, declared};
use wingspan_core::CompiledConfig;
use wingspan_core::config::{self, ConfigError, RawConfig};
use wingspan_core::schema::{SchemaCatalog, SchemaDoc};

/// A compiled config together with the directories it names, resolved.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Arc<CompiledConfig>,
    /// The directory the config file is in: relative paths in it start here.
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub schemas_dir: PathBuf,
    /// SHA-256 of the config text, as audited when it is loaded.
    pub config_sha256: String,
    /// Where the config came from (a file path) and its text, for locating problems.
    pub config_origin: String,
    pub config_text: String,
    /// The audit signing key file (resolved; may not exist yet).
    pub signing_key_file: PathBuf,
    /// The audit subject-reference secret file (resolved; may not exist yet).
    pub subject_key_file: PathBuf,
    /// Subject keys rotated away from, newest first (still searched).
    pub previous_subject_key_files: Vec<PathBuf>,
    /// Where the payload key is kept, when copies are sealed at rest.
    pub payload_key_file: Option<PathBuf>,
    /// The time-stamping authority's certificate (DER), when checkpoints are time-stamped.
    pub tsa_cert_der: Option<Vec<u8>>,
    /// Where sealed segments of the audit chain go (resolved; created when first needed).
    pub archive_dir: PathBuf,
    /// Where the declared adapters are (resolved; may not exist).
    pub adapters_dir: PathBuf,
    /// A digest of the declared adapters' files: a reload with the same config text but
    /// changed programs is a change.
    pub adapters_sha256: String,
}

/// `path` is a config file or a directory holding `wingspan.toml`.
pub fn load(path: &Path) -> Result<Loaded, Vec<ConfigError>> {
    load_with(path, |_| {})
}

/// Like [`load`], letting the caller adjust the raw config before it is checked
/// (the demo and the tests use their own queue prefix and state directory).
pub fn load_with(
    path: &Path,
    adjust: impl FnOnce(&mut RawConfig),
) -> Result<Loaded, Vec<ConfigError>> {
    let file = if path.is_dir() {
        path.join("wingspan.toml")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        vec![ConfigError::new(
            file.display().to_string(),
            format!("cannot read: {e}"),
        )]
    })?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str_with(&file.display().to_string(), &text, &base, adjust)
}

/// Compile config text; relative directories are resolved against `base`.
pub fn load_str(origin: &str, text: &str, base: &Path) -> Result<Loaded, Vec<ConfigError>> {
    load_str_with(origin, text, base, |_| {})
}

pub fn load_str_with(
    origin: &str,
    text: &str,
    base: &Path,
    adjust: impl FnOnce(&mut RawConfig),
) -> Result<Loaded, Vec<ConfigError>> {
    let mut raw = config::parse(origin, text).map_err(|e| vec![e])?;
    let read = |key: &str, file: &Path| {
        std::fs::read_to_string(file).map_err(|e| {
            vec![ConfigError::new(
                key,
                format!("cannot read {}: {e}", file.display()),
            )]
        })
    };
    let url_file = std::env::var("WINGSPAN_AMQP_URL_FILE")
        .ok()
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
        .or_else(|| raw.broker.url_file.as_ref().map(|f| base.join(f)));
    if let Some(file) = url_file {
        raw.broker.url = read("broker.url_file", &file)?.trim().to_owned();
    }
    if let Ok(url) = std::env::var("WINGSPAN_AMQP_URL")
        && !url.is_empty()
    {
        let urls: Vec<String> = url
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.len() > 1 {
            raw.broker.urls = urls;
        } else {
            raw.broker.urls.clear();
            raw.broker.url = url;
        }
    }
    if let Ok(url) = std::env::var("WINGSPAN_AUDIT_STORE")
        && !url.is_empty()
    {
        raw.audit.store = Some(url);
    }
    // What differs between instances of one config (containers, several units): the
    // instance's name and the addresses it listens on.
    let set = |var: &str, field: &mut String| {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            *field = v;
        }
    };
    set("WINGSPAN_INSTANCE", &mut raw.gateway.instance);
    set("WINGSPAN_HTTP_LISTEN", &mut raw.http.listen);
    set("WINGSPAN_ADMIN_LISTEN", &mut raw.admin.listen);
    adjust(&mut raw);
    let schemas_dir = base.join(&raw.gateway.schemas_dir);
    let state_dir = base.join(&raw.gateway.state_dir);
    let docs = read_schemas(&schemas_dir)?;
    let catalog = SchemaCatalog::compile(&docs).map_err(|errs| {
        errs.into_iter()
            .map(|e| ConfigError::new(e.origin, e.reason))
            .collect::<Vec<_>>()
    })?;
    let key_file = |configured: &Option<String>, default: &str| match configured {
        Some(f) => base.join(f),
        None => state_dir.join(default),
    };
    let signing_key_file = key_file(&raw.audit.signing_key_file, "audit-signing.key");
    let subject_key_file = key_file(&raw.audit.subject_key_file, "audit-subject.key");
    let payload_key_file = raw.audit.payload_key_file.as_ref().map(|f| base.join(f));
    let previous_subject_key_files = raw
        .audit
        .previous_subject_key_files
        .iter()
        .map(|f| base.join(f))
        .collect();
    let tsa_cert_der = match &raw.audit.tsa_cert_file {
        Some(f) => {
            let file = base.join(f);
            let bytes = std::fs::read(&file).map_err(|e| {
                vec![ConfigError::new(
                    "audit.tsa_cert_file",
                    format!("cannot read {}: {e}", file.display()),
                )]
            })?;
            Some(cert_der(&bytes).ok_or_else(|| {
                vec![ConfigError::new(
                    "audit.tsa_cert_file",
                    "holds no certificate (PEM or DER)",
                )]
            })?)
        }
        None => None,
    };
    let archive_dir = match &raw.audit.archive_dir {
        Some(d) => base.join(d),
        None => state_dir.join("audit-archive"),
    };
    let ca_pem = match &raw.broker.ca_file {
        Some(f) => Some(read("broker.ca_file", &base.join(f))?),
        None => None,
    };
    let adapters_dir = base.join(&raw.gateway.adapters_dir);
    let adapters_sha256 = declared::digest(&adapters_dir);
    let adapters = adapter_set_cached(&adapters_dir, &adapters_sha256)?;
    let mut compiled =
        config::compile(raw, catalog, adapters).map_err(|errors| located(origin, text, errors))?;
    compiled.broker.ca_pem = ca_pem;
    Ok(Loaded {
        config: Arc::new(compiled),
        config_dir: base.to_path_buf(),
        state_dir,
        schemas_dir,
        config_sha256: wingspan_core::audit::sha256_hex(text.as_bytes()),
        config_origin: origin.to_owned(),
        config_text: text.to_owned(),
        signing_key_file,
        subject_key_file,
        previous_subject_key_files,
        payload_key_file,
        tsa_cert_der,
        archive_dir,
        adapters_sha256,
        adapters_dir,
    })
}

/// The first certificate of a PEM file, or the file itself if it is DER.
fn cert_der(bytes: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    if bytes.first() == Some(&0x30) {
        return Some(bytes.to_vec());
    }
    CertificateDer::pem_slice_iter(bytes)
        .next()?
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// [`adapter_set`], reused while the files under `dir` are unchanged: a reload that changes
/// a route does not recompile every mapping program (VRL compiles at tens of milliseconds
/// per program). Keyed by the directory and the digest of every file in it.
fn adapter_set_cached(dir: &Path, digest: &str) -> Result<AdapterSet, Vec<ConfigError>> {
    type Compiled = Option<(PathBuf, String, AdapterSet)>;
    static LAST: std::sync::Mutex<Compiled> = std::sync::Mutex::new(None);
    if let Some((d, sha, set)) = &*LAST.lock().unwrap_or_else(|p| p.into_inner())
        && d == dir
        && sha == digest
    {
        return Ok(set.clone());
    }
    let set = adapter_set(dir)?;
    // Kept only if nothing changed while it compiled (else the digest would name other files).
    if declared::digest(dir) == digest {
        *LAST.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((dir.to_path_buf(), digest.to_owned(), set.clone()));
    }
    Ok(set)
}

/// The built-in adapters and those declared under `dir`: every program compiled, every
/// problem reported at `file:line:column`; a declared adapter may not take a built-in's name.
pub fn adapter_set(dir: &Path) -> Result<AdapterSet, Vec<ConfigError>> {
    let mut set = wingspan_adapters::builtins();
    let declared = declared::load_all(dir).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| ConfigError::new(p.at, p.message))
            .collect::<Vec<_>>()
    })?;
    let mut errors = Vec::new();
    for a in declared {
        let shown = a.dir().display().to_string();
        if !set.insert(a) {
            errors.push(ConfigError::new(
                shown,
                "a declared adapter may not take a built-in adapter's name",
            ));
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Prefix each problem's path with `file:line` where the config text shows it.
pub fn located(origin: &str, text: &str, errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors
        .into_iter()
        .map(|mut e| {
            if let Some(line) = config::locate(text, &e.path) {
                e.path = format!("{origin}:{line}: {}", e.path);
            }
            e
        })
        .collect()
}

/// Read `dir/v<major>/<name>.schema.json` files.
pub fn read_schemas(dir: &Path) -> Result<Vec<SchemaDoc>, Vec<ConfigError>> {
    let err = |p: &Path, m: String| vec![ConfigError::new(p.display().to_string(), m)];
    let mut docs = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| err(dir, format!("cannot read schema directory: {e}")))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(major) = name.strip_prefix('v').and_then(|m| m.parse::<u32>().ok()) else {
            continue;
        };
        let vdir = entry.path();
        let files = std::fs::read_dir(&vdir).map_err(|e| err(&vdir, e.to_string()))?;
        for f in files.flatten() {
            let fname = f.file_name().to_string_lossy().into_owned();
            let Some(schema_name) = fname.strip_suffix(".schema.json") else {
                continue;
            };
            let path = f.path();
            let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))?;
            let schema =
                serde_json::from_str(&text).map_err(|e| err(&path, format!("not JSON: {e}")))?;
            docs.push(SchemaDoc {
                major,
                name: schema_name.to_owned(),
                origin: path.display().to_string(),
                schema,
            });
        }
    }
    if docs.is_empty() {
        return Err(err(
            dir,
            "no schemas found (expected v1/<type>.schema.json)".into(),
        ));
    }
    Ok(docs)
}

/// The problems `wingspan check` reports beyond compiling ([`config::lint`]), located.
pub fn lint(loaded: &Loaded) -> Vec<ConfigError> {
    located(
        &loaded.config_origin,
        &loaded.config_text,
        config::lint(&loaded.config),
    )
}
