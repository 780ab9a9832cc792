//! Payload copies sealed at rest: with a payload key configured, what the gateway keeps in its
//! own queues — the parked copy above all — holds no readable byte of the payload; an
//! operator allowed to see payloads reads it decrypted, a replay delivers it in clear to the
//! partner; with the key lost, the copy stays parked (with the reason) and nothing is shown,
//! until the key is back. Under either suite (AES-256-GCM, SM4-GCM).

mod support;

use std::time::Duration;

use support::{World, admin_cli, eventually, peek_queue, post};
use wingspan_core::audit::Suite;
use wingspan_sim::{Behaviour, samples};

const OPERATOR: &str = "dev-operator-token";
const REVIEWER: &str = "dev-reviewer-token";

/// The CLI's outcome and everything it said.
fn wingspan(admin: &str, token: &str, args: &[&str]) -> (bool, String) {
    let (ok, out, err) = admin_cli(admin, token, args);
    (ok, out + &err)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_copies_are_sealed_at_rest_under_aes_256_gcm() {
    sealed_at_rest(Suite::Sha256Ed25519, "aes-256-gcm:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_copies_are_sealed_at_rest_under_sm4_gcm() {
    sealed_at_rest(Suite::Sm3Sm2, "sm4-gcm:").await;
}

async fn sealed_at_rest(suite: Suite, algorithm: &str) {
    let world = World::new("sealed", false).await;
    world.rewrite(|t| {
        t.replacen(
            "[audit]\n",
            &format!("[audit]\nsuite = \"{suite}\"\npayload_key_file = \"payload.key\"\n"),
            1,
        )
    });
    world.partner("civil").set_behaviour(Behaviour::Reject);
    let (gateway, base) = world.start_gateway().await;
    let key_file = world.dir.join("payload.key");
    let key = std::fs::read_to_string(&key_file).expect("the key file was created");
    assert_eq!(
        key.trim().len(),
        if suite == Suite::Sm3Sm2 { 32 } else { 64 }
    );
    let client = reqwest::Client::new();
    let msg = samples::handover(300, "320411", false, true);
    let id = msg["message_id"].as_str().expect("id").to_owned();
    let person = samples::person_id(300);
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
    // aftercare took its copy in clear (the partner's document), civil's is parked sealed.
    assert!(
        eventually(Duration::from_secs(10), || world
            .partner("aftercare")
            .accepted_count()
            == 1)
        .await
    );
    let parked_queue = gateway.names.parked("civil");
    let stored = peek_queue(&parked_queue).await;
    assert_eq!(stored.len(), 1);
    let (body, headers) = &stored[0];
    let label = headers
        .get("x-wingspan-sealed")
        .expect("sealed header")
        .clone();
    assert!(label.starts_with(algorithm), "{label}");
    for plain in [person.as_str(), "320411", "handover", "\"payload\""] {
        assert!(
            !contains(body, plain),
            "{plain:?} readable in the stored copy"
        );
    }
    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    let why = ["--reason", "complaint 2026-40: what civil affairs refused"];
    let show = [&["dlq", "show", id.as_str(), "--payload"][..], &why[..]].concat();
    let (ok, out) = wingspan(&admin, REVIEWER, &show);
    assert!(
        ok && out.contains(&person),
        "decrypted for a payload reviewer: {out}"
    );

    // The key lost: the gateway starts with another one. A replay meets a copy it cannot
    // open: parked again as it is, with the reason; a payload view is refused.
    gateway.shutdown().await;
    let other = if suite == Suite::Sm3Sm2 {
        "11".repeat(16)
    } else {
        "11".repeat(32)
    };
    std::fs::write(&key_file, &other).expect("another key");
    world.partner("civil").set_behaviour(Behaviour::Accept);
    let (gateway, _) = world.start_gateway().await;
    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    let (ok, out) = wingspan(&admin, REVIEWER, &show);
    assert!(!ok && out.contains("sealed-copy"), "{out}");
    let replay = [
        &["dlq", "replay", id.as_str()][..],
        &["--reason", "civil fixed"][..],
    ]
    .concat();
    let (ok, out) = wingspan(&admin, OPERATOR, &replay);
    assert!(ok, "{out}");
    let reparked = async {
        for _ in 0..100 {
            let now = peek_queue(&parked_queue).await;
            if now.len() == 1
                && now[0]
                    .1
                    .get("x-wingspan-reason")
                    .is_some_and(|r| r.contains("cannot be opened"))
            {
                return Some(now);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
    .await
    .expect("parked again with the reason");
    assert_eq!(reparked[0].0, *body, "the sealed copy itself, untouched");
    assert_eq!(world.partner("civil").accepted_count(), 0);

    // The key back: the replay delivers the document, in clear, to the partner.
    gateway.shutdown().await;
    std::fs::write(&key_file, &key).expect("the key back");
    let (gateway, _) = world.start_gateway().await;
    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    let (ok, out) = wingspan(&admin, OPERATOR, &replay);
    assert!(ok, "{out}");
    assert!(
        eventually(Duration::from_secs(20), || world
            .partner("civil")
            .accepted_count()
            == 1)
        .await
    );
    assert!(peek_queue(&parked_queue).await.is_empty());
    gateway.shutdown().await;
    world.cleanup().await;
}
