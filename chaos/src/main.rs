//! `wingspan-chaos [--reduced] [--seed N] [--dir D] [--minutes M] [--rate R] [--windows-of M] <scenario>... | all | ci | soak`
//!
//! Each scenario starts a private RabbitMQ node (or cluster) of its own, partner simulators
//! and real gateway processes on 127.0.0.1, injects its faults, and ends with a ledger:
//! accepted, delivered, parked, lost, duplicated downstream, audit chain verified. The last
//! line is `N passed, N failed`; the exit code is 1 if any failed.

use std::path::PathBuf;
use std::process::ExitCode;

use wingspan_chaos::scenarios::Size;
use wingspan_chaos::{CI, SCENARIOS, run};

#[tokio::main]
async fn main() -> ExitCode {
    let mut size = Size::Full;
    let mut seed = None;
    let mut dir = None;
    let mut names = Vec::new();
    let mut minutes = 30u64;
    let mut rate = None;
    let mut windows_of = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reduced" => size = Size::Reduced,
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()),
            "--dir" => dir = args.next().map(PathBuf::from),
            "all" => names.extend(SCENARIOS),
            "soak" => names.push("soak"),
            "--minutes" => minutes = args.next().and_then(|s| s.parse().ok()).unwrap_or(30),
            "--rate" => rate = args.next().and_then(|s| s.parse::<f64>().ok()),
            "--windows-of" => windows_of = args.next().and_then(|s| s.parse::<u64>().ok()),
            "ci" => names.extend(CI),
            "-h" | "--help" => {
                println!(
                    "wingspan-chaos [--reduced] [--seed N] [--dir D] [--minutes M] [--rate R] [--windows-of M] <scenario>... | all | ci | soak\nscenarios: {}",
                    SCENARIOS.join(", ")
                );
                return ExitCode::SUCCESS;
            }
            other => match SCENARIOS.iter().find(|s| **s == other) {
                Some(name) => names.push(*name),
                None => {
                    eprintln!("wingspan-chaos: no scenario {other:?}");
                    names.clear();
                    break;
                }
            },
        }
    }
    if names.is_empty() {
        eprintln!(
            "usage: wingspan-chaos [--reduced] [--seed N] [--dir D] [--minutes M] [--rate R] [--windows-of M] <scenario>... | all | ci | soak\nscenarios: {}",
            SCENARIOS.join(", ")
        );
        return ExitCode::from(2);
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let base = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("wingspan-chaos-{seed}")));
    // Absolute: the gateways run in directories of their own, and a relative path in their
    // configs would name another place than the one the rig reads sizes and archives from.
    let base = match std::path::absolute(&base) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("wingspan-chaos: {}: {e}", base.display());
            return ExitCode::from(2);
        }
    };
    println!(
        "wingspan-chaos: seed {seed}, {} size, runs under {}",
        if size == Size::Full {
            "full"
        } else {
            "reduced"
        },
        base.display()
    );
    let (mut passed, mut failed) = (0, 0);
    for name in names {
        let result = if name == "soak" {
            wingspan_chaos::soak::soak(
                &base,
                minutes,
                if minutes >= 10 { 30 } else { 5 },
                seed,
                rate,
                windows_of,
            )
            .await
        } else {
            run(name, &base, size, seed).await
        };
        match result {
            Ok(outcome) => {
                print!("{outcome}");
                if outcome.passed() {
                    passed += 1;
                } else {
                    failed += 1;
                }
            }
            Err(e) => {
                println!("── {name}: FAILED to run: {e:#}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
