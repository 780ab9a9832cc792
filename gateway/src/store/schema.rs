//! The SQLite database: connection settings, tables, indexes, migrations, read pool.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

use super::StoreError;
use super::wal::{WAL_FRAME_BYTES, WAL_LIMIT_FRAMES};

pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
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
pub(super) const MMAP_BYTES: i64 = 64 << 20;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS retention_walk (
  id INTEGER PRIMARY KEY CHECK (id = 1), receipt INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, chain_id TEXT NOT NULL, event TEXT NOT NULL, at TEXT NOT NULL,
  message_id TEXT, correlation_id TEXT, source TEXT, destination TEXT, message_type TEXT,
  payload_sha256 TEXT, outcome TEXT, reason TEXT, actor TEXT, subject_ref TEXT,
  prev_hash TEXT NOT NULL, hash TEXT NOT NULL, thread INTEGER, trace_id TEXT);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  chain_id TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL, signed_at TEXT NOT NULL,
  key_id TEXT NOT NULL, signature TEXT NOT NULL, PRIMARY KEY (chain_id, seq));
CREATE TABLE IF NOT EXISTS audit_chains (chain_id TEXT PRIMARY KEY, suite TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_timestamps (
  chain_id TEXT NOT NULL, seq INTEGER NOT NULL, token BLOB NOT NULL, stamped_at TEXT NOT NULL,
  PRIMARY KEY (chain_id, seq));
CREATE TABLE IF NOT EXISTS configs (
  sha256 TEXT PRIMARY KEY, text TEXT NOT NULL, first_loaded_at TEXT NOT NULL,
  last_loaded_at TEXT NOT NULL, loads INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
  source TEXT NOT NULL, message_id TEXT NOT NULL, destination TEXT NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, updated_at TEXT NOT NULL,
  message_type TEXT,
  PRIMARY KEY (message_id, source, destination)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_parked ON deliveries(updated_at) WHERE state = 'dead-lettered';
CREATE TABLE IF NOT EXISTS audit_archives (
  chain_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
  manifest TEXT NOT NULL, file_sha256 TEXT NOT NULL, final_hash TEXT NOT NULL,
  first_at TEXT NOT NULL, last_at TEXT NOT NULL,
  PRIMARY KEY (chain_id, first_seq));
";

/// Receipts in the order they were accepted: the row id grows with time, so a commit appends
/// to the table's last pages, and pruning takes the oldest rows from its first. Looked up by
/// message id through the index in memory ([`super::index::ReceiptIndex`]); only replies
/// (their correlation id) are indexed here.
pub(super) const RECEIPTS: &str = "
CREATE TABLE IF NOT EXISTS receipts (
  id INTEGER PRIMARY KEY,
  source TEXT NOT NULL, message_id TEXT NOT NULL, message_type TEXT NOT NULL,
  correlation_id TEXT, destinations TEXT NOT NULL, delivered TEXT, accepted_at TEXT NOT NULL,
  correlation_unknown INTEGER, claim TEXT);
CREATE INDEX IF NOT EXISTS receipts_by_correlation ON receipts(correlation_id) WHERE correlation_id IS NOT NULL;
";

/// Stores made when receipts were keyed by message id: the rows move, in acceptance order,
/// to the table above (its row id is their order from now on).
const RECEIPTS_MIGRATION: &str = "
ALTER TABLE receipts RENAME TO receipts_by_message_id;
DROP INDEX IF EXISTS receipts_by_correlation;
DROP INDEX IF EXISTS receipts_by_time;
DROP TABLE IF EXISTS retention_cursor;
CREATE TABLE receipts (
  id INTEGER PRIMARY KEY,
  source TEXT NOT NULL, message_id TEXT NOT NULL, message_type TEXT NOT NULL,
  correlation_id TEXT, destinations TEXT NOT NULL, delivered TEXT, accepted_at TEXT NOT NULL,
  correlation_unknown INTEGER);
INSERT INTO receipts (source, message_id, message_type, correlation_id, destinations, delivered,
  accepted_at, correlation_unknown)
  SELECT source, message_id, message_type, correlation_id, destinations, delivered, accepted_at,
    correlation_unknown FROM receipts_by_message_id ORDER BY accepted_at, message_id, source;
DROP TABLE receipts_by_message_id;
";

/// The audit trail's index by thread (see `chain::thread_of`): a message's records are found
/// from its thread's first record, whose `seq` the others carry; those values grow with the
/// chain, so the index's inserts land at its end. The first record of each thread (by
/// message id) and the records naming a person (by reference) are found through the sorted
/// runs of `super::keys`, not through B-tree indexes: those keys are random, and each entry
/// dirtied a leaf of its own at every commit.
pub(super) const AUDIT_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS audit_by_thread ON audit(thread);
DROP INDEX IF EXISTS audit_subjects;
";

/// Stores made before the keys' runs (`super::keys`): their records are keyed in runs at
/// open, then the B-tree indexes by message id and by subject go.
const AUDIT_KEYED_INDEXES: &str = "
DROP INDEX IF EXISTS audit_threads;
DROP INDEX IF EXISTS audit_subject_keys;
";

/// Stores made before threads: number every record's thread (all records of one message id
/// and source become one thread, from the first), then drop the per-record indexes.
pub(super) const AUDIT_THREADS_MIGRATION: &str = "
ALTER TABLE audit ADD COLUMN thread INTEGER;
UPDATE audit SET thread = (SELECT min(a.seq) FROM audit a
  WHERE a.message_id = audit.message_id AND a.source IS audit.source)
  WHERE message_id IS NOT NULL;
DROP INDEX IF EXISTS audit_by_message;
DROP INDEX IF EXISTS audit_by_subject;
";

/// Read connections, one per concurrent reader (WAL readers see committed data and never
/// block the writer). Reads are index lookups of microseconds, run inline on the caller's thread.
#[derive(Debug)]
pub(super) struct Readers {
    pub(super) path: std::path::PathBuf,
    pub(super) idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(super) fn read<T>(
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

/// Create the tables and indexes, and bring a store made by an older gateway up to date.
pub(super) fn create_or_migrate(writer: &Connection) -> Result<(), rusqlite::Error> {
    writer.execute_batch(SCHEMA)?;
    let columns = |table: &str, column: &str| -> Result<i64, rusqlite::Error> {
        writer.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )
    };
    // Parked copies name their message type themselves (receipts are found by message id in
    // memory only); filled from the receipts while they are still keyed by message id.
    if columns("deliveries", "message_type")? == 0 {
        writer.execute_batch(
            "BEGIN;
             ALTER TABLE deliveries ADD COLUMN message_type TEXT;
             UPDATE deliveries SET message_type = (SELECT r.message_type FROM receipts r
               WHERE r.message_id = deliveries.message_id AND r.source = deliveries.source)
               WHERE state = 'dead-lettered';
             COMMIT;",
        )?;
    }
    let old_receipts = columns("receipts", "message_id")? == 1 && columns("receipts", "id")? == 0;
    if old_receipts {
        // Stores created before replies were flagged lack the column.
        if columns("receipts", "correlation_unknown")? == 0 {
            writer.execute_batch("ALTER TABLE receipts ADD COLUMN correlation_unknown INTEGER")?;
        }
        writer.execute_batch(&format!("BEGIN; {RECEIPTS_MIGRATION} COMMIT;"))?;
    }
    writer.execute_batch(RECEIPTS)?;
    // Stores made before destinations delivered once: their receipts name no attempt.
    if columns("receipts", "claim")? == 0 {
        writer.execute_batch("ALTER TABLE receipts ADD COLUMN claim TEXT")?;
    }
    if columns("audit", "thread")? == 0 {
        writer.execute_batch(&format!("BEGIN; {AUDIT_THREADS_MIGRATION} COMMIT;"))?;
    }
    // Stores made before traces: records without a trace id hash as they always did.
    if columns("audit", "trace_id")? == 0 {
        writer.execute_batch("ALTER TABLE audit ADD COLUMN trace_id TEXT")?;
    }
    writer.execute_batch(AUDIT_INDEXES)?;
    writer.execute_batch(super::keys::SCHEMA)?;
    // Everything but the newest (less than a run) keyed before the old indexes go.
    writer.execute_batch("BEGIN IMMEDIATE")?;
    let keyed =
        super::keys::write_due(writer).and_then(|_| writer.execute_batch(AUDIT_KEYED_INDEXES));
    match keyed {
        Ok(()) => writer.execute_batch("COMMIT"),
        Err(e) => {
            let _ = writer.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
