//! The audit trail over real flows: every step of the core flows leaves its record; a
//! request's trail includes its police reply; no personal data in the audit store, its
//! exports or the logs (marker person ids), while a search by person id still finds the
//! person's records through the keyed subject reference; `audit verify` passes on the live
//! store and on an export, and fails on a tampered export.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::{Captured, World, eventually, post, status_of, verify_over_api};
use wingspan::audit;
use wingspan_core::audit::{Event, Record, Suite};
use wingspan_sim::{Behaviour, samples};

const MARKER_ID: &str = "11010119800101777X";
/// The example config's development token of its compliance user.
const COMPLIANCE: &str = "dev-compliance-token";
const MARKER_NAME: &str = "Markername Zhou";

/// Log lines of this test process (both tests), captured at debug level.
static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();

fn capture_logs() -> Captured {
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                "debug,lapin=off,hyper=off,reqwest=off,h2=off,tokio_postgres=off,postgres=off",
            )
            .with_writer(move || writer.clone())
            .try_init();
        logs
    })
    .clone()
}

fn marked(mut m: serde_json::Value) -> serde_json::Value {
    m["payload"]["person"]["person_id"] = json!(MARKER_ID);
    m["payload"]["person"]["name"] = json!(MARKER_NAME);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_is_recorded_without_personal_data_and_verifies() {
    flows(None, Suite::Sha256Ed25519).await;
}

/// The same, with the audit trail in the PostgreSQL store several instances share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_holds_with_the_postgresql_audit_store() {
    let url = tokio::task::spawn_blocking(support::pg_schema)
        .await
        .expect("schema");
    flows(Some(url.clone()), Suite::Sha256Ed25519).await;
    let _ = tokio::task::spawn_blocking(move || support::pg_drop(&url)).await;
}

/// The same under the national algorithms (SM3 chain, HMAC-SM3 references, SM2 signatures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_holds_under_the_sm3_sm2_suite() {
    flows(None, Suite::Sm3Sm2).await;
}

/// The national algorithms with the PostgreSQL store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_holds_under_sm3_sm2_with_the_postgresql_audit_store() {
    let url = tokio::task::spawn_blocking(support::pg_schema)
        .await
        .expect("schema");
    flows(Some(url.clone()), Suite::Sm3Sm2).await;
    let _ = tokio::task::spawn_blocking(move || support::pg_drop(&url)).await;
}

async fn flows(postgres: Option<String>, suite: Suite) {
    let logs = capture_logs();
    let world = World::new("audit", true).await;
    let mut settings = String::new();
    if let Some(url) = &postgres {
        settings.push_str(&format!("store = {url:?}\n"));
    }
    if suite != Suite::default() {
        settings.push_str(&format!("suite = \"{suite}\"\n"));
    }
    if !settings.is_empty() {
        let text = std::fs::read_to_string(&world.config_file).expect("config");
        let with = text.replacen("[audit]\n", &format!("[audit]\n{settings}"), 1);
        assert_ne!(with, text, "the example config has an [audit] section");
        std::fs::write(&world.config_file, with).expect("config");
    }
    world.partner("hr").set_behaviour(Behaviour::FailFirst(1));
    world.partner("civil").set_behaviour(Behaviour::Reject);
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();

    let material = marked(samples::material_submit(1));
    let handover = marked(samples::handover(2, "320411", true, true));
    for m in [&material, &handover] {
        assert_eq!(post(&client, &base, m).await.0, 202);
    }
    assert_eq!(post(&client, &base, &material).await.0, 200, "duplicate");
    let mut invalid = marked(samples::handover(3, "320411", true, false));
    invalid["payload"]["release_date"] = json!("not a date");
    assert_eq!(post(&client, &base, &invalid).await.0, 422);

    // The police decision comes back; hr succeeds on its second attempt; civil parks.
    let rehab = world.partner("rehab");
    assert!(eventually(Duration::from_secs(20), || rehab.accepted_count() >= 3).await);
    let material_id = material["message_id"].as_str().expect("id");
    assert!(
        eventually(Duration::from_secs(20), || {
            let hr = world.partner("hr").accepted_count() == 1;
            hr && world.partner("aftercare").accepted_count() == 1
        })
        .await
    );
    let handover_id = handover["message_id"].as_str().expect("id");
    let mut parked = false;
    for _ in 0..100 {
        let st = status_of(&client, &base, handover_id).await;
        if st["destinations"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["state"] == "dead-lettered"))
        {
            parked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(parked, "civil parked the handover");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The compliance endpoints on the admin listener.
    let admin = format!("http://{}", gateway.admin_addr.expect("admin listener"));
    let got: serde_json::Value = client
        .get(format!("{admin}/v1/audit/messages/{material_id}"))
        .bearer_auth(COMPLIANCE)
        .send()
        .await
        .expect("trail")
        .json()
        .await
        .expect("json");
    let events: Vec<&str> = got["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["event"].as_str())
        .collect();
    assert!(events.contains(&"reply_correlated"), "{events:?}");
    // A person is never named in a URL, and a search by person needs a reason.
    let in_url = client
        .get(format!("{admin}/v1/audit/search?subject={MARKER_ID}"))
        .bearer_auth(COMPLIANCE)
        .send()
        .await
        .expect("search");
    assert_eq!(in_url.status(), 400);
    let no_reason = client
        .post(format!("{admin}/v1/audit/search"))
        .bearer_auth(COMPLIANCE)
        .json(&json!({"subject": MARKER_ID}))
        .send()
        .await
        .expect("search");
    assert_eq!(no_reason.status(), 400);
    let by_person = |after: Option<u64>, limit: u64| {
        let mut body =
            json!({"subject": MARKER_ID, "reason": "case 2026-114 review", "limit": limit});
        if let Some(a) = after {
            body["after"] = json!(a);
        }
        client
            .post(format!("{admin}/v1/audit/search"))
            .bearer_auth(COMPLIANCE)
            .json(&body)
            .send()
    };
    let page: serde_json::Value = by_person(None, 1)
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    // The person is named in each accepted message's received record (the trail has the
    // rest): two messages, one a page.
    assert_eq!(page["records"].as_array().map(Vec::len), Some(1));
    let after = page["next_after"].as_u64().expect("more pages");
    let rest: serde_json::Value = by_person(Some(after), 1000)
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    // Each search by person is on record before it runs (who, why, whose reference): the
    // second page finds the first search's record as well as the second message.
    let searched: Vec<&serde_json::Value> = rest["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["event"] == "subject_searched")
        .collect();
    assert!(!searched.is_empty(), "{rest}");
    assert_eq!(searched[0]["actor"], "compliance-dev");
    assert_eq!(searched[0]["reason"], "case 2026-114 review");
    let named: Vec<&str> = page["records"]
        .as_array()
        .into_iter()
        .chain(rest["records"].as_array())
        .flatten()
        .filter_map(|r| r["event"].as_str())
        .filter(|e| *e != "subject_searched")
        .collect();
    assert_eq!(named, ["received", "received"]);
    assert!(rest["next_after"].is_null());
    assert!(
        !rest.to_string().contains(MARKER_ID),
        "the answer holds no person id"
    );
    let verified = verify_over_api(&client, &admin, COMPLIANCE).await;
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(
        verified
            .to_string()
            .contains(&format!("\"suite\":\"{suite}\"")),
        "the verification names its suite: {verified}"
    );
    // The subject access report: the person's two messages and the police reply, what each
    // partner received under the config in force, recorded before it is made; no person id
    // in it, as JSON or as the HTML document.
    let report_of = |body: serde_json::Value, token: &'static str| {
        client
            .post(format!("{admin}/v1/audit/subject-report"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let asked = json!({"subject": MARKER_ID, "reason": "PIPL art. 45 request 2026-7"});
    let answer = report_of(asked.clone(), COMPLIANCE).await.expect("report");
    assert_eq!(answer.status(), 200);
    let report: serde_json::Value = answer.json().await.expect("json");
    assert!(!report.to_string().contains(MARKER_ID) && !report.to_string().contains(MARKER_NAME));
    let messages = report["messages"].as_array().expect("messages");
    let of = |id: &str| messages.iter().find(|m| m["message_id"] == id);
    let reported = of(material_id).expect("the material");
    assert!(of(handover_id).is_some(), "{report}");
    assert_eq!(reported["outcome"], "accepted");
    assert!(
        reported["config_sha256"]
            .as_str()
            .is_some_and(|h| h.len() == 64),
        "{reported}"
    );
    let to_police = reported["deliveries"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["destination"] == "police"))
        .expect("delivered to the police");
    assert_eq!(to_police["state"], "delivered");
    assert_eq!(to_police["received"]["kind"], "fields");
    let fields: Vec<&str> = to_police["received"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        fields.contains(&"person") && fields.contains(&"material_id"),
        "{fields:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m["correlation_id"] == material_id && m["source"] == "police"),
        "the police reply: {report}"
    );
    let page = report_of(
        json!({"subject": MARKER_ID, "reason": "to hand over", "format": "html"}),
        COMPLIANCE,
    )
    .await
    .expect("report");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    let page = page.text().await.expect("html");
    assert!(page.contains("Subject access report") && page.contains(material_id));
    assert!(!page.contains(MARKER_ID) && !page.contains(MARKER_NAME));
    assert_eq!(
        report_of(json!({"subject": MARKER_ID, "reason": " "}), COMPLIANCE)
            .await
            .expect("report")
            .status(),
        400
    );
    assert_eq!(
        report_of(asked.clone(), "dev-operator-token")
            .await
            .expect("report")
            .status(),
        403
    );
    // The command line asks the same API and writes the document.
    let html_file = world.dir.join("subject-report.html");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args([
            "audit",
            "subject-report",
            MARKER_ID,
            "--reason",
            "from the CLI",
        ])
        .args(["--admin-url", admin.as_str(), "--html"])
        .arg(&html_file)
        .env("WINGSPAN_ADMIN_TOKEN", COMPLIANCE)
        .output()
        .await
        .expect("wingspan audit subject-report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&html_file).expect("the document");
    assert!(written.contains(material_id) && !written.contains(MARKER_ID));
    // Each report is on record: who, why, whose reference.
    let on_record: serde_json::Value = client
        .get(format!("{admin}/v1/audit/search?event=subject_reported"))
        .bearer_auth(COMPLIANCE)
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    let reasons: Vec<&str> = on_record["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["actor"] == "compliance-dev")
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "PIPL art. 45 request 2026-7",
            "to hand over",
            "from the CLI"
        ],
        "{on_record}"
    );
    assert_eq!(
        client
            .get(format!("{admin}/v1/audit/messages/nope"))
            .bearer_auth(COMPLIANCE)
            .send()
            .await
            .expect("get")
            .status(),
        404
    );
    // Only the compliance role reads the audit trail: no token → 401, a wrong token → 401,
    // the operator's → 403.
    let trail_url = format!("{admin}/v1/audit/messages/{material_id}");
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(client.get(&trail_url).send().await.expect("get")),
        401
    );
    assert_eq!(
        status(
            client
                .get(&trail_url)
                .bearer_auth("dev-compliance-token-x")
                .send()
                .await
                .expect("get")
        ),
        401
    );
    assert_eq!(
        status(
            client
                .get(&trail_url)
                .bearer_auth("dev-operator-token")
                .send()
                .await
                .expect("get")
        ),
        403
    );

    // The signing key is rotated by an operator (the compliance role may not); the chain
    // goes on under the new key, which replaces the old in its file, and everything below
    // (verification, export) follows the rotation back to the old key's records.
    let old_key = std::fs::read_to_string(&world.load().signing_key_file).expect("key");
    let rotate = |token: &'static str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_wingspan"))
            .args(["audit", "rotate-key", "--admin-url", admin.as_str()])
            .env("WINGSPAN_ADMIN_TOKEN", token)
            .output()
    };
    assert!(!rotate(COMPLIANCE).await.expect("run").status.success());
    let out = rotate("dev-operator-token")
        .await
        .expect("wingspan audit rotate-key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let new_key = std::fs::read_to_string(&world.load().signing_key_file).expect("key");
    assert_ne!(old_key, new_key, "the key file holds the new key");
    assert!(!new_key.contains(rotated["old_key"].as_str().expect("old")));
    let after = samples::material_submit(4);
    assert_eq!(post(&client, &base, &after).await.0, 202);
    let verified = verify_over_api(&client, &admin, COMPLIANCE).await;
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["chains"][0]["key_rotations"], 1, "{verified}");

    let loaded = world.load();
    gateway.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let export_dir = world.dir.join("export");
    let (material_id, handover_id) = (material_id.to_owned(), handover_id.to_owned());
    let material = material.clone();
    tokio::task::spawn_blocking(move || {
        check_store(
            &loaded,
            &material,
            &material_id,
            &handover_id,
            &export_dir,
            &logs,
            postgres.is_some(),
            suite,
        )
    })
    .await
    .expect("checks");
    world.cleanup().await;
}

/// Everything that reads the store (synchronous: the PostgreSQL client must not run on the
/// async runtime's threads).
#[allow(clippy::too_many_arguments)]
fn check_store(
    loaded: &wingspan::load::Loaded,
    material: &serde_json::Value,
    material_id: &str,
    handover_id: &str,
    export_dir: &std::path::Path,
    logs: &Captured,
    postgres: bool,
    suite: Suite,
) {
    let loaded = loaded.clone();
    // The command line, pointed at the store explicitly.
    let store = loaded.config.audit.store.clone().unwrap_or_else(|| {
        loaded
            .state_dir
            .join("wingspan-state.db")
            .display()
            .to_string()
    });
    // The repository's config names the default suite: the key this store's chain trusts is
    // given explicitly (its form names its algorithm).
    let trusted = audit::trusted_key(&loaded, None).expect("key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(["audit", "verify", "--config", "config", "--store", &store])
        .args(["--public-key", &trusted])
        .current_dir(support::repo())
        .env(
            "WINGSPAN_AUDIT_SIGNING_KEY",
            std::fs::read_to_string(&loaded.signing_key_file).expect("key"),
        )
        .output()
        .expect("wingspan audit verify");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains(": ok") && said.contains(&format!("suite {suite}")),
        "{said}"
    );
    let mut conn = audit::open_store(&loaded).expect("store");
    // Every event of the core flows is on record.
    let all = audit::search(
        &mut conn,
        &audit::Filter {
            limit: 100_000,
            ..Default::default()
        },
    )
    .expect("search");
    let events: BTreeSet<&str> = all.iter().map(|r| r.entry.event.as_str()).collect();
    for e in [
        Event::ConfigLoaded,
        Event::Received,
        Event::Rejected,
        Event::Duplicate,
        Event::DeliveryAttempt,
        Event::RetryScheduled,
        Event::Parked,
        Event::Delivered,
        Event::ReplyCorrelated,
    ] {
        assert!(
            events.contains(e.as_str()),
            "no {} record: {events:?}",
            e.as_str()
        );
    }

    // An accepted message's received record says so, and where it was routed: the
    // destinations and the routes that chose them.
    assert!(
        all.iter().any(|r| r.entry.event == Event::Received
            && r.entry.outcome.as_deref() == Some(wingspan_core::audit::ACCEPTED)
            && r.entry
                .destination
                .as_deref()
                .is_some_and(|d| !d.is_empty())
            && r.entry.reason.as_deref().is_some_and(|d| !d.is_empty())),
        "no received record carrying acceptance and routing"
    );

    // The material's trail: its own steps in order, and the police reply's in order. The two
    // interleave only where the world does: the partner may answer before the gateway has
    // written "delivered", never before the request was routed. (A duplicate's received
    // record, without the outcome `accepted`, is left out.)
    let trail = audit::trail(&mut conn, material_id).expect("trail");
    let table = audit::table(&trail);
    let steps_of = |source: &str| -> Vec<&str> {
        trail
            .iter()
            .filter(|r| r.entry.source.as_deref() == Some(source))
            .filter(|r| {
                r.entry.event != Event::Duplicate
                    && (r.entry.event != Event::Received
                        || wingspan_core::audit::accepted(&r.entry))
            })
            .map(|r| r.entry.event.as_str())
            .collect()
    };
    assert_eq!(steps_of("rehab"), ["received", "delivered"], "{table}");
    assert_eq!(
        steps_of("police"),
        ["received", "reply_correlated", "delivered"],
        "{table}"
    );
    // The attempt that delivered is the delivery's record: the bytes sent, the attempt.
    for r in trail.iter().filter(|r| r.entry.event == Event::Delivered) {
        assert!(
            wingspan_core::audit::attempted(&r.entry)
                && r.entry
                    .reason
                    .as_deref()
                    .is_some_and(|a| a.starts_with("attempt ")),
            "{table}"
        );
    }
    let routed_at = |source: &str| {
        trail
            .iter()
            .find(|r| {
                r.entry.source.as_deref() == Some(source)
                    && wingspan_core::audit::accepted(&r.entry)
            })
            .map(|r| r.seq)
            .expect("record")
    };
    assert!(routed_at("rehab") < routed_at("police"), "{table}");
    let received = trail
        .iter()
        .find(|r| r.entry.event == Event::Received)
        .expect("received");
    assert_eq!(
        received.entry.payload_sha256.as_deref(),
        Some(
            wingspan_core::audit::sha256_hex(&serde_json::to_vec(&material).expect("json"))
                .as_str()
        ),
        "the hash of the exact bytes posted"
    );

    // A search by person id goes through the subject reference.
    let keys = audit::keys(&loaded, false).expect("keys");
    let by_person = audit::search(
        &mut conn,
        &audit::Filter {
            subject_ref: Some(keys.subject_ref(MARKER_ID)),
            limit: 1000,
            ..Default::default()
        },
    )
    .expect("search");
    let ids: BTreeSet<&str> = by_person
        .iter()
        .filter_map(|r| r.entry.message_id.as_deref())
        .collect();
    assert_eq!(ids, BTreeSet::from([material_id, handover_id]));
    assert_eq!(
        matches!(conn, audit::AuditSource::Postgres(_)),
        postgres,
        "the store under test is the one configured"
    );

    // Verify: the live store, an export in each format, and a tampered export.
    let key = audit::trusted_key(&loaded, None).expect("key");
    for report in audit::verify_store(&mut conn, &key).expect("verify") {
        assert!(report.ok() && report.report.suite == suite, "{report:?}");
    }
    for format in ["jsonl", "csv"] {
        let dir = export_dir.join(format);
        let manifests = audit::export(&mut conn, None, None, format, &dir).expect("export");
        assert_eq!(manifests[0].count, u64::try_from(all.len()).expect("n"));
        assert_eq!(manifests[0].suite, suite);
        for (_, report, problems) in audit::verify_export(&dir, &key).expect("verify export") {
            assert!(
                report.ok() && problems.is_empty(),
                "{report:?} {problems:?}"
            );
        }
    }
    // A window of the chain: from its first record inside to its last, verifiable on its own
    // from the manifest's starting hash.
    let (since, until) = (
        all[all.len() / 4].entry.at.clone(),
        all[all.len() * 3 / 4].entry.at.clone(),
    );
    // Records are stamped when made, not when appended, so `at` is not monotonic along the
    // chain: the window is the contiguous run from the first record inside to the last.
    let mut chain: Vec<&Record> = all.iter().collect();
    chain.sort_by_key(|r| r.seq);
    let is_inside = |r: &&Record| r.entry.at >= since && r.entry.at < until;
    let first = chain.iter().position(is_inside).expect("a record inside");
    let last = chain.iter().rposition(is_inside).expect("a record inside");
    let inside = &chain[first..=last];
    let dir = export_dir.join("window");
    let manifests =
        audit::export(&mut conn, Some(&since), Some(&until), "jsonl", &dir).expect("export");
    assert_eq!(manifests[0].count, u64::try_from(inside.len()).expect("n"));
    assert_eq!(manifests[0].first_seq, inside.first().map(|r| r.seq));
    assert_eq!(manifests[0].last_seq, inside.last().map(|r| r.seq));
    assert_eq!(
        Some(&manifests[0].start_prev_hash),
        inside.first().map(|r| &r.prev_hash)
    );
    for (_, report, problems) in audit::verify_export(&dir, &key).expect("verify window") {
        assert!(
            report.ok() && problems.is_empty(),
            "{report:?} {problems:?}"
        );
    }
    let file = std::fs::read_dir(export_dir.join("jsonl"))
        .expect("dir")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .expect("records file")
        .path();
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, text.replacen("\"delivered\"", "\"parked\"", 1)).expect("tamper");
    let tampered = audit::verify_export(&export_dir.join("jsonl"), &key).expect("verify");
    assert!(
        !tampered[0].2.is_empty() || !tampered[0].1.ok(),
        "a tampered export fails"
    );

    // No personal data anywhere: the store's files, the exports, the logs.
    let mut haystacks: Vec<(String, Vec<u8>)> = Vec::new();
    for dir in [
        loaded.state_dir.clone(),
        export_dir.join("jsonl"),
        export_dir.join("csv"),
    ] {
        for e in std::fs::read_dir(&dir).expect("dir").flatten() {
            if e.path().is_file() {
                haystacks.push((
                    e.path().display().to_string(),
                    std::fs::read(e.path()).expect("read"),
                ));
            }
        }
    }
    haystacks.push((
        "logs".into(),
        logs.0.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    ));
    assert!(
        haystacks.iter().any(|(n, b)| n == "logs" && !b.is_empty()),
        "logs were captured"
    );
    for (name, bytes) in &haystacks {
        for marker in [MARKER_ID, MARKER_NAME] {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "{name} holds the marker {marker}"
            );
        }
    }
}
