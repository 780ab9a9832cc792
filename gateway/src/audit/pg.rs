//! The audit trail in PostgreSQL, for several gateway instances sharing one store: one chain
//! per instance (the chain id is the instance name, so instance names must be unique; a
//! second instance with the same name fails on the primary key rather than fork a chain).
//! The gateway only INSERTs and SELECTs the audit tables: the role it runs as needs no UPDATE
//! or DELETE on them (README gives the GRANTs), which is also why a damaged tail is reported at
//! start rather than cut back.

use postgres::{Client, NoTls, Row};
use wingspan_core::audit::{Checkpoint, Entry, Event, Head, Record, Suite};

use crate::audit::Filter;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
  chain_id TEXT NOT NULL, seq BIGINT NOT NULL, event TEXT NOT NULL, at TEXT NOT NULL,
  message_id TEXT, correlation_id TEXT, source TEXT, destination TEXT, message_type TEXT,
  payload_sha256 TEXT, outcome TEXT, reason TEXT, actor TEXT, subject_ref TEXT,
  prev_hash TEXT NOT NULL, hash TEXT NOT NULL, trace_id TEXT,
  PRIMARY KEY (chain_id, seq));
ALTER TABLE audit ADD COLUMN IF NOT EXISTS trace_id TEXT;
CREATE INDEX IF NOT EXISTS audit_by_message ON audit (message_id);
CREATE INDEX IF NOT EXISTS audit_by_correlation ON audit (correlation_id);
CREATE INDEX IF NOT EXISTS audit_by_subject ON audit (subject_ref);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  chain_id TEXT NOT NULL, seq BIGINT NOT NULL, hash TEXT NOT NULL, signed_at TEXT NOT NULL,
  key_id TEXT NOT NULL, signature TEXT NOT NULL, PRIMARY KEY (chain_id, seq));
CREATE TABLE IF NOT EXISTS audit_chains (chain_id TEXT PRIMARY KEY, suite TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_timestamps (
  chain_id TEXT NOT NULL, seq BIGINT NOT NULL, token BYTEA NOT NULL, stamped_at TEXT NOT NULL,
  PRIMARY KEY (chain_id, seq));
";

const COLUMNS: &str = "seq, chain_id, event, at, message_id, correlation_id, source, destination, message_type, payload_sha256, outcome, reason, actor, subject_ref, prev_hash, hash, trace_id";

/// A connection to the PostgreSQL audit store.
pub struct PgAudit {
    client: Client,
    url: String,
}

impl std::fmt::Debug for PgAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAudit").finish_non_exhaustive()
    }
}

fn record(r: &Row) -> Result<Record, postgres::Error> {
    let event: String = r.try_get(2)?;
    Ok(Record {
        seq: u64::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0),
        chain_id: r.try_get(1)?,
        entry: Entry {
            event: Event::parse(&event).unwrap_or(Event::Recovered),
            at: r.try_get(3)?,
            message_id: r.try_get(4)?,
            correlation_id: r.try_get(5)?,
            source: r.try_get(6)?,
            destination: r.try_get(7)?,
            message_type: r.try_get(8)?,
            payload_sha256: r.try_get(9)?,
            outcome: r.try_get(10)?,
            reason: r.try_get(11)?,
            actor: r.try_get(12)?,
            subject_ref: r.try_get(13)?,
            trace_id: r.try_get(16)?,
        },
        prev_hash: r.try_get(14)?,
        hash: r.try_get(15)?,
    })
}

const CHECKPOINT_COLUMNS: &str = "chain_id, seq, hash, signed_at, key_id, signature";

fn checkpoint(r: &Row) -> Result<Checkpoint, postgres::Error> {
    Ok(Checkpoint {
        chain_id: r.try_get(0)?,
        seq: u64::try_from(r.try_get::<_, i64>(1)?).unwrap_or(0),
        hash: r.try_get(2)?,
        signed_at: r.try_get(3)?,
        key_id: r.try_get(4)?,
        signature: r.try_get(5)?,
    })
}

fn seq(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgAudit {
    /// Connect and create the tables if they are missing.
    pub fn connect(url: &str) -> Result<Self, postgres::Error> {
        let mut client = Client::connect(url, NoTls)?;
        client.batch_execute(SCHEMA)?;
        Ok(Self {
            client,
            url: url.to_owned(),
        })
    }

    /// Reconnect if the connection was lost.
    pub fn ensure(&mut self) -> Result<(), postgres::Error> {
        if self.client.is_closed() {
            self.client = Client::connect(&self.url, NoTls)?;
        }
        Ok(())
    }

    /// The suite a chain is kept with (see `sqlite::chain_suite`).
    pub fn chain_suite(&mut self, chain_id: &str) -> Result<Suite, postgres::Error> {
        let named: Option<String> = self
            .client
            .query_opt(
                "SELECT suite FROM audit_chains WHERE chain_id = $1",
                &[&chain_id],
            )?
            .map(|r| r.try_get(0))
            .transpose()?;
        Ok(named.and_then(|n| Suite::parse(&n)).unwrap_or_default())
    }

    /// At the writer's start: the chain's suite is the configured one (see
    /// `sqlite::claim_suite`).
    pub fn claim_suite(&mut self, chain_id: &str, configured: Suite) -> Result<(), String> {
        let db = |e: postgres::Error| format!("audit store: {e}");
        let recorded: Option<String> = self
            .client
            .query_opt(
                "SELECT suite FROM audit_chains WHERE chain_id = $1",
                &[&chain_id],
            )
            .map_err(db)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(db)?;
        let kept = match recorded {
            Some(name) => Suite::parse(&name).ok_or_else(|| {
                format!("audit chain {chain_id:?} names an unknown suite {name:?}")
            })?,
            None => {
                let started = self
                    .client
                    .query_opt(
                        "SELECT 1 FROM audit WHERE chain_id = $1 LIMIT 1",
                        &[&chain_id],
                    )
                    .map_err(db)?
                    .is_some();
                let kept = if started {
                    Suite::Sha256Ed25519
                } else {
                    configured
                };
                self.client
                    .execute(
                        "INSERT INTO audit_chains (chain_id, suite) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&chain_id, &kept.as_str()],
                    )
                    .map_err(db)?;
                kept
            }
        };
        crate::audit::sqlite::suite_matches(chain_id, kept, configured)
    }

    /// Where a chain stands: its head and the last signed sequence number.
    pub fn head(&mut self, chain_id: &str, suite: Suite) -> Result<(Head, u64), postgres::Error> {
        let last = self.client.query_opt(
            "SELECT seq, hash FROM audit WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1",
            &[&chain_id],
        )?;
        let signed = self.client.query_opt(
            "SELECT seq FROM audit_checkpoints WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1",
            &[&chain_id],
        )?;
        let head = match last {
            Some(r) => Head {
                chain_id: chain_id.to_owned(),
                suite,
                next_seq: u64::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0) + 1,
                last_hash: r.try_get(1)?,
            },
            None => Head::new(chain_id, suite),
        };
        let signed = match signed {
            Some(r) => u64::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0),
            None => 0,
        };
        Ok((head, signed))
    }

    /// The key the chain is signed by now (see [`wingspan_core::audit::current_key`]).
    pub fn current_key(&mut self, chain_id: &str) -> Result<Option<String>, postgres::Error> {
        let last = self.client.query_opt(
            "SELECT seq, key_id FROM audit_checkpoints WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1",
            &[&chain_id],
        )?;
        let (from, key): (i64, Option<String>) = match last {
            Some(r) => (r.try_get(0)?, Some(r.try_get(1)?)),
            None => (0, None),
        };
        let tail = self
            .client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM audit WHERE chain_id = $1 AND seq > $2 AND event = 'key_rotated' ORDER BY seq"
                ),
                &[&chain_id, &from],
            )?
            .iter()
            .map(record)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(wingspan_core::audit::current_key(key.as_deref(), &tail))
    }

    /// Insert placed records in one transaction, with the receipts, released claims and
    /// delivery states they account for (the shared tables, written by `instance`).
    pub(crate) fn append(
        &mut self,
        records: &[Record],
        shared: &crate::store::SharedRows,
        instance: &str,
    ) -> Result<(), postgres::Error> {
        if records.is_empty() && shared.is_empty() {
            return Ok(());
        }
        let mut tx = self.client.transaction()?;
        // Multi-row INSERTs (17 parameters a row, well under PostgreSQL's 65,535): one round
        // trip per chunk instead of one per record.
        for chunk in records.chunks(1000) {
            let seqs: Vec<i64> = chunk.iter().map(|r| seq(r.seq)).collect();
            let events: Vec<&str> = chunk.iter().map(|r| r.entry.event.as_str()).collect();
            let mut sql = format!("INSERT INTO audit ({COLUMNS}) VALUES ");
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
                Vec::with_capacity(chunk.len() * 17);
            for (i, r) in chunk.iter().enumerate() {
                let e = &r.entry;
                if i > 0 {
                    sql.push(',');
                }
                let b = i * 17;
                sql.push('(');
                for k in 1..=17 {
                    if k > 1 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("${}", b + k));
                }
                sql.push(')');
                params.extend_from_slice(&[
                    &seqs[i],
                    &r.chain_id,
                    &events[i],
                    &e.at,
                    &e.message_id,
                    &e.correlation_id,
                    &e.source,
                    &e.destination,
                    &e.message_type,
                    &e.payload_sha256,
                    &e.outcome,
                    &e.reason,
                    &e.actor,
                    &e.subject_ref,
                    &r.prev_hash,
                    &r.hash,
                    &e.trace_id,
                ]);
            }
            tx.execute(sql.as_str(), &params)?;
        }
        crate::store::write_shared(&mut tx, shared, instance)?;
        tx.commit()
    }

    pub fn checkpoint(&mut self, c: &Checkpoint) -> Result<(), postgres::Error> {
        self.client.execute(
            "INSERT INTO audit_checkpoints (chain_id, seq, hash, signed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[&c.chain_id, &seq(c.seq), &c.hash, &c.signed_at, &c.key_id, &c.signature],
        )?;
        Ok(())
    }

    pub fn chains(&mut self) -> Result<Vec<String>, postgres::Error> {
        self.client
            .query("SELECT DISTINCT chain_id FROM audit ORDER BY chain_id", &[])?
            .iter()
            .map(|r| r.try_get(0))
            .collect()
    }

    /// Every record of a chain in order, streamed (constant memory).
    pub fn each_record(
        &mut self,
        chain_id: &str,
        f: &mut dyn FnMut(Record),
    ) -> Result<(), postgres::Error> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut rows = self.client.query_raw(
            &format!("SELECT {COLUMNS} FROM audit WHERE chain_id = $1 ORDER BY seq"),
            [chain_id],
        )?;
        while let Some(row) = rows.next()? {
            f(record(&row)?);
        }
        Ok(())
    }

    /// A chain's RFC 3161 tokens: (checkpoint seq, token), in order.
    pub fn timestamps(&mut self, chain_id: &str) -> Result<Vec<(u64, Vec<u8>)>, postgres::Error> {
        self.client
            .query(
                "SELECT seq, token FROM audit_timestamps WHERE chain_id = $1 ORDER BY seq",
                &[&chain_id],
            )?
            .iter()
            .map(|r| {
                Ok((
                    u64::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0),
                    r.try_get(1)?,
                ))
            })
            .collect()
    }

    /// Keep a token beside its checkpoint.
    pub fn insert_timestamp(
        &mut self,
        chain_id: &str,
        seq_no: u64,
        token: &[u8],
        at: &str,
    ) -> Result<(), postgres::Error> {
        self.client.execute(
            "INSERT INTO audit_timestamps (chain_id, seq, token, stamped_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&chain_id, &seq(seq_no), &token, &at],
        )?;
        Ok(())
    }

    /// The chain's latest checkpoint.
    pub fn latest_checkpoint(
        &mut self,
        chain_id: &str,
    ) -> Result<Option<Checkpoint>, postgres::Error> {
        self.client
            .query_opt(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1"
                ),
                &[&chain_id],
            )?
            .as_ref()
            .map(checkpoint)
            .transpose()
    }

    /// The seq of the chain's latest time-stamped checkpoint (0 if none).
    pub fn last_stamped(&mut self, chain_id: &str) -> Result<u64, postgres::Error> {
        let last: i64 = self
            .client
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM audit_timestamps WHERE chain_id = $1",
                &[&chain_id],
            )?
            .try_get(0)?;
        Ok(u64::try_from(last).unwrap_or(0))
    }

    pub fn read_checkpoints(&mut self) -> Result<Vec<Checkpoint>, postgres::Error> {
        self.client
            .query(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY chain_id, seq"
                ),
                &[],
            )?
            .iter()
            .map(checkpoint)
            .collect()
    }

    /// A message and its replies, across every instance's chain, in time order.
    pub fn trail(&mut self, message_id: &str) -> Result<Vec<Record>, postgres::Error> {
        self.client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM audit WHERE message_id = $1
                       OR message_id IN (SELECT message_id FROM audit WHERE correlation_id = $1 AND message_id IS NOT NULL)
                     ORDER BY at, chain_id, seq"
                ),
                &[&message_id],
            )?
            .iter()
            .map(record)
            .collect()
    }

    pub fn search(&mut self, f: &Filter) -> Result<Vec<Record>, postgres::Error> {
        // $1 is the page's `after`; the filter's arguments follow.
        let (conditions, args) = f.conditions("subject_ref = ?", |n| format!("${}", n + 1));
        let mut clauses = vec!["seq > $1".to_owned()];
        clauses.extend(conditions);
        let after = seq(f.after_seq);
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&after];
        for a in &args {
            params.push(a);
        }
        self.client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM audit WHERE {} ORDER BY seq, chain_id LIMIT {}",
                    clauses.join(" AND "),
                    f.limit.max(1)
                ),
                &params,
            )?
            .iter()
            .map(record)
            .collect()
    }
}
