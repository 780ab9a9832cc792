//! Reload and rollback: check a config, then swap it in — or keep the old one and say why.
//!
//! The same path serves SIGHUP, `POST /admin/reload` and `POST /admin/rollback` (a version
//! kept by hash in the state store):
//! 1. load and compile the offered config (schemas, policies, routes — everything `wingspan
//!    check` refuses is refused here);
//! 2. refuse changes a running process cannot take (instance, listeners, TLS, broker
//!    connection and queue arguments, audit store and keys, state directory): they need a
//!    restart, and the answer names them;
//! 3. declare the new topology (queues of new destinations) on the live broker session;
//! 4. swap: new messages are admitted and routed under the new config from the next message
//!    on — each message under exactly one config —, delivery workers restart under it, rate
//!    limits follow;
//! 5. audit: `config_loaded` with the hash, the previous hash and who asked, or
//!    `config_refused` with the reason; the text is kept by hash (`wingspan config history`).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use wingspan_core::CompiledConfig;
use wingspan_core::audit::{Entry, Event};

use crate::broker::{Broker, Names, topology};
use crate::ingress::auth::Limiters;
use crate::live::Live;
use crate::load::{self, Loaded};
use crate::store::Store;

/// Which config to offer.
#[derive(Debug, Clone)]
pub enum Offer {
    /// The config file the gateway was started with, read again.
    File,
    /// A version that was live before, by its SHA-256 (or a unique prefix of it).
    Stored(String),
}

/// A reload that took effect (or found nothing to change).
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    pub sha256: String,
    pub previous_sha256: String,
    /// What changed, in words (`wingspan config diff`).
    pub changes: Vec<String>,
    /// Problems `wingspan check` reports that do not stop a config (as at start).
    pub warnings: Vec<String>,
    pub unchanged: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error("the config has {} problem(s); the running config is kept", .0.len())]
    Invalid(Vec<String>),
    #[error("these settings need a restart: {}; the running config is kept", .0.join(", "))]
    NeedsRestart(Vec<String>),
    #[error("no stored config version matches {0}")]
    UnknownVersion(String),
    #[error("the broker refused the new topology: {0}; the running config is kept")]
    Topology(String),
    #[error("the state store could not record the change: {0}")]
    Store(String),
}

impl ReloadError {
    pub fn problems(&self) -> Vec<String> {
        match self {
            Self::Invalid(p) | Self::NeedsRestart(p) => p.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// What a reload touches. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reloader {
    pub live: Live,
    store: Store,
    broker: Broker,
    names: Names,
    limiters: Option<Arc<Limiters>>,
    /// The file the gateway was started with.
    origin: PathBuf,
    started: Arc<Loaded>,
    /// The config in force: its SHA-256, its text, and the digest of its declared adapters.
    current: Arc<std::sync::Mutex<(String, String, String)>>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// Settings a running process cannot change, by name, that differ.
pub fn restart_only(old: &CompiledConfig, new: &CompiledConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut differs = |name: &str, a: String, b: String| {
        if a != b {
            out.push(name.to_owned());
        }
    };
    differs(
        "gateway.instance",
        old.instance.clone(),
        new.instance.clone(),
    );
    differs(
        "gateway.state_dir",
        old.state_dir.clone(),
        new.state_dir.clone(),
    );
    differs(
        "http.listen",
        old.http_listen.clone(),
        new.http_listen.clone(),
    );
    differs(
        "http.plaintext",
        old.http_plaintext.to_string(),
        new.http_plaintext.to_string(),
    );
    differs("tls", format!("{:?}", old.tls), format!("{:?}", new.tls));
    differs(
        "admin.listen",
        old.admin_listen.clone(),
        new.admin_listen.clone(),
    );
    let (a, b) = (&old.broker, &new.broker);
    differs(
        "broker.url",
        format!("{:?}", a.urls),
        format!("{:?}", b.urls),
    );
    differs(
        "broker.ca_file",
        format!("{:?}", a.ca_pem),
        format!("{:?}", b.ca_pem),
    );
    differs("broker.prefix", a.prefix.clone(), b.prefix.clone());
    differs(
        "broker.queue_type",
        format!("{:?}", a.queue_type),
        format!("{:?}", b.queue_type),
    );
    differs(
        "broker.heartbeat_secs",
        a.heartbeat_secs.to_string(),
        b.heartbeat_secs.to_string(),
    );
    differs(
        "broker.operation_timeout_ms",
        a.operation_timeout_ms.to_string(),
        b.operation_timeout_ms.to_string(),
    );
    // Queue arguments: RabbitMQ refuses to redeclare a queue with others.
    differs(
        "broker.retry_delays_ms",
        format!("{:?}", a.retry_delays_ms),
        format!("{:?}", b.retry_delays_ms),
    );
    differs(
        "broker.delivery_limit",
        a.delivery_limit.to_string(),
        b.delivery_limit.to_string(),
    );
    differs(
        "audit",
        format!("{:?}", old.audit),
        format!("{:?}", new.audit),
    );
    differs(
        "telemetry.otlp_endpoint",
        format!("{:?}", old.otlp_endpoint),
        format!("{:?}", new.otlp_endpoint),
    );
    out
}

impl Reloader {
    pub fn new(
        started: &Loaded,
        origin: PathBuf,
        live: Live,
        store: Store,
        broker: Broker,
        limiters: Option<Arc<Limiters>>,
    ) -> Self {
        Self {
            names: Names::new(&started.config.broker.prefix),
            live,
            store,
            broker,
            limiters,
            origin,
            current: Arc::new(std::sync::Mutex::new((
                started.config_sha256.clone(),
                started.config_text.clone(),
                started.adapters_sha256.clone(),
            ))),
            started: Arc::new(started.clone()),
            lock: Default::default(),
        }
    }

    /// The config directory the gateway started from (stored configs compile against it).
    pub fn config_dir(&self) -> std::path::PathBuf {
        self.started.config_dir.clone()
    }

    /// The SHA-256 of the config in force.
    pub fn current_sha256(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Check `offer` and put it in force, as `actor`; every outcome is audited.
    pub async fn reload(&self, offer: Offer, actor: &str) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.lock.lock().await;
        let what = match &offer {
            Offer::File => "reload".to_owned(),
            Offer::Stored(v) => format!("rollback to {v}"),
        };
        let result = self.try_reload(offer).await;
        let mut e = Entry::new(
            if result.is_ok() {
                Event::ConfigLoaded
            } else {
                Event::ConfigRefused
            },
            crate::audit::now(),
        );
        e.actor = Some(actor.to_owned());
        match &result {
            Ok(r) => {
                e.reason = Some(format!("config sha256 {}", r.sha256));
                e.outcome = Some(if r.unchanged {
                    format!("{what}: unchanged")
                } else {
                    format!("{what}: replaces {}", r.previous_sha256)
                });
            }
            Err(err) => {
                e.reason = Some(crate::audit::bounded_reason(&err.to_string()));
                e.outcome = Some(format!("{what}: refused"));
            }
        }
        self.store
            .audit(vec![e])
            .await
            .map_err(|e| ReloadError::Store(e.to_string()))?;
        match &result {
            Ok(r) if !r.unchanged => {
                tracing::info!(sha256 = %r.sha256, previous = %r.previous_sha256, actor, "config swapped")
            }
            Ok(_) => tracing::info!(actor, "config reload: unchanged"),
            Err(err) => tracing::warn!(actor, error = %err, "config reload refused"),
        }
        result
    }

    async fn try_reload(&self, offer: Offer) -> Result<Reloaded, ReloadError> {
        let loaded = match &offer {
            Offer::File => load::load(&self.origin),
            Offer::Stored(version) => {
                let key = version.clone();
                let found = self
                    .store
                    .read(move |c| Ok(crate::store::config_text(c, &key)?))
                    .await
                    .map_err(|e| ReloadError::Store(e.to_string()))?;
                let Some((sha, text)) = found else {
                    return Err(ReloadError::UnknownVersion(version.clone()));
                };
                load::load_str(
                    &format!("stored config {sha}"),
                    &text,
                    &self.started.config_dir,
                )
            }
        }
        .map_err(|errs| ReloadError::Invalid(errs.iter().map(ToString::to_string).collect()))?;
        let old = self.live.get();
        let mut needs_restart = restart_only(&old, &loaded.config);
        if loaded.state_dir != self.started.state_dir
            && !needs_restart.iter().any(|n| n == "gateway.state_dir")
        {
            needs_restart.push("gateway.state_dir".into());
        }
        if !needs_restart.is_empty() {
            return Err(ReloadError::NeedsRestart(needs_restart));
        }
        let (previous_sha256, previous_text, previous_adapters) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let warnings: Vec<String> = load::lint(&loaded)
            .iter()
            .map(ToString::to_string)
            .collect();
        let adapters_changed = loaded.adapters_sha256 != previous_adapters;
        if loaded.config_sha256 == previous_sha256 && !adapters_changed {
            return Ok(Reloaded {
                sha256: previous_sha256.clone(),
                previous_sha256,
                changes: Vec::new(),
                warnings,
                unchanged: true,
            });
        }
        let mut changes = match (
            wingspan_core::config::parse("running", &previous_text),
            wingspan_core::config::parse("offered", &loaded.config_text),
        ) {
            (Ok(a), Ok(b)) => wingspan_core::config::diff::describe(&a, &b),
            _ => Vec::new(),
        };
        if adapters_changed {
            changes.push(format!(
                "declared adapters under {} changed",
                loaded.adapters_dir.display()
            ));
        }
        // The new destinations' queues exist before anything is routed to them.
        if let Some(session) = self.broker.current() {
            let limit = self.broker.op_timeout;
            topology::declare(&session.connection, &loaded.config, &self.names, limit)
                .await
                .map_err(|e| ReloadError::Topology(e.to_string()))?;
        }
        self.store
            .remember_config(&loaded.config_sha256, &loaded.config_text)
            .await
            .map_err(|e| ReloadError::Store(e.to_string()))?;
        if let Some(l) = &self.limiters {
            l.update(&loaded.config);
        }
        self.store.retain((&loaded.config.retention).into());
        self.live.swap(loaded.config.clone());
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = (
            loaded.config_sha256.clone(),
            loaded.config_text.clone(),
            loaded.adapters_sha256.clone(),
        );
        Ok(Reloaded {
            sha256: loaded.config_sha256.clone(),
            previous_sha256,
            changes,
            warnings,
            unchanged: false,
        })
    }
}
