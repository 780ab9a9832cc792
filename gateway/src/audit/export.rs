//! `audit export` and `audit verify --export`: a window of the chain as a records file and
//! a manifest naming its hash, range, links and the signed checkpoints inside it.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use wingspan_core::audit::{Checkpoint, Event, GENESIS, Record, Report, Rotation, Suite, Verifier};

use super::{AuditSource, Locate};

/// What `audit export` writes beside the records, and `audit verify --export` checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub file: String,
    pub file_sha256: String,
    pub chain_id: String,
    /// The chain's suite (absent in files written before suites: `sha256-ed25519`).
    #[serde(default)]
    pub suite: Suite,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub count: u64,
    /// What the first exported record links to.
    pub start_prev_hash: String,
    pub final_hash: Option<String>,
    /// Signed checkpoints that fall inside the range.
    pub checkpoints: Vec<Checkpoint>,
    /// The chain's key rotations (each signed by both keys), wherever they stand: a range
    /// signed before a rotation verifies under the key trusted now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<Rotation>,
}

const CSV_HEADER: &str = "seq,chain_id,event,at,message_id,correlation_id,source,destination,message_type,payload_sha256,outcome,reason,actor,subject_ref,prev_hash,hash,trace_id";

fn csv_field(out: &mut String, v: Option<&str>) {
    if let Some(v) = v {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    }
}

fn csv_line(r: &Record) -> String {
    let e = &r.entry;
    let mut out = format!("{},", r.seq);
    let fields = std::iter::once(Some(r.chain_id.as_str()))
        .chain(e.fields())
        .chain([
            Some(r.prev_hash.as_str()),
            Some(r.hash.as_str()),
            e.trace_id.as_deref(),
        ]);
    for (i, v) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, v);
    }
    out
}

/// Parse one CSV line of ours: an empty unquoted field is absent, a quoted one present.
fn csv_parse(line: &str) -> Option<Vec<Option<String>>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        v.push('"');
                    }
                    '"' => break,
                    c => v.push(c),
                }
            }
            fields.push(Some(v));
        } else {
            let mut v = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                v.push(c);
                chars.next();
            }
            fields.push((!v.is_empty()).then_some(v));
        }
        match chars.next() {
            Some(',') => continue,
            None => return Some(fields),
            Some(_) => return None,
        }
    }
}

fn record_from_csv(line: &str) -> Option<Record> {
    // Files written before traces have 16 columns; `trace_id` came after `hash`.
    let f = csv_parse(line)?;
    if f.len() != 16 && f.len() != 17 {
        return None;
    }
    let get = |i: usize| f.get(i).cloned().flatten();
    Some(Record {
        seq: get(0)?.parse().ok()?,
        chain_id: get(1)?,
        entry: wingspan_core::audit::Entry {
            event: Event::parse(&get(2)?)?,
            at: get(3)?,
            message_id: get(4),
            correlation_id: get(5),
            source: get(6),
            destination: get(7),
            message_type: get(8),
            payload_sha256: get(9),
            outcome: get(10),
            reason: get(11),
            actor: get(12),
            subject_ref: get(13),
            trace_id: get(16),
        },
        prev_hash: get(14)?,
        hash: get(15)?,
    })
}

/// A file written through a buffer and hashed (SHA-256) as it is written.
struct HashedFile {
    out: std::io::BufWriter<std::fs::File>,
    hash: ring::digest::Context,
}

impl HashedFile {
    fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            out: std::io::BufWriter::new(std::fs::File::create(path)?),
            hash: ring::digest::Context::new(&ring::digest::SHA256),
        })
    }

    fn line(&mut self, text: &str) -> std::io::Result<()> {
        for part in [text.as_bytes(), b"\n"] {
            self.hash.update(part);
            self.out.write_all(part)?;
        }
        Ok(())
    }

    /// Flush and sync; the file's SHA-256, hex.
    fn finish(self) -> std::io::Result<String> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(wingspan_core::audit::hex(self.hash.finish().as_ref()))
    }
}

/// Export every chain's records in [since, until) to `dir`: one records file and one
/// manifest per chain. Returns the manifests. The chain is read twice, one record at a time
/// (a year's chain is exported in constant memory): once to find the range, once to write it.
pub fn export(
    src: &mut AuditSource,
    since: Option<&str>,
    until: Option<&str>,
    format: &str,
    dir: &Path,
) -> anyhow::Result<Vec<Manifest>> {
    anyhow::ensure!(
        format == "jsonl" || format == "csv",
        "format is jsonl or csv"
    );
    std::fs::create_dir_all(dir)?;
    let checkpoints = src.checkpoints()?;
    let mut manifests = Vec::new();
    for chain in src.chains()? {
        // A contiguous range of the chain: from the first record inside to the last.
        let mut range: Option<(u64, u64)> = None;
        let mut rotations = Vec::new();
        src.each_record(&chain, &mut |r| {
            rotations.extend(Rotation::from_record(&r));
            let inside = since.is_none_or(|s| r.entry.at.as_str() >= s)
                && until.is_none_or(|u| r.entry.at.as_str() < u);
            if inside {
                range = Some(range.map_or((r.seq, r.seq), |(lo, _)| (lo, r.seq)));
            }
        })?;
        let file = format!("audit-{chain}.{format}");
        let mut out = HashedFile::create(&dir.join(&file))?;
        if format == "csv" {
            out.line(CSV_HEADER)?;
        }
        let (mut count, mut start_prev_hash, mut final_hash) = (0u64, None, None);
        let mut failed: Option<anyhow::Error> = None;
        if let Some((lo, hi)) = range {
            src.each_record(&chain, &mut |r| {
                if r.seq < lo || r.seq > hi || failed.is_some() {
                    return;
                }
                let line = match format {
                    "csv" => Ok(csv_line(&r)),
                    _ => serde_json::to_string(&r),
                };
                if let Err(e) = line
                    .map_err(anyhow::Error::from)
                    .and_then(|l| out.line(&l).map_err(anyhow::Error::from))
                {
                    failed = Some(e);
                    return;
                }
                count += 1;
                if start_prev_hash.is_none() {
                    start_prev_hash = Some(r.prev_hash.clone());
                }
                final_hash = Some(r.hash);
            })?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let file_sha256 = out.finish()?;
        let (lo, hi) = (range.map(|r| r.0), range.map(|r| r.1));
        let manifest = Manifest {
            format: format.into(),
            file: file.clone(),
            file_sha256,
            chain_id: chain.clone(),
            suite: src.suite(&chain)?,
            first_seq: lo,
            last_seq: hi,
            count,
            start_prev_hash: start_prev_hash.unwrap_or_else(|| GENESIS.to_owned()),
            final_hash,
            checkpoints: checkpoints
                .iter()
                .filter(|c| {
                    c.chain_id == chain
                        && lo.is_some_and(|lo| c.seq >= lo)
                        && hi.is_some_and(|hi| c.seq <= hi)
                })
                .cloned()
                .collect(),
            rotations,
        };
        std::fs::write(
            dir.join(format!("audit-{chain}.manifest.json")),
            serde_json::to_vec_pretty(&manifest)?,
        )?;
        manifests.push(manifest);
    }
    Ok(manifests)
}

/// Each line of an exported records file, as it stands (newline removed) and as a record if
/// it is one; the header of a CSV file is skipped. `f` gets the line's number (from 1).
/// Returns the SHA-256 (hex) of the whole file, read once, a line at a time. A file of more
/// than `most` lines is refused there (see [`each_exported_from`]).
pub(super) fn each_exported(
    path: &Path,
    format: &str,
    most: u64,
    f: &mut dyn FnMut(usize, Option<Record>),
) -> anyhow::Result<String> {
    each_exported_from(&mut std::fs::File::open(path)?, format, most, f)
}

/// The lines a records file of `count` records may hold: its records and a CSV header.
pub(super) fn lines_for(count: u64) -> u64 {
    count.saturating_add(1)
}

/// What a records file's name ends with, and its manifest's `format` with, when it is
/// compressed with zstd (archive segments are).
pub const ZSTD: &str = ".zst";

/// A line longer than this is not a record (records are a few hundred bytes): it is counted
/// as unreadable and skipped, never held whole in memory.
const MAX_LINE: usize = 4 << 20;

/// The largest window (log2 bytes) a compressed records file may ask its reader for: segments
/// are written at level 3 (a window of at most 2 MiB); a frame asking for more is refused
/// rather than given the memory.
const WINDOW_LOG_MAX: u32 = 23;

/// A reader that hashes the bytes it passes on: a records file's hash is over its bytes as
/// stored, compressed or not, so `sha256sum` of the file gives the manifest's hash.
pub(super) struct Hashing<T> {
    pub(super) inner: T,
    hash: ring::digest::Context,
}

impl<T> Hashing<T> {
    pub(super) fn new(inner: T) -> Self {
        Self {
            inner,
            hash: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    /// The SHA-256 (hex) of every byte passed so far.
    pub(super) fn hex(&self) -> String {
        wingspan_core::audit::hex(self.hash.clone().finish().as_ref())
    }
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// [`each_exported`] from the file's bytes as stored (a paced reader, for the archiver's
/// read-back): `format` is `jsonl` or `csv`, followed by [`ZSTD`] when compressed. Past
/// `most` lines (its manifest's count, [`lines_for`]) the file is refused: a compressed file
/// made to expand without end is never read to its end.
pub(super) fn each_exported_from(
    raw: &mut dyn std::io::Read,
    format: &str,
    most: u64,
    f: &mut dyn FnMut(usize, Option<Record>),
) -> anyhow::Result<String> {
    use std::io::{BufRead, Read};
    let (lines, compressed) = match format.strip_suffix(ZSTD) {
        Some(lines) => (lines, true),
        None => (format, false),
    };
    anyhow::ensure!(
        lines == "jsonl" || lines == "csv",
        "records format {format:?} is not jsonl or csv (optionally {ZSTD})"
    );
    let mut hashed = Hashing::new(raw);
    {
        let mut reader: Box<dyn BufRead + '_> = if compressed {
            let mut decoder = zstd::stream::read::Decoder::new(&mut hashed)?;
            decoder.window_log_max(WINDOW_LOG_MAX)?;
            Box::new(std::io::BufReader::with_capacity(1 << 16, decoder))
        } else {
            Box::new(std::io::BufReader::with_capacity(1 << 16, &mut hashed))
        };
        let mut buf = Vec::new();
        let mut n = 0usize;
        loop {
            buf.clear();
            let read = (&mut reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut buf)?;
            if read == 0 {
                break;
            }
            n += 1;
            anyhow::ensure!(
                n as u64 <= most,
                "holds more lines than its manifest's count allows ({most})"
            );
            if buf.len() >= MAX_LINE && buf.last() != Some(&b'\n') {
                reader.skip_until(b'\n')?;
                f(n, None);
                continue;
            }
            let text = String::from_utf8_lossy(&buf);
            let line = text.trim_end_matches('\n').trim_end_matches('\r');
            if line.is_empty() || (lines == "csv" && n == 1) {
                continue;
            }
            let parsed = match lines {
                "csv" => record_from_csv(line),
                _ => serde_json::from_str::<Record>(line).ok(),
            };
            f(n, parsed);
        }
    }
    // Whatever follows the compressed stream is part of the file and of its hash.
    std::io::copy(&mut hashed, &mut std::io::sink())?;
    Ok(hashed.hex())
}

/// Lines that are not records named one by one in a manifest's problems; past these, counted.
const NAMED_LINES: u64 = 100;

/// Verify an export directory offline: each manifest's file hash, the records' chain from
/// the manifest's start, the count and final hash, and the checkpoints' signatures.
pub fn verify_export(
    dir: &Path,
    key: &str,
) -> anyhow::Result<Vec<(Manifest, Report, Vec<String>)>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    anyhow::ensure!(
        !entries.is_empty(),
        "no *.manifest.json in {}",
        dir.display()
    );
    for e in entries {
        let manifest: Manifest = serde_json::from_slice(&std::fs::read(e.path())?)?;
        let path = dir.join(&manifest.file);
        let mut problems = Vec::new();
        // One record at a time; a second pass over the file only to name where a chain broke.
        let mut v = Verifier::new(
            manifest.suite,
            &manifest.chain_id,
            &manifest.checkpoints,
            Some(key),
            &manifest.start_prev_hash,
        )
        .knowing(&manifest.rotations);
        let (mut count, mut last_hash, mut unreadable) = (0u64, None::<String>, 0u64);
        let most = lines_for(manifest.count);
        let read = each_exported(&path, &manifest.format, most, &mut |n, r| match r {
            Some(r) => {
                v.push(&r);
                count += 1;
                last_hash = Some(r.hash);
            }
            None => {
                unreadable += 1;
                if unreadable <= NAMED_LINES {
                    problems.push(format!("line {n} is not a record"));
                }
            }
        });
        if unreadable > NAMED_LINES {
            problems.push(format!(
                "{} more lines are not records",
                unreadable - NAMED_LINES
            ));
        }
        match read {
            Ok(file_sha256) if file_sha256 != manifest.file_sha256 => problems.push(format!(
                "{} does not match the manifest's hash",
                manifest.file
            )),
            Ok(_) => {}
            // Unreadable (a damaged compressed file, too many lines): this manifest's
            // problem; the directory's other manifests are still checked.
            Err(e) => problems.push(format!("{}: {e}", manifest.file)),
        }
        if count != manifest.count {
            problems.push(format!(
                "{count} records, the manifest says {}",
                manifest.count
            ));
        }
        if last_hash != manifest.final_hash {
            problems.push("the last record's hash is not the manifest's final hash".into());
        }
        let located = match v.broken_link().map(str::to_owned) {
            Some(hash) => {
                let mut at = Locate::new(&hash);
                // Read as far as it reads (the first pass said what stopped it).
                let _ = each_exported(&path, &manifest.format, most, &mut |_, r| {
                    if let Some(r) = r {
                        at.push(&r);
                    }
                });
                at.found()
            }
            None => None,
        };
        let report = v.finish(|_| located);
        out.push((manifest, report, problems));
    }
    Ok(out)
}
