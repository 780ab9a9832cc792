//! Partners down, rejecting, or slow: retried and delivered when they return, parked with the
//! reason when they refuse, and never holding back the other partners.

mod support;

use std::time::{Duration, Instant};

use support::{World, drain_until, eventually, post, status_of};
use wingspan_sim::{Behaviour, samples};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_down_for_ten_seconds_gets_everything_when_it_returns() {
    let mut world = World::new("outage", false).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();

    world.partner_mut("police").stop().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let m = samples::material_submit(i);
        ids.push(m["message_id"].as_str().expect("id").to_owned());
        assert_eq!(post(&client, &base, &m).await.0, 202);
        // Meanwhile another partner keeps receiving.
        let h = samples::handover(i, "320411", false, false);
        assert_eq!(post(&client, &base, &h).await.0, 202);
    }
    let aftercare = world.partner("aftercare");
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || aftercare.accepted_count() == 20).await,
        "other partners are not held back"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(world.partner("police").accepted_count(), 0);
    world
        .partner_mut("police")
        .restart()
        .await
        .expect("restart");
    let police = world.partner("police");
    assert!(
        eventually(Duration::from_secs(30), || police.accepted_count() == 20).await,
        "delivered after the outage: {}",
        police.accepted_count()
    );
    let got = police.accepted_keys();
    ids.sort();
    assert_eq!(got, ids);
    let counts = gateway.stats.snapshot();
    let police_counts = counts[&(
        "enforcement.material.submit".to_owned(),
        "police".to_owned(),
    )];
    assert!(
        police_counts.retried >= 20,
        "each message was retried: {police_counts:?}"
    );
    assert_eq!(police_counts.dead_lettered, 0);

    gateway.shutdown().await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_answering_400_sends_the_message_to_the_parking_lot_with_the_reason() {
    let world = World::new("park", false).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    world.partner("hr").set_behaviour(Behaviour::Reject);
    let m = samples::handover(1, "320411", true, false);
    assert_eq!(post(&client, &base, &m).await.0, 202);

    // The station accepted its copy; HR refused its copy once, and it was not retried.
    assert!(
        eventually(Duration::from_secs(10), || world
            .partner("aftercare")
            .accepted_count()
            == 1)
        .await
    );
    let parked = drain_until(&gateway.names.parked("hr"), 1, Duration::from_secs(10)).await;
    assert_eq!(parked.len(), 1);
    let (body, headers) = &parked[0];
    assert_eq!(
        support::body_json(body),
        m,
        "the parked copy is the message as accepted"
    );
    assert!(
        headers["x-wingspan-reason"].contains("HTTP 400"),
        "{headers:?}"
    );
    assert_eq!(world.partner("hr").posts(), 1, "a 4xx is not retried");
    let status = status_of(&client, &base, m["message_id"].as_str().expect("id")).await;
    let hr = status["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .find(|d| d["destination"] == "hr")
        .cloned()
        .expect("hr row");
    assert_eq!(hr["state"], "dead-lettered");
    assert!(hr["last_error"].as_str().unwrap_or("").contains("HTTP 400"));

    gateway.shutdown().await;
    world.cleanup().await;
}

/// A parked copy expires after its retention; what it was stays in the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_copy_expires_after_its_retention() {
    let world = World::new("retention", false).await;
    let text = std::fs::read_to_string(&world.config_file).expect("config");
    let short = text.replace("parked_secs = 2592000", "parked_secs = 1");
    assert_ne!(short, text, "the example config's retention line moved");
    std::fs::write(&world.config_file, short).expect("config");
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    world.partner("hr").set_behaviour(Behaviour::Reject);
    let m = samples::handover(1, "320411", true, false);
    assert_eq!(post(&client, &base, &m).await.0, 202);
    let id = m["message_id"].as_str().expect("id");
    let mut parked = false;
    for _ in 0..100 {
        let st = status_of(&client, &base, id).await;
        if st["destinations"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["state"] == "dead-lettered"))
        {
            parked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(parked);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let left = drain_until(&gateway.names.parked("hr"), 1, Duration::from_secs(1)).await;
    assert!(left.is_empty(), "the parked copy outlived its retention");
    let loaded = world.load();
    gateway.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = wingspan::audit::open_store(&loaded).expect("store");
    let trail = wingspan::audit::trail(&mut conn, id).expect("trail");
    assert!(
        trail
            .iter()
            .any(|r| r.entry.event == wingspan_core::audit::Event::Parked
                && r.entry.destination.as_deref() == Some("hr")),
        "the audit trail keeps what was parked"
    );
    world.cleanup().await;
}
