//! Receipts, claims and delivery states shared by every instance, in the PostgreSQL database
//! that keeps the audit trail when several instances run (`[audit] store = "postgres://…"`).
//!
//! - A **claim** (`claims`: source, message id, instance, when) is taken before any copy of a
//!   message is published, in its own statement: an instance finding another's fresh claim
//!   answers as for a message being accepted (409, `Retry-After: 1`); a claim older than
//!   [`LEASE_SECS`] belongs to an instance that died before its receipt committed, and is
//!   taken over.
//! - The **receipt** is inserted, and the claim deleted, by the writer, in the same
//!   PostgreSQL transaction as the batch's audit records: a receipt and the records that
//!   account for it commit together for every instance. Delivery states go the same way.
//! - The duplicate check reads the receipt *after* taking the claim, in a second statement
//!   of the same round trip with a snapshot of its own, so it sees every receipt committed
//!   before the claim was free.
//!
//! A copy the broker confirmed for an instance that died before its receipt committed is
//! published again by the instance that takes the claim over: two intake attempts, two
//! copies. HTTP partners absorb the second (`Idempotency-Key`); an AMQP partner that cannot
//! deduplicate is a destination that delivers once (`amqp.once`): the receipt names the
//! attempt that committed (`claim`), and only that attempt's copies are delivered (see
//! `delivery::fence`).

use std::collections::HashMap;
use std::sync::Mutex;

use postgres::{Client, NoTls, Transaction};

use super::receipts::{MessageStatus, NewReceipt, Receipt, ReplyRef};
use super::retention::{Retain, cutoff};
use super::{DeliveryState, DeliveryStatus};

/// How long a claim holds before another instance may take it over.
///
/// Claims are leases, not records: their table is UNLOGGED and the intake's connections
/// commit without waiting for PostgreSQL's log flush (`synchronous_commit = off`), so taking
/// and giving one back costs no disk write. A PostgreSQL crash empties the table; the
/// instances fail closed meanwhile (no receipt can commit), and an upstream retry afterwards
/// claims afresh, which is the same as a retry after an instance's crash.
pub const LEASE_SECS: f64 = 30.0;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS receipts (
  source TEXT NOT NULL, message_id TEXT NOT NULL, message_type TEXT NOT NULL,
  correlation_id TEXT, correlation_unknown BOOLEAN NOT NULL, destinations TEXT NOT NULL,
  delivered TEXT, accepted_at TEXT NOT NULL, instance TEXT NOT NULL,
  PRIMARY KEY (source, message_id));
ALTER TABLE receipts ADD COLUMN IF NOT EXISTS claim TEXT;
CREATE INDEX IF NOT EXISTS receipts_by_message ON receipts (message_id);
CREATE INDEX IF NOT EXISTS receipts_by_correlation ON receipts (correlation_id);
CREATE INDEX IF NOT EXISTS receipts_by_time ON receipts (accepted_at);
CREATE TABLE IF NOT EXISTS deliveries (
  source TEXT NOT NULL, message_id TEXT NOT NULL, destination TEXT NOT NULL,
  state TEXT NOT NULL, attempts BIGINT NOT NULL, last_error TEXT, updated_at TEXT NOT NULL,
  message_type TEXT, PRIMARY KEY (source, message_id, destination));
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (updated_at);
CREATE UNLOGGED TABLE IF NOT EXISTS claims (
  source TEXT NOT NULL, message_id TEXT NOT NULL, instance TEXT NOT NULL,
  claimed_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (source, message_id));
";

/// A delivery state change, as the writer batches them.
#[derive(Debug)]
pub(super) struct DeliveryRow {
    pub source: String,
    pub message_id: String,
    pub destination: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub error: Option<String>,
    pub at: String,
}

/// What one batch writes to the shared tables, beside its audit records.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(super) receipts: Vec<(NewReceipt, String)>,
    pub(super) deliveries: Vec<DeliveryRow>,
    /// Prune what is past its window, at most this many rows of each kind, with the batch.
    pub(super) prune: Option<(Retain, i64, i64)>,
}

impl Rows {
    pub(crate) fn is_empty(&self) -> bool {
        self.receipts.is_empty() && self.deliveries.is_empty() && self.prune.is_none()
    }
}

/// Write a batch's receipts (the first of a message is kept), release their claims, and
/// record its delivery states, inside the audit records' transaction. Arrays, not a row at a
/// time: three round trips a batch whatever its size.
pub(crate) fn write(
    tx: &mut Transaction<'_>,
    rows: &Rows,
    instance: &str,
) -> Result<(), postgres::Error> {
    if !rows.receipts.is_empty() {
        let receipts = &rows.receipts;
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let source: Vec<&str> = receipts.iter().map(|(r, _)| r.source.as_str()).collect();
        let message_id: Vec<&str> = receipts
            .iter()
            .map(|(r, _)| r.message_id.as_str())
            .collect();
        let message_type: Vec<&str> = receipts
            .iter()
            .map(|(r, _)| r.message_type.as_str())
            .collect();
        let correlation: Vec<Option<&str>> = receipts
            .iter()
            .map(|(r, _)| r.correlation_id.as_deref())
            .collect();
        let routed: Vec<String> = receipts
            .iter()
            .map(|(r, _)| json(&r.destinations))
            .collect();
        let delivered: Vec<Option<String>> = receipts
            .iter()
            .map(|(r, _)| (!r.delivered.is_empty()).then(|| json(&r.delivered)))
            .collect();
        let at: Vec<&str> = receipts.iter().map(|(_, at)| at.as_str()).collect();
        let unknown: Vec<bool> = receipts
            .iter()
            .map(|(r, _)| r.correlation_unknown)
            .collect();
        let claim: Vec<Option<&str>> = receipts.iter().map(|(r, _)| r.claim.as_deref()).collect();
        tx.execute(
            "INSERT INTO receipts (source, message_id, message_type, correlation_id, destinations, delivered, accepted_at, correlation_unknown, claim, instance)
             SELECT u.*, $10 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[], $9::text[]) AS u
             ON CONFLICT (source, message_id) DO NOTHING",
            &[&source, &message_id, &message_type, &correlation, &routed, &delivered, &at, &unknown, &claim, &instance],
        )?;
        tx.execute(
            "DELETE FROM claims c USING unnest($1::text[], $2::text[]) AS d(source, message_id)
             WHERE c.source = d.source AND c.message_id = d.message_id",
            &[&source, &message_id],
        )?;
    }
    if !rows.deliveries.is_empty() {
        // One row per copy (an upsert may not touch a row twice in one statement): the
        // batch's changes to a copy are merged as the statement merges them with the table's.
        struct Merged<'a> {
            first: &'a DeliveryRow,
            state: DeliveryState,
            attempts: u32,
            error: Option<&'a str>,
            at: &'a str,
        }
        let mut merged: Vec<Merged<'_>> = Vec::with_capacity(rows.deliveries.len());
        let mut index: HashMap<(&str, &str, &str), usize> = HashMap::new();
        for d in &rows.deliveries {
            let key = (
                d.source.as_str(),
                d.message_id.as_str(),
                d.destination.as_str(),
            );
            match index.get(&key) {
                Some(&i) => {
                    let m = &mut merged[i];
                    if m.state != DeliveryState::Delivered {
                        m.state = d.state;
                    }
                    m.attempts = m.attempts.max(d.attempts);
                    m.error = d.error.as_deref().or(m.error);
                    m.at = &d.at;
                }
                None => {
                    index.insert(key, merged.len());
                    merged.push(Merged {
                        first: d,
                        state: d.state,
                        attempts: d.attempts,
                        error: d.error.as_deref(),
                        at: &d.at,
                    });
                }
            }
        }
        let source: Vec<&str> = merged.iter().map(|m| m.first.source.as_str()).collect();
        let message_id: Vec<&str> = merged.iter().map(|m| m.first.message_id.as_str()).collect();
        let destination: Vec<&str> = merged
            .iter()
            .map(|m| m.first.destination.as_str())
            .collect();
        let state: Vec<&str> = merged.iter().map(|m| m.state.as_str()).collect();
        let attempts: Vec<i64> = merged.iter().map(|m| i64::from(m.attempts)).collect();
        let error: Vec<Option<&str>> = merged.iter().map(|m| m.error).collect();
        let updated: Vec<&str> = merged.iter().map(|m| m.at).collect();
        tx.execute(
            "INSERT INTO deliveries (source, message_id, destination, state, attempts, last_error, updated_at, message_type)
             SELECT d.*, CASE WHEN d.state = 'dead-lettered' THEN
                 (SELECT r.message_type FROM receipts r WHERE r.source = d.source AND r.message_id = d.message_id) END
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[])
               AS d(source, message_id, destination, state, attempts, last_error, updated_at)
             ON CONFLICT (source, message_id, destination) DO UPDATE SET
               state = CASE WHEN deliveries.state = 'delivered' THEN deliveries.state ELSE excluded.state END,
               attempts = greatest(deliveries.attempts, excluded.attempts),
               last_error = coalesce(excluded.last_error, deliveries.last_error),
               updated_at = excluded.updated_at,
               message_type = coalesce(excluded.message_type, deliveries.message_type)",
            &[&source, &message_id, &destination, &state, &attempts, &error, &updated],
        )?;
    }
    if let Some((retain, now_unix, budget)) = rows.prune {
        // Behind a savepoint: a pruning failure is undone and logged, never failing the
        // receipts and records it rides with.
        let mut sp = tx.savepoint("prune")?;
        match prune(&mut sp, retain, now_unix, budget) {
            Ok(()) => sp.commit()?,
            Err(e) => {
                drop(sp);
                tracing::warn!(error = %e, "shared state store pruning failed; tried again later");
            }
        }
    }
    Ok(())
}

/// Delete what is past its window, oldest first, at most `budget` rows of each kind: delivery
/// states (a parked copy's while it may still be parked), receipts, and claims left by an
/// instance that died and whose message never came again. Every instance prunes; a row
/// another has just deleted is skipped.
fn prune(
    tx: &mut Transaction<'_>,
    retain: Retain,
    now_unix: i64,
    budget: i64,
) -> Result<(), postgres::Error> {
    if retain.receipts_secs == 0 {
        return Ok(());
    }
    let states_before = cutoff(now_unix, retain.deliveries_secs.min(retain.receipts_secs));
    let parked_before = cutoff(now_unix, retain.parked_secs.max(retain.deliveries_secs));
    tx.execute(
        "DELETE FROM deliveries WHERE ctid = ANY(ARRAY(
           SELECT ctid FROM deliveries WHERE updated_at < $1
             AND (state <> 'dead-lettered' OR updated_at < $2)
           ORDER BY updated_at LIMIT $3))",
        &[&states_before, &parked_before, &budget],
    )?;
    tx.execute(
        "DELETE FROM receipts WHERE ctid = ANY(ARRAY(
           SELECT ctid FROM receipts WHERE accepted_at < $1 ORDER BY accepted_at LIMIT $2))",
        &[&cutoff(now_unix, retain.receipts_secs), &budget],
    )?;
    tx.execute(
        "DELETE FROM claims WHERE claimed_at < now() - make_interval(secs => $1)",
        &[&(LEASE_SECS * 10.0)],
    )?;
    Ok(())
}

/// The shared tables as the intake and the status queries read them: a few connections,
/// kept between calls. Synchronous: called off the async threads.
pub(crate) struct SharedState {
    url: String,
    instance: String,
    /// Idle connections and how many are open in all; a caller finding none idle opens one
    /// while fewer than [`POOL`] are open, else waits for one to come back.
    pool: Mutex<(Vec<Client>, usize)>,
    returned: std::sync::Condvar,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// A connection for claims and reads: its commits (claims taken and given back) do not wait
/// for the log flush.
fn connect(url: &str) -> Result<Client, postgres::Error> {
    let mut client = Client::connect(url, NoTls)?;
    client.batch_execute("SET synchronous_commit = off")?;
    Ok(client)
}

impl Drop for SharedState {
    /// The synchronous client must not be dropped on an async runtime's thread (closing it
    /// blocks): the idle connections are closed on a thread of their own.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.pool.lock().unwrap_or_else(|p| p.into_inner()).0);
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("wingspan-pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}

/// Connections an instance opens at most for claims and reads (opening one per request
/// would cost more than the request; three instances stay well inside PostgreSQL's default
/// 100 connections).
const POOL: usize = 16;

impl SharedState {
    /// Create the tables if they are missing (the audit store's connection has made its own).
    pub(crate) fn open(url: &str, instance: &str) -> Result<Self, postgres::Error> {
        let mut client = connect(url)?;
        client.batch_execute(SCHEMA)?;
        Ok(Self {
            url: url.to_owned(),
            instance: instance.to_owned(),
            pool: Mutex::new((vec![client], 1)),
            returned: std::sync::Condvar::new(),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let taken = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(c) = pool.0.pop() {
                    break Some(c);
                }
                if pool.1 < POOL {
                    pool.1 += 1;
                    break None;
                }
                pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut client = match taken {
            Some(c) if !c.is_closed() => c,
            _ => match connect(&self.url) {
                Ok(c) => c,
                Err(e) => {
                    self.pool.lock().unwrap_or_else(|p| p.into_inner()).1 -= 1;
                    self.returned.notify_one();
                    return Err(e);
                }
            },
        };
        let out = f(&mut client);
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if client.is_closed() {
            pool.1 -= 1;
            drop(pool);
            // Closing a synchronous client blocks: never on an async thread (callers run on
            // blocking threads), and outside the lock.
            drop(client);
        } else {
            pool.0.push(client);
            drop(pool);
        }
        self.returned.notify_one();
        out
    }

    /// Take the claim on a message and read its receipt, in one round trip: `None` when
    /// another instance holds a fresh claim; else the receipt any instance committed.
    ///
    /// Two statements in one simple query: each reads with a snapshot of its own (READ
    /// COMMITTED), so the receipt read sees every receipt committed before the claim was
    /// free — also the one whose transaction the claim had to wait for. (One statement doing
    /// both would read with a snapshot taken before that wait.) The simple protocol takes no
    /// parameters: the values are quoted as literals, as libpq's `PQescapeLiteral` does.
    pub(crate) fn claim(
        &self,
        source: &str,
        message_id: &str,
    ) -> Result<Option<Option<Receipt>>, postgres::Error> {
        use postgres::SimpleQueryMessage;
        use postgres_protocol::escape::escape_literal;
        let (s, m, i) = (
            escape_literal(source),
            escape_literal(message_id),
            escape_literal(&self.instance),
        );
        let sql = format!(
            "INSERT INTO claims (source, message_id, instance, claimed_at) VALUES ({s}, {m}, {i}, now())
             ON CONFLICT (source, message_id) DO UPDATE SET instance = excluded.instance, claimed_at = now()
             WHERE claims.instance = excluded.instance
                OR claims.claimed_at < now() - make_interval(secs => {LEASE_SECS})
             RETURNING instance;
             SELECT destinations FROM receipts WHERE source = {s} AND message_id = {m}"
        );
        self.with(|c| {
            let (mut statement, mut taken, mut destinations) = (0, false, None);
            for message in c.simple_query(&sql)? {
                match message {
                    SimpleQueryMessage::CommandComplete(_) => statement += 1,
                    SimpleQueryMessage::Row(row) if statement == 0 => taken = row.get(0).is_some(),
                    SimpleQueryMessage::Row(row) => destinations = row.get(0).map(str::to_owned),
                    _ => {}
                }
            }
            Ok(taken.then(|| {
                destinations.map(|d| Receipt {
                    message_id: message_id.to_owned(),
                    status: "accepted".into(),
                    destinations: serde_json::from_str(&d).unwrap_or_default(),
                })
            }))
        })
    }

    /// Give a claim back (the message was a duplicate, or could not be accepted).
    pub(crate) fn release(&self, source: &str, message_id: &str) -> Result<(), postgres::Error> {
        self.with(|c| {
            c.execute(
                "DELETE FROM claims WHERE source = $1 AND message_id = $2 AND instance = $3",
                &[&source, &message_id, &self.instance],
            )
            .map(|_| ())
        })
    }

    /// The receipt of `message_id` from `source`, committed by any instance.
    pub(crate) fn receipt(
        &self,
        source: &str,
        message_id: &str,
    ) -> Result<Option<Receipt>, postgres::Error> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT destinations FROM receipts WHERE source = $1 AND message_id = $2",
                &[&source, &message_id],
            )?;
            row.map(|r| {
                let d: String = r.try_get(0)?;
                Ok(Receipt {
                    message_id: message_id.to_owned(),
                    status: "accepted".into(),
                    destinations: serde_json::from_str(&d).unwrap_or_default(),
                })
            })
            .transpose()
        })
    }

    /// The attempt named by a message's receipt, committed by any instance (see
    /// [`super::Store::receipt_claim`]).
    pub(crate) fn claim_of(
        &self,
        source: &str,
        message_id: &str,
    ) -> Result<Option<Option<String>>, postgres::Error> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT claim FROM receipts WHERE source = $1 AND message_id = $2",
                &[&source, &message_id],
            )?;
            row.map(|r| r.try_get(0)).transpose()
        })
    }

    /// Whether any source's message with this id was accepted, by any instance.
    pub(crate) fn known(&self, message_id: &str) -> Result<bool, postgres::Error> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT 1 FROM receipts WHERE message_id = $1 LIMIT 1",
                &[&message_id],
            )?
            .is_some())
        })
    }

    /// Everything known about a message id (first source that used it), from every instance.
    pub(crate) fn status(
        &self,
        message_id: &str,
    ) -> Result<Option<MessageStatus>, postgres::Error> {
        self.with(|c| {
            let Some(r) = c.query_opt(
                "SELECT source, message_type, correlation_id, accepted_at, destinations, delivered, correlation_unknown
                 FROM receipts WHERE message_id = $1 ORDER BY accepted_at LIMIT 1",
                &[&message_id],
            )?
            else {
                return Ok(None);
            };
            let source: String = r.try_get(0)?;
            let accepted_at: String = r.try_get(3)?;
            let routed: String = r.try_get(4)?;
            let at_intake: Option<String> = r.try_get(5)?;
            let correlation_id: Option<String> = r.try_get(2)?;
            let unknown: bool = r.try_get(6)?;
            let mut destinations = c
                .query(
                    "SELECT destination, state, attempts, last_error, updated_at FROM deliveries
                     WHERE source = $1 AND message_id = $2 ORDER BY destination",
                    &[&source, &message_id],
                )?
                .iter()
                .map(|d| {
                    Ok(DeliveryStatus {
                        destination: d.try_get(0)?,
                        state: d.try_get(1)?,
                        attempts: d.try_get(2)?,
                        last_error: d.try_get(3)?,
                        updated_at: d.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()?;
            super::receipts::add_unrecorded(&mut destinations, &routed, at_intake.as_deref(), &accepted_at);
            let replies = c
                .query(
                    "SELECT message_id, message_type, source, accepted_at FROM receipts
                     WHERE correlation_id = $1 ORDER BY accepted_at",
                    &[&message_id],
                )?
                .iter()
                .map(|r| {
                    Ok(ReplyRef {
                        message_id: r.try_get(0)?,
                        message_type: r.try_get(1)?,
                        source: r.try_get(2)?,
                        received_at: r.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()?;
            Ok(Some(MessageStatus {
                message_id: message_id.to_owned(),
                source,
                message_type: r.try_get(1)?,
                correlation: correlation_id
                    .as_ref()
                    .map(|_| if unknown { "unknown" } else { "matched" }),
                correlation_id,
                status: "accepted".into(),
                accepted_at,
                destinations,
                replies,
            }))
        })
    }
}
