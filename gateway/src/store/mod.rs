//! Receipts and delivery status in an embedded SQLite database (WAL, synchronous=NORMAL).
//!
//! One store thread owns the writing connection and applies commands in batches, one
//! transaction per batch (group commit): a caller that needs durability (a receipt before the
//! upstream ack) awaits its batch's commit; status updates are fire-and-forget. Reads (the
//! duplicate lookup on the hot path, status queries) use a small pool of read connections and
//! run inline: they are index lookups of microseconds and see committed data only.
//! Nothing here holds payloads: ids, types, destinations, states and error reasons only.
//!
//! The audit trail lives here too (tables `audit` and `audit_checkpoints`): the writer thread
//! owns the chain head, appends each batch's records in the same transaction as the receipts
//! and states they account for, and signs the head every N records or T seconds. The
//! gateway never updates or deletes an audit record; the one exception is the start-up
//! recovery that cuts back a tail that fails verification, and it says so in a record.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;
use wingspan_core::audit::Entry;

use crate::audit::pg::PgAudit;
use crate::audit::{AuditKeys, now};
use crate::stats::StoreTimes;

#[cfg(test)]
mod archive_tests;
mod archiver;
mod archives;
mod chain;
mod configs;
mod deliveries;
mod receipts;
mod retention;
mod schema;
mod seen;
#[cfg(test)]
mod tests;
mod wal;
mod writer;

pub use archiver::ArchiveSetup;
pub use configs::{ConfigVersion, config_history, config_text};
pub use deliveries::{DeadLetter, DeliveryState, DeliveryStatus, dead_letters};
pub use receipts::{MessageStatus, NewReceipt, Receipt, ReplyRef};
pub use retention::{Pruned, Retain};
pub use writer::{Failed, Queued};

use chain::{Chain, recover_chain};
use receipts::lookup;
use schema::Readers;
use seen::Seen;
use wal::checkpoint_loop;
use writer::{Cmd, write_loop};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store writer has stopped")]
    Stopped,
    #[error("state store: {0}")]
    Io(#[from] std::io::Error),
}

/// How the store keeps the audit chain.
#[derive(Debug, Clone)]
pub struct AuditSetup {
    pub chain_id: String,
    /// `Some(url)`: the audit trail goes to PostgreSQL instead of this SQLite database.
    pub postgres: Option<String>,
    pub keys: Arc<AuditKeys>,
    pub checkpoint_every: u64,
    pub checkpoint_secs: u64,
    /// Seal segments of the chain into an archive (embedded store only).
    pub archive: Option<ArchiveSetup>,
}

/// Handle to the store; clone freely.
#[derive(Clone, Debug)]
pub struct Store {
    tx: std_mpsc::SyncSender<Cmd>,
    readers: Arc<Readers>,
    seen: Arc<Seen>,
    audit: AuditSetup,
    /// How long each batch of writes took from its first command to its commit.
    times: Arc<Mutex<StoreTimes>>,
    /// The retention windows in force (none until [`Store::retain`] sets them).
    windows: Arc<retention::Windows>,
}

impl Store {
    /// Open (creating) `dir/wingspan-state.db`.
    pub fn open(dir: &Path, audit: AuditSetup) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("wingspan-state.db");
        let writer = schema::open(&path)?;
        schema::create_or_migrate(&writer)?;
        let seen = Seen::default();
        {
            let mut stmt = writer.prepare("SELECT source, message_id FROM receipts")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let (source, message_id): (String, String) = (row.get(0)?, row.get(1)?);
                seen.insert(&source, &message_id);
            }
        }
        let sqlite_chain = match &audit.postgres {
            None => Some(recover_chain(&writer, &audit)?),
            Some(_) => None,
        };
        let (tx, rx) = std_mpsc::sync_channel::<Cmd>(65_536);
        let checkpointer = schema::open(&path)?;
        let (alive, stopped) = std_mpsc::channel::<()>();
        let (archiver_alive, archiver_stopped) = std_mpsc::channel::<()>();
        let (to_record, archived) = std_mpsc::sync_channel::<archiver::ToRecord>(1);
        let setup = audit.clone();
        // The PostgreSQL client is synchronous and must not run on an async runtime's thread:
        // the writer thread connects, and tells us whether it could.
        let (ready, started) = std_mpsc::channel::<Result<(), String>>();
        let times = Arc::new(Mutex::new(StoreTimes::default()));
        // The log's length as the checkpoint thread last saw it, for the writer's `bound_wal`.
        let log_frames = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let checkpoint_times = times.clone();
        let windows = Arc::new(retention::Windows::default());
        let shared = writer::Shared {
            times: times.clone(),
            log_frames: log_frames.clone(),
            windows: windows.clone(),
            archived,
            chain_id: audit.chain_id.clone(),
        };
        std::thread::Builder::new()
            .name("wingspan-store".into())
            .spawn(move || {
                let opened = match (&setup.postgres, sqlite_chain) {
                    (_, Some(chain)) => Ok((chain, None)),
                    (Some(url), None) => PgAudit::connect(url)
                        .and_then(|mut pg| {
                            let (head, signed_seq) = pg.head(&setup.chain_id)?;
                            Ok((
                                Chain {
                                    head,
                                    signed_seq,
                                    signed_at: std::time::Instant::now(),
                                },
                                Some(pg),
                            ))
                        })
                        .map_err(|e| format!("audit store: {e}")),
                    (None, None) => Err("no audit chain".to_owned()),
                };
                match opened {
                    Ok((chain, pg)) => {
                        let _ = ready.send(Ok(()));
                        write_loop(writer, rx, chain, pg, &setup, &shared);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
                drop(alive);
                drop(archiver_alive);
            })?;
        started
            .recv()
            .map_err(|_| StoreError::Stopped)?
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        std::thread::Builder::new()
            .name("wingspan-ckpt".into())
            .spawn(move || {
                checkpoint_loop(checkpointer, stopped, &log_frames, &checkpoint_times)
            })?;
        // Archiving is for the embedded store; a PostgreSQL store is kept by its own means.
        if let (Some(archive), None) = (audit.archive.clone(), &audit.postgres) {
            let conn = schema::open(&path)?;
            let setup = audit.clone();
            std::thread::Builder::new()
                .name("wingspan-archive".into())
                .spawn(move || archiver::run(conn, to_record, setup, archive, archiver_stopped))?;
        }
        Ok(Self {
            tx,
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            seen: Arc::new(seen),
            windows,
            audit,
            times,
        })
    }

    /// Cap the store's size in pages (`None` lifts the cap). A full store refuses writes:
    /// intake answers 503 and deliveries stay unacknowledged until there is room again.
    pub async fn limit_pages(&self, pages: Option<u64>) -> Result<(), StoreError> {
        self.send(Cmd::MaxPages(pages)).await
    }

    /// Keep receipts and delivery states for these windows (a reload may change them):
    /// older ones are pruned by the writer, a few with each batch and more when idle.
    pub fn retain(&self, retain: Retain) {
        self.windows.set(retain);
        self.seen
            .window(std::time::Duration::from_secs(retain.receipts_secs));
    }

    /// The store's current size in pages.
    pub fn pages(&self) -> Result<u64, StoreError> {
        self.readers
            .read(|c| c.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0)))
            .map(|n| u64::try_from(n).unwrap_or(0))
    }

    /// Run a read (on a pooled read connection, off the async threads).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = None;
            readers.read(|c| {
                out = Some(f(c));
                Ok(())
            })?;
            out.unwrap_or_else(|| Err(anyhow::anyhow!("read did not run")))
        })
        .await
        .map_err(|_| anyhow::anyhow!("read task failed"))?
    }

    /// Read the audit trail (the embedded database, or the shared PostgreSQL store), off the
    /// async threads.
    pub async fn audit_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::audit::AuditSource) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let location = match &self.audit.postgres {
            Some(url) => crate::audit::Location::Postgres(url.clone()),
            None => crate::audit::Location::Sqlite(self.readers.path.clone()),
        };
        tokio::task::spawn_blocking(move || f(&mut location.open()?))
            .await
            .map_err(|_| anyhow::anyhow!("read task failed"))?
    }

    /// The writer's timings (commit lag, log restarts), for the metrics endpoint.
    pub fn times(&self) -> StoreTimes {
        self.times.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The public key of this store's signing key (hex).
    pub fn public_key(&self) -> String {
        self.audit.keys.signing.public_hex()
    }

    /// The subject reference of a person id under this store's audit key.
    pub fn subject_ref(&self, person_id: &str) -> String {
        self.audit.keys.subject_ref(person_id)
    }

    /// The audit chain this store appends to.
    pub fn chain_id(&self) -> &str {
        &self.audit.chain_id
    }

    /// Append audit records and wait until they are committed.
    pub async fn audit(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.send(Cmd::Audit(entries, Some(done))).await?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Io(std::io::Error::other(e))),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Queue audit records without waiting; the receiver of their commit's outcome and the
    /// flag a receipt that depends on them carries. Records queued now precede, in the chain,
    /// everything queued after.
    pub async fn audit_enqueue(&self, entries: Vec<Entry>) -> Result<Queued, StoreError> {
        let (done, outcome) = oneshot::channel();
        let failed = Failed::default();
        self.send(Cmd::AuditFirst(entries, done, failed.clone()))
            .await?;
        Ok(Queued { outcome, failed })
    }

    /// Append audit records without waiting (refusals: the answer does not depend on them).
    pub fn audit_later(&self, entries: Vec<Entry>) {
        if self.tx.try_send(Cmd::Audit(entries, None)).is_err() {
            tracing::error!("state store queue full or stopped; audit records were not queued");
        }
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

    /// Record an accepted message; returns once the record is committed. `after`: the
    /// message's early audit records, queued before; if their batch failed, so does this.
    pub async fn put_receipt(
        &self,
        receipt: NewReceipt,
        audit: Vec<Entry>,
        after: Option<&Queued>,
    ) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.seen.insert(&receipt.source, &receipt.message_id);
        let after = after.map(|q| q.failed.clone());
        self.send(Cmd::Receipt(receipt, now(), done, audit, after))
            .await?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Io(std::io::Error::other(e))),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Keep a config that went live, by its hash (awaited: history is part of the record).
    pub async fn remember_config(&self, sha256: &str, text: &str) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.send(Cmd::Config {
            sha256: sha256.to_owned(),
            text: text.to_owned(),
            at: now(),
            done,
        })
        .await?;
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
        tokio::task::spawn_blocking(move || {
            readers.read(|conn| receipts::status(conn, &message_id))
        })
        .await
        .map_err(|_| StoreError::Stopped)?
    }
}
