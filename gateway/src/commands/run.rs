//! `wingspan run` and `wingspan demo`: the gateway until SIGTERM or Ctrl-C (SIGHUP reloads its
//! config), and the gateway with partner simulators for a demonstration.

use std::path::PathBuf;

use super::resolve;

/// `wingspan run`: exit code 1 when the config does not load or the gateway cannot start.
pub async fn run(config: PathBuf, log_json: bool) -> i32 {
    init_logs(log_json, "info");
    let config = resolve(config);
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

/// `wingspan demo`.
pub async fn demo(config: PathBuf, log_json: bool) -> i32 {
    // lapin logs its own view of connection closes at error level; ours are enough here.
    init_logs(log_json, "error,lapin=off");
    match wingspan::demo::run(&resolve(config)).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wingspan demo: {e}");
            1
        }
    }
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
