//! Receipts: what was accepted from whom (the deduplication record), read by the duplicate
//! check and the status query.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::index::ReceiptIndex;
use super::{DeliveryState, DeliveryStatus};

/// What the sender gets back on acceptance (and again, unchanged, on a duplicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Receipt {
    pub message_id: String,
    pub status: String,
    pub destinations: Vec<String>,
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
    /// The intake attempt whose copies are the message's (set when a destination delivers
    /// once): a copy naming another attempt was published by an attempt that never
    /// committed, and is not delivered.
    pub claim: Option<String>,
}

/// The row of the receipt of `message_id` from `source` (any source: `None`), oldest first.
pub(super) fn row_of(
    conn: &Connection,
    index: &ReceiptIndex,
    source: Option<&str>,
    message_id: &str,
) -> Result<Option<i64>, rusqlite::Error> {
    for row in index.candidates(message_id) {
        let found: Option<(String, String)> = conn
            .prepare_cached("SELECT source, message_id FROM receipts WHERE id = ?1")?
            .query_row(params![row], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((s, m)) = found
            && m == message_id
            && source.is_none_or(|source| source == s)
        {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

/// One column of the receipt of `message_id` from `source` (`sql` selects it by `id = ?1`).
fn field<T: rusqlite::types::FromSql>(
    conn: &Connection,
    index: &ReceiptIndex,
    source: &str,
    message_id: &str,
    sql: &str,
) -> Result<Option<T>, rusqlite::Error> {
    let Some(row) = row_of(conn, index, Some(source), message_id)? else {
        return Ok(None);
    };
    conn.prepare_cached(sql)?
        .query_row(params![row], |r| r.get(0))
        .optional()
}

pub(super) fn lookup(
    conn: &Connection,
    index: &ReceiptIndex,
    source: &str,
    message_id: &str,
) -> Result<Option<Receipt>, rusqlite::Error> {
    let sql = "SELECT destinations FROM receipts WHERE id = ?1";
    let dests: Option<String> = field(conn, index, source, message_id, sql)?;
    Ok(dests.map(|d| Receipt {
        message_id: message_id.to_owned(),
        status: "accepted".into(),
        destinations: serde_json::from_str(&d).unwrap_or_default(),
    }))
}

/// The attempt named by the receipt of `message_id` from `source`: `None` without a
/// receipt, `Some(None)` for a receipt that names none.
pub(super) fn claim_of(
    conn: &Connection,
    index: &ReceiptIndex,
    source: &str,
    message_id: &str,
) -> Result<Option<Option<String>>, rusqlite::Error> {
    let Some(row) = row_of(conn, index, Some(source), message_id)? else {
        return Ok(None);
    };
    conn.prepare_cached("SELECT claim FROM receipts WHERE id = ?1")?
        .query_row(params![row], |r| r.get(0))
        .optional()
}

/// The message type of an accepted message (for a parked copy's state).
pub(super) fn message_type(
    conn: &Connection,
    index: &ReceiptIndex,
    source: &str,
    message_id: &str,
) -> Result<Option<String>, rusqlite::Error> {
    let sql = "SELECT message_type FROM receipts WHERE id = ?1";
    field(conn, index, source, message_id, sql)
}

/// Everything known about a message id (first source that used it).
pub(super) fn status(
    conn: &Connection,
    index: &ReceiptIndex,
    message_id: &str,
) -> Result<Option<MessageStatus>, rusqlite::Error> {
    let Some(id) = row_of(conn, index, None, message_id)? else {
        return Ok(None);
    };
    let row = conn
                .prepare_cached("SELECT source, message_type, correlation_id, accepted_at, destinations, delivered, correlation_unknown FROM receipts WHERE id = ?1")?
                .query_row(params![id], |r| {
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
    let Some((source, message_type, correlation_id, accepted_at, routed, at_intake, unknown)) = row
    else {
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
    add_unrecorded(
        &mut destinations,
        &routed,
        at_intake.as_deref(),
        &accepted_at,
    );
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
        message_id: message_id.to_owned(),
        source,
        message_type,
        correlation: correlation_id.as_ref().map(|_| {
            if unknown == Some(1) {
                "unknown"
            } else {
                "matched"
            }
        }),
        correlation_id,
        status: "accepted".into(),
        accepted_at,
        destinations,
        replies,
    }))
}

/// Add the destinations a message was routed to that have no status row: delivered at intake
/// (`at_intake`, a JSON list) or queued. Sorted by destination.
pub(super) fn add_unrecorded(
    destinations: &mut Vec<DeliveryStatus>,
    routed: &str,
    at_intake: Option<&str>,
    accepted_at: &str,
) {
    let at_intake: Vec<String> = at_intake
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    for d in serde_json::from_str::<Vec<String>>(routed).unwrap_or_default() {
        if !destinations.iter().any(|s| s.destination == d) {
            let done = at_intake.contains(&d);
            let state = if done {
                DeliveryState::Delivered
            } else {
                DeliveryState::Queued
            };
            destinations.push(DeliveryStatus {
                destination: d,
                state: state.as_str().into(),
                attempts: i64::from(done),
                last_error: None,
                updated_at: accepted_at.to_owned(),
            });
        }
    }
    destinations.sort_by(|a, b| a.destination.cmp(&b.destination));
}

/// Keep the receipt of an accepted message (in the writer's transaction); its row id. The
/// writer keeps the first receipt of a message (see `writer::apply`).
pub(super) fn insert(tx: &Connection, r: &NewReceipt, at: &str) -> Result<i64, rusqlite::Error> {
    let dests = serde_json::to_string(&r.destinations).unwrap_or_else(|_| "[]".into());
    let delivered =
        (!r.delivered.is_empty()).then(|| serde_json::to_string(&r.delivered).unwrap_or_default());
    tx.prepare_cached(
        "INSERT INTO receipts (source, message_id, message_type, correlation_id, destinations, delivered, accepted_at, correlation_unknown, claim) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        r.source,
        r.message_id,
        r.message_type,
        r.correlation_id,
        dests,
        delivered,
        at,
        r.correlation_unknown.then_some(1i64),
        r.claim
    ])?;
    Ok(tx.last_insert_rowid())
}
