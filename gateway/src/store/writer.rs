//! The store thread: commands, batches, one transaction per batch (group commit).

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;
use wingspan_core::audit::{Entry, Head, Record, Rotation, SigningKey};

use super::archiver::ToRecord;
use super::chain::{Chain, Threads, append, sign_if_due, sign_now};
use super::index::ReceiptIndex;
use super::keys;
use super::retention::{self, Pruned, Retain, Windows};
use super::shared::DeliveryRow;
use super::wal::{WAL_CHECK_EVERY, WAL_LIMIT_FRAMES, bound_wal};
use super::{
    AuditSetup, DeliveryState, NewReceipt, SharedRows, archives, configs, deliveries, receipts,
};
use crate::audit::archive::Indexed;
use crate::audit::pg::PgAudit;
use crate::stats::StoreTimes;

pub(super) type Done = oneshot::Sender<Result<(), String>>;

pub(super) enum Cmd {
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
    /// A segment the archiver sealed and verified: recorded (a row and an `archived` record).
    Archived(Indexed, Done),
    Delivery {
        source: String,
        message_id: String,
        destination: String,
        state: DeliveryState,
        attempts: u32,
        error: Option<String>,
        at: String,
    },
    /// Hand the chain from `old` (the key in force) to `new`: the rotation record is placed
    /// (`made`) in the batch's transaction; the writer signs with `new` once it commits.
    Rotate {
        old: Arc<SigningKey>,
        new: Arc<SigningKey>,
        actor: String,
        made: Option<Rotation>,
        done: oneshot::Sender<Result<Rotation, String>>,
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

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

/// What the writer thread shares with the store's handle and the checkpoint thread.
pub(super) struct Shared {
    pub(super) times: Arc<Mutex<StoreTimes>>,
    /// The log's length as the checkpoint thread last saw it, for [`bound_wal`].
    pub(super) log_frames: Arc<std::sync::atomic::AtomicI64>,
    pub(super) windows: Arc<Windows>,
    /// Segments the archiver sealed, to be recorded.
    pub(super) archived: std_mpsc::Receiver<ToRecord>,
    pub(super) chain_id: String,
    /// The receipts by message id: the writer adds and removes entries as its commits do.
    pub(super) index: Arc<ReceiptIndex>,
}

/// What a batch's commit changes in the receipt index: added and pruned receipts, by row id
/// and message id, applied only once the batch has committed.
#[derive(Default)]
pub(super) struct IndexChanges {
    added: Vec<(i64, String, String)>,
    /// Hashes of `added`'s (source, message id), to find a duplicate within the batch.
    added_keys: std::collections::HashSet<u64>,
    removed: Vec<(i64, String)>,
}

impl IndexChanges {
    fn key(source: &str, message_id: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (source, message_id).hash(&mut h);
        h.finish()
    }

    /// Whether this batch already added a receipt for the message.
    fn added(&self, source: &str, message_id: &str) -> bool {
        self.added_keys.contains(&Self::key(source, message_id))
            && self
                .added
                .iter()
                .any(|(_, s, m)| s == source && m == message_id)
    }

    fn add(&mut self, row: i64, source: &str, message_id: &str) {
        self.added_keys.insert(Self::key(source, message_id));
        self.added
            .push((row, source.to_owned(), message_id.to_owned()));
    }

    fn apply(self, index: &ReceiptIndex) {
        index.add(self.added.iter().map(|(row, _, m)| (*row, m.as_str())));
        index.remove(self.removed.iter().map(|(row, m)| (*row, m.as_str())));
    }
}

pub(super) fn write_loop(
    mut conn: Connection,
    rx: std_mpsc::Receiver<Cmd>,
    mut chain: Chain,
    mut pg: Option<PgAudit>,
    setup: &AuditSetup,
    shared: &Shared,
) {
    let (times, log_frames, windows) = (&*shared.times, &*shared.log_frames, &*shared.windows);
    const BATCH: usize = 2048;
    const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
    let period = std::time::Duration::from_secs(setup.checkpoint_secs);
    // An idle writer wakes at least this often: to sign when due, and to prune.
    let idle = period.min(std::time::Duration::from_secs(1));
    // After a failed PostgreSQL append the outcome is unknown: the commit may have happened
    // with only its answer lost. The chain of record is PostgreSQL's, so the next batch
    // continues from the head found there.
    let mut pg_in_doubt = false;
    let mut wal_checked = std::time::Instant::now();
    let mut last_commit = std::time::Instant::now() - GATHER;
    let mut threads = Threads::default();
    // The shared tables (PostgreSQL) are pruned with a batch at most once a second.
    let mut last_shared_prune = std::time::Instant::now();
    // Pruning rides with a batch at most every `retention::PRUNE_EVERY`, for the receipts
    // accepted since: each pass dirties the same pages (the tables' first leaves, the free
    // list), which at one pass a commit were written to the log hundreds of times a second.
    let (mut last_prune, mut receipts_since_prune) = (std::time::Instant::now(), 0usize);
    loop {
        let first = match rx.recv_timeout(idle) {
            Ok(c) => c,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                if let Ok((sealed, done)) = shared.archived.try_recv() {
                    Cmd::Archived(sealed, done)
                } else {
                    sign_if_due(&conn, pg.as_mut(), &mut chain, setup, period);
                    prune_idle(&mut conn, windows, times, &shared.chain_id, &shared.index);
                    if let Some(pg) = pg.as_mut()
                        && windows.get().receipts_secs > 0
                    {
                        let rows = SharedRows {
                            prune: Some(shared_prune(windows, &mut last_shared_prune)),
                            ..SharedRows::default()
                        };
                        if let Err(e) = pg
                            .ensure()
                            .and_then(|()| pg.append(&[], &rows, &shared.chain_id))
                        {
                            tracing::warn!(error = %e, "shared state store pruning failed");
                        }
                    }
                    continue;
                }
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
        while let Ok((sealed, done)) = shared.archived.try_recv() {
            batch.push(Cmd::Archived(sealed, done));
        }
        if pg_in_doubt && let Some(pg) = pg.as_mut() {
            match pg
                .ensure()
                .and_then(|()| pg.head(&setup.chain_id, chain.head.suite))
            {
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
        // A rotation: the records before it are signed with the old key first.
        if batch.iter().any(|c| matches!(c, Cmd::Rotate { .. })) {
            sign_now(&conn, pg.as_mut(), &mut chain, setup);
        }
        // The head moves only if the transaction commits.
        let mut head = chain.head.clone();
        let mut elsewhere = pg.as_ref().map(|_| Vec::new());
        let mut rows = SharedRows::default();
        if pg.is_some() && last_shared_prune.elapsed() >= std::time::Duration::from_secs(1) {
            rows.prune = Some(shared_prune(windows, &mut last_shared_prune));
        }
        let mut pruned = Pruned::default();
        let prune_due = last_prune.elapsed() >= retention::PRUNE_EVERY;
        let receipts = batch
            .iter()
            .filter(|c| matches!(c, Cmd::Receipt(..)))
            .count();
        let mut changes = IndexChanges::default();
        let result = (|| {
            // Immediate: the write lock is taken (waiting for it if need be) before the batch
            // reads anything. A deferred transaction that read first would fail at once,
            // without waiting, if another connection committed meanwhile (an instance still
            // closing on the same file: tests reopen a store at once).
            let mut tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| e.to_string())?;
            for cmd in &mut batch {
                apply(
                    &tx,
                    &mut threads,
                    &mut head,
                    cmd,
                    (&mut elsewhere, &mut rows),
                    (&shared.index, &mut changes),
                )
                .map_err(|e| e.to_string())?;
            }
            key_within(&mut tx);
            if prune_due {
                pruned = prune_within(
                    &mut tx,
                    windows.get(),
                    retention::budget(receipts_since_prune + receipts),
                    &shared.chain_id,
                    &mut changes.removed,
                );
            }
            // The audit records commit first: a receipt is never committed without them.
            if let (Some(pg), Some(records)) = (pg.as_mut(), &elsewhere) {
                pg.ensure()
                    .and_then(|()| pg.append(records, &rows, &shared.chain_id))
                    .map_err(|e| format!("audit store: {e}"))?;
            }
            tx.commit().map_err(|e| e.to_string())
        })();
        let outcome = result;
        match &outcome {
            Ok(()) => {
                chain.head = head;
                // The new key signs from the rotation record on (a checkpoint at once).
                if let Some(new) = batch.iter().rev().find_map(|c| match c {
                    Cmd::Rotate {
                        new, made: Some(_), ..
                    } => Some(new.clone()),
                    _ => None,
                }) {
                    setup.keys.swap_signing(new);
                    sign_now(&conn, pg.as_mut(), &mut chain, setup);
                }
                // Before any caller hears of the commit: a duplicate sent once its
                // original's receipt is answered finds it.
                std::mem::take(&mut changes).apply(&shared.index);
                let mut times = times.lock().unwrap_or_else(|p| p.into_inner());
                times.commit_lag.observe(arrived.elapsed());
                count_pruned(&mut times, pruned);
                if prune_due {
                    (last_prune, receipts_since_prune) = (std::time::Instant::now(), 0);
                } else {
                    receipts_since_prune += receipts;
                }
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
                Cmd::Rotate { made, done, .. } => {
                    let _ = done.send(match (&outcome, made) {
                        (Ok(()), Some(r)) => Ok(r),
                        (Ok(()), None) => Err("the rotation was not placed".into()),
                        (Err(e), _) => Err(e.clone()),
                    });
                }
                Cmd::Receipt(_, _, done, _, _)
                | Cmd::Audit(_, Some(done))
                | Cmd::Archived(_, done)
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
    sign_now(&conn, pg.as_mut(), &mut chain, setup);
}

/// Apply one command. Audit entries are moved out (a failed batch is not retried: its
/// callers get the error and the upstream is not acknowledged).
pub(super) fn apply(
    tx: &rusqlite::Transaction<'_>,
    threads: &mut Threads,
    head: &mut Head,
    cmd: &mut Cmd,
    (elsewhere, rows): (&mut Option<Vec<Record>>, &mut SharedRows),
    (index, changes): (&ReceiptIndex, &mut IndexChanges),
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
        } => configs::remember(tx, sha256, text, at)?,
        Cmd::Rotate {
            old,
            new,
            actor,
            made,
            ..
        } => {
            let rotation = Rotation::sign(
                &head.chain_id,
                head.next_seq,
                &crate::audit::now(),
                old,
                new,
            );
            append(
                tx,
                threads,
                head,
                &mut vec![rotation.entry(actor)],
                elsewhere,
            )?;
            *made = Some(rotation);
        }
        Cmd::Archived(sealed, _) => {
            let mut e = Entry::new(wingspan_core::audit::Event::Archived, crate::audit::now());
            e.actor = Some("gateway".into());
            e.payload_sha256 = Some(sealed.file_sha256.clone());
            e.reason = Some(format!(
                "records {}..={} sealed in {}",
                sealed.first_seq,
                sealed.last_seq,
                sealed
                    .manifest
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            append(tx, threads, head, &mut vec![e], elsewhere)?;
            archives::record(tx, sealed)?;
        }
        Cmd::Receipt(r, at, _, entries, _) => {
            append(tx, threads, head, entries, elsewhere)?;
            // Shared with the other instances when the trail is in PostgreSQL (there too the
            // first receipt of a message is kept).
            if elsewhere.is_some() {
                rows.receipts.push((r.clone(), at.clone()));
            }
            // The first receipt of a message is kept (the intake's claim makes a second one
            // rare: two instances of a message racing across a restart).
            let known = changes.added(&r.source, &r.message_id)
                || receipts::row_of(tx, index, Some(&r.source), &r.message_id)?.is_some();
            if !known {
                let row = receipts::insert(tx, r, at)?;
                changes.add(row, &r.source, &r.message_id);
            }
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
            if elsewhere.is_some() {
                rows.deliveries.push(DeliveryRow {
                    source: source.clone(),
                    message_id: message_id.clone(),
                    destination: destination.clone(),
                    state: *state,
                    attempts: *attempts,
                    error: error.clone(),
                    at: at.clone(),
                });
            }
            let message_type = match state {
                DeliveryState::DeadLettered => {
                    receipts::message_type(tx, index, source, message_id)?
                }
                _ => None,
            };
            deliveries::record(
                tx,
                source,
                message_id,
                destination,
                *state,
                *attempts,
                error.as_deref(),
                at,
                message_type.as_deref(),
            )?;
        }
    }
    Ok(())
}

/// Prune inside a batch's transaction, behind a savepoint: a pruning failure is logged and
/// undone, and never fails the receipts and records it rides with.
fn prune_within(
    tx: &mut rusqlite::Transaction<'_>,
    retain: Retain,
    budget: usize,
    chain_id: &str,
    removed: &mut Vec<(i64, String)>,
) -> Pruned {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut gone = Vec::new();
    let outcome = tx.savepoint().and_then(|sp| {
        let pruned = retention::prune(&sp, retain, now, budget, chain_id, &mut gone)?;
        sp.commit()?;
        Ok(pruned)
    });
    if outcome.is_ok() {
        removed.append(&mut gone);
    }
    outcome.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "state store pruning failed; tried again with the next batch");
        Pruned::default()
    })
}

/// Write the audit keys' runs that are due, behind a savepoint: a failure is logged and
/// undone (the records stay readable unkeyed) and tried again with the next batch.
fn key_within(tx: &mut rusqlite::Transaction<'_>) {
    let outcome = tx.savepoint().and_then(|sp| {
        keys::write_due(&sp)?;
        sp.commit()
    });
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "audit keys not written; tried again with the next batch");
    }
}

/// Prune while no command waits: a transaction of its own, at most [`retention::IDLE_BUDGET`]
/// rows of each kind.
fn prune_idle(
    conn: &mut Connection,
    windows: &Windows,
    times: &Mutex<StoreTimes>,
    chain_id: &str,
    index: &ReceiptIndex,
) {
    let retain = windows.get();
    if retain.receipts_secs == 0 && retain.audit_live_secs == 0 {
        return;
    }
    let outcome = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .and_then(|mut tx| {
            let mut removed = Vec::new();
            let pruned = prune_within(
                &mut tx,
                retain,
                retention::IDLE_BUDGET,
                chain_id,
                &mut removed,
            );
            tx.commit()?;
            Ok((pruned, removed))
        });
    match outcome {
        Ok((pruned, removed)) => {
            index.remove(removed.iter().map(|(row, m)| (*row, m.as_str())));
            count_pruned(&mut times.lock().unwrap_or_else(|p| p.into_inner()), pruned);
        }
        Err(e) => tracing::warn!(error = %e, "state store pruning failed"),
    }
}

/// A pruning pass of the shared tables (windows, now, budget), noted as done now.
fn shared_prune(windows: &Windows, last: &mut std::time::Instant) -> (Retain, i64, i64) {
    *last = std::time::Instant::now();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let budget = i64::try_from(retention::IDLE_BUDGET).unwrap_or(i64::MAX);
    (windows.get(), now, budget)
}

fn count_pruned(times: &mut StoreTimes, pruned: Pruned) {
    for (n, p) in times.pruned.iter_mut().zip([
        pruned.receipts,
        pruned.deliveries,
        pruned.parked,
        pruned.audit,
    ]) {
        *n += p as u64;
    }
}
