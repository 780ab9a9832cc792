//! Check the raw config as a whole and compile it into the form the gateway runs with.

use std::collections::{HashMap, HashSet};

use super::ConfigError;
use super::raw::{RawConfig, RawPredicate};
use crate::envelope::Envelope;
use crate::route::{Op, Predicate, Route, RouteTable};
use crate::schema::SchemaCatalog;

/// The checked, ready-to-use configuration.
#[derive(Debug)]
pub struct CompiledConfig {
    pub instance: String,
    /// As written (relative to the config file); the shell resolves it.
    pub schemas_dir: String,
    pub state_dir: String,
    pub http_listen: String,
    pub broker: BrokerSettings,
    pub limits: Limits,
    pub sources: HashMap<String, Source>,
    /// In config order; a route table index refers to this list.
    pub destinations: Vec<Destination>,
    pub routes: RouteTable,
    pub schemas: SchemaCatalog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Quorum,
    Classic,
}

#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub url: String,
    pub prefix: String,
    pub queue_type: QueueType,
    pub prefetch: u16,
    pub heartbeat_secs: u16,
    pub operation_timeout_ms: u64,
    pub retry_delays_ms: Vec<u64>,
    pub delivery_limit: u32,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub allowed: HashSet<String>,
}

#[derive(Debug, Clone)]
pub struct Destination {
    pub id: String,
    pub adapter: String,
    pub concurrency: u16,
    pub transport: Transport,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Http {
        url: String,
        timeout_ms: u64,
    },
    Amqp {
        exchange: String,
        routing_key: String,
    },
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn check_unique<'a>(kind: &str, ids: impl Iterator<Item = &'a str>, errors: &mut Vec<ConfigError>) {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        if !seen.insert(id) {
            errors.push(ConfigError::new(
                format!("{kind}[{i}]"),
                format!("duplicate id {id:?}"),
            ));
        }
    }
}

fn compile_predicate(
    path: &str,
    raw: &RawPredicate,
    errors: &mut Vec<ConfigError>,
) -> Option<Predicate> {
    let field_ok =
        raw.field.starts_with("/payload/") || Envelope::HEADER_FIELDS.contains(&raw.field.as_str());
    if !field_ok {
        errors.push(ConfigError::new(
            format!("{path}.field"),
            format!(
                "{:?} is neither a header field ({}) nor a pointer into the payload (/payload/...)",
                raw.field,
                Envelope::HEADER_FIELDS.join(", ")
            ),
        ));
    }
    let mut ops = Vec::new();
    if let Some(v) = &raw.equals {
        ops.push(Op::Equals(v.clone()));
    }
    if let Some(v) = &raw.prefix {
        ops.push(Op::Prefix(v.clone()));
    }
    if let Some(v) = &raw.one_of {
        if v.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.one_of"),
                "must list at least one value",
            ));
        }
        ops.push(Op::OneOf(v.clone()));
    }
    if let Some(v) = raw.exists {
        ops.push(Op::Exists(v));
    }
    if ops.len() != 1 {
        errors.push(ConfigError::new(
            path,
            "give exactly one of equals, prefix, one_of, exists",
        ));
        return None;
    }
    let op = ops.pop()?;
    field_ok.then(|| Predicate {
        field: raw.field.clone(),
        op,
    })
}

/// Check everything and build the compiled config. `adapters` lists the adapter names the
/// registry knows. Every problem is reported, not just the first.
pub fn compile(
    raw: RawConfig,
    schemas: SchemaCatalog,
    adapters: &[&str],
) -> Result<CompiledConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();

    // Broker.
    let b = &raw.broker;
    let queue_type = match b.queue_type.as_str() {
        "quorum" => QueueType::Quorum,
        "classic" => QueueType::Classic,
        other => {
            errors.push(ConfigError::new(
                "broker.queue_type",
                format!("{other:?} is not one of quorum, classic"),
            ));
            QueueType::Quorum
        }
    };
    if !b
        .prefix
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        || b.prefix.is_empty()
    {
        errors.push(ConfigError::new(
            "broker.prefix",
            "use letters, digits, '-', '_' and '.' only",
        ));
    }
    if b.retry_delays_ms.is_empty() || b.retry_delays_ms.contains(&0) {
        errors.push(ConfigError::new(
            "broker.retry_delays_ms",
            "list at least one delay, each above 0",
        ));
    }
    if b.prefetch == 0 {
        errors.push(ConfigError::new("broker.prefetch", "must be at least 1"));
    }
    if b.operation_timeout_ms == 0 {
        errors.push(ConfigError::new(
            "broker.operation_timeout_ms",
            "must be above 0",
        ));
    }
    if raw.limits.max_body_bytes < 256 {
        errors.push(ConfigError::new(
            "limits.max_body_bytes",
            "must be at least 256",
        ));
    }

    // Sources.
    check_unique(
        "sources",
        raw.sources.iter().map(|s| s.id.as_str()),
        &mut errors,
    );
    let mut sources = HashMap::new();
    for (i, s) in raw.sources.iter().enumerate() {
        if !valid_id(&s.id) {
            errors.push(ConfigError::new(
                format!("sources[{i}].id"),
                "use lowercase letters, digits, '-' and '_' only",
            ));
        }
        for (j, t) in s.message_types.iter().enumerate() {
            if !schemas.has_type(t) {
                errors.push(ConfigError::new(
                    format!("sources[{i}].message_types[{j}]"),
                    format!("no schema for message type {t:?}"),
                ));
            }
        }
        sources.insert(
            s.id.clone(),
            Source {
                id: s.id.clone(),
                allowed: s.message_types.iter().cloned().collect(),
            },
        );
    }

    // Destinations.
    check_unique(
        "destinations",
        raw.destinations.iter().map(|d| d.id.as_str()),
        &mut errors,
    );
    let mut destinations = Vec::new();
    for (i, d) in raw.destinations.iter().enumerate() {
        let path = format!("destinations[{i}]");
        if !valid_id(&d.id) {
            errors.push(ConfigError::new(
                format!("{path}.id"),
                "use lowercase letters, digits, '-' and '_' only",
            ));
        }
        if !adapters.contains(&d.adapter.as_str()) {
            errors.push(ConfigError::new(
                format!("{path}.adapter"),
                format!(
                    "unknown adapter {:?} (known: {})",
                    d.adapter,
                    adapters.join(", ")
                ),
            ));
        }
        if d.concurrency == 0 {
            errors.push(ConfigError::new(
                format!("{path}.concurrency"),
                "must be at least 1",
            ));
        }
        if d.retry.max_attempts == 0 {
            errors.push(ConfigError::new(
                format!("{path}.retry.max_attempts"),
                "must be at least 1",
            ));
        }
        let transport = match (&d.http, &d.amqp) {
            (Some(h), None) => {
                if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                    errors.push(ConfigError::new(
                        format!("{path}.http.url"),
                        "must start with http:// or https://",
                    ));
                }
                if h.timeout_ms == 0 {
                    errors.push(ConfigError::new(
                        format!("{path}.http.timeout_ms"),
                        "must be above 0",
                    ));
                }
                Transport::Http {
                    url: h.url.clone(),
                    timeout_ms: h.timeout_ms,
                }
            }
            (None, Some(a)) => {
                if a.exchange.is_empty() || a.exchange.starts_with("amq.") {
                    errors.push(ConfigError::new(
                        format!("{path}.amqp.exchange"),
                        "name an exchange of your own (not empty, not amq.*)",
                    ));
                }
                Transport::Amqp {
                    exchange: a.exchange.clone(),
                    routing_key: a.routing_key.clone(),
                }
            }
            _ => {
                errors.push(ConfigError::new(
                    path.clone(),
                    "give exactly one transport: [http] or [amqp]",
                ));
                continue;
            }
        };
        destinations.push(Destination {
            id: d.id.clone(),
            adapter: d.adapter.clone(),
            concurrency: d.concurrency,
            transport,
            max_attempts: d.retry.max_attempts,
        });
    }

    // Routes.
    check_unique(
        "routes",
        raw.routes.iter().map(|r| r.name.as_str()),
        &mut errors,
    );
    let dest_index: HashMap<&str, usize> = destinations
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();
    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if r.message_types.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.message_types"),
                "list at least one message type",
            ));
        }
        for (j, t) in r.message_types.iter().enumerate() {
            if !schemas.has_type(t) {
                errors.push(ConfigError::new(
                    format!("{path}.message_types[{j}]"),
                    format!("no schema for message type {t:?}"),
                ));
            }
        }
        if r.destinations.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.destinations"),
                "list at least one destination",
            ));
        }
        let mut dests = Vec::new();
        for (j, d) in r.destinations.iter().enumerate() {
            match dest_index.get(d.as_str()) {
                Some(&idx) => dests.push(idx),
                None => errors.push(ConfigError::new(
                    format!("{path}.destinations[{j}]"),
                    format!("unknown destination {d:?}"),
                )),
            }
        }
        let when = r
            .when
            .iter()
            .enumerate()
            .filter_map(|(j, p)| compile_predicate(&format!("{path}.when[{j}]"), p, &mut errors))
            .collect();
        routes.push(Route {
            name: r.name.clone(),
            message_types: r.message_types.clone(),
            when,
            destinations: dests,
        });
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let names = destinations.iter().map(|d| d.id.clone()).collect();
    Ok(CompiledConfig {
        instance: raw.gateway.instance,
        schemas_dir: raw.gateway.schemas_dir,
        state_dir: raw.gateway.state_dir,
        http_listen: raw.http.listen,
        broker: BrokerSettings {
            url: raw.broker.url,
            prefix: raw.broker.prefix,
            queue_type,
            prefetch: raw.broker.prefetch,
            heartbeat_secs: raw.broker.heartbeat_secs,
            operation_timeout_ms: raw.broker.operation_timeout_ms,
            retry_delays_ms: raw.broker.retry_delays_ms,
            delivery_limit: raw.broker.delivery_limit,
        },
        limits: Limits {
            max_body_bytes: raw.limits.max_body_bytes,
        },
        sources,
        destinations,
        routes: RouteTable::new(routes, names),
        schemas,
    })
}
