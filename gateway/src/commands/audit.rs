//! `wingspan audit verify|trail|search|export`: the audit trail, read offline from the store
//! (SQLite or PostgreSQL) or from an export directory; never creates keys.
//! `wingspan audit subject-report` asks the running gateway, which records the request in
//! its trail before it answers.

use std::path::PathBuf;

use clap::Subcommand;

use super::resolve;

#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// Config directory (holding wingspan.toml): finds the store and the keys.
    #[arg(long, default_value = "config")]
    config: PathBuf,
    /// The audit store, instead of the one the config names: a `postgres://` URL or the path
    /// of a SQLite state database.
    #[arg(long)]
    store: Option<String>,
    /// Machine-readable output (JSON) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the whole store (or an export directory) offline; names the first record that was
    /// modified, deleted, inserted or reordered, and any checkpoint whose signature fails.
    Verify {
        #[command(flatten)]
        args: AuditArgs,
        /// Verify an export directory instead of the store.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The trusted public key (hex: 32 bytes Ed25519, or an SM2 point); default: derived
        /// from the configured signing key.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// The whole timeline of a message and its replies.
    Trail {
        #[command(flatten)]
        args: AuditArgs,
        message_id: String,
    },
    /// Records matching every filter given.
    Search {
        #[command(flatten)]
        args: AuditArgs,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        destination: Option<String>,
        #[arg(long = "type")]
        message_type: Option<String>,
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        event: Option<String>,
        /// A person id; it is turned into its subject reference, never stored or printed.
        #[arg(long)]
        subject: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// A person's subject access report (PIPL Arts. 44–45), made by the running gateway's
    /// compliance API (which records who asked and why before it makes it): every message
    /// about the person, when, from which source, to which partners, the fields each received
    /// under the config in force, each outcome, and the replies. JSON, or with `--html` a
    /// document to hand over. The token is a compliance user's (`WINGSPAN_ADMIN_TOKEN` or
    /// `--token-file`).
    SubjectReport {
        #[command(flatten)]
        admin: super::admin::AdminArgs,
        /// The person's id: sent in the request's body, hashed by the gateway, never stored.
        person_id: String,
        /// Why the report is made (kept in the audit trail: one line, 200 characters).
        #[arg(long)]
        reason: String,
        /// Write the HTML document to this file instead of printing the JSON.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Hand the running gateway's audit chain to a fresh signing key, through its admin API
    /// (an operator's token: `WINGSPAN_ADMIN_TOKEN` or `--token-file`). The new key is written
    /// beside the key file first, the hand-over is recorded in the chain signed by both keys,
    /// then the new key replaces the old in its file. Verification follows rotations: the
    /// old public key stays trusted for the records it signed.
    RotateKey {
        #[command(flatten)]
        admin: super::admin::AdminArgs,
    },
    /// Write the records of a time range and a manifest per chain to a directory.
    Export {
        #[command(flatten)]
        args: AuditArgs,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value = "jsonl")]
        format: String,
        #[arg(long)]
        out: PathBuf,
    },
}

/// `wingspan audit …`.
pub async fn run(command: AuditCommand) -> i32 {
    if let AuditCommand::SubjectReport {
        admin,
        person_id,
        reason,
        html,
    } = &command
    {
        return subject_report(admin, person_id, reason, html.as_deref()).await;
    }
    if let AuditCommand::RotateKey { admin } = &command {
        return super::admin::admin_cmd(
            admin,
            "POST",
            "/admin/audit/rotate-key",
            serde_json::Value::Null,
        )
        .await;
    }
    // The audit commands may use the synchronous PostgreSQL client: off the runtime.
    tokio::task::spawn_blocking(move || audit_cmd(command))
        .await
        .unwrap_or(1)
}

async fn subject_report(
    admin: &super::admin::AdminArgs,
    person_id: &str,
    reason: &str,
    html: Option<&std::path::Path>,
) -> i32 {
    let body = serde_json::json!({
        "subject": person_id,
        "reason": reason,
        "format": if html.is_some() { "html" } else { "json" },
    });
    let (status, text) =
        match super::admin::admin_call(admin, "POST", "/v1/audit/subject-report", body).await {
            Ok(answer) => answer,
            Err(code) => return code,
        };
    if !status.is_success() {
        eprintln!("{text}");
        return 1;
    }
    match html {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                println!("wrote {}", path.display());
                0
            }
            Err(e) => {
                eprintln!("wingspan: cannot write {}: {e}", path.display());
                1
            }
        },
        None => {
            let pretty = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(text);
            println!("{pretty}");
            0
        }
    }
}

fn audit_cmd(command: AuditCommand) -> i32 {
    let args = match &command {
        AuditCommand::Verify { args, .. }
        | AuditCommand::Trail { args, .. }
        | AuditCommand::Search { args, .. }
        | AuditCommand::Export { args, .. } => args.clone(),
        AuditCommand::SubjectReport { .. } | AuditCommand::RotateKey { .. } => return 1,
    };
    let loaded = match wingspan::load::load(&resolve(args.config.clone())) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return 1;
        }
    };
    let location = match &args.store {
        Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
            wingspan::audit::Location::Postgres(s.clone())
        }
        Some(path) => wingspan::audit::Location::Sqlite(PathBuf::from(path)),
        None => wingspan::audit::Location::of(&loaded),
    };
    match run_audit(&loaded, &location, command, args.json) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wingspan audit: {e}");
            1
        }
    }
}

fn print_records(records: &[wingspan_core::audit::Record], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(records)?);
    } else {
        print!("{}", wingspan::audit::table(records));
    }
    Ok(())
}

fn run_audit(
    loaded: &wingspan::load::Loaded,
    location: &wingspan::audit::Location,
    command: AuditCommand,
    json: bool,
) -> anyhow::Result<i32> {
    use wingspan::audit;
    match command {
        AuditCommand::Verify {
            export, public_key, ..
        } => {
            let key = audit::trusted_key(loaded, public_key.as_deref())?;
            let mut ok = true;
            if let Some(dir) = export {
                let results = audit::verify_export(&dir, &key)?;
                for (manifest, report, problems) in &results {
                    ok &= report.ok() && problems.is_empty();
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"manifest": manifest.file, "report": report, "problems": problems})
                        );
                    } else {
                        println!("{}: {}", manifest.file, describe(report));
                        for p in problems {
                            println!("  {p}");
                        }
                    }
                }
            } else {
                let mut src = location.open()?;
                let tsa_cert = loaded.tsa_cert_der.as_deref();
                for report in audit::verify_store_with(&mut src, &key, tsa_cert)? {
                    ok &= report.ok();
                    if json {
                        println!("{}", serde_json::to_string(&report)?);
                    } else {
                        println!(
                            "chain {}: {}",
                            report.report.chain_id,
                            describe(&report.report)
                        );
                        if report.segments > 0 {
                            println!("  archive: {} sealed segment(s)", report.segments);
                        }
                        for p in &report.archive_problems {
                            println!("  archive: TAMPERED — {p}");
                        }
                        if report.timestamps > 0 {
                            println!(
                                "  time-stamps: {} token(s){}",
                                report.timestamps,
                                if tsa_cert.is_some() {
                                    ""
                                } else {
                                    " (not checked: no tsa_cert_file)"
                                }
                            );
                        }
                        for p in &report.timestamp_problems {
                            println!("  time-stamps: TAMPERED — {p}");
                        }
                    }
                }
            }
            Ok(if ok { 0 } else { 1 })
        }
        AuditCommand::Trail { message_id, .. } => {
            let mut src = location.open()?;
            let records = audit::trail(&mut src, &message_id)?;
            print_records(&records, json)?;
            Ok(if records.is_empty() { 1 } else { 0 })
        }
        AuditCommand::Search {
            since,
            until,
            source,
            destination,
            message_type,
            outcome,
            event,
            subject,
            limit,
            ..
        } => {
            let (subject_ref, earlier_subject_refs) = match subject {
                Some(p) => {
                    let keys = audit::keys(loaded, false)?;
                    (Some(keys.subject_ref(&p)), keys.earlier_subject_refs(&p))
                }
                None => (None, Vec::new()),
            };
            let mut src = location.open()?;
            let records = audit::search(
                &mut src,
                &audit::Filter {
                    since,
                    until,
                    source,
                    destination,
                    message_type,
                    outcome,
                    event,
                    subject_ref,
                    earlier_subject_refs,
                    limit,
                    after_seq: 0,
                },
            )?;
            print_records(&records, json)?;
            Ok(0)
        }
        AuditCommand::Export {
            since,
            until,
            format,
            out,
            ..
        } => {
            let mut src = location.open()?;
            let manifests =
                audit::export(&mut src, since.as_deref(), until.as_deref(), &format, &out)?;
            for m in &manifests {
                if json {
                    println!("{}", serde_json::to_string(m)?);
                } else {
                    println!(
                        "{}: {} record(s), seq {}..{}, final hash {}",
                        m.file,
                        m.count,
                        m.first_seq.unwrap_or(0),
                        m.last_seq.unwrap_or(0),
                        m.final_hash.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(0)
        }
        // Made by the running gateway (see `run`).
        AuditCommand::SubjectReport { .. } | AuditCommand::RotateKey { .. } => Ok(1),
    }
}

fn describe(r: &wingspan_core::audit::Report) -> String {
    use wingspan_core::audit::Finding;
    let mut s = match &r.finding {
        None => format!(
            "ok — {} record(s), seq {}..{}, {} checkpoint(s), suite {}",
            r.records,
            r.first_seq.unwrap_or(0),
            r.last_seq.unwrap_or(0),
            r.checkpoints,
            r.suite
        ),
        Some(Finding::Modified { seq }) => format!("TAMPERED — record {seq} was modified"),
        Some(Finding::Deleted { seq }) => format!("TAMPERED — record(s) deleted before seq {seq}"),
        Some(Finding::Inserted { seq }) => format!("TAMPERED — record {seq} was inserted"),
        Some(Finding::Reordered { seq }) => format!("TAMPERED — record {seq} was moved"),
        Some(Finding::RewrittenBeforeCheckpoint { seq }) => {
            format!("TAMPERED — the chain up to the checkpoint at seq {seq} was rewritten")
        }
    };
    if r.finding.is_some() {
        s.push_str(&format!(" (checked under suite {})", r.suite));
    }
    if !r.bad_signatures.is_empty() {
        s.push_str(&format!(
            "; checkpoint signature(s) FAIL at seq {:?}",
            r.bad_signatures
        ));
    }
    s
}
