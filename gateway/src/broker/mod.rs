//! The broker layer. One supervisor owns the AMQP connection: it connects (every step under a
//! timeout), declares the topology, hands out the live [`Session`], and on any error — reported
//! by lapin or by a component that saw a channel fail — tears the whole connection down and
//! starts again with backoff. lapin's own automatic recovery is not used.

pub mod publish;
pub mod topology;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::{Notify, watch};
use wingspan_core::CompiledConfig;

pub use publish::{Handed, PublishError, Publisher, Transacted};
pub use topology::Names;

/// Broker failures the shell can act on: all of them mean "reconnect and try again".
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker operation timed out after {0:?}")]
    Timeout(Duration),
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("no broker connection")]
    Disconnected,
    #[error("the broker refused an internal publish: {0}")]
    Refused(String),
}

/// Run a broker operation under the configured bound.
pub async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(BrokerError::from),
        Err(_) => Err(BrokerError::Timeout(limit)),
    }
}

/// A live connection. Components open their own channels on it; when any of them fails it
/// calls [`Session::poison`] and the supervisor replaces the connection.
#[derive(Clone, Debug)]
pub struct Session {
    pub connection: Arc<Connection>,
    pub generation: u64,
    poisoned: Arc<(AtomicBool, Notify)>,
    /// The broker blocked publishing on this connection (memory or disk alarm).
    blocked: Arc<AtomicBool>,
}

impl Session {
    /// Whether the broker is refusing publishes right now (a resource alarm).
    pub fn blocked(&self) -> bool {
        self.blocked.load(Ordering::SeqCst)
    }

    pub fn poison(&self) {
        self.poisoned.0.store(true, Ordering::SeqCst);
        self.poisoned.1.notify_one();
    }
}

/// Handle to the supervisor's current session.
#[derive(Clone, Debug)]
pub struct Broker {
    sessions: watch::Receiver<Option<Session>>,
    pub op_timeout: Duration,
}

impl Broker {
    /// True while a session is up (readiness).
    pub fn connected(&self) -> bool {
        self.sessions.borrow().is_some()
    }

    /// True while the broker blocks publishing (memory or disk alarm): publishes would wait
    /// for a confirm that cannot come, so the front doors refuse at once instead.
    pub fn blocked(&self) -> bool {
        self.sessions
            .borrow()
            .as_ref()
            .is_some_and(Session::blocked)
    }

    /// Wait for a session newer than `after` (0 for any). `None` when shutting down.
    pub async fn next_session(
        &self,
        after: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Session> {
        let mut rx = self.sessions.clone();
        loop {
            if *shutdown.borrow() {
                return None;
            }
            if let Some(s) = rx.borrow_and_update().as_ref()
                && s.generation > after
            {
                return Some(s.clone());
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return None; },
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Return once session `generation` is over (torn down or replaced) or shutdown begins.
    pub async fn until_ended(&self, generation: u64, shutdown: &mut watch::Receiver<bool>) {
        let mut rx = self.sessions.clone();
        loop {
            let live = rx.borrow_and_update().as_ref().map(|s| s.generation) == Some(generation);
            if !live || *shutdown.borrow() {
                return;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return; },
                _ = shutdown.changed() => {}
            }
        }
    }

    pub fn current(&self) -> Option<Session> {
        self.sessions.borrow().clone()
    }
}

/// Add `heartbeat` to the URL unless it already sets one.
fn with_heartbeat(url: &str, secs: u16) -> String {
    if url.contains("heartbeat=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}heartbeat={secs}")
}

/// Host and port of an AMQP URL, without credentials, for messages.
pub fn redacted(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    host.split(['/', '?']).next().unwrap_or(host).to_owned()
}

/// Open a connection; over TLS (`amqps://`) the broker's certificate is verified against
/// `broker.ca_file` when one is configured, else against the public web PKI roots.
pub async fn connect(
    url: &str,
    props: ConnectionProperties,
    settings: &wingspan_core::config::BrokerSettings,
) -> lapin::Result<Connection> {
    match &settings.ca_pem {
        Some(ca) if url.starts_with("amqps://") => {
            let tls = lapin::tcp::OwnedTLSConfig {
                identity: None,
                cert_chain: Some(ca.clone()),
            };
            Connection::connect_with_config(url, props, tls, lapin::runtime::default_runtime()?)
                .await
        }
        _ => Connection::connect(url, props).await,
    }
}

/// Try one connection right now (used by the CLI to fail fast with a clear line).
pub async fn probe(config: &CompiledConfig) -> Result<(), BrokerError> {
    let limit = Duration::from_millis(config.broker.operation_timeout_ms);
    let url = with_heartbeat(&config.broker.url, config.broker.heartbeat_secs);
    let conn = bounded(
        limit,
        connect(&url, ConnectionProperties::default(), &config.broker),
    )
    .await?;
    let _ = bounded(limit, conn.close(200, "probe".into())).await;
    Ok(())
}

/// Start the supervisor. It runs until `shutdown` turns true.
///
/// The connection settings are the first config's (a reload may not change them); the
/// topology declared at each (re)connect is the config in force then.
pub fn supervise(
    live: crate::live::Live,
    mut shutdown: watch::Receiver<bool>,
) -> (Broker, tokio::task::JoinHandle<()>) {
    let config = live.get();
    let (tx, rx) = watch::channel(None);
    let limit = Duration::from_millis(config.broker.operation_timeout_ms);
    let broker = Broker {
        sessions: rx,
        op_timeout: limit,
    };
    let handle = tokio::spawn(async move {
        let urls: Vec<String> = config
            .broker
            .urls
            .iter()
            .map(|u| with_heartbeat(u, config.broker.heartbeat_secs))
            .collect();
        // The node tried next; after a failure (to connect, or of a live session) the next one.
        let mut node = 0usize;
        let names = Names::new(&config.broker.prefix);
        let mut generation = 0u64;
        let mut backoff = Duration::from_millis(100);
        let mut warned = false;
        while !*shutdown.borrow() {
            let props = ConnectionProperties::default()
                .with_connection_name(format!("wingspan {}", config.instance).into());
            let current = live.get();
            let url = &urls[node % urls.len()];
            let where_ = redacted(&config.broker.urls[node % urls.len()]);
            let attempt = async {
                let conn = bounded(limit, connect(url, props, &config.broker)).await?;
                if let Err(e) = topology::declare(&conn, &current, &names, limit).await {
                    let _ = bounded(limit, conn.close(200, "topology failed".into())).await;
                    return Err(e);
                }
                Ok(conn)
            };
            let conn = tokio::select! {
                r = attempt => r,
                _ = shutdown.changed() => break,
            };
            let conn = match conn {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    if !warned {
                        tracing::warn!(broker = %where_, error = %e, "broker unavailable; retrying with backoff");
                        warned = true;
                    }
                    // The next node at once; after a whole round, wait.
                    node += 1;
                    if !node.is_multiple_of(urls.len()) {
                        continue;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            generation += 1;
            backoff = Duration::from_millis(100);
            warned = false;
            tracing::info!(broker = %where_, generation, "broker connected, topology declared");
            let poisoned = Arc::new((AtomicBool::new(false), Notify::new()));
            let blocked = Arc::new(AtomicBool::new(false));
            let mut events = conn.events_listener();
            let _ = tx.send(Some(Session {
                connection: conn.clone(),
                generation,
                poisoned: poisoned.clone(),
                blocked: blocked.clone(),
            }));
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let reason = loop {
                tokio::select! {
                    ev = events.next() => match ev {
                        Some(lapin::Event::Error(e)) => break format!("connection error: {e}"),
                        Some(lapin::Event::ConnectionBlocked(why)) => {
                            tracing::warn!(broker = %where_, reason = %why, "the broker blocks publishing (resource alarm); intake refuses until it lifts");
                            blocked.store(true, Ordering::SeqCst);
                        }
                        Some(lapin::Event::ConnectionUnblocked) => {
                            tracing::info!(broker = %where_, "the broker accepts publishes again");
                            blocked.store(false, Ordering::SeqCst);
                        }
                        Some(_) => {}
                        None => break "connection event stream ended".to_owned(),
                    },
                    _ = poisoned.1.notified() => break "a channel failed".to_owned(),
                    _ = tick.tick() => {
                        if poisoned.0.load(Ordering::SeqCst) { break "a channel failed".to_owned(); }
                        if !conn.status().connected() { break "connection lost".to_owned(); }
                    }
                    _ = shutdown.changed() => break "shutdown".to_owned(),
                }
            };
            let _ = tx.send(None);
            if reason != "shutdown" {
                tracing::warn!(broker = %where_, generation, %reason, "broker session ended; reconnecting");
                if urls.len() > 1 {
                    node += 1;
                }
            }
            let _ = bounded(limit, conn.close(200, "wingspan reconnecting".into())).await;
        }
        let _ = tx.send(None);
    });
    (broker, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            with_heartbeat("amqp://h:5672/%2f", 10),
            "amqp://h:5672/%2f?heartbeat=10"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?x=1", 5),
            "amqp://h/%2f?x=1&heartbeat=5"
        );
        assert_eq!(
            with_heartbeat("amqp://h/?heartbeat=3", 5),
            "amqp://h/?heartbeat=3"
        );
        assert_eq!(
            redacted("amqp://user:secret@127.0.0.1:5672/%2f"),
            "127.0.0.1:5672"
        );
        assert_eq!(redacted("amqp://127.0.0.1"), "127.0.0.1");
    }
}
