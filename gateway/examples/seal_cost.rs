//! What sealing a queued copy at rest costs, side by side in one run: seal + open of a
//! canonical envelope of the demo's size under AES-256-GCM and SM4-GCM, against copying the
//! same bytes (the baseline: what an unsealed copy costs in this step). Runs alternate; the
//! medians (µs per copy, sealed and opened once, as a queued destination's copy is) end the
//! output. Compare with the gateway's CPU per message from `wingspan-bench`.
//!
//! `cargo run --release -p wingspan --example seal_cost -- [N] [RUNS] [BYTES]`
//! (defaults 200000 5 2048).

use std::time::Instant;

use wingspan::seal::Sealer;
use wingspan_core::audit::Suite;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (n, runs, size) = (arg(1, 200_000), arg(2, 5), arg(3, 2048));
    let body: Vec<u8> = (0..size)
        .map(|i| b"{\"payload\":0123456789}"[i % 22])
        .collect();
    let sealers: Vec<(&str, Sealer)> = Suite::ALL
        .into_iter()
        .map(|suite| {
            let key = vec![0x5a; Sealer::key_len(suite)];
            let name = match suite {
                Suite::Sha256Ed25519 => "aes-256-gcm",
                Suite::Sm3Sm2 => "sm4-gcm",
            };
            (name, Sealer::new(suite, &key).expect("sealer"))
        })
        .collect();
    let mut copy = Vec::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sealers.len()];
    for run in 1..=runs {
        let t = Instant::now();
        let mut total = 0usize;
        for i in 0..n {
            let c = std::hint::black_box(body.clone());
            total += c.len() + i % 2;
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        copy.push(us);
        println!("run {run}: copy {us:.3} µs ({total})");
        for (j, (name, s)) in sealers.iter().enumerate() {
            let t = Instant::now();
            let mut total = 0usize;
            for i in 0..n {
                let id = if i % 2 == 0 { "m-even" } else { "m-odd" };
                let sealed = s.seal(id, std::hint::black_box(&body)).expect("seal");
                total += std::hint::black_box(s.open(s.label(), id, &sealed).expect("open")).len();
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            times[j].push(us);
            println!("run {run}: {name} seal+open {us:.3} µs ({total})");
        }
    }
    let base = median(copy);
    println!("median copy {base:.3} µs per {size}-byte copy");
    for ((name, _), t) in sealers.iter().zip(times) {
        let m = median(t);
        println!(
            "median {name} seal+open {m:.3} µs per {size}-byte copy ({:.3} µs over the copy)",
            m - base
        );
    }
}
