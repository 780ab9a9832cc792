//! The ingress pipeline as one pure function: bytes → admitted message or typed rejection.
//! Order: size → encoding → strict JSON (no duplicate keys, bounded depth and strings) →
//! envelope shape → sender is the envelope's source → source and type authorization →
//! payload schema → route decision.

use serde::Serialize;
use serde_json::Value;

use crate::config::CompiledConfig;
use crate::envelope::Envelope;
use crate::json::JsonError;
use crate::route::Decision;
use crate::schema::{PayloadError, Violation};

/// A message that passed every check, with its route decision.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub envelope: Envelope,
    /// Indices into the config's destinations, each once.
    pub destinations: Vec<usize>,
    /// Indices of the routes that matched.
    pub routes: Vec<usize>,
}

/// Why a message was refused. Each kind has a stable problem type, an HTTP status and a title.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectionKind {
    TooLarge,
    Malformed,
    /// Not UTF-8, or a byte-order mark before the JSON.
    InvalidEncoding,
    /// One object names the same key twice: two readers could disagree on its value.
    DuplicateKey,
    TooDeep,
    StringTooLong,
    InvalidEnvelope,
    /// The transport did not say who sent it (an AMQP message without `user_id`).
    Unauthenticated,
    UnknownSource,
    /// The envelope's source is not the authenticated sender: no source speaks for another.
    SourceMismatch,
    TypeNotAllowed,
    UnknownMessageType,
    UnsupportedSchemaVersion,
    SchemaViolation,
    NoRoute,
}

impl RejectionKind {
    /// Stable slug, used in the problem `type` URI and as a metric label.
    pub fn slug(self) -> &'static str {
        match self {
            Self::TooLarge => "too-large",
            Self::Malformed => "malformed",
            Self::InvalidEncoding => "invalid-encoding",
            Self::DuplicateKey => "duplicate-key",
            Self::TooDeep => "too-deep",
            Self::StringTooLong => "string-too-long",
            Self::InvalidEnvelope => "invalid-envelope",
            Self::Unauthenticated => "unauthenticated",
            Self::UnknownSource => "unknown-source",
            Self::SourceMismatch => "source-mismatch",
            Self::TypeNotAllowed => "type-not-allowed",
            Self::UnknownMessageType => "unknown-message-type",
            Self::UnsupportedSchemaVersion => "unsupported-schema-version",
            Self::SchemaViolation => "schema-violation",
            Self::NoRoute => "no-route",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::TooLarge => 413,
            Self::Malformed
            | Self::InvalidEncoding
            | Self::DuplicateKey
            | Self::TooDeep
            | Self::StringTooLong => 400,
            Self::Unauthenticated => 401,
            Self::UnknownSource | Self::SourceMismatch | Self::TypeNotAllowed => 403,
            Self::InvalidEnvelope
            | Self::UnknownMessageType
            | Self::UnsupportedSchemaVersion
            | Self::SchemaViolation
            | Self::NoRoute => 422,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::TooLarge => "Message too large",
            Self::Malformed => "Malformed JSON",
            Self::InvalidEncoding => "Not UTF-8 JSON",
            Self::DuplicateKey => "Duplicate key in a JSON object",
            Self::TooDeep => "JSON nested too deeply",
            Self::StringTooLong => "JSON string too long",
            Self::InvalidEnvelope => "Invalid envelope",
            Self::Unauthenticated => "Sender not authenticated",
            Self::UnknownSource => "Unknown source",
            Self::SourceMismatch => "Source does not match the authenticated sender",
            Self::TypeNotAllowed => "Message type not allowed for this source",
            Self::UnknownMessageType => "Unknown message type",
            Self::UnsupportedSchemaVersion => "Unsupported schema version",
            Self::SchemaViolation => "Schema violation",
            Self::NoRoute => "No route matches this message",
        }
    }
}

/// A refused message. `detail` and `errors` never repeat payload values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub detail: String,
    pub errors: Vec<Violation>,
    /// Known when the envelope header could be read.
    pub message_id: Option<String>,
}

impl Rejection {
    fn new(kind: RejectionKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            errors: Vec::new(),
            message_id: None,
        }
    }
}

/// Who the transport says sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender<'a> {
    /// Not known: anonymous local development, benches, tests of the pipeline itself. The
    /// envelope's source is taken at its word.
    Unchecked,
    /// A source authenticated by client certificate or bearer token: the envelope's source
    /// must be this one.
    Source(&'a str),
    /// A broker user (AMQP `user_id`, which the broker checks against the connection's
    /// login): the envelope's source must list this user in its `amqp_users`.
    BrokerUser(&'a str),
}

impl Sender<'_> {
    /// The source this sender authenticated as, when it names one.
    pub fn source(&self) -> Option<&str> {
        match self {
            Self::Source(s) => Some(s),
            _ => None,
        }
    }
}

/// Decide whether `bytes` is an acceptable canonical message and where it goes, the sender
/// unchecked (see [`Sender::Unchecked`]).
pub fn admit(config: &CompiledConfig, bytes: &[u8]) -> Result<Admitted, Rejection> {
    admit_as(config, bytes, Sender::Unchecked)
}

/// Decide whether `bytes` is an acceptable canonical message from `sender` and where it goes.
/// No source can speak for another: the envelope's source must be the sender's.
pub fn admit_as(
    config: &CompiledConfig,
    bytes: &[u8],
    sender: Sender<'_>,
) -> Result<Admitted, Rejection> {
    if bytes.len() > config.limits.max_body_bytes {
        return Err(Rejection::new(
            RejectionKind::TooLarge,
            format!("body exceeds {} bytes", config.limits.max_body_bytes),
        ));
    }
    let value = crate::json::parse_strict(bytes, config.limits.json).map_err(|e| {
        let kind = match e {
            JsonError::Bom | JsonError::NotUtf8 => RejectionKind::InvalidEncoding,
            JsonError::DuplicateKey => RejectionKind::DuplicateKey,
            JsonError::TooDeep(_) => RejectionKind::TooDeep,
            JsonError::StringTooLong(_) => RejectionKind::StringTooLong,
            JsonError::Malformed { .. } => RejectionKind::Malformed,
        };
        Rejection::new(kind, e.to_string())
    })?;
    if !value.is_object() {
        return Err(Rejection::new(
            RejectionKind::Malformed,
            "the envelope must be a JSON object",
        ));
    }
    if let Err(errors) = config.schemas.validate_envelope(&value) {
        let message_id = value
            .get("message_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Err(Rejection {
            kind: RejectionKind::InvalidEnvelope,
            detail: "the envelope does not match the envelope schema".into(),
            errors,
            message_id,
        });
    }
    let envelope: Envelope = serde_json::from_value(value)
        .map_err(|e| Rejection::new(RejectionKind::InvalidEnvelope, format!("envelope: {e}")))?;
    let with_id = |mut r: Rejection| {
        r.message_id = Some(envelope.message_id.clone());
        r
    };
    if time::OffsetDateTime::parse(
        &envelope.sent_at,
        &time::format_description::well_known::Rfc3339,
    )
    .is_err()
    {
        return Err(with_id(Rejection {
            kind: RejectionKind::InvalidEnvelope,
            detail: "sent_at is not an RFC 3339 date-time".into(),
            errors: vec![Violation {
                pointer: "/sent_at".into(),
                message: "not an RFC 3339 date-time".into(),
            }],
            message_id: None,
        }));
    }
    let speaks_for = match sender {
        Sender::Unchecked => true,
        Sender::Source(s) => s == envelope.source,
        Sender::BrokerUser(u) => config
            .sources
            .get(&envelope.source)
            .is_some_and(|s| s.amqp_users.iter().any(|a| a == u)),
    };
    if !speaks_for {
        return Err(with_id(Rejection::new(
            RejectionKind::SourceMismatch,
            "the envelope names another source than the authenticated sender",
        )));
    }
    let Some(source) = config.sources.get(&envelope.source) else {
        return Err(with_id(Rejection::new(
            RejectionKind::UnknownSource,
            "the source is not configured",
        )));
    };
    if !source.allowed.contains(&envelope.message_type) {
        return Err(with_id(Rejection::new(
            RejectionKind::TypeNotAllowed,
            format!(
                "source {:?} may not send {:?}",
                source.id, envelope.message_type
            ),
        )));
    }
    let Some(major) = envelope.schema_major() else {
        return Err(with_id(Rejection::new(
            RejectionKind::UnsupportedSchemaVersion,
            "schema_version must be MAJOR.MINOR",
        )));
    };
    match config
        .schemas
        .validate_payload(major, &envelope.message_type, &envelope.payload)
    {
        Ok(()) => {}
        Err(PayloadError::UnknownType) => {
            return Err(with_id(Rejection::new(
                RejectionKind::UnknownMessageType,
                format!("no schema for {:?}", envelope.message_type),
            )));
        }
        Err(PayloadError::UnsupportedVersion) => {
            return Err(with_id(Rejection::new(
                RejectionKind::UnsupportedSchemaVersion,
                format!("no schema v{major} for {:?}", envelope.message_type),
            )));
        }
        Err(PayloadError::Violations(errors)) => {
            return Err(with_id(Rejection {
                kind: RejectionKind::SchemaViolation,
                detail: format!(
                    "the payload does not match the {} schema",
                    envelope.message_type
                ),
                errors,
                message_id: None,
            }));
        }
    }
    match config.routes.decide(&envelope) {
        Decision::Deliver {
            routes,
            destinations,
        } => Ok(Admitted {
            envelope,
            destinations,
            routes,
        }),
        Decision::NoRoute => Err(with_id(Rejection::new(
            RejectionKind::NoRoute,
            format!("no route matches this {:?} message", envelope.message_type),
        ))),
    }
}
