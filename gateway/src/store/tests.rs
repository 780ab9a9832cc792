use super::*;
use crate::audit::sqlite::{each_record, read_trail};
use rusqlite::params;
use schema::open;
use wal::bound_wal;
use wingspan_core::audit::{Event, Record, Suite};

/// Every record of a chain, in storage order.
fn read_chain(conn: &Connection, chain_id: &str) -> Result<Vec<Record>, rusqlite::Error> {
    let mut records = Vec::new();
    each_record(conn, chain_id, &mut |r| records.push(r))?;
    Ok(records)
}

const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

#[test]
fn the_write_ahead_log_restarts_once_past_its_limit() {
    let dir = std::env::temp_dir().join(format!("wingspan-wal-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("t.db");
    let writer = open(&path).expect("open");
    writer
        .execute_batch("CREATE TABLE t (x BLOB)")
        .expect("table");
    let (reader, probe) = (open(&path).expect("reader"), open(&path).expect("probe"));
    let insert = || {
        writer
            .execute("INSERT INTO t VALUES (randomblob(1000))", [])
            .expect("insert");
    };
    // The log's length, as the checkpoint thread sees it (copying as it goes).
    let frames = || -> i64 {
        probe
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .expect("probe")
    };
    for _ in 0..3000 {
        insert();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("read");
    }
    let wal = std::fs::metadata(dir.join("t.db-wal")).map_or(0, |m| m.len());
    assert!(wal > 3 << 20, "the log should have grown: {wal}");
    // A reader inside a read transaction holds the log: no restart while it reads.
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM t;")
        .expect("begin read");
    assert!(bound_wal(&writer), "the writer's copy did not finish");
    insert();
    assert!(
        frames() > 3000,
        "restarted under a reader's feet: {}",
        frames()
    );
    reader.execute_batch("COMMIT").expect("end read");
    // Nothing holds it now: the writer copies the rest and its next transaction starts the
    // log again from its beginning.
    insert();
    assert!(bound_wal(&writer));
    insert();
    assert!(
        frames() < 10,
        "the log was not restarted: {} frames",
        frames()
    );
    let rows: i64 = reader
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("read after");
    assert_eq!(rows, 3003);
    let _ = std::fs::remove_dir_all(&dir);
}

fn setup() -> AuditSetup {
    setup_in(Suite::default())
}

fn setup_in(suite: Suite) -> AuditSetup {
    AuditSetup {
        chain_id: "gw-test".into(),
        postgres: None,
        keys: Arc::new(AuditKeys::from_parts(suite, SEED, b"subject-secret").expect("keys")),
        checkpoint_every: 50,
        checkpoint_secs: 60,
        archive: None,
    }
}

fn entry(i: usize) -> Entry {
    let mut e = Entry::new(Event::Accepted, format!("2026-11-29T10:00:00.{i:06}Z"));
    e.message_id = Some(format!("m-{i}"));
    e
}

/// As `wingspan audit verify` does it: streamed, one record at a time.
fn verify_db(dir: &Path, suite: Suite) -> wingspan_core::audit::Report {
    let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
    let key = AuditKeys::from_parts(suite, SEED, b"x")
        .expect("keys")
        .signing()
        .public_hex();
    let mut src = crate::audit::AuditSource::Sqlite(conn);
    crate::audit::verify_store(&mut src, &key)
        .expect("verify")
        .into_iter()
        .find(|r| r.report.chain_id == "gw-test")
        .expect("the chain")
        .report
}

/// Appends are chained and signed; every way of tampering with the database directly is
/// found and named; a reopened store continues the chain; under either suite.
#[tokio::test]
async fn audit_chain_survives_reopen_and_every_tampering_is_found() {
    for suite in Suite::ALL {
        chain_survives_reopen_and_tampering_is_found(suite).await;
    }
}

async fn chain_survives_reopen_and_tampering_is_found(suite: Suite) {
    let setup = || setup_in(suite);
    let verify_db = |dir: &Path| verify_db(dir, suite);
    let dir = std::env::temp_dir().join(format!("wingspan-audit-{}", uuid::Uuid::new_v4()));
    {
        let store = Store::open(&dir, setup()).expect("open");
        for i in 0..120 {
            store.audit(vec![entry(i)]).await.expect("append");
        }
    }
    // Give the writer thread its final checkpoint after the handles are gone.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = verify_db(&dir);
    assert!(r.ok(), "{r:?}");
    assert_eq!((r.records, r.suite), (120, suite));
    assert!(r.checkpoints >= 2, "signed every 50 records: {r:?}");
    {
        let store = Store::open(&dir, setup()).expect("reopen");
        store.audit(vec![entry(120)]).await.expect("append");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(verify_db(&dir).ok());
    assert_eq!(verify_db(&dir).records, 121);

    let copy = |name: &str| {
        let d = dir.with_extension(name);
        std::fs::create_dir_all(&d).expect("dir");
        let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
        conn.execute_batch(&format!(
            "VACUUM INTO '{}'",
            d.join("wingspan-state.db").display()
        ))
        .expect("copy");
        (
            d.clone(),
            Connection::open(d.join("wingspan-state.db")).expect("open copy"),
        )
    };
    use wingspan_core::audit::Finding;
    let (d, c) = copy("modified");
    c.execute("UPDATE audit SET outcome = 'forged' WHERE seq = 40", [])
        .expect("tamper");
    assert_eq!(verify_db(&d).finding, Some(Finding::Modified { seq: 40 }));

    let (d, c) = copy("deleted");
    c.execute("DELETE FROM audit WHERE seq = 40", [])
        .expect("tamper");
    assert_eq!(verify_db(&d).finding, Some(Finding::Deleted { seq: 41 }));

    let (d, c) = copy("reordered");
    c.execute_batch("UPDATE audit SET seq = -1 WHERE seq = 40; UPDATE audit SET seq = 40 WHERE seq = 41; UPDATE audit SET seq = 41 WHERE seq = -1;").expect("tamper");
    assert_eq!(verify_db(&d).finding, Some(Finding::Reordered { seq: 40 }));

    let (d, c) = copy("inserted");
    // A forged record with a valid hash of its own, linked after record 39, and every
    // later record moved up one place to make room.
    let prev: String = c
        .query_row("SELECT hash FROM audit WHERE seq = 39", [], |r| r.get(0))
        .expect("hash");
    let mut forged = Entry::new(Event::Delivered, "2026-11-29T10:00:00.000039Z");
    forged.message_id = Some("m-forged".into());
    let hash = wingspan_core::audit::record_hash(suite, "gw-test", &forged, &prev);
    c.execute_batch("UPDATE audit SET seq = seq + 100000 WHERE seq >= 40; UPDATE audit SET seq = seq - 100000 + 1 WHERE seq >= 100000;").expect("shift");
    c.execute(
        "INSERT INTO audit (seq, chain_id, event, at, message_id, prev_hash, hash) VALUES (40, 'gw-test', 'delivered', ?1, 'm-forged', ?2, ?3)",
        params![forged.at, prev, hash],
    )
    .expect("insert");
    assert_eq!(verify_db(&d).finding, Some(Finding::Inserted { seq: 40 }));

    let (d, c) = copy("truncated");
    c.execute("DELETE FROM audit WHERE seq > 60", [])
        .expect("tamper");
    assert!(matches!(
        verify_db(&d).finding,
        Some(Finding::Deleted { .. })
    ));

    let (d, c) = copy("resigned");
    // The first character always changes (a fixed replacement left the signature as it
    // was whenever it already began with that value).
    c.execute("UPDATE audit_checkpoints SET signature = CASE WHEN substr(signature, 1, 1) = '0' THEN '1' ELSE '0' END || substr(signature, 2) WHERE seq = 50", []).expect("tamper");
    assert_eq!(verify_db(&d).bad_signatures, vec![50]);

    // The suite the store recorded, changed behind its back: nothing verifies under the
    // other suite (the first record is named), and the report says which suite it tried.
    let (d, c) = copy("suite");
    let other = Suite::ALL.into_iter().find(|s| *s != suite).expect("two");
    c.execute(
        "UPDATE audit_chains SET suite = ?1",
        params![other.as_str()],
    )
    .expect("tamper");
    let r = verify_db(&d);
    assert_eq!(
        (r.finding, r.suite),
        (Some(Finding::Modified { seq: 1 }), other)
    );
}

/// A chain keeps the suite it started with: a store opened under a config naming another
/// suite refuses to start (and changes nothing); a store whose chain predates suites is
/// `sha256-ed25519`.
#[tokio::test]
async fn a_chain_refuses_another_suite() {
    for suite in Suite::ALL {
        let other = Suite::ALL.into_iter().find(|s| *s != suite).expect("two");
        let dir = std::env::temp_dir().join(format!("wingspan-suite-{}", uuid::Uuid::new_v4()));
        {
            let store = Store::open(&dir, setup_in(suite)).expect("open");
            store.audit(vec![entry(0)]).await.expect("append");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let err = Store::open(&dir, setup_in(other)).expect_err("another suite");
        let text = err.to_string();
        assert!(
            text.contains(&format!("kept with suite {suite}")) && text.contains(other.as_str()),
            "{text}"
        );
        let r = verify_db(&dir, suite);
        assert!(r.ok() && r.records == 1, "{r:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A store from before suites were recorded: its chain is the default suite's.
    let dir = std::env::temp_dir().join(format!("wingspan-suite-{}", uuid::Uuid::new_v4()));
    {
        let store = Store::open(&dir, setup()).expect("open");
        store.audit(vec![entry(0)]).await.expect("append");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Connection::open(dir.join("wingspan-state.db"))
        .expect("open")
        .execute_batch("DROP TABLE audit_chains")
        .expect("as an older store");
    assert!(Store::open(&dir, setup_in(Suite::Sm3Sm2)).is_err());
    assert!(Store::open(&dir, setup()).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// PostgreSQL test store: a fresh schema of the local `test` database (trust auth).
pub(crate) fn pg_schema() -> (String, postgres::Client) {
    let schema = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = postgres::Client::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        postgres::NoTls,
    )
    .expect("PostgreSQL at 127.0.0.1:5432 (bash .ci/run starts it)");
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .expect("schema");
    let url = format!("postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    client.batch_execute("SELECT 1").expect("ping");
    (url, client)
}

/// The same chain and the same tampering, in the PostgreSQL store several instances share,
/// under either suite. (A plain test: the synchronous PostgreSQL client must not run on a
/// runtime's thread.)
#[test]
fn postgres_audit_chain_verifies_and_every_tampering_is_found() {
    for suite in Suite::ALL {
        postgres_chain_verifies_and_tampering_is_found(suite);
    }
}

fn postgres_chain_verifies_and_tampering_is_found(suite: Suite) {
    let setup = || setup_in(suite);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    use wingspan_core::audit::Finding;
    let (url, mut sql) = pg_schema();
    let dir = std::env::temp_dir().join(format!("wingspan-audit-{}", uuid::Uuid::new_v4()));
    let pg_setup = || AuditSetup {
        postgres: Some(url.clone()),
        ..setup()
    };
    rt.block_on(async {
        let store = Store::open(&dir, pg_setup()).expect("open");
        for i in 0..120 {
            store.audit(vec![entry(i)]).await.expect("append");
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    rt.block_on(async {
        // A second start continues the chain where it stands.
        let store = Store::open(&dir, pg_setup()).expect("reopen");
        store.audit(vec![entry(120)]).await.expect("append");
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let key = AuditKeys::from_parts(suite, SEED, b"x")
        .expect("keys")
        .signing()
        .public_hex();
    let verify = |url: &str| {
        let mut src = crate::audit::Location::Postgres(url.to_owned())
            .open()
            .expect("open");
        let r = crate::audit::verify_store(&mut src, &key).expect("verify");
        r.into_iter().next().expect("one chain").report
    };
    let r = verify(&url);
    assert!(r.ok(), "{r:?}");
    assert_eq!((r.records, r.suite), (121, suite));
    // Another suite is refused at start, the chain left as it was.
    let other = Suite::ALL.into_iter().find(|s| *s != suite).expect("two");
    let refused = rt.block_on(async {
        Store::open(
            &dir,
            AuditSetup {
                postgres: Some(url.clone()),
                ..setup_in(other)
            },
        )
        .map(|_| ())
    });
    assert!(
        refused.is_err_and(|e| e.to_string().contains("cannot change")),
        "another suite was accepted"
    );
    assert!(r.checkpoints >= 2);
    // Nothing of it went to the embedded database.
    let local = Connection::open(dir.join("wingspan-state.db")).expect("open");
    assert_eq!(read_chain(&local, "gw-test").expect("read").len(), 0);

    let check = |sql: &mut postgres::Client, tamper: &str, undo: &str| {
        sql.batch_execute(tamper).expect("tamper");
        let r = verify(&url);
        sql.batch_execute(undo).expect("undo");
        r
    };
    let r = check(
        &mut sql,
        "UPDATE audit SET outcome = 'forged' WHERE seq = 40",
        "UPDATE audit SET outcome = NULL WHERE seq = 40",
    );
    assert_eq!(r.finding, Some(Finding::Modified { seq: 40 }));
    let r = check(
        &mut sql,
        "CREATE TABLE saved AS SELECT * FROM audit WHERE seq = 40; DELETE FROM audit WHERE seq = 40",
        "INSERT INTO audit SELECT * FROM saved; DROP TABLE saved",
    );
    assert_eq!(r.finding, Some(Finding::Deleted { seq: 41 }));
    let r = check(
        &mut sql,
        "UPDATE audit SET seq = -1 WHERE seq = 40; UPDATE audit SET seq = 40 WHERE seq = 41; UPDATE audit SET seq = 41 WHERE seq = -1",
        "UPDATE audit SET seq = -1 WHERE seq = 40; UPDATE audit SET seq = 40 WHERE seq = 41; UPDATE audit SET seq = 41 WHERE seq = -1",
    );
    assert_eq!(r.finding, Some(Finding::Reordered { seq: 40 }));
    let r = check(
        &mut sql,
        "CREATE TABLE saved AS SELECT * FROM audit WHERE seq > 60; DELETE FROM audit WHERE seq > 60",
        "INSERT INTO audit SELECT * FROM saved; DROP TABLE saved",
    );
    assert!(matches!(r.finding, Some(Finding::Deleted { .. })), "{r:?}");
    // The first signed checkpoint (at 50 unless a signature had to wait for a later batch).
    let first: i64 = sql
        .query_one("SELECT min(seq) FROM audit_checkpoints", &[])
        .expect("first checkpoint")
        .get(0);
    let r = check(
        &mut sql,
        &format!(
            "UPDATE audit_checkpoints SET signature = CASE WHEN substr(signature, 1, 1) = '0' THEN '1' ELSE '0' END || substr(signature, 2) WHERE seq = {first}"
        ),
        "SELECT 1",
    );
    assert_eq!(r.bad_signatures, vec![u64::try_from(first).expect("seq")]);
    // Insertion: a forged record with a valid hash of its own after record 39.
    let mut forged = Entry::new(Event::Delivered, "2026-11-29T10:00:00.000039Z");
    forged.message_id = Some("m-forged".into());
    let prev: String = sql
        .query_one("SELECT hash FROM audit WHERE seq = 39", &[])
        .expect("hash")
        .get(0);
    let hash = wingspan_core::audit::record_hash(suite, "gw-test", &forged, &prev);
    sql.batch_execute("UPDATE audit SET seq = seq + 100000 WHERE seq >= 40; UPDATE audit SET seq = seq - 100000 + 1 WHERE seq >= 100000;").expect("shift");
    sql.execute(
        "INSERT INTO audit (seq, chain_id, event, at, message_id, prev_hash, hash) VALUES (40, 'gw-test', 'delivered', $1, 'm-forged', $2, $3)",
        &[&forged.at, &prev, &hash],
    )
    .expect("insert");
    assert_eq!(verify(&url).finding, Some(Finding::Inserted { seq: 40 }));
    if let Some(schema) = url.rsplit("%3D").next() {
        let _ = sql.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    }
}

/// With several instances, the shared tables are pruned by their windows, by the writer
/// while it idles: receipts and delivery states past the window go, a parked copy's state
/// stays while the copy may still be parked, a claim left by a dead instance goes after ten
/// leases and a fresh one stays. (A plain test: the synchronous client.)
#[test]
fn shared_receipts_states_and_stale_claims_are_pruned_by_their_windows() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (url, mut sql) = pg_schema();
    let dir = std::env::temp_dir().join(format!("wingspan-shared-{}", uuid::Uuid::new_v4()));
    let store = Store::open(
        &dir,
        AuditSetup {
            postgres: Some(url.clone()),
            ..setup()
        },
    )
    .expect("open");
    assert!(store.is_shared());
    let now = crate::audit::now();
    let old = "2020-01-01T00:00:00.000001Z";
    sql.batch_execute(&format!(
        "INSERT INTO receipts (source, message_id, message_type, correlation_unknown, destinations, accepted_at, instance) VALUES
           ('rehab', 'old', 't', false, '[\"police\"]', '{old}', 'gw-a'),
           ('rehab', 'new', 't', false, '[\"police\"]', '{now}', 'gw-a');
         INSERT INTO deliveries (source, message_id, destination, state, attempts, updated_at) VALUES
           ('rehab', 'old', 'police', 'delivered', 1, '{old}'),
           ('rehab', 'new', 'police', 'retrying', 2, '{now}'),
           ('rehab', 'parked', 'civil', 'dead-lettered', 8, '{now}');
         INSERT INTO claims (source, message_id, instance, claimed_at) VALUES
           ('rehab', 'stale', 'gw-gone', now() - interval '1 hour'),
           ('rehab', 'fresh', 'gw-b', now());"
    ))
    .expect("rows");
    let count = |sql: &mut postgres::Client, q: &str| -> i64 {
        sql.query_one(q, &[]).expect("count").get(0)
    };
    // Nothing goes before a window is set.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(count(&mut sql, "SELECT count(*) FROM receipts"), 2);
    store.retain(Retain {
        receipts_secs: 3600,
        deliveries_secs: 3600,
        parked_secs: 3600,
        audit_live_secs: 0,
    });
    let mut pruned = false;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if count(
            &mut sql,
            "SELECT count(*) FROM receipts WHERE message_id = 'old'",
        ) == 0
        {
            pruned = true;
            break;
        }
    }
    assert!(pruned, "the old receipt was not pruned");
    let kept = |sql: &mut postgres::Client, table: &str| -> Vec<String> {
        sql.query(
            &format!("SELECT message_id FROM {table} ORDER BY message_id"),
            &[],
        )
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert_eq!(kept(&mut sql, "receipts"), ["new"]);
    assert_eq!(kept(&mut sql, "deliveries"), ["new", "parked"]);
    assert_eq!(kept(&mut sql, "claims"), ["fresh"]);
    // The status of a kept message is read from the shared tables.
    let status = rt
        .block_on(store.status("new"))
        .expect("status")
        .expect("known");
    assert_eq!(status.destinations.len(), 1);
    assert_eq!(status.destinations[0].state, "retrying");
    // Claims quote what they are given (the intake's ids are checked before, but not here).
    let odd = "it's \\ '); DROP TABLE receipts; --";
    let claim = rt
        .block_on(store.claim("rehab", odd))
        .expect("claim")
        .expect("taken");
    assert!(claim.receipt.is_none());
    let claimed: Vec<String> = kept(&mut sql, "claims");
    assert_eq!(claimed, ["fresh", odd]);
    assert_eq!(
        rt.block_on(store.claim("rehab", "new"))
            .expect("claim")
            .expect("taken")
            .receipt
            .as_ref()
            .map(|r| r.destinations.clone()),
        Some(vec!["police".to_owned()])
    );
    drop(claim);
    drop(store);
    if let Some(schema) = url.rsplit("%3D").next() {
        let _ = sql.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A damaged last record is cut back at start, with a record saying so; the chain verifies.
#[tokio::test]
async fn a_damaged_tail_is_cut_back_with_a_recovery_record() {
    let dir = std::env::temp_dir().join(format!("wingspan-audit-{}", uuid::Uuid::new_v4()));
    {
        let store = Store::open(
            &dir,
            AuditSetup {
                checkpoint_every: 1000,
                ..setup()
            },
        )
        .expect("open");
        for i in 0..10 {
            store.audit(vec![entry(i)]).await.expect("append");
        }
        drop(store);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    {
        let c = Connection::open(dir.join("wingspan-state.db")).expect("open");
        // Drop the final checkpoint and tear the last record, as a crash mid-write would.
        c.execute_batch("DELETE FROM audit_checkpoints; UPDATE audit SET hash = substr(hash, 1, 10) WHERE seq = 10;").expect("tear");
    }
    let store = Store::open(&dir, setup()).expect("reopen");
    store.audit(vec![entry(11)]).await.expect("append");
    drop(store);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let c = Connection::open(dir.join("wingspan-state.db")).expect("open");
    let records = read_chain(&c, "gw-test").expect("records");
    assert_eq!(
        records.len(),
        11,
        "nine intact, the recovery record, the new one"
    );
    assert_eq!(records[9].entry.event, Event::Recovered);
    assert!(verify_db(&dir, Suite::default()).ok());
}

fn about(event: Event, id: &str, source: &str) -> Entry {
    let mut e = Entry::new(event, crate::audit::now());
    e.message_id = Some(id.to_owned());
    e.source = Some(source.to_owned());
    e
}

/// The events of a message's trail, in chain order.
fn trail_events(dir: &Path, id: &str) -> Vec<String> {
    let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
    read_trail(&conn, id)
        .expect("trail")
        .into_iter()
        .map(|r| r.entry.event.as_str().to_owned())
        .collect()
}

/// Every row of a query on the store's database.
fn rows<T>(
    dir: &Path,
    sql: &str,
    row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Vec<T> {
    let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
    conn.prepare(sql)
        .expect("prepare")
        .query_map([], row)
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// A message's records are found by its id through their thread: records written after a
/// reopen (the writer's memory of threads gone) join the thread; a message sent again is a
/// thread of its own; the same id from another source is another message.
#[tokio::test]
async fn a_messages_trail_is_found_through_its_thread() {
    let dir = std::env::temp_dir().join(format!("wingspan-threads-{}", uuid::Uuid::new_v4()));
    {
        let store = Store::open(&dir, setup()).expect("open");
        store
            .audit(vec![
                about(Event::Received, "m-1", "rehab"),
                about(Event::Accepted, "m-1", "rehab"),
                about(Event::Received, "m-1", "police"),
                about(Event::Received, "m-2", "rehab"),
            ])
            .await
            .expect("audit");
    }
    let store = Store::open(&dir, setup()).expect("reopen");
    store
        .audit(vec![
            about(Event::Delivered, "m-1", "rehab"),
            about(Event::Received, "m-1", "rehab"),
            about(Event::Duplicate, "m-1", "rehab"),
        ])
        .await
        .expect("audit");
    drop(store);
    assert_eq!(
        trail_events(&dir, "m-1"),
        [
            "received",
            "accepted",
            "received",
            "delivered",
            "received",
            "duplicate"
        ]
    );
    assert_eq!(trail_events(&dir, "m-2"), ["received"]);
    let threads: Vec<(i64, i64)> = rows(
        &dir,
        "SELECT seq, thread FROM audit WHERE message_id = 'm-1' ORDER BY seq",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    // rehab's m-1 (1), police's m-1 (3), the delivery joins rehab's after the reopen,
    // rehab's m-1 sent again (6) with its duplicate record.
    assert_eq!(threads, [(1, 1), (2, 1), (3, 3), (5, 1), (6, 6), (7, 6)]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A search by subject finds exactly that subject's records (two subjects sharing the
/// keyed 16-digit prefix are told apart by the whole value), through the keys' runs.
#[tokio::test]
async fn a_search_by_subject_uses_the_keys_and_compares_the_whole_value() {
    let dir = std::env::temp_dir().join(format!("wingspan-subjects-{}", uuid::Uuid::new_v4()));
    let (a, b) = (
        "0123456789abcdef".to_owned() + &"a".repeat(48),
        "0123456789abcdef".to_owned() + &"b".repeat(48),
    );
    {
        let store = Store::open(&dir, setup()).expect("open");
        let mut entries = Vec::new();
        for (i, subject) in [Some(&a), Some(&b), None, Some(&a)].into_iter().enumerate() {
            let mut e = about(Event::Received, &format!("m-{i}"), "rehab");
            e.subject_ref = subject.cloned();
            entries.push(e);
        }
        store.audit(entries).await.expect("audit");
    }
    let filter = crate::audit::Filter {
        subject_ref: Some(a.clone()),
        limit: 100,
        ..Default::default()
    };
    let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
    let mut src = crate::audit::AuditSource::Sqlite(conn);
    let found: Vec<String> = crate::audit::search(&mut src, &filter)
        .expect("search")
        .into_iter()
        .filter_map(|r| r.entry.message_id)
        .collect();
    assert_eq!(found, ["m-0", "m-3"]);
    let plan = |filter: &crate::audit::Filter| -> Vec<String> {
        let (conditions, args) =
            filter.conditions(&crate::audit::SQLITE_SUBJECT, |n| format!("?{}", n + 1));
        let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT seq FROM audit WHERE seq > ?1 AND {}",
            conditions.join(" AND ")
        );
        let mut stmt = conn.prepare(&sql).expect("plan");
        let params: Vec<String> = std::iter::once("0".to_owned()).chain(args).collect();
        stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
            r.get::<_, String>(3)
        })
        .expect("plan rows")
        .collect::<Result<_, _>>()
        .expect("plan")
    };
    let used = plan(&filter);
    assert!(keyed_plan(&used), "the keys are not used: {used:?}");
    // The subject key rotated: `b` is the person's reference under the new key, `a` under
    // the earlier one. Both are asked; the other person's ("0123…c…") is not found.
    let rotated = crate::audit::Filter {
        subject_ref: Some(b.clone()),
        earlier_subject_refs: vec![a.clone()],
        limit: 100,
        ..Default::default()
    };
    let found: Vec<String> = crate::audit::search(&mut src, &rotated)
        .expect("search")
        .into_iter()
        .filter_map(|r| r.entry.message_id)
        .collect();
    assert_eq!(found, ["m-0", "m-1", "m-3"]);
    let used = plan(&rotated);
    assert!(
        keyed_plan(&used),
        "the keys are not used for several references: {used:?}"
    );
    let record = |subject: &str| {
        let mut e = about(Event::Received, "m-x", "rehab");
        e.subject_ref = Some(subject.to_owned());
        wingspan_core::audit::Record {
            seq: 1,
            chain_id: "c".into(),
            entry: e,
            prev_hash: String::new(),
            hash: String::new(),
        }
    };
    assert!(rotated.matches(&record(&a)) && rotated.matches(&record(&b)));
    assert!(!rotated.matches(&record(&("0123456789abcdef".to_owned() + &"c".repeat(48)))));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Keys: a person's references under the current subject key and the earlier ones differ,
/// and each is the one `subject_ref` made under that key.
#[test]
fn earlier_subject_keys_give_the_persons_earlier_references() {
    let old = AuditKeys::from_parts(Suite::default(), SEED, b"old-subject").expect("keys");
    let new = AuditKeys::from_parts(Suite::default(), SEED, b"new-subject")
        .expect("keys")
        .with_earlier_subjects(vec![b"old-subject".to_vec()]);
    assert_ne!(new.subject_ref("3204"), old.subject_ref("3204"));
    assert_eq!(
        new.earlier_subject_refs("3204"),
        vec![old.subject_ref("3204")]
    );
}

/// A store written before the keys' runs, read (read-only, as `wingspan audit` reads) before
/// a gateway of this version has opened it: its records are found all the same.
#[tokio::test]
async fn a_store_without_keys_is_read_before_it_is_migrated() {
    let dir = std::env::temp_dir().join(format!("wingspan-unkeyed-{}", uuid::Uuid::new_v4()));
    {
        let store = Store::open(&dir, setup()).expect("open");
        let mut received = about(Event::Received, "m-1", "rehab");
        received.subject_ref = Some("ab".repeat(32));
        store
            .audit(vec![
                received,
                about(Event::Received, "m-2", "rehab"),
                about(Event::Delivered, "m-1", "rehab"),
            ])
            .await
            .expect("audit");
    }
    let path = dir.join("wingspan-state.db");
    Connection::open(&path)
        .expect("open")
        .execute_batch("DROP TABLE audit_keys; DROP TABLE audit_runs;")
        .expect("old shape");
    let mut src = crate::audit::Location::Sqlite(path.clone())
        .open()
        .expect("read-only");
    let events: Vec<String> = crate::audit::trail(&mut src, "m-1")
        .expect("trail")
        .into_iter()
        .map(|r| r.entry.event.as_str().to_owned())
        .collect();
    assert_eq!(events, ["received", "delivered"]);
    let found = crate::audit::search(
        &mut src,
        &crate::audit::Filter {
            subject_ref: Some("ab".repeat(32)),
            limit: 10,
            ..Default::default()
        },
    )
    .expect("search");
    assert_eq!(found.len(), 1);
    drop(src);
    let tables: i64 = rows(
        &dir,
        "SELECT count(*) FROM sqlite_master WHERE name IN ('audit_keys', 'audit_runs')",
        |r| r.get(0),
    )[0];
    assert_eq!(tables, 0, "a reader wrote to the store");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store written before threads (per-record indexes, no thread column) is migrated at
/// open: every record of a message is found by its id, and the chain still verifies.
#[tokio::test]
async fn a_store_from_before_threads_is_migrated() {
    let dir = std::env::temp_dir().join(format!("wingspan-prethreads-{}", uuid::Uuid::new_v4()));
    {
        let store = Store::open(&dir, setup()).expect("open");
        store
            .audit(vec![
                about(Event::Received, "m-1", "rehab"),
                about(Event::Received, "m-2", "rehab"),
                about(Event::Delivered, "m-1", "rehab"),
            ])
            .await
            .expect("audit");
    }
    // Back to the old shape.
    let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
    conn.execute_batch(
        "DROP INDEX audit_by_thread; DROP TABLE audit_keys; DROP TABLE audit_runs;
         ALTER TABLE audit DROP COLUMN thread;
         CREATE INDEX audit_by_message ON audit(message_id) WHERE message_id IS NOT NULL;
         CREATE INDEX audit_by_subject ON audit(subject_ref) WHERE subject_ref IS NOT NULL;
         CREATE INDEX audit_subjects ON audit(subject_ref);",
    )
    .expect("old shape");
    drop(conn);
    drop(Store::open(&dir, setup()).expect("migrated"));
    assert_eq!(trail_events(&dir, "m-1"), ["received", "delivered"]);
    let indexes: Vec<String> = rows(
        &dir,
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit' ORDER BY name",
        |r| r.get(0),
    );
    assert_eq!(indexes, ["audit_by_thread"]);
    assert_eq!(verify_db(&dir, Suite::default()).finding, None);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store from when receipts were keyed by message id (and parked copies' states named no
/// message type): its receipts move to acceptance order, duplicates are still found, the
/// parked list still names the message type, and pruning walks the moved rows.
#[tokio::test]
async fn a_store_with_receipts_keyed_by_message_id_is_migrated() {
    let dir = std::env::temp_dir().join(format!("wingspan-oldreceipts-{}", uuid::Uuid::new_v4()));
    drop(Store::open(&dir, setup()).expect("open"));
    let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
    conn.execute_batch(
        "DROP TABLE receipts; DROP TABLE retention_walk; DROP TABLE deliveries;
         CREATE TABLE receipts (
           source TEXT NOT NULL, message_id TEXT NOT NULL, message_type TEXT NOT NULL,
           correlation_id TEXT, destinations TEXT NOT NULL, delivered TEXT, accepted_at TEXT NOT NULL,
           correlation_unknown INTEGER,
           PRIMARY KEY (message_id, source)) WITHOUT ROWID;
         CREATE INDEX receipts_by_correlation ON receipts(correlation_id) WHERE correlation_id IS NOT NULL;
         CREATE INDEX receipts_by_time ON receipts(accepted_at);
         CREATE TABLE retention_cursor (
           id INTEGER PRIMARY KEY CHECK (id = 1), accepted_at TEXT NOT NULL, message_id TEXT NOT NULL,
           source TEXT NOT NULL);
         CREATE TABLE deliveries (
           source TEXT NOT NULL, message_id TEXT NOT NULL, destination TEXT NOT NULL,
           state TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, updated_at TEXT NOT NULL,
           PRIMARY KEY (message_id, source, destination)) WITHOUT ROWID;
         INSERT INTO receipts VALUES
           ('rehab', 'z-late', 'referral.handover', NULL, '[\"hr\"]', NULL, '2026-01-01T00:00:03Z', NULL),
           ('rehab', 'a-early', 'referral.handover', NULL, '[\"hr\"]', NULL, '2026-01-01T00:00:01Z', NULL),
           ('police', 'm-reply', 'enforcement.material.reply', 'a-early', '[\"rehab-inbox\"]', NULL, '2026-01-01T00:00:02Z', NULL);
         INSERT INTO retention_cursor VALUES (1, '2026-01-01T00:00:01Z', 'a-early', 'rehab');
         INSERT INTO deliveries VALUES
           ('rehab', 'a-early', 'hr', 'dead-lettered', 8, 'refused', '2026-01-01T00:00:05Z');",
    )
    .expect("old shape");
    drop(conn);
    let store = Store::open(&dir, setup()).expect("migrated");
    let order: Vec<(i64, String)> = rows(
        &dir,
        "SELECT id, message_id FROM receipts ORDER BY id",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    assert_eq!(
        order,
        [
            (1, "a-early".to_owned()),
            (2, "m-reply".to_owned()),
            (3, "z-late".to_owned())
        ],
        "receipts in acceptance order"
    );
    let found = store.receipt("rehab", "z-late").await.expect("lookup");
    assert_eq!(found.map(|r| r.destinations), Some(vec!["hr".to_owned()]));
    assert_eq!(
        store.receipt("police", "z-late").await.expect("lookup"),
        None
    );
    assert!(store.known("m-reply").await.expect("known"));
    let status = store
        .status("a-early")
        .await
        .expect("status")
        .expect("found");
    assert_eq!(
        status.replies.len(),
        1,
        "the reply is still found by correlation"
    );
    let parked = store
        .read(|c| Ok(dead_letters(c, None)?))
        .await
        .expect("parked");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].message_type.as_deref(), Some("referral.handover"));
    let tables: Vec<String> = rows(
        &dir,
        "SELECT name FROM sqlite_master WHERE name IN ('retention_cursor', 'receipts_by_time',
           'receipts_by_message_id', 'retention_walk', 'receipts_by_correlation') ORDER BY name",
        |r| r.get(0),
    );
    assert_eq!(tables, ["receipts_by_correlation", "retention_walk"]);
    // The same message again is a duplicate: the writer keeps the first receipt.
    store
        .put_receipt(receipt("z-late", None, &[]), Vec::new(), None)
        .await
        .expect("put");
    let n: Vec<i64> = rows(
        &dir,
        "SELECT count(*) FROM receipts WHERE message_id = 'z-late'",
        |r| r.get(0),
    );
    assert_eq!(n, [1]);
    // A window that has passed for all three prunes them, from the index too.
    store.retain(Retain {
        receipts_secs: 1,
        deliveries_secs: 1,
        parked_secs: 1_000_000_000,
        audit_live_secs: 0,
    });
    let started = std::time::Instant::now();
    while store.known("z-late").await.expect("known") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "not pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!store.known("a-early").await.expect("known"));
    assert_eq!(
        store.receipt("rehab", "z-late").await.expect("lookup"),
        None
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn receipt(id: &str, correlation: Option<&str>, delivered: &[&str]) -> NewReceipt {
    NewReceipt {
        source: "rehab".into(),
        message_id: id.into(),
        message_type: "referral.handover".into(),
        correlation_id: correlation.map(str::to_owned),
        correlation_unknown: false,
        destinations: vec!["aftercare-3204".into(), "hr".into(), "partner".into()],
        delivered: delivered.iter().map(|d| d.to_string()).collect(),
        claim: None,
    }
}

/// A message's early audit records fail in one batch (the store is full), the cap is
/// lifted, and its receipt comes in the next: the receipt is refused too, so the message
/// is never acknowledged with a trail that lacks its first records.
#[tokio::test]
async fn a_receipt_whose_early_records_failed_is_refused() {
    let dir = std::env::temp_dir().join(format!("wingspan-early-{}", uuid::Uuid::new_v4()));
    let store = Store::open(&dir, setup()).expect("open");
    store
        .limit_pages(Some(store.pages().expect("pages")))
        .await
        .expect("cap");
    let early: Vec<Entry> = (0..200)
        .map(|_| about(Event::Received, "m-1", "rehab"))
        .collect();
    let mut queued = store.audit_enqueue(early).await.expect("enqueue");
    assert!(
        (&mut queued.outcome).await.expect("answer").is_err(),
        "the full store must refuse the early records"
    );
    store.limit_pages(None).await.expect("lift");
    let refused = store
        .put_receipt(receipt("m-1", None, &[]), Vec::new(), Some(&queued))
        .await;
    assert!(
        refused.is_err(),
        "receipt committed without its early records"
    );
    assert_eq!(store.receipt("rehab", "m-1").await.expect("lookup"), None);
    // The same receipt without the dependency, and another message's whole path, commit.
    let next = store
        .audit_enqueue(vec![about(Event::Received, "m-2", "rehab")])
        .await
        .expect("enqueue");
    store
        .put_receipt(receipt("m-2", None, &[]), Vec::new(), Some(&next))
        .await
        .expect("m-2 receipt");
    assert!(next.outcome.await.expect("answer").is_ok());
    assert!(
        store
            .receipt("rehab", "m-2")
            .await
            .expect("lookup")
            .is_some()
    );
    drop(store);
    assert_eq!(trail_events(&dir, "m-2"), ["received"]);
    assert!(trail_events(&dir, "m-1").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn receipts_status_and_replies_survive_a_reopen() {
    let dir = std::env::temp_dir().join(format!("wingspan-store-{}", uuid::Uuid::new_v4()));
    let store = Store::open(&dir, setup()).expect("open");
    assert_eq!(store.receipt("rehab", "m-1").await.expect("lookup"), None);
    store
        .put_receipt(receipt("m-1", None, &["partner"]), Vec::new(), None)
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
        .put_receipt(receipt("r-1", Some("m-1"), &[]), Vec::new(), None)
        .await
        .expect("put reply");
    drop(store);

    let store = Store::open(&dir, setup()).expect("reopen");
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

/// With a one-second window, a running store prunes receipts and delivery states by
/// itself (the idle writer), keeps a parked copy's state, and a message sent again after
/// the window is new; one accepted meanwhile is still a duplicate.
#[tokio::test]
async fn a_running_store_prunes_past_its_windows_and_the_same_id_is_new_after_them() {
    let dir = std::env::temp_dir().join(format!("wingspan-prune-{}", uuid::Uuid::new_v4()));
    let store = Store::open(&dir, setup()).expect("open");
    store.retain(Retain {
        receipts_secs: 1,
        deliveries_secs: 1,
        parked_secs: 3600,
        audit_live_secs: 0,
    });
    for id in ["m-1", "m-2"] {
        store
            .put_receipt(receipt(id, None, &[]), Vec::new(), None)
            .await
            .expect("put");
        store.delivery("rehab", id, "hr", DeliveryState::Delivered, 1, None);
    }
    store.delivery(
        "rehab",
        "m-2",
        "partner",
        DeliveryState::DeadLettered,
        3,
        None,
    );
    assert!(
        store
            .receipt("rehab", "m-1")
            .await
            .expect("lookup")
            .is_some()
    );
    // Past the window (whole seconds) and an idle writer's pass or two.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store
        .receipt("rehab", "m-1")
        .await
        .expect("lookup")
        .is_some()
    {
        assert!(std::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    store
        .put_receipt(receipt("m-3", None, &[]), Vec::new(), None)
        .await
        .expect("put");
    let (receipts, states, parked): (i64, i64, i64) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT count(*) FROM receipts WHERE message_id IN ('m-1', 'm-2')),
                        (SELECT count(*) FROM deliveries WHERE state = 'delivered'),
                        (SELECT count(*) FROM deliveries WHERE state = 'dead-lettered')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .await
        .expect("read");
    assert_eq!(
        (receipts, states, parked),
        (0, 0, 1),
        "the parked state stays"
    );
    assert!(
        store
            .receipt("rehab", "m-3")
            .await
            .expect("lookup")
            .is_some()
    );
    assert_eq!(
        store
            .status("m-1")
            .await
            .expect("status")
            .map(|s| s.message_id),
        None
    );
    assert_eq!(store.times().pruned[0], 2, "receipts pruned, counted");
    // The same id again is a new message: accepted, and found.
    store
        .put_receipt(receipt("m-1", None, &[]), Vec::new(), None)
        .await
        .expect("put again");
    assert!(
        store
            .receipt("rehab", "m-1")
            .await
            .expect("lookup")
            .is_some()
    );
}

/// Pruning under load: while four writers keep putting receipts (with states) for four
/// seconds, a one-second window prunes behind them; every put succeeds, no receipt inside
/// the window is lost, and the oldest are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_under_load_loses_nothing_inside_the_window() {
    let dir = std::env::temp_dir().join(format!("wingspan-prune-load-{}", uuid::Uuid::new_v4()));
    let store = Store::open(&dir, setup()).expect("open");
    store.retain(Retain {
        receipts_secs: 1,
        deliveries_secs: 1,
        parked_secs: 1,
        audit_live_secs: 0,
    });
    let started = std::time::Instant::now();
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut put = Vec::new();
            let mut i = 0;
            while started.elapsed() < std::time::Duration::from_secs(4) {
                let id = format!("w{w}-{i:06}");
                store
                    .put_receipt(receipt(&id, None, &[]), Vec::new(), None)
                    .await
                    .expect("a put failed while pruning");
                store.delivery("rehab", &id, "hr", DeliveryState::Delivered, 1, None);
                put.push((id, started.elapsed()));
                i += 1;
            }
            put
        }));
    }
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.expect("writer"));
    }
    let ended = started.elapsed();
    assert!(
        all.len() > 1000,
        "too little load to mean anything: {}",
        all.len()
    );
    // Accepted within the last half second: certainly inside the window (whole seconds).
    for (id, at) in all
        .iter()
        .filter(|(_, at)| ended - *at < std::time::Duration::from_millis(500))
    {
        assert!(
            store.receipt("rehab", id).await.expect("lookup").is_some(),
            "{id}, accepted {:?} before the end, was pruned inside its window",
            ended - *at
        );
    }
    // The first second's are gone by now, or within the next idle passes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (first, _) = &all[0];
    while store
        .receipt("rehab", first)
        .await
        .expect("lookup")
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the oldest were never pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(store.times().pruned[0] > 0 && store.times().pruned[1] > 0);
}

/// Whether a query plan finds audit records through the keys' runs (a search of their
/// primary key per run) and reads no whole table: the audit records by range or row id only.
fn keyed_plan(plan: &[String]) -> bool {
    plan.iter()
        .any(|l| l.contains("USING PRIMARY KEY (run=? AND key=?)"))
        && !plan.iter().any(|l| {
            l.starts_with("SCAN ") && !l.contains("audit_runs") && !l.starts_with("SCAN r")
        })
}

/// The keys are written in runs as records accumulate; a message's thread and a person's
/// records are found whether their keys are in a run or not yet (the newest records), a
/// thread in a run is joined by a later record after a reopen, and runs leave once their
/// records have.
#[tokio::test]
async fn audit_keys_in_sorted_runs_find_threads_and_subjects() {
    let dir = std::env::temp_dir().join(format!("wingspan-keys-{}", uuid::Uuid::new_v4()));
    let run = usize::try_from(keys::RUN_RECORDS).expect("run");
    // Two records a message: 2.5 runs' worth of records.
    let messages = run + run / 4;
    let subject = |i: usize| wingspan_core::audit::sha256_hex(format!("person-{i}").as_bytes());
    {
        let store = Store::open(&dir, setup()).expect("open");
        let mut entries = Vec::new();
        for i in 0..messages {
            let mut received = about(Event::Received, &format!("m-{i}"), "rehab");
            if i % 5 == 0 {
                received.subject_ref = Some(subject(i));
            }
            entries.push(received);
            entries.push(about(Event::Delivered, &format!("m-{i}"), "rehab"));
            if entries.len() >= 4096 {
                store
                    .audit(std::mem::take(&mut entries))
                    .await
                    .expect("audit");
            }
        }
        store.audit(entries).await.expect("audit");
    }
    let runs: Vec<(i64, i64)> = rows(
        &dir,
        "SELECT first_seq, last_seq FROM audit_runs ORDER BY run",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    let r = keys::RUN_RECORDS;
    assert_eq!(runs, [(1, r), (r + 1, 2 * r)]);
    // In the first run, in the second, after both.
    let (early, middle, late) = (3, run / 2 + 10, messages - 2);
    {
        let store = Store::open(&dir, setup()).expect("reopen");
        store
            .audit(vec![about(
                Event::RetryScheduled,
                &format!("m-{early}"),
                "rehab",
            )])
            .await
            .expect("audit");
    }
    assert_eq!(
        trail_events(&dir, &format!("m-{early}")),
        ["received", "delivered", "retry_scheduled"]
    );
    for i in [middle, late] {
        assert_eq!(
            trail_events(&dir, &format!("m-{i}")),
            ["received", "delivered"]
        );
    }
    let threads: Vec<(i64, i64)> = rows(
        &dir,
        &format!("SELECT seq, thread FROM audit WHERE message_id = 'm-{early}' ORDER BY seq"),
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    assert_eq!(threads.len(), 3);
    assert!(
        threads.iter().all(|&(_, t)| t == threads[0].0),
        "{threads:?}"
    );
    let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
    let mut src = crate::audit::AuditSource::Sqlite(conn);
    for i in [0, 5, (run / 2 + 10) / 5 * 5, messages - 5] {
        let found: Vec<String> = crate::audit::search(
            &mut src,
            &crate::audit::Filter {
                subject_ref: Some(subject(i)),
                limit: 100,
                ..Default::default()
            },
        )
        .expect("search")
        .into_iter()
        .filter_map(|r| r.entry.message_id)
        .collect();
        assert_eq!(found, [format!("m-{i}")]);
    }
    // The lookups' plans: one search of the keys per run, no whole table read.
    let conn = Connection::open(dir.join("wingspan-state.db")).expect("open");
    let plan = |sql: &str| -> Vec<String> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan")
            .query_map(["m-3"], |r| r.get::<_, String>(3))
            .expect("plan rows")
            .collect::<Result<_, _>>()
            .expect("plan")
    };
    let trail = plan(&format!(
        "SELECT seq FROM audit WHERE thread IN ({})",
        crate::audit::sqlite::threads_of("?1")
    ));
    assert!(keyed_plan(&trail), "{trail:?}");
    let subjects = plan(&format!(
        "SELECT seq FROM audit WHERE seq > 0 AND {}",
        crate::audit::SQLITE_SUBJECT.replace('?', "?1")
    ));
    assert!(keyed_plan(&subjects), "{subjects:?}");
    // The first run's records leave the live store: so does the run, and only it.
    conn.execute("DELETE FROM audit WHERE seq <= ?1", [r])
        .expect("delete");
    assert_eq!(keys::prune(&conn, Some(r + 1)).expect("prune"), 1);
    let left: Vec<(i64, i64)> = rows(&dir, "SELECT min(run), count(*) FROM audit_keys", |row| {
        Ok((row.get(0)?, row.get(1)?))
    });
    assert_eq!(left[0].0, 2);
    assert_eq!(
        trail_events(&dir, &format!("m-{middle}")),
        ["received", "delivered"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
