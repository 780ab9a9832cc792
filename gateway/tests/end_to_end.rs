//! Every family end to end over the real local RabbitMQ: request delivered to the right
//! partner(s) in the right content, reply routed back to rehab with its correlation id; the
//! HTTP error contract; duplicates; the AMQP front door and its rejects queue.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{World, body_json, drain_until, eventually, post, publish_to_queue, status_of};
use wingspan_sim::samples;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_delivered_and_its_reply_correlated() {
    let world = World::new("families", true).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();

    let material = samples::material_submit(1);
    let routine = samples::consultation_request(2, "ma01", "routine");
    let emergency = samples::consultation_request(3, "ma02", "emergency");
    let transfer = samples::transfer_request(4);
    let handover = samples::handover(5, "320411", true, false);
    let handover_suzhou = samples::handover(6, "320506", false, true);
    let requests = [
        &material,
        &routine,
        &emergency,
        &transfer,
        &handover,
        &handover_suzhou,
    ];
    for m in requests {
        let (status, receipt) = post(&client, &base, m).await;
        assert_eq!(status, 202, "{receipt}");
        assert_eq!(receipt["status"], "accepted");
        assert_eq!(receipt["message_id"], m["message_id"]);
    }
    let id = |m: &Value| m["message_id"].as_str().expect("id").to_owned();

    // Replies: police 1, hospitals 2, 120 for the emergency consultation and the transfer 2,
    // aftercare 2 + hr 1 + civil 1 acknowledgements = 9.
    let rehab = world.partner("rehab");
    assert!(
        eventually(Duration::from_secs(20), || rehab.accepted_count() >= 9).await,
        "replies arrived: {}",
        rehab.accepted_count()
    );

    assert_eq!(world.partner("police").accepted_keys(), vec![id(&material)]);
    assert_eq!(
        world.partner("hospital-ma01").accepted_keys(),
        vec![id(&routine)]
    );
    assert_eq!(
        world.partner("hospital-ma02").accepted_keys(),
        vec![id(&emergency)]
    );
    let emergency_got = world.partner("emergency").accepted_keys();
    let mut expected = vec![id(&emergency), id(&transfer)];
    expected.sort();
    assert_eq!(emergency_got, expected);
    assert_eq!(world.partner("hr").accepted_keys(), vec![id(&handover)]);
    assert_eq!(
        world.partner("civil").accepted_keys(),
        vec![id(&handover_suzhou)]
    );
    let aftercare = world.partner("aftercare").accepted();
    assert_eq!(aftercare.len(), 2);
    let path_of = |m: &Value| {
        aftercare
            .iter()
            .find(|r| r.idempotency_key == id(m))
            .map(|r| r.path.clone())
    };
    assert_eq!(path_of(&handover).as_deref(), Some("/3204/messages"));
    assert_eq!(path_of(&handover_suzhou).as_deref(), Some("/3205/messages"));

    // Content: each partner got its own format, and what it read back is what we sent
    // (after its field policy).
    let police = &world.partner("police").accepted()[0];
    assert_eq!(police.content_type, "application/xml");
    let understood = police.canonical.as_ref().expect("police read its document");
    assert_eq!(understood["message_id"], material["message_id"]);
    let mut expected = material["payload"].clone();
    expected["centre"]
        .as_object_mut()
        .expect("centre")
        .remove("alliance");
    assert_eq!(
        understood["payload"], expected,
        "police policy: no medical alliance"
    );
    let ma01 = &world.partner("hospital-ma01").accepted()[0];
    assert_eq!(ma01.content_type, "application/fhir+json");
    assert_eq!(body_json(&ma01.body)["resourceType"], "Bundle");
    assert_eq!(
        ma01.canonical.as_ref().expect("decoded")["payload"],
        routine["payload"]
    );
    let ma02 = &world.partner("hospital-ma02").accepted()[0];
    assert_eq!(ma02.content_type, "application/fhir+xml");
    assert!(String::from_utf8_lossy(&ma02.body).contains("<Bundle xmlns=\"http://hl7.org/fhir\""));
    // Data minimisation on the wire: HR never sees substance or clinical history.
    let hr = &world.partner("hr").accepted()[0];
    let hr_body = String::from_utf8_lossy(&hr.body);
    for secret in ["heroin", "substance", "clinical"] {
        assert!(!hr_body.contains(secret), "hr received {secret}");
    }
    assert!(
        handover["payload"]["substance_history"].is_array(),
        "the sample carries a substance history, so the check above means something"
    );

    // Every reply came back to rehab, correlated to a request we sent.
    let request_ids: Vec<String> = requests.iter().map(|m| id(m)).collect();
    let mut reply_types = Vec::new();
    for r in rehab.accepted() {
        let reply = body_json(&r.body);
        let corr = reply["correlation_id"]
            .as_str()
            .expect("correlation_id")
            .to_owned();
        assert!(
            request_ids.contains(&corr),
            "reply correlated to an unknown request"
        );
        reply_types.push(reply["message_type"].as_str().unwrap_or("").to_owned());
    }
    reply_types.sort();
    assert_eq!(
        reply_types,
        vec![
            "emergency.transfer.acknowledged",
            "emergency.transfer.acknowledged",
            "enforcement.material.decision",
            "referral.acknowledged",
            "referral.acknowledged",
            "referral.acknowledged",
            "referral.acknowledged",
            "telemedicine.consultation.result",
            "telemedicine.consultation.result",
        ]
    );

    // Where is the material? Delivered to police, with the police decision as its reply,
    // which came in as police XML and reached rehab as the canonical envelope.
    let status = status_of(&client, &base, &id(&material)).await;
    assert_eq!(status["destinations"][0]["destination"], "police");
    assert_eq!(
        status["replies"][0]["message_type"],
        "enforcement.material.decision"
    );
    let decision_id = status["replies"][0]["message_id"]
        .as_str()
        .expect("reply id");
    let decision = status_of(&client, &base, decision_id).await;
    assert_eq!(decision["source"], "police");
    assert_eq!(decision["correlation"], "matched");
    let at_rehab = rehab
        .accepted()
        .into_iter()
        .map(|r| body_json(&r.body))
        .find(|b| b["message_id"] == decision_id)
        .expect("decision delivered to rehab");
    assert!(
        at_rehab["payload"]["police_case_number"].is_string(),
        "{at_rehab}"
    );
    // The reply's intake counts the correlation after its copies are out, so the partner may
    // have the reply a moment before the count moves.
    assert!(
        eventually(Duration::from_secs(5), || gateway
            .stats
            .totals()
            .replies_correlated
            == 9)
        .await,
        "replies correlated: {}",
        gateway.stats.totals().replies_correlated
    );

    gateway.shutdown().await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_typed_problems_and_duplicates_get_the_original_receipt() {
    let world = World::new("http", false).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/messages");

    // 415
    let r = client
        .post(&url)
        .bearer_auth(wingspan_sim::dev_token("rehab"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 415);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // 400
    let r = client
        .post(&url)
        .bearer_auth(wingspan_sim::dev_token("rehab"))
        .header("content-type", "application/json")
        .body("{\"message_id\": ")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["type"],
        "/problems/malformed"
    );
    // 413 for a declared length over the limit (on its own connection: it is closed after)
    let big = vec![b' '; 8 * 1024 * 1024];
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth(wingspan_sim::dev_token("rehab"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    // 413 for a chunked body found too large while reading: the rest is read and thrown
    // away, so the client still sending reads the refusal rather than a reset.
    assert_eq!(chunked_post(&base, 8 * 1024 * 1024).await, 413);
    // 422 schema violation with pointers
    let mut bad = samples::handover(1, "320411", false, false);
    bad["payload"]["person"]["person_id"] = json!("not-an-id");
    bad["payload"]["release_date"] = json!(17);
    let (status, problem) = post(&client, &base, &bad).await;
    assert_eq!(status, 422);
    assert_eq!(problem["type"], "/problems/schema-violation");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert!(
        pointers.contains(&"/payload/person/person_id"),
        "{pointers:?}"
    );
    assert!(pointers.contains(&"/payload/release_date"), "{pointers:?}");
    assert!(
        !problem.to_string().contains("not-an-id"),
        "problem must not echo values"
    );
    // 422 envelope
    let mut no_type = samples::material_submit(2);
    no_type
        .as_object_mut()
        .expect("object")
        .remove("message_type");
    assert_eq!(post(&client, &base, &no_type).await.0, 422);
    // 403 type not allowed for the source
    let mut forged = samples::material_submit(3);
    forged["source"] = json!("hr");
    let (status, problem) = post(&client, &base, &forged).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (403, Some("/problems/type-not-allowed"))
    );
    // 401 unknown source: no credentials of its own
    let mut stranger = samples::material_submit(4);
    stranger["source"] = json!("stranger");
    assert_eq!(post(&client, &base, &stranger).await.0, 401);
    // 403 a source speaking for another: rehab's credentials, police's name
    let mut spoofed = samples::material_submit(4);
    spoofed["source"] = json!("police");
    let r = client
        .post(&url)
        .bearer_auth(wingspan_sim::dev_token("rehab"))
        .json(&spoofed)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["type"],
        "/problems/source-mismatch"
    );
    // 422 no route: a handover outside the province, with no placement or allowance
    let nowhere = samples::handover(5, "110105", false, false);
    let (status, problem) = post(&client, &base, &nowhere).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("/problems/no-route"))
    );

    // Duplicate: 200 with the original receipt, delivered once.
    let m = samples::material_submit(6);
    let (s1, r1) = post(&client, &base, &m).await;
    let (s2, r2) = post(&client, &base, &m).await;
    assert_eq!((s1, s2), (202, 200));
    assert_eq!(r1, r2);
    let police = world.partner("police");
    assert!(eventually(Duration::from_secs(10), || police.accepted_count() == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(police.posts(), 1, "the duplicate was not delivered again");
    // Nothing that was refused reached any partner.
    let total: usize = world.partners.values().map(|p| p.accepted_count()).sum();
    assert_eq!(total, 1);

    // Unknown id → 404 problem; health and readiness.
    assert_eq!(
        client
            .get(format!("{base}/v1/messages/nope"))
            .send()
            .await
            .expect("get")
            .status(),
        404
    );
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );

    gateway.shutdown().await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_ingress_delivers_and_sends_refusals_to_the_rejects_queue() {
    let world = World::new("amqp", false).await;
    let (gateway, _base) = world.start_gateway().await;
    let good = samples::handover(1, "320506", false, false);
    let mut bad = samples::handover(2, "320506", false, false);
    bad["payload"]["supervision_type"] = json!("house-arrest");
    publish_to_queue(
        &gateway.names.ingress(),
        &[
            serde_json::to_vec(&good).expect("json"),
            serde_json::to_vec(&bad).expect("json"),
            b"not json at all".to_vec(),
        ],
    )
    .await;
    let aftercare = world.partner("aftercare");
    assert!(eventually(Duration::from_secs(10), || aftercare.accepted_count() == 1).await);
    assert_eq!(
        aftercare.accepted()[0].idempotency_key,
        good["message_id"].as_str().expect("id")
    );

    let rejected = drain_until(&gateway.names.rejects(), 2, Duration::from_secs(10)).await;
    assert_eq!(rejected.len(), 2, "two refusals in the rejects queue");
    let problems: Vec<&str> = rejected
        .iter()
        .map(|(_, h)| h["x-wingspan-problem"].as_str())
        .collect();
    assert!(
        problems.contains(&"/problems/schema-violation"),
        "{problems:?}"
    );
    assert!(problems.contains(&"/problems/malformed"), "{problems:?}");
    assert!(
        rejected.iter().any(|(body, _)| body == b"not json at all"),
        "the refused bytes are kept as they came"
    );

    gateway.shutdown().await;
    world.cleanup().await;
}

/// POST `total` bytes of spaces with chunked transfer encoding over a raw connection (the
/// HTTP client here has no streaming bodies); the response's status.
async fn chunked_post(base: &str, total: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        wingspan_sim::dev_token("rehab")
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .expect("chunk size");
        tcp.write_all(&chunk).await.expect("chunk");
        tcp.write_all(b"\r\n").await.expect("chunk end");
        sent += chunk.len();
    }
    tcp.write_all(b"0\r\n\r\n").await.expect("last chunk");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before a status line");
        answer.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status")
}

/// The county hospital onboarded by configuration alone (the declared adapter
/// `config/adapters/hl7v2`): a consultation for alliance ma03 goes out as an HL7 v2.5 order
/// (OMG^O19, ER7 over HTTP), the hospital's simulator answers with an ORU^R01 result posted
/// as ER7 to its source, and the result reaches rehab correlated to the request. ER7 the
/// gateway cannot read, or reads but cannot map, gets its typed problem without repeating
/// what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_county_hospital_on_hl7v2_gets_an_order_and_its_result_comes_back_correlated() {
    let world = World::new("hl7v2", true).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();

    let request = samples::consultation_request(7, "ma03", "urgent");
    let request_id = request["message_id"].as_str().expect("id").to_owned();
    let (status, receipt) = post(&client, &base, &request).await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["destinations"], json!(["hospital-ma03"]));

    let hospital = world.partner("hospital-ma03");
    assert!(
        eventually(Duration::from_secs(20), || hospital.accepted_count() >= 1).await,
        "the order reached the hospital"
    );
    let order = &hospital.accepted()[0];
    assert_eq!(order.content_type, "application/hl7-v2");
    assert_eq!(order.idempotency_key, request_id);
    let er7 = String::from_utf8_lossy(&order.body).into_owned();
    assert!(er7.starts_with("MSH|^~\\&|"), "{er7}");
    let segments: Vec<&str> = er7.split('\r').filter(|s| !s.is_empty()).collect();
    let msh: Vec<&str> = segments[0].split('|').collect();
    assert_eq!(msh[8], "OMG^O19^OMG_O19", "MSH-9");
    assert_eq!(msh[9], request_id, "MSH-10 is the message id");
    assert!(segments.iter().any(|s| s.starts_with("PID|")), "{er7}");
    assert!(segments.iter().any(|s| s.starts_with("ORC|NW|")), "{er7}");
    // What the hospital read back is what was sent (its field policy keeps everything).
    let understood = order
        .canonical
        .as_ref()
        .expect("the hospital read its order");
    assert_eq!(understood["message_id"], request["message_id"]);
    for field in [
        "consultation_id",
        "urgency",
        "specialty",
        "reason",
        "clinical_summary",
    ] {
        assert_eq!(
            understood["payload"][field], request["payload"][field],
            "{field}"
        );
    }
    assert_eq!(
        understood["payload"]["person"]["person_id"],
        request["payload"]["person"]["person_id"]
    );

    // The ORU^R01 came back through the hospital's own source and reached rehab, correlated.
    let rehab = world.partner("rehab");
    assert!(
        eventually(Duration::from_secs(20), || rehab.accepted_count() >= 1).await,
        "the result reached rehab"
    );
    let result = body_json(&rehab.accepted()[0].body);
    assert_eq!(result["message_type"], "telemedicine.consultation.result");
    assert_eq!(result["source"], "hospital-ma03");
    assert_eq!(result["correlation_id"], request_id.as_str());
    assert_eq!(
        result["payload"]["consultation_id"],
        request["payload"]["consultation_id"]
    );
    let status = status_of(&client, &base, &request_id).await;
    assert_eq!(
        status["replies"][0]["message_type"], "telemedicine.consultation.result",
        "{status}"
    );
    let result_id = result["message_id"].as_str().expect("result id");
    let result_status = status_of(&client, &base, result_id).await;
    assert_eq!(result_status["source"], "hospital-ma03");
    assert_eq!(result_status["correlation"], "matched");

    // ER7 that is not well-formed: 400, typed. ER7 that is well-formed but no order or result
    // (an admission, ADT^A01): 422, with the program's message and none of the values.
    let (status, p) = support::post_native(
        &client,
        &base,
        "hospital-ma03",
        "application/hl7-v2",
        b"PID|1||MARKER-320411\r".to_vec(),
    )
    .await;
    assert_eq!(
        (status, p["type"].as_str()),
        (400, Some("/problems/malformed-document")),
        "{p}"
    );
    let admission = b"MSH|^~\\&|HIS|ma03|WINGSPAN||20261130150211+0800||ADT^A01^ADT_A01|adt-1|P|2.5\rPID|1||MARKER-320411^^^^NNCHN||MARKER Name\r".to_vec();
    let (status, p) = support::post_native(
        &client,
        &base,
        "hospital-ma03",
        "application/hl7-v2",
        admission,
    )
    .await;
    assert_eq!(
        (status, p["type"].as_str()),
        (422, Some("/problems/unmappable-document")),
        "{p}"
    );
    assert!(!p.to_string().contains("MARKER"), "{p}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rehab.accepted_count(), 1, "nothing refused was delivered");

    gateway.shutdown().await;
    world.cleanup().await;
}
