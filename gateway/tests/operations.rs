//! What operators see on the admin listener: Prometheus metrics, the routes in force and every
//! destination's queue, counts and last error — for the operator role only.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{World, eventually, post};
use wingspan_sim::{Behaviour, samples};

const OPERATOR: &str = "dev-operator-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_routes_and_destinations_for_the_operator() {
    let world = World::new("ops", false).await;
    world.partner("hr").set_behaviour(Behaviour::FailFirst(1));
    world.partner("civil").set_behaviour(Behaviour::Reject);
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    for i in 0..3 {
        assert_eq!(
            post(&client, &base, &samples::material_submit(i)).await.0,
            202
        );
    }
    // Changzhou, a job and subsistence: aftercare-3204, hr (fails once), civil (rejects).
    assert_eq!(
        post(&client, &base, &samples::handover(1, "320411", true, true))
            .await
            .0,
        202
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            let t = gateway.stats.totals();
            t.delivered >= 5 && t.dead_lettered >= 1
        })
        .await,
        "deliveries did not settle: {:?}",
        gateway.stats.totals()
    );
    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    let get = |path: &str, token: Option<&str>| {
        let mut req = client.get(format!("{admin}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    // The operator role only.
    assert_eq!(get("/metrics", None).await.expect("get").status(), 401);
    assert_eq!(
        get("/metrics", Some("dev-compliance-token"))
            .await
            .expect("get")
            .status(),
        403
    );
    let r = get("/metrics", Some(OPERATOR)).await.expect("get");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    let metrics = r.text().await.expect("text");
    let prefix = &world.prefix;
    for line in [
        "wingspan_messages_accepted_total{source=\"rehab\",type=\"enforcement.material.submit\"} 3".to_owned(),
        "wingspan_copies_total{type=\"enforcement.material.submit\",destination=\"police\",outcome=\"delivered\"} 3".to_owned(),
        "wingspan_copies_total{type=\"referral.handover\",destination=\"civil\",outcome=\"parked\"} 1".to_owned(),
        "wingspan_copies_total{type=\"referral.handover\",destination=\"hr\",outcome=\"retried\"} 1".to_owned(),
        "wingspan_accept_seconds_count 4".to_owned(),
        "wingspan_delivery_seconds_count{destination=\"police\"} 3".to_owned(),
        format!("wingspan_queue_consumers{{queue=\"{prefix}.dest.police\"}} 1"),
        format!("wingspan_queue_messages{{queue=\"{prefix}.parked.civil\"}} 1"),
    ] {
        assert!(metrics.contains(&line), "no {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("wingspan_audit_write_lag_seconds_count"));
    assert!(metrics.contains("# TYPE wingspan_accept_seconds histogram"));
    // Counts only: no payload value, no person.
    assert!(
        !metrics.contains("3204111990"),
        "a person id in the metrics"
    );

    let routes: Value = get("/admin/routes", Some(OPERATOR))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let changzhou = routes["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["name"] == "handover-aftercare-changzhou")
        .expect("route");
    assert_eq!(
        changzhou["when"][0],
        "/payload/residence/division_code prefix \"3204\""
    );
    assert_eq!(changzhou["destinations"][0], "aftercare-3204");

    let dests: Value = get("/admin/destinations", Some(OPERATOR))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let dest = |id: &str| {
        dests["destinations"]
            .as_array()
            .expect("destinations")
            .iter()
            .find(|d| d["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {dests}"))
    };
    let police = dest("police");
    assert_eq!(police["counts"]["delivered"], 3);
    assert_eq!(police["queue"]["consumers"], 1);
    assert_eq!(police["transport"], "http");
    assert_eq!(police["last_error"], Value::Null);
    let civil = dest("civil");
    assert_eq!(civil["counts"]["parked"], 1);
    assert_eq!(civil["parked_in_queue"], 1);
    assert!(civil["last_error"]["error"].is_string(), "{civil}");
    assert!(civil["last_error"]["at"].is_string(), "{civil}");
    let hr = dest("hr");
    assert_eq!(hr["counts"]["retried"], 1);
    assert_eq!(hr["counts"]["delivered"], 1);
    assert!(hr["last_error"]["error"].is_string(), "{hr}");

    // Dead letters: metadata of the parked handover, over HTTP and on the command line.
    let parked: Value = get("/admin/dead-letters?destination=civil", Some(OPERATOR))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let list = parked["dead_letters"].as_array().expect("list");
    assert_eq!(list.len(), 1, "{parked}");
    assert_eq!(list[0]["destination"], "civil");
    assert_eq!(list[0]["message_type"], "referral.handover");
    assert!(list[0]["reason"].is_string(), "{parked}");
    assert!(list[0]["first_failure"].is_string(), "{parked}");
    assert!(
        !parked.to_string().contains("3204111990"),
        "a person id: {parked}"
    );
    let none: Value = get("/admin/dead-letters?destination=police", Some(OPERATOR))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(none["dead_letters"].as_array().map(Vec::len), Some(0));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(["dlq", "list", "--config"])
        .arg(&world.config_file)
        .output()
        .expect("wingspan dlq list");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains(list[0]["message_id"].as_str().expect("id")) && table.contains("1 parked"),
        "{table}"
    );

    gateway.shutdown().await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_live_config_is_kept_by_hash_and_diffed_in_words() {
    let world = World::new("history", false).await;
    let (gateway, _) = world.start_gateway().await;
    gateway.shutdown().await;
    // An operator narrows what HR receives and sends Suzhou's handovers to HR too.
    world.rewrite(|t| {
        t.replace(
            "name = \"handover-aftercare-suzhou\"\nmessage_types = [\"referral.handover\"]\nwhen = [{ field = \"/payload/residence/division_code\", prefix = \"3205\" }]\ndestinations = [\"aftercare-3205\"]",
            "name = \"handover-aftercare-suzhou\"\nmessage_types = [\"referral.handover\"]\nwhen = [{ field = \"/payload/residence/division_code\", prefix = \"3205\" }]\ndestinations = [\"aftercare-3205\", \"hr\"]",
        )
    });
    let (gateway, _) = world.start_gateway().await;
    gateway.shutdown().await;

    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wingspan"))
            .args(args)
            .arg("--config")
            .arg(&world.config_file)
            .output()
            .expect("wingspan");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, history) = cli(&["config", "history"]);
    assert_eq!(code, Some(0), "{history}");
    let versions: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(versions.len(), 2, "{history}");
    assert!(
        versions[1].starts_with('*'),
        "the current config is marked: {history}"
    );
    let first = versions[0].split_whitespace().next().expect("hash");
    let (code, diff) = cli(&["config", "diff", first, "current"]);
    assert_eq!(code, Some(0), "{diff}");
    assert!(
        diff.contains("route handover-aftercare-suzhou: destinations +hr"),
        "{diff}"
    );
    let (_, same) = cli(&["config", "diff", "current", "current"]);
    assert!(same.contains("no change in effect"), "{same}");
    world.cleanup().await;
}
