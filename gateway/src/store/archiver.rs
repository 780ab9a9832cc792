//! The archiver thread: seals segments of the audit chain into the archive directory and has
//! the writer record them (a row in `audit_archives` and an `archived` record in the chain,
//! in one transaction). Only then may the writer prune the segment's records from the live
//! store, once they are older than `[retention] audit_live_secs` (see `retention`).
//!
//! A segment ends at the newest signed checkpoint (never in the unsigned tail, which a
//! restart may cut back), and is sealed once `archive_records` records wait or the oldest of
//! them is `archive_secs` old. It reads through a read connection of its own and writes only
//! files: intake never waits for it.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::AuditSetup;
use super::writer::Done;
use crate::audit::archive::{self, Indexed};
use crate::audit::sqlite::read_checkpoints;

/// Where and when to archive.
#[derive(Debug, Clone)]
pub struct ArchiveSetup {
    pub dir: PathBuf,
    /// Seal once this many records wait…
    pub records: u64,
    /// …or once the oldest of them is this many seconds old.
    pub secs: u64,
}

/// How often the archiver looks (more often while it has a backlog).
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// A sealed segment on its way to the writer, and where the outcome of its recording goes.
pub(super) type ToRecord = (Indexed, Done);

/// Run until the writer thread stops. The archiver's channel to the writer is its own: the
/// writer stops when the store's last handle is dropped, whatever the archiver holds.
pub(super) fn run(
    conn: Connection,
    tx: std_mpsc::SyncSender<ToRecord>,
    setup: AuditSetup,
    archive: ArchiveSetup,
    stopped: std_mpsc::Receiver<()>,
) {
    archive::clean_partial(&archive.dir);
    let mut wait = Duration::ZERO;
    while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        wait = match seal_next(&conn, &tx, &setup, &archive) {
            Ok(true) => Duration::ZERO,
            Ok(false) => LOOK_EVERY.min(Duration::from_secs(archive.secs)),
            Err(e) => {
                tracing::error!(error = %e, "audit archive: a segment could not be sealed; trying again later");
                LOOK_EVERY
            }
        };
    }
}

/// Seal the next segment if one is due; whether one was.
fn seal_next(
    conn: &Connection,
    tx: &std_mpsc::SyncSender<ToRecord>,
    setup: &AuditSetup,
    archive: &ArchiveSetup,
) -> anyhow::Result<bool> {
    let chain = setup.chain_id.as_str();
    let archived: u64 = conn
        .query_row(
            "SELECT coalesce(max(last_seq), 0) FROM audit_archives WHERE chain_id = ?1",
            params![chain],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| u64::try_from(n).unwrap_or(0))?;
    let signed: u64 = conn
        .query_row(
            "SELECT coalesce(max(seq), 0) FROM audit_checkpoints WHERE chain_id = ?1",
            params![chain],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| u64::try_from(n).unwrap_or(0))?;
    if signed <= archived {
        return Ok(false);
    }
    let first = archived + 1;
    let oldest: Option<String> = conn
        .query_row(
            "SELECT at FROM audit WHERE chain_id = ?1 AND seq = ?2",
            params![chain, i64::try_from(first).unwrap_or(i64::MAX)],
            |r| r.get(0),
        )
        .optional()?;
    let Some(oldest) = oldest else {
        anyhow::bail!("record {first}, the next to archive, is not in the live store");
    };
    let waiting = signed - archived;
    let old_enough =
        time::OffsetDateTime::parse(&oldest, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|t| {
                (time::OffsetDateTime::now_utc() - t).whole_seconds()
                    >= i64::try_from(archive.secs).unwrap_or(i64::MAX)
            });
    if waiting < archive.records && !old_enough {
        return Ok(false);
    }
    let last = signed.min(first + archive.records - 1);
    let checkpoints = read_checkpoints(conn)?;
    let segment = archive::seal(
        conn,
        &archive.dir,
        chain,
        first,
        last,
        &checkpoints,
        &setup.keys.signing(),
        &crate::audit::now(),
    )?;
    let sealed = Indexed {
        chain_id: chain.to_owned(),
        first_seq: first,
        last_seq: last,
        manifest: archive::manifest_path(&archive.dir, chain, first, last),
        file_sha256: segment.manifest.file_sha256.clone(),
        final_hash: segment.manifest.final_hash.clone().unwrap_or_default(),
        first_at: segment.first_at.clone(),
        last_at: segment.last_at.clone(),
    };
    let (done, outcome) = oneshot::channel();
    tx.send((sealed, done))
        .map_err(|_| anyhow::anyhow!("the store has stopped"))?;
    outcome
        .blocking_recv()
        .map_err(|_| anyhow::anyhow!("the store has stopped"))?
        .map_err(|e| anyhow::anyhow!("the segment was written but not recorded: {e}"))?;
    tracing::info!(first, last, "audit archive: sealed a segment");
    Ok(true)
}
