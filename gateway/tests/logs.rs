//! Logs carry no secret and no personal data, and say which message they are about.
//!
//! The flows run with marker values — a person's id and name in accepted and refused
//! messages, a wrong bearer token, a client certificate — while every crate logs at debug
//! level and wingspan at trace, as JSON. Then every line is searched for the markers, the
//! tokens, the private keys and the audit keys, and the lines about a message's intake and
//! delivery are checked to name its message_id.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::pki::{self, Ca};
use support::{Captured, World};
use wingspan_sim::{dev_token, samples};

const MARKER_ID: &str = "11010119800101888X";
const MARKER_NAME: &str = "Markerlog Qian";
const MARKER_TOKEN: &str = "marker-token-5f1d9c";

fn marked(mut m: Value) -> Value {
    m["payload"]["person"]["person_id"] = json!(MARKER_ID);
    m["payload"]["person"]["name"] = json!(MARKER_NAME);
    m
}

/// The base64 body of a PEM block (what a leaked key would look like in a log).
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_name_messages_and_never_secrets_or_personal_data() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("debug,wingspan=trace,wingspan_core=trace,wingspan_adapters=trace")
        .with_writer(move || writer.clone())
        .init();

    let world = World::new("logs", true).await;
    let ca = Ca::new("wingspan log test CA");
    let section = pki::tls_section(&ca, &world.dir);
    world.rewrite(|t| t + &section);
    let (gateway, base) = world.start_gateway().await;
    let https = format!(
        "https://127.0.0.1:{}",
        gateway.tls_addr.expect("HTTPS").port()
    );
    let identity = ca.client("rehab");
    let tls = pki::client(&ca, Some(&identity));
    let client = reqwest::Client::new();
    let mut answers = Vec::new();

    // Accepted, over mTLS and over a token: a handover and a police request with markers
    // (police answers, through the gateway).
    let handover = marked(samples::handover(1, "320411", true, true));
    let material = marked(samples::material_submit(1));
    let handover_id = handover["message_id"].as_str().expect("id").to_owned();
    for (c, url, body) in [
        (&tls, format!("{https}/v1/messages"), &handover),
        (&client, format!("{base}/v1/messages"), &material),
    ] {
        let r = c
            .post(url)
            .bearer_auth(dev_token("rehab"))
            .json(body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202);
        answers.push(r.text().await.expect("body"));
    }
    // Refused: a schema violation whose bad values are the markers, a wrong token, a spoofed
    // source, a partner document its adapter refuses.
    let mut bad = marked(samples::handover(2, "320411", false, false));
    bad["payload"]["release_date"] = json!(MARKER_NAME);
    bad["payload"]["person"]["person_id"] = json!(format!("{MARKER_ID}-not-an-id"));
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(dev_token("rehab"))
        .json(&bad)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 422);
    answers.push(r.text().await.expect("body"));
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(MARKER_TOKEN)
        .json(&material)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    answers.push(r.text().await.expect("body"));
    let mut spoofed = marked(samples::material_submit(3));
    spoofed["source"] = json!("police");
    let r = tls
        .post(format!("{https}/v1/messages"))
        .json(&spoofed)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    answers.push(r.text().await.expect("body"));
    let r = client
        .post(format!("{base}/v1/sources/police/messages"))
        .bearer_auth(dev_token("police"))
        .header("content-type", "application/xml")
        .body(format!("<decision><person>{MARKER_NAME}</person>"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    answers.push(r.text().await.expect("body"));

    // Let deliveries and the police reply run their course.
    assert!(
        support::eventually(Duration::from_secs(30), || world
            .partner("police")
            .accepted_count()
            >= 1)
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    gateway.shutdown().await;

    let text = String::from_utf8(logs.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .expect("UTF-8 logs");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 20, "only {} log lines", lines.len());
    let signing_key = std::fs::read_to_string(world.dir.join("state/audit-signing.key"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let subject_key = std::fs::read_to_string(world.dir.join("state/audit-subject.key"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(
        !signing_key.is_empty() && !subject_key.is_empty(),
        "audit keys"
    );
    let server_key = std::fs::read_to_string(world.dir.join("server.key")).expect("key");
    let secrets = [
        ("person id", MARKER_ID.to_owned()),
        ("person name", MARKER_NAME.to_owned()),
        ("wrong token", MARKER_TOKEN.to_owned()),
        ("token", dev_token("rehab")),
        ("client key", pem_body(&identity.key)),
        ("server key", pem_body(&server_key)),
        ("audit signing key", signing_key),
        ("audit subject key", subject_key),
    ];
    for (n, line) in lines.iter().enumerate() {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line {n} is not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string(), "line {n}: {line}");
        for (what, secret) in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "{what} in log line {n}: {line}"
            );
        }
    }
    for answer in &answers {
        for (what, secret) in &secrets {
            assert!(
                !answer.contains(secret.as_str()),
                "{what} in a response: {answer}"
            );
        }
    }
    // A message's intake and delivery lines name it.
    let about = |span: &str, id: &str| {
        lines.iter().any(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            v["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|s| s["name"] == span && s["message_id"] == id)
            })
        })
    };
    assert!(
        about("intake", &handover_id),
        "no intake line names the handover"
    );
    assert!(
        about("delivery", &handover_id),
        "no delivery line names the handover"
    );
    world.cleanup().await;
}
