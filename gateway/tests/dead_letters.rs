//! Dead letters, by hand: an operator looks at parked copies, replays them once the partner is
//! back, discards one with a reason — on the command line and over the admin API — and every
//! action is in the audit trail with who and why. Copies not selected stay parked.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{World, admin_cli as wingspan, eventually, post};
use wingspan_sim::{Behaviour, samples};

const OPERATOR: &str = "dev-operator-token";
const REVIEWER: &str = "dev-reviewer-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_copies_are_shown_replayed_and_discarded_by_operators_and_audited() {
    let world = World::new("dlq", false).await;
    world.partner("civil").set_behaviour(Behaviour::Reject);
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    // Four handovers for Changzhou with subsistence: aftercare-3204 takes them, civil refuses.
    let mut ids = Vec::new();
    for i in 0..4 {
        let msg = samples::handover(100 + i, "320411", false, true);
        ids.push(msg["message_id"].as_str().expect("id").to_owned());
        assert_eq!(post(&client, &base, &msg).await.0, 202);
    }
    assert!(
        eventually(Duration::from_secs(30), || gateway
            .stats
            .totals()
            .dead_lettered
            >= 4)
        .await,
        "not parked: {:?}",
        gateway.stats.totals()
    );
    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    let listed = |c: &reqwest::Client| {
        let url = format!("{admin}/admin/dead-letters?destination=civil");
        let req = c.get(url).bearer_auth(OPERATOR);
        async move {
            req.send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            // The state store's update is asynchronous; wait for it to show all four.
            let db = world.dir.join("state/wingspan-state.db");
            rusqlite::Connection::open(db)
                .ok()
                .and_then(|c| wingspan::store::dead_letters(&c, Some("civil")).ok())
                .is_some_and(|l| l.len() == 4)
        })
        .await
    );
    world.partner("civil").set_behaviour(Behaviour::Accept);

    // Show: metadata for any operator; the payload only for a user allowed to see payloads.
    let (ok, out, err) = wingspan(&admin, OPERATOR, &["dlq", "show", &ids[0]]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("\"destination\": \"civil\"") && !out.contains("payload\""),
        "{out}"
    );
    assert!(
        !out.contains(&samples::person_id(100)),
        "a person id shown: {out}"
    );
    let why = [
        "--reason",
        "complaint 2026-31: what did civil affairs refuse",
    ];
    let (ok, out, err) = wingspan(
        &admin,
        OPERATOR,
        &[&["dlq", "show", &ids[0], "--payload"][..], &why[..]].concat(),
    );
    assert!(!ok && err.contains("payload-not-allowed"), "{out}{err}");
    // A payload is never shown without a reason.
    let (ok, out, err) = wingspan(&admin, REVIEWER, &["dlq", "show", &ids[0], "--payload"]);
    assert!(!ok, "{out}{err}");
    let (ok, out, err) = wingspan(
        &admin,
        REVIEWER,
        &[&["dlq", "show", &ids[0], "--payload"][..], &why[..]].concat(),
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains(&samples::person_id(100)), "{out}");
    let (ok, _, err) = wingspan(&admin, OPERATOR, &["dlq", "show", "no-such-message"]);
    assert!(!ok && err.contains("not-parked"), "{err}");
    assert_eq!(
        world.partner("civil").accepted_count(),
        0,
        "show delivered something"
    );

    // Replay one on the command line: delivered once; the other three stay parked.
    let (ok, out, err) = wingspan(
        &admin,
        OPERATOR,
        &[
            "dlq",
            "replay",
            &ids[0],
            "--reason",
            "civil affairs fixed their validator",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("\"count\": 1"), "{out}");
    assert!(
        eventually(Duration::from_secs(20), || world
            .partner("civil")
            .accepted_count()
            == 1)
        .await,
        "replayed copy not delivered"
    );
    assert_eq!(world.partner("civil").accepted_keys(), vec![ids[0].clone()]);
    let parked = listed(&client).await;
    assert_eq!(
        parked["dead_letters"].as_array().map(Vec::len),
        Some(3),
        "{parked}"
    );

    // Discard one over HTTP: a reason is required.
    let discard = format!("{admin}/admin/dead-letters/{}/discard", ids[1]);
    let r = client
        .post(&discard)
        .bearer_auth(OPERATOR)
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let r = client
        .post(&discard)
        .bearer_auth("dev-compliance-token")
        .json(&json!({"reason": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "compliance may not act on dead letters");
    let r = client
        .post(&discard)
        .bearer_auth(OPERATOR)
        .json(&json!({"reason": "duplicate of a handover sent on paper"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);

    // Replay the rest of the destination: the two left, once each; the discarded one never.
    let (ok, out, err) = wingspan(
        &admin,
        OPERATOR,
        &[
            "dlq",
            "replay",
            "--destination",
            "civil",
            "--reason",
            "partner back",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("\"count\": 2"), "{out}");
    assert!(
        eventually(Duration::from_secs(20), || world
            .partner("civil")
            .accepted_count()
            == 3)
        .await,
        "replayed copies not delivered"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut expected = vec![ids[0].clone(), ids[2].clone(), ids[3].clone()];
    expected.sort();
    assert_eq!(world.partner("civil").accepted_keys(), expected);
    assert_eq!(
        world.partner("civil").repeats(),
        0,
        "a copy delivered twice"
    );
    let parked = listed(&client).await;
    assert_eq!(
        parked["dead_letters"].as_array().map(Vec::len),
        Some(0),
        "{parked}"
    );
    let (ok, _, err) = wingspan(
        &admin,
        OPERATOR,
        &["dlq", "replay", &ids[1], "--reason", "again"],
    );
    assert!(
        !ok && err.contains("not-parked"),
        "a discarded copy replayed: {err}"
    );

    // Every action in the audit trail, with who and why.
    let trail = |id: String| {
        let url = format!("{admin}/v1/audit/messages/{id}");
        let req = client.get(url).bearer_auth("dev-compliance-token");
        async move {
            req.send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let events = |t: &Value, event: &str| -> Vec<Value> {
        t["records"]
            .as_array()
            .expect("records")
            .iter()
            .filter(|r| r["entry"]["event"] == event || r["event"] == event)
            .cloned()
            .collect()
    };
    let first = trail(ids[0].clone()).await;
    let viewed = events(&first, "payload_viewed");
    assert_eq!(viewed.len(), 1, "{first}");
    let text = viewed[0].to_string();
    assert!(
        text.contains("reviewer-dev") && text.contains("complaint 2026-31"),
        "{text}"
    );
    let replayed = events(&first, "replayed");
    assert_eq!(replayed.len(), 1, "{first}");
    let text = replayed[0].to_string();
    assert!(
        text.contains("operator-dev") && text.contains("civil affairs fixed their validator"),
        "{text}"
    );
    let second = trail(ids[1].clone()).await;
    let discarded = events(&second, "discarded");
    assert_eq!(discarded.len(), 1, "{second}");
    assert!(
        discarded[0]
            .to_string()
            .contains("duplicate of a handover sent on paper")
    );
    for id in &ids[2..] {
        let t = trail(id.clone()).await;
        assert_eq!(events(&t, "replayed").len(), 1, "{t}");
        assert!(t.to_string().contains("partner back"));
    }

    // The tracker's view of a replayed message: delivered to civil, its timeline in order.
    let tracked: Value = client
        .get(format!("{admin}/admin/messages/{}", ids[0]))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let timeline: Vec<&str> = tracked["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    let at = |e: &str| timeline.iter().position(|x| *x == e).unwrap_or(usize::MAX);
    assert!(
        at("parked") < at("replayed") && at("replayed") < timeline.len(),
        "{timeline:?}"
    );
    assert_eq!(timeline.last(), Some(&"delivered"), "{timeline:?}");

    gateway.shutdown().await;
    world.cleanup().await;
}
