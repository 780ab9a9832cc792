//! The config as written in TOML. Every struct refuses unknown keys, so a typo is an error
//! rather than a silently ignored setting.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub gateway: RawGateway,
    #[serde(default)]
    pub http: RawHttp,
    /// HTTPS ingress (mutual TLS); absent: no HTTPS listener.
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub broker: RawBroker,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub retention: RawRetention,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// Systems allowed to send to the gateway.
    #[serde(default)]
    pub sources: Vec<RawSource>,
    /// Systems the gateway delivers to.
    #[serde(default)]
    pub destinations: Vec<RawDestination>,
    /// Which messages go where.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// Name of this gateway instance (defaults to `gw-1`).
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Directory holding `v<major>/<type>.schema.json`, relative to the config file.
    #[serde(default = "default_schemas_dir")]
    pub schemas_dir: String,
    /// Directory for the gateway's local state (receipts, delivery status), relative to the config file.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// Directory of declared adapters (`<name>/adapter.toml`, `decode.vrl`, `encode.vrl`),
    /// relative to the config file; absent or empty: built-in adapters only.
    #[serde(default = "default_adapters_dir")]
    pub adapters_dir: String,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self {
            instance: default_instance(),
            schemas_dir: default_schemas_dir(),
            state_dir: default_state_dir(),
            adapters_dir: default_adapters_dir(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Address of the plain-HTTP ingress listener.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Serve plain HTTP at all: for local development only (a warning at start).
    #[serde(default)]
    pub plaintext: bool,
    /// Requests without credentials speak for the envelope's source: for local development
    /// only (a warning at start). Credentials, when given, are still checked.
    #[serde(default)]
    pub anonymous: bool,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            plaintext: false,
            anonymous: false,
        }
    }
}

/// HTTPS ingress with rustls. Sources present client certificates issued by `client_ca_file`;
/// partners that cannot do mutual TLS may connect without one and send a bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default = "default_tls_listen")]
    pub listen: String,
    /// The server's certificate chain (PEM), relative to the config file.
    pub cert_file: String,
    /// The server's private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key_file: String,
    /// The CA (PEM) that issues the sources' client certificates.
    pub client_ca_file: String,
}

fn default_tls_listen() -> String {
    "127.0.0.1:8443".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBroker {
    /// AMQP URL (`amqps://` for TLS); the environment variable `WINGSPAN_AMQP_URL` overrides
    /// it, and so does the content of `url_file`.
    #[serde(default = "default_amqp_url")]
    pub url: String,
    /// Several nodes of one cluster, tried in turn (from the one after the node that failed);
    /// when given, `url` is not used. `WINGSPAN_AMQP_URL` may hold them comma-separated.
    #[serde(default)]
    pub urls: Vec<String>,
    /// A file holding the URL, credentials and all (relative to the config file), so that
    /// they stay out of the config; `WINGSPAN_AMQP_URL_FILE` names one too.
    pub url_file: Option<String>,
    /// The CA (PEM) that issued the broker's certificate, for `amqps://` (relative to the
    /// config file); default: the public web PKI roots.
    pub ca_file: Option<String>,
    /// Prefix of every queue and exchange the gateway declares.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// `quorum` (default, replicated) or `classic`.
    #[serde(default = "default_queue_type")]
    pub queue_type: String,
    /// Unacknowledged deliveries per consumer.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// AMQP heartbeat in seconds: a silent broker is declared dead after about twice this.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u16,
    /// Bound on every single broker operation (connect, declare, publish confirm).
    #[serde(default = "default_op_timeout")]
    pub operation_timeout_ms: u64,
    /// Delay of each retry tier; attempt n waits `retry_delays_ms[min(n-1, last)]`.
    #[serde(default = "default_retry_delays")]
    pub retry_delays_ms: Vec<u64>,
    /// Redeliveries after which a quorum queue dead-letters a message that keeps crashing its consumer.
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
}

impl Default for RawBroker {
    fn default() -> Self {
        Self {
            url: default_amqp_url(),
            urls: Vec::new(),
            url_file: None,
            ca_file: None,
            prefix: default_prefix(),
            queue_type: default_queue_type(),
            prefetch: default_prefetch(),
            heartbeat_secs: default_heartbeat(),
            operation_timeout_ms: default_op_timeout(),
            retry_delays_ms: default_retry_delays(),
            delivery_limit: default_delivery_limit(),
        }
    }
}

/// How long payload copies are kept. The audit trail (hashes and metadata) is kept for
/// years; the only payload copies the gateway holds are parked messages (for inspection and
/// replay), and they expire much sooner, per message type.
/// Traces exported over OTLP. Absent (the default): nothing is exported and no exporter runs;
/// trace context is still read from upstream, kept in the audit records and passed on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// The collector's OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`
    /// (a URL with no path gets `/v1/traces`). Spans are sent as protobuf, in batches.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Seconds a parked copy is kept (default 30 days).
    #[serde(default = "default_parked_secs")]
    pub parked_secs: u64,
    /// Per message type, overriding `parked_secs`.
    #[serde(default)]
    pub parked_secs_by_type: std::collections::BTreeMap<String, u64>,
    /// Seconds a receipt is kept (default 30 days): the deduplication window. Within it a
    /// message sent again is answered with its original receipt; after it, the same id is a
    /// new message.
    #[serde(default = "default_window_secs")]
    pub receipts_secs: u64,
    /// Seconds a copy's delivery state is kept (default: as long as receipts); at most
    /// `receipts_secs`. A parked copy's state is kept while the copy may still be parked.
    #[serde(default)]
    pub deliveries_secs: Option<u64>,
    /// Seconds an audit record stays in the live store once it is archived (default 30
    /// days); after that `audit trail` and `search` read it from the archive.
    #[serde(default = "default_window_secs")]
    pub audit_live_secs: u64,
}

impl Default for RawRetention {
    fn default() -> Self {
        Self {
            parked_secs: default_parked_secs(),
            parked_secs_by_type: Default::default(),
            receipts_secs: default_window_secs(),
            deliveries_secs: None,
            audit_live_secs: default_window_secs(),
        }
    }
}

fn default_window_secs() -> u64 {
    30 * 24 * 3600
}

fn default_parked_secs() -> u64 {
    30 * 24 * 3600
}

/// The admin listener (compliance and operator endpoints): separate from ingress and
/// bound to localhost by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Who may use the admin listener; nobody when empty.
    #[serde(default)]
    pub users: Vec<RawAdminUser>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            users: Vec::new(),
        }
    }
}

/// One admin credential: a bearer token (stored as its SHA-256) with one role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminUser {
    /// Recorded as the actor of what this user does.
    pub name: String,
    /// `operator` (routes, destinations, dead letters, reload) or `compliance` (audit).
    pub role: String,
    /// SHA-256 of the bearer token, hex.
    pub token_sha256: String,
    /// May see message payloads (dead letters); default no.
    #[serde(default)]
    pub payloads: bool,
}

fn default_admin_listen() -> String {
    "127.0.0.1:8081".into()
}

/// The audit trail: where its keys are and how often the chain head is signed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Where the audit trail lives: absent for the embedded SQLite store (in state_dir), or a
    /// `postgres://` URL for a store several instances share. `WINGSPAN_AUDIT_STORE` overrides.
    pub store: Option<String>,
    /// The algorithms of the chain: `sha256-ed25519` (default) or `sm3-sm2` (SM3 hashes,
    /// HMAC-SM3 subject references, SM2 signatures: GB/T 32905, GB/T 32918). Chosen when a
    /// chain starts; a store whose chain has another suite refuses to open.
    #[serde(default)]
    pub suite: crate::audit::Suite,
    /// File holding the signing key's 32-byte secret as hex (an Ed25519 seed, or an SM2
    /// private key under `sm3-sm2`; relative to the config);
    /// default `<state_dir>/audit-signing.key`, created on first start.
    /// `WINGSPAN_AUDIT_SIGNING_KEY` (hex) overrides it.
    pub signing_key_file: Option<String>,
    /// File holding the secret for subject references (HMAC of person ids); default
    /// `<state_dir>/audit-subject.key`, created on first start. `WINGSPAN_AUDIT_SUBJECT_KEY`
    /// overrides it.
    pub subject_key_file: Option<String>,
    /// Subject keys rotated away from (files, relative to the config), newest first: new
    /// references are made under `subject_key_file` only, and a search by person (or a
    /// subject access report) also finds the records made under these.
    #[serde(default)]
    pub previous_subject_key_files: Vec<String>,
    /// With a file named here (relative to the config; created on first start), the payload
    /// copies the gateway queues for its workers — retries and parked copies included — are
    /// sealed at rest: AES-256-GCM (32-byte key), or SM4-GCM (16-byte key) under `sm3-sm2`.
    /// `WINGSPAN_PAYLOAD_KEY` (hex) overrides it. Every instance sharing the queues needs
    /// the same key.
    pub payload_key_file: Option<String>,
    /// An RFC 3161 time-stamping authority (`http://` or `https://`): the latest checkpoint is
    /// time-stamped every `tsa_every_secs`, the tokens kept beside the checkpoints and
    /// checked by `audit verify` under `tsa_cert_file` (the TSA's certificate, PEM or DER,
    /// relative to the config), which it requires.
    pub tsa_url: Option<String>,
    pub tsa_cert_file: Option<String>,
    #[serde(default = "default_tsa_every_secs")]
    pub tsa_every_secs: u64,
    /// Sign the chain head after this many records…
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// …or this many seconds, whichever comes first.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// Where sealed segments of the chain are archived (relative to the config); default
    /// `<state_dir>/audit-archive`. Embedded (SQLite) store only.
    pub archive_dir: Option<String>,
    /// Seal a segment once this many records wait to be archived…
    #[serde(default = "default_archive_records")]
    pub archive_records: u64,
    /// …or once the oldest of them is this many seconds old.
    #[serde(default = "default_archive_secs")]
    pub archive_secs: u64,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            store: None,
            suite: crate::audit::Suite::default(),
            signing_key_file: None,
            subject_key_file: None,
            previous_subject_key_files: Vec::new(),
            payload_key_file: None,
            tsa_url: None,
            tsa_cert_file: None,
            tsa_every_secs: default_tsa_every_secs(),
            checkpoint_every: default_checkpoint_every(),
            checkpoint_secs: default_checkpoint_secs(),
            archive_dir: None,
            archive_records: default_archive_records(),
            archive_secs: default_archive_secs(),
        }
    }
}

fn default_archive_records() -> u64 {
    1_000_000
}

fn default_archive_secs() -> u64 {
    24 * 3600
}

fn default_tsa_every_secs() -> u64 {
    300
}

fn default_checkpoint_every() -> u64 {
    1000
}

fn default_checkpoint_secs() -> u64 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest accepted message body in bytes (a source may lower or raise its own).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Deepest accepted nesting of JSON arrays and objects.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Longest accepted JSON string or key, in bytes.
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Messages per second a source may post over HTTP (a source may set its own).
    #[serde(default = "default_rate")]
    pub rate_per_sec: u32,
    /// Messages a source may post at once above its rate.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            max_json_depth: default_max_json_depth(),
            max_string_bytes: default_max_string_bytes(),
            rate_per_sec: default_rate(),
            burst: default_burst(),
        }
    }
}

fn default_max_json_depth() -> usize {
    64
}
fn default_max_string_bytes() -> usize {
    65_536
}
fn default_rate() -> u32 {
    500
}
fn default_burst() -> u32 {
    1_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Source id; must equal the envelope's `source`.
    pub id: String,
    /// Message types this source may send.
    pub message_types: Vec<String>,
    /// The adapter that decodes what this source posts in its own format to
    /// `/v1/sources/{id}/messages` (canonical JSON on `/v1/messages` needs none).
    #[serde(default = "default_adapter")]
    pub adapter: String,
    /// Client-certificate identities (a SAN DNS name or URI, or the subject CN) that
    /// authenticate as this source; default: the source id.
    #[serde(default)]
    pub identities: Vec<String>,
    /// SHA-256 (hex) of bearer tokens that authenticate as this source, for partners that
    /// cannot do mutual TLS.
    #[serde(default)]
    pub tokens_sha256: Vec<String>,
    /// Broker users whose messages (AMQP `user_id`, checked by the broker) may speak for this
    /// source on the AMQP ingress; default: the source id.
    #[serde(default)]
    pub amqp_users: Vec<String>,
    /// Overrides `limits.rate_per_sec` for this source.
    pub rate_per_sec: Option<u32>,
    /// Overrides `limits.burst` for this source.
    pub burst: Option<u32>,
    /// Overrides `limits.max_body_bytes` for this source.
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    /// Destination id (lowercase letters, digits, `-`, `_`); names its queues.
    pub id: String,
    /// Adapter that encodes the canonical message for this partner.
    pub adapter: String,
    /// Deliveries in flight at once to this destination.
    #[serde(default = "default_concurrency")]
    pub concurrency: u16,
    /// Deliver by HTTP POST.
    pub http: Option<RawHttpTransport>,
    /// Deliver by AMQP publish (confirmed, mandatory) to an exchange on the gateway's broker.
    pub amqp: Option<RawAmqpTransport>,
    #[serde(default)]
    pub retry: RawRetry,
    /// Which of the adapter's representations to send (FHIR JSON or XML); default the first.
    pub content_type: Option<String>,
    /// Field policy: message type → payload fields this destination may receive
    /// (dotted paths, or `["*"]` for everything). A type routed here must be listed.
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpTransport {
    /// `http://` or `https://` URL the message is POSTed to.
    pub url: String,
    /// Whole-request timeout in milliseconds.
    #[serde(default = "default_http_timeout")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAmqpTransport {
    /// Exchange to publish to (declared durable `direct` if missing).
    pub exchange: String,
    /// Routing key to publish with.
    pub routing_key: String,
    /// Publish each message to the partner once, for a partner that cannot deduplicate by
    /// `message_id`: the copy goes through the destination's queue and is published with its
    /// acknowledgement in one AMQP transaction (see docs/ARCHITECTURE.md, "Delivered once").
    #[serde(default)]
    pub once: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Delivery attempts before a message is parked (dead-lettered) with its last error.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Route name, unique; reported in receipts and explanations.
    pub name: String,
    /// Message types this route applies to.
    pub message_types: Vec<String>,
    /// Predicates that must all hold.
    #[serde(default)]
    pub when: Vec<RawPredicate>,
    /// Destinations a matching message goes to.
    pub destinations: Vec<String>,
}

/// `field` is a header name (`source`, `message_type`, …) or a JSON pointer into the payload
/// (`/payload/residence/division_code`); exactly one operator is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPredicate {
    pub field: String,
    pub equals: Option<String>,
    pub prefix: Option<String>,
    pub one_of: Option<Vec<String>>,
    pub exists: Option<bool>,
}

fn default_instance() -> String {
    "gw-1".into()
}
fn default_schemas_dir() -> String {
    "../schemas".into()
}
fn default_adapters_dir() -> String {
    "adapters".into()
}
fn default_state_dir() -> String {
    "../var".into()
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_amqp_url() -> String {
    "amqp://guest:guest@127.0.0.1:5672/%2f".into()
}
fn default_prefix() -> String {
    "wingspan".into()
}
fn default_queue_type() -> String {
    "quorum".into()
}
fn default_prefetch() -> u16 {
    256
}
fn default_heartbeat() -> u16 {
    10
}
fn default_op_timeout() -> u64 {
    5_000
}
fn default_retry_delays() -> Vec<u64> {
    vec![1_000, 5_000, 30_000, 120_000, 600_000]
}
fn default_delivery_limit() -> u32 {
    20
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_concurrency() -> u16 {
    8
}
fn default_http_timeout() -> u64 {
    10_000
}
fn default_max_attempts() -> u32 {
    8
}

fn default_adapter() -> String {
    "rehab".into()
}
