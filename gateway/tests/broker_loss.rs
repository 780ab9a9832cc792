//! The broker gone, as the gateway sees it: every connection cut and new ones refused (by a
//! relay in front of the real RabbitMQ). Within a second the gateway reports not ready and
//! answers 503 with Retry-After instead of accepting what it cannot make durable; when the
//! broker is back it reconnects by itself and everything accepted is delivered, each message
//! once at the partner.

mod support;

use std::time::{Duration, Instant};

use support::{World, eventually, post};
use wingspan_chaos::relay::Relay;
use wingspan_sim::samples;

/// Whether `/readyz` answers `status` within `within`.
async fn readiness_becomes(
    client: &reqwest::Client,
    base: &str,
    status: u16,
    within: Duration,
) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        let now = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if now == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_cut_fails_closed_then_resumes_and_delivers_everything_once() {
    let relay = Relay::start("127.0.0.1:5672".parse().expect("address"))
        .await
        .expect("relay");
    let world = World::with_broker("brokerloss", false, &relay.addr.to_string()).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    let police = world.partner("police");
    let mut accepted = Vec::new();

    for round in 0..3u64 {
        for i in 0..30 {
            let m = samples::material_submit(round * 100 + i);
            assert_eq!(post(&client, &base, &m).await.0, 202);
            accepted.push(m["message_id"].as_str().expect("id").to_owned());
        }
        let generation = gateway.broker.current().map(|s| s.generation).unwrap_or(0);

        relay.cut();
        assert!(
            readiness_becomes(&client, &base, 503, Duration::from_secs(1)).await,
            "round {round}: readiness still true a second after the broker went away"
        );
        let m = samples::material_submit(round * 100 + 99);
        let r = client
            .post(format!("{base}/v1/messages"))
            .bearer_auth(wingspan_sim::dev_token("rehab"))
            .json(&m)
            .send()
            .await
            .expect("post");
        assert_eq!(
            r.status(),
            503,
            "round {round}: nothing is accepted without a broker"
        );
        assert!(r.headers().contains_key("retry-after"));
        let problem: serde_json::Value = r.json().await.expect("problem");
        assert_eq!(problem["type"], "/problems/unavailable");

        tokio::time::sleep(Duration::from_secs(2)).await;
        relay.restore();
        assert!(
            readiness_becomes(&client, &base, 200, Duration::from_secs(5)).await,
            "round {round}: not ready within 5 s of the broker answering again"
        );
        let now = gateway.broker.current().map(|s| s.generation).unwrap_or(0);
        assert!(now > generation, "round {round}: a new broker session");
    }

    assert!(
        eventually(Duration::from_secs(30), || police.accepted_count()
            == accepted.len())
        .await,
        "delivered {} of {}",
        police.accepted_count(),
        accepted.len()
    );
    let got = police.accepted_keys();
    accepted.sort();
    assert_eq!(got, accepted, "exactly the accepted messages, each once");
    println!(
        "broker loss: 3 cuts, {} messages, repeated deliveries absorbed: {}",
        accepted.len(),
        police.repeats()
    );

    gateway.shutdown().await;
    world.cleanup().await;
}
