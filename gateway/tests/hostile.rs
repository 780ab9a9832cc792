//! The hostile corpus (contract-tests/hostile/, listed in its MANIFEST.tsv) and a 100 MiB
//! body, against a running gateway: each gets its status and problem type, another source
//! keeps being served meanwhile, every refusal is audited, nothing panics, and the process's
//! peak resident memory stays under 256 MiB. One test in its own binary, so that the peak is
//! this test's.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::{World, repo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wingspan_sim::{dev_token, samples};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Peak resident set of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Stream a 100 MiB body (declared, or chunked without a length) and return the status the
/// gateway answers with, without ever holding the body in memory here.
async fn hundred_mib(addr: SocketAddr, chunked: bool) -> u16 {
    const TOTAL: usize = 100 << 20;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {TOTAL}")
    };
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n",
        dev_token("rehab")
    );
    let writer = tokio::spawn(async move {
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < TOTAL {
            let ok = if chunked {
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                write.write_all(&framed).await
            } else {
                write.write_all(&chunk).await
            };
            if ok.is_err() {
                return;
            }
            sent += chunk.len();
        }
    });
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(60), read.read(&mut answer))
        .await
        .expect("an answer within a minute")
        .expect("read");
    writer.abort();
    let text = String::from_utf8_lossy(&answer[..n]);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_its_problem_and_disturbs_nothing_else() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let world = World::new("hostile", false).await;
    let (gateway, base) = world.start_gateway().await;

    // Meanwhile, a steady stream of valid submissions, which must all be accepted.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let steady = {
        let (stop, accepted, base) = (stop.clone(), accepted.clone(), base.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut other = Vec::new();
            let mut i = 10_000;
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = support::post(&client, &base, &samples::material_submit(i)).await;
                if status == 202 {
                    accepted.fetch_add(1, Ordering::SeqCst);
                } else {
                    other.push(status);
                }
                i += 1;
            }
            other
        })
    };

    let dir = repo().join("contract-tests/hostile");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("manifest");
    let client = reqwest::Client::new();
    let mut wrong = Vec::new();
    let mut slugs = BTreeSet::new();
    let mut count = 0;
    for line in manifest.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, endpoint, status, slug] = cols[..] else {
            panic!("manifest line {line:?}");
        };
        let (path, source, content_type) = match endpoint {
            "canonical" => ("/v1/messages", "rehab", "application/json"),
            "police" => ("/v1/sources/police/messages", "police", "application/xml"),
            "health" => (
                "/v1/sources/health/messages",
                "health",
                "application/fhir+json",
            ),
            other => panic!("endpoint {other}"),
        };
        let body = std::fs::read(dir.join(file)).expect("corpus file");
        let r = client
            .post(format!("{base}{path}"))
            .bearer_auth(dev_token(source))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("post");
        let got_status = r.status().as_u16();
        let is_problem = r
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json");
        let problem: Value = r.json().await.unwrap_or(Value::Null);
        let got_type = problem["type"].as_str().unwrap_or_default().to_owned();
        if got_status.to_string() != status
            || got_type != format!("/problems/{slug}")
            || !is_problem
        {
            wrong.push(format!(
                "{file}: expected {status} {slug}, got {got_status} {got_type}"
            ));
        }
        slugs.insert(slug.to_owned());
        count += 1;
    }
    assert!(count >= 30, "only {count} corpus entries");

    // 100 MiB, declared: refused before it is read. Streamed without a length: refused at
    // the limit.
    let addr = gateway.http_addr.expect("http");
    assert_eq!(hundred_mib(addr, false).await, 413);
    assert_eq!(hundred_mib(addr, true).await, 413);
    slugs.insert("too-large".into());

    // The hostile phase may be over in half a second on a fast machine: the steady source
    // is stopped only once it has had a fair number of submissions served (not after a
    // fixed time), so that a stuck gateway fails here and a fast one does not.
    const STEADY: usize = 30;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while accepted.load(Ordering::SeqCst) < STEADY && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let other = steady.await.expect("steady sender");
    let ok = accepted.load(Ordering::SeqCst);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(other.is_empty(), "the steady source was refused: {other:?}");
    assert!(
        ok >= STEADY,
        "the steady source had only {ok} accepted in a minute"
    );

    // Every kind of refusal is in the audit trail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reasons: BTreeSet<String> = support::rejected_reasons(&gateway)
        .await
        .into_iter()
        .map(|(_, why)| why)
        .collect();
    let missing: Vec<&String> = slugs.difference(&reasons).collect();
    assert!(missing.is_empty(), "not audited: {missing:?}");

    let peak = peak_rss_kib();
    eprintln!(
        "{count} corpus entries and two 100 MiB bodies; steady source: {ok} accepted; peak RSS {} MiB",
        peak / 1024
    );
    assert!(
        peak < 256 * 1024,
        "peak resident memory {} MiB",
        peak / 1024
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
    gateway.shutdown().await;
    world.cleanup().await;
}
