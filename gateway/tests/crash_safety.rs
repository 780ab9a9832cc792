//! Crash safety: 5,000 messages in flight, the gateway process SIGKILLed twice and restarted.
//! Every message reaches its partner; each partner (which treats a repeated Idempotency-Key as
//! already done) records each message id exactly once. The test reports how many repeated
//! deliveries the gateway sent: those in flight at the moment of each kill.
//! Finally SIGTERM stops the gateway gracefully with exit code 0.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{World, eventually, publish_to_queue};
use wingspan::broker::Names;
use wingspan_sim::samples;

const N: usize = 5_000;

fn spawn(world: &World) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(["run", "--config"])
        .arg(&world.config_file)
        .env("WINGSPAN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gateway")
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_twice_loses_nothing_and_partners_see_each_message_once() {
    let world = World::new("crash", false).await;
    let names = Names::new(&world.prefix);

    // Declare the topology by starting once, then fill the ingress queue while it is down.
    let mut gw = spawn(&world);
    let police = world.partner("police");
    let hospital = world.partner("hospital-ma01");
    let warm = samples::material_submit(0);
    // Wait for the topology: publishing to a missing queue would be dropped by the broker.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_queues", "name"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&names.ingress()))
            .unwrap_or(false);
        if ok || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(&gw, "-KILL");
    let _ = gw.wait();

    let mut bodies = vec![serde_json::to_vec(&warm).expect("json")];
    for i in 1..N as u64 {
        let m = if i % 2 == 0 {
            samples::material_submit(i)
        } else {
            samples::consultation_request(i, "ma01", "routine")
        };
        bodies.push(serde_json::to_vec(&m).expect("json"));
    }
    publish_to_queue(&names.ingress(), &bodies).await;
    let expected_police = bodies
        .iter()
        .filter(|b| b.windows(11).any(|w| w == b"enforcement"))
        .count();
    let expected_hospital = N - expected_police;

    let delivered = || police.accepted_count() + hospital.accepted_count();
    let mut kills = Vec::new();
    for threshold in [N / 5, N / 2] {
        gw = spawn(&world);
        assert!(
            eventually(Duration::from_secs(120), || delivered() >= threshold).await,
            "progress before kill: {}",
            delivered()
        );
        kills.push(delivered());
        signal(&gw, "-KILL");
        let _ = gw.wait();
    }
    gw = spawn(&world);
    let all = eventually(Duration::from_secs(180), || {
        police.accepted_count() == expected_police && hospital.accepted_count() == expected_hospital
    })
    .await;
    assert!(
        all,
        "every message delivered: police {}/{expected_police}, hospital {}/{expected_hospital}",
        police.accepted_count(),
        hospital.accepted_count()
    );

    // Graceful stop.
    signal(&gw, "-TERM");
    let started = Instant::now();
    let code = loop {
        if let Some(status) = gw.try_wait().expect("wait") {
            break status.code();
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "SIGTERM did not stop the gateway"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, Some(0), "graceful shutdown exits 0");

    // The audit trail after two SIGKILLs: the chain verifies, and every message the partners
    // received has its accepted, routed and delivered records.
    let out = Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(["audit", "verify", "--config"])
        .arg(&world.config_file)
        .output()
        .expect("audit verify");
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded = world.load();
    let wingspan::audit::AuditSource::Sqlite(conn) =
        wingspan::audit::open_store(&loaded).expect("audit store")
    else {
        panic!("the crash test runs on the embedded store");
    };
    let count = |condition: &str| -> usize {
        conn.query_row(
            &format!("SELECT count(DISTINCT message_id) FROM audit WHERE {condition}"),
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| usize::try_from(n).unwrap_or(0))
        .expect("count")
    };
    // Accepted and routed: the received record's outcome and destinations.
    for condition in [
        "event = 'received' AND outcome = 'accepted' AND destination <> ''",
        "event = 'delivered'",
    ] {
        assert_eq!(
            count(condition),
            N,
            "messages with a record where {condition}"
        );
    }
    let redeliveries: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE (event = 'delivery_attempt' OR (event = 'delivered' AND payload_sha256 IS NOT NULL)) AND reason LIKE '%redelivery'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    println!(
        "audit after the kills: chain verifies; attempts marked as redeliveries: {redeliveries}"
    );

    for p in [police, hospital] {
        let by_key = p.deliveries_by_key();
        assert_eq!(by_key.len(), p.accepted_count(), "each id accepted once");
    }
    let repeats = police.repeats() + hospital.repeats();
    println!(
        "crash safety: {N} messages, SIGKILL at {kills:?} delivered; repeated deliveries sent by the gateway: {repeats} (absorbed by Idempotency-Key), lost: 0"
    );
    // Only what was in flight can be repeated: bounded by the prefetch windows, not by N.
    assert!(
        repeats < 2 * 600,
        "repeats {repeats} exceed what can be in flight at two kills"
    );

    world.cleanup().await;
}
