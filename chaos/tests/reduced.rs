//! CI's share of the fault-injection suite: the reduced scenarios 1–4 and 7 and the cluster
//! node kill, one after the other (they measure time, so they must not share the two cores
//! with each other), each on private broker nodes of its own. The full-size runs are
//! `cargo run --release -p wingspan-chaos -- all` (README).

use wingspan_chaos::scenarios::Size;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduced_fault_scenarios_lose_nothing_and_duplicate_nothing() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let base = std::env::temp_dir().join(format!("wingspan-chaos-ci-{seed}"));
    eprintln!(
        "wingspan-chaos (reduced): seed {seed}, under {}",
        base.display()
    );
    let mut failed = Vec::new();
    for name in wingspan_chaos::CI {
        match wingspan_chaos::run(name, &base, Size::Reduced, seed).await {
            Ok(outcome) => {
                eprint!("{outcome}");
                if !outcome.passed() {
                    failed.push(format!("{outcome}"));
                }
            }
            Err(e) => failed.push(format!("{name} did not run: {e:#}")),
        }
    }
    assert!(failed.is_empty(), "seed {seed}:\n{}", failed.join("\n"));
    let _ = std::fs::remove_dir_all(&base);
}
