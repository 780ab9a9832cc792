//! Delivery states: where each copy of an accepted message is, and the parked ones.

use rusqlite::Connection;
use serde::Serialize;

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
    let mut stmt = conn.prepare(&format!(
        "SELECT d.message_id, d.source, d.destination, d.message_type, d.last_error, d.attempts, d.updated_at,
           (SELECT min(a.at) FROM audit a WHERE a.thread IN ({})
              AND a.destination = d.destination AND a.event IN ('retry_scheduled', 'parked'))
         FROM deliveries d
         WHERE d.state = 'dead-lettered' AND (?1 IS NULL OR d.destination = ?1)
         ORDER BY d.updated_at, d.message_id",
        crate::audit::sqlite::threads_of("d.message_id")
    ))?;
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

/// Record a copy's new state (in the writer's transaction). A late "retrying" never
/// overwrites a final state reached by another copy. `message_type`: known when the copy is
/// parked (the parked list names it).
#[allow(clippy::too_many_arguments)]
pub(super) fn record(
    tx: &Connection,
    source: &str,
    message_id: &str,
    destination: &str,
    state: DeliveryState,
    attempts: u32,
    error: Option<&str>,
    at: &str,
    message_type: Option<&str>,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO deliveries (source, message_id, destination, state, attempts, last_error, updated_at, message_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (source, message_id, destination) DO UPDATE SET
           state = CASE WHEN deliveries.state = 'delivered' THEN deliveries.state ELSE excluded.state END,
           attempts = max(deliveries.attempts, excluded.attempts),
           last_error = coalesce(excluded.last_error, deliveries.last_error),
           updated_at = excluded.updated_at,
           message_type = coalesce(excluded.message_type, deliveries.message_type)",
    )?
    .execute(rusqlite::params![source, message_id, destination, state.as_str(), attempts, error, at, message_type])?;
    Ok(())
}
