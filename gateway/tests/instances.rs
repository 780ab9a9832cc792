//! Two instances sharing one PostgreSQL store (the audit trail, receipts, claims and delivery
//! states): an upstream retry that reaches the other instance gets `200` with the original
//! receipt and nothing is delivered twice; a message another instance is accepting now is
//! answered 409 with `Retry-After`, and a claim left by a dead instance is taken over after
//! its lease; either instance answers a status query about a message the other accepted.

mod support;

use std::time::Duration;

use support::{World, eventually, post, status_of};
use wingspan::{Gateway, GatewayOptions};
use wingspan_sim::samples;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_at_another_instance_is_a_duplicate_and_delivered_once() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,lapin=off,tokio_postgres=off,postgres=off")
        .with_test_writer()
        .try_init();
    let url = tokio::task::spawn_blocking(support::pg_schema)
        .await
        .expect("schema");
    let world = World::new("instances", false).await;
    world.rewrite(|t| t.replacen("[audit]\n", &format!("[audit]\nstore = {url:?}\n"), 1));
    let (a, base_a) = world.start_gateway().await;
    // The second instance: same config, broker names and partners; its own name and state.
    let text = std::fs::read_to_string(&world.config_file).expect("config");
    let b_text = text
        .replace(
            &format!("instance = \"{}\"", world.prefix),
            &format!("instance = \"{}-b\"", world.prefix),
        )
        .replace(
            &format!("{:?}", world.dir.join("state").display().to_string()),
            &format!("{:?}", world.dir.join("state-b").display().to_string()),
        );
    assert_ne!(b_text, text);
    let b_file = world.dir.join("wingspan-b.toml");
    std::fs::write(&b_file, b_text).expect("config b");
    let loaded = wingspan::load::load(&b_file).expect("config b loads");
    let b = Gateway::start(&loaded, GatewayOptions::default())
        .await
        .expect("instance b");
    assert!(
        b.wait_ready(Duration::from_secs(10)).await,
        "broker session"
    );
    assert!(a.store.is_shared() && b.store.is_shared());
    let base_b = format!("http://{}", b.http_addr.expect("http"));
    let client = reqwest::Client::new();

    // Accepted at A; the upstream's retry goes to B: the original receipt, nothing published.
    let m = samples::material_submit(1);
    let id = m["message_id"].as_str().expect("id").to_owned();
    let (status, first) = post(&client, &base_a, &m).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = post(&client, &base_b, &m).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["destinations"], first["destinations"]);
    assert_eq!(first["destinations"], serde_json::json!(["police"]));
    let police = world.partner("police");
    assert!(eventually(Duration::from_secs(20), || police.accepted_count() == 1).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((police.posts(), police.repeats()), (1, 0), "one copy");

    // B answers for the message A accepted, delivery states included.
    let mut delivered = false;
    for _ in 0..50 {
        let st = status_of(&client, &base_b, &id).await;
        if st["destinations"]
            .as_array()
            .is_some_and(|d| !d.is_empty() && d.iter().all(|x| x["state"] == "delivered"))
        {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "{}", status_of(&client, &base_b, &id).await);

    // Another instance is accepting a message now (its claim is fresh): 409, Retry-After.
    let m2 = samples::material_submit(2);
    let id2 = m2["message_id"].as_str().expect("id").to_owned();
    let source = m2["source"].as_str().expect("source").to_owned();
    let sql = |statement: String| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                c.batch_execute(&statement).expect("sql");
            })
            .await
            .expect("sql task");
        }
    };
    sql(format!(
        "INSERT INTO claims (source, message_id, instance, claimed_at) VALUES ('{source}', '{id2}', 'gw-elsewhere', now())"
    ))
    .await;
    let r = client
        .post(format!("{base_b}/v1/messages"))
        .bearer_auth(wingspan_sim::dev_token(&source))
        .json(&m2)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 409);
    assert!(r.headers().contains_key("retry-after"));
    // That instance died: once its lease has run out, the claim is taken over.
    sql(format!(
        "UPDATE claims SET claimed_at = now() - interval '{} seconds' WHERE message_id = '{id2}'",
        wingspan::store::LEASE_SECS as u64 + 1
    ))
    .await;
    assert_eq!(post(&client, &base_b, &m2).await.0, 202);
    assert_eq!(post(&client, &base_a, &m2).await.0, 200);
    // The receipt's commit took the claim with it; the duplicate's claim was given back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url2 = url.clone();
    let claims: i64 = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url2, postgres::NoTls).expect("connect");
        c.query_one("SELECT count(*) FROM claims", &[])
            .expect("count")
            .get(0)
    })
    .await
    .expect("count task");
    assert_eq!(claims, 0, "claims left behind");
    assert!(
        eventually(Duration::from_secs(20), || police.accepted_count() == 2).await,
        "the second message delivered"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((police.posts(), police.repeats()), (2, 0));

    b.shutdown().await;
    a.shutdown().await;
    world.cleanup().await;
    let _ = tokio::task::spawn_blocking(move || support::pg_drop(&url)).await;
}
