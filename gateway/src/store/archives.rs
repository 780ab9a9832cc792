//! The archive's index in the live store: one row per sealed, verified segment (table
//! `audit_archives`). It says where each segment's manifest is and which records it holds;
//! `audit verify` checks every segment it names, and the chain's `archived` records name
//! them too, so a segment deleted with its row is still missed.

use rusqlite::{Connection, params};

use crate::audit::archive::Indexed;

/// Record a segment (in the writer's transaction, with its `archived` record).
pub(super) fn record(tx: &Connection, s: &Indexed) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO audit_archives (chain_id, first_seq, last_seq, manifest, file_sha256, final_hash, first_at, last_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        s.chain_id,
        i64::try_from(s.first_seq).unwrap_or(i64::MAX),
        i64::try_from(s.last_seq).unwrap_or(i64::MAX),
        s.manifest.to_string_lossy(),
        s.file_sha256,
        s.final_hash,
        s.first_at,
        s.last_at
    ])?;
    Ok(())
}
