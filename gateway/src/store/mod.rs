//! Receipts and delivery status in an embedded SQLite database (WAL, synchronous=NORMAL).
//!
//! One store thread owns the writing connection and applies commands in batches, one
//! transaction per batch (group commit): a caller that needs durability (a receipt before the
//! upstream ack) awaits its batch's commit; status updates are fire-and-forget. Reads (the
//! duplicate lookup on the hot path, status queries) use a small pool of read connections and
//! run inline: they are index lookups of microseconds and see committed data only.
//! Nothing here holds payloads: ids, types, destinations, states and error reasons only.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

mod seen;
use seen::Seen;
use serde::Serialize;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store writer has stopped")]
    Stopped,
    #[error("state store: {0}")]
    Io(#[from] std::io::Error),
}

/// What the sender gets back on acceptance (and again, unchanged, on a duplicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Receipt {
    pub message_id: String,
    pub status: String,
    pub destinations: Vec<String>,
}

/// Delivery state of one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Queued,
    Retrying,
    Delivered,
    DeadLettered,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::DeadLettered => "dead-lettered",
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

enum Cmd {
    Receipt(NewReceipt, String, oneshot::Sender<Result<(), String>>),
    Delivery {
        source: String,
        message_id: String,
        destination: String,
        state: DeliveryState,
        attempts: u32,
        error: Option<String>,
        at: String,
    },
}

/// Handle to the store; clone freely.
#[derive(Clone, Debug)]
pub struct Store {
    tx: std_mpsc::SyncSender<Cmd>,
    readers: Arc<Readers>,
    seen: Arc<Seen>,
}

/// Read connections, one per concurrent reader (WAL readers see committed data and never
/// block the writer). Reads are index lookups of microseconds, run inline on the caller's thread.
#[derive(Debug)]
struct Readers {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn read<T>(
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

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn open(path: &Path) -> Result<Connection, StoreError> {
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
    conn.pragma_update(None, "cache_size", -65536)?;
    // A reader's page cache is dropped whenever the writer commits, so without memory mapping
    // every duplicate lookup would pread its pages again.
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS receipts (
  source TEXT NOT NULL, message_id TEXT NOT NULL, message_type TEXT NOT NULL,
  correlation_id TEXT, destinations TEXT NOT NULL, delivered TEXT, accepted_at TEXT NOT NULL,
  correlation_unknown INTEGER,
  PRIMARY KEY (message_id, source)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS receipts_by_correlation ON receipts(correlation_id) WHERE correlation_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
  source TEXT NOT NULL, message_id TEXT NOT NULL, destination TEXT NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, updated_at TEXT NOT NULL,
  PRIMARY KEY (message_id, source, destination)) WITHOUT ROWID;
";

impl Store {
    /// Open (creating) `dir/wingspan-state.db`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("wingspan-state.db");
        let writer = open(&path)?;
        writer.execute_batch(SCHEMA)?;
        // Stores created before replies were flagged lack the column.
        let has_flag: i64 = writer.query_row(
            "SELECT count(*) FROM pragma_table_info('receipts') WHERE name = 'correlation_unknown'",
            [],
            |r| r.get(0),
        )?;
        if has_flag == 0 {
            writer.execute_batch("ALTER TABLE receipts ADD COLUMN correlation_unknown INTEGER")?;
        }
        let seen = Seen::default();
        {
            let mut stmt = writer.prepare("SELECT source, message_id FROM receipts")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let (source, message_id): (String, String) = (row.get(0)?, row.get(1)?);
                seen.insert(&source, &message_id);
            }
        }
        let (tx, rx) = std_mpsc::sync_channel::<Cmd>(65_536);
        let checkpointer = open(&path)?;
        let (alive, stopped) = std_mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("wingspan-store".into())
            .spawn(move || {
                write_loop(writer, rx);
                drop(alive);
            })?;
        std::thread::Builder::new()
            .name("wingspan-ckpt".into())
            .spawn(move || checkpoint_loop(checkpointer, stopped))?;
        Ok(Self {
            tx,
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            seen: Arc::new(seen),
        })
    }

    /// Queue a command for the store thread, waiting for room when its queue is full.
    async fn send(&self, cmd: Cmd) -> Result<(), StoreError> {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(std_mpsc::TrySendError::Disconnected(_)) => return Err(StoreError::Stopped),
            Err(std_mpsc::TrySendError::Full(cmd)) => {
                // The queue is bounded; when full, wait for room on a blocking thread.
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(cmd).map_err(|_| StoreError::Stopped))
                    .await
                    .map_err(|_| StoreError::Stopped)?
                    .map_err(|_| StoreError::Stopped)?;
            }
        }
        Ok(())
    }

    /// Record an accepted message; returns once the record is committed.
    pub async fn put_receipt(&self, receipt: NewReceipt) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.seen.insert(&receipt.source, &receipt.message_id);
        self.send(Cmd::Receipt(receipt, now(), done)).await?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Io(std::io::Error::other(e))),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Record a delivery state change (not awaited: status is informational).
    pub fn delivery(
        &self,
        source: &str,
        message_id: &str,
        destination: &str,
        state: DeliveryState,
        attempts: u32,
        error: Option<String>,
    ) {
        let cmd = Cmd::Delivery {
            source: source.to_owned(),
            message_id: message_id.to_owned(),
            destination: destination.to_owned(),
            state,
            attempts,
            error,
            at: now(),
        };
        if self.tx.try_send(cmd).is_err() {
            tracing::warn!("state store queue full; a delivery status update was skipped");
        }
    }

    /// The receipt of an already accepted message, if any (committed receipts only).
    pub async fn receipt(
        &self,
        source: &str,
        message_id: &str,
    ) -> Result<Option<Receipt>, StoreError> {
        if !self.seen.may_contain(source, message_id) {
            return Ok(None);
        }
        self.readers.read(|conn| lookup(conn, source, message_id))
    }

    /// Whether any source's message with this id was accepted.
    pub async fn known(&self, message_id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = self.readers.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM receipts WHERE message_id = ?1 LIMIT 1")?
                .query_row(params![message_id], |r| r.get(0))
                .optional()
        })?;
        Ok(found.is_some())
    }

    /// Everything known about a message id (first source that used it).
    pub async fn status(&self, message_id: &str) -> Result<Option<MessageStatus>, StoreError> {
        let readers = self.readers.clone();
        let message_id = message_id.to_owned();
        tokio::task::spawn_blocking(move || readers.read(|conn| {
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
            let Some((source, message_type, correlation_id, accepted_at, routed, at_intake, unknown)) = row else {
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
            let at_intake: Vec<String> = at_intake.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default();
            for d in serde_json::from_str::<Vec<String>>(&routed).unwrap_or_default() {
                if !destinations.iter().any(|s| s.destination == d) {
                    let done = at_intake.contains(&d);
                    let state = if done { DeliveryState::Delivered } else { DeliveryState::Queued };
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
                message_id,
                source,
                message_type,
                correlation: correlation_id.as_ref().map(|_| if unknown == Some(1) { "unknown" } else { "matched" }),
                correlation_id,
                status: "accepted".into(),
                accepted_at,
                destinations,
                replies,
            }))
        }))
        .await
        .map_err(|_| StoreError::Stopped)?
    }
}

fn lookup(
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

fn apply(tx: &rusqlite::Transaction<'_>, cmd: &Cmd) -> Result<(), rusqlite::Error> {
    match cmd {
        Cmd::Receipt(r, at, _) => {
            let dests = serde_json::to_string(&r.destinations).unwrap_or_else(|_| "[]".into());
            let delivered = (!r.delivered.is_empty())
                .then(|| serde_json::to_string(&r.delivered).unwrap_or_default());
            tx.prepare_cached(
                "INSERT OR IGNORE INTO receipts (source, message_id, message_type, correlation_id, destinations, delivered, accepted_at, correlation_unknown) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![r.source, r.message_id, r.message_type, r.correlation_id, dests, delivered, at, r.correlation_unknown.then_some(1i64)])?;
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
            // A late "retrying" must not overwrite a final state reached by another copy.
            tx.prepare_cached(
                "INSERT INTO deliveries (source, message_id, destination, state, attempts, last_error, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (source, message_id, destination) DO UPDATE SET
                   state = CASE WHEN deliveries.state = 'delivered' THEN deliveries.state ELSE excluded.state END,
                   attempts = max(deliveries.attempts, excluded.attempts),
                   last_error = coalesce(excluded.last_error, deliveries.last_error),
                   updated_at = excluded.updated_at",
            )?
            .execute(params![source, message_id, destination, state.as_str(), attempts, error, at])?;
        }
    }
    Ok(())
}

/// Copy the WAL into the database every second (passive: never blocks the writer or readers),
/// until the store thread stops.
fn checkpoint_loop(conn: Connection, stopped: std_mpsc::Receiver<()>) {
    while let Err(std_mpsc::RecvTimeoutError::Timeout) =
        stopped.recv_timeout(std::time::Duration::from_secs(1))
    {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "state store checkpoint failed");
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

fn write_loop(mut conn: Connection, rx: std_mpsc::Receiver<Cmd>) {
    const BATCH: usize = 2048;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let result = (|| {
            let tx = conn.transaction()?;
            for cmd in &batch {
                apply(&tx, cmd)?;
            }
            tx.commit()
        })();
        let outcome = result.map_err(|e| e.to_string());
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "state store write failed");
        }
        for cmd in batch {
            if let Cmd::Receipt(_, _, done) = cmd {
                let _ = done.send(outcome.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(id: &str, correlation: Option<&str>, delivered: &[&str]) -> NewReceipt {
        NewReceipt {
            source: "rehab".into(),
            message_id: id.into(),
            message_type: "referral.handover".into(),
            correlation_id: correlation.map(str::to_owned),
            correlation_unknown: false,
            destinations: vec!["aftercare-3204".into(), "hr".into(), "partner".into()],
            delivered: delivered.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn receipts_status_and_replies_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("wingspan-store-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir).expect("open");
        assert_eq!(store.receipt("rehab", "m-1").await.expect("lookup"), None);
        store
            .put_receipt(receipt("m-1", None, &["partner"]))
            .await
            .expect("put");
        store.delivery(
            "rehab",
            "m-1",
            "hr",
            DeliveryState::Retrying,
            1,
            Some("HTTP 503".into()),
        );
        store.delivery("rehab", "m-1", "hr", DeliveryState::Delivered, 2, None);
        // A late retry report must not undo the delivery.
        store.delivery(
            "rehab",
            "m-1",
            "hr",
            DeliveryState::Retrying,
            1,
            Some("late".into()),
        );
        store
            .put_receipt(receipt("r-1", Some("m-1"), &[]))
            .await
            .expect("put reply");
        drop(store);

        let store = Store::open(&dir).expect("reopen");
        let r = store
            .receipt("rehab", "m-1")
            .await
            .expect("lookup")
            .expect("receipt");
        assert_eq!(r.destinations, vec!["aftercare-3204", "hr", "partner"]);
        assert_eq!(
            store.receipt("police", "m-1").await.expect("lookup"),
            None,
            "ids are per source"
        );
        let status = store.status("m-1").await.expect("status").expect("known");
        let state = |d: &str| {
            status
                .destinations
                .iter()
                .find(|s| s.destination == d)
                .map(|s| (s.state.clone(), s.attempts))
        };
        assert_eq!(state("aftercare-3204"), Some(("queued".into(), 0)));
        assert_eq!(state("hr"), Some(("delivered".into(), 2)));
        assert_eq!(state("partner"), Some(("delivered".into(), 1)));
        assert_eq!(status.replies.len(), 1);
        assert_eq!(status.replies[0].message_id, "r-1");
        assert!(store.known("m-1").await.expect("known"));
        assert!(!store.known("m-2").await.expect("known"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
