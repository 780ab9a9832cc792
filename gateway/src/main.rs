//! The `wingspan` command: `run`, `demo`, `check`, `test`, `explain`, `decode`, `encode`,
//! `audit`. This file holds the command line itself and the dispatch; each command group is a
//! module of [`commands`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::adapter::AdapterCommand;
use commands::audit::AuditCommand;
use commands::config::ConfigCommand;
use commands::dlq::DlqCommand;
use commands::resolve;

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
            Command::Run { config } => commands::run::run(config, cli.log_json).await,
            Command::Demo { config } => commands::run::demo(config, cli.log_json).await,
            Command::Check { config } => commands::check::check(&resolve(config)),
            Command::Test { config } => commands::check::test(&resolve(config)),
            Command::Explain { config, file } => commands::check::explain(&resolve(config), &file),
            Command::Decode {
                adapter,
                source,
                content_type,
                config,
                file,
            } => commands::codec::decode(&adapter, source, content_type, config, &file),
            Command::Encode {
                adapter,
                destination,
                config,
                file,
            } => commands::codec::encode(&adapter, &destination, config, &file),
            Command::Config { command } => commands::config::run(command).await,
            Command::Dlq { command } => commands::dlq::run(command).await,
            Command::Audit { command } => commands::audit::run(command).await,
            Command::Adapter { command } => commands::adapter::run(command),
        }
    });
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
