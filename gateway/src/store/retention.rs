//! Retention: receipts and delivery states are pruned once their windows have passed, a few
//! at a time, inside the writer's own transactions, so that intake never waits for a large
//! delete.
//!
//! Order matters. A copy's delivery state is read through its message's receipt (status,
//! replies), so states go first: a cursor walks receipts in acceptance order (their row
//! order), deleting the states of each message accepted before the delivery window, and a
//! receipt is deleted only once the cursor has passed it. A parked copy's state (`dead-lettered`) is what the parked
//! list shows, so it stays while the copy may still be parked, and goes by its own index.
//! The cursor is kept in the database, in the same transaction, so that a restart neither
//! walks again what was done nor leaves a state behind its deleted receipt.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};

/// The windows in force, in seconds (0: nothing is pruned). Shared between the store's
/// handle (a reload sets them) and its writer thread.
#[derive(Debug, Default)]
pub struct Windows {
    receipts: AtomicU64,
    deliveries: AtomicU64,
    parked: AtomicU64,
    audit_live: AtomicU64,
}

/// The windows as numbers, for one pruning pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retain {
    /// Receipts accepted longer ago than this are deleted: the deduplication window.
    pub receipts_secs: u64,
    /// Delivery states of messages accepted longer ago than this are deleted (≤ receipts).
    pub deliveries_secs: u64,
    /// A parked copy's state is kept this long after it was parked.
    pub parked_secs: u64,
    /// Archived audit records leave the live store this long after they were written (0:
    /// never; nothing unarchived ever leaves).
    pub audit_live_secs: u64,
}

impl Windows {
    pub fn set(&self, r: Retain) {
        self.receipts.store(r.receipts_secs, Ordering::Relaxed);
        self.deliveries
            .store(r.deliveries_secs.min(r.receipts_secs), Ordering::Relaxed);
        self.parked.store(r.parked_secs, Ordering::Relaxed);
        self.audit_live.store(r.audit_live_secs, Ordering::Relaxed);
    }

    pub fn get(&self) -> Retain {
        Retain {
            receipts_secs: self.receipts.load(Ordering::Relaxed),
            deliveries_secs: self.deliveries.load(Ordering::Relaxed),
            parked_secs: self.parked.load(Ordering::Relaxed),
            audit_live_secs: self.audit_live.load(Ordering::Relaxed),
        }
    }
}

/// How many rows one pass deletes at most, from each kind (audit records: [`AUDIT_SHARE`]
/// times as many, a message having several): a pass after `n` receipts prunes up to twice
/// as many, so pruning keeps up with intake; an idle writer prunes up to [`IDLE_BUDGET`] a
/// pass.
pub(super) fn budget(receipts_since_last_pass: usize) -> usize {
    64 + 2 * receipts_since_last_pass
}

/// A pass rides with a batch at most this often under load.
pub(super) const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Audit records are deleted a range at a time, several a message: a pass may delete this
/// many times its budget of them.
pub(super) const AUDIT_SHARE: i64 = 8;

/// Rows an idle writer's pass deletes at most (a backlog, after retention is first turned
/// on over an old store, is worked off between batches, never in one long transaction).
pub(super) const IDLE_BUDGET: usize = 2048;

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub receipts: usize,
    pub deliveries: usize,
    pub parked: usize,
    pub audit: usize,
}

impl Pruned {
    pub fn total(self) -> usize {
        self.receipts + self.deliveries + self.parked + self.audit
    }
}

/// The instant `secs` before `now_unix` (seconds since the epoch), as text that compares
/// with the store's RFC 3339 times (`audit::now`) as the instants compare: receipts and
/// states accepted or updated before it are past their window. Stored times carry a fraction
/// of a second of varying length; a cutoff without one ("…:05Z") would sort after every time
/// of its own second ('Z' > '.') and prune up to a second early, so it is written with a
/// fraction of nine zeros, which sorts before every time of its second but the whole one.
pub(super) fn cutoff(now_unix: i64, secs: u64) -> String {
    let t = now_unix.saturating_sub(i64::try_from(secs).unwrap_or(i64::MAX));
    let t =
        time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000000000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// One pruning pass in the writer's transaction: at most `budget` rows of each kind.
pub(super) fn prune(
    tx: &Connection,
    retain: Retain,
    now_unix: i64,
    budget: usize,
    chain_id: &str,
    removed: &mut Vec<(i64, String)>,
) -> Result<Pruned, rusqlite::Error> {
    let mut pruned = Pruned::default();
    let limit = i64::try_from(budget).unwrap_or(i64::MAX);
    if retain.audit_live_secs > 0 {
        pruned.audit = prune_audit(
            tx,
            chain_id,
            &cutoff(now_unix, retain.audit_live_secs),
            limit.saturating_mul(AUDIT_SHARE),
        )?;
    }
    if retain.receipts_secs == 0 {
        return Ok(pruned);
    }
    // 1. Delivery states, walking receipts in acceptance order (row order) from the cursor.
    let deliveries_before = cutoff(now_unix, retain.deliveries_secs.min(retain.receipts_secs));
    let cursor: i64 = tx
        .prepare_cached("SELECT receipt FROM retention_walk WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let next: Vec<(i64, String, String, String)> = tx
        .prepare_cached(
            "SELECT id, accepted_at, message_id, source FROM receipts WHERE id > ?1
             ORDER BY id LIMIT ?2",
        )?
        .query_map(params![cursor, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    // Row order is acceptance order to within the moments receipts wait for their commit:
    // the walk stops at the first receipt inside the window.
    let walked: Vec<_> = next
        .into_iter()
        .take_while(|(_, at, _, _)| *at < deliveries_before)
        .collect();
    if let Some(last) = walked.last() {
        let mut delete = tx.prepare_cached(
            "DELETE FROM deliveries WHERE message_id = ?1 AND source = ?2 AND state <> 'dead-lettered'",
        )?;
        for (_, _, message_id, source) in &walked {
            pruned.deliveries += delete.execute(params![message_id, source])?;
        }
        tx.prepare_cached(
            "INSERT INTO retention_walk (id, receipt) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET receipt = excluded.receipt",
        )?
        .execute(params![last.0])?;
    }
    let cursor = walked.last().map_or(cursor, |w| w.0);
    // 2. Receipts past the deduplication window that the cursor has passed, oldest first.
    let receipts_before = cutoff(now_unix, retain.receipts_secs);
    let oldest: Vec<(i64, String, String)> = tx
        .prepare_cached(
            "SELECT id, accepted_at, message_id FROM receipts WHERE id <= ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![cursor, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let gone: Vec<(i64, String)> = oldest
        .into_iter()
        .take_while(|(_, at, _)| *at < receipts_before)
        .map(|(id, _, message_id)| (id, message_id))
        .collect();
    if let Some((last, _)) = gone.last() {
        pruned.receipts = tx
            .prepare_cached("DELETE FROM receipts WHERE id <= ?1")?
            .execute(params![last])?;
    }
    removed.extend(gone);
    // 3. Parked copies' states, once the copy can no longer be parked and the delivery
    //    window has passed too.
    let parked_before = cutoff(now_unix, retain.parked_secs.max(retain.deliveries_secs));
    pruned.parked = tx
        .prepare_cached(
            "DELETE FROM deliveries WHERE (message_id, source, destination) IN (
               SELECT message_id, source, destination FROM deliveries INDEXED BY deliveries_parked
               WHERE state = 'dead-lettered' AND updated_at < ?1 LIMIT ?2)",
        )?
        .execute(params![parked_before, limit])?;
    Ok(pruned)
}

/// Archived records older than `before` leave the live store, oldest first: only records of
/// a recorded (sealed and verified) segment whose last record is older than `before`.
fn prune_audit(
    tx: &Connection,
    chain_id: &str,
    before: &str,
    limit: i64,
) -> Result<usize, rusqlite::Error> {
    let upto: Option<i64> = tx
        .prepare_cached(
            "SELECT max(last_seq) FROM audit_archives WHERE chain_id = ?1 AND last_at < ?2",
        )?
        .query_row(params![chain_id, before], |r| r.get(0))?;
    let Some(upto) = upto else {
        return Ok(0);
    };
    let oldest: Option<i64> = tx
        .prepare_cached("SELECT min(seq) FROM audit WHERE chain_id = ?1")?
        .query_row(params![chain_id], |r| r.get(0))?;
    let Some(oldest) = oldest.filter(|o| *o <= upto) else {
        return Ok(0);
    };
    let deleted = tx
        .prepare_cached("DELETE FROM audit WHERE chain_id = ?1 AND seq >= ?2 AND seq <= ?3")?
        .execute(params![
            chain_id,
            oldest,
            upto.min(oldest.saturating_add(limit - 1))
        ])?;
    let left: Option<i64> = tx
        .prepare_cached("SELECT min(seq) FROM audit")?
        .query_row([], |r| r.get(0))?;
    super::keys::prune(tx, left)?;
    Ok(deleted)
}

impl From<&wingspan_core::config::compile::Retention> for Retain {
    fn from(r: &wingspan_core::config::compile::Retention) -> Self {
        Self {
            receipts_secs: r.receipts_secs,
            deliveries_secs: r.deliveries_secs,
            parked_secs: r.parked_max_secs(),
            audit_live_secs: r.audit_live_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeliveryState, NewReceipt, deliveries, receipts, schema};

    /// 2026-01-01T00:00:00Z and a time `secs` after it, in the store's form.
    const T0: i64 = 1_767_225_600;
    fn at(secs: i64) -> String {
        cutoff(T0 + secs, 0)
    }

    fn store() -> Connection {
        let dir = std::env::temp_dir().join(format!("wingspan-ret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let conn = schema::open(&dir.join("t.db")).expect("open");
        schema::create_or_migrate(&conn).expect("schema");
        conn
    }

    /// Message `i` accepted at second `i`, with a state for `police` (delivered, or parked).
    fn accept(conn: &Connection, i: i64, state: DeliveryState) {
        let r = NewReceipt {
            source: "rehab".into(),
            message_id: format!("m-{i:03}"),
            message_type: "t".into(),
            correlation_id: None,
            correlation_unknown: false,
            destinations: vec!["police".into()],
            delivered: vec![],
            claim: None,
        };
        receipts::insert(conn, &r, &at(i)).expect("receipt");
        deliveries::record(
            conn,
            "rehab",
            &r.message_id,
            "police",
            state,
            1,
            None,
            &at(i),
            None,
        )
        .expect("state");
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).expect("count")
    }

    #[test]
    fn states_go_before_their_receipts_a_few_at_a_time_and_parked_ones_stay_while_parked() {
        let conn = store();
        for i in 0..100 {
            let parked = i % 10 == 0;
            accept(
                &conn,
                i,
                if parked {
                    DeliveryState::DeadLettered
                } else {
                    DeliveryState::Delivered
                },
            );
        }
        let retain = Retain {
            receipts_secs: 80,
            deliveries_secs: 50,
            parked_secs: 1000,
            audit_live_secs: 0,
        };
        // At second 100: states of messages accepted before second 50 go (not the parked
        // ones), receipts of those before second 20; 8 rows a pass at most.
        let mut passes = 0;
        let mut total = Pruned::default();
        let mut removed = Vec::new();
        loop {
            let p = prune(&conn, retain, T0 + 100, 8, "gw", &mut removed).expect("prune");
            assert!(
                p.receipts <= 8 && p.deliveries <= 8 && p.parked <= 8,
                "{p:?}"
            );
            // A receipt never goes before its states have.
            let orphans = count(
                &conn,
                "SELECT count(*) FROM deliveries d WHERE state <> 'dead-lettered' AND NOT EXISTS
                   (SELECT 1 FROM receipts r WHERE r.message_id = d.message_id AND r.source = d.source)",
            );
            assert_eq!(orphans, 0, "a state outlived its receipt");
            total.receipts += p.receipts;
            total.deliveries += p.deliveries;
            total.parked += p.parked;
            passes += 1;
            if p.total() == 0 {
                break;
            }
            assert!(passes < 50, "pruning did not converge");
        }
        assert_eq!(total.receipts, 20, "receipts accepted at 0..20");
        // Named for the index in memory, oldest first.
        let expected: Vec<(i64, String)> = (0..20).map(|i| (i + 1, format!("m-{i:03}"))).collect();
        assert_eq!(removed, expected);
        assert_eq!(total.deliveries, 45, "delivered states accepted at 0..50");
        assert_eq!(
            total.parked, 0,
            "parked states stay while the copy may be parked"
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM receipts"), 80);
        assert_eq!(count(&conn, "SELECT count(*) FROM deliveries"), 55);
        // Later, past the parked window too: the parked states go.
        let p = prune(&conn, retain, T0 + 1100, 1000, "gw", &mut Vec::new()).expect("prune");
        assert_eq!(p.parked, 10);
        assert_eq!(count(&conn, "SELECT count(*) FROM receipts"), 0);
        assert_eq!(count(&conn, "SELECT count(*) FROM deliveries"), 0);
    }

    #[test]
    fn the_cutoff_sorts_as_the_instants_do() {
        let c = cutoff(T0 + 5, 0);
        assert_eq!(c, "2026-01-01T00:00:05.000000000Z");
        // Later in the cutoff's own second, and the second before: as the store writes them.
        for later in [
            "2026-01-01T00:00:05Z",
            "2026-01-01T00:00:05.000001Z",
            "2026-01-01T00:00:05.9Z",
        ] {
            assert!(later >= c.as_str(), "{later} sorts before the cutoff {c}");
        }
        assert!("2026-01-01T00:00:04.999999Z" < c.as_str());
        // And against the store's own clock: a time written now is not before this second.
        let second = time::OffsetDateTime::now_utc().unix_timestamp();
        let stored = crate::audit::now();
        assert!(stored.as_str() >= cutoff(second, 0).as_str(), "{stored}");
        assert!(stored.as_str() < cutoff(second + 2, 0).as_str(), "{stored}");
    }

    #[test]
    fn the_cursor_survives_and_no_window_prunes_nothing() {
        let conn = store();
        for i in 0..30 {
            accept(&conn, i, DeliveryState::Delivered);
        }
        assert_eq!(
            prune(
                &conn,
                Retain::default(),
                T0 + 1000,
                100,
                "gw",
                &mut Vec::new()
            )
            .expect("prune"),
            Pruned::default()
        );
        let retain = Retain {
            receipts_secs: 10,
            deliveries_secs: 10,
            parked_secs: 10,
            audit_live_secs: 0,
        };
        let p = prune(&conn, retain, T0 + 25, 5, "gw", &mut Vec::new()).expect("prune");
        assert_eq!((p.deliveries, p.receipts), (5, 5));
        let cursor: i64 = conn
            .query_row("SELECT receipt FROM retention_walk", [], |r| r.get(0))
            .expect("cursor");
        assert_eq!(cursor, 5, "the cursor (m-004's row) is kept with the pass");
        let p = prune(&conn, retain, T0 + 25, 100, "gw", &mut Vec::new()).expect("prune");
        assert_eq!((p.deliveries, p.receipts), (10, 10), "accepted at 5..15");
    }
}
