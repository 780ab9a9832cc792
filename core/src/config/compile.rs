//! Check the raw config as a whole and compile it into the form the gateway runs with.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::ConfigError;
use super::raw::{RawConfig, RawPredicate};
use crate::adapter::{Adapter, AdapterError, AdapterSet, Canonical, Clearance, Encoded, Inbound};
use crate::envelope::Envelope;
use crate::policy::{self, CLINICAL_ADAPTERS, CLINICAL_FIELDS, MEDICAL_JUSTIFICATION, Selection};
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
    /// Serve plain HTTP on `http_listen` (local development only).
    pub http_plaintext: bool,
    /// Requests without credentials speak for the envelope's source (local development only).
    pub http_anonymous: bool,
    /// HTTPS ingress with mutual TLS, when configured.
    pub tls: Option<TlsSettings>,
    /// The admin listener (audit for compliance; operator endpoints).
    pub admin_listen: String,
    pub admin_users: Vec<AdminUser>,
    pub broker: BrokerSettings,
    pub limits: Limits,
    pub audit: AuditSettings,
    pub retention: Retention,
    /// Where spans go (OTLP over HTTP); `None`: nowhere.
    pub otlp_endpoint: Option<String>,
    pub sources: HashMap<String, Source>,
    /// In config order; a route table index refers to this list.
    pub destinations: Vec<Destination>,
    pub routes: RouteTable,
    pub schemas: SchemaCatalog,
    /// Every adapter this config may name: built-in and declared in its directory.
    pub adapters: AdapterSet,
}

/// Stands in for an adapter the config names but nobody provides, so that checking can go on
/// and report every problem; a config with one never compiles.
#[derive(Debug)]
struct Missing;

impl Adapter for Missing {
    fn name(&self) -> &str {
        "missing"
    }
    fn content_types(&self) -> &[&'static str] {
        &[]
    }
    fn message_types(&self) -> Vec<&str> {
        Vec::new()
    }
    fn decode(&self, _: Inbound<'_>) -> Result<Envelope, AdapterError> {
        Err(AdapterError::Refused("no such adapter".into()))
    }
    fn encode<'a>(&self, _: Canonical<'a>, _: Option<&str>) -> Result<Encoded<'a>, AdapterError> {
        Err(AdapterError::Encode("no such adapter".into()))
    }
}

fn missing() -> Arc<dyn Adapter> {
    Arc::new(Missing)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Quorum,
    Classic,
}

#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The first node's URL.
    pub url: String,
    /// Every node's URL (at least one), tried in turn on reconnect.
    pub urls: Vec<String>,
    /// The broker's CA certificate (PEM) for `amqps://`, read by the shell from `ca_file`.
    pub ca_pem: Option<String>,
    pub prefix: String,
    pub queue_type: QueueType,
    pub prefetch: u16,
    pub heartbeat_secs: u16,
    pub operation_timeout_ms: u64,
    pub retry_delays_ms: Vec<u64>,
    pub delivery_limit: u32,
}

/// How long parked payload copies are kept, per message type.
#[derive(Debug, Clone)]
pub struct Retention {
    pub parked_secs: u64,
    pub parked_secs_by_type: HashMap<String, u64>,
    /// The deduplication window: receipts older than this are pruned.
    pub receipts_secs: u64,
    /// Delivery states of copies accepted longer ago than this are pruned (≤ `receipts_secs`).
    pub deliveries_secs: u64,
    /// Archived audit records older than this leave the live store.
    pub audit_live_secs: u64,
}

impl Retention {
    /// Milliseconds a parked copy of this type is kept.
    pub fn parked_ms(&self, message_type: &str) -> u64 {
        self.parked_secs_by_type
            .get(message_type)
            .copied()
            .unwrap_or(self.parked_secs)
            .saturating_mul(1000)
    }

    /// The longest any parked copy is kept.
    pub fn parked_max_secs(&self) -> u64 {
        self.parked_secs_by_type
            .values()
            .copied()
            .fold(self.parked_secs, u64::max)
    }
}

/// Audit settings as written; the shell resolves the key files.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// `None`: SQLite in state_dir; `Some(url)`: PostgreSQL.
    pub store: Option<String>,
    pub suite: crate::audit::Suite,
    pub signing_key_file: Option<String>,
    pub subject_key_file: Option<String>,
    pub payload_key_file: Option<String>,
    pub tsa_url: Option<String>,
    pub tsa_cert_file: Option<String>,
    pub tsa_every_secs: u64,
    pub checkpoint_every: u64,
    pub checkpoint_secs: u64,
    /// As configured (the shell resolves it; default under the state directory).
    pub archive_dir: Option<String>,
    pub archive_records: u64,
    pub archive_secs: u64,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub json: crate::json::JsonLimits,
}

/// Paths as written (relative to the config file); the shell resolves and reads them.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub listen: String,
    pub cert_file: String,
    pub key_file: String,
    pub client_ca_file: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Routes, destinations, dead letters, reload.
    Operator,
    /// The audit trail.
    Compliance,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Compliance => "compliance",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminUser {
    pub name: String,
    pub role: Role,
    pub token_sha256: [u8; 32],
    pub payloads: bool,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub allowed: HashSet<String>,
    /// Decodes the source's own format on `/v1/sources/{id}/messages`.
    pub adapter: String,
    /// The adapter named by `adapter`, resolved when the config compiled.
    pub codec: Arc<dyn Adapter>,
    /// Client-certificate identities that authenticate as this source.
    pub identities: Vec<String>,
    /// SHA-256 of the bearer tokens that authenticate as this source.
    pub tokens_sha256: Vec<[u8; 32]>,
    /// Broker users that may speak for this source on the AMQP ingress.
    pub amqp_users: Vec<String>,
    pub rate_per_sec: u32,
    pub burst: u32,
    pub max_body_bytes: usize,
}

impl CompiledConfig {
    /// The source a client-certificate identity names.
    pub fn source_for_identity<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Option<&Source> {
        let names: Vec<&str> = names.into_iter().collect();
        let mut ids: Vec<&String> = self.sources.keys().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| &self.sources[id])
            .find(|s| s.identities.iter().any(|i| names.contains(&i.as_str())))
    }

    /// The source whose token has this SHA-256, compared in constant time against every
    /// configured hash (no early exit that would tell how much of a hash matched).
    pub fn source_for_token(&self, token_sha256: &[u8; 32]) -> Option<&Source> {
        let mut found = None;
        for s in self.sources.values() {
            for h in &s.tokens_sha256 {
                if constant_time_eq(h, token_sha256) {
                    found = Some(s);
                }
            }
        }
        found
    }

    /// The admin user whose token has this SHA-256 (constant-time comparisons).
    pub fn admin_for_token(&self, token_sha256: &[u8; 32]) -> Option<&AdminUser> {
        let mut found = None;
        for u in &self.admin_users {
            if constant_time_eq(&u.token_sha256, token_sha256) {
                found = Some(u);
            }
        }
        found
    }
}

/// Equal without a data-dependent early exit.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parse a 64-digit hex SHA-256.
fn sha256_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[derive(Debug, Clone)]
pub struct Destination {
    pub id: String,
    pub adapter: String,
    /// The adapter named by `adapter`, resolved when the config compiled.
    pub codec: Arc<dyn Adapter>,
    pub concurrency: u16,
    pub transport: Transport,
    pub max_attempts: u32,
    /// The adapter representation to send; `None` is the adapter's default.
    pub content_type: Option<String>,
    /// Field policy per message type (deny by default: a type without an entry gets nothing,
    /// and the checker makes sure every type routed here has one).
    pub fields: HashMap<String, Selection>,
}

impl Destination {
    /// The field policy for a message type; `None` when the destination may not receive it.
    pub fn policy(&self, message_type: &str) -> Option<&Selection> {
        self.fields.get(message_type)
    }

    /// Whether each message is published to this partner once (`amqp.once`).
    pub fn delivers_once(&self) -> bool {
        matches!(self.transport, Transport::Amqp { once: true, .. })
    }
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
        /// Published once (through the destination's queue, in a transaction with the
        /// copy's ack) rather than at intake: for partners that cannot deduplicate.
        once: bool,
    },
}

/// An id as config names things (sources, destinations, declared adapters): 1–64 lowercase
/// letters, digits, '-' and '_'.
pub fn valid_id(id: &str) -> bool {
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

/// Check one destination's field policy: known message types, fields the type's schema
/// defines, and the clinical rules of [`policy`] whatever the operator wrote.
fn compile_fields(
    path: &str,
    d: &super::raw::RawDestination,
    adapter: Option<&Arc<dyn Adapter>>,
    schemas: &SchemaCatalog,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, Selection> {
    let mut out = HashMap::new();
    for (t, paths) in &d.fields {
        let fpath = format!("{path}.fields.\"{t}\"");
        let Some(schema) = schemas.payload_schema(t) else {
            errors.push(ConfigError::new(
                fpath,
                format!("no schema for message type {t:?}"),
            ));
            continue;
        };
        if paths.is_empty() {
            errors.push(ConfigError::new(
                &fpath,
                "list at least one field (or \"*\")",
            ));
        }
        for (k, p) in paths.iter().enumerate() {
            if p != "*" && !policy::schema_has_path(schema, p) {
                errors.push(ConfigError::new(
                    format!("{fpath}[{k}]"),
                    format!("{t:?} has no field {p:?}"),
                ));
            }
        }
        let selection = Selection::from_paths(paths);
        if let Some(a) = adapter {
            let names = policy::schema_field_names(schema);
            let carried = |f: &str| names.iter().any(|n| n == f) && selection.may_carry(f);
            let clearance = a.clearance();
            if clearance != Clearance::Clinical {
                for f in CLINICAL_FIELDS {
                    if carried(f) {
                        errors.push(ConfigError::new(
                            &fpath,
                            format!(
                                "clinical field {f:?} may go only to clinical adapters ({} and declared ones with clearance = \"clinical\"), not to {:?}",
                                CLINICAL_ADAPTERS.join(", "),
                                a.name()
                            ),
                        ));
                    }
                }
                if clearance != Clearance::MedicalJustification && carried(MEDICAL_JUSTIFICATION) {
                    errors.push(ConfigError::new(
                        &fpath,
                        format!(
                            "{MEDICAL_JUSTIFICATION:?} may go only to clinical adapters and police, not to {:?}",
                            a.name()
                        ),
                    ));
                }
            }
        }
        out.insert(t.clone(), selection);
    }
    out
}

/// Check everything and build the compiled config. `adapters` are every adapter the config
/// may name (built-in and declared). Every problem is reported, not just the first.
pub fn compile(
    raw: RawConfig,
    schemas: SchemaCatalog,
    adapters: AdapterSet,
) -> Result<CompiledConfig, Vec<ConfigError>> {
    let adapter = |name: &str| adapters.get(name);
    let adapter_names = || adapters.names().collect::<Vec<_>>().join(", ");
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
    if let Some(url) = &raw.audit.store
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        errors.push(ConfigError::new(
            "audit.store",
            "give a postgres:// URL, or leave it out for the embedded store",
        ));
    }
    if raw.audit.archive_records == 0 || raw.audit.archive_secs == 0 {
        errors.push(ConfigError::new(
            "audit",
            "archive_records and archive_secs must be above 0",
        ));
    }
    if raw.retention.audit_live_secs == 0 {
        errors.push(ConfigError::new(
            "retention.audit_live_secs",
            "must be above 0",
        ));
    }
    if let Some(url) = &raw.telemetry.otlp_endpoint
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        errors.push(ConfigError::new(
            "telemetry.otlp_endpoint",
            "must be an http:// or https:// URL (OTLP over HTTP)",
        ));
    }
    if let Some(url) = &raw.audit.tsa_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(ConfigError::new(
                "audit.tsa_url",
                "must be an http:// or https:// URL",
            ));
        }
        if raw.audit.tsa_cert_file.is_none() {
            errors.push(ConfigError::new(
                "audit.tsa_cert_file",
                "is required with tsa_url: the TSA's certificate, to check its tokens",
            ));
        }
        if raw.audit.tsa_every_secs == 0 {
            errors.push(ConfigError::new("audit.tsa_every_secs", "must be above 0"));
        }
    }
    if raw.audit.checkpoint_every == 0 || raw.audit.checkpoint_secs == 0 {
        errors.push(ConfigError::new(
            "audit",
            "checkpoint_every and checkpoint_secs must be above 0",
        ));
    }
    for (t, secs) in &raw.retention.parked_secs_by_type {
        if !schemas.has_type(t) {
            errors.push(ConfigError::new(
                format!("retention.parked_secs_by_type.\"{t}\""),
                format!("no schema for message type {t:?}"),
            ));
        }
        if *secs == 0 {
            errors.push(ConfigError::new(
                format!("retention.parked_secs_by_type.\"{t}\""),
                "must be above 0",
            ));
        }
    }
    if raw.retention.parked_secs == 0 {
        errors.push(ConfigError::new("retention.parked_secs", "must be above 0"));
    }
    if raw.retention.receipts_secs == 0 {
        errors.push(ConfigError::new(
            "retention.receipts_secs",
            "must be above 0: it is the deduplication window",
        ));
    }
    match raw.retention.deliveries_secs {
        Some(d) if d == 0 || d > raw.retention.receipts_secs => {
            errors.push(ConfigError::new(
                "retention.deliveries_secs",
                "must be above 0 and at most receipts_secs (a state is read through its receipt)",
            ));
        }
        _ => {}
    }
    if raw.limits.max_body_bytes < 256 {
        errors.push(ConfigError::new(
            "limits.max_body_bytes",
            "must be at least 256",
        ));
    }
    if !(2..=1024).contains(&raw.limits.max_json_depth) {
        errors.push(ConfigError::new(
            "limits.max_json_depth",
            "must be between 2 and 1024",
        ));
    }
    if raw.limits.max_string_bytes < 64 {
        errors.push(ConfigError::new(
            "limits.max_string_bytes",
            "must be at least 64",
        ));
    }
    if raw.limits.rate_per_sec == 0 || raw.limits.burst == 0 {
        errors.push(ConfigError::new(
            "limits",
            "rate_per_sec and burst must be above 0",
        ));
    }

    // Admin users.
    check_unique(
        "admin.users",
        raw.admin.users.iter().map(|u| u.name.as_str()),
        &mut errors,
    );
    let mut admin_users = Vec::new();
    for (i, u) in raw.admin.users.iter().enumerate() {
        let role = match u.role.as_str() {
            "operator" => Role::Operator,
            "compliance" => Role::Compliance,
            other => {
                errors.push(ConfigError::new(
                    format!("admin.users[{i}].role"),
                    format!("{other:?} is not one of operator, compliance"),
                ));
                Role::Operator
            }
        };
        match sha256_hex(&u.token_sha256) {
            Some(token_sha256) => admin_users.push(AdminUser {
                name: u.name.clone(),
                role,
                token_sha256,
                payloads: u.payloads,
            }),
            None => errors.push(ConfigError::new(
                format!("admin.users[{i}].token_sha256"),
                "must be a SHA-256 in hex (64 digits)",
            )),
        }
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
        let source_adapter = adapter(&s.adapter);
        if source_adapter.is_none() {
            errors.push(ConfigError::new(
                format!("sources[{i}].adapter"),
                format!(
                    "unknown adapter {:?} (known: {})",
                    s.adapter,
                    adapter_names()
                ),
            ));
        }
        for (j, t) in s.message_types.iter().enumerate() {
            if !schemas.has_type(t) {
                errors.push(ConfigError::new(
                    format!("sources[{i}].message_types[{j}]"),
                    format!("no schema for message type {t:?}"),
                ));
            } else if let Some(a) = source_adapter
                && !a.message_types().contains(&t.as_str())
            {
                errors.push(ConfigError::new(
                    format!("sources[{i}].message_types[{j}]"),
                    format!("adapter {:?} cannot decode {t:?}", a.name()),
                ));
            }
        }
        let mut tokens_sha256 = Vec::new();
        for (j, t) in s.tokens_sha256.iter().enumerate() {
            match sha256_hex(t) {
                Some(h) => tokens_sha256.push(h),
                None => errors.push(ConfigError::new(
                    format!("sources[{i}].tokens_sha256[{j}]"),
                    "must be a SHA-256 in hex (64 digits)",
                )),
            }
        }
        let (rate_per_sec, burst) = (
            s.rate_per_sec.unwrap_or(raw.limits.rate_per_sec),
            s.burst.unwrap_or(raw.limits.burst),
        );
        if rate_per_sec == 0 || burst == 0 {
            errors.push(ConfigError::new(
                format!("sources[{i}]"),
                "rate_per_sec and burst must be above 0",
            ));
        }
        let or_id = |v: &Vec<String>| {
            if v.is_empty() {
                vec![s.id.clone()]
            } else {
                v.clone()
            }
        };
        sources.insert(
            s.id.clone(),
            Source {
                id: s.id.clone(),
                allowed: s.message_types.iter().cloned().collect(),
                adapter: s.adapter.clone(),
                codec: source_adapter.cloned().unwrap_or_else(missing),
                identities: or_id(&s.identities),
                tokens_sha256,
                amqp_users: or_id(&s.amqp_users),
                rate_per_sec,
                burst,
                max_body_bytes: s.max_body_bytes.unwrap_or(raw.limits.max_body_bytes),
            },
        );
    }

    // No identity or token may name two sources.
    let mut claimed: HashMap<&str, &str> = HashMap::new();
    let mut tokens: HashMap<[u8; 32], &str> = HashMap::new();
    for (i, s) in raw.sources.iter().enumerate() {
        let Some(compiled) = sources.get(&s.id) else {
            continue;
        };
        for name in &compiled.identities {
            if let Some(other) = claimed.insert(name.as_str(), s.id.as_str())
                && other != s.id
            {
                errors.push(ConfigError::new(
                    format!("sources[{i}].identities"),
                    format!("identity {name:?} already authenticates source {other:?}"),
                ));
            }
        }
        for h in &compiled.tokens_sha256 {
            if let Some(other) = tokens.insert(*h, s.id.as_str())
                && other != s.id
            {
                errors.push(ConfigError::new(
                    format!("sources[{i}].tokens_sha256"),
                    format!("a token already authenticates source {other:?}"),
                ));
            }
        }
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
        let dest_adapter = adapter(&d.adapter);
        if dest_adapter.is_none() {
            errors.push(ConfigError::new(
                format!("{path}.adapter"),
                format!(
                    "unknown adapter {:?} (known: {})",
                    d.adapter,
                    adapter_names()
                ),
            ));
        }
        if let (Some(ct), Some(a)) = (&d.content_type, dest_adapter)
            && !a.content_types().contains(&ct.as_str())
        {
            errors.push(ConfigError::new(
                format!("{path}.content_type"),
                format!(
                    "adapter {:?} writes {}, not {ct:?}",
                    a.name(),
                    a.content_types().join(", ")
                ),
            ));
        }
        let fields = compile_fields(&path, d, dest_adapter, &schemas, &mut errors);
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
                    once: a.once,
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
            codec: dest_adapter.cloned().unwrap_or_else(missing),
            concurrency: d.concurrency,
            transport,
            max_attempts: d.retry.max_attempts,
            content_type: d.content_type.clone(),
            fields,
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
                Some(&idx) => {
                    let dest = &destinations[idx];
                    for t in &r.message_types {
                        if !schemas.has_type(t) {
                            continue;
                        }
                        if dest.policy(t).is_none() {
                            errors.push(ConfigError::new(
                                format!("{path}.destinations[{j}]"),
                                format!(
                                    "destination {d:?} has no field policy for {t:?}: add fields.\"{t}\" to it"
                                ),
                            ));
                        }
                        if let Some(a) = adapter(&dest.adapter)
                            && !a.message_types().contains(&t.as_str())
                        {
                            errors.push(ConfigError::new(
                                format!("{path}.destinations[{j}]"),
                                format!("adapter {:?} of {d:?} cannot encode {t:?}", a.name()),
                            ));
                        }
                    }
                    dests.push(idx);
                }
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
        http_plaintext: raw.http.plaintext,
        http_anonymous: raw.http.anonymous,
        tls: raw.tls.map(|t| TlsSettings {
            listen: t.listen,
            cert_file: t.cert_file,
            key_file: t.key_file,
            client_ca_file: t.client_ca_file,
        }),
        admin_listen: raw.admin.listen,
        admin_users,
        broker: BrokerSettings {
            urls: if raw.broker.urls.is_empty() {
                vec![raw.broker.url.clone()]
            } else {
                raw.broker.urls.clone()
            },
            url: raw.broker.urls.first().cloned().unwrap_or(raw.broker.url),
            ca_pem: None,
            prefix: raw.broker.prefix,
            queue_type,
            prefetch: raw.broker.prefetch,
            heartbeat_secs: raw.broker.heartbeat_secs,
            operation_timeout_ms: raw.broker.operation_timeout_ms,
            retry_delays_ms: raw.broker.retry_delays_ms,
            delivery_limit: raw.broker.delivery_limit,
        },
        retention: Retention {
            parked_secs: raw.retention.parked_secs,
            parked_secs_by_type: raw.retention.parked_secs_by_type.into_iter().collect(),
            receipts_secs: raw.retention.receipts_secs,
            deliveries_secs: raw
                .retention
                .deliveries_secs
                .unwrap_or(raw.retention.receipts_secs),
            audit_live_secs: raw.retention.audit_live_secs,
        },
        otlp_endpoint: raw.telemetry.otlp_endpoint.clone(),
        audit: AuditSettings {
            store: raw.audit.store.clone(),
            suite: raw.audit.suite,
            signing_key_file: raw.audit.signing_key_file,
            subject_key_file: raw.audit.subject_key_file,
            payload_key_file: raw.audit.payload_key_file,
            tsa_url: raw.audit.tsa_url.clone(),
            tsa_cert_file: raw.audit.tsa_cert_file.clone(),
            tsa_every_secs: raw.audit.tsa_every_secs,
            checkpoint_every: raw.audit.checkpoint_every,
            checkpoint_secs: raw.audit.checkpoint_secs,
            archive_dir: raw.audit.archive_dir.clone(),
            archive_records: raw.audit.archive_records,
            archive_secs: raw.audit.archive_secs,
        },
        limits: Limits {
            max_body_bytes: raw.limits.max_body_bytes,
            json: crate::json::JsonLimits {
                max_depth: raw.limits.max_json_depth,
                max_string_bytes: raw.limits.max_string_bytes,
            },
        },
        sources,
        destinations,
        routes: RouteTable::new(routes, names),
        schemas,
        adapters,
    })
}
