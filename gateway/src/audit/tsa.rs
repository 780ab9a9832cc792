//! Time anchoring: every `tsa_every_secs`, the chain's latest checkpoint (if it has none yet)
//! is time-stamped by the configured RFC 3161 authority, and the token, checked before it is
//! kept, is stored beside the checkpoint (`audit_timestamps`). A token over checkpoint N
//! proves that every record up to N existed, as it is, at the token's time: the chain's
//! time no longer rests on the gateway's clock alone. A TSA that does not answer delays the
//! token, never a receipt: the stamper runs beside the writer and only reads checkpoints.

use std::time::Duration;

use ring::rand::SecureRandom;
use tokio::sync::watch;
use wingspan_core::audit::Checkpoint;
use wingspan_core::tsa;

use super::Location;

/// What the stamper needs.
#[derive(Debug, Clone)]
pub struct Stamper {
    pub url: String,
    /// The TSA's certificate (DER): a token is checked before it is kept.
    pub cert: Vec<u8>,
    pub every: Duration,
    pub chain_id: String,
    pub store: Location,
}

/// The latest checkpoint, if it has no token yet.
fn unstamped(store: &Location, chain_id: &str) -> anyhow::Result<Option<Checkpoint>> {
    Ok(match store {
        Location::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path)?;
            let stamped = super::sqlite::last_stamped(&conn, chain_id)?;
            super::sqlite::latest_checkpoint(&conn, chain_id)?.filter(|c| stamped < c.seq)
        }
        Location::Postgres(url) => {
            let mut pg = super::pg::PgAudit::connect(url)?;
            let stamped = pg.last_stamped(chain_id)?;
            pg.latest_checkpoint(chain_id)?.filter(|c| stamped < c.seq)
        }
    })
}

fn keep(store: &Location, c: &Checkpoint, token: &[u8]) -> anyhow::Result<()> {
    let at = super::now();
    match store {
        Location::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            super::sqlite::insert_timestamp(&conn, &c.chain_id, c.seq, token, &at)?;
        }
        Location::Postgres(url) => {
            super::pg::PgAudit::connect(url)?.insert_timestamp(&c.chain_id, c.seq, token, &at)?;
        }
    }
    Ok(())
}

/// One round: stamp the latest checkpoint if it has no token. `Ok(Some(seq))` when a token
/// was kept.
pub async fn stamp_once(s: &Stamper, http: &reqwest::Client) -> anyhow::Result<Option<u64>> {
    let (store, chain) = (s.store.clone(), s.chain_id.clone());
    let Some(c) = tokio::task::spawn_blocking(move || unstamped(&store, &chain)).await?? else {
        return Ok(None);
    };
    let mut nonce = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let message = c.message();
    let answer = http
        .post(&s.url)
        .header("Content-Type", "application/timestamp-query")
        .body(tsa::request(&message, u64::from_be_bytes(nonce)))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the time-stamping authority did not answer: {}",
                e.without_url()
            )
        })?;
    anyhow::ensure!(
        answer.status().is_success(),
        "the time-stamping authority answered {}",
        answer.status()
    );
    let body = answer.bytes().await?;
    anyhow::ensure!(
        body.len() <= 64 * 1024,
        "the time-stamping authority's answer is too large"
    );
    let token = tsa::token_of_response(&body)?;
    let stamp = tsa::check(&token, &message, &s.cert)?;
    let store = s.store.clone();
    let kept = c.clone();
    tokio::task::spawn_blocking(move || keep(&store, &kept, &token)).await??;
    tracing::info!(chain = %c.chain_id, seq = c.seq, gen_time = %stamp.gen_time, "audit checkpoint time-stamped");
    Ok(Some(c.seq))
}

/// Stamp every `every` until shut down; failures are logged and tried again next round.
pub async fn run(s: Stamper, mut shutdown: watch::Receiver<bool>) {
    let http = reqwest::Client::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(s.every) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = stamp_once(&s, &http).await {
            tracing::warn!(error = %e, chain = %s.chain_id, "audit checkpoint not time-stamped; trying again next round");
        }
    }
}

/// Check a chain's tokens against its checkpoints under the TSA certificate: what is wrong,
/// and how many tokens there are.
pub fn check_tokens(
    tokens: &[(u64, Vec<u8>)],
    checkpoints: &[Checkpoint],
    chain_id: &str,
    cert: Option<&[u8]>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(cert) = cert else {
        return problems;
    };
    let by_seq: std::collections::HashMap<u64, &Checkpoint> = checkpoints
        .iter()
        .filter(|c| c.chain_id == chain_id)
        .map(|c| (c.seq, c))
        .collect();
    for (seq, token) in tokens {
        let Some(c) = by_seq.get(seq) else {
            problems.push(format!(
                "a time-stamp names checkpoint {seq}, which the store does not have"
            ));
            continue;
        };
        if let Err(e) = tsa::check(token, &c.message(), cert) {
            problems.push(format!("time-stamp of checkpoint {seq}: {e}"));
        }
    }
    problems
}
