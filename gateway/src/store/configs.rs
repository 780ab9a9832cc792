//! Configs that went live, by hash (history, diff, rollback).

use rusqlite::Connection;
use serde::Serialize;

/// One config that was live, by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigVersion {
    pub sha256: String,
    pub first_loaded_at: String,
    pub last_loaded_at: String,
    pub loads: i64,
}

/// Every config that was ever live, oldest first.
pub fn config_history(conn: &Connection) -> Result<Vec<ConfigVersion>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT sha256, first_loaded_at, last_loaded_at, loads FROM configs ORDER BY first_loaded_at, sha256",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ConfigVersion {
            sha256: r.get(0)?,
            first_loaded_at: r.get(1)?,
            last_loaded_at: r.get(2)?,
            loads: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// The text of the config whose hash starts with `prefix`: `Ok(None)` when none or several do.
pub fn config_text(
    conn: &Connection,
    prefix: &str,
) -> Result<Option<(String, String)>, rusqlite::Error> {
    let mut stmt =
        conn.prepare("SELECT sha256, text FROM configs WHERE sha256 LIKE ?1 || '%' LIMIT 2")?;
    let found: Vec<(String, String)> = stmt
        .query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

/// Keep a config that went live (in the writer's transaction): its first load, or one more.
pub(super) fn remember(
    tx: &Connection,
    sha256: &str,
    text: &str,
    at: &str,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO configs (sha256, text, first_loaded_at, last_loaded_at, loads) VALUES (?1, ?2, ?3, ?3, 1)
         ON CONFLICT (sha256) DO UPDATE SET last_loaded_at = excluded.last_loaded_at, loads = configs.loads + 1",
    )?
    .execute(rusqlite::params![sha256, text, at])?;
    Ok(())
}
