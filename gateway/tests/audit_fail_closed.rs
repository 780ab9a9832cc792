//! Fail closed: when the audit store cannot take records (full), the gateway stops accepting
//! within a second — 503 with Retry-After, nothing acknowledged, nothing delivered — and
//! resumes by itself once there is room; the chain verifies afterwards.

mod support;

use std::time::{Duration, Instant};

use support::{World, eventually, post};
use wingspan_sim::samples;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_store_stops_intake_and_intake_resumes_when_there_is_room() {
    let world = World::new("failclosed", false).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    assert_eq!(
        post(&client, &base, &samples::material_submit(1)).await.0,
        202
    );

    // No room for one more page.
    let pages = gateway.store.pages().expect("pages");
    gateway.store.limit_pages(Some(pages)).await.expect("cap");
    let started = Instant::now();
    let mut refused = None;
    for i in 2..200 {
        let (status, _) = post(&client, &base, &samples::material_submit(i)).await;
        if status == 503 {
            refused = Some(started.elapsed());
            break;
        }
        assert_eq!(status, 202);
    }
    let refused = refused.expect("the gateway kept accepting into a full store");
    assert!(
        refused < Duration::from_secs(1),
        "fail closed took {refused:?}"
    );
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(wingspan_sim::dev_token("rehab"))
        .json(&samples::material_submit(500))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let accepted_before = world.partner("police").accepted_count();

    // Room again: the very next message is accepted and delivered.
    gateway.store.limit_pages(None).await.expect("lift");
    let m = samples::material_submit(600);
    let mut status = 0;
    for _ in 0..50 {
        status = post(&client, &base, &m).await.0;
        if status == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 202, "intake resumed by itself");
    let police = world.partner("police");
    assert!(
        eventually(Duration::from_secs(10), || police.accepted_count()
            > accepted_before)
        .await
    );
    let loaded = world.load();
    gateway.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = wingspan::audit::open_store(&loaded).expect("store");
    let key = wingspan::audit::trusted_key(&loaded, None).expect("key");
    for report in wingspan::audit::verify_store(&mut conn, &key).expect("verify") {
        assert!(report.ok(), "{report:?}");
    }
    world.cleanup().await;
}
