//! `wingspan config history|diff|reload|rollback`: every config that was ever live, kept by
//! hash (read from the state database), and reload or rollback through the admin listener.

use std::path::PathBuf;

use clap::Subcommand;

use super::admin::{AdminArgs, admin_cmd};
use super::{load_or_report, resolve};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// The configs this gateway ran with, oldest first; `*` marks the one on disk now.
    History {
        #[arg(long, default_value = "config")]
        config: PathBuf,
    },
    /// What changed from config A to config B, in words. Each is a hash prefix from
    /// `history` or `current` (the config on disk).
    Diff {
        #[arg(long, default_value = "config")]
        config: PathBuf,
        a: String,
        b: String,
    },
    /// Ask the running gateway to read its config file again: checked first, swapped only if
    /// it passes (like SIGHUP).
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Put an earlier config back in force (a hash prefix from `history`), through the same
    /// checks as a reload.
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
        version: String,
    },
}

/// `wingspan config …`: reload and rollback go to the running gateway, the rest is read here.
pub async fn run(command: ConfigCommand) -> i32 {
    match command {
        ConfigCommand::Reload { admin } => {
            admin_cmd(&admin, "POST", "/admin/reload", serde_json::json!({})).await
        }
        ConfigCommand::Rollback { admin, version } => {
            let body = serde_json::json!({ "sha256": version });
            admin_cmd(&admin, "POST", "/admin/rollback", body).await
        }
        command => config_cmd(command),
    }
}

fn config_cmd(command: ConfigCommand) -> i32 {
    let (ConfigCommand::History { config } | ConfigCommand::Diff { config, .. }) = &command else {
        unreachable!("reload and rollback are handled by admin_cmd");
    };
    let Some(loaded) = load_or_report(&resolve(config.clone())) else {
        return 1;
    };
    let db = loaded.state_dir.join("wingspan-state.db");
    let conn = match rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wingspan config: cannot open {}: {e}", db.display());
            return 1;
        }
    };
    match command {
        ConfigCommand::History { .. } => match wingspan::store::config_history(&conn) {
            Ok(versions) => {
                println!(
                    "  {:<14} {:<32} {:<32} loads",
                    "config", "first live", "last loaded"
                );
                for v in versions {
                    let mark = if v.sha256 == loaded.config_sha256 {
                        "*"
                    } else {
                        " "
                    };
                    println!(
                        "{mark} {:<14} {:<32} {:<32} {}",
                        &v.sha256[..12.min(v.sha256.len())],
                        v.first_loaded_at,
                        v.last_loaded_at,
                        v.loads
                    );
                }
                0
            }
            Err(e) => {
                eprintln!("wingspan config history: {e}");
                1
            }
        },
        ConfigCommand::Reload { .. } | ConfigCommand::Rollback { .. } => 2,
        ConfigCommand::Diff { a, b, .. } => {
            let text = |which: &str| -> Result<(String, String), String> {
                if which == "current" {
                    return Ok((loaded.config_sha256.clone(), loaded.config_text.clone()));
                }
                match wingspan::store::config_text(&conn, which) {
                    Ok(Some(found)) => Ok(found),
                    Ok(None) => Err(format!("no single config whose hash starts with {which:?}")),
                    Err(e) => Err(e.to_string()),
                }
            };
            let (ta, tb) = match (text(&a), text(&b)) {
                (Ok(x), Ok(y)) => (x, y),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("wingspan config diff: {e}");
                    return 1;
                }
            };
            let parse = |t: &str| wingspan_core::config::parse("config", t);
            let (ra, rb) = match (parse(&ta.1), parse(&tb.1)) {
                (Ok(x), Ok(y)) => (x, y),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("wingspan config diff: {e}");
                    return 1;
                }
            };
            let changes = wingspan_core::config::diff::describe(&ra, &rb);
            println!("{} → {}", &ta.0[..12], &tb.0[..12]);
            if changes.is_empty() {
                println!("no change in effect");
            }
            for c in changes {
                println!("  {c}");
            }
            0
        }
    }
}
