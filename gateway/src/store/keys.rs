//! The audit trail's lookup keys, written in sorted runs.
//!
//! Two lookups need a key other than the chain's order: a message's records by its id (the
//! first record of each of its threads) and a person's records by their reference. Both keys
//! are random, and in a B-tree index every random key dirtied a leaf page of its own at every
//! commit, written twice (to the log, then into the database) and again when pruning deleted
//! it: two such leaves were over a third of what the store wrote per message.
//!
//! Instead the keys are written in runs, as a log-structured store writes its tables: once
//! [`RUN_RECORDS`] records have been written past the last run, one statement reads their keys
//! from those records, sorts them and appends them as a new run (`audit_keys`, ordered by run
//! first, so a run lands at the table's end on pages of its own). A lookup asks each run (one
//! search of the primary key per run) and reads the records after the last run from the
//! table itself, at most one run's worth. Pruning drops whole runs, oldest first, once
//! every record they key has left the live store. Readers need nothing from the writer: the
//! lookups are plain SQL (`crate::audit::sqlite::threads_of`, `subject_records`).
//!
//! Keys: `m` + message id for a thread's first record (`thread = seq`), `s` + the first 16
//! hex digits of a subject reference (the caller compares the whole value).

use rusqlite::{Connection, OptionalExtension, params};

/// Records per run: a run is built in a few milliseconds inside a batch's transaction, and
/// a lookup reads at most this many unkeyed records. At 1,000 messages a second (~4.5
/// records each) a run is written every ~3.6 s.
pub(super) const RUN_RECORDS: i64 = 16_384;

pub(super) use crate::audit::sqlite::KEYS_SCHEMA as SCHEMA;

/// Write a run for every [`RUN_RECORDS`] records past the last run (in the caller's
/// transaction: the runs commit with the records, or not at all). Returns how many.
pub(super) fn write_due(tx: &Connection) -> Result<usize, rusqlite::Error> {
    let newest: i64 = tx
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM audit")?
        .query_row([], |r| r.get(0))?;
    // After the last run; with none (a new store, or every run pruned), before the oldest
    // record.
    let mut keyed: i64 = tx
        .prepare_cached(
            "SELECT coalesce((SELECT max(last_seq) FROM audit_runs),
                             (SELECT min(seq) - 1 FROM audit), 0)",
        )?
        .query_row([], |r| r.get(0))?;
    let mut written = 0;
    while newest - keyed >= RUN_RECORDS {
        let last = keyed + RUN_RECORDS;
        tx.prepare_cached("INSERT INTO audit_runs (first_seq, last_seq) VALUES (?1, ?2)")?
            .execute(params![keyed + 1, last])?;
        let run = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT INTO audit_keys (run, key, seq)
             SELECT ?1, key, seq FROM (
               SELECT 'm' || message_id AS key, seq FROM audit
                 WHERE seq > ?2 AND seq <= ?3 AND message_id IS NOT NULL AND thread = seq
               UNION ALL
               SELECT 's' || substr(subject_ref, 1, 16), seq FROM audit
                 WHERE seq > ?2 AND seq <= ?3 AND subject_ref IS NOT NULL)
             ORDER BY key, seq",
        )?
        .execute(params![run, keyed, last])?;
        keyed = last;
        written += 1;
    }
    Ok(written)
}

/// Drop the runs whose every record has left the live store (`oldest`: the oldest record
/// still in it; `None`: none is).
pub(super) fn prune(tx: &Connection, oldest: Option<i64>) -> Result<usize, rusqlite::Error> {
    let below = oldest.unwrap_or(i64::MAX);
    let upto: Option<i64> = tx
        .prepare_cached("SELECT max(run) FROM audit_runs WHERE last_seq < ?1")?
        .query_row([below], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(upto) = upto else {
        return Ok(0);
    };
    tx.prepare_cached("DELETE FROM audit_keys WHERE run <= ?1")?
        .execute([upto])?;
    tx.prepare_cached("DELETE FROM audit_runs WHERE run <= ?1")?
        .execute([upto])
}

/// Forget the runs that key any record from `seq` on (records cut at recovery): the records
/// still there before `seq` are read unkeyed until a new run keys them.
pub(super) fn forget_from(conn: &Connection, seq: i64) -> Result<(), rusqlite::Error> {
    conn.execute(
        "DELETE FROM audit_keys WHERE run IN (SELECT run FROM audit_runs WHERE last_seq >= ?1)",
        [seq],
    )?;
    conn.execute("DELETE FROM audit_runs WHERE last_seq >= ?1", [seq])?;
    Ok(())
}
