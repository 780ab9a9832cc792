//! Changing a running gateway: a reload is checked first and refused with the reason (the old
//! config keeps running), or swapped in; rollback goes through the same path; SIGHUP does
//! what `POST /admin/reload` does; every attempt is audited with the hash and who asked; and
//! reloading again and again under load loses nothing and routes nothing twice.

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::{World, eventually, post};
use wingspan_sim::samples;

const OPERATOR: &str = "dev-operator-token";

/// Changzhou's handovers go to the Suzhou station instead (an operator moving a township).
fn moved(text: String) -> String {
    text.replace(
        "prefix = \"3204\" }]\ndestinations = [\"aftercare-3204\"]",
        "prefix = \"3204\" }]\ndestinations = [\"aftercare-3205\"]",
    )
}

async fn admin_post(
    client: &reqwest::Client,
    admin: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = client
        .post(format!("{admin}{path}"))
        .bearer_auth(OPERATOR)
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Where a Changzhou handover is routed now (the receipt's destinations).
async fn changzhou_goes_to(client: &reqwest::Client, base: &str, i: u64) -> Vec<String> {
    let (status, body) = post(client, base, &samples::handover(i, "320411", false, false)).await;
    assert_eq!(status, 202, "{body}");
    serde_json::from_value(body["destinations"].clone()).expect("destinations")
}

fn audit_rows(world: &World, event: &str) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(world.dir.join("state/wingspan-state.db")).expect("db");
    let mut stmt = conn
        .prepare("SELECT coalesce(actor,''), coalesce(reason,''), coalesce(outcome,'') FROM audit WHERE event = ?1 ORDER BY seq")
        .expect("prepare");
    stmt.query_map([event], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_checked_then_swapped_refused_with_reasons_and_rolled_back() {
    let world = World::new("reload", false).await;
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    let first = gateway.reloader.current_sha256();
    assert_eq!(
        changzhou_goes_to(&client, &base, 1).await,
        ["aftercare-3204"]
    );

    // Only operators.
    let r = client
        .post(format!("{admin}/admin/reload"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);

    // Nothing changed: said so, nothing swapped.
    let (status, body) = admin_post(&client, &admin, "/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unchanged"], true);

    // A broken config: refused with file and line; the old one keeps routing.
    let good = std::fs::read_to_string(&world.config_file).expect("config");
    world.rewrite(|t| {
        t.replace(
            "destinations = [\"aftercare-3204\"]",
            "destinations = [\"nowhere\"]",
        )
    });
    let (status, body) = admin_post(&client, &admin, "/admin/reload", json!({})).await;
    assert_eq!(status, 422, "{body}");
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("nowhere") && problems.contains("wingspan.toml:"),
        "{body}"
    );
    assert_eq!(
        changzhou_goes_to(&client, &base, 2).await,
        ["aftercare-3204"]
    );

    // A change a running process cannot take: refused, naming the setting.
    std::fs::write(
        &world.config_file,
        good.replace(
            &format!("prefix = \"{}\"", world.prefix),
            "prefix = \"elsewhere\"",
        ),
    )
    .expect("write");
    let (status, body) = admin_post(&client, &admin, "/admin/reload", json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["problems"].to_string().contains("broker.prefix"),
        "{body}"
    );

    // A good change: swapped; the answer says what changed, in words.
    std::fs::write(&world.config_file, moved(good.clone())).expect("write");
    let (status, body) = admin_post(&client, &admin, "/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let second = body["sha256"].as_str().expect("sha").to_owned();
    assert_eq!(body["previous_sha256"], first.as_str());
    assert!(
        body["changes"]
            .to_string()
            .contains("handover-aftercare-changzhou"),
        "{body}"
    );
    assert_eq!(
        changzhou_goes_to(&client, &base, 3).await,
        ["aftercare-3205"]
    );
    let at_3205 = || {
        world
            .partner("aftercare")
            .accepted()
            .iter()
            .filter(|r| r.path.starts_with("/3205/"))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(20), || at_3205() == 1).await,
        "the moved handover was not delivered under the new config"
    );

    // The history knows both; rollback to the first goes through the same checks.
    let history: Value = client
        .get(format!("{admin}/admin/config"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(history["current"], second.as_str());
    assert_eq!(
        history["history"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    let (status, _) = admin_post(
        &client,
        &admin,
        "/admin/rollback",
        json!({"sha256": "ffffffff"}),
    )
    .await;
    assert_eq!(status, 404);
    let out = Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(["config", "rollback", &first[..12], "--admin-url", &admin])
        .env("WINGSPAN_ADMIN_TOKEN", OPERATOR)
        .output()
        .expect("wingspan config rollback");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        changzhou_goes_to(&client, &base, 4).await,
        ["aftercare-3204"]
    );

    // Every attempt in the audit trail with the hash and who asked.
    let loaded = audit_rows(&world, "config_loaded");
    assert!(
        loaded
            .iter()
            .any(|(actor, reason, _)| actor == "operator-dev" && reason.contains(&second)),
        "{loaded:?}"
    );
    assert!(
        loaded
            .iter()
            .any(|(actor, reason, outcome)| actor == "operator-dev"
                && reason.contains(&first)
                && outcome.contains("rollback")),
        "{loaded:?}"
    );
    let refused = audit_rows(&world, "config_refused");
    assert_eq!(refused.len(), 3, "{refused:?}"); // broken, restart-only, unknown version
    assert!(refused.iter().all(|(actor, _, _)| actor == "operator-dev"));

    gateway.shutdown().await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file() {
    let world = World::new("sighup", false).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    world.rewrite(|t| {
        t.replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        )
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_wingspan"))
        .args(["run", "--config"])
        .arg(&world.config_file)
        .env("WINGSPAN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gateway");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "gateway did not become ready");
    assert_eq!(
        changzhou_goes_to(&client, &base, 1).await,
        ["aftercare-3204"]
    );
    world.rewrite(moved);
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let mut moved_now = false;
    for i in 2..100 {
        if changzhou_goes_to(&client, &base, i).await == ["aftercare-3205"] {
            moved_now = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved_now, "SIGHUP did not swap the config");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let loaded = audit_rows(&world, "config_loaded");
    assert!(
        loaded.iter().any(|(actor, _, _)| actor == "signal:SIGHUP"),
        "{loaded:?}"
    );
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_under_load_loses_nothing_and_routes_nothing_twice() {
    const SENDERS: u64 = 3;
    const EACH: u64 = 250;
    let world = World::new("reload-load", false).await;
    let (gateway, base) = world.start_gateway().await;
    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    let original = std::fs::read_to_string(&world.config_file).expect("config");
    let client = reqwest::Client::new();
    let routed = Arc::new(std::sync::Mutex::new(HashMap::<String, Vec<String>>::new()));
    // Reloads so far: each sender holds back its last quarter until six have happened, so
    // that they fall within the load however fast the gateway takes it.
    let reloads = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (client, base, routed, reloads) = (
            client.clone(),
            base.clone(),
            routed.clone(),
            reloads.clone(),
        );
        senders.push(tokio::spawn(async move {
            for i in 0..EACH {
                if i == EACH * 3 / 4 {
                    let deadline = std::time::Instant::now() + Duration::from_secs(30);
                    while reloads.load(std::sync::atomic::Ordering::Relaxed) < 6
                        && std::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                let msg = samples::handover(10_000 * (s + 1) + i, "320411", false, false);
                let id = msg["message_id"].as_str().expect("id").to_owned();
                // A 503 (broker busy) is retried as an upstream would; the receipt says where.
                let dests = loop {
                    let (status, body) = post(&client, &base, &msg).await;
                    match status {
                        200 | 202 => break body["destinations"].clone(),
                        409 | 429 | 503 => tokio::time::sleep(Duration::from_millis(50)).await,
                        other => panic!("{other}: {body}"),
                    }
                };
                let dests: Vec<String> = serde_json::from_value(dests).expect("destinations");
                routed.lock().expect("lock").insert(id, dests);
            }
        }));
    }
    // Reload back and forth while the load runs.
    let mut swaps = 0;
    while !senders.iter().all(|s| s.is_finished()) && swaps < 40 {
        let text = if swaps % 2 == 0 {
            moved(original.clone())
        } else {
            original.clone()
        };
        std::fs::write(&world.config_file, text).expect("write");
        let (status, body) = admin_post(&client, &admin, "/admin/reload", json!({})).await;
        assert_eq!(status, 200, "{body}");
        swaps += 1;
        reloads.store(swaps, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    for s in senders {
        s.await.expect("sender");
    }
    assert!(swaps >= 6, "only {swaps} reloads happened during the load");
    let routed = routed.lock().expect("lock").clone();
    let total = usize::try_from(SENDERS * EACH).expect("n");
    assert_eq!(routed.len(), total);
    // Both stations are one simulator (its paths /3204/ and /3205/), deduplicating by
    // Idempotency-Key across them: a copy sent to both shows as a repeat.
    let aftercare = world.partner("aftercare");
    assert!(
        eventually(Duration::from_secs(60), || aftercare.accepted_count()
            >= total)
        .await,
        "delivered {} of {total}",
        aftercare.accepted_count()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let station: HashMap<String, String> = aftercare
        .accepted()
        .into_iter()
        .map(|r| {
            let at = if r.path.starts_with("/3204/") {
                "aftercare-3204"
            } else {
                "aftercare-3205"
            };
            (r.idempotency_key, at.to_owned())
        })
        .collect();
    let mut lost = 0;
    let mut misrouted = 0;
    for (id, dests) in &routed {
        assert_eq!(dests.len(), 1, "{id} routed to {dests:?}");
        match station.get(id) {
            None => lost += 1,
            Some(at) if *at != dests[0] => misrouted += 1,
            Some(_) => {}
        }
    }
    let moved_count = routed.values().filter(|d| d[0] == "aftercare-3205").count();
    eprintln!(
        "reload under load: {total} messages, {swaps} reloads, {moved_count} routed under the moved config; lost {lost}, misrouted {misrouted}, delivered twice {}",
        aftercare.repeats()
    );
    assert!(
        moved_count > 0 && moved_count < total,
        "the load did not straddle the reloads"
    );
    assert_eq!((lost, misrouted), (0, 0));
    assert_eq!(
        station.len(),
        total,
        "more messages delivered than accepted"
    );
    assert_eq!(aftercare.repeats(), 0, "a copy delivered twice");
    gateway.shutdown().await;
    world.cleanup().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_recompiles_declared_adapters_and_refuses_a_broken_program() {
    let world = World::new("reload-adapters", false).await;
    // The world's own copy of the adapters, so editing them disturbs no other test.
    let adapters = world.dir.join("adapters");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    copy_dir(&repo.join("config/adapters"), &adapters);
    world.rewrite(|t| {
        let shared = format!(
            "adapters_dir = {:?}",
            repo.join("config/adapters").display().to_string()
        );
        assert!(t.contains(&shared), "the test config names the adapters");
        t.replace(
            &shared,
            &format!("adapters_dir = {:?}", adapters.display().to_string()),
        )
    });
    let (gateway, _base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    let before = gateway.reloader.current_sha256();

    // A program that does not compile: refused at file:line:column, the old config runs on.
    let program = adapters.join("hl7v2/encode.vrl");
    let good = std::fs::read_to_string(&program).expect("program");
    let broken = good.replace("p = object!(del(.payload))", "p = del(.payload) + 1");
    assert_ne!(broken, good, "the test breaks the program's first line");
    std::fs::write(&program, broken).expect("write");
    let (status, body) = admin_post(&client, &admin, "/admin/reload", json!({})).await;
    assert_eq!(status, 422, "{body}");
    let problems = body["problems"].to_string();
    assert!(problems.contains("hl7v2/encode.vrl:"), "{body}");
    assert_eq!(gateway.reloader.current_sha256(), before);

    // The same config text with a changed program is a change, not "unchanged".
    std::fs::write(&program, format!("# revised mapping\n{good}")).expect("write");
    let (status, body) = admin_post(&client, &admin, "/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unchanged"], false, "{body}");
    assert!(
        body["changes"].to_string().contains("declared adapters"),
        "{body}"
    );
    let (status, body) = admin_post(&client, &admin, "/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unchanged"], true, "{body}");
    gateway.shutdown().await;
}
