//! Starting and stopping a gateway: the broker supervisor, the HTTP and AMQP front doors and
//! one delivery worker per destination, all sharing one shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use wingspan_core::CompiledConfig;

use crate::broker::{self, Broker, Names};
use crate::delivery::{self, DeliveryContext};
use crate::dlq::DeadLetters;
use crate::ingress;
use crate::intake::Intake;
use crate::live::Live;
use crate::load::Loaded;
use crate::reload::Reloader;
use crate::stats::Stats;
use crate::store::{AuditSetup, Store};

/// Serve an HTTP router until shutdown.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
) {
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "{what} stopped");
    }
}

/// Which parts to run (all by default).
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub http: bool,
    pub amqp_ingress: bool,
    pub delivery: bool,
    /// Override of the configured HTTP listen address (tests bind port 0).
    pub http_listen: Option<String>,
    /// Override of the configured HTTPS listen address.
    pub tls_listen: Option<String>,
    /// The admin listener (compliance: audit queries).
    pub admin: bool,
    /// Override of the configured admin listen address.
    pub admin_listen: Option<String>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            http: true,
            amqp_ingress: true,
            delivery: true,
            http_listen: None,
            tls_listen: None,
            admin: true,
            admin_listen: None,
        }
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// The plain-HTTP listener (local development only).
    pub http_addr: Option<SocketAddr>,
    /// The HTTPS listener (mutual TLS or bearer tokens).
    pub tls_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub stats: Stats,
    pub store: Store,
    pub broker: Broker,
    /// The config the gateway started with.
    pub config: Arc<CompiledConfig>,
    /// The config in force (swapped by reloads).
    pub live: Live,
    pub reloader: Reloader,
    pub dead_letters: DeadLetters,
    pub names: Names,
    /// Where spans go.
    pub telemetry: crate::telemetry::Telemetry,
}

impl Gateway {
    pub async fn start(loaded: &Loaded, options: GatewayOptions) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = loaded.config.clone();
        let keys = Arc::new(crate::audit::keys(loaded, true)?);
        let store = Store::open(
            &loaded.state_dir,
            AuditSetup {
                chain_id: config.instance.clone(),
                postgres: config.audit.store.clone(),
                keys,
                checkpoint_every: config.audit.checkpoint_every,
                checkpoint_secs: config.audit.checkpoint_secs,
                archive: Some(crate::store::ArchiveSetup {
                    dir: std::path::absolute(&loaded.archive_dir)?,
                    records: config.audit.archive_records,
                    secs: config.audit.archive_secs,
                }),
            },
        )?;
        store.retain((&config.retention).into());
        // Nothing is accepted before the config it runs under is on record.
        let mut loaded_entry = wingspan_core::audit::Entry::new(
            wingspan_core::audit::Event::ConfigLoaded,
            crate::audit::now(),
        );
        loaded_entry.reason = Some(format!("config sha256 {}", loaded.config_sha256));
        loaded_entry.actor = Some("gateway".into());
        store.audit(vec![loaded_entry]).await?;
        store
            .remember_config(&loaded.config_sha256, &loaded.config_text)
            .await?;
        for problem in crate::load::lint(loaded) {
            tracing::warn!(%problem, "config problem (wingspan check reports it too)");
        }
        let stats = Stats::default();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let live = Live::new(config.clone());
        let (broker, supervisor) = broker::supervise(live.clone(), shutdown_rx.clone());
        tasks.spawn(async move {
            let _ = supervisor.await;
        });
        if let (Some(url), Some(cert)) = (&config.audit.tsa_url, &loaded.tsa_cert_der) {
            tasks.spawn(crate::audit::tsa::run(
                crate::audit::tsa::Stamper {
                    url: url.clone(),
                    cert: cert.clone(),
                    every: std::time::Duration::from_secs(config.audit.tsa_every_secs),
                    chain_id: config.instance.clone(),
                    store: crate::audit::Location::of(loaded),
                },
                shutdown_rx.clone(),
            ));
        }
        // Spans go to the collector when one is configured; contexts are carried either way.
        let telemetry = match &config.otlp_endpoint {
            Some(url) => crate::telemetry::Telemetry::otlp(
                url,
                &config.instance,
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .map_err(client_error)?,
            )?,
            None => crate::telemetry::Telemetry::off(),
        };
        let intake = Arc::new(Intake::new(
            live.clone(),
            store.clone(),
            stats.clone(),
            telemetry.clone(),
        ));
        let names = Names::new(&config.broker.prefix);
        let dead_letters =
            DeadLetters::new(live.clone(), names.clone(), store.clone(), broker.clone());
        let limiters = Arc::new(ingress::auth::Limiters::new(&config));
        let reloader = Reloader::new(
            loaded,
            std::path::PathBuf::from(&loaded.config_origin),
            live.clone(),
            store.clone(),
            broker.clone(),
            Some(limiters.clone()),
        );

        let (mut http_addr, mut tls_addr) = (None, None);
        let tls = match (&config.tls, options.http) {
            (Some(t), true) => Some(ingress::tls::load(&loaded.config_dir, t)?),
            _ => None,
        };
        if options.http && (config.http_plaintext || tls.is_some()) {
            let (slot_tx, slot_rx) = watch::channel(None);
            let renew = Arc::new(tokio::sync::Notify::new());
            tasks.spawn(ingress::http::keep_publisher(
                broker.clone(),
                slot_tx,
                renew.clone(),
                shutdown_rx.clone(),
            ));
            let app = ingress::http::router(ingress::http::HttpState {
                intake: intake.clone(),
                publisher: slot_rx,
                renew,
                broker: broker.clone(),
                limiters: limiters.clone(),
            });
            if config.http_anonymous {
                tracing::warn!(
                    "http.anonymous is on: requests without credentials speak for any source; for local development only"
                );
            }
            if config.http_plaintext {
                let listen = options
                    .http_listen
                    .clone()
                    .unwrap_or_else(|| config.http_listen.clone());
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
                http_addr = Some(listener.local_addr()?);
                tracing::warn!(
                    listen = %listen,
                    "plain HTTP ingress is on (http.plaintext): for local development only"
                );
                tasks.spawn(serve(
                    listener,
                    app.clone(),
                    shutdown_rx.clone(),
                    "HTTP ingress",
                ));
            }
            if let (Some(server), Some(t)) = (tls, &config.tls) {
                let listen = options
                    .tls_listen
                    .clone()
                    .unwrap_or_else(|| t.listen.clone());
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (HTTPS): {e}"))?;
                tls_addr = Some(listener.local_addr()?);
                tasks.spawn(ingress::tls::serve(
                    listener,
                    server,
                    app,
                    shutdown_rx.clone(),
                ));
            }
        }
        let mut admin_addr = None;
        let recent = crate::recent::Recent::default();
        if options.admin {
            let listen = options
                .admin_listen
                .clone()
                .unwrap_or_else(|| config.admin_listen.clone());
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (admin): {e}"))?;
            admin_addr = Some(listener.local_addr()?);
            let app = ingress::admin::router(ingress::admin::AdminState {
                store: store.clone(),
                live: live.clone(),
                stats: stats.clone(),
                broker: broker.clone(),
                names: names.clone(),
                dead_letters: dead_letters.clone(),
                reloader: reloader.clone(),
                recent: recent.clone(),
                exports_dir: loaded.state_dir.join("exports"),
                last_verification: Arc::default(),
                telemetry: telemetry.clone(),
            });
            tasks.spawn(serve(listener, app, shutdown_rx.clone(), "admin listener"));
            tasks.spawn(crate::recent::sample(
                recent.clone(),
                stats.clone(),
                shutdown_rx.clone(),
            ));
        }
        if options.amqp_ingress {
            tasks.spawn(ingress::amqp::run(
                intake.clone(),
                broker.clone(),
                shutdown_rx.clone(),
            ));
        }
        if options.delivery {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(client_error)?;
            let base = DeliveryContext {
                config: config.clone(),
                names: names.clone(),
                store: store.clone(),
                stats: stats.clone(),
                http,
                telemetry: telemetry.clone(),
            };
            tasks.spawn(delivery::manage(
                base,
                live.clone(),
                broker.clone(),
                shutdown_rx.clone(),
            ));
        }
        Ok(Self {
            shutdown,
            tasks,
            http_addr,
            tls_addr,
            admin_addr,
            stats,
            store,
            broker,
            names,
            config,
            live,
            reloader,
            dead_letters,
            telemetry,
        })
    }

    /// Wait until the broker session is up.
    pub async fn wait_ready(&self, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            while !self.broker.connected() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok()
    }

    /// Stop intake, let in-flight work finish (bounded), close the broker connection.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(Duration::from_secs(30), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "shutdown grace period over; abandoning in-flight work (it stays queued)"
            );
            self.tasks.abort_all();
        }
        self.telemetry.shutdown().await;
    }
}

/// Building an HTTP client fails, in practice, where the system has no root certificates
/// (a minimal container image without `ca-certificates`): say so rather than "builder error".
fn client_error(e: reqwest::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot build the HTTP client for partners: {e} (are the system's root certificates installed? on Debian: ca-certificates)"
    )
}
