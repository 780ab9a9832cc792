//! `wingspan adapter list|test`: the declared adapters of a config, and their golden cases in
//! both directions with their round trips (pass/fail, a diff on failure).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use wingspan_adapters::Adapter;
use wingspan_adapters::declared::{self, golden};

use super::resolve;

#[derive(Subcommand, Debug)]
pub enum AdapterCommand {
    /// The built-in adapters and the declared ones, with their formats and message types.
    List {
        #[arg(long, default_value = "config")]
        config: PathBuf,
    },
    /// Each declared adapter's golden cases in both directions and its round trips: pass/fail,
    /// a diff on failure, exit code 1 on any failure.
    Test {
        #[arg(long, default_value = "config")]
        config: PathBuf,
        /// Only this adapter.
        name: Option<String>,
        /// Write the actual document of every encode case whose expected one is missing or
        /// differs (review the diff before committing it).
        #[arg(long)]
        update: bool,
    },
}

/// `wingspan adapter …`.
pub fn run(command: AdapterCommand) -> i32 {
    match command {
        AdapterCommand::List { config } => list(&resolve(config)),
        AdapterCommand::Test {
            config,
            name,
            update,
        } => test(&resolve(config), name.as_deref(), update),
    }
}

/// Load the config (which compiles every declared adapter) and the adapters themselves.
fn declared(config: &Path) -> Result<Vec<std::sync::Arc<declared::Declared>>, i32> {
    let loaded = wingspan::load::load(config).map_err(|errors| {
        for e in &errors {
            eprintln!("{e}");
        }
        1
    })?;
    declared::load_all(&loaded.adapters_dir).map_err(|problems| {
        for p in &problems {
            eprintln!("{p}");
        }
        1
    })
}

/// `wingspan adapter list`.
pub fn list(config: &Path) -> i32 {
    let adapters = match declared(config) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let builtins = wingspan_adapters::builtins();
    println!(
        "built-in: {}",
        builtins.names().collect::<Vec<_>>().join(", ")
    );
    for a in adapters {
        println!(
            "declared: {} ({}; {}) — {}",
            a.name(),
            a.content_types().join(", "),
            a.message_types().join(", "),
            a.description()
        );
    }
    0
}

/// `wingspan adapter test [name]`: exit 1 when a case fails, or when there is none to run.
pub fn test(config: &Path, name: Option<&str>, update: bool) -> i32 {
    let adapters = match declared(config) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let selected: Vec<_> = adapters
        .iter()
        .filter(|a| name.is_none_or(|n| a.name() == n))
        .collect();
    if selected.is_empty() {
        eprintln!(
            "error[unknown-adapter]: no declared adapter{}",
            name.map(|n| format!(" named {n:?}")).unwrap_or_default()
        );
        return 1;
    }
    let (mut passed, mut failed) = (0, 0);
    for a in selected {
        let outcomes = golden::run_with(a, update);
        if outcomes.is_empty() {
            println!(
                "FAIL {}: no golden cases under {}/golden",
                a.name(),
                a.dir().display()
            );
            failed += 1;
        }
        for o in outcomes {
            match o.failure {
                None => {
                    println!("pass {}: {}", a.name(), o.name);
                    passed += 1;
                }
                Some(why) => {
                    println!("FAIL {}: {}\n{}", a.name(), o.name, why.trim_end());
                    failed += 1;
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    i32::from(failed > 0)
}
