//! The audit trail's shell: its keys (read, or created on first start), the entries the
//! gateway's steps produce, and the commands compliance runs (`wingspan audit …`).
//! Records are appended by the state store's writer thread, in the same transaction as the
//! receipt or delivery state they account for (see `store`); hashing and verification are
//! the core's (`wingspan_core::audit`).

use std::io::Write;
use std::path::Path;

use wingspan_core::Envelope;
use wingspan_core::audit::{Entry, Event, SigningKey};

use crate::load::Loaded;

/// The audit keys. Neither is ever logged.
pub struct AuditKeys {
    pub signing: SigningKey,
    subject: Vec<u8>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("signing", &self.signing)
            .finish_non_exhaustive()
    }
}

impl AuditKeys {
    /// The subject reference of a person id (HMAC-SHA256 under the subject key).
    pub fn subject_ref(&self, person_id: &str) -> String {
        wingspan_core::audit::subject_ref(&self.subject, person_id)
    }

    /// For tests and tools that hold both secrets in hand.
    pub fn from_parts(signing_seed_hex: &str, subject: &[u8]) -> Option<Self> {
        Some(Self {
            signing: SigningKey::from_seed_hex(signing_seed_hex)?,
            subject: subject.to_vec(),
        })
    }
}

fn random_hex(n: usize) -> anyhow::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Read a key file, or create it (mode 0600) with a fresh random key when `create`.
fn key_from_file(path: &Path, what: &str, create: bool) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let key = random_hex(32)?;
            let mut f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?
            };
            f.write_all(key.as_bytes())?;
            f.sync_all()?;
            tracing::warn!(file = %path.display(), "created a new audit {what} key; keep it safe and back it up");
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot read the audit {what} key {}: {e}",
            path.display()
        )),
    }
}

/// The audit keys of a loaded config: environment (`WINGSPAN_AUDIT_SIGNING_KEY`,
/// `WINGSPAN_AUDIT_SUBJECT_KEY`, hex) over key files; files are created when `create`
/// (the gateway's first start), never by the compliance commands.
pub fn keys(loaded: &Loaded, create: bool) -> anyhow::Result<AuditKeys> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let signing = signing_key(loaded, create)?;
    let subject = match env("WINGSPAN_AUDIT_SUBJECT_KEY") {
        Some(k) => k,
        None => key_from_file(&loaded.subject_key_file, "subject", create)?,
    };
    Ok(AuditKeys {
        signing,
        subject: subject.into_bytes(),
    })
}

/// The signing key alone (verification needs nothing else).
fn signing_key(loaded: &Loaded, create: bool) -> anyhow::Result<SigningKey> {
    let seed = match std::env::var("WINGSPAN_AUDIT_SIGNING_KEY")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(k) => k,
        None => key_from_file(&loaded.signing_key_file, "signing", create)?,
    };
    SigningKey::from_seed_hex(&seed)
        .ok_or_else(|| anyhow::anyhow!("the audit signing key is not 64 hex digits"))
}

/// Now, RFC 3339 UTC with microseconds: the audit clock.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An entry about one message, with its header fields filled in.
pub fn about(event: Event, env: &Envelope) -> Entry {
    let mut e = Entry::new(event, now());
    e.message_id = Some(env.message_id.clone());
    e.correlation_id = env.correlation_id.clone();
    e.source = Some(env.source.clone());
    e.message_type = Some(env.message_type.clone());
    e.actor = Some("gateway".into());
    e
}

/// An operator's reason as recorded: one line, at most 200 characters. Operators are told
/// (README, console) that it is for why, never for whom.
pub fn bounded_reason(reason: &str) -> String {
    reason
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// The person a message is about, if its payload names one.
pub fn person_id(env: &Envelope) -> Option<&str> {
    env.payload
        .pointer("/person/person_id")
        .and_then(serde_json::Value::as_str)
}

// ── Compliance commands ───────────────────────────────────────────────────────────────────

use rusqlite::{Connection, OpenFlags, params_from_iter};
use serde::{Deserialize, Serialize};
use wingspan_core::audit::{Checkpoint, GENESIS, Record, Report, Verifier};

use crate::store::audit_pg::PgAudit;
use crate::store::{read_checkpoints, read_trail};

/// An audit store to read: the embedded SQLite database or the shared PostgreSQL one.
#[derive(Debug)]
pub enum AuditSource {
    Sqlite(Connection),
    Postgres(Box<PgAudit>),
}

/// Where an audit store is: what `open` needs.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Location {
    pub fn of(loaded: &Loaded) -> Self {
        match &loaded.config.audit.store {
            Some(url) => Self::Postgres(url.clone()),
            None => Self::Sqlite(loaded.state_dir.join("wingspan-state.db")),
        }
    }

    /// Open for reading (SQLite read-only).
    pub fn open(&self) -> anyhow::Result<AuditSource> {
        match self {
            Self::Sqlite(path) => {
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map(AuditSource::Sqlite)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot open the audit store {}: {e}", path.display())
                    })
            }
            Self::Postgres(url) => PgAudit::connect(url)
                .map(|pg| AuditSource::Postgres(Box::new(pg)))
                .map_err(|e| anyhow::anyhow!("cannot open the audit store: {e}")),
        }
    }
}

/// The audit store of a loaded config, opened for reading.
pub fn open_store(loaded: &Loaded) -> anyhow::Result<AuditSource> {
    Location::of(loaded).open()
}

impl AuditSource {
    fn chains(&mut self) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Self::Sqlite(conn) => conn
                .prepare("SELECT DISTINCT chain_id FROM audit ORDER BY chain_id")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?,
            Self::Postgres(pg) => pg.chains()?,
        })
    }

    /// Every record of a chain in storage order, one at a time (constant memory).
    fn each_record(&mut self, chain_id: &str, f: &mut dyn FnMut(Record)) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(conn) => crate::store::each_record(conn, chain_id, f)?,
            Self::Postgres(pg) => pg.each_record(chain_id, f)?,
        }
        Ok(())
    }

    /// Where the record with this hash stands in its chain, and the seq of the one after it.
    fn locate(
        &mut self,
        chain_id: &str,
        hash: &str,
    ) -> anyhow::Result<Option<(usize, Option<u64>)>> {
        let mut at = Locate::new(hash);
        self.each_record(chain_id, &mut |r| at.push(&r))?;
        Ok(at.found())
    }

    fn checkpoints(&mut self) -> anyhow::Result<Vec<Checkpoint>> {
        Ok(match self {
            Self::Sqlite(conn) => read_checkpoints(conn)?,
            Self::Postgres(pg) => pg.read_checkpoints()?,
        })
    }
}

/// Finds, in one pass over records in chain order, where the one with a hash stands and the
/// seq of the one after it (to name where a broken chain broke).
struct Locate<'a> {
    hash: &'a str,
    seen: usize,
    found: Option<usize>,
    next: Option<u64>,
}

impl<'a> Locate<'a> {
    fn new(hash: &'a str) -> Self {
        Self {
            hash,
            seen: 0,
            found: None,
            next: None,
        }
    }

    fn push(&mut self, r: &Record) {
        if self.found.is_some() && self.next.is_none() {
            self.next = Some(r.seq);
        }
        if self.found.is_none() && r.hash == self.hash {
            self.found = Some(self.seen);
        }
        self.seen += 1;
    }

    fn found(&self) -> Option<(usize, Option<u64>)> {
        self.found.map(|j| (j, self.next))
    }
}

/// The public key verification trusts: given explicitly, or derived from the configured
/// signing key. Never the key a checkpoint names about itself.
pub fn trusted_key(loaded: &Loaded, given: Option<&str>) -> anyhow::Result<String> {
    match given {
        Some(k) => Ok(k.trim().to_owned()),
        None => Ok(signing_key(loaded, false)?.public_hex()),
    }
}

/// Verify every chain of the store.
pub fn verify_store(src: &mut AuditSource, key: &str) -> anyhow::Result<Vec<Report>> {
    let checkpoints = src.checkpoints()?;
    src.chains()?
        .into_iter()
        .map(|chain| {
            // One record at a time: a chain of millions verifies in constant memory (holding
            // the chain took 9.7 GB after the 30-minute soak's 13 million records).
            let mut v = Verifier::new(&chain, &checkpoints, Some(key), GENESIS);
            src.each_record(&chain, &mut |r| v.push(&r))?;
            let located = match v.broken_link().map(str::to_owned) {
                Some(hash) => src.locate(&chain, &hash)?,
                None => None,
            };
            Ok(v.finish(|_| located))
        })
        .collect()
}

/// Search filters; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<String>,
    pub until: Option<String>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub message_type: Option<String>,
    pub outcome: Option<String>,
    pub event: Option<String>,
    /// Already turned into a subject reference (never the person id itself).
    pub subject_ref: Option<String>,
    pub limit: usize,
    /// Only records with `seq` above this (pagination).
    pub after_seq: u64,
}

impl Filter {
    /// The filter's SQL conditions (beyond `seq > after`) and their text arguments, in order;
    /// `placeholder(n)` writes the n-th argument's placeholder (n from 1), for either store.
    pub fn conditions(&self, placeholder: impl Fn(usize) -> String) -> (Vec<String>, Vec<String>) {
        let (mut clauses, mut args) = (Vec::new(), Vec::new());
        let mut add = |template: &str, v: String| {
            args.push(v);
            clauses.push(template.replace('?', &placeholder(args.len())));
        };
        for (template, v) in [
            ("at >= ?", &self.since),
            ("at < ?", &self.until),
            ("source = ?", &self.source),
            ("message_type = ?", &self.message_type),
            ("outcome = ?", &self.outcome),
            ("event = ?", &self.event),
            // The prefix first: the SQLite store indexes subjects by their first 16 hex
            // digits (see the store's AUDIT_INDEXES); both stores then compare the whole value.
            // Every `?` of a template stands for the same argument.
            (
                "substr(subject_ref, 1, 16) = substr(?, 1, 16) AND subject_ref = ?",
                &self.subject_ref,
            ),
        ] {
            if let Some(v) = v {
                add(template, v.clone());
            }
        }
        if let Some(d) = &self.destination {
            // A routed record names several destinations, comma-separated.
            add("(',' || destination || ',') LIKE ?", format!("%,{d},%"));
        }
        (clauses, args)
    }
}

/// Records matching a filter, in chain order.
pub fn search(src: &mut AuditSource, f: &Filter) -> anyhow::Result<Vec<Record>> {
    let conn = match src {
        AuditSource::Sqlite(conn) => conn,
        AuditSource::Postgres(pg) => return Ok(pg.search(f)?),
    };
    // ?1 is `after`; the filter's arguments follow, numbered (a template may use its twice).
    let (conditions, text) = f.conditions(|n| format!("?{}", n + 1));
    let mut clauses = vec!["seq > ?1".to_owned()];
    clauses.extend(conditions);
    let mut args: Vec<String> = vec![f.after_seq.to_string()];
    args.extend(text);
    let sql = format!(
        "SELECT seq, chain_id, event, at, message_id, correlation_id, source, destination, message_type, payload_sha256, outcome, reason, actor, subject_ref, prev_hash, hash
         FROM audit WHERE {} ORDER BY seq LIMIT {}",
        clauses.join(" AND "),
        f.limit.max(1)
    );
    let records = conn
        .prepare(&sql)?
        .query_map(params_from_iter(args.iter()), crate::store::record_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(records)
}

/// The whole timeline of a message and its replies.
pub fn trail(src: &mut AuditSource, message_id: &str) -> anyhow::Result<Vec<Record>> {
    Ok(match src {
        AuditSource::Sqlite(conn) => read_trail(conn, message_id)?,
        AuditSource::Postgres(pg) => pg.trail(message_id)?,
    })
}

/// A table for people: one line per record.
pub fn table(records: &[Record]) -> String {
    let mut out = format!(
        "{:>7}  {:<27}  {:<16}  {:<10}  {:<16}  {:<32}  {}\n",
        "seq", "at", "event", "source", "destination", "message", "outcome / reason"
    );
    for r in records {
        let e = &r.entry;
        let detail = match (&e.outcome, &e.reason) {
            (Some(o), Some(r)) => format!("{o} / {r}"),
            (Some(o), None) => o.clone(),
            (None, Some(r)) => r.clone(),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "{:>7}  {:<27}  {:<16}  {:<10}  {:<16}  {:<32}  {}\n",
            r.seq,
            e.at,
            e.event.as_str(),
            e.source.as_deref().unwrap_or("-"),
            e.destination.as_deref().unwrap_or("-"),
            e.message_id.as_deref().unwrap_or("-"),
            detail
        ));
    }
    out
}

/// What `audit export` writes beside the records, and `audit verify --export` checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub file: String,
    pub file_sha256: String,
    pub chain_id: String,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub count: u64,
    /// What the first exported record links to.
    pub start_prev_hash: String,
    pub final_hash: Option<String>,
    /// Signed checkpoints that fall inside the range.
    pub checkpoints: Vec<Checkpoint>,
}

const CSV_HEADER: &str = "seq,chain_id,event,at,message_id,correlation_id,source,destination,message_type,payload_sha256,outcome,reason,actor,subject_ref,prev_hash,hash";

fn csv_field(out: &mut String, v: Option<&str>) {
    if let Some(v) = v {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    }
}

fn csv_line(r: &Record) -> String {
    let e = &r.entry;
    let mut out = format!("{},", r.seq);
    let fields = std::iter::once(Some(r.chain_id.as_str()))
        .chain(e.fields())
        .chain([Some(r.prev_hash.as_str()), Some(r.hash.as_str())]);
    for (i, v) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, v);
    }
    out
}

/// Parse one CSV line of ours: an empty unquoted field is absent, a quoted one present.
fn csv_parse(line: &str) -> Option<Vec<Option<String>>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        v.push('"');
                    }
                    '"' => break,
                    c => v.push(c),
                }
            }
            fields.push(Some(v));
        } else {
            let mut v = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                v.push(c);
                chars.next();
            }
            fields.push((!v.is_empty()).then_some(v));
        }
        match chars.next() {
            Some(',') => continue,
            None => return Some(fields),
            Some(_) => return None,
        }
    }
}

fn record_from_csv(line: &str) -> Option<Record> {
    let f = csv_parse(line)?;
    if f.len() != 16 {
        return None;
    }
    let get = |i: usize| f.get(i).cloned().flatten();
    Some(Record {
        seq: get(0)?.parse().ok()?,
        chain_id: get(1)?,
        entry: wingspan_core::audit::Entry {
            event: Event::parse(&get(2)?)?,
            at: get(3)?,
            message_id: get(4),
            correlation_id: get(5),
            source: get(6),
            destination: get(7),
            message_type: get(8),
            payload_sha256: get(9),
            outcome: get(10),
            reason: get(11),
            actor: get(12),
            subject_ref: get(13),
        },
        prev_hash: get(14)?,
        hash: get(15)?,
    })
}

/// A file written through a buffer and hashed (SHA-256) as it is written.
struct HashedFile {
    out: std::io::BufWriter<std::fs::File>,
    hash: ring::digest::Context,
}

impl HashedFile {
    fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            out: std::io::BufWriter::new(std::fs::File::create(path)?),
            hash: ring::digest::Context::new(&ring::digest::SHA256),
        })
    }

    fn line(&mut self, text: &str) -> std::io::Result<()> {
        for part in [text.as_bytes(), b"\n"] {
            self.hash.update(part);
            self.out.write_all(part)?;
        }
        Ok(())
    }

    /// Flush and sync; the file's SHA-256, hex.
    fn finish(self) -> std::io::Result<String> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(wingspan_core::audit::hex(self.hash.finish().as_ref()))
    }
}

/// Export every chain's records in [since, until) to `dir`: one records file and one
/// manifest per chain. Returns the manifests. The chain is read twice, one record at a time
/// (a year's chain is exported in constant memory): once to find the range, once to write it.
pub fn export(
    src: &mut AuditSource,
    since: Option<&str>,
    until: Option<&str>,
    format: &str,
    dir: &Path,
) -> anyhow::Result<Vec<Manifest>> {
    anyhow::ensure!(
        format == "jsonl" || format == "csv",
        "format is jsonl or csv"
    );
    std::fs::create_dir_all(dir)?;
    let checkpoints = src.checkpoints()?;
    let mut manifests = Vec::new();
    for chain in src.chains()? {
        // A contiguous range of the chain: from the first record inside to the last.
        let mut range: Option<(u64, u64)> = None;
        src.each_record(&chain, &mut |r| {
            let inside = since.is_none_or(|s| r.entry.at.as_str() >= s)
                && until.is_none_or(|u| r.entry.at.as_str() < u);
            if inside {
                range = Some(range.map_or((r.seq, r.seq), |(lo, _)| (lo, r.seq)));
            }
        })?;
        let file = format!("audit-{chain}.{format}");
        let mut out = HashedFile::create(&dir.join(&file))?;
        if format == "csv" {
            out.line(CSV_HEADER)?;
        }
        let (mut count, mut start_prev_hash, mut final_hash) = (0u64, None, None);
        let mut failed: Option<anyhow::Error> = None;
        if let Some((lo, hi)) = range {
            src.each_record(&chain, &mut |r| {
                if r.seq < lo || r.seq > hi || failed.is_some() {
                    return;
                }
                let line = match format {
                    "csv" => Ok(csv_line(&r)),
                    _ => serde_json::to_string(&r),
                };
                if let Err(e) = line
                    .map_err(anyhow::Error::from)
                    .and_then(|l| out.line(&l).map_err(anyhow::Error::from))
                {
                    failed = Some(e);
                    return;
                }
                count += 1;
                if start_prev_hash.is_none() {
                    start_prev_hash = Some(r.prev_hash.clone());
                }
                final_hash = Some(r.hash);
            })?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let file_sha256 = out.finish()?;
        let (lo, hi) = (range.map(|r| r.0), range.map(|r| r.1));
        let manifest = Manifest {
            format: format.into(),
            file: file.clone(),
            file_sha256,
            chain_id: chain.clone(),
            first_seq: lo,
            last_seq: hi,
            count,
            start_prev_hash: start_prev_hash.unwrap_or_else(|| GENESIS.to_owned()),
            final_hash,
            checkpoints: checkpoints
                .iter()
                .filter(|c| {
                    c.chain_id == chain
                        && lo.is_some_and(|lo| c.seq >= lo)
                        && hi.is_some_and(|hi| c.seq <= hi)
                })
                .cloned()
                .collect(),
        };
        std::fs::write(
            dir.join(format!("audit-{chain}.manifest.json")),
            serde_json::to_vec_pretty(&manifest)?,
        )?;
        manifests.push(manifest);
    }
    Ok(manifests)
}

/// Each line of an exported records file, as it stands (newline removed) and as a record if
/// it is one; the header of a CSV file is skipped. `f` gets the line's number (from 1).
/// Returns the SHA-256 (hex) of the whole file, read once, a line at a time.
fn each_exported(
    path: &Path,
    format: &str,
    f: &mut dyn FnMut(usize, Option<Record>),
) -> anyhow::Result<String> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        hash.update(&buf);
        n += 1;
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches('\n').trim_end_matches('\r');
        if line.is_empty() || (format == "csv" && n == 1) {
            continue;
        }
        let parsed = match format {
            "csv" => record_from_csv(line),
            _ => serde_json::from_str::<Record>(line).ok(),
        };
        f(n, parsed);
    }
    Ok(wingspan_core::audit::hex(hash.finish().as_ref()))
}

/// Verify an export directory offline: each manifest's file hash, the records' chain from
/// the manifest's start, the count and final hash, and the checkpoints' signatures.
pub fn verify_export(
    dir: &Path,
    key: &str,
) -> anyhow::Result<Vec<(Manifest, Report, Vec<String>)>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    anyhow::ensure!(
        !entries.is_empty(),
        "no *.manifest.json in {}",
        dir.display()
    );
    for e in entries {
        let manifest: Manifest = serde_json::from_slice(&std::fs::read(e.path())?)?;
        let path = dir.join(&manifest.file);
        let mut problems = Vec::new();
        // One record at a time; a second pass over the file only to name where a chain broke.
        let mut v = Verifier::new(
            &manifest.chain_id,
            &manifest.checkpoints,
            Some(key),
            &manifest.start_prev_hash,
        );
        let (mut count, mut last_hash) = (0u64, None::<String>);
        let file_sha256 = each_exported(&path, &manifest.format, &mut |n, r| match r {
            Some(r) => {
                v.push(&r);
                count += 1;
                last_hash = Some(r.hash);
            }
            None => problems.push(format!("line {n} is not a record")),
        })?;
        if file_sha256 != manifest.file_sha256 {
            problems.push(format!(
                "{} does not match the manifest's hash",
                manifest.file
            ));
        }
        if count != manifest.count {
            problems.push(format!(
                "{count} records, the manifest says {}",
                manifest.count
            ));
        }
        if last_hash != manifest.final_hash {
            problems.push("the last record's hash is not the manifest's final hash".into());
        }
        let located = match v.broken_link().map(str::to_owned) {
            Some(hash) => {
                let mut at = Locate::new(&hash);
                each_exported(&path, &manifest.format, &mut |_, r| {
                    if let Some(r) = r {
                        at.push(&r);
                    }
                })?;
                at.found()
            }
            None => None,
        };
        let report = v.finish(|_| located);
        out.push((manifest, report, problems));
    }
    Ok(out)
}
