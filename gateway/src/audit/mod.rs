//! The audit trail's shell: its keys (read, or created on first start), the entries the
//! gateway's steps produce, and the commands compliance runs (`wingspan audit …`).
//! Records are appended by the state store's writer thread, in the same transaction as the
//! receipt or delivery state they account for (see `store`); hashing and verification are
//! the core's (`wingspan_core::audit`).

use wingspan_core::Envelope;
use wingspan_core::audit::{Entry, Event};

use crate::load::Loaded;

pub mod archive;
mod export;
mod keys;
pub mod pace;
pub mod pg;
pub mod sqlite;
pub mod subject;
pub mod tsa;

pub use export::{Manifest, export, verify_export};
pub use keys::{AuditKeys, keys, trusted_key};

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
use wingspan_core::audit::{Checkpoint, GENESIS, Record, Report, Suite, Verifier};

use pg::PgAudit;
use sqlite::{read_checkpoints, read_trail};

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
                    .and_then(|conn| {
                        sqlite::keys_readable(&conn)?;
                        Ok(conn)
                    })
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
            Self::Sqlite(conn) => {
                let mut chains: Vec<String> = conn
                    .prepare("SELECT DISTINCT chain_id FROM audit ORDER BY chain_id")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                // A chain wholly archived has no live record left.
                for s in archive::indexed(conn, None)? {
                    if !chains.contains(&s.chain_id) {
                        chains.push(s.chain_id);
                    }
                }
                chains.sort();
                chains
            }
            Self::Postgres(pg) => pg.chains()?,
        })
    }

    /// Every record of a chain in storage order, one at a time (constant memory): from the
    /// archive, those no longer in the live store, then the live store's. An archived
    /// segment that cannot be read is an error.
    fn each_record(&mut self, chain_id: &str, f: &mut dyn FnMut(Record)) -> anyhow::Result<()> {
        self.each_record_noting(chain_id, f, None)
    }

    /// As [`Self::each_record`]; with `problems`, an unreadable segment is noted there and
    /// skipped (verification reports what is then missing from the chain).
    fn each_record_noting(
        &mut self,
        chain_id: &str,
        f: &mut dyn FnMut(Record),
        problems: Option<&mut Vec<String>>,
    ) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(conn) => {
                archive::each_archived(conn, chain_id, &|_| true, f, problems)?;
                sqlite::each_record(conn, chain_id, f)?;
            }
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
        // What cannot be read was reported by the pass that asked.
        let mut unread = Vec::new();
        self.each_record_noting(chain_id, &mut |r| at.push(&r), Some(&mut unread))?;
        Ok(at.found())
    }

    /// The suite a chain is kept with.
    pub fn suite(&mut self, chain_id: &str) -> anyhow::Result<Suite> {
        Ok(match self {
            Self::Sqlite(conn) => sqlite::chain_suite(conn, chain_id)?,
            Self::Postgres(pg) => pg.chain_suite(chain_id)?,
        })
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

/// One chain's verification: the chain as one (archived segments, then the live store) and
/// each archived segment on its own.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainVerified {
    #[serde(flatten)]
    pub report: Report,
    /// Archived segments checked.
    pub segments: u64,
    /// What is wrong with the archive: a segment missing, edited, unsigned, or not where the
    /// chain's own `archived` records say.
    pub archive_problems: Vec<String>,
    /// RFC 3161 tokens kept beside the chain's checkpoints.
    pub timestamps: u64,
    /// Tokens that do not match their checkpoint (a chain rewritten after it was stamped), do
    /// not verify under the TSA certificate, or name a checkpoint the store does not have.
    pub timestamp_problems: Vec<String>,
}

impl ChainVerified {
    pub fn ok(&self) -> bool {
        self.report.ok() && self.archive_problems.is_empty() && self.timestamp_problems.is_empty()
    }
}

/// Verify every chain of the store, with its archive.
pub fn verify_store(src: &mut AuditSource, key: &str) -> anyhow::Result<Vec<ChainVerified>> {
    verify_store_with(src, key, None)
}

/// [`verify_store`], the chains' time-stamps checked under the TSA certificate (DER) too.
pub fn verify_store_with(
    src: &mut AuditSource,
    key: &str,
    tsa_cert: Option<&[u8]>,
) -> anyhow::Result<Vec<ChainVerified>> {
    let checkpoints = src.checkpoints()?;
    src.chains()?
        .into_iter()
        .map(|chain| {
            let suite = src.suite(&chain)?;
            // One record at a time: a chain of millions verifies in constant memory (holding
            // the chain took 9.7 GB after the 30-minute soak's 13 million records).
            let mut v = Verifier::new(suite, &chain, &checkpoints, Some(key), GENESIS);
            // The segments the chain itself says were sealed (file hashes).
            let mut announced = Vec::new();
            let mut problems = Vec::new();
            src.each_record_noting(
                &chain,
                &mut |r| {
                    v.push(&r);
                    if r.entry.event == Event::Archived
                        && let Some(h) = r.entry.payload_sha256
                    {
                        announced.push(h);
                    }
                },
                Some(&mut problems),
            )?;
            // Each segment on its own, once the chain's key rotations are known.
            let segments = match src {
                AuditSource::Sqlite(conn) => {
                    let (segments, found) =
                        archive::check_indexed(conn, &chain, suite, key, v.rotations())?;
                    problems.extend(found);
                    segments
                }
                AuditSource::Postgres(_) => Vec::new(),
            };
            for h in &announced {
                if !segments.iter().any(|s| &s.file_sha256 == h) {
                    problems.push(format!(
                        "the chain records a sealed segment (file SHA-256 {h}) the archive no longer lists"
                    ));
                }
            }
            let located = match v.broken_link().map(str::to_owned) {
                Some(hash) => src.locate(&chain, &hash)?,
                None => None,
            };
            let tokens = match src {
                AuditSource::Sqlite(conn) => sqlite::timestamps(conn, &chain)?,
                AuditSource::Postgres(pg) => pg.timestamps(&chain)?,
            };
            Ok(ChainVerified {
                report: v.finish(|_| located),
                segments: u64::try_from(segments.len()).unwrap_or(u64::MAX),
                archive_problems: problems,
                timestamps: u64::try_from(tokens.len()).unwrap_or(u64::MAX),
                timestamp_problems: tsa::check_tokens(&tokens, &checkpoints, &chain, tsa_cert),
            })
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
    /// The same person's references under earlier subject keys (`previous_subject_key_files`):
    /// a record with any of them matches too.
    pub earlier_subject_refs: Vec<String>,
    pub limit: usize,
    /// Only records with `seq` above this (pagination).
    pub after_seq: u64,
}

/// The SQLite store's condition on a subject reference: the records its sorted runs key by
/// the reference's first 16 hex digits (and the newest, not yet keyed), then the whole value.
pub static SQLITE_SUBJECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "seq IN ({}) AND subject_ref = ?",
        sqlite::subject_records("?")
    )
});

impl Filter {
    /// The filter's SQL conditions (beyond `seq > after`) and their text arguments, in order;
    /// `placeholder(n)` writes the n-th argument's placeholder (n from 1), for either store;
    /// `subject` is the store's condition on one subject reference, each `?` in it standing
    /// for the same argument ([`SQLITE_SUBJECT`], or `subject_ref = ?` where the column is
    /// indexed).
    pub fn conditions(
        &self,
        subject: &str,
        placeholder: impl Fn(usize) -> String,
    ) -> (Vec<String>, Vec<String>) {
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
        ] {
            if let Some(v) = v {
                add(template, v.clone());
            }
        }
        if let Some(d) = &self.destination {
            // A message's routing (its received record; `routed` in older chains) names several
            // destinations, comma-separated.
            add("(',' || destination || ',') LIKE ?", format!("%,{d},%"));
        }
        if let Some(current) = &self.subject_ref {
            let mut either = Vec::new();
            for r in std::iter::once(current).chain(&self.earlier_subject_refs) {
                args.push(r.clone());
                either.push(format!(
                    "({})",
                    subject.replace('?', &placeholder(args.len()))
                ));
            }
            clauses.push(format!("({})", either.join(" OR ")));
        }
        (clauses, args)
    }
}

impl Filter {
    /// Whether a record matches, as [`Filter::conditions`] says it in SQL (for archived
    /// records, read from their files).
    pub fn matches(&self, r: &Record) -> bool {
        let e = &r.entry;
        let is = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        r.seq > self.after_seq
            && self
                .since
                .as_ref()
                .is_none_or(|s| e.at.as_str() >= s.as_str())
            && self
                .until
                .as_ref()
                .is_none_or(|u| e.at.as_str() < u.as_str())
            && is(&self.source, &e.source)
            && is(&self.message_type, &e.message_type)
            && is(&self.outcome, &e.outcome)
            && self.event.as_ref().is_none_or(|v| e.event.as_str() == v)
            && self.subject_ref.as_ref().is_none_or(|w| {
                e.subject_ref.as_ref().is_some_and(|have| {
                    have == w || self.earlier_subject_refs.iter().any(|x| x == have)
                })
            })
            && self.destination.as_ref().is_none_or(|d| {
                e.destination
                    .as_ref()
                    .is_some_and(|have| have.split(',').any(|x| x == d))
            })
    }
}

/// Records matching a filter, in chain order: from the archive (records no longer in the
/// live store; a segment outside the filter's time window is not read), then the live store.
pub fn search(src: &mut AuditSource, f: &Filter) -> anyhow::Result<Vec<Record>> {
    let conn = match src {
        AuditSource::Sqlite(conn) => conn,
        AuditSource::Postgres(pg) => return Ok(pg.search(f)?),
    };
    let limit = f.limit.max(1);
    let mut found = archive::search(conn, f, limit)?;
    if found.len() >= limit {
        return Ok(found);
    }
    // ?1 is `after`; the filter's arguments follow, numbered (a template may use its twice).
    let (conditions, text) = f.conditions(&SQLITE_SUBJECT, |n| format!("?{}", n + 1));
    let mut clauses = vec!["seq > ?1".to_owned()];
    clauses.extend(conditions);
    let mut args: Vec<String> = vec![f.after_seq.to_string()];
    args.extend(text);
    let sql = format!(
        "SELECT {} FROM audit WHERE {} ORDER BY seq LIMIT {}",
        sqlite::RECORD_COLUMNS,
        clauses.join(" AND "),
        limit - found.len()
    );
    let records = conn
        .prepare(&sql)?
        .query_map(params_from_iter(args.iter()), sqlite::record_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    found.extend(records);
    Ok(found)
}

/// The whole timeline of a message and its replies.
pub fn trail(src: &mut AuditSource, message_id: &str) -> anyhow::Result<Vec<Record>> {
    Ok(match src {
        AuditSource::Sqlite(conn) => {
            let mut records = archive::trail(conn, message_id)?;
            records.extend(read_trail(conn, message_id)?);
            records
        }
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
