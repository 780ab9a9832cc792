//! Gateway configuration: [`raw`] is what the TOML says (unknown keys are errors),
//! [`compile`] checks it as a whole, reporting every problem at once, and builds the
//! [`CompiledConfig`] the gateway runs with.

pub mod compile;
pub mod diff;
pub mod lint;
pub mod raw;

pub use compile::{
    AdminUser, AuditSettings, BrokerSettings, CompiledConfig, Destination, Limits, QueueType, Role,
    Source, TlsSettings, Transport, compile, constant_time_eq, valid_id,
};
pub use lint::{lint, locate};
pub use raw::RawConfig;

/// One configuration problem, located by its path in the config (`routes[2].destinations[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Parse TOML text into the raw config; the error carries the line and column.
pub fn parse(origin: &str, text: &str) -> Result<RawConfig, ConfigError> {
    parse_as(origin, text)
}

/// Parse TOML text into any config-like type; the error names `origin` and the line.
pub fn parse_as<T: serde::de::DeserializeOwned>(
    origin: &str,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let location = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("{origin}:{line}")
            })
            .unwrap_or_else(|| origin.to_owned());
        ConfigError::new(location, e.message().to_owned())
    })
}
