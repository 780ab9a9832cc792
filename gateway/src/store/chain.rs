//! The audit chain's writer side: placing entries at the head, threads (the index aid that
//! finds a message's records), signing checkpoints, and recovering the head at start.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use wingspan_core::audit::{Entry, Event, Finding, GENESIS, Head, Record};

use super::{AuditSetup, StoreError};
use crate::audit::pg::PgAudit;
use crate::audit::sqlite::{RECORD_COLUMNS, record_from_row, threads_of};

/// The thread a record belongs to: the `seq` of the first record of its message (same message
/// id and source). A `received` record starts a thread (a message sent again is a new
/// thread: received, duplicate); any other record joins the latest thread of its message, or
/// starts one if there is none. Records about no message have none.
///
/// The column is an index aid outside the hashed record: changing it can hide a record from
/// a lookup by message, never from `audit verify`, which reads the whole chain.
pub(super) fn thread_of(
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
            .prepare_cached(&LATEST_THREAD)?
            .query_row(params![message_id, source], |row| row.get(0))?;
        if latest.is_some() {
            return Ok(latest);
        }
    }
    threads.started(source, message_id, seq);
    Ok(Some(seq))
}

/// The latest thread of a message id (?1) from a source (?2).
static LATEST_THREAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT max(seq) FROM audit WHERE seq IN ({}) AND source = ?2",
        threads_of("?1")
    )
});

/// The threads the writer started lately, so that a message's later records (its delivery,
/// moments after its receipt) find theirs without a lookup in the database (profiles showed
/// SQLite re-preparing that lookup on nearly every call, a sixth of the writer's time). Two generations
/// of at most [`Threads::GENERATION`] each: memory is bounded, and an older thread is looked
/// up. Forgotten whenever a transaction fails (its sequence numbers are used again).
#[derive(Default)]
pub(super) struct Threads {
    current: Generation,
    previous: Generation,
}

/// Threads by message id (looked up without allocating), then by source: the same id from
/// two sources is two messages.
pub(super) type Generation = HashMap<String, Vec<(String, i64)>>;

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

    pub(super) fn forget(&mut self) {
        self.current.clear();
        self.previous.clear();
    }
}

/// The insert of a record, formatted once (statements are cached by their text).
static INSERT_RECORD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO audit ({RECORD_COLUMNS}, thread) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
    )
});

/// Insert one placed record.
pub(super) fn insert_record(
    conn: &Connection,
    threads: &mut Threads,
    r: &Record,
) -> Result<(), rusqlite::Error> {
    let thread = thread_of(conn, threads, r)?;
    conn.prepare_cached(&INSERT_RECORD)?.execute(params![
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
        r.entry.trace_id,
        thread
    ])?;
    Ok(())
}

/// Place entries at the head of the chain and insert them (or set them aside for
/// PostgreSQL, which commits them before this transaction does).
pub(super) fn append(
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

/// Where the chain stands and when it was last signed.
pub(super) struct Chain {
    pub(super) head: Head,
    pub(super) signed_seq: u64,
    pub(super) signed_at: std::time::Instant,
}

/// Sign the chain head when `checkpoint_every` records or `period` have passed since the last
/// signature and there is something new to sign.
pub(super) fn sign_if_due(
    conn: &Connection,
    pg: Option<&mut PgAudit>,
    chain: &mut Chain,
    setup: &AuditSetup,
    period: std::time::Duration,
) {
    let last = chain.head.next_seq.saturating_sub(1);
    let pending = last.saturating_sub(chain.signed_seq);
    if pending == 0 || (pending < setup.checkpoint_every && chain.signed_at.elapsed() < period) {
        return;
    }
    let cp = setup.keys.signing().checkpoint(
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

/// Sign the chain head now if anything is unsigned (before and after a key rotation, at stop).
pub(super) fn sign_now(
    conn: &Connection,
    pg: Option<&mut PgAudit>,
    chain: &mut Chain,
    setup: &AuditSetup,
) {
    sign_if_due(conn, pg, chain, setup, std::time::Duration::ZERO);
}

/// Load the chain head at start. The chain's suite must be the configured one (checked first:
/// under another suite every record would fail). The records since the last checkpoint are
/// verified; a tail that fails (a torn or damaged last write) is cut back to the last valid
/// record and a `recovered` record says how many were cut. Anything earlier is left for
/// `audit verify`.
pub(super) fn recover_chain(conn: &Connection, setup: &AuditSetup) -> Result<Chain, StoreError> {
    crate::audit::sqlite::claim_suite(conn, &setup.chain_id, setup.keys.suite())
        .map_err(StoreError::Refused)?;
    let last_cp: Option<(i64, String, String)> = conn
        .query_row(
            "SELECT seq, hash, key_id FROM audit_checkpoints WHERE chain_id = ?1 ORDER BY seq DESC LIMIT 1",
            params![setup.chain_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (from, start_prev) = match &last_cp {
        Some((seq, hash, _)) => (*seq, hash.clone()),
        None => (0, GENESIS.to_owned()),
    };
    let tail: Vec<Record> = conn
        .prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM audit WHERE chain_id = ?1 AND seq > ?2 ORDER BY seq"
        ))?
        .query_map(params![setup.chain_id, from], record_from_row)?
        .collect::<Result<_, _>>()?;
    let suite = setup.keys.suite();
    let report =
        wingspan_core::audit::verify(suite, &setup.chain_id, &tail, &[], None, &start_prev);
    let mut head = Head {
        chain_id: setup.chain_id.clone(),
        suite,
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
    // The key the chain is signed by now must be the configured one (or a rotation's new key
    // still waiting beside it): checked before anything is written.
    let kept = cut.map_or(tail.len(), |c| {
        tail.iter().take_while(|r| r.seq < c).count()
    });
    if let Some(current) = wingspan_core::audit::current_key(
        last_cp.as_ref().map(|(_, _, key)| key.as_str()),
        &tail[..kept],
    ) {
        setup
            .keys
            .reconcile(&setup.chain_id, &current)
            .map_err(StoreError::Refused)?;
    }
    if let Some(from_seq) = cut {
        let from_seq_i = i64::try_from(from_seq).unwrap_or(i64::MAX);
        let n = conn.execute(
            "DELETE FROM audit WHERE chain_id = ?1 AND seq >= ?2",
            params![setup.chain_id, from_seq_i],
        )?;
        // Runs that keyed a cut record go too: their records are read as unkeyed again.
        super::keys::forget_from(conn, from_seq_i)?;
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
