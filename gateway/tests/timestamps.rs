//! Time anchoring against a real RFC 3161 authority run by the test (`openssl ts -reply`
//! behind a small HTTP responder on 127.0.0.1): checkpoints get tokens, `audit verify` checks
//! them; a TSA that does not answer delays tokens and nothing else; a token moved to another
//! checkpoint, or a checkpoint rewritten after its token, is reported.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::{World, eventually, post, verify_over_api};
use wingspan_sim::samples;

const COMPLIANCE: &str = "dev-compliance-token";

/// A TSA's key, certificate and `openssl ts` configuration in `dir`.
fn make_tsa(dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    let ok = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .args(["-keyout", "tsa.key", "-out", "tsa.pem", "-days", "2"])
        .args(["-subj", "/CN=wingspan test TSA"])
        .args(["-addext", "extendedKeyUsage=critical,timeStamping"])
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl; .ci/run installs it)")
        .status
        .success();
    assert!(ok, "TSA certificate");
    std::fs::write(
        dir.join("tsa.cnf"),
        "[ tsa ]\ndefault_tsa = t\n[ t ]\nserial = ./serial\ncrypto_device = builtin\n\
         signer_cert = ./tsa.pem\nsigner_key = ./tsa.key\nsigner_digest = sha256\n\
         default_policy = 1.2.3.4.1\ndigests = sha256\naccuracy = secs:1\nordering = no\n\
         tsa_name = no\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n",
    )
    .expect("cnf");
    std::fs::write(dir.join("serial"), "01\n").expect("serial");
}

/// Serve RFC 3161 over HTTP with `openssl ts -reply`; 503 while `down` is raised.
async fn serve_tsa(dir: PathBuf, down: Arc<AtomicBool>, answered: Arc<AtomicUsize>) -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/",
        post(move |body: axum::body::Bytes| {
            let (dir, down, answered) = (dir.clone(), down.clone(), answered.clone());
            async move {
                if down.load(Ordering::SeqCst) {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, Vec::new());
                }
                let n = answered.fetch_add(1, Ordering::SeqCst);
                let (q, r) = (format!("q{n}.der"), format!("r{n}.der"));
                std::fs::write(dir.join(&q), &body).expect("query");
                let out = tokio::process::Command::new("openssl")
                    .args([
                        "ts",
                        "-reply",
                        "-config",
                        "tsa.cnf",
                        "-queryfile",
                        &q,
                        "-out",
                        &r,
                    ])
                    .current_dir(&dir)
                    .output()
                    .await
                    .expect("openssl ts");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                (
                    axum::http::StatusCode::OK,
                    std::fs::read(dir.join(&r)).expect("reply"),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

fn verified(world: &World) -> Vec<wingspan::audit::ChainVerified> {
    let loaded = world.load();
    let key = wingspan::audit::trusted_key(&loaded, None).expect("key");
    let mut src = wingspan::audit::open_store(&loaded).expect("store");
    wingspan::audit::verify_store_with(&mut src, &key, loaded.tsa_cert_der.as_deref())
        .expect("verify")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_time_stamped_and_the_tokens_verified() {
    let world = World::new("tsa", false).await;
    let tsa_dir = world.dir.join("tsa");
    make_tsa(&tsa_dir);
    let (down, answered) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let url = serve_tsa(tsa_dir.clone(), down.clone(), answered.clone()).await;
    world.rewrite(|t| {
        t.replacen(
            "[audit]\n",
            &format!(
                "[audit]\ntsa_url = {url:?}\ntsa_cert_file = {:?}\ntsa_every_secs = 1\n",
                tsa_dir.join("tsa.pem").display().to_string()
            ),
            1,
        )
        .replace("checkpoint_secs = 10", "checkpoint_secs = 1")
    });
    let (gateway, base) = world.start_gateway().await;
    let client = reqwest::Client::new();
    let db = world.dir.join("state/wingspan-state.db");
    let tokens = || {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row("SELECT count(*) FROM audit_timestamps", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .unwrap_or(0)
    };
    for i in 0..3 {
        assert_eq!(
            post(&client, &base, &samples::material_submit(500 + i))
                .await
                .0,
            202
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert!(
        eventually(Duration::from_secs(15), || tokens() >= 2).await,
        "no tokens kept"
    );

    // The TSA down: intake goes on, tokens wait; back up, they resume.
    down.store(true, Ordering::SeqCst);
    // A round already under way when the TSA went down may still keep its token.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = tokens();
    for i in 0..3 {
        let started = std::time::Instant::now();
        assert_eq!(
            post(&client, &base, &samples::material_submit(600 + i))
                .await
                .0,
            202
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "intake waited on the TSA"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(tokens(), before, "a token without a TSA");
    down.store(false, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(15), || tokens() > before).await,
        "tokens did not resume"
    );

    // The compliance API checks them.
    let admin = format!("http://{}", gateway.admin_addr.expect("admin"));
    let v = verify_over_api(&client, &admin, COMPLIANCE).await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["chains"][0]["timestamps"].as_u64().unwrap_or(0) >= 3,
        "{v}"
    );
    gateway.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let r = verified(&world);
    assert!(r.iter().all(wingspan::audit::ChainVerified::ok), "{r:?}");
    let conn = rusqlite::Connection::open(&db).expect("db");
    let stamped: Vec<i64> = conn
        .prepare("SELECT seq FROM audit_timestamps ORDER BY seq")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("seqs");
    let (first, last) = (stamped[0], *stamped.last().expect("last"));
    // A token moved to another checkpoint.
    conn.execute(
        "UPDATE audit_timestamps SET seq = -1 WHERE seq = ?1",
        [first],
    )
    .expect("move");
    let r = verified(&world);
    let problems = &r[0].timestamp_problems;
    assert!(
        problems.iter().any(|p| p.contains("does not have")),
        "{problems:?}"
    );
    conn.execute(
        "UPDATE audit_timestamps SET seq = ?1 WHERE seq = -1",
        [first],
    )
    .expect("back");
    assert!(verified(&world)[0].ok());
    // The checkpoint rewritten after its token (as one holding the signing key could).
    conn.execute(
        "UPDATE audit_checkpoints SET signed_at = '2026-01-01T00:00:00Z' WHERE seq = ?1",
        [last],
    )
    .expect("rewrite");
    let r = verified(&world);
    let problems = &r[0].timestamp_problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("checkpoint {last}")) && p.contains("another message")),
        "{problems:?}"
    );
    world.cleanup().await;
}
