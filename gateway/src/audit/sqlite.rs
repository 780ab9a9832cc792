//! The audit trail in the embedded SQLite database, read side: records and checkpoints as
//! the store's writer wrote them (tables `audit` and `audit_checkpoints`).

use rusqlite::{Connection, OptionalExtension, params};
use wingspan_core::audit::{Checkpoint, Entry, Event, Record, Suite};

/// The suite a chain is kept with, as its store recorded it when the chain started. A chain
/// with no such row (written before suites were recorded, or a store that never started
/// one) is `sha256-ed25519`, the only suite there was.
pub fn chain_suite(conn: &Connection, chain_id: &str) -> Result<Suite, rusqlite::Error> {
    let has_table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'audit_chains'",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(Suite::default());
    }
    let named: Option<String> = conn
        .query_row(
            "SELECT suite FROM audit_chains WHERE chain_id = ?1",
            params![chain_id],
            |r| r.get(0),
        )
        .optional()?;
    // An unknown name cannot verify under any suite: checked as the default, it fails at its
    // first record, and the report says which suite was tried.
    Ok(named.and_then(|n| Suite::parse(&n)).unwrap_or_default())
}

/// At the writer's start: the chain's suite is the configured one, recorded when the chain
/// starts (a chain with records and no row is `sha256-ed25519`). A config naming another
/// suite than the chain's is refused: its hashes and signatures could not continue the chain.
pub fn claim_suite(conn: &Connection, chain_id: &str, configured: Suite) -> Result<(), String> {
    let db = |e: rusqlite::Error| format!("audit store: {e}");
    let recorded: Option<String> = conn
        .query_row(
            "SELECT suite FROM audit_chains WHERE chain_id = ?1",
            params![chain_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let kept = match recorded {
        Some(name) => Suite::parse(&name)
            .ok_or_else(|| format!("audit chain {chain_id:?} names an unknown suite {name:?}"))?,
        None => {
            let started: bool = conn
                .query_row(
                    "SELECT count(*) > 0 FROM audit WHERE chain_id = ?1",
                    params![chain_id],
                    |r| r.get(0),
                )
                .map_err(db)?;
            let kept = if started {
                Suite::Sha256Ed25519
            } else {
                configured
            };
            conn.execute(
                "INSERT INTO audit_chains (chain_id, suite) VALUES (?1, ?2)",
                params![chain_id, kept.as_str()],
            )
            .map_err(db)?;
            kept
        }
    };
    suite_matches(chain_id, kept, configured)
}

/// The refusal when a config names another suite than its chain's.
pub fn suite_matches(chain_id: &str, kept: Suite, configured: Suite) -> Result<(), String> {
    if kept == configured {
        return Ok(());
    }
    Err(format!(
        "the audit chain {chain_id:?} is kept with suite {kept}, and the config names {configured}: \
         a chain's suite cannot change (set [audit] suite = \"{kept}\", or start a new chain \
         under another instance name with its own state directory)"
    ))
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
            trace_id: r.get(16)?,
        },
        prev_hash: r.get(14)?,
        hash: r.get(15)?,
    })
}

pub const RECORD_COLUMNS: &str = "seq, chain_id, event, at, message_id, correlation_id, source, destination, message_type, payload_sha256, outcome, reason, actor, subject_ref, prev_hash, hash, trace_id";

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

/// A chain's RFC 3161 tokens: (checkpoint seq, token), in order (none in a store made before
/// time-stamps).
pub fn timestamps(
    conn: &Connection,
    chain_id: &str,
) -> Result<Vec<(u64, Vec<u8>)>, rusqlite::Error> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'audit_timestamps'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(Vec::new());
    }
    conn.prepare("SELECT seq, token FROM audit_timestamps WHERE chain_id = ?1 ORDER BY seq")?
        .query_map(params![chain_id], |r| {
            Ok((u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?))
        })?
        .collect()
}

/// Keep a token beside its checkpoint.
pub fn insert_timestamp(
    conn: &Connection,
    chain_id: &str,
    seq: u64,
    token: &[u8],
    at: &str,
) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT OR IGNORE INTO audit_timestamps (chain_id, seq, token, stamped_at) VALUES (?1, ?2, ?3, ?4)",
        params![chain_id, i64::try_from(seq).unwrap_or(i64::MAX), token, at],
    )?;
    Ok(())
}

/// The chain's latest checkpoint.
pub fn latest_checkpoint(
    conn: &Connection,
    chain_id: &str,
) -> Result<Option<Checkpoint>, rusqlite::Error> {
    conn.query_row(
        &format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE chain_id = ?1 ORDER BY seq DESC LIMIT 1"
        ),
        params![chain_id],
        checkpoint_from_row,
    )
    .optional()
}

/// The seq of the chain's latest time-stamped checkpoint (0 if none).
pub fn last_stamped(conn: &Connection, chain_id: &str) -> Result<u64, rusqlite::Error> {
    conn.query_row(
        "SELECT coalesce(max(seq), 0) FROM audit_timestamps WHERE chain_id = ?1",
        params![chain_id],
        |r| r.get::<_, i64>(0),
    )
    .map(|s| u64::try_from(s).unwrap_or(0))
}

const CHECKPOINT_COLUMNS: &str = "chain_id, seq, hash, signed_at, key_id, signature";

fn checkpoint_from_row(r: &rusqlite::Row<'_>) -> Result<Checkpoint, rusqlite::Error> {
    Ok(Checkpoint {
        chain_id: r.get(0)?,
        seq: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        hash: r.get(2)?,
        signed_at: r.get(3)?,
        key_id: r.get(4)?,
        signature: r.get(5)?,
    })
}

/// Every checkpoint, in order.
pub fn read_checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>, rusqlite::Error> {
    conn.prepare(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY chain_id, seq"
    ))?
    .query_map([], checkpoint_from_row)?
    .collect()
}

/// The records of a message and of every reply to it, in chain order.
pub fn read_trail(conn: &Connection, message_id: &str) -> Result<Vec<Record>, rusqlite::Error> {
    conn.prepare(&format!(
        "SELECT {RECORD_COLUMNS} FROM audit WHERE thread IN (
           {}
           UNION ALL
           SELECT k.seq FROM receipts c CROSS JOIN audit_runs r CROSS JOIN audit_keys k
             ON k.run = r.run AND k.key = 'm' || c.message_id WHERE c.correlation_id = ?1
           UNION ALL
           SELECT a.seq FROM receipts c JOIN audit a
             ON a.seq > {UNINDEXED_AFTER} AND a.message_id = c.message_id AND a.thread = a.seq
             WHERE c.correlation_id = ?1)
         ORDER BY seq",
        threads_of("?1")
    ))?
    .query_map(params![message_id], record_from_row)?
    .collect()
}

/// The tables of the audit trail's lookup keys (see [`UNINDEXED_AFTER`]).
pub const KEYS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_runs (
  run INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit_keys (
  run INTEGER NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY (run, key, seq)) WITHOUT ROWID;
";

/// Make the lookups work on a read-only connection to a store that has no keys yet (written
/// by an older gateway, not yet opened by this one): empty temporary tables stand in for
/// them, so that every record is read as not yet keyed — found, more slowly.
pub fn keys_readable(conn: &Connection) -> Result<(), rusqlite::Error> {
    let keyed: bool = conn.query_row(
        "SELECT count(*) = 2 FROM sqlite_master WHERE type = 'table' AND name IN ('audit_runs', 'audit_keys')",
        [],
        |r| r.get(0),
    )?;
    if !keyed {
        conn.execute_batch(&KEYS_SCHEMA.replace("CREATE TABLE", "CREATE TEMP TABLE"))?;
    }
    Ok(())
}

/// The audit trail's lookup keys are written in sorted runs (the store's `keys` module: a
/// message's first record by message id, a record naming a person by the first 16 hex digits
/// of the reference). Records after the last run are not keyed yet: a lookup reads them
/// (at most one run's worth, the newest) from the table itself.
pub const UNINDEXED_AFTER: &str = "(SELECT coalesce(max(last_seq), 0) FROM audit_runs)";

/// SQL selecting the `seq` of every thread's first record for a message id (`id`: an SQL
/// expression, e.g. a placeholder): one lookup in each run, then the records after the runs.
/// `CROSS JOIN` keeps the runs outside: SQLite's planner, with no statistics, would
/// otherwise read every key and look its run up.
pub fn threads_of(id: &str) -> String {
    format!(
        "SELECT k.seq FROM audit_runs r CROSS JOIN audit_keys k ON k.run = r.run AND k.key = 'm' || {id}
         UNION ALL
         SELECT t.seq FROM audit t WHERE t.seq > {UNINDEXED_AFTER} AND t.message_id = {id} AND t.thread = t.seq"
    )
}

/// SQL selecting the `seq` of every record whose subject reference starts as `subject` (an
/// SQL expression) does; the caller compares the whole value.
pub fn subject_records(subject: &str) -> String {
    format!(
        "SELECT k.seq FROM audit_runs r CROSS JOIN audit_keys k
           ON k.run = r.run AND k.key = 's' || substr({subject}, 1, 16)
         UNION ALL
         SELECT t.seq FROM audit t WHERE t.seq > {UNINDEXED_AFTER} AND t.subject_ref = {subject}"
    )
}

/// The first record of a chain still in the live store (`None`: none is).
pub fn first_seq(conn: &Connection, chain_id: &str) -> Result<Option<u64>, rusqlite::Error> {
    conn.query_row(
        "SELECT min(seq) FROM audit WHERE chain_id = ?1",
        params![chain_id],
        |r| r.get::<_, Option<i64>>(0),
    )
    .map(|s| s.map(|s| u64::try_from(s).unwrap_or(0)))
}
