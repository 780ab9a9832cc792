//! Partners posting their own formats to `/v1/sources/{source}/messages`: decoded by the
//! source's adapter, then exactly the canonical path (schema, authorization, routing,
//! durability). Typed problems for what cannot be read; replies to unknown requests are
//! delivered and flagged.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{World, body_json, eventually, native, post_native, status_of};
use wingspan_sim::samples;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_formats_are_decoded_refused_with_types_and_unknown_replies_flagged() {
    let world = World::new("native", false).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();

    // A police decision for a material this gateway never carried: delivered, flagged.
    let mut material = samples::material_submit(1);
    material["message_id"] = json!("never-sent-material");
    let decision = samples::reply_for(&material, "police").expect("decision");
    let xml = native("police", &decision, None);
    let (status, receipt) =
        post_native(&client, &base, "police", "application/xml", xml.clone()).await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["destinations"], json!(["rehab"]));
    let rehab = world.partner("rehab");
    assert!(eventually(Duration::from_secs(10), || rehab.accepted_count() == 1).await);
    let delivered = body_json(&rehab.accepted()[0].body);
    assert_eq!(delivered["message_type"], "enforcement.material.decision");
    assert_eq!(delivered["source"], "police");
    assert_eq!(delivered["correlation_id"], "never-sent-material");
    assert_eq!(delivered["payload"], decision["payload"]);
    let id = decision["message_id"].as_str().expect("id");
    let st = status_of(&client, &base, id).await;
    assert_eq!(st["correlation"], "unknown");
    // The same document again: the original receipt, nothing delivered twice.
    let (status, again) = post_native(&client, &base, "police", "application/xml", xml).await;
    assert_eq!((status, &again), (200, &receipt));

    // Refusals, each with its own stable type.
    let doctype = b"<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY x \"y\">]><d>&x;</d>".to_vec();
    let (status, p) = post_native(&client, &base, "police", "application/xml", doctype).await;
    assert_eq!(
        (status, p["type"].as_str()),
        (400, Some("/problems/refused-document"))
    );
    let (status, p) = post_native(
        &client,
        &base,
        "police",
        "application/xml",
        b"<unclosed>".to_vec(),
    )
    .await;
    assert_eq!(
        (status, p["type"].as_str()),
        (400, Some("/problems/malformed-document"))
    );
    let (status, p) =
        post_native(&client, &base, "police", "application/json", b"{}".to_vec()).await;
    assert_eq!(
        (status, p["type"].as_str()),
        (415, Some("/problems/unsupported-media-type"))
    );
    let (status, p) = post_native(
        &client,
        &base,
        "stranger",
        "application/json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (status, p["type"].as_str()),
        (401, Some("/problems/unauthenticated"))
    );
    // A source posting to another's path: refused before anything is decoded.
    let r = client
        .post(format!("{base}/v1/sources/police/messages"))
        .bearer_auth(wingspan_sim::dev_token("rehab"))
        .header("content-type", "application/xml")
        .body(b"<x/>".to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["type"],
        "/problems/source-mismatch"
    );
    // A valid FHIR resource the hospital adapter has no canonical meaning for.
    let patient =
        std::fs::read(support::repo().join("../shared/corpus/health/json/Patient-f001.json"))
            .expect("HL7 example");
    let (status, p) = post_native(&client, &base, "health", "application/fhir+json", patient).await;
    assert_eq!(
        (status, p["type"].as_str()),
        (422, Some("/problems/unmappable-document"))
    );
    // A well-formed police document that says police may send what only rehab may.
    let mut forged = samples::material_submit(2);
    forged["source"] = json!("police");
    let (status, p) = post_native(
        &client,
        &base,
        "police",
        "application/xml",
        native("police", &forged, None),
    )
    .await;
    assert_eq!(
        (status, p["type"].as_str()),
        (403, Some("/problems/type-not-allowed"))
    );
    let problems: Value = json!(gateway.stats.rejections());
    assert!(
        problems.to_string().contains("refused-document"),
        "{problems}"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rehab.accepted_count(), 1, "nothing refused was delivered");
    // Every refusal is in the audit trail with its problem type.
    let reasons: Vec<String> = support::rejected_reasons(&gateway)
        .await
        .into_iter()
        .map(|(_, why)| why)
        .collect();
    for slug in [
        "refused-document",
        "malformed-document",
        "unsupported-media-type",
        "unauthenticated",
        "source-mismatch",
        "unmappable-document",
        "type-not-allowed",
    ] {
        assert!(
            reasons.iter().any(|r| r == slug),
            "no rejected record for {slug}: {reasons:?}"
        );
    }
    gateway.shutdown().await;
    world.cleanup().await;
}
