//! The CLI's commands, one module per command group (`wingspan <group> …`), and the helpers
//! they share: where a config is, and loading it with its problems reported.

use std::path::{Path, PathBuf};

pub mod adapter;
pub mod admin;
pub mod audit;
pub mod check;
pub mod codec;
pub mod config;
pub mod dlq;
pub mod run;

/// A config path that works from the repository root or from anywhere via `cargo run`.
pub fn resolve(path: PathBuf) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path;
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(&path);
    if beside.exists() { beside } else { path }
}

/// The loaded config, or `None` after printing each of its problems and their count.
pub fn load_or_report(config: &Path) -> Option<wingspan::load::Loaded> {
    match wingspan::load::load(config) {
        Ok(l) => Some(l),
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{} problem(s) in the config", errors.len());
            None
        }
    }
}
