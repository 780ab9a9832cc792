//! The operator console in a real browser (Debian's headless Chromium through chromedriver):
//! an operator signs in with a token, sees the destinations, replays a parked message with a
//! reason by clicking, and tracks it; the partner receives it once and the audit trail shows
//! who replayed it and why.

mod support;

use std::time::Duration;

use support::webdriver::Browser;
use support::{World, eventually, post};
use wingspan_sim::{Behaviour, samples};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_a_parked_message_from_the_console() {
    let world = World::new("console", false).await;
    world.partner("civil").set_behaviour(Behaviour::Reject);
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    let msg = samples::handover(7, "320411", false, true);
    let id = msg["message_id"].as_str().expect("id").to_owned();
    assert_eq!(post(&client, &base, &msg).await.0, 202);
    assert!(
        eventually(Duration::from_secs(30), || gateway
            .stats
            .totals()
            .dead_lettered
            >= 1)
        .await,
        "not parked"
    );
    let db = world.dir.join("state/wingspan-state.db");
    assert!(
        eventually(Duration::from_secs(10), || {
            rusqlite::Connection::open(&db)
                .ok()
                .and_then(|c| wingspan::store::dead_letters(&c, None).ok())
                .is_some_and(|l| l.len() == 1)
        })
        .await
    );
    world.partner("civil").set_behaviour(Behaviour::Accept);

    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    // The page itself holds no data and is locked down.
    let page = client
        .get(format!("{admin}/console"))
        .send()
        .await
        .expect("console");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );

    let browser = Browser::start().await;
    browser.open(&format!("{admin}/console")).await;
    let token = browser.wait_for("#token", Duration::from_secs(10)).await;
    browser.type_into(&token, "dev-operator-token").await;
    let connect = browser.wait_for("#connect", Duration::from_secs(5)).await;
    browser.click(&connect).await;

    // Destinations with their health.
    let civil = browser
        .wait_text(
            "#destinations tr[data-destination=\"civil\"]",
            Duration::from_secs(10),
            |t| t.contains("civil"),
        )
        .await;
    assert!(civil.contains("civil"), "{civil}");

    // The parked message, replayed with a reason.
    let row = format!("#dead-letters tr[data-message-id=\"{id}\"]");
    let row_el = browser.wait_for(&row, Duration::from_secs(10)).await;
    let reason = browser.find_all("input.replay-reason", Some(&row_el)).await;
    let button = browser.find_all("button.replay", Some(&row_el)).await;
    assert_eq!(
        (reason.len(), button.len()),
        (1, 1),
        "no replay form in the row"
    );
    browser
        .type_into(&reason[0], "civil affairs back online")
        .await;
    browser.click(&button[0]).await;
    let result = browser
        .wait_text("#dlq-result", Duration::from_secs(15), |t| {
            t.contains("Replayed")
        })
        .await;
    assert!(
        result.contains(&format!("Replayed 1 copy(ies) of {id}")),
        "{result}"
    );
    assert!(
        eventually(Duration::from_secs(20), || world
            .partner("civil")
            .accepted_count()
            == 1)
        .await,
        "the replayed message did not reach the partner"
    );
    assert_eq!(world.partner("civil").accepted_keys(), vec![id.clone()]);

    // The tracker shows its timeline, replay included.
    let track = browser.wait_for("#track-id", Duration::from_secs(5)).await;
    browser.type_into(&track, &id).await;
    let submit = browser
        .wait_for("#track button", Duration::from_secs(5))
        .await;
    browser.click(&submit).await;
    let timeline = browser
        .wait_text("#timeline tbody", Duration::from_secs(10), |t| {
            t.contains("replayed")
        })
        .await;
    assert!(
        timeline.contains("replayed") && timeline.contains("operator-dev"),
        "{timeline}"
    );
    browser.close().await;

    // In the audit trail: who and why.
    let conn = rusqlite::Connection::open(&db).expect("db");
    let (actor, why): (String, String) = conn
        .query_row(
            "SELECT actor, reason FROM audit WHERE event = 'replayed' AND message_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("replayed record");
    assert_eq!(
        (actor.as_str(), why.as_str()),
        ("operator-dev", "civil affairs back online")
    );

    gateway.shutdown().await;
    world.cleanup().await;
}
