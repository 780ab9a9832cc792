//! The audit archive: sealed segments of the chain, kept for years outside the live store
//! (as X-Road keeps its message log). A segment is a records file (JSON lines, the export
//! format, compressed with zstd: `zstd -dc` reads it) and a manifest: the export's manifest
//! (the records file's hash as stored, range, the hash the first record links to, the last
//! record's hash, the checkpoints inside) plus the times it covers and a signature over its
//! head (Ed25519 or SM2, the chain's suite's). `wingspan audit verify --export <dir>` reads a
//! segment's directory as it reads an export. Segments written before compression
//! (`format: "jsonl"`) read alike.
//!
//! Files are written under temporary names, synced, renamed, and the directory synced; a
//! segment is then read back and verified before the store records it, and only a recorded
//! segment's records may leave the live store. A crash at any point leaves either nothing
//! or a segment that is written again (same range, same records). Writing and reading back
//! are paced (`pace`): a segment of a million records is ~90 MB compressed (~500 MB of JSON
//! lines), and the store's commits share the disk.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use wingspan_core::audit::{
    Checkpoint, Record, Rotation, SegmentHead, SigningKey, Suite, Trust, Verifier,
    segment_signed_by,
};

use super::Manifest;
use super::export::Hashing;
use super::pace::{self, PacedReader, PacedWriter};

/// zstd's level for segments: its default, ~6× smaller than the JSON lines at a few percent
/// of one core at a soak's rate (docs/PERFORMANCE.md).
const COMPRESSION_LEVEL: i32 = 3;

/// The manifest of a sealed segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segment {
    #[serde(flatten)]
    pub manifest: Manifest,
    pub first_at: String,
    pub last_at: String,
    pub sealed_at: String,
    /// Hex of the public key that signed.
    pub key_id: String,
    pub signature: String,
}

impl Segment {
    pub fn first_seq(&self) -> u64 {
        self.manifest.first_seq.unwrap_or(0)
    }

    pub fn last_seq(&self) -> u64 {
        self.manifest.last_seq.unwrap_or(0)
    }

    pub(crate) fn head(&self) -> SegmentHead<'_> {
        SegmentHead {
            chain_id: &self.manifest.chain_id,
            first_seq: self.first_seq(),
            last_seq: self.last_seq(),
            count: self.manifest.count,
            start_prev_hash: &self.manifest.start_prev_hash,
            final_hash: self.manifest.final_hash.as_deref().unwrap_or(""),
            file_sha256: &self.manifest.file_sha256,
            sealed_at: &self.sealed_at,
        }
    }
}

/// Where a segment's files are: `<dir>/<chain>/segment-<first>-<last>.{jsonl.zst,manifest.json}`.
pub fn segment_dir(archive: &Path, chain_id: &str) -> PathBuf {
    archive.join(chain_id)
}

fn stem(first: u64, last: u64) -> String {
    format!("segment-{first:012}-{last:012}")
}

/// The manifest file of the segment of `chain_id` holding `first..=last`.
pub fn manifest_path(archive: &Path, chain_id: &str, first: u64, last: u64) -> PathBuf {
    segment_dir(archive, chain_id).join(format!("{}.manifest.json", stem(first, last)))
}

/// Write and sync `bytes` to `path` through a temporary name.
fn write_durably(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    write(&mut f)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Seal records `first..=last` of `chain_id` from the live store `conn` into the archive:
/// write, sync, sign, then read back and verify. Returns the segment once it verifies.
#[allow(clippy::too_many_arguments)]
pub fn seal(
    conn: &Connection,
    archive: &Path,
    chain_id: &str,
    first: u64,
    last: u64,
    checkpoints: &[Checkpoint],
    key: &SigningKey,
    sealed_at: &str,
) -> anyhow::Result<Segment> {
    let dir = segment_dir(archive, chain_id);
    std::fs::create_dir_all(&dir)?;
    let file = format!("{}.jsonl{}", stem(first, last), super::export::ZSTD);
    let (mut count, mut start_prev, mut final_hash) = (0u64, None::<String>, None::<String>);
    let (mut first_at, mut last_at) = (String::new(), String::new());
    let mut expected = first;
    let mut file_sha256 = String::new();
    write_durably(&dir.join(&file), |f| {
        // Compressed, hashed as stored, paced and synced as it goes: the store's commits
        // share the disk.
        let stored = Hashing::new(PacedWriter::new(f.try_clone()?, pace::WRITE_BYTES_PER_SEC));
        let mut out = std::io::BufWriter::with_capacity(
            1 << 18,
            zstd::stream::write::Encoder::new(stored, COMPRESSION_LEVEL)?,
        );
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {} FROM audit WHERE chain_id = ?1 AND seq >= ?2 AND seq <= ?3 ORDER BY seq",
                super::sqlite::RECORD_COLUMNS
            ))
            .map_err(std::io::Error::other)?;
        let mut rows = stmt
            .query(params![
                chain_id,
                i64::try_from(first).unwrap_or(i64::MAX),
                i64::try_from(last).unwrap_or(i64::MAX)
            ])
            .map_err(std::io::Error::other)?;
        while let Some(row) = rows.next().map_err(std::io::Error::other)? {
            let r: Record = super::sqlite::record_from_row(row).map_err(std::io::Error::other)?;
            if r.seq != expected {
                return Err(std::io::Error::other(format!(
                    "record {expected} is missing from the live store"
                )));
            }
            expected += 1;
            serde_json::to_writer(&mut out, &r)?;
            out.write_all(b"\n")?;
            count += 1;
            if start_prev.is_none() {
                start_prev = Some(r.prev_hash.clone());
                first_at = r.entry.at.clone();
            }
            last_at.clone_from(&r.entry.at);
            final_hash = Some(r.hash);
        }
        let mut stored = out.into_inner().map_err(|e| e.into_error())?.finish()?;
        stored.flush()?;
        file_sha256 = stored.hex();
        Ok(())
    })?;
    anyhow::ensure!(
        expected == last + 1,
        "records {expected}..={last} are missing from the live store"
    );
    let manifest = Manifest {
        format: format!("jsonl{}", super::export::ZSTD),
        file,
        file_sha256,
        chain_id: chain_id.to_owned(),
        suite: key.suite(),
        first_seq: Some(first),
        last_seq: Some(last),
        count,
        start_prev_hash: start_prev.unwrap_or_default(),
        final_hash,
        checkpoints: checkpoints
            .iter()
            .filter(|c| c.chain_id == chain_id && (first..=last).contains(&c.seq))
            .cloned()
            .collect(),
        rotations: Vec::new(),
    };
    let mut segment = Segment {
        manifest,
        first_at,
        last_at,
        sealed_at: sealed_at.to_owned(),
        key_id: key.public_hex(),
        signature: String::new(),
    };
    segment.signature = key.sign_segment(&segment.head());
    let path = manifest_path(archive, chain_id, first, last);
    let bytes = serde_json::to_vec_pretty(&segment)?;
    write_durably(&path, |f| f.write_all(&bytes))?;
    sync_dir(&dir)?;
    // Checked under the sealing key; rotations after the segment carry that trust back to
    // the keys that signed its checkpoints.
    let problems = check_paced(
        &path,
        &key.public_hex(),
        &later_rotations(conn, chain_id, last)?,
        Some(pace::READ_BYTES_PER_SEC),
    )?
    .1;
    anyhow::ensure!(
        problems.is_empty(),
        "the segment did not verify after writing: {}",
        problems.join("; ")
    );
    Ok(segment)
}

/// The chain's key rotations after `seq`, from the live store (the part not yet archived).
fn later_rotations(conn: &Connection, chain_id: &str, seq: u64) -> anyhow::Result<Vec<Rotation>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {} FROM audit WHERE chain_id = ?1 AND seq > ?2 AND event = 'key_rotated' ORDER BY seq",
        super::sqlite::RECORD_COLUMNS
    ))?;
    let rows = stmt.query_map(
        params![chain_id, i64::try_from(seq).unwrap_or(i64::MAX)],
        super::sqlite::record_from_row,
    )?;
    let mut out = Vec::new();
    for r in rows {
        out.extend(Rotation::from_record(&r?));
    }
    Ok(out)
}

/// Read a segment's manifest.
pub fn read_manifest(path: &Path) -> anyhow::Result<Segment> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a segment manifest: {e}", path.display()))
}

/// Each record of a segment, in order; the records file's SHA-256 (hex).
pub fn each_record(
    manifest_path: &Path,
    segment: &Segment,
    f: &mut dyn FnMut(Option<Record>),
) -> anyhow::Result<String> {
    each_record_paced(manifest_path, segment, None, f)
}

/// [`each_record`], read at most `pace` bytes a second.
fn each_record_paced(
    manifest_path: &Path,
    segment: &Segment,
    pace: Option<u64>,
    f: &mut dyn FnMut(Option<Record>),
) -> anyhow::Result<String> {
    let dir = manifest_path.parent().unwrap_or(Path::new("."));
    let file = std::fs::File::open(dir.join(&segment.manifest.file))?;
    let mut raw: Box<dyn std::io::Read> = match pace {
        Some(rate) => Box::new(PacedReader::new(file, rate)),
        None => Box::new(file),
    };
    super::export::each_exported_from(
        &mut raw,
        &segment.manifest.format,
        super::export::lines_for(segment.manifest.count),
        &mut |_, r| f(r),
    )
}

/// Check one segment on its own: the signature over its head, its file's hash, its records'
/// chain from its start, its count, range and final hash, and its checkpoints' signatures.
/// Returns the manifest (if readable) and what is wrong.
/// `rotations` are the chain's key rotations (from the whole chain: a segment sealed before a
/// rotation is checked against the key then in force, trusted through the rotation).
pub fn check(
    path: &Path,
    key: &str,
    rotations: &[Rotation],
) -> anyhow::Result<(Option<Segment>, Vec<String>)> {
    check_paced(path, key, rotations, None)
}

/// [`check`], its records file read at most `pace` bytes a second.
fn check_paced(
    path: &Path,
    key: &str,
    rotations: &[Rotation],
    pace: Option<u64>,
) -> anyhow::Result<(Option<Segment>, Vec<String>)> {
    let segment = match read_manifest(path) {
        Ok(s) => s,
        Err(e) => return Ok((None, vec![e.to_string()])),
    };
    let mut problems = Vec::new();
    let name = segment.manifest.file.clone();
    let trust = Trust::new(&segment.manifest.chain_id, key, rotations);
    if !trust
        .keys_from(segment.last_seq())
        .any(|k| segment_signed_by(&segment.head(), &segment.signature, k))
    {
        problems.push(format!("{name}: the manifest's signature does not verify"));
    }
    let mut v = Verifier::new(
        segment.manifest.suite,
        &segment.manifest.chain_id,
        &segment.manifest.checkpoints,
        Some(key),
        &segment.manifest.start_prev_hash,
    )
    .knowing(rotations);
    let (mut count, mut seqs, mut last_hash, mut unreadable) = (0u64, None::<(u64, u64)>, None, 0);
    let file_sha256 = match each_record_paced(path, &segment, pace, &mut |r| match r {
        Some(r) => {
            v.push(&r);
            count += 1;
            seqs = Some(seqs.map_or((r.seq, r.seq), |(lo, _)| (lo, r.seq)));
            last_hash = Some(r.hash);
        }
        None => unreadable += 1,
    }) {
        Ok(h) => h,
        Err(e) => {
            problems.push(format!("{name}: {e}"));
            return Ok((Some(segment), problems));
        }
    };
    if file_sha256 != segment.manifest.file_sha256 {
        problems.push(format!("{name} does not match its manifest's hash"));
    }
    if unreadable > 0 {
        problems.push(format!("{name}: {unreadable} line(s) are not records"));
    }
    if count != segment.manifest.count || seqs != Some((segment.first_seq(), segment.last_seq())) {
        problems.push(format!(
            "{name}: holds {count} record(s) {seqs:?}, its manifest says {} ({}..={})",
            segment.manifest.count,
            segment.first_seq(),
            segment.last_seq()
        ));
    }
    if last_hash != segment.manifest.final_hash {
        problems.push(format!(
            "{name}: the last record's hash is not the manifest's"
        ));
    }
    let report = v.finish(|_| None);
    if !report.ok() {
        problems.push(format!(
            "{name}: its records do not verify ({:?})",
            report.finding
        ));
    }
    Ok((Some(segment), problems))
}

/// Remove what a crash left half-written (temporary files).
pub fn clean_partial(archive: &Path) {
    let Ok(chains) = std::fs::read_dir(archive) else {
        return;
    };
    for chain in chains.flatten() {
        let Ok(files) = std::fs::read_dir(chain.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.path().extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
}

/// A segment as the live store's index (`audit_archives`) names it; also what the archiver
/// hands the store's writer to record once it has sealed and verified one.
#[derive(Debug, Clone)]
pub struct Indexed {
    pub chain_id: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub manifest: PathBuf,
    pub file_sha256: String,
    pub final_hash: String,
    pub first_at: String,
    pub last_at: String,
}

/// The segments the live store lists (of one chain, or all), in chain order. A store made
/// before archiving has none.
pub fn indexed(conn: &Connection, chain_id: Option<&str>) -> anyhow::Result<Vec<Indexed>> {
    let has_index: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_archives'",
        [],
        |r| r.get(0),
    )?;
    if has_index == 0 {
        return Ok(Vec::new());
    }
    let rows = conn
        .prepare(
            "SELECT chain_id, first_seq, last_seq, manifest, file_sha256, final_hash, first_at, last_at
             FROM audit_archives WHERE ?1 IS NULL OR chain_id = ?1 ORDER BY chain_id, first_seq",
        )?
        .query_map(params![chain_id], |r| {
            Ok(Indexed {
                chain_id: r.get(0)?,
                first_seq: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                last_seq: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                manifest: PathBuf::from(r.get::<_, String>(3)?),
                file_sha256: r.get(4)?,
                final_hash: r.get(5)?,
                first_at: r.get(6)?,
                last_at: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Check every segment the live store lists for a chain: each on its own ([`check`]), as the
/// index says it (range, file hash, final hash), and one after the other (no range missing,
/// each linking to the one before). Returns the segments and what is wrong.
pub fn check_indexed(
    conn: &Connection,
    chain_id: &str,
    suite: Suite,
    key: &str,
    rotations: &[Rotation],
) -> anyhow::Result<(Vec<Indexed>, Vec<String>)> {
    let segments = indexed(conn, Some(chain_id))?;
    let mut problems = Vec::new();
    let (mut next, mut prev_final) = (1u64, wingspan_core::audit::GENESIS.to_owned());
    for s in &segments {
        if s.first_seq != next {
            problems.push(format!(
                "records {next}..{} are in no archived segment",
                s.first_seq
            ));
        }
        let (manifest, found) = check(&s.manifest, key, rotations)?;
        problems.extend(found);
        if let Some(m) = manifest {
            if m.manifest.suite != suite {
                problems.push(format!(
                    "{}: names suite {}, the chain is kept with {suite}",
                    s.manifest.display(),
                    m.manifest.suite
                ));
            }
            if m.manifest.file_sha256 != s.file_sha256
                || m.first_seq() != s.first_seq
                || m.last_seq() != s.last_seq
                || m.manifest.final_hash.as_deref() != Some(s.final_hash.as_str())
            {
                problems.push(format!(
                    "{}: is not the segment the store recorded",
                    s.manifest.display()
                ));
            }
            if m.manifest.start_prev_hash != prev_final {
                problems.push(format!(
                    "{}: does not link to the segment before it",
                    s.manifest.display()
                ));
            }
        }
        next = s.last_seq + 1;
        prev_final.clone_from(&s.final_hash);
    }
    Ok((segments, problems))
}

/// Each archived record of a chain that is no longer in the live store, in chain order.
/// `wanted(segment)` may skip a segment unread. An unreadable segment is an error, or, with
/// `problems`, noted there and skipped.
pub fn each_archived(
    conn: &Connection,
    chain_id: &str,
    wanted: &dyn Fn(&Indexed) -> bool,
    f: &mut dyn FnMut(Record),
    mut problems: Option<&mut Vec<String>>,
) -> anyhow::Result<()> {
    let live_from = super::sqlite::first_seq(conn, chain_id)?;
    for s in indexed(conn, Some(chain_id))? {
        if live_from.is_some_and(|l| s.first_seq >= l) {
            break;
        }
        if !wanted(&s) {
            continue;
        }
        let read = read_manifest(&s.manifest).and_then(|seg| {
            each_record(&s.manifest, &seg, &mut |r| {
                if let Some(r) = r
                    && live_from.is_none_or(|l| r.seq < l)
                {
                    f(r);
                }
            })
        });
        match (read, problems.as_deref_mut()) {
            (Ok(_), _) => {}
            (Err(e), Some(p)) => p.push(e.to_string()),
            (Err(e), None) => return Err(e),
        }
    }
    Ok(())
}

/// Archived records no longer in the live store that match a filter, in chain order, at most
/// `limit`. Segments outside the filter's time window or before its `after_seq` are not read.
pub fn search(conn: &Connection, f: &super::Filter, limit: usize) -> anyhow::Result<Vec<Record>> {
    let mut found = Vec::new();
    // Once the page is full no further segment is read.
    let taken = std::cell::Cell::new(0usize);
    let wanted = |s: &Indexed| {
        taken.get() < limit
            && s.last_seq > f.after_seq
            && f.until
                .as_ref()
                .is_none_or(|u| s.first_at.as_str() < u.as_str())
            && f.since
                .as_ref()
                .is_none_or(|v| s.last_at.as_str() >= v.as_str())
    };
    for chain in chains_archived(conn)? {
        each_archived(
            conn,
            &chain,
            &wanted,
            &mut |r| {
                if taken.get() < limit && f.matches(&r) {
                    found.push(r);
                    taken.set(taken.get() + 1);
                }
            },
            None,
        )?;
    }
    Ok(found)
}

/// The archived records (no longer in the live store) of a message and of its replies: every
/// record naming it as its message or as the message it answers. Reads every segment.
pub fn trail(conn: &Connection, message_id: &str) -> anyhow::Result<Vec<Record>> {
    let mut found = Vec::new();
    for chain in chains_archived(conn)? {
        each_archived(
            conn,
            &chain,
            &|_| true,
            &mut |r| {
                if r.entry.message_id.as_deref() == Some(message_id)
                    || r.entry.correlation_id.as_deref() == Some(message_id)
                {
                    found.push(r);
                }
            },
            None,
        )?;
    }
    Ok(found)
}

fn chains_archived(conn: &Connection) -> anyhow::Result<Vec<String>> {
    let mut chains: Vec<String> = indexed(conn, None)?
        .into_iter()
        .map(|s| s.chain_id)
        .collect();
    chains.dedup();
    Ok(chains)
}
