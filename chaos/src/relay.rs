//! A TCP relay that can be cut (every relayed connection dropped, new ones refused) and
//! restored: a dependency "gone" as the gateway sees it, without touching the service that
//! other work on this machine shares.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::{AbortHandle, JoinHandle};

#[derive(Debug)]
pub struct Relay {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let links = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let (up2, links2) = (up.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                // Small request/response messages: without NODELAY, Nagle and delayed ACKs
                // add ~40 ms to every round trip through the relay.
                let _ = inbound.set_nodelay(true);
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut l = links2.lock().unwrap_or_else(|p| p.into_inner());
                l.retain(|h| !h.is_finished());
                l.push(task.abort_handle());
            }
        });
        Ok(Self {
            addr,
            up,
            links,
            accept,
        })
    }

    /// Drop every relayed connection and refuse new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A fresh schema in the local PostgreSQL `test` database, reached through `via` (host:port),
/// as an audit store URL. Synchronous.
pub fn pg_schema(via: SocketAddr) -> anyhow::Result<(String, String)> {
    let schema = format!("chaos_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = postgres::Client::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        postgres::NoTls,
    )?;
    admin.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
    let url = format!(
        "postgres://postgres@{}:{}/test?options=-csearch_path%3D{schema}",
        via.ip(),
        via.port()
    );
    Ok((schema, url))
}

/// How many copies the gateways dropped rather than deliver (`discarded` records in the
/// schema's audit trail): at a destination that delivers once, the copies of intake attempts
/// that never committed.
pub fn pg_discarded(schema: &str) -> anyhow::Result<i64> {
    let mut admin = postgres::Client::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        postgres::NoTls,
    )?;
    let row = admin.query_one(
        &format!("SELECT count(*) FROM {schema}.audit WHERE event = 'discarded'"),
        &[],
    )?;
    Ok(row.get(0))
}

pub fn pg_drop(schema: &str) {
    if let Ok(mut admin) = postgres::Client::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        postgres::NoTls,
    ) {
        let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    }
}
