//! Receipts: what was accepted from whom (the deduplication record), read by the duplicate
//! check and the status query.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

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
}

pub(super) fn lookup(
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

/// Everything known about a message id (first source that used it).
pub(super) fn status(
    conn: &Connection,
    message_id: &str,
) -> Result<Option<MessageStatus>, rusqlite::Error> {
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
    // A destination delivered at intake, or routed with no status row yet (queued).
    let at_intake: Vec<String> = at_intake
        .and_then(|d| serde_json::from_str(&d).ok())
        .unwrap_or_default();
    for d in serde_json::from_str::<Vec<String>>(&routed).unwrap_or_default() {
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

/// Keep the receipt of an accepted message (in the writer's transaction). A second receipt
/// for the same message keeps the first.
pub(super) fn insert(tx: &Connection, r: &NewReceipt, at: &str) -> Result<(), rusqlite::Error> {
    let dests = serde_json::to_string(&r.destinations).unwrap_or_else(|_| "[]".into());
    let delivered =
        (!r.delivered.is_empty()).then(|| serde_json::to_string(&r.delivered).unwrap_or_default());
    tx.prepare_cached(
        "INSERT OR IGNORE INTO receipts (source, message_id, message_type, correlation_id, destinations, delivered, accepted_at, correlation_unknown) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        r.source,
        r.message_id,
        r.message_type,
        r.correlation_id,
        dests,
        delivered,
        at,
        r.correlation_unknown.then_some(1i64)
    ])?;
    Ok(())
}
