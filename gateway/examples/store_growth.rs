//! How the state store's write rate holds up as it grows: the soak's per-message writes
//! (receipt + five audit records, as intake and delivery write them, + a delivery state), from 512 concurrent tasks, at full speed.
//!
//! `cargo run --release -p wingspan --example store_growth -- [MESSAGES] [DIR]`
//! prints one line per 200,000 messages: rate, database and log size.

use std::sync::Arc;
use std::time::Instant;

use wingspan::audit::AuditKeys;
use wingspan::store::{AuditSetup, DeliveryState, NewReceipt, Store};
use wingspan_core::audit::{Entry, Event};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let dir = std::path::PathBuf::from(
        args.next()
            .unwrap_or_else(|| format!("/tmp/wingspan-store-growth-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let setup = AuditSetup {
        chain_id: "growth".into(),
        postgres: None,
        keys: Arc::new(
            AuditKeys::from_parts(
                wingspan_core::audit::Suite::default(),
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                b"subject",
            )
            .expect("keys"),
        ),
        checkpoint_every: 10_000,
        checkpoint_secs: 60,
        archive: None,
    };
    let store = Store::open(&dir, setup).expect("open");
    const TASKS: usize = 512;
    const CHUNK: usize = 200_000;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (store, next, done) = (store.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                one(&store, i).await;
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let mut last = (Instant::now(), 0usize);
    while done.load(std::sync::atomic::Ordering::Relaxed) < total {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let n = done.load(std::sync::atomic::Ordering::Relaxed);
        if n - last.1 >= CHUNK || n >= total {
            let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
            let size = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()) >> 20;
            println!(
                "{n:>9} msgs  {rate:>7.0} msg/s  db {:>6} MiB  wal {:>4} MiB  {:>5.0} s",
                size("wingspan-state.db"),
                size("wingspan-state.db-wal"),
                started.elapsed().as_secs_f64()
            );
            last = (Instant::now(), n);
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "total {total} in {:.0} s: {:.0} msg/s, {} bytes per message",
        started.elapsed().as_secs_f64(),
        total as f64 / started.elapsed().as_secs_f64(),
        std::fs::metadata(dir.join("wingspan-state.db")).map_or(0, |m| m.len()) / total as u64
    );
}

fn entry(event: Event, i: usize, sub: &str) -> Entry {
    let mut e = Entry::new(event, "2026-11-30T07:00:00.000000Z");
    e.message_id = Some(format!("{:032x}", hash(i)));
    e.source = Some("rehab".into());
    e.message_type = Some("treatment.admission".into());
    e.actor = Some("gateway".into());
    if event == Event::Received {
        // Received, accepted and routed: one record, as intake writes it.
        e.subject_ref = Some(sub.to_owned());
        e.outcome = Some(wingspan_core::audit::ACCEPTED.into());
        e.destination = Some("hospital".into());
        e.reason = Some("admissions".into());
    }
    if matches!(event, Event::Received | Event::Delivered) {
        e.payload_sha256 = Some(format!("{:064x}", hash(i).wrapping_mul(3)));
    }
    e
}

fn hash(i: usize) -> u128 {
    let x = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    x ^ (x >> 61)
}

async fn one(store: &Store, i: usize) {
    let sub = store.subject_ref(&format!("person-{}", i % 50_000));
    let id = format!("{:032x}", hash(i));
    let early = vec![entry(Event::Received, i, &sub)];
    let early = store.audit_enqueue(early).await.expect("enqueue");
    store
        .put_receipt(
            NewReceipt {
                source: "rehab".into(),
                message_id: id.clone(),
                message_type: "treatment.admission".into(),
                correlation_id: None,
                correlation_unknown: false,
                destinations: vec!["hospital".into()],
                delivered: vec![],
                claim: None,
            },
            vec![],
            Some(&early),
        )
        .await
        .expect("receipt");
    early.outcome.await.expect("early").expect("early");
    // The attempt that delivered: one record, as a delivery worker writes it.
    let mut delivered = entry(Event::Delivered, i, &sub);
    delivered.destination = Some("hospital".into());
    delivered.outcome = Some("delivered".into());
    delivered.reason = Some("attempt 1".into());
    store.audit(vec![delivered]).await.expect("audit");
    store.delivery("rehab", &id, "hospital", DeliveryState::Delivered, 1, None);
}
