//! Who may send: mutual TLS, bearer tokens, no source speaking for another (HTTP and AMQP),
//! and per-source rate limits that keep one source's flood from slowing the others.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};
use support::pki::{self, Ca};
use support::{AMQP, World, drain_until};
use wingspan_sim::{dev_token, samples};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_tokens_authenticate_and_no_source_speaks_for_another() {
    let world = World::new("tls", false).await;
    let ca = Ca::new("wingspan test sources CA");
    let section = pki::tls_section(&ca, &world.dir);
    world.rewrite(|t| t + &section);
    let (gateway, plain) = world.start_gateway().await;
    let https = format!(
        "https://127.0.0.1:{}/v1/messages",
        gateway.tls_addr.expect("HTTPS listener").port()
    );
    let post = |client: reqwest::Client, body: Value, token: Option<&str>| {
        let url = https.clone();
        let token = token.map(str::to_owned);
        async move {
            let mut req = client.post(url).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await
        }
    };

    // A client certificate naming rehab (its SAN): accepted as rehab.
    let rehab = pki::client(&ca, Some(&ca.client("rehab")));
    let r = post(rehab.clone(), samples::material_submit(1), None)
        .await
        .expect("mTLS post");
    assert_eq!(r.status(), 202, "{:?}", r.text().await);

    // No certificate, rehab's bearer token: accepted.
    let anonymous_tls = pki::client(&ca, None);
    let r = post(
        anonymous_tls.clone(),
        samples::material_submit(2),
        Some(&dev_token("rehab")),
    )
    .await
    .expect("token post");
    assert_eq!(r.status(), 202);

    // Neither: 401 with a challenge. A token no source has: 401.
    let r = post(anonymous_tls.clone(), samples::material_submit(3), None)
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(
        r.json::<Value>().await.expect("json")["type"],
        "/problems/unauthenticated"
    );
    let r = post(
        anonymous_tls.clone(),
        samples::material_submit(3),
        Some("not-a-token"),
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 401);

    // A valid certificate whose identity no source claims: 403.
    let stranger = pki::client(&ca, Some(&ca.client("stranger.example")));
    let r = post(stranger, samples::material_submit(4), None)
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["type"],
        "/problems/unknown-identity"
    );

    // rehab's certificate, an envelope naming police: 403, nothing accepted.
    let mut spoofed = samples::material_submit(5);
    spoofed["source"] = json!("police");
    let r = post(rehab.clone(), spoofed, None).await.expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["type"],
        "/problems/source-mismatch"
    );

    // An expired certificate and one from another CA never finish the handshake.
    let expired = pki::client(&ca, Some(&ca.expired_client("rehab")));
    assert!(
        post(expired, samples::material_submit(6), None)
            .await
            .is_err(),
        "an expired certificate was accepted"
    );
    let other_ca = Ca::new("someone else's CA");
    let foreign = pki::client(&ca, Some(&other_ca.client("rehab")));
    assert!(
        post(foreign, samples::material_submit(7), None)
            .await
            .is_err(),
        "a certificate from another CA was accepted"
    );

    // And the gateway kept serving throughout, on both listeners.
    let r = post(rehab, samples::material_submit(8), None)
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    let (status, _) = support::post(
        &reqwest::Client::new(),
        &plain,
        &samples::material_submit(9),
    )
    .await;
    assert_eq!(status, 202);

    // Every refusal the gateway saw is audited (handshake failures happen before HTTP).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reasons: Vec<String> = support::rejected_reasons(&gateway)
        .await
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    for slug in ["unauthenticated", "unknown-identity", "source-mismatch"] {
        assert!(reasons.iter().any(|r| r == slug), "{slug}: {reasons:?}");
    }
    gateway.shutdown().await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_source_is_limited_while_another_keeps_its_pace() {
    let world = World::new("rate", false).await;
    world.rewrite(|t| {
        // The first `id = "hr"` is the source (sources precede destinations).
        t.replacen(
            "id = \"hr\"\nadapter = \"hr\"",
            "id = \"hr\"\nadapter = \"hr\"\nrate_per_sec = 5\nburst = 5",
            1,
        )
    });
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    let window = Duration::from_secs(3);

    // rehab alone: its pace.
    let rehab_run = |first: u32| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let (started, mut sent) = (Instant::now(), 0u32);
            while started.elapsed() < window {
                let (status, _) = support::post(
                    &client,
                    &base,
                    &samples::material_submit(u64::from(first + sent)),
                )
                .await;
                assert_eq!(status, 202, "rehab refused");
                sent += 1;
            }
            sent
        }
    };
    let alone = rehab_run(1_000).await;

    // hr floods from four connections while rehab sends as before.
    let limited = Arc::new(AtomicU32::new(0));
    let accepted = Arc::new(AtomicU32::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (url, limited, accepted) = (
            format!("{base}/v1/sources/hr/messages"),
            limited.clone(),
            accepted.clone(),
        );
        flood.spawn(async move {
            let client = reqwest::Client::new();
            let started = Instant::now();
            // 4 × 100 requests a second: 80 times hr's limit, paced so that the flood's own
            // client (this process, on the same two cores) does not starve rehab's.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while started.elapsed() < window + Duration::from_millis(500) {
                tick.tick().await;
                let r = client
                    .post(&url)
                    .bearer_auth(dev_token("hr"))
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .expect("post");
                if r.status() == 429 {
                    let wait: u64 = r.headers()["retry-after"]
                        .to_str()
                        .expect("retry-after")
                        .parse()
                        .expect("seconds");
                    assert!(wait >= 1);
                    limited.fetch_add(1, Ordering::Relaxed);
                } else {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = rehab_run(2_000).await;
    while flood.join_next().await.is_some() {}

    let (limited, let_through) = (
        limited.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed),
    );
    eprintln!(
        "rehab alone {alone}, during the flood {during}; hr: {limited} limited, {let_through} let through"
    );
    assert!(limited >= 500, "the flood was barely limited: {limited}");
    // 5 at once and 5 a second, over about 3.7 s.
    assert!(
        let_through <= 30,
        "{let_through} requests passed a 5/s limit"
    );
    assert!(
        f64::from(during) >= 0.5 * f64::from(alone),
        "rehab sent {during} during the flood, {alone} alone"
    );

    // Audited once per burst, not per request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audited = support::rejected_reasons(&gateway)
        .await
        .into_iter()
        .filter(|(source, why)| source.as_deref() == Some("hr") && why == "rate-limited")
        .count();
    assert!(
        (1..=3).contains(&audited),
        "{audited} rate-limit records for {limited} refusals"
    );
    gateway.shutdown().await;
    world.cleanup().await;
}

/// Publish one message to the ingress queue with the given `user_id` (none: no property).
async fn publish_as(
    conn: &Connection,
    queue: &str,
    user_id: Option<&str>,
    body: &Value,
) -> Result<(), lapin::Error> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut props = BasicProperties::default().with_delivery_mode(2);
    if let Some(u) = user_id {
        props = props.with_user_id(u.into());
    }
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(body).expect("json"),
            props,
        )
        .await?
        .await?;
    if confirm.is_nack() {
        return Err(lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
            lapin::ChannelState::Error,
            "nack",
        )));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_senders_are_the_broker_checked_user() {
    let world = World::new("amqp-auth", false).await;
    let (gateway, _) = world.start_gateway().await;
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("amqp");
    let ingress = gateway.names.ingress();

    // No user_id: refused as unauthenticated. guest speaks for rehab, not police.
    publish_as(&conn, &ingress, None, &samples::material_submit(1))
        .await
        .expect("publish");
    let mut as_police = samples::material_submit(2);
    as_police["source"] = json!("police");
    publish_as(&conn, &ingress, Some("guest"), &as_police)
        .await
        .expect("publish");
    // The broker itself refuses a user_id that is not the connection's login.
    assert!(
        publish_as(
            &conn,
            &ingress,
            Some("police"),
            &samples::material_submit(3)
        )
        .await
        .is_err(),
        "RabbitMQ let a connection claim another user"
    );
    // guest as rehab: accepted and delivered.
    publish_as(&conn, &ingress, Some("guest"), &samples::material_submit(4))
        .await
        .expect("publish");

    let rejects = drain_until(&gateway.names.rejects(), 2, Duration::from_secs(20)).await;
    let mut problems: Vec<String> = rejects
        .iter()
        .map(|(_, h)| h.get("x-wingspan-problem").cloned().unwrap_or_default())
        .collect();
    problems.sort();
    assert_eq!(
        problems,
        ["/problems/source-mismatch", "/problems/unauthenticated"]
    );
    assert!(
        support::eventually(Duration::from_secs(20), || world
            .partner("police")
            .accepted_count()
            == 1)
        .await,
        "the authenticated message was not delivered"
    );
    let _ = conn.close(200, "done".into()).await;
    gateway.shutdown().await;
    world.cleanup().await;
}
