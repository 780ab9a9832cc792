//! The subject access report's reads (the assembly and the document are the core's,
//! `wingspan_core::subject`): the messages a person's reference names, each one's trail and
//! its replies, the chain's config loads, and what each destination received under the
//! config in force (its field policy, the stored config compiled again).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use wingspan_core::audit::{Event, Record};
use wingspan_core::policy::Selection;
use wingspan_core::subject::Received;

use super::{AuditSource, Filter, search, trail};

/// At most this many records name one person (a report past it says so in the log; a person
/// with more messages than this in the live window and archive is not a case seen here).
const MAX_NAMED: usize = 100_000;

/// The records the report is made of: every record of every message the reference names
/// (its thread, same source and id) and of the replies to them, and the chain's
/// `config_loaded` records. Another message that shares an id but not the source is not
/// the person's and is left out.
pub fn subject_records(
    src: &mut AuditSource,
    subject_ref: &str,
    earlier_refs: &[String],
) -> anyhow::Result<(Vec<Record>, Vec<Record>)> {
    let named = search(
        src,
        &Filter {
            subject_ref: Some(subject_ref.to_owned()),
            earlier_subject_refs: earlier_refs.to_vec(),
            limit: MAX_NAMED,
            ..Default::default()
        },
    )?;
    if named.len() >= MAX_NAMED {
        tracing::warn!(
            limit = MAX_NAMED,
            "a subject access report reached its record limit"
        );
    }
    let threads: HashSet<(String, String)> = named
        .iter()
        .filter(|r| r.entry.event == Event::Received)
        .filter_map(|r| Some((r.entry.source.clone()?, r.entry.message_id.clone()?)))
        .collect();
    let ids: HashSet<&str> = threads.iter().map(|(_, id)| id.as_str()).collect();
    let mut records = Vec::new();
    for id in &ids {
        for r in trail(src, id)? {
            let own = match (&r.entry.source, &r.entry.message_id) {
                (Some(s), Some(m)) => threads.contains(&(s.clone(), m.clone())),
                _ => false,
            };
            let reply = r
                .entry
                .correlation_id
                .as_deref()
                .is_some_and(|c| ids.contains(c));
            if own || reply {
                records.push(r);
            }
        }
    }
    let configs = search(
        src,
        &Filter {
            event: Some(Event::ConfigLoaded.as_str().to_owned()),
            limit: MAX_NAMED,
            ..Default::default()
        },
    )?;
    Ok((records, configs))
}

/// The config hashes the `config_loaded` records name.
pub fn config_hashes(configs: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = configs
        .iter()
        .filter_map(|c| c.entry.reason.as_deref()?.strip_prefix("config sha256 "))
        .filter_map(|h| h.split_whitespace().next().map(str::to_owned))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What each destination received under stored configs, compiled again once each (relative
/// to the config directory in use: schemas and adapters as they are now).
#[derive(Debug, Default)]
pub struct Policies {
    compiled: HashMap<String, Option<Arc<wingspan_core::CompiledConfig>>>,
}

impl Policies {
    /// `texts`: (hash, text) of the stored configs.
    pub fn compile(texts: &[(String, String)], config_dir: &Path) -> Self {
        let compiled = texts
            .iter()
            .map(|(sha, text)| {
                let loaded =
                    crate::load::load_str(&format!("stored config {sha}"), text, config_dir).ok();
                (sha.clone(), loaded.map(|l| l.config))
            })
            .collect();
        Self { compiled }
    }

    /// What `destination` received of a `message_type` payload under config `sha256`.
    pub fn received(&self, sha256: &str, destination: &str, message_type: &str) -> Received {
        let Some(Some(config)) = self.compiled.get(sha256) else {
            return Received::Unknown;
        };
        match config
            .destinations
            .iter()
            .find(|d| d.id == destination)
            .and_then(|d| d.policy(message_type))
        {
            Some(Selection::All) => Received::All,
            Some(Selection::Fields(tree)) => Received::Fields(tree.paths()),
            None => Received::Unknown,
        }
    }
}
