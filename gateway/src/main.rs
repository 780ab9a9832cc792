//! The `wingspan` command: `run`, `demo`, `check`, `test`, `explain`, `decode`, `encode`,
//! `audit`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

// mimalloc: the gateway allocates many short-lived buffers per message; glibc malloc was
// ~15% of its CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "wingspan",
    version,
    about = "Message gateway for the rehabilitation platform and its partners"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum AdapterCommand {
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

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway until SIGTERM or Ctrl-C.
    Run {
        /// Config directory (holding wingspan.toml) or file.
        #[arg(long, default_value = "config")]
        config: PathBuf,
    },
    /// Start the gateway and partner simulators, send a batch of every family, print a summary.
    Demo {
        #[arg(long, default_value = "config")]
        config: PathBuf,
    },
    /// Check a config and its schemas; report every problem.
    Check {
        #[arg(long, default_value = "config")]
        config: PathBuf,
    },
    /// Run the route test cases beside the config (`<config>/tests/*.toml`): pass/fail per
    /// case, a diff on failure, exit code 1 on any failure.
    Test {
        #[arg(long, default_value = "config")]
        config: PathBuf,
    },
    /// Which routes take a message and why, which destinations, and what each would receive
    /// after its field policy. Sends nothing.
    Explain {
        #[arg(long, default_value = "config")]
        config: PathBuf,
        /// A canonical envelope (JSON).
        file: PathBuf,
    },
    /// Decode a partner document with an adapter and print the canonical envelope.
    Decode {
        /// Adapter name: built-in (police, health, emergency, hr, aftercare, civil, rehab) or
        /// declared in the config's adapters directory.
        #[arg(long)]
        adapter: String,
        /// Source id the envelope is attributed to (default: the adapter name).
        #[arg(long)]
        source: Option<String>,
        /// Content type of the file (default: the adapter decides, e.g. FHIR JSON or XML).
        #[arg(long)]
        content_type: Option<String>,
        /// Also validate the result against the schemas of this config.
        #[arg(long, default_value = "config")]
        config: PathBuf,
        file: PathBuf,
    },
    /// Every config that was ever live, kept by hash: history, and what changed between two.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Dead letters: the copies parked for a destination.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// The audit trail: verify, trail, search, export (read-only; never creates keys).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Declared adapters (`<config>/adapters/<name>/`): list them, run their golden cases.
    Adapter {
        #[command(subcommand)]
        command: AdapterCommand,
    },
    /// Print what a destination would receive for a canonical envelope (after its field policy).
    Encode {
        #[arg(long)]
        adapter: String,
        #[arg(long)]
        destination: String,
        #[arg(long, default_value = "config")]
        config: PathBuf,
        /// A canonical envelope (JSON).
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// Parked copies, metadata only: message id, type, reason, attempts, first/last failure.
    List {
        #[arg(long, default_value = "config")]
        config: PathBuf,
        #[arg(long)]
        destination: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One message's parked copies; `--payload` also prints the payload (admin users with
    /// `payloads = true` only; audited).
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
        #[arg(long)]
        payload: bool,
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

/// How the CLI reaches a running gateway's admin listener. The token comes from
/// `WINGSPAN_ADMIN_TOKEN` or `--token-file`, never from the command line.
#[derive(clap::Args, Debug, Clone)]
struct AdminArgs {
    /// Config directory: the admin listener's address is read from it.
    #[arg(long, default_value = "config")]
    config: PathBuf,
    /// The admin listener's base URL, instead of the configured address.
    #[arg(long)]
    admin_url: Option<String>,
    /// A file holding the admin user's token.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
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

#[derive(clap::Args, Debug, Clone)]
struct AuditArgs {
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
enum AuditCommand {
    /// Check the whole store (or an export directory) offline; names the first record that was
    /// modified, deleted, inserted or reordered, and any checkpoint whose signature fails.
    Verify {
        #[command(flatten)]
        args: AuditArgs,
        /// Verify an export directory instead of the store.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The trusted Ed25519 public key (hex); default: derived from the configured signing key.
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

fn audit_cmd(command: AuditCommand) -> i32 {
    let args = match &command {
        AuditCommand::Verify { args, .. }
        | AuditCommand::Trail { args, .. }
        | AuditCommand::Search { args, .. }
        | AuditCommand::Export { args, .. } => args.clone(),
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
                for report in audit::verify_store(&mut src, &key)? {
                    ok &= report.ok();
                    if json {
                        println!("{}", serde_json::to_string(&report)?);
                    } else {
                        println!("chain {}: {}", report.chain_id, describe(&report));
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
            let subject_ref = match subject {
                Some(p) => Some(audit::keys(loaded, false)?.subject_ref(&p)),
                None => None,
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
    }
}

fn describe(r: &wingspan_core::audit::Report) -> String {
    use wingspan_core::audit::Finding;
    let mut s = match &r.finding {
        None => format!(
            "ok — {} record(s), seq {}..{}, {} checkpoint(s)",
            r.records,
            r.first_seq.unwrap_or(0),
            r.last_seq.unwrap_or(0),
            r.checkpoints
        ),
        Some(Finding::Modified { seq }) => format!("TAMPERED — record {seq} was modified"),
        Some(Finding::Deleted { seq }) => format!("TAMPERED — record(s) deleted before seq {seq}"),
        Some(Finding::Inserted { seq }) => format!("TAMPERED — record {seq} was inserted"),
        Some(Finding::Reordered { seq }) => format!("TAMPERED — record {seq} was moved"),
        Some(Finding::RewrittenBeforeCheckpoint { seq }) => {
            format!("TAMPERED — the chain up to the checkpoint at seq {seq} was rewritten")
        }
    };
    if !r.bad_signatures.is_empty() {
        s.push_str(&format!(
            "; checkpoint signature(s) FAIL at seq {:?}",
            r.bad_signatures
        ));
    }
    s
}

fn read_input(path: &std::path::Path) -> Result<Vec<u8>, i32> {
    std::fs::read(path).map_err(|e| {
        eprintln!("error[unreadable]: {}: {e}", path.display());
        1
    })
}

fn decode_cmd(
    adapter: &str,
    source: Option<String>,
    content_type: Option<String>,
    config: PathBuf,
    file: &std::path::Path,
) -> i32 {
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let source = source.unwrap_or_else(|| adapter.to_owned());
    // Built-in adapters work without a config; declared ones come with the config that
    // declares them, whose problems are shown when the adapter is not a built-in.
    let loaded = wingspan::load::load(&resolve(config));
    let set = match &loaded {
        Ok(l) => l.config.adapters.clone(),
        Err(_) => wingspan_adapters::builtins(),
    };
    if let Err(errors) = &loaded
        && !set.contains(adapter)
    {
        for e in errors {
            eprintln!("{e}");
        }
        return 1;
    }
    let result = wingspan::tools::decode(&set, adapter, &source, content_type.as_deref(), &bytes)
        .and_then(|env| {
            if let Ok(l) = &loaded {
                wingspan::tools::validate(&l.config, &env)?;
            }
            Ok(env)
        });
    match result {
        Ok(env) => match serde_json::to_string_pretty(&env) {
            Ok(text) => {
                println!("{text}");
                0
            }
            Err(e) => {
                eprintln!("error[internal]: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn encode_cmd(adapter: &str, destination: &str, config: PathBuf, file: &std::path::Path) -> i32 {
    let loaded = match wingspan::load::load(&resolve(config)) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return 1;
        }
    };
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(code) => return code,
    };
    match wingspan::tools::encode(&loaded.config, adapter, destination, &bytes) {
        Ok((content_type, body)) => {
            use std::io::Write;
            eprintln!("content-type: {content_type}");
            let mut out = std::io::stdout().lock();
            if out.write_all(&body).and_then(|()| out.flush()).is_err() {
                return 1;
            }
            if !body.ends_with(b"\n") {
                println!();
            }
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn init_logs(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WINGSPAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A config path that works from the repository root or from anywhere via `cargo run`.
fn resolve(path: PathBuf) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path;
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(&path);
    if beside.exists() { beside } else { path }
}

fn main() -> ExitCode {
    // No transparent huge pages for this process. mimalloc marks its arenas MADV_HUGEPAGE, and
    // the kernel then backs them with 2 MiB pages (khugepaged folds in a region where a single
    // 4 KiB page is in use): after 20 minutes of a soak, 61 of the gateway's 92 MiB of
    // anonymous memory were huge pages, and its resident memory had risen by a step of
    // 18 MiB (+9 %, over the soak's 5 % bound). Without them: 57 MiB anonymous.
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("wingspan: transparent huge pages stay enabled: {e}");
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wingspan: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Check { config } => match wingspan::load::load(&resolve(config)) {
                Ok(l) if !wingspan::load::lint(&l).is_empty() => {
                    let problems = wingspan::load::lint(&l);
                    for e in &problems {
                        eprintln!("{e}");
                    }
                    eprintln!("{} problem(s)", problems.len());
                    1
                }
                Ok(l) => {
                    let c = &l.config;
                    println!(
                        "config ok: {} sources, {} destinations, {} routes, {} message types",
                        c.sources.len(),
                        c.destinations.len(),
                        c.routes.routes().len(),
                        c.schemas.message_types().count()
                    );
                    0
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    eprintln!("{} problem(s)", errors.len());
                    1
                }
            },
            Command::Test { config } => test_cmd(&resolve(config)),
            Command::Config {
                command: ConfigCommand::Reload { admin },
            } => admin_cmd(&admin, "POST", "/admin/reload", serde_json::json!({})).await,
            Command::Config {
                command: ConfigCommand::Rollback { admin, version },
            } => {
                let body = serde_json::json!({ "sha256": version });
                admin_cmd(&admin, "POST", "/admin/rollback", body).await
            }
            Command::Config { command } => config_cmd(command),
            Command::Dlq {
                command: DlqCommand::Show { admin, id, payload },
            } => {
                let path = format!("/admin/dead-letters/{}?payload={payload}", encode_segment(&id));
                admin_cmd(&admin, "GET", &path, serde_json::Value::Null).await
            }
            Command::Dlq {
                command:
                    DlqCommand::Replay {
                        admin,
                        id,
                        destination,
                        all,
                        reason,
                    },
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
            Command::Dlq {
                command: DlqCommand::Discard { admin, id, reason },
            } => {
                let path = format!("/admin/dead-letters/{}/discard", encode_segment(&id));
                admin_cmd(&admin, "POST", &path, serde_json::json!({ "reason": reason })).await
            }
            Command::Dlq { command } => dlq_cmd(command),
            Command::Explain { config, file } => explain_cmd(&resolve(config), &file),
            Command::Decode {
                adapter,
                source,
                content_type,
                config,
                file,
            } => decode_cmd(&adapter, source, content_type, config, &file),
            Command::Encode {
                adapter,
                destination,
                config,
                file,
            } => encode_cmd(&adapter, &destination, config, &file),
            Command::Adapter { command } => match command {
                AdapterCommand::List { config } => commands::adapter::list(&resolve(config)),
                AdapterCommand::Test {
                    config,
                    name,
                    update,
                } => commands::adapter::test(&resolve(config), name.as_deref(), update),
            },
            // The audit commands may use the synchronous PostgreSQL client: off the runtime.
            Command::Audit { command } => tokio::task::spawn_blocking(move || audit_cmd(command))
                .await
                .unwrap_or(1),
            Command::Demo { config } => {
                // lapin logs its own view of connection closes at error level; ours are enough here.
                init_logs(cli.log_json, "error,lapin=off");
                match wingspan::demo::run(&resolve(config)).await {
                    Ok(code) => code,
                    Err(e) => {
                        eprintln!("wingspan demo: {e}");
                        1
                    }
                }
            }
            Command::Run { config } => {
                init_logs(cli.log_json, "info");
                run(resolve(config)).await
            }
        }
    });
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn load_or_report(config: &std::path::Path) -> Option<wingspan::load::Loaded> {
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

/// Call the running gateway's admin listener as the admin user whose token is given; print
/// the JSON answer. Exit code 0 on 2xx, 1 otherwise.
async fn admin_cmd(admin: &AdminArgs, method: &str, path: &str, body: serde_json::Value) -> i32 {
    let token = match (&admin.token_file, std::env::var("WINGSPAN_ADMIN_TOKEN")) {
        (Some(f), _) => match std::fs::read_to_string(f) {
            Ok(t) => t.trim().to_owned(),
            Err(e) => {
                eprintln!("wingspan: cannot read {}: {e}", f.display());
                return 1;
            }
        },
        (None, Ok(t)) if !t.is_empty() => t,
        _ => {
            eprintln!("wingspan: set WINGSPAN_ADMIN_TOKEN or give --token-file");
            return 1;
        }
    };
    let base = match &admin.admin_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => match load_or_report(&resolve(admin.config.clone())) {
            Some(l) => format!("http://{}", l.config.admin_listen),
            None => return 1,
        },
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("{base}{path}");
    let mut req = match method {
        "POST" => client.post(&url).json(&body),
        _ => client.get(&url),
    };
    req = req
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(120));
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "wingspan: the admin listener at {base} did not answer: {}",
                e.without_url()
            );
            return 1;
        }
    };
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    if status.is_success() {
        println!("{pretty}");
        0
    } else {
        eprintln!("{pretty}");
        1
    }
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
            .and_then(|c| wingspan::store::dead_letters(&c, destination.as_deref()));
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

fn test_cmd(config: &std::path::Path) -> i32 {
    let Some(loaded) = load_or_report(config) else {
        return 1;
    };
    let results = match wingspan::preview::run_tests(&loaded.config, &loaded.config_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wingspan test: {e}");
            return 1;
        }
    };
    let failed = results.iter().filter(|r| !r.problems.is_empty()).count();
    for r in &results {
        if r.problems.is_empty() {
            println!("pass  {}", r.name);
        } else {
            println!("FAIL  {}  ({})", r.name, r.file.display());
            for p in &r.problems {
                println!("      {p}");
            }
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if results.is_empty() {
        eprintln!("no test cases in {}/tests", loaded.config_dir.display());
        return 1;
    }
    i32::from(failed > 0)
}

fn explain_cmd(config: &std::path::Path, file: &std::path::Path) -> i32 {
    let Some(loaded) = load_or_report(config) else {
        return 1;
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("wingspan explain: {}: {e}", file.display());
            return 1;
        }
    };
    let x = wingspan::preview::explain(&loaded.config, &bytes);
    print!("{}", wingspan::preview::describe(&x));
    i32::from(x.refused.is_some())
}

async fn run(config: PathBuf) -> i32 {
    let loaded = match wingspan::load::load(&config) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return 1;
        }
    };
    if let Err(e) = wingspan::broker::probe(&loaded.config).await {
        eprintln!(
            "wingspan: RabbitMQ at {} is not answering yet ({e}); will keep trying. Start one with `rabbitmq-server -detached` or set WINGSPAN_AMQP_URL.",
            wingspan::broker::redacted(&loaded.config.broker.url)
        );
    }
    let gateway = match wingspan::Gateway::start(&loaded, wingspan::GatewayOptions::default()).await
    {
        Ok(g) => g,
        Err(e) => {
            eprintln!("wingspan: {e}");
            return 1;
        }
    };
    tracing::info!(http = ?gateway.http_addr, instance = %loaded.config.instance, "wingspan running");
    // SIGHUP: read the config file again; checked first, swapped only if it passes.
    let reloader = gateway.reloader.clone();
    let hangups = tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match reloader
                .reload(wingspan::reload::Offer::File, "signal:SIGHUP")
                .await
            {
                Ok(r) => {
                    tracing::info!(sha256 = %r.sha256, changes = r.changes.len(), "SIGHUP: config reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, problems = ?e.problems(), "SIGHUP: config refused; the running config is kept")
                }
            }
        }
    });
    wait_for_signal().await;
    hangups.abort();
    tracing::info!("shutting down: intake stopped, finishing in-flight work");
    gateway.shutdown().await;
    tracing::info!("stopped");
    0
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
