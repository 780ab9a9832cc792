//! What one destination receives for one canonical message: its field policy first, then its
//! adapter. The gateway's delivery path, the `wingspan encode` command and the data
//! minimisation property tests all go through [`for_destination`], so they cannot disagree.

use std::borrow::Cow;

use wingspan_core::Envelope;
use wingspan_core::config::Destination;

use crate::{AdapterError, Canonical, Encoded};

/// Apply `dest`'s field policy to `envelope` and encode it with `dest`'s adapter.
/// `bytes` are the exact canonical bytes accepted, forwarded unchanged by the canonical
/// adapter when the policy keeps the whole payload.
pub fn for_destination<'a>(
    dest: &Destination,
    envelope: &'a Envelope,
    bytes: Option<&'a [u8]>,
) -> Result<Encoded<'a>, AdapterError> {
    let adapter = &dest.codec;
    let policy = dest.policy(&envelope.message_type).ok_or_else(|| {
        AdapterError::Encode(format!(
            "destination {:?} has no field policy for {}",
            dest.id, envelope.message_type
        ))
    })?;
    let content_type = dest.content_type.as_deref();
    match policy.apply(&envelope.payload) {
        None => adapter.encode(Canonical { envelope, bytes }, content_type),
        Some(payload) => {
            let cut = Envelope {
                payload,
                ..envelope.clone()
            };
            let encoded = adapter.encode(
                Canonical {
                    envelope: &cut,
                    bytes: None,
                },
                content_type,
            )?;
            Ok(Encoded {
                content_type: encoded.content_type,
                body: Cow::Owned(encoded.body.into_owned()),
            })
        }
    }
}
