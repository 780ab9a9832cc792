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

use rusqlite::Connection;
use tokio::sync::oneshot;
use wingspan_core::audit::{Entry, Rotation};

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
mod index;
mod keys;
mod receipts;
mod retention;
mod schema;
mod shared;
#[cfg(test)]
mod tests;
mod wal;
mod writer;

pub use archiver::ArchiveSetup;
pub use configs::{ConfigVersion, config_history, config_text};
pub use deliveries::{DeadLetter, DeliveryState, DeliveryStatus, dead_letters};
pub use receipts::{MessageStatus, NewReceipt, Receipt, ReplyRef};
pub use retention::{Pruned, Retain};
pub use shared::LEASE_SECS;
pub(crate) use shared::{Rows as SharedRows, write as write_shared};
pub use writer::{Failed, Queued};

use chain::{Chain, recover_chain};
use index::ReceiptIndex;
use receipts::lookup;
use schema::Readers;
use shared::SharedState;
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
    #[error("shared state store: {0}")]
    Shared(#[from] postgres::Error),
    /// The store cannot be opened under this config (e.g. another audit suite).
    #[error("{0}")]
    Refused(String),
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
    /// Receipts by message id (committed ones; the writer keeps it).
    index: Arc<ReceiptIndex>,
    audit: AuditSetup,
    /// How long each batch of writes took from its first command to its commit.
    times: Arc<Mutex<StoreTimes>>,
    /// The retention windows in force (none until [`Store::retain`] sets them).
    windows: Arc<retention::Windows>,
    /// Receipts, claims and delivery states shared with the other instances (the audit
    /// trail is in PostgreSQL): the duplicate check and status queries read them there.
    shared: Option<Arc<SharedState>>,
    /// Held through a key rotation: one at a time.
    rotating: Arc<tokio::sync::Mutex<()>>,
}

/// A message claimed before any copy of it is published, with its receipt if it was
/// accepted before. With a shared store the claim is a row there, given back when dropped
/// unless the receipt committed (the writer deletes it with the receipt); with the embedded
/// store the intake's own claim in memory suffices.
#[derive(Debug)]
pub struct Claim {
    pub receipt: Option<Receipt>,
    shared: Option<(Arc<SharedState>, String, String)>,
}

impl Claim {
    /// The receipt committed: the claim went with it.
    pub fn committed(mut self) {
        self.shared = None;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some((state, source, message_id)) = self.shared.take() {
            let release = move || {
                if let Err(e) = state.release(&source, &message_id) {
                    // The lease runs out instead: a retry waits for it (409, Retry-After).
                    tracing::warn!(error = %e, "a claim in the shared store was not released");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(release);
                }
                Err(_) => release(),
            }
        }
    }
}

/// Run a call on the shared store's (synchronous) connections, off the async threads.
async fn on_shared<T: Send + 'static>(
    state: Arc<SharedState>,
    f: impl FnOnce(&SharedState) -> Result<T, postgres::Error> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || f(&state))
        .await
        .map_err(|_| StoreError::Stopped)?
        .map_err(StoreError::from)
}

impl Store {
    /// Open (creating) `dir/wingspan-state.db`.
    pub fn open(dir: &Path, audit: AuditSetup) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("wingspan-state.db");
        let writer = schema::open(&path)?;
        schema::create_or_migrate(&writer)?;
        let index = Arc::new(ReceiptIndex::default());
        {
            let mut stmt = writer.prepare("SELECT id, message_id FROM receipts ORDER BY id")?;
            let mut rows = stmt.query([])?;
            let mut chunk = Vec::with_capacity(4096);
            while let Some(row) = rows.next()? {
                chunk.push((row.get::<_, i64>(0)?, row.get::<_, String>(1)?));
                if chunk.len() == chunk.capacity() {
                    index.add(chunk.iter().map(|(r, m)| (*r, m.as_str())));
                    chunk.clear();
                }
            }
            index.add(chunk.iter().map(|(r, m)| (*r, m.as_str())));
        }
        // The PostgreSQL client is synchronous and must not run on an async runtime's thread:
        // the shared tables are opened on a thread of their own.
        let shared_state = match &audit.postgres {
            Some(url) => {
                let (url, instance) = (url.clone(), audit.chain_id.clone());
                let opened = std::thread::spawn(move || SharedState::open(&url, &instance))
                    .join()
                    .map_err(|_| StoreError::Stopped)?;
                Some(Arc::new(opened.map_err(|e| {
                    StoreError::Io(std::io::Error::other(format!("shared state store: {e}")))
                })?))
            }
            None => None,
        };
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
            index: index.clone(),
        };
        std::thread::Builder::new()
            .name("wingspan-store".into())
            .spawn(move || {
                let opened = match (&setup.postgres, sqlite_chain) {
                    (_, Some(chain)) => Ok((chain, None)),
                    (Some(url), None) => PgAudit::connect(url)
                        .map_err(|e| format!("audit store: {e}"))
                        .and_then(|mut pg| {
                            let suite = setup.keys.suite();
                            pg.claim_suite(&setup.chain_id, suite)?;
                            if let Some(current) = pg
                                .current_key(&setup.chain_id)
                                .map_err(|e| format!("audit store: {e}"))?
                            {
                                setup.keys.reconcile(&setup.chain_id, &current)?;
                            }
                            let (head, signed_seq) = pg
                                .head(&setup.chain_id, suite)
                                .map_err(|e| format!("audit store: {e}"))?;
                            Ok((
                                Chain {
                                    head,
                                    signed_seq,
                                    signed_at: std::time::Instant::now(),
                                },
                                Some(pg),
                            ))
                        }),
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
            .map_err(StoreError::Refused)?;
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
            index,
            windows,
            audit,
            times,
            shared: shared_state,
            rotating: Arc::default(),
        })
    }

    /// Whether receipts and delivery states are shared with other instances.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Claim a message before publishing any copy of it, and read its receipt: `Ok(None)`
    /// when another instance holds a fresh claim on it (it is accepting it now). With a
    /// shared store both are one round trip to PostgreSQL.
    pub async fn claim(&self, source: &str, message_id: &str) -> Result<Option<Claim>, StoreError> {
        let Some(state) = self.shared.clone() else {
            return Ok(Some(Claim {
                receipt: self.receipt(source, message_id).await?,
                shared: None,
            }));
        };
        let (s, m) = (source.to_owned(), message_id.to_owned());
        let taken = on_shared(state.clone(), move |st| st.claim(&s, &m)).await?;
        Ok(taken.map(|receipt| Claim {
            receipt,
            shared: Some((state, source.to_owned(), message_id.to_owned())),
        }))
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
        self.audit.keys.signing().public_hex()
    }

    /// Rotate the audit signing key: a fresh key is written beside the key file, the writer
    /// signs the head with the old key, appends the `key_rotated` record (the hand-over signed
    /// by both keys), signs on with the new key from that record, and only then does the new
    /// key replace the old one in its file. One rotation at a time.
    pub async fn rotate_key(&self, actor: &str) -> Result<Rotation, StoreError> {
        let _one = self.rotating.lock().await;
        let keys = self.audit.keys.clone();
        let new = tokio::task::spawn_blocking(move || keys.prepare_rotation())
            .await
            .map_err(|_| StoreError::Stopped)?
            .map_err(|e| StoreError::Refused(e.to_string()))?;
        let (done, wait) = oneshot::channel();
        self.send(Cmd::Rotate {
            old: self.audit.keys.signing(),
            new,
            actor: actor.to_owned(),
            made: None,
            done,
        })
        .await?;
        let rotation = match wait.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(StoreError::Io(std::io::Error::other(e))),
            Err(_) => return Err(StoreError::Stopped),
        };
        let keys = self.audit.keys.clone();
        tokio::task::spawn_blocking(move || keys.finish_rotation())
            .await
            .map_err(|_| StoreError::Stopped)?
            .map_err(|e| {
                // The chain and the running writer are on the new key; a restart finishes
                // the rename from `<key file>.next` (see `AuditKeys::reconcile`).
                StoreError::Io(std::io::Error::other(format!(
                    "the rotation is recorded but the key file was not replaced: {e}"
                )))
            })?;
        Ok(rotation)
    }

    /// The time-stamping authority's certificate (DER), if checkpoints are time-stamped.
    pub fn tsa_cert(&self) -> Option<Vec<u8>> {
        self.audit.keys.tsa_cert().map(<[u8]>::to_vec)
    }

    /// The payload key that seals queued copies at rest, if one is configured.
    pub fn sealer(&self) -> Option<&crate::seal::Sealer> {
        self.audit.keys.sealer().map(|s| &**s)
    }

    /// The person's references under the earlier subject keys (searches ask for these too).
    pub fn earlier_subject_refs(&self, person_id: &str) -> Vec<String> {
        self.audit.keys.earlier_subject_refs(person_id)
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
        if let Some(state) = self.shared.clone() {
            let (s, m) = (source.to_owned(), message_id.to_owned());
            return on_shared(state, move |st| st.receipt(&s, &m)).await;
        }
        // Nearly every message is new: answered from memory, without a read.
        if self.index.candidates(message_id).is_empty() {
            return Ok(None);
        }
        self.readers
            .read(|conn| lookup(conn, &self.index, source, message_id))
    }

    /// The intake attempt named by the committed receipt of a message: `None` when there is
    /// no receipt (not committed yet, never, or pruned), `Some(None)` when the receipt names
    /// no attempt. A destination that delivers once checks its copies against it.
    pub async fn receipt_claim(
        &self,
        source: &str,
        message_id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        if let Some(state) = self.shared.clone() {
            let (s, m) = (source.to_owned(), message_id.to_owned());
            return on_shared(state, move |st| st.claim_of(&s, &m)).await;
        }
        if self.index.candidates(message_id).is_empty() {
            return Ok(None);
        }
        self.readers
            .read(|conn| receipts::claim_of(conn, &self.index, source, message_id))
    }

    /// Whether any source's message with this id was accepted.
    pub async fn known(&self, message_id: &str) -> Result<bool, StoreError> {
        if let Some(state) = self.shared.clone() {
            let m = message_id.to_owned();
            return on_shared(state, move |st| st.known(&m)).await;
        }
        if self.index.candidates(message_id).is_empty() {
            return Ok(false);
        }
        let found = self
            .readers
            .read(|conn| receipts::row_of(conn, &self.index, None, message_id))?;
        Ok(found.is_some())
    }

    /// Everything known about a message id (first source that used it).
    pub async fn status(&self, message_id: &str) -> Result<Option<MessageStatus>, StoreError> {
        if let Some(state) = self.shared.clone() {
            let m = message_id.to_owned();
            return on_shared(state, move |st| st.status(&m)).await;
        }
        let (readers, index) = (self.readers.clone(), self.index.clone());
        let message_id = message_id.to_owned();
        tokio::task::spawn_blocking(move || {
            readers.read(|conn| receipts::status(conn, &index, &message_id))
        })
        .await
        .map_err(|_| StoreError::Stopped)?
    }
}
