//! `wingspan dlq list|show|replay|discard`: dead letters, listed from the state database, or
//! shown, replayed and discarded through the admin listener.

use std::path::PathBuf;

use clap::Subcommand;

use super::admin::{AdminArgs, admin_cmd};
use super::{load_or_report, resolve};

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Parked copies, metadata only: message id, type, reason, attempts, first/last failure.
    List {
        #[arg(long, default_value = "config")]
        config: PathBuf,
        #[arg(long)]
        destination: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One message's parked copies; `--payload --reason …` also prints the payload (admin
    /// users with `payloads = true` only; audited with the reason).
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
        #[arg(long, requires = "reason")]
        payload: bool,
        /// Why the payload is looked at (kept in the audit trail; say why, never whom).
        #[arg(long, requires = "payload")]
        reason: Option<String>,
    },
    /// Send parked copies back to their destination, through the config in force.
    Replay {
        #[command(flatten)]
        admin: AdminArgs,
        /// A message id (all its parked copies).
        #[arg(required_unless_present_any = ["destination", "all"], conflicts_with_all = ["destination", "all"])]
        id: Option<String>,
        /// Every parked copy of this destination.
        #[arg(long, conflicts_with = "all")]
        destination: Option<String>,
        /// Every parked copy.
        #[arg(long)]
        all: bool,
        /// Why (kept in the audit trail; say why, never whom).
        #[arg(long)]
        reason: String,
    },
    /// Drop a message's parked copies for good.
    Discard {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
        #[arg(long)]
        reason: String,
    },
}

/// `wingspan dlq …`: `list` reads the state database; the others go to the running gateway.
pub async fn run(command: DlqCommand) -> i32 {
    match command {
        DlqCommand::Show {
            admin,
            id,
            payload,
            reason,
        } => {
            let path = format!("/admin/dead-letters/{}", encode_segment(&id));
            if payload {
                let body = serde_json::json!({ "reason": reason.unwrap_or_default() });
                admin_cmd(&admin, "POST", &format!("{path}/payload"), body).await
            } else {
                admin_cmd(&admin, "GET", &path, serde_json::Value::Null).await
            }
        }
        DlqCommand::Replay {
            admin,
            id,
            destination,
            all,
            reason,
        } => {
            let (path, body) = match id {
                Some(id) => (
                    format!("/admin/dead-letters/{}/replay", encode_segment(&id)),
                    serde_json::json!({ "reason": reason }),
                ),
                None => (
                    "/admin/dead-letters/replay".to_owned(),
                    serde_json::json!({ "reason": reason, "destination": destination, "all": all }),
                ),
            };
            admin_cmd(&admin, "POST", &path, body).await
        }
        DlqCommand::Discard { admin, id, reason } => {
            let path = format!("/admin/dead-letters/{}/discard", encode_segment(&id));
            admin_cmd(
                &admin,
                "POST",
                &path,
                serde_json::json!({ "reason": reason }),
            )
            .await
        }
        command => dlq_cmd(command),
    }
}

/// A path segment with everything but unreserved characters percent-encoded.
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dlq_cmd(command: DlqCommand) -> i32 {
    let DlqCommand::List {
        config,
        destination,
        json,
    } = command
    else {
        unreachable!("the admin-listener subcommands are handled by admin_cmd");
    };
    let Some(loaded) = load_or_report(&resolve(config)) else {
        return 1;
    };
    let db = loaded.state_dir.join("wingspan-state.db");
    let listed =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                wingspan::audit::sqlite::keys_readable(&c)?;
                wingspan::store::dead_letters(&c, destination.as_deref())
            });
    let list = match listed {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wingspan dlq list: {}: {e}", db.display());
            return 1;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return 0;
    }
    println!(
        "{:<40} {:<16} {:<34} {:>8}  {:<26} reason",
        "message", "destination", "type", "attempts", "last failure"
    );
    for d in &list {
        println!(
            "{:<40} {:<16} {:<34} {:>8}  {:<26} {}",
            d.message_id,
            d.destination,
            d.message_type.as_deref().unwrap_or("?"),
            d.attempts,
            d.last_failure,
            d.reason.as_deref().unwrap_or("")
        );
    }
    println!("{} parked", list.len());
    0
}
