//! Operator tools that run an adapter by hand, without a broker: `wingspan decode` (partner
//! bytes → canonical envelope) and `wingspan encode` (canonical envelope → what one
//! destination would receive, after its field policy). Both go through exactly the code the
//! running gateway uses.

use std::sync::Arc;

use wingspan_adapters::{Adapter, AdapterError, AdapterSet, Inbound, render};
use wingspan_core::config::Destination;
use wingspan_core::{CompiledConfig, Envelope};

/// Why a tool could not produce output. Printed as `error[<kind>]: <detail>`, exit code 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("error[unknown-adapter]: no adapter named {0:?} (known: {1})")]
    UnknownAdapter(String, String),
    #[error("error[unknown-destination]: no destination {0:?} in the config")]
    UnknownDestination(String),
    #[error("error[{slug}]: {0}", slug = .0.slug())]
    Adapter(AdapterError),
    #[error("error[invalid-canonical]: the input is not a canonical envelope ({0})")]
    NotCanonical(String),
    #[error("error[schema-violation]: {0}")]
    Schema(String),
}

fn adapter(set: &AdapterSet, name: &str) -> Result<Arc<dyn Adapter>, ToolError> {
    set.get(name).cloned().ok_or_else(|| {
        ToolError::UnknownAdapter(name.to_owned(), set.names().collect::<Vec<_>>().join(", "))
    })
}

/// Decode partner bytes with the named adapter (built-in, or declared in `set`); the
/// envelope is attributed to `source`.
pub fn decode(
    set: &AdapterSet,
    adapter_name: &str,
    source: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<Envelope, ToolError> {
    adapter(set, adapter_name)?
        .decode(Inbound {
            source,
            content_type,
            bytes,
        })
        .map_err(ToolError::Adapter)
}

/// Check a decoded or hand-written envelope against the config's schemas.
pub fn validate(config: &CompiledConfig, env: &Envelope) -> Result<(), ToolError> {
    let major = env
        .schema_major()
        .ok_or_else(|| ToolError::Schema("schema_version is not MAJOR.MINOR".into()))?;
    config
        .schemas
        .validate_payload(major, &env.message_type, &env.payload)
        .map_err(|e| match e {
            wingspan_core::schema::PayloadError::Violations(v) => ToolError::Schema(
                v.iter()
                    .map(|v| format!("{}: {}", v.pointer, v.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            other => ToolError::Schema(other.to_string()),
        })
}

/// What destination `dest_id` would receive for the canonical bytes, encoded by the named
/// adapter (normally the destination's own) after the destination's field policy.
pub fn encode(
    config: &CompiledConfig,
    adapter_name: &str,
    dest_id: &str,
    canonical: &[u8],
) -> Result<(&'static str, Vec<u8>), ToolError> {
    let codec = adapter(&config.adapters, adapter_name)?;
    let dest = config
        .destinations
        .iter()
        .find(|d| d.id == dest_id)
        .ok_or_else(|| ToolError::UnknownDestination(dest_id.to_owned()))?;
    let env: Envelope =
        serde_json::from_slice(canonical).map_err(|e| ToolError::NotCanonical(e.to_string()))?;
    validate(config, &env)?;
    let dest = Destination {
        adapter: adapter_name.to_owned(),
        codec,
        ..dest.clone()
    };
    let encoded = render::for_destination(&dest, &env, None).map_err(ToolError::Adapter)?;
    Ok((encoded.content_type, encoded.body.into_owned()))
}
