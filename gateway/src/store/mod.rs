//! Receipts and delivery status in an embedded SQLite database (WAL, synchronous=NORMAL).
//!
//! One store thread owns the writing connection and applies commands in batches, one
//! transaction per batch (group commit): a caller that needs durability (a receipt before the
//! upstream ack) awaits its batch's commit; status updates are fire-and-forget. Reads (the
//! duplicate lookup on the hot path, status queries) use a small pool of read connections and
//! run inline: they are index lookups of microseconds and see committed data only.
//! Nothing here holds payloads: ids, types, destinations, states and error reasons only.
//!
//! The audit trail lives here too (tables `audit` and `audit_checkpoints`): the writer thread
//! owns the chain head, appends each batch's records in the same transaction as the receipts
//! and states they account for, and signs the head every N records or T seconds. The
//! gateway never updates or deletes an audit record; the one exception is the start-up
//! recovery that cuts back a tail that fails verification, and it says so in a record.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use crate::stats::StoreTimes;
use rusqlite::{Connection, OptionalExtension, params};
use wingspan_core::audit::{Checkpoint, Entry, Event, Finding, GENESIS, Head, Record};

use crate::audit::{AuditKeys, now};

pub mod audit_pg;
mod seen;
use seen::Seen;
use serde::Serialize;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store writer has stopped")]
    Stopped,
    #[error("state store: {0}")]
    Io(#[from] std::io::Error),
}

/// What the sender gets back on acceptance (and again, unchanged, on a duplicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Receipt {
    pub message_id: String,
    pub status: String,
    pub destinations: Vec<String>,
}

/// Delivery state of one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Queued,
    Retrying,
    Delivered,
    DeadLettered,
    /// Taken from the parked queue by an operator and sent again.
    Replayed,
    /// Dropped from the parked queue by an operator.
    Discarded,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::DeadLettered => "dead-lettered",
            Self::Replayed => "replayed",
            Self::Discarded => "discarded",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryStatus {
    pub destination: String,
    pub state: String,
    pub attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplyRef {
    pub message_id: String,
    pub message_type: String,
    pub source: String,
    pub received_at: String,
}

/// Where a message is: `GET /v1/messages/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct MessageStatus {
    pub message_id: String,
    pub source: String,
    pub message_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// For replies: `matched` when the correlation id names a message this gateway accepted,
    /// `unknown` when it does not (the reply is delivered all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<&'static str>,
    pub status: String,
    pub accepted_at: String,
    pub destinations: Vec<DeliveryStatus>,
    pub replies: Vec<ReplyRef>,
}

/// A new accepted message, recorded before the upstream ack.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub source: String,
    pub message_id: String,
    pub message_type: String,
    pub correlation_id: Option<String>,
    /// For a reply: whether its correlation id names no message this gateway accepted.
    pub correlation_unknown: bool,
    pub destinations: Vec<String>,
    /// Destinations already delivered at intake (AMQP destinations): recorded in the receipt,
    /// so they need no status row of their own.
    pub delivered: Vec<String>,
}

type Done = oneshot::Sender<Result<(), String>>;

enum Cmd {
    /// A receipt with its audit records; `Some(failed)`: only if the records it follows
    /// (its message's early records) were written.
    Receipt(NewReceipt, String, Done, Vec<Entry>, Option<Failed>),
    /// Audit records; `Some` waits for their commit.
    Audit(Vec<Entry>, Option<Done>),
    /// Audit records that a later command depends on: the flag is raised if their batch fails.
    AuditFirst(Vec<Entry>, Done, Failed),
    /// Cap the database at this many pages (`None`: SQLite's maximum).
    MaxPages(Option<u64>),
    /// A config that went live: kept by hash (text, first and last load, how many loads).
    Config {
        sha256: String,
        text: String,
        at: String,
        done: Done,
    },
    Delivery {
        source: String,
        message_id: String,
        destination: String,
        state: DeliveryState,
        attempts: u32,
        error: Option<String>,
        at: String,
    },
}

/// Raised by the store thread when the batch holding records queued with
/// [`Store::audit_enqueue`] failed. A receipt queued after them carries it, and is refused if
/// it is raised: a message is never acknowledged (its receipt never exists) without its early
/// audit records, even when their batch failed and the receipt's, the next one, would commit.
#[derive(Debug, Clone, Default)]
pub struct Failed(Arc<std::sync::atomic::AtomicBool>);

impl Failed {
    fn raise(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
    fn is_raised(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Records queued with [`Store::audit_enqueue`]: the outcome of their commit, and the flag a
/// receipt that follows them carries ([`Store::put_receipt`]).
#[derive(Debug)]
pub struct Queued {
    pub outcome: oneshot::Receiver<Result<(), String>>,
    pub failed: Failed,
}

/// How the store keeps the audit chain.
#[derive(Debug, Clone)]
pub struct AuditSetup {
    pub chain_id: String,
    /// `Some(url)`: the audit trail goes to PostgreSQL instead of this SQLite database.
    pub postgres: Option<String>,
    pub keys: Arc<AuditKeys>,
    pub checkpoint_every: u64,
    pub checkpoint_secs: u64,
}

/// Handle to the store; clone freely.
#[derive(Clone, Debug)]
pub struct Store {
    tx: std_mpsc::SyncSender<Cmd>,
    readers: Arc<Readers>,
    seen: Arc<Seen>,
    audit: AuditSetup,
    /// How long each batch of writes took from its first command to its commit.
    times: Arc<Mutex<StoreTimes>>,
}

/// Read connections, one per concurrent reader (WAL readers see committed data and never
/// block the writer). Reads are index lookups of microseconds, run inline on the caller's thread.
#[derive(Debug)]
struct Readers {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open(&self.path)?,
        };
        let result = f(&conn).map_err(StoreError::from);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        result
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Small pages: every receipt lands on a random leaf (message ids are random), and each
    // commit writes whole dirty pages to the WAL; 1 KiB pages write a quarter of 4 KiB ones.
    // Takes effect when the database is created.
    conn.pragma_update(None, "page_size", 1024)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // WAL + NORMAL survives a process crash (the failure the ack rule is about); a power loss
    // may forget the newest receipts, which costs at worst a duplicate the partner absorbs.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // No checkpoint inside a commit: a checkpoint copies the WAL into the database and syncs,
    // and every receipt waiting on that commit would wait for it. The checkpoint thread does it.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // The log's file is reused from its beginning when the log restarts (see `bound_wal`),
    // and cut back to this size if it ever grew longer (readers held a restart off).
    conn.pragma_update(
        None,
        "journal_size_limit",
        WAL_LIMIT_FRAMES * WAL_FRAME_BYTES,
    )?;
    // SQLite's default 2 MB page cache, for every connection. A reader's cache is dropped
    // whenever the writer has committed (hundreds of times a second under load), so a large
    // one bought nothing but resident memory (it was 64 MiB a reader). The writer reads
    // through the memory map; its cache holds little more than the pages a commit dirties,
    // and SQLite scans the whole cache's hash table at the end of every transaction: a large
    // one cost a third of the gateway's CPU at small batches (HTTP ingress).
    conn.pragma_update(None, "cache_size", -2000)?;
    // Because a reader's cache is dropped so often, without memory mapping every duplicate
    // lookup would pread its pages again. The map is capped: its pages count
    // in the process's resident memory, and with a 1 GiB map that grew with the database for
    // the whole of a 30-minute soak (anonymous memory stayed flat).
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    Ok(conn)
}

/// How much of the state database each connection maps (SQLite `mmap_size`).
const MMAP_BYTES: i64 = 64 << 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS receipts (
  source TEXT NOT NULL, message_id TEXT NOT NULL, message_type TEXT NOT NULL,
  correlation_id TEXT, destinations TEXT NOT NULL, delivered TEXT, accepted_at TEXT NOT NULL,
  correlation_unknown INTEGER,
  PRIMARY KEY (message_id, source)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS receipts_by_correlation ON receipts(correlation_id) WHERE correlation_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, chain_id TEXT NOT NULL, event TEXT NOT NULL, at TEXT NOT NULL,
  message_id TEXT, correlation_id TEXT, source TEXT, destination TEXT, message_type TEXT,
  payload_sha256 TEXT, outcome TEXT, reason TEXT, actor TEXT, subject_ref TEXT,
  prev_hash TEXT NOT NULL, hash TEXT NOT NULL, thread INTEGER);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  chain_id TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL, signed_at TEXT NOT NULL,
  key_id TEXT NOT NULL, signature TEXT NOT NULL, PRIMARY KEY (chain_id, seq));
CREATE TABLE IF NOT EXISTS configs (
  sha256 TEXT PRIMARY KEY, text TEXT NOT NULL, first_loaded_at TEXT NOT NULL,
  last_loaded_at TEXT NOT NULL, loads INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
  source TEXT NOT NULL, message_id TEXT NOT NULL, destination TEXT NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, updated_at TEXT NOT NULL,
  PRIMARY KEY (message_id, source, destination)) WITHOUT ROWID;
";

/// The audit trail's indexes, by thread (see [`thread_of`]). Message ids are random, so an
/// index entry per record by message id (five per message) landed each on a random leaf of an
/// ever larger index: the store's write rate fell with its size, and the soak fell behind.
/// Only a thread's first record is indexed by message id; the others by thread, whose values
/// grow with the chain (their inserts land at the index's end).
///
/// Subjects (keyed hashes, 64 hex digits) are random too, and a message's first records name
/// its person: the whole value indexed, with 1 KiB pages an index entry took ~75 bytes, the
/// index was five levels deep and split often, and it was the largest share of what the
/// store wrote — 16 of the ~44 pages a commit wrote to the log in the soak, and most of the
/// random writes into the database. It now holds the first 16 hex digits (64 bits: a lookup
/// compares the whole value after), of records that name a subject only: entries a third of
/// the size. (Read in `audit::Filter::conditions`.)
const AUDIT_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS audit_threads ON audit(message_id) WHERE thread = seq;
CREATE INDEX IF NOT EXISTS audit_by_thread ON audit(thread);
DROP INDEX IF EXISTS audit_subjects;
CREATE INDEX IF NOT EXISTS audit_subject_keys ON audit(substr(subject_ref, 1, 16))
  WHERE subject_ref IS NOT NULL;
";

/// Stores made before threads: number every record's thread (all records of one message id
/// and source become one thread, from the first), then drop the per-record indexes.
const AUDIT_THREADS_MIGRATION: &str = "
ALTER TABLE audit ADD COLUMN thread INTEGER;
UPDATE audit SET thread = (SELECT min(a.seq) FROM audit a
  WHERE a.message_id = audit.message_id AND a.source IS audit.source)
  WHERE message_id IS NOT NULL;
DROP INDEX IF EXISTS audit_by_message;
DROP INDEX IF EXISTS audit_by_subject;
";

impl Store {
    /// Open (creating) `dir/wingspan-state.db`.
    pub fn open(dir: &Path, audit: AuditSetup) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("wingspan-state.db");
        let writer = open(&path)?;
        writer.execute_batch(SCHEMA)?;
        // Stores created before replies were flagged lack the column.
        let has_flag: i64 = writer.query_row(
            "SELECT count(*) FROM pragma_table_info('receipts') WHERE name = 'correlation_unknown'",
            [],
            |r| r.get(0),
        )?;
        if has_flag == 0 {
            writer.execute_batch("ALTER TABLE receipts ADD COLUMN correlation_unknown INTEGER")?;
        }
        let has_threads: i64 = writer.query_row(
            "SELECT count(*) FROM pragma_table_info('audit') WHERE name = 'thread'",
            [],
            |r| r.get(0),
        )?;
        if has_threads == 0 {
            writer.execute_batch(&format!("BEGIN; {AUDIT_THREADS_MIGRATION} COMMIT;"))?;
        }
        writer.execute_batch(AUDIT_INDEXES)?;
        let seen = Seen::default();
        {
            let mut stmt = writer.prepare("SELECT source, message_id FROM receipts")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let (source, message_id): (String, String) = (row.get(0)?, row.get(1)?);
                seen.insert(&source, &message_id);
            }
        }
        let sqlite_chain = match &audit.postgres {
            None => Some(recover_chain(&writer, &audit)?),
            Some(_) => None,
        };
        let (tx, rx) = std_mpsc::sync_channel::<Cmd>(65_536);
        let checkpointer = open(&path)?;
        let (alive, stopped) = std_mpsc::channel::<()>();
        let setup = audit.clone();
        // The PostgreSQL client is synchronous and must not run on an async runtime's thread:
        // the writer thread connects, and tells us whether it could.
        let (ready, started) = std_mpsc::channel::<Result<(), String>>();
        let times = Arc::new(Mutex::new(StoreTimes::default()));
        let writer_times = times.clone();
        // The log's length as the checkpoint thread last saw it, for the writer's `bound_wal`.
        let log_frames = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let writer_frames = log_frames.clone();
        let checkpoint_times = times.clone();
        std::thread::Builder::new()
            .name("wingspan-store".into())
            .spawn(move || {
                let opened = match (&setup.postgres, sqlite_chain) {
                    (_, Some(chain)) => Ok((chain, None)),
                    (Some(url), None) => audit_pg::PgAudit::connect(url)
                        .and_then(|mut pg| {
                            let (head, signed_seq) = pg.head(&setup.chain_id)?;
                            Ok((
                                Chain {
                                    head,
                                    signed_seq,
                                    signed_at: std::time::Instant::now(),
                                },
                                Some(pg),
                            ))
                        })
                        .map_err(|e| format!("audit store: {e}")),
                    (None, None) => Err("no audit chain".to_owned()),
                };
                match opened {
                    Ok((chain, pg)) => {
                        let _ = ready.send(Ok(()));
                        write_loop(writer, rx, chain, pg, &setup, &writer_times, &writer_frames);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
                drop(alive);
            })?;
        started
            .recv()
            .map_err(|_| StoreError::Stopped)?
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        std::thread::Builder::new()
            .name("wingspan-ckpt".into())
            .spawn(move || {
                checkpoint_loop(checkpointer, stopped, &log_frames, &checkpoint_times)
            })?;
        Ok(Self {
            tx,
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            seen: Arc::new(seen),
            audit,
            times,
        })
    }

    /// Cap the store's size in pages (`None` lifts the cap). A full store refuses writes:
    /// intake answers 503 and deliveries stay unacknowledged until there is room again.
    pub async fn limit_pages(&self, pages: Option<u64>) -> Result<(), StoreError> {
        self.send(Cmd::MaxPages(pages)).await
    }

    /// The store's current size in pages.
    pub fn pages(&self) -> Result<u64, StoreError> {
        self.readers
            .read(|c| c.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0)))
            .map(|n| u64::try_from(n).unwrap_or(0))
    }

    /// Run a read (on a pooled read connection, off the async threads).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = None;
            readers.read(|c| {
                out = Some(f(c));
                Ok(())
            })?;
            out.unwrap_or_else(|| Err(anyhow::anyhow!("read did not run")))
        })
        .await
        .map_err(|_| anyhow::anyhow!("read task failed"))?
    }

    /// Read the audit trail (the embedded database, or the shared PostgreSQL store), off the
    /// async threads.
    pub async fn audit_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::audit::AuditSource) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let location = match &self.audit.postgres {
            Some(url) => crate::audit::Location::Postgres(url.clone()),
            None => crate::audit::Location::Sqlite(self.readers.path.clone()),
        };
        tokio::task::spawn_blocking(move || f(&mut location.open()?))
            .await
            .map_err(|_| anyhow::anyhow!("read task failed"))?
    }

    /// The writer's timings (commit lag, log restarts), for the metrics endpoint.
    pub fn times(&self) -> StoreTimes {
        self.times.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The public key of this store's signing key (hex).
    pub fn public_key(&self) -> String {
        self.audit.keys.signing.public_hex()
    }

    /// The subject reference of a person id under this store's audit key.
    pub fn subject_ref(&self, person_id: &str) -> String {
        self.audit.keys.subject_ref(person_id)
    }

    /// The audit chain this store appends to.
    pub fn chain_id(&self) -> &str {
        &self.audit.chain_id
    }

    /// Append audit records and wait until they are committed.
    pub async fn audit(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.send(Cmd::Audit(entries, Some(done))).await?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Io(std::io::Error::other(e))),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Queue audit records without waiting; the receiver of their commit's outcome and the
    /// flag a receipt that depends on them carries. Records queued now precede, in the chain,
    /// everything queued after.
    pub async fn audit_enqueue(&self, entries: Vec<Entry>) -> Result<Queued, StoreError> {
        let (done, outcome) = oneshot::channel();
        let failed = Failed::default();
        self.send(Cmd::AuditFirst(entries, done, failed.clone()))
            .await?;
        Ok(Queued { outcome, failed })
    }

    /// Append audit records without waiting (refusals: the answer does not depend on them).
    pub fn audit_later(&self, entries: Vec<Entry>) {
        if self.tx.try_send(Cmd::Audit(entries, None)).is_err() {
            tracing::error!("state store queue full or stopped; audit records were not queued");
        }
    }

    /// Queue a command for the store thread, waiting for room when its queue is full.
    async fn send(&self, cmd: Cmd) -> Result<(), StoreError> {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(std_mpsc::TrySendError::Disconnected(_)) => return Err(StoreError::Stopped),
            Err(std_mpsc::TrySendError::Full(cmd)) => {
                // The queue is bounded; when full, wait for room on a blocking thread.
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(cmd).map_err(|_| StoreError::Stopped))
                    .await
                    .map_err(|_| StoreError::Stopped)?
                    .map_err(|_| StoreError::Stopped)?;
            }
        }
        Ok(())
    }

    /// Record an accepted message; returns once the record is committed. `after`: the
    /// message's early audit records, queued before; if their batch failed, so does this.
    pub async fn put_receipt(
        &self,
        receipt: NewReceipt,
        audit: Vec<Entry>,
        after: Option<&Queued>,
    ) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.seen.insert(&receipt.source, &receipt.message_id);
        let after = after.map(|q| q.failed.clone());
        self.send(Cmd::Receipt(receipt, now(), done, audit, after))
            .await?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Io(std::io::Error::other(e))),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Keep a config that went live, by its hash (awaited: history is part of the record).
    pub async fn remember_config(&self, sha256: &str, text: &str) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.send(Cmd::Config {
            sha256: sha256.to_owned(),
            text: text.to_owned(),
            at: now(),
            done,
        })
        .await?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Io(std::io::Error::other(e))),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Record a delivery state change (not awaited: status is informational).
    pub fn delivery(
        &self,
        source: &str,
        message_id: &str,
        destination: &str,
        state: DeliveryState,
        attempts: u32,
        error: Option<String>,
    ) {
        let cmd = Cmd::Delivery {
            source: source.to_owned(),
            message_id: message_id.to_owned(),
            destination: destination.to_owned(),
            state,
            attempts,
            error,
            at: now(),
        };
        if self.tx.try_send(cmd).is_err() {
            tracing::warn!("state store queue full; a delivery status update was skipped");
        }
    }

    /// The receipt of an already accepted message, if any (committed receipts only).
    pub async fn receipt(
        &self,
        source: &str,
        message_id: &str,
    ) -> Result<Option<Receipt>, StoreError> {
        if !self.seen.may_contain(source, message_id) {
            return Ok(None);
        }
        self.readers.read(|conn| lookup(conn, source, message_id))
    }

    /// Whether any source's message with this id was accepted.
    pub async fn known(&self, message_id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = self.readers.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM receipts WHERE message_id = ?1 LIMIT 1")?
                .query_row(params![message_id], |r| r.get(0))
                .optional()
        })?;
        Ok(found.is_some())
    }

    /// Everything known about a message id (first source that used it).
    pub async fn status(&self, message_id: &str) -> Result<Option<MessageStatus>, StoreError> {
        let readers = self.readers.clone();
        let message_id = message_id.to_owned();
        tokio::task::spawn_blocking(move || readers.read(|conn| {
            let row = conn
                .prepare_cached("SELECT source, message_type, correlation_id, accepted_at, destinations, delivered, correlation_unknown FROM receipts WHERE message_id = ?1 LIMIT 1")?
                .query_row(params![message_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                    ))
                })
                .optional()?;
            let Some((source, message_type, correlation_id, accepted_at, routed, at_intake, unknown)) = row else {
                return Ok(None);
            };
            let mut destinations = conn
                .prepare_cached("SELECT destination, state, attempts, last_error, updated_at FROM deliveries WHERE source = ?1 AND message_id = ?2 ORDER BY destination")?
                .query_map(params![source, message_id], |r| {
                    Ok(DeliveryStatus {
                        destination: r.get(0)?,
                        state: r.get(1)?,
                        attempts: r.get(2)?,
                        last_error: r.get(3)?,
                        updated_at: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            // A destination delivered at intake, or routed with no status row yet (queued).
            let at_intake: Vec<String> = at_intake.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default();
            for d in serde_json::from_str::<Vec<String>>(&routed).unwrap_or_default() {
                if !destinations.iter().any(|s| s.destination == d) {
                    let done = at_intake.contains(&d);
                    let state = if done { DeliveryState::Delivered } else { DeliveryState::Queued };
                    destinations.push(DeliveryStatus {
                        destination: d,
                        state: state.as_str().into(),
                        attempts: i64::from(done),
                        last_error: None,
                        updated_at: accepted_at.clone(),
                    });
                }
            }
            destinations.sort_by(|a, b| a.destination.cmp(&b.destination));
            let replies = conn
                .prepare_cached("SELECT message_id, message_type, source, accepted_at FROM receipts WHERE correlation_id = ?1 ORDER BY accepted_at")?
                .query_map(params![message_id], |r| {
                    Ok(ReplyRef {
                        message_id: r.get(0)?,
                        message_type: r.get(1)?,
                        source: r.get(2)?,
                        received_at: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(MessageStatus {
                message_id,
                source,
                message_type,
                correlation: correlation_id.as_ref().map(|_| if unknown == Some(1) { "unknown" } else { "matched" }),
                correlation_id,
                status: "accepted".into(),
                accepted_at,
                destinations,
                replies,
            }))
        }))
        .await
        .map_err(|_| StoreError::Stopped)?
    }
}

fn lookup(
    conn: &Connection,
    source: &str,
    message_id: &str,
) -> Result<Option<Receipt>, rusqlite::Error> {
    let dests: Option<String> = conn
        .prepare_cached("SELECT destinations FROM receipts WHERE source = ?1 AND message_id = ?2")?
        .query_row(params![source, message_id], |r| r.get(0))
        .optional()?;
    Ok(dests.map(|d| Receipt {
        message_id: message_id.to_owned(),
        status: "accepted".into(),
        destinations: serde_json::from_str(&d).unwrap_or_default(),
    }))
}

/// The thread a record belongs to: the `seq` of the first record of its message (same message
/// id and source). A `received` record starts a thread (a message sent again is a new
/// thread: received, duplicate); any other record joins the latest thread of its message, or
/// starts one if there is none. Records about no message have none.
///
/// The column is an index aid outside the hashed record: changing it can hide a record from
/// a lookup by message, never from `audit verify`, which reads the whole chain.
fn thread_of(
    conn: &Connection,
    threads: &mut Threads,
    r: &Record,
) -> Result<Option<i64>, rusqlite::Error> {
    let seq = i64::try_from(r.seq).unwrap_or(i64::MAX);
    let Some(message_id) = &r.entry.message_id else {
        return Ok(None);
    };
    let Some(source) = &r.entry.source else {
        return Ok(Some(seq));
    };
    if r.entry.event != Event::Received {
        if let Some(t) = threads.find(source, message_id) {
            return Ok(Some(t));
        }
        let latest: Option<i64> = conn
            .prepare_cached(
                "SELECT max(seq) FROM audit WHERE message_id = ?1 AND thread = seq AND source = ?2",
            )?
            .query_row(params![message_id, source], |row| row.get(0))?;
        if latest.is_some() {
            return Ok(latest);
        }
    }
    threads.started(source, message_id, seq);
    Ok(Some(seq))
}

/// The threads the writer started lately, so that a message's later records (its delivery,
/// moments after its receipt) find theirs without a lookup in the database (profiles showed
/// SQLite re-preparing that lookup on nearly every call, a sixth of the writer's time). Two generations
/// of at most [`Threads::GENERATION`] each: memory is bounded, and an older thread is looked
/// up. Forgotten whenever a transaction fails (its sequence numbers are used again).
#[derive(Default)]
struct Threads {
    current: Generation,
    previous: Generation,
}

/// Threads by message id (looked up without allocating), then by source: the same id from
/// two sources is two messages.
type Generation = HashMap<String, Vec<(String, i64)>>;

impl Threads {
    const GENERATION: usize = 32_768;

    fn find(&self, source: &str, message_id: &str) -> Option<i64> {
        [&self.current, &self.previous].into_iter().find_map(|g| {
            g.get(message_id)?
                .iter()
                .find(|(s, _)| s == source)
                .map(|&(_, seq)| seq)
        })
    }

    fn started(&mut self, source: &str, message_id: &str, seq: i64) {
        if self.current.len() >= Self::GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        let sources = self.current.entry(message_id.to_owned()).or_default();
        match sources.iter_mut().find(|(s, _)| s == source) {
            Some(entry) => entry.1 = seq,
            None => sources.push((source.to_owned(), seq)),
        }
    }

    fn forget(&mut self) {
        self.current.clear();
        self.previous.clear();
    }
}

/// Insert one placed record.
fn insert_record(
    conn: &Connection,
    threads: &mut Threads,
    r: &Record,
) -> Result<(), rusqlite::Error> {
    let thread = thread_of(conn, threads, r)?;
    conn.prepare_cached(&format!(
        "INSERT INTO audit ({RECORD_COLUMNS}, thread) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        i64::try_from(r.seq).unwrap_or(i64::MAX),
        r.chain_id,
        r.entry.event.as_str(),
        r.entry.at,
        r.entry.message_id,
        r.entry.correlation_id,
        r.entry.source,
        r.entry.destination,
        r.entry.message_type,
        r.entry.payload_sha256,
        r.entry.outcome,
        r.entry.reason,
        r.entry.actor,
        r.entry.subject_ref,
        r.prev_hash,
        r.hash,
        thread
    ])?;
    Ok(())
}

/// Place entries at the head of the chain and insert them (or set them aside for
/// PostgreSQL, which commits them before this transaction does).
fn append(
    tx: &rusqlite::Transaction<'_>,
    threads: &mut Threads,
    head: &mut Head,
    entries: &mut Vec<Entry>,
    elsewhere: &mut Option<Vec<Record>>,
) -> Result<(), rusqlite::Error> {
    for e in entries.drain(..) {
        let r = head.append(e);
        match elsewhere {
            Some(v) => v.push(r),
            None => insert_record(tx, threads, &r)?,
        }
    }
    Ok(())
}

/// Apply one command. Audit entries are moved out (a failed batch is not retried: its
/// callers get the error and the upstream is not acknowledged).
fn apply(
    tx: &rusqlite::Transaction<'_>,
    threads: &mut Threads,
    head: &mut Head,
    cmd: &mut Cmd,
    elsewhere: &mut Option<Vec<Record>>,
) -> Result<(), rusqlite::Error> {
    match cmd {
        // Applied before the batch's transaction (see `write_loop`).
        Cmd::MaxPages(_) => {}
        Cmd::Audit(entries, _) | Cmd::AuditFirst(entries, _, _) => {
            append(tx, threads, head, entries, elsewhere)?;
        }
        // Its message's early records failed (in an earlier batch): not written, refused.
        Cmd::Receipt(.., Some(after)) if after.is_raised() => {}
        Cmd::Config {
            sha256, text, at, ..
        } => {
            tx.prepare_cached(
                "INSERT INTO configs (sha256, text, first_loaded_at, last_loaded_at, loads) VALUES (?1, ?2, ?3, ?3, 1)
                 ON CONFLICT (sha256) DO UPDATE SET last_loaded_at = excluded.last_loaded_at, loads = configs.loads + 1",
            )?
            .execute(params![&*sha256, &*text, &*at])?;
        }
        Cmd::Receipt(r, at, _, entries, _) => {
            append(tx, threads, head, entries, elsewhere)?;
            let (r, at) = (&*r, &*at);
            let dests = serde_json::to_string(&r.destinations).unwrap_or_else(|_| "[]".into());
            let delivered = (!r.delivered.is_empty())
                .then(|| serde_json::to_string(&r.delivered).unwrap_or_default());
            tx.prepare_cached(
                "INSERT OR IGNORE INTO receipts (source, message_id, message_type, correlation_id, destinations, delivered, accepted_at, correlation_unknown) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![r.source, r.message_id, r.message_type, r.correlation_id, dests, delivered, at, r.correlation_unknown.then_some(1i64)])?;
        }
        Cmd::Delivery {
            source,
            message_id,
            destination,
            state,
            attempts,
            error,
            at,
        } => {
            let (source, message_id, destination, error, at) =
                (&*source, &*message_id, &*destination, &*error, &*at);
            // A late "retrying" must not overwrite a final state reached by another copy.
            tx.prepare_cached(
                "INSERT INTO deliveries (source, message_id, destination, state, attempts, last_error, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (source, message_id, destination) DO UPDATE SET
                   state = CASE WHEN deliveries.state = 'delivered' THEN deliveries.state ELSE excluded.state END,
                   attempts = max(deliveries.attempts, excluded.attempts),
                   last_error = coalesce(excluded.last_error, deliveries.last_error),
                   updated_at = excluded.updated_at",
            )?
            .execute(params![source, message_id, destination, state.as_str(), *attempts, error, at])?;
        }
    }
    Ok(())
}

/// The write-ahead log's length, in frames, past which the writer has it restarted.
/// 2 Mi frames of 1 KiB pages, about 2 GB of disk: each restart pauses the writer (copying
/// and syncing; in the soak 40–70 ms at first and up to ~0.5 s once the database had grown to
/// 8 GB), so the longer the log, the rarer the pauses (every ~2 minutes at 2,000 msg/s). Its
/// length costs little else: readers look up only the frames not yet copied (the checkpoint
/// thread copies every 100 ms), and its index, mapped by every connection, is 16 MiB at most.
const WAL_LIMIT_FRAMES: i64 = 2 << 20;

/// A frame: a 1 KiB page (the `page_size` set in `open`) and its 24-byte header.
const WAL_FRAME_BYTES: i64 = 1024 + 24;

/// How often, at most, the writer looks at the log's length.
const WAL_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Keep the write-ahead log bounded. The checkpoint thread's passive checkpoints copy frames
/// into the database, but the log restarts from its beginning only when a write transaction
/// begins with every frame copied and no reader on the log; under steady load the writer
/// always has appended more by the time a checkpoint ends, and the log grew without end (9.5
/// GB in 9 minutes of the soak, and its index, mapped into the process, with it).
///
/// So once the log (as long as the checkpoint thread last saw it) passes [`WAL_LIMIT_FRAMES`], the
/// writer, between two batches, copies what the checkpoint thread has not yet (the frames of
/// the last tenth of a second or so) with a passive checkpoint of its own: nothing is
/// appended meanwhile, so its next transaction finds the log fully copied and starts it again
/// from the beginning. It never waits: if the checkpoint thread is mid-copy, or a reader still
/// reads the log when the next transaction begins, it tries again at the next check. (It used
/// to truncate the log past 64 MiB with a `TRUNCATE` checkpoint, waiting up to 200 ms for the
/// checkpoint thread and readers: every 3–4 s under a soak's load.) Returns whether it
/// copied the whole log (a restart is due).
fn bound_wal(conn: &Connection) -> bool {
    let _ = conn.busy_timeout(std::time::Duration::ZERO);
    let done = match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    }) {
        Ok((0, frames, copied)) if frames == copied => true,
        Ok(_) => {
            tracing::debug!(
                "write-ahead log not fully copied: a checkpoint or reader in the way; next time"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "write-ahead log checkpoint failed");
            false
        }
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    done
}

/// Copy the WAL into the database every [`CHECKPOINT_EVERY`] (passive: never blocks the
/// writer or readers), until the store thread stops. This thread, not the writer, should do
/// the copying: once it fell behind (every second, under a soak's load) the writer's own
/// truncations did it, and that was a fifth of the writer's time.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

fn checkpoint_loop(
    conn: Connection,
    stopped: std_mpsc::Receiver<()>,
    frames: &std::sync::atomic::AtomicI64,
    times: &Mutex<StoreTimes>,
) {
    while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
        let started = std::time::Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(n) => frames.store(n, std::sync::atomic::Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "state store checkpoint failed"),
        }
        times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoint
            .observe(started.elapsed());
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// Where the chain stands and when it was last signed.
struct Chain {
    head: Head,
    signed_seq: u64,
    signed_at: std::time::Instant,
}

fn write_loop(
    mut conn: Connection,
    rx: std_mpsc::Receiver<Cmd>,
    mut chain: Chain,
    mut pg: Option<audit_pg::PgAudit>,
    setup: &AuditSetup,
    times: &Mutex<StoreTimes>,
    log_frames: &std::sync::atomic::AtomicI64,
) {
    const BATCH: usize = 2048;
    const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
    let period = std::time::Duration::from_secs(setup.checkpoint_secs);
    // After a failed PostgreSQL append the outcome is unknown: the commit may have happened
    // with only its answer lost. The chain of record is PostgreSQL's, so the next batch
    // continues from the head found there.
    let mut pg_in_doubt = false;
    let mut wal_checked = std::time::Instant::now();
    let mut last_commit = std::time::Instant::now() - GATHER;
    let mut threads = Threads::default();
    loop {
        let first = match rx.recv_timeout(period) {
            Ok(c) => c,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                sign_if_due(&conn, pg.as_mut(), &mut chain, setup, period);
                continue;
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let arrived = std::time::Instant::now();
        let mut batch = vec![first];
        // Group commit: under load (the last commit ended moments ago) wait up to `GATHER` for
        // more commands, so that a commit carries several messages and the pages they share
        // (the tables' ends, the indexes' upper levels) go to the log once, not once each.
        let gather_until = if arrived.duration_since(last_commit) < GATHER {
            arrived + GATHER
        } else {
            arrived
        };
        while batch.len() < BATCH {
            let wait = gather_until.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(wait) {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        if pg_in_doubt && let Some(pg) = pg.as_mut() {
            match pg.ensure().and_then(|()| pg.head(&setup.chain_id)) {
                Ok((found, _)) => {
                    if found.next_seq != chain.head.next_seq {
                        tracing::warn!(
                            ours = chain.head.next_seq,
                            theirs = found.next_seq,
                            "the audit store had committed a batch whose answer was lost; continuing from its head"
                        );
                        chain.head = found;
                    }
                    pg_in_doubt = false;
                }
                Err(e) => tracing::error!(error = %e, "audit store still unavailable"),
            }
        }
        // A new cap (or its lifting) applies before the batch, not in its order within it:
        // records queued while the store was full would otherwise fail the batch that lifts
        // the cap, and with it the first records that found room again.
        for cmd in &batch {
            if let Cmd::MaxPages(n) = cmd {
                let n = n.map_or(4_294_967_294, |n| i64::try_from(n).unwrap_or(i64::MAX));
                if let Err(e) = conn.pragma_update(None, "max_page_count", n) {
                    tracing::error!(error = %e, "state store size cap not applied");
                }
            }
        }
        // The head moves only if the transaction commits.
        let mut head = chain.head.clone();
        let mut elsewhere = pg.as_ref().map(|_| Vec::new());
        let result = (|| {
            // Immediate: the write lock is taken (waiting for it if need be) before the batch
            // reads anything. A deferred transaction that read first would fail at once,
            // without waiting, if another connection committed meanwhile (an instance still
            // closing on the same file: tests reopen a store at once).
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| e.to_string())?;
            for cmd in &mut batch {
                apply(&tx, &mut threads, &mut head, cmd, &mut elsewhere)
                    .map_err(|e| e.to_string())?;
            }
            // The audit records commit first: a receipt is never committed without them.
            if let (Some(pg), Some(records)) = (pg.as_mut(), &elsewhere) {
                pg.ensure()
                    .and_then(|()| pg.append(records))
                    .map_err(|e| format!("audit store: {e}"))?;
            }
            tx.commit().map_err(|e| e.to_string())
        })();
        let outcome = result;
        match &outcome {
            Ok(()) => {
                chain.head = head;
                times
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .commit_lag
                    .observe(arrived.elapsed());
            }
            Err(e) => {
                pg_in_doubt = pg.is_some();
                threads.forget();
                tracing::error!(error = %e, "state store write failed");
            }
        }
        for cmd in batch {
            match cmd {
                Cmd::Receipt(_, _, done, _, Some(after)) if after.is_raised() => {
                    let _ = done.send(Err(
                        "the message's earlier audit records were not written".into()
                    ));
                }
                Cmd::AuditFirst(_, done, failed) => {
                    if outcome.is_err() {
                        failed.raise();
                    }
                    let _ = done.send(outcome.clone());
                }
                Cmd::Receipt(_, _, done, _, _)
                | Cmd::Audit(_, Some(done))
                | Cmd::Config { done, .. } => {
                    let _ = done.send(outcome.clone());
                }
                _ => {}
            }
        }
        sign_if_due(&conn, pg.as_mut(), &mut chain, setup, period);
        if wal_checked.elapsed() >= WAL_CHECK_EVERY {
            wal_checked = std::time::Instant::now();
            let frames = log_frames.load(std::sync::atomic::Ordering::Relaxed);
            if frames > WAL_LIMIT_FRAMES {
                if bound_wal(&conn) {
                    // Restarting: not to be tried again on the checkpoint thread's older count.
                    log_frames.store(0, std::sync::atomic::Ordering::Relaxed);
                }
                times
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .wal_restart
                    .observe(wal_checked.elapsed());
            }
        }
        last_commit = std::time::Instant::now();
    }
    // A last signature over the final head, so a clean stop leaves nothing unsigned.
    sign_if_due(
        &conn,
        pg.as_mut(),
        &mut chain,
        setup,
        std::time::Duration::ZERO,
    );
}

/// Sign the chain head when `checkpoint_every` records or `period` have passed since the last
/// signature and there is something new to sign.
fn sign_if_due(
    conn: &Connection,
    pg: Option<&mut audit_pg::PgAudit>,
    chain: &mut Chain,
    setup: &AuditSetup,
    period: std::time::Duration,
) {
    let last = chain.head.next_seq.saturating_sub(1);
    let pending = last.saturating_sub(chain.signed_seq);
    if pending == 0 || (pending < setup.checkpoint_every && chain.signed_at.elapsed() < period) {
        return;
    }
    let cp = setup.keys.signing.checkpoint(
        &chain.head.chain_id,
        last,
        &chain.head.last_hash,
        &crate::audit::now(),
    );
    if let Some(pg) = pg {
        match pg.ensure().and_then(|()| pg.checkpoint(&cp)) {
            Ok(()) => {
                chain.signed_seq = last;
                chain.signed_at = std::time::Instant::now();
            }
            Err(e) => tracing::error!(error = %e, "audit checkpoint could not be written"),
        }
        return;
    }
    let r = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO audit_checkpoints (chain_id, seq, hash, signed_at, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                cp.chain_id,
                i64::try_from(cp.seq).unwrap_or(i64::MAX),
                cp.hash,
                cp.signed_at,
                cp.key_id,
                cp.signature
            ])
        });
    match r {
        Ok(_) => {
            chain.signed_seq = last;
            chain.signed_at = std::time::Instant::now();
        }
        Err(e) => tracing::error!(error = %e, "audit checkpoint could not be written"),
    }
}

/// One audit row (columns in `RECORD_COLUMNS` order) as a record.
pub fn record_from_row(r: &rusqlite::Row<'_>) -> Result<Record, rusqlite::Error> {
    let event: String = r.get(2)?;
    Ok(Record {
        seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
        chain_id: r.get(1)?,
        entry: Entry {
            // An unknown event code cannot match its hash: verification reports it.
            event: Event::parse(&event).unwrap_or(Event::Recovered),
            at: r.get(3)?,
            message_id: r.get(4)?,
            correlation_id: r.get(5)?,
            source: r.get(6)?,
            destination: r.get(7)?,
            message_type: r.get(8)?,
            payload_sha256: r.get(9)?,
            outcome: r.get(10)?,
            reason: r.get(11)?,
            actor: r.get(12)?,
            subject_ref: r.get(13)?,
        },
        prev_hash: r.get(14)?,
        hash: r.get(15)?,
    })
}

const RECORD_COLUMNS: &str = "seq, chain_id, event, at, message_id, correlation_id, source, destination, message_type, payload_sha256, outcome, reason, actor, subject_ref, prev_hash, hash";

/// Every record of a chain in storage order, one at a time (constant memory).
pub fn each_record(
    conn: &Connection,
    chain_id: &str,
    f: &mut dyn FnMut(Record),
) -> Result<(), rusqlite::Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RECORD_COLUMNS} FROM audit WHERE chain_id = ?1 ORDER BY seq"
    ))?;
    let mut rows = stmt.query(params![chain_id])?;
    while let Some(row) = rows.next()? {
        f(record_from_row(row)?);
    }
    Ok(())
}

/// Every checkpoint, in order.
pub fn read_checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>, rusqlite::Error> {
    conn.prepare(
        "SELECT chain_id, seq, hash, signed_at, key_id, signature FROM audit_checkpoints ORDER BY chain_id, seq",
    )?
    .query_map([], |r| {
        Ok(Checkpoint {
            chain_id: r.get(0)?,
            seq: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            hash: r.get(2)?,
            signed_at: r.get(3)?,
            key_id: r.get(4)?,
            signature: r.get(5)?,
        })
    })?
    .collect()
}

/// The records of a message and of every reply to it, in chain order.
pub fn read_trail(conn: &Connection, message_id: &str) -> Result<Vec<Record>, rusqlite::Error> {
    conn.prepare(&format!(
        "SELECT {RECORD_COLUMNS} FROM audit WHERE thread IN (
           SELECT seq FROM audit WHERE message_id = ?1 AND thread = seq
           UNION ALL
           SELECT a.seq FROM receipts r JOIN audit a ON a.message_id = r.message_id AND a.thread = a.seq
             WHERE r.correlation_id = ?1)
         ORDER BY seq"
    ))?
    .query_map(params![message_id], record_from_row)?
    .collect()
}

/// Load the chain head at start. The records since the last checkpoint are verified; a tail
/// that fails (a torn or damaged last write) is cut back to the last valid record and a
/// `recovered` record says how many were cut. Anything earlier is left for `audit verify`.
fn recover_chain(conn: &Connection, setup: &AuditSetup) -> Result<Chain, StoreError> {
    let last_cp: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_checkpoints WHERE chain_id = ?1 ORDER BY seq DESC LIMIT 1",
            params![setup.chain_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (from, start_prev) = match &last_cp {
        Some((seq, hash)) => (*seq, hash.clone()),
        None => (0, GENESIS.to_owned()),
    };
    let tail: Vec<Record> = conn
        .prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM audit WHERE chain_id = ?1 AND seq > ?2 ORDER BY seq"
        ))?
        .query_map(params![setup.chain_id, from], record_from_row)?
        .collect::<Result<_, _>>()?;
    let report = wingspan_core::audit::verify(&setup.chain_id, &tail, &[], None, &start_prev);
    let mut head = Head {
        chain_id: setup.chain_id.clone(),
        next_seq: u64::try_from(from).unwrap_or(0) + 1,
        last_hash: start_prev,
    };
    let mut cut = None;
    for r in &tail {
        let bad_from = match &report.finding {
            Some(Finding::Modified { seq })
            | Some(Finding::Deleted { seq })
            | Some(Finding::Inserted { seq })
            | Some(Finding::Reordered { seq })
            | Some(Finding::RewrittenBeforeCheckpoint { seq }) => *seq,
            None => u64::MAX,
        };
        if r.seq >= bad_from {
            cut = Some(r.seq);
            break;
        }
        head.next_seq = r.seq + 1;
        head.last_hash = r.hash.clone();
    }
    if let Some(from_seq) = cut {
        let n = conn.execute(
            "DELETE FROM audit WHERE chain_id = ?1 AND seq >= ?2",
            params![setup.chain_id, i64::try_from(from_seq).unwrap_or(i64::MAX)],
        )?;
        let mut e = Entry::new(Event::Recovered, crate::audit::now());
        e.actor = Some("gateway".into());
        e.reason = Some(format!(
            "cut back {n} record(s) from seq {from_seq} that failed verification at start"
        ));
        insert_record(conn, &mut Threads::default(), &head.append(e))?;
        tracing::error!(
            records = n,
            from = from_seq,
            "audit tail failed verification at start; cut back and recorded"
        );
    }
    Ok(Chain {
        signed_seq: u64::try_from(from).unwrap_or(0),
        head,
        signed_at: std::time::Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of a chain, in storage order.
    fn read_chain(conn: &Connection, chain_id: &str) -> Result<Vec<Record>, rusqlite::Error> {
        let mut records = Vec::new();
        each_record(conn, chain_id, &mut |r| records.push(r))?;
        Ok(records)
    }

    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    #[test]
    fn the_write_ahead_log_restarts_once_past_its_limit() {
        let dir = std::env::temp_dir().join(format!("wingspan-wal-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.db");
        let writer = open(&path).expect("open");
        writer
            .execute_batch("CREATE TABLE t (x BLOB)")
            .expect("table");
        let (reader, probe) = (open(&path).expect("reader"), open(&path).expect("probe"));
        let insert = || {
            writer
                .execute("INSERT INTO t VALUES (randomblob(1000))", [])
                .expect("insert");
        };
        // The log's length, as the checkpoint thread sees it (copying as it goes).
        let frames = || -> i64 {
            probe
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                .expect("probe")
        };
        for _ in 0..3000 {
            insert();
            let _: i64 = reader
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .expect("read");
        }
        let wal = std::fs::metadata(dir.join("t.db-wal")).map_or(0, |m| m.len());
        assert!(wal > 3 << 20, "the log should have grown: {wal}");
        // A reader inside a read transaction holds the log: no restart while it reads.
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM t;")
            .expect("begin read");
        assert!(bound_wal(&writer), "the writer's copy did not finish");
        insert();
        assert!(
            frames() > 3000,
            "restarted under a reader's feet: {}",
            frames()
        );
        reader.execute_batch("COMMIT").expect("end read");
        // Nothing holds it now: the writer copies the rest and its next transaction starts the
        // log again from its beginning.
        insert();
        assert!(bound_wal(&writer));
        insert();
        assert!(
            frames() < 10,
            "the log was not restarted: {} frames",
            frames()
        );
        let rows: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("read after");
        assert_eq!(rows, 3003);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn setup() -> AuditSetup {
        AuditSetup {
            chain_id: "gw-test".into(),
            postgres: None,
            keys: Arc::new(AuditKeys::from_parts(SEED, b"subject-secret").expect("keys")),
            checkpoint_every: 50,
            checkpoint_secs: 60,
        }
    }

    fn entry(i: usize) -> Entry {
        let mut e = Entry::new(Event::Accepted, format!("2026-11-29T10:00:00.{i:06}Z"));
        e.message_id = Some(format!("m-{i}"));
        e
    }

    /// As `wingspan audit verify` does it: streamed, one record at a time.
    fn verify_db(dir: &Path) -> wingspan_core::audit::Report {
        let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
        let key = AuditKeys::from_parts(SEED, b"x")
            .expect("keys")
            .signing
            .public_hex();
        let mut src = crate::audit::AuditSource::Sqlite(conn);
        crate::audit::verify_store(&mut src, &key)
            .expect("verify")
            .into_iter()
            .find(|r| r.chain_id == "gw-test")
            .expect("the chain")
    }

    /// Appends are chained and signed; every way of tampering with the database directly is
    /// found and named; a reopened store continues the chain.
    #[tokio::test]
    async fn audit_chain_survives_reopen_and_every_tampering_is_found() {
        let dir = std::env::temp_dir().join(format!("wingspan-audit-{}", uuid::Uuid::new_v4()));
        {
            let store = Store::open(&dir, setup()).expect("open");
            for i in 0..120 {
                store.audit(vec![entry(i)]).await.expect("append");
            }
        }
        // Give the writer thread its final checkpoint after the handles are gone.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let r = verify_db(&dir);
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.records, 120);
        assert!(r.checkpoints >= 2, "signed every 50 records: {r:?}");
        {
            let store = Store::open(&dir, setup()).expect("reopen");
            store.audit(vec![entry(120)]).await.expect("append");
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(verify_db(&dir).ok());
        assert_eq!(verify_db(&dir).records, 121);

        let copy = |name: &str| {
            let d = dir.with_extension(name);
            std::fs::create_dir_all(&d).expect("dir");
            let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
            conn.execute_batch(&format!(
                "VACUUM INTO '{}'",
                d.join("wingspan-state.db").display()
            ))
            .expect("copy");
            (
                d.clone(),
                Connection::open(d.join("wingspan-state.db")).expect("open copy"),
            )
        };
        use wingspan_core::audit::Finding;
        let (d, c) = copy("modified");
        c.execute("UPDATE audit SET outcome = 'forged' WHERE seq = 40", [])
            .expect("tamper");
        assert_eq!(verify_db(&d).finding, Some(Finding::Modified { seq: 40 }));

        let (d, c) = copy("deleted");
        c.execute("DELETE FROM audit WHERE seq = 40", [])
            .expect("tamper");
        assert_eq!(verify_db(&d).finding, Some(Finding::Deleted { seq: 41 }));

        let (d, c) = copy("reordered");
        c.execute_batch("UPDATE audit SET seq = -1 WHERE seq = 40; UPDATE audit SET seq = 40 WHERE seq = 41; UPDATE audit SET seq = 41 WHERE seq = -1;").expect("tamper");
        assert_eq!(verify_db(&d).finding, Some(Finding::Reordered { seq: 40 }));

        let (d, c) = copy("inserted");
        // A forged record with a valid hash of its own, linked after record 39, and every
        // later record moved up one place to make room.
        let prev: String = c
            .query_row("SELECT hash FROM audit WHERE seq = 39", [], |r| r.get(0))
            .expect("hash");
        let mut forged = Entry::new(Event::Delivered, "2026-11-29T10:00:00.000039Z");
        forged.message_id = Some("m-forged".into());
        let hash = wingspan_core::audit::record_hash("gw-test", &forged, &prev);
        c.execute_batch("UPDATE audit SET seq = seq + 100000 WHERE seq >= 40; UPDATE audit SET seq = seq - 100000 + 1 WHERE seq >= 100000;").expect("shift");
        c.execute(
            "INSERT INTO audit (seq, chain_id, event, at, message_id, prev_hash, hash) VALUES (40, 'gw-test', 'delivered', ?1, 'm-forged', ?2, ?3)",
            params![forged.at, prev, hash],
        )
        .expect("insert");
        assert_eq!(verify_db(&d).finding, Some(Finding::Inserted { seq: 40 }));

        let (d, c) = copy("truncated");
        c.execute("DELETE FROM audit WHERE seq > 60", [])
            .expect("tamper");
        assert!(matches!(
            verify_db(&d).finding,
            Some(Finding::Deleted { .. })
        ));

        let (d, c) = copy("resigned");
        c.execute("UPDATE audit_checkpoints SET signature = replace(signature, substr(signature, 1, 2), 'ff') WHERE seq = 50", []).expect("tamper");
        assert_eq!(verify_db(&d).bad_signatures, vec![50]);
    }

    /// PostgreSQL test store: a fresh schema of the local `test` database (trust auth).
    pub(crate) fn pg_schema() -> (String, postgres::Client) {
        let schema = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut admin = postgres::Client::connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test",
            postgres::NoTls,
        )
        .expect("PostgreSQL at 127.0.0.1:5432 (bash .ci/run starts it)");
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .expect("schema");
        let url =
            format!("postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}");
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client.batch_execute("SELECT 1").expect("ping");
        (url, client)
    }

    /// The same chain and the same tampering, in the PostgreSQL store several instances share.
    /// (A plain test: the synchronous PostgreSQL client must not run on a runtime's thread.)
    #[test]
    fn postgres_audit_chain_verifies_and_every_tampering_is_found() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        use wingspan_core::audit::Finding;
        let (url, mut sql) = pg_schema();
        let dir = std::env::temp_dir().join(format!("wingspan-audit-{}", uuid::Uuid::new_v4()));
        let pg_setup = || AuditSetup {
            postgres: Some(url.clone()),
            ..setup()
        };
        rt.block_on(async {
            let store = Store::open(&dir, pg_setup()).expect("open");
            for i in 0..120 {
                store.audit(vec![entry(i)]).await.expect("append");
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        rt.block_on(async {
            // A second start continues the chain where it stands.
            let store = Store::open(&dir, pg_setup()).expect("reopen");
            store.audit(vec![entry(120)]).await.expect("append");
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let key = AuditKeys::from_parts(SEED, b"x")
            .expect("keys")
            .signing
            .public_hex();
        let verify = |url: &str| {
            let mut src = crate::audit::Location::Postgres(url.to_owned())
                .open()
                .expect("open");
            let r = crate::audit::verify_store(&mut src, &key).expect("verify");
            r.into_iter().next().expect("one chain")
        };
        let r = verify(&url);
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.records, 121);
        assert!(r.checkpoints >= 2);
        // Nothing of it went to the embedded database.
        let local = Connection::open(dir.join("wingspan-state.db")).expect("open");
        assert_eq!(read_chain(&local, "gw-test").expect("read").len(), 0);

        let check = |sql: &mut postgres::Client, tamper: &str, undo: &str| {
            sql.batch_execute(tamper).expect("tamper");
            let r = verify(&url);
            sql.batch_execute(undo).expect("undo");
            r
        };
        let r = check(
            &mut sql,
            "UPDATE audit SET outcome = 'forged' WHERE seq = 40",
            "UPDATE audit SET outcome = NULL WHERE seq = 40",
        );
        assert_eq!(r.finding, Some(Finding::Modified { seq: 40 }));
        let r = check(
            &mut sql,
            "CREATE TABLE saved AS SELECT * FROM audit WHERE seq = 40; DELETE FROM audit WHERE seq = 40",
            "INSERT INTO audit SELECT * FROM saved; DROP TABLE saved",
        );
        assert_eq!(r.finding, Some(Finding::Deleted { seq: 41 }));
        let r = check(
            &mut sql,
            "UPDATE audit SET seq = -1 WHERE seq = 40; UPDATE audit SET seq = 40 WHERE seq = 41; UPDATE audit SET seq = 41 WHERE seq = -1",
            "UPDATE audit SET seq = -1 WHERE seq = 40; UPDATE audit SET seq = 40 WHERE seq = 41; UPDATE audit SET seq = 41 WHERE seq = -1",
        );
        assert_eq!(r.finding, Some(Finding::Reordered { seq: 40 }));
        let r = check(
            &mut sql,
            "CREATE TABLE saved AS SELECT * FROM audit WHERE seq > 60; DELETE FROM audit WHERE seq > 60",
            "INSERT INTO audit SELECT * FROM saved; DROP TABLE saved",
        );
        assert!(matches!(r.finding, Some(Finding::Deleted { .. })), "{r:?}");
        // The first signed checkpoint (at 50 unless a signature had to wait for a later batch).
        let first: i64 = sql
            .query_one("SELECT min(seq) FROM audit_checkpoints", &[])
            .expect("first checkpoint")
            .get(0);
        let r = check(
            &mut sql,
            &format!(
                "UPDATE audit_checkpoints SET signature = 'ff' || substr(signature, 3) WHERE seq = {first}"
            ),
            "SELECT 1",
        );
        assert_eq!(r.bad_signatures, vec![u64::try_from(first).expect("seq")]);
        // Insertion: a forged record with a valid hash of its own after record 39.
        let mut forged = Entry::new(Event::Delivered, "2026-11-29T10:00:00.000039Z");
        forged.message_id = Some("m-forged".into());
        let prev: String = sql
            .query_one("SELECT hash FROM audit WHERE seq = 39", &[])
            .expect("hash")
            .get(0);
        let hash = wingspan_core::audit::record_hash("gw-test", &forged, &prev);
        sql.batch_execute("UPDATE audit SET seq = seq + 100000 WHERE seq >= 40; UPDATE audit SET seq = seq - 100000 + 1 WHERE seq >= 100000;").expect("shift");
        sql.execute(
            "INSERT INTO audit (seq, chain_id, event, at, message_id, prev_hash, hash) VALUES (40, 'gw-test', 'delivered', $1, 'm-forged', $2, $3)",
            &[&forged.at, &prev, &hash],
        )
        .expect("insert");
        assert_eq!(verify(&url).finding, Some(Finding::Inserted { seq: 40 }));
        if let Some(schema) = url.rsplit("%3D").next() {
            let _ = sql.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }

    /// A damaged last record is cut back at start, with a record saying so; the chain verifies.
    #[tokio::test]
    async fn a_damaged_tail_is_cut_back_with_a_recovery_record() {
        let dir = std::env::temp_dir().join(format!("wingspan-audit-{}", uuid::Uuid::new_v4()));
        {
            let store = Store::open(
                &dir,
                AuditSetup {
                    checkpoint_every: 1000,
                    ..setup()
                },
            )
            .expect("open");
            for i in 0..10 {
                store.audit(vec![entry(i)]).await.expect("append");
            }
            drop(store);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        {
            let c = Connection::open(dir.join("wingspan-state.db")).expect("open");
            // Drop the final checkpoint and tear the last record, as a crash mid-write would.
            c.execute_batch("DELETE FROM audit_checkpoints; UPDATE audit SET hash = substr(hash, 1, 10) WHERE seq = 10;").expect("tear");
        }
        let store = Store::open(&dir, setup()).expect("reopen");
        store.audit(vec![entry(11)]).await.expect("append");
        drop(store);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let c = Connection::open(dir.join("wingspan-state.db")).expect("open");
        let records = read_chain(&c, "gw-test").expect("records");
        assert_eq!(
            records.len(),
            11,
            "nine intact, the recovery record, the new one"
        );
        assert_eq!(records[9].entry.event, Event::Recovered);
        assert!(verify_db(&dir).ok());
    }

    fn about(event: Event, id: &str, source: &str) -> Entry {
        let mut e = Entry::new(event, crate::audit::now());
        e.message_id = Some(id.to_owned());
        e.source = Some(source.to_owned());
        e
    }

    /// The events of a message's trail, in chain order.
    fn trail_events(dir: &Path, id: &str) -> Vec<String> {
        let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
        read_trail(&conn, id)
            .expect("trail")
            .into_iter()
            .map(|r| r.entry.event.as_str().to_owned())
            .collect()
    }

    /// Every row of a query on the store's database.
    fn rows<T>(
        dir: &Path,
        sql: &str,
        row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Vec<T> {
        let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
        conn.prepare(sql)
            .expect("prepare")
            .query_map([], row)
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// A message's records are found by its id through their thread: records written after a
    /// reopen (the writer's memory of threads gone) join the thread; a message sent again is a
    /// thread of its own; the same id from another source is another message.
    #[tokio::test]
    async fn a_messages_trail_is_found_through_its_thread() {
        let dir = std::env::temp_dir().join(format!("wingspan-threads-{}", uuid::Uuid::new_v4()));
        {
            let store = Store::open(&dir, setup()).expect("open");
            store
                .audit(vec![
                    about(Event::Received, "m-1", "rehab"),
                    about(Event::Accepted, "m-1", "rehab"),
                    about(Event::Received, "m-1", "police"),
                    about(Event::Received, "m-2", "rehab"),
                ])
                .await
                .expect("audit");
        }
        let store = Store::open(&dir, setup()).expect("reopen");
        store
            .audit(vec![
                about(Event::Delivered, "m-1", "rehab"),
                about(Event::Received, "m-1", "rehab"),
                about(Event::Duplicate, "m-1", "rehab"),
            ])
            .await
            .expect("audit");
        drop(store);
        assert_eq!(
            trail_events(&dir, "m-1"),
            [
                "received",
                "accepted",
                "received",
                "delivered",
                "received",
                "duplicate"
            ]
        );
        assert_eq!(trail_events(&dir, "m-2"), ["received"]);
        let threads: Vec<(i64, i64)> = rows(
            &dir,
            "SELECT seq, thread FROM audit WHERE message_id = 'm-1' ORDER BY seq",
            |r| Ok((r.get(0)?, r.get(1)?)),
        );
        // rehab's m-1 (1), police's m-1 (3), the delivery joins rehab's after the reopen,
        // rehab's m-1 sent again (6) with its duplicate record.
        assert_eq!(threads, [(1, 1), (2, 1), (3, 3), (5, 1), (6, 6), (7, 6)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A search by subject finds exactly that subject's records (two subjects sharing the
    /// indexed 16-digit prefix are told apart by the whole value), through the prefix index.
    #[tokio::test]
    async fn a_search_by_subject_uses_the_prefix_index_and_compares_the_whole_value() {
        let dir = std::env::temp_dir().join(format!("wingspan-subjects-{}", uuid::Uuid::new_v4()));
        let (a, b) = (
            "0123456789abcdef".to_owned() + &"a".repeat(48),
            "0123456789abcdef".to_owned() + &"b".repeat(48),
        );
        {
            let store = Store::open(&dir, setup()).expect("open");
            let mut entries = Vec::new();
            for (i, subject) in [Some(&a), Some(&b), None, Some(&a)].into_iter().enumerate() {
                let mut e = about(Event::Received, &format!("m-{i}"), "rehab");
                e.subject_ref = subject.cloned();
                entries.push(e);
            }
            store.audit(entries).await.expect("audit");
        }
        let filter = crate::audit::Filter {
            subject_ref: Some(a.clone()),
            limit: 100,
            ..Default::default()
        };
        let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
        let mut src = crate::audit::AuditSource::Sqlite(conn);
        let found: Vec<String> = crate::audit::search(&mut src, &filter)
            .expect("search")
            .into_iter()
            .filter_map(|r| r.entry.message_id)
            .collect();
        assert_eq!(found, ["m-0", "m-3"]);
        let (conditions, args) = filter.conditions(|n| format!("?{}", n + 1));
        let plan: Vec<String> = {
            let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT seq FROM audit WHERE seq > ?1 AND {}",
                conditions.join(" AND ")
            );
            let mut stmt = conn.prepare(&sql).expect("plan");
            let params: Vec<String> = std::iter::once("0".to_owned()).chain(args).collect();
            stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                r.get::<_, String>(3)
            })
            .expect("plan rows")
            .collect::<Result<_, _>>()
            .expect("plan")
        };
        assert!(
            plan.iter().any(|l| l.contains("audit_subject_keys")),
            "the subject index is not used: {plan:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store written before threads (per-record indexes, no thread column) is migrated at
    /// open: every record of a message is found by its id, and the chain still verifies.
    #[tokio::test]
    async fn a_store_from_before_threads_is_migrated() {
        let dir =
            std::env::temp_dir().join(format!("wingspan-prethreads-{}", uuid::Uuid::new_v4()));
        {
            let store = Store::open(&dir, setup()).expect("open");
            store
                .audit(vec![
                    about(Event::Received, "m-1", "rehab"),
                    about(Event::Received, "m-2", "rehab"),
                    about(Event::Delivered, "m-1", "rehab"),
                ])
                .await
                .expect("audit");
        }
        // Back to the old shape.
        let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
        conn.execute_batch(
            "DROP INDEX audit_threads; DROP INDEX audit_by_thread; DROP INDEX audit_subject_keys;
             ALTER TABLE audit DROP COLUMN thread;
             CREATE INDEX audit_by_message ON audit(message_id) WHERE message_id IS NOT NULL;
             CREATE INDEX audit_by_subject ON audit(subject_ref) WHERE subject_ref IS NOT NULL;
             CREATE INDEX audit_subjects ON audit(subject_ref);",
        )
        .expect("old shape");
        drop(conn);
        drop(Store::open(&dir, setup()).expect("migrated"));
        assert_eq!(trail_events(&dir, "m-1"), ["received", "delivered"]);
        let indexes: Vec<String> = rows(
            &dir,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit' ORDER BY name",
            |r| r.get(0),
        );
        assert_eq!(
            indexes,
            ["audit_by_thread", "audit_subject_keys", "audit_threads"]
        );
        assert_eq!(verify_db(&dir).finding, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn receipt(id: &str, correlation: Option<&str>, delivered: &[&str]) -> NewReceipt {
        NewReceipt {
            source: "rehab".into(),
            message_id: id.into(),
            message_type: "referral.handover".into(),
            correlation_id: correlation.map(str::to_owned),
            correlation_unknown: false,
            destinations: vec!["aftercare-3204".into(), "hr".into(), "partner".into()],
            delivered: delivered.iter().map(|d| d.to_string()).collect(),
        }
    }

    /// A message's early audit records fail in one batch (the store is full), the cap is
    /// lifted, and its receipt comes in the next: the receipt is refused too, so the message
    /// is never acknowledged with a trail that lacks its first records.
    #[tokio::test]
    async fn a_receipt_whose_early_records_failed_is_refused() {
        let dir = std::env::temp_dir().join(format!("wingspan-early-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir, setup()).expect("open");
        store
            .limit_pages(Some(store.pages().expect("pages")))
            .await
            .expect("cap");
        let early: Vec<Entry> = (0..200)
            .map(|_| about(Event::Received, "m-1", "rehab"))
            .collect();
        let mut queued = store.audit_enqueue(early).await.expect("enqueue");
        assert!(
            (&mut queued.outcome).await.expect("answer").is_err(),
            "the full store must refuse the early records"
        );
        store.limit_pages(None).await.expect("lift");
        let refused = store
            .put_receipt(receipt("m-1", None, &[]), Vec::new(), Some(&queued))
            .await;
        assert!(
            refused.is_err(),
            "receipt committed without its early records"
        );
        assert_eq!(store.receipt("rehab", "m-1").await.expect("lookup"), None);
        // The same receipt without the dependency, and another message's whole path, commit.
        let next = store
            .audit_enqueue(vec![about(Event::Received, "m-2", "rehab")])
            .await
            .expect("enqueue");
        store
            .put_receipt(receipt("m-2", None, &[]), Vec::new(), Some(&next))
            .await
            .expect("m-2 receipt");
        assert!(next.outcome.await.expect("answer").is_ok());
        assert!(
            store
                .receipt("rehab", "m-2")
                .await
                .expect("lookup")
                .is_some()
        );
        drop(store);
        assert_eq!(trail_events(&dir, "m-2"), ["received"]);
        assert!(trail_events(&dir, "m-1").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn receipts_status_and_replies_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("wingspan-store-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir, setup()).expect("open");
        assert_eq!(store.receipt("rehab", "m-1").await.expect("lookup"), None);
        store
            .put_receipt(receipt("m-1", None, &["partner"]), Vec::new(), None)
            .await
            .expect("put");
        store.delivery(
            "rehab",
            "m-1",
            "hr",
            DeliveryState::Retrying,
            1,
            Some("HTTP 503".into()),
        );
        store.delivery("rehab", "m-1", "hr", DeliveryState::Delivered, 2, None);
        // A late retry report must not undo the delivery.
        store.delivery(
            "rehab",
            "m-1",
            "hr",
            DeliveryState::Retrying,
            1,
            Some("late".into()),
        );
        store
            .put_receipt(receipt("r-1", Some("m-1"), &[]), Vec::new(), None)
            .await
            .expect("put reply");
        drop(store);

        let store = Store::open(&dir, setup()).expect("reopen");
        let r = store
            .receipt("rehab", "m-1")
            .await
            .expect("lookup")
            .expect("receipt");
        assert_eq!(r.destinations, vec!["aftercare-3204", "hr", "partner"]);
        assert_eq!(
            store.receipt("police", "m-1").await.expect("lookup"),
            None,
            "ids are per source"
        );
        let status = store.status("m-1").await.expect("status").expect("known");
        let state = |d: &str| {
            status
                .destinations
                .iter()
                .find(|s| s.destination == d)
                .map(|s| (s.state.clone(), s.attempts))
        };
        assert_eq!(state("aftercare-3204"), Some(("queued".into(), 0)));
        assert_eq!(state("hr"), Some(("delivered".into(), 2)));
        assert_eq!(state("partner"), Some(("delivered".into(), 1)));
        assert_eq!(status.replies.len(), 1);
        assert_eq!(status.replies[0].message_id, "r-1");
        assert!(store.known("m-1").await.expect("known"));
        assert!(!store.known("m-2").await.expect("known"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// One config that was live, by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigVersion {
    pub sha256: String,
    pub first_loaded_at: String,
    pub last_loaded_at: String,
    pub loads: i64,
}

/// Every config that was ever live, oldest first.
pub fn config_history(conn: &Connection) -> Result<Vec<ConfigVersion>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT sha256, first_loaded_at, last_loaded_at, loads FROM configs ORDER BY first_loaded_at, sha256",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ConfigVersion {
            sha256: r.get(0)?,
            first_loaded_at: r.get(1)?,
            last_loaded_at: r.get(2)?,
            loads: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// The text of the config whose hash starts with `prefix`: `Ok(None)` when none or several do.
pub fn config_text(
    conn: &Connection,
    prefix: &str,
) -> Result<Option<(String, String)>, rusqlite::Error> {
    let mut stmt =
        conn.prepare("SELECT sha256, text FROM configs WHERE sha256 LIKE ?1 || '%' LIMIT 2")?;
    let found: Vec<(String, String)> = stmt
        .query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

/// A copy parked for one destination: metadata only (the payload stays in the parked queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub source: String,
    pub destination: String,
    pub message_type: Option<String>,
    pub reason: Option<String>,
    pub attempts: i64,
    pub first_failure: String,
    pub last_failure: String,
}

/// Every parked copy (of one destination, when given), oldest failure first. The first
/// failure is the earliest retry or park the audit trail records (SQLite store), else the
/// last.
pub fn dead_letters(
    conn: &Connection,
    destination: Option<&str>,
) -> Result<Vec<DeadLetter>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT d.message_id, d.source, d.destination, r.message_type, d.last_error, d.attempts, d.updated_at,
           (SELECT min(a.at) FROM audit a WHERE a.thread IN
              (SELECT t.seq FROM audit t WHERE t.message_id = d.message_id AND t.thread = t.seq)
              AND a.destination = d.destination AND a.event IN ('retry_scheduled', 'parked'))
         FROM deliveries d LEFT JOIN receipts r ON r.message_id = d.message_id AND r.source = d.source
         WHERE d.state = 'dead-lettered' AND (?1 IS NULL OR d.destination = ?1)
         ORDER BY d.updated_at, d.message_id",
    )?;
    let rows = stmt.query_map([destination], |r| {
        let last: String = r.get(6)?;
        Ok(DeadLetter {
            message_id: r.get(0)?,
            source: r.get(1)?,
            destination: r.get(2)?,
            message_type: r.get(3)?,
            reason: r.get(4)?,
            attempts: r.get(5)?,
            first_failure: r
                .get::<_, Option<String>>(7)?
                .unwrap_or_else(|| last.clone()),
            last_failure: last,
        })
    })?;
    rows.collect()
}
