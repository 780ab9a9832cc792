//! The audit suites side by side, in one run on one machine: building and verifying a chain
//! of N records (hashing every record), and signing and checking a checkpoint, under
//! `sha256-ed25519` (the baseline) and `sm3-sm2`. Runs alternate between the suites; the
//! medians and the ratios (sm3-sm2 / sha256-ed25519) end the output.
//!
//! `cargo run --release -p wingspan-core --example audit_suites -- [N] [RUNS]`
//! (defaults 1000000 5).

use std::time::Instant;

use wingspan_core::audit::{
    Checkpoint, Entry, Event, GENESIS, Head, Record, SigningKey, Suite, checkpoint_signed_by,
    verify,
};

const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

/// Records shaped like the gateway's (an accepted message's fields filled in).
fn chain(suite: Suite, n: usize) -> Vec<Record> {
    let mut head = Head::new("gw-1", suite);
    (0..n)
        .map(|i| {
            let mut e = Entry::new(Event::Accepted, format!("2026-12-06T10:00:00.{i:06}Z"));
            e.message_id = Some(format!("3f1c2a9e-5b7d-4e21-9c3a-{i:012}"));
            e.source = Some("rehab".into());
            e.message_type = Some("material.submit".into());
            e.payload_sha256 = Some("ab".repeat(32));
            e.outcome = Some("ok".into());
            e.actor = Some("gateway".into());
            head.append(e)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Figures {
    build_s: Vec<f64>,
    verify_s: Vec<f64>,
    sign_us: Vec<f64>,
    check_us: Vec<f64>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    const SIGNATURES: usize = 1000;
    let mut figures: Vec<(Suite, Figures)> = Suite::ALL
        .into_iter()
        .map(|s| {
            (
                s,
                Figures {
                    build_s: Vec::new(),
                    verify_s: Vec::new(),
                    sign_us: Vec::new(),
                    check_us: Vec::new(),
                },
            )
        })
        .collect();
    for run in 1..=runs {
        for (suite, f) in &mut figures {
            let suite = *suite;
            let key = SigningKey::from_seed_hex(suite, SEED).expect("key");
            let public = key.public_hex();

            let t = Instant::now();
            let records = chain(suite, n);
            let build = t.elapsed().as_secs_f64();

            let last = records.last().expect("records");
            let cp = key.checkpoint("gw-1", last.seq, &last.hash, "2026-12-06T10:01:00Z");
            let t = Instant::now();
            let report = verify(
                suite,
                "gw-1",
                &records,
                std::slice::from_ref(&cp),
                Some(&public),
                GENESIS,
            );
            let verified = t.elapsed().as_secs_f64();
            assert!(report.ok(), "{report:?}");

            let t = Instant::now();
            let cps: Vec<Checkpoint> = (0..SIGNATURES)
                .map(|i| {
                    key.checkpoint(
                        "gw-1",
                        u64::try_from(i).unwrap_or(0),
                        &last.hash,
                        "2026-12-06T10:01:00Z",
                    )
                })
                .collect();
            let sign = t.elapsed().as_secs_f64() * 1e6 / SIGNATURES as f64;
            let t = Instant::now();
            assert!(cps.iter().all(|c| checkpoint_signed_by(c, &public)));
            let check = t.elapsed().as_secs_f64() * 1e6 / SIGNATURES as f64;

            println!(
                "run {run} {suite:>14}: build {n} records {build:.2} s ({:.0}/s), verify {verified:.2} s ({:.0}/s), checkpoint sign {sign:.1} µs, check {check:.1} µs",
                n as f64 / build,
                n as f64 / verified,
            );
            f.build_s.push(build);
            f.verify_s.push(verified);
            f.sign_us.push(sign);
            f.check_us.push(check);
        }
    }
    let medians: Vec<(Suite, [f64; 4])> = figures
        .into_iter()
        .map(|(s, f)| {
            (
                s,
                [
                    median(f.build_s),
                    median(f.verify_s),
                    median(f.sign_us),
                    median(f.check_us),
                ],
            )
        })
        .collect();
    for (suite, [build, verified, sign, check]) in &medians {
        println!(
            "median {suite:>14}: build {build:.2} s, verify {verified:.2} s ({:.0} records/s), sign {sign:.1} µs, check {check:.1} µs",
            n as f64 / verified
        );
    }
    let [base, sm] = [&medians[0].1, &medians[1].1];
    println!(
        "ratios sm3-sm2/sha256-ed25519: build {:.2}, verify {:.2}, sign {:.2}, check {:.2}",
        sm[0] / base[0],
        sm[1] / base[1],
        sm[2] / base[2],
        sm[3] / base[3]
    );
}
