//! The audit archive end to end on a running store: segments sealed, verified and recorded;
//! archived records leaving the live store; the chain verified as one across the cut;
//! search and trail reaching into the archive; every tampering with the archive found; a
//! crash mid-archive recovered.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use wingspan_core::audit::{Entry, Event, Suite};

use super::*;
use crate::audit::{AuditSource, Filter};

/// The first segment's name (records 1–50), without its extension.
const FIRST_SEGMENT: &str = "segment-000000000001-000000000050";

const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

fn setup(archive: &Path, suite: Suite) -> AuditSetup {
    AuditSetup {
        chain_id: "gw-arch".into(),
        postgres: None,
        keys: Arc::new(AuditKeys::from_parts(suite, SEED, b"subject-secret").expect("keys")),
        checkpoint_every: 50,
        checkpoint_secs: 60,
        archive: Some(ArchiveSetup {
            dir: archive.to_path_buf(),
            records: 50,
            secs: 3600,
        }),
    }
}

fn key(suite: Suite) -> String {
    AuditKeys::from_parts(suite, SEED, b"x")
        .expect("keys")
        .signing()
        .public_hex()
}

fn entry(i: usize) -> Entry {
    let mut e = Entry::new(Event::Accepted, format!("2026-11-29T10:00:00.{i:06}Z"));
    e.message_id = Some(format!("m-{i}"));
    e.source = Some("rehab".into());
    e
}

fn dirs(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("wingspan-{name}-{}", uuid::Uuid::new_v4()));
    let archive = dir.join("archive");
    (dir, archive)
}

fn open_db(dir: &Path) -> Connection {
    Connection::open(dir.join("wingspan-state.db")).expect("open")
}

fn verify(dir: &Path, suite: Suite) -> crate::audit::ChainVerified {
    let mut src = AuditSource::Sqlite(open_db(dir));
    crate::audit::verify_store(&mut src, &key(suite))
        .expect("verify")
        .into_iter()
        .find(|r| r.report.chain_id == "gw-arch")
        .expect("the chain")
}

/// `verify` fails and names `needle` among the archive's problems.
fn refused(dir: &Path, suite: Suite, needle: &str, what: &str) {
    let v = verify(dir, suite);
    assert!(!v.ok(), "{what}: {v:?}");
    assert!(
        v.archive_problems.iter().any(|p| p.contains(needle)),
        "{what}, expected {needle:?}: {v:?}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    wingspan_core::audit::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Change a segment's manifest with `edit` and sign it again with the chain's key (as someone
/// holding the key would); the manifest as written.
fn resign(
    manifest: &Path,
    suite: Suite,
    edit: impl FnOnce(&mut crate::audit::archive::Segment),
) -> crate::audit::archive::Segment {
    let mut seg: crate::audit::archive::Segment =
        serde_json::from_slice(&std::fs::read(manifest).expect("read")).expect("manifest");
    edit(&mut seg);
    seg.signature = AuditKeys::from_parts(suite, SEED, b"x")
        .expect("keys")
        .signing()
        .sign_segment(&seg.head());
    std::fs::write(manifest, serde_json::to_vec(&seg).expect("json")).expect("manifest");
    seg
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

/// Wait until `sql` counts at least `n`.
async fn until(dir: &Path, sql: &str, n: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if count(&open_db(dir), sql) >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached: {sql} ≥ {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Segments are sealed at checkpoints, recorded with an `archived` record, and records leave
/// the live store once archived and past the live window; the chain verifies as one;
/// search and trail find archived records; tampering with the archive is found.
#[tokio::test]
async fn archived_records_leave_the_live_store_and_the_chain_stays_one() {
    for suite in Suite::ALL {
        archived_records_leave_and_the_chain_stays_one(suite).await;
    }
}

async fn archived_records_leave_and_the_chain_stays_one(suite: Suite) {
    let (dir, archive) = dirs("archive");
    {
        let store = Store::open(&dir, setup(&archive, suite)).expect("open");
        for i in 0..300 {
            store.audit(vec![entry(i)]).await.expect("append");
        }
        until(&dir, "SELECT count(*) FROM audit_archives", 5).await;
        // Nothing leaves the live store before the live window says so.
        assert_eq!(count(&open_db(&dir), "SELECT min(seq) FROM audit"), 1);
        store.retain(Retain {
            audit_live_secs: 1,
            ..Retain::default()
        });
        until(&dir, "SELECT min(seq) FROM audit", 251).await;
        assert!(store.times().pruned[3] >= 250, "counted");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let conn = open_db(&dir);
    let archived = count(&conn, "SELECT count(*) FROM audit WHERE event = 'archived'");
    assert!(archived >= 1, "the chain records its sealed segments");
    let v = verify(&dir, suite);
    assert!(v.ok(), "{v:?}");
    assert!(v.segments >= 5, "{v:?}");
    assert_eq!(
        v.report.first_seq,
        Some(1),
        "verified from the archive's first record"
    );
    assert!(v.report.records >= 300, "{v:?}");

    // Search and trail reach into the archive.
    let mut src = AuditSource::Sqlite(open_db(&dir));
    let found = crate::audit::search(
        &mut src,
        &Filter {
            event: Some("accepted".into()),
            limit: 1000,
            ..Filter::default()
        },
    )
    .expect("search");
    assert_eq!(found.len(), 300, "every accepted record, archived or live");
    assert!(
        found.windows(2).all(|w| w[0].seq < w[1].seq),
        "in chain order"
    );
    let page = crate::audit::search(
        &mut src,
        &Filter {
            event: Some("accepted".into()),
            limit: 10,
            after_seq: 100,
            ..Filter::default()
        },
    )
    .expect("page");
    assert_eq!(
        page.first().map(|r| r.seq),
        Some(101),
        "pagination across the archive"
    );
    assert_eq!(page.len(), 10);
    let trail = crate::audit::trail(&mut src, "m-7").expect("trail");
    assert_eq!(trail.len(), 1, "m-7's record, from the archive");
    assert_eq!(trail[0].entry.message_id.as_deref(), Some("m-7"));

    // Tampering with the archive, one way at a time, on copies.
    let segment = |d: &Path| -> PathBuf {
        let m = crate::audit::archive::manifest_path(&d.join("archive"), "gw-arch", 1, 50);
        assert!(m.exists(), "{}", m.display());
        m
    };
    let copy = |name: &str| -> PathBuf {
        let d = dir.with_extension(name);
        copy_dir(&dir, &d);
        // The index names manifests by absolute path: point it at the copy.
        open_db(&d)
            .execute(
                "UPDATE audit_archives SET manifest = replace(manifest, ?1, ?2)",
                rusqlite::params![dir.to_string_lossy(), d.to_string_lossy()],
            )
            .expect("repoint");
        d
    };
    // The records file is stored compressed; `zstd -dc` reads it as JSON lines.
    let records = |d: &Path| segment(d).with_file_name(format!("{FIRST_SEGMENT}.jsonl.zst"));
    let lines = |d: &Path| -> String {
        let bytes = zstd::decode_all(std::fs::File::open(records(d)).expect("open"))
            .expect("a zstd stream");
        String::from_utf8(bytes).expect("text")
    };
    assert_eq!(lines(&dir).lines().count(), 50, "one line a record");
    // An edited record in an archived segment, compressed again as it was.
    let d = copy("edited");
    let original = lines(&d);
    let text = original.replacen("\"m-7\"", "\"m-8\"", 1);
    assert_ne!(text, original, "the edit changed a record");
    let edited = zstd::encode_all(text.as_bytes(), 3).expect("compress");
    std::fs::write(records(&d), &edited).expect("edit");
    refused(
        &d,
        suite,
        "does not match its manifest",
        "an edited archive verifies",
    );
    // The same edit with the manifest's hash, its signature and the store's index all made to
    // match it (as by someone holding the signing key): the records' own chain still says so.
    let seg = resign(&segment(&d), suite, |seg| {
        seg.manifest.file_sha256 = sha256_hex(&edited);
    });
    open_db(&d)
        .execute(
            "UPDATE audit_archives SET file_sha256 = ?1 WHERE first_seq = 1",
            [&seg.manifest.file_sha256],
        )
        .expect("index");
    refused(
        &d,
        suite,
        "do not verify",
        "a re-signed edited archive verifies",
    );
    // A compressed file that expands far past its manifest's count (ten million short
    // lines in a few kilobytes): refused once past the count, not read to its end.
    let d = copy("expanding");
    let bomb = zstd::encode_all("x\n".repeat(10_000_000).as_bytes(), 3).expect("compress");
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    std::fs::write(records(&d), &bomb).expect("bomb");
    refused(
        &d,
        suite,
        "more lines than",
        "an expanding archive verifies",
    );
    let checked = crate::audit::verify_export(segment(&d).parent().expect("dir"), &key(suite))
        .expect("an unreadable segment is a problem of its manifest, not an error");
    assert!(
        checked
            .iter()
            .any(|(_, _, problems)| problems.iter().any(|p| p.contains("more lines than"))),
        "{checked:?}"
    );
    // A damaged byte in the compressed file: a problem named, not a panic.
    let d = copy("damaged");
    let mut bytes = std::fs::read(records(&d)).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(records(&d), &bytes).expect("damage");
    refused(&d, suite, FIRST_SEGMENT, "a damaged archive verifies");
    // Bytes appended after the compressed stream.
    let d = copy("appended");
    let mut bytes = std::fs::read(records(&d)).expect("read");
    bytes.extend_from_slice(b"{\"seq\":51}\n");
    std::fs::write(records(&d), &bytes).expect("append");
    let v = verify(&d, suite);
    assert!(!v.ok(), "an archive with bytes appended verifies: {v:?}");
    // A segment written before compression (plain JSON lines, `format: "jsonl"`) reads and
    // verifies alike.
    let d = copy("plain");
    let m = segment(&d);
    let plain = lines(&d);
    std::fs::remove_file(records(&d)).expect("rm");
    let seg = resign(&m, suite, |seg| {
        seg.manifest.format = "jsonl".into();
        seg.manifest.file = format!("{FIRST_SEGMENT}.jsonl");
        seg.manifest.file_sha256 = sha256_hex(plain.as_bytes());
    });
    std::fs::write(m.with_file_name(&seg.manifest.file), &plain).expect("plain");
    let (checked, problems) = crate::audit::archive::check(&m, &key(suite), &[]).expect("check");
    assert!(problems.is_empty(), "a plain segment: {problems:?}");
    let mut seqs = Vec::new();
    crate::audit::archive::each_record(&m, &checked.expect("manifest"), &mut |r| {
        seqs.push(r.map(|r| r.seq));
    })
    .expect("read");
    assert_eq!(seqs, (1..=50).map(Some).collect::<Vec<_>>());
    // A deleted segment (its files), its row kept.
    let d = copy("deleted");
    std::fs::remove_file(records(&d)).expect("rm");
    std::fs::remove_file(segment(&d)).expect("rm");
    let v = verify(&d, suite);
    assert!(
        !v.ok() && !v.report.ok(),
        "a deleted archive verifies: {v:?}"
    );
    // A deleted segment with its row: the chain's own `archived` record still names it,
    // and the chain no longer starts at the beginning.
    let d = copy("unlisted");
    let m = segment(&d);
    std::fs::remove_file(&m).expect("rm");
    open_db(&d)
        .execute("DELETE FROM audit_archives WHERE first_seq = 1", [])
        .expect("unlist");
    let v = verify(&d, suite);
    assert!(
        !v.ok() && !v.report.ok(),
        "an unlisted archive verifies: {v:?}"
    );
    assert!(
        v.archive_problems
            .iter()
            .any(|p| p.contains("no archived segment") || p.contains("no longer lists")),
        "{v:?}"
    );
    // A manifest re-signed by someone else's key.
    let d = copy("resigned");
    let m = segment(&d);
    let mut seg: crate::audit::archive::Segment =
        serde_json::from_slice(&std::fs::read(&m).expect("read")).expect("manifest");
    seg.signature = "00".repeat(64);
    std::fs::write(&m, serde_json::to_vec(&seg).expect("json")).expect("write");
    let v = verify(&d, suite);
    assert!(
        v.archive_problems.iter().any(|p| p.contains("signature")),
        "{v:?}"
    );
}

/// A crash mid-archive: a half-written temporary file, and a segment written but never
/// recorded (its files torn). At the next start the archiver cleans up and seals the range
/// again; nothing left the live store meanwhile.
#[tokio::test]
async fn a_crash_mid_archive_is_sealed_again_at_the_next_start() {
    for suite in Suite::ALL {
        a_crash_mid_archive_is_sealed_again(suite).await;
    }
}

async fn a_crash_mid_archive_is_sealed_again(suite: Suite) {
    let (dir, archive) = dirs("archive-crash");
    {
        let store = Store::open(&dir, setup(&archive, suite)).expect("open");
        for i in 0..120 {
            store.audit(vec![entry(i)]).await.expect("append");
        }
        until(&dir, "SELECT count(*) FROM audit_archives", 2).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // As if the process died after writing the second segment's files, before recording it.
    let conn = open_db(&dir);
    conn.execute("DELETE FROM audit_archives WHERE first_seq = 51", [])
        .expect("unrecord");
    let chain_dir = archive.join("gw-arch");
    let records = chain_dir.join("segment-000000000051-000000000100.jsonl.zst");
    std::fs::write(&records, b"{\"torn\":").expect("tear");
    std::fs::write(
        chain_dir.join("segment-000000000101-000000000150.jsonl.tmp"),
        b"half",
    )
    .expect("tmp");
    {
        let _store = Store::open(&dir, setup(&archive, suite)).expect("reopen");
        until(
            &dir,
            "SELECT count(*) FROM audit_archives WHERE first_seq = 51",
            1,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !chain_dir
            .join("segment-000000000101-000000000150.jsonl.tmp")
            .exists(),
        "the half-written file is gone"
    );
    let v = verify(&dir, suite);
    assert!(v.ok(), "{v:?}");
    assert!(v.segments >= 2, "{v:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// A key rotation: the old key signs the head, the hand-over is a record signed by both keys,
/// the new key signs on and replaces the old in its file; segments sealed before and after
/// it, and the live store, verify under either public key. A restart with the old key file
/// back in place is refused; one cut off before the file was renamed finishes the rotation.
#[tokio::test]
async fn a_rotated_key_signs_on_and_verification_follows_it() {
    for suite in Suite::ALL {
        rotated_key_signs_on(suite).await;
    }
}

async fn rotated_key_signs_on(suite: Suite) {
    let (dir, archive) = dirs("rotate");
    let key_file = dir.join("keys").join("audit-signing.key");
    let with_file = || AuditSetup {
        keys: Arc::new(AuditKeys::from_file(suite, &key_file, b"subject-secret").expect("keys")),
        ..setup(&archive, suite)
    };
    let public_in_file = || {
        AuditKeys::from_file(suite, &key_file, b"x")
            .expect("file")
            .signing()
            .public_hex()
    };
    let (old, old_seed, rotation) = {
        let store = Store::open(&dir, with_file()).expect("open");
        let old = store.public_key();
        let old_seed = std::fs::read_to_string(&key_file).expect("old key");
        for i in 0..120 {
            store.audit(vec![entry(i)]).await.expect("append");
        }
        let r = store.rotate_key("operator-1").await.expect("rotate");
        assert_eq!((r.old_key.as_str(), r.seq), (old.as_str(), 121));
        assert_eq!(store.public_key(), r.new_key);
        assert_eq!(
            public_in_file(),
            r.new_key,
            "the new key replaced the old in its file"
        );
        assert!(!dir.join("keys").join("audit-signing.key.next").exists());
        for i in 120..300 {
            store.audit(vec![entry(i)]).await.expect("append");
        }
        until(&dir, "SELECT count(*) FROM audit_archives", 5).await;
        (old, old_seed, r)
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let conn = open_db(&dir);
    let (event, actor): (String, String) = conn
        .query_row("SELECT event, actor FROM audit WHERE seq = 121", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("the rotation record");
    assert_eq!(
        (event.as_str(), actor.as_str()),
        ("key_rotated", "operator-1")
    );
    // The head before the rotation was signed by the old key, the rotation on by the new.
    let key_at = |seq: u64| -> String {
        conn.query_row(
            "SELECT key_id FROM audit_checkpoints WHERE seq = ?1",
            [i64::try_from(seq).expect("small")],
            |r| r.get(0),
        )
        .expect("checkpoint")
    };
    assert_eq!(key_at(120), old);
    assert_eq!(key_at(121), rotation.new_key);
    for trusted in [&old, &rotation.new_key] {
        let mut src = AuditSource::Sqlite(open_db(&dir));
        let v = crate::audit::verify_store(&mut src, trusted)
            .expect("verify")
            .into_iter()
            .find(|r| r.report.chain_id == "gw-arch")
            .expect("the chain");
        assert!(v.ok(), "{suite}: {v:?}");
        assert_eq!((v.report.key_rotations, v.segments), (1, 5));
    }
    // An export of the records before the rotation (signed by the old key) verifies under
    // the new one: its manifest carries the chain's rotations.
    let out = dir.join("export");
    let mut src = AuditSource::Sqlite(open_db(&dir));
    crate::audit::export(
        &mut src,
        None,
        Some("2026-11-29T10:00:00.000120Z"),
        "jsonl",
        &out,
    )
    .expect("export");
    for (manifest, report, problems) in
        crate::audit::verify_export(&out, &rotation.new_key).expect("verify export")
    {
        assert!(manifest.last_seq < Some(rotation.seq), "{manifest:?}");
        assert!(
            report.ok() && problems.is_empty(),
            "{report:?} {problems:?}"
        );
    }
    // The old key file put back: refused, nothing written.
    let new_seed = std::fs::read_to_string(&key_file).expect("new key");
    std::fs::write(&key_file, &old_seed).expect("old key back");
    let err = Store::open(&dir, with_file()).expect_err("the old key");
    assert!(err.to_string().contains("rotate-key"), "{err}");
    // A rotation cut off before its file was renamed: the new key waits beside the old.
    std::fs::write(dir.join("keys").join("audit-signing.key.next"), &new_seed).expect("next");
    {
        let store = Store::open(&dir, with_file()).expect("finishes the rotation");
        assert_eq!(store.public_key(), rotation.new_key);
        store.audit(vec![entry(300)]).await.expect("append");
    }
    assert_eq!(public_in_file(), rotation.new_key);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = verify(&dir, suite);
    assert!(!v.ok(), "the test's own fixed key is not this chain's");
    let mut src = AuditSource::Sqlite(open_db(&dir));
    let v = crate::audit::verify_store(&mut src, &old).expect("verify");
    assert!(v.iter().all(crate::audit::ChainVerified::ok), "{v:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
