//! The audit keys: the signing key (checkpoints, segments, exports: Ed25519 or SM2 by the
//! configured suite) and the subject key (HMAC-SHA256 or HMAC-SM3 person references), read
//! from the environment or from key files created on first start.

use std::io::Write;
use std::path::Path;

use wingspan_core::audit::{SigningKey, Suite};

use crate::load::Loaded;

/// The audit keys. Neither is ever logged.
pub struct AuditKeys {
    pub signing: SigningKey,
    subject: Vec<u8>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("signing", &self.signing)
            .finish_non_exhaustive()
    }
}

impl AuditKeys {
    /// The subject reference of a person id (the suite's HMAC under the subject key).
    pub fn subject_ref(&self, person_id: &str) -> String {
        wingspan_core::audit::subject_ref(self.suite(), &self.subject, person_id)
    }

    /// The suite the keys belong to (the signing key's).
    pub fn suite(&self) -> Suite {
        self.signing.suite()
    }

    /// For tests and tools that hold both secrets in hand.
    pub fn from_parts(suite: Suite, signing_seed_hex: &str, subject: &[u8]) -> Option<Self> {
        Some(Self {
            signing: SigningKey::from_seed_hex(suite, signing_seed_hex)?,
            subject: subject.to_vec(),
        })
    }
}

fn random_hex(n: usize) -> anyhow::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Read a key file, or create it (mode 0600) with a fresh random key when `create`; a fresh
/// key is drawn again until `usable` accepts it (an SM2 private key must lie below the
/// curve's order: all but one draw in four billion do).
fn key_from_file(
    path: &Path,
    what: &str,
    create: bool,
    usable: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut key = random_hex(32)?;
            while !usable(&key) {
                key = random_hex(32)?;
            }
            let mut f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?
            };
            f.write_all(key.as_bytes())?;
            f.sync_all()?;
            tracing::warn!(file = %path.display(), "created a new audit {what} key; keep it safe and back it up");
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot read the audit {what} key {}: {e}",
            path.display()
        )),
    }
}

/// The audit keys of a loaded config: environment (`WINGSPAN_AUDIT_SIGNING_KEY`,
/// `WINGSPAN_AUDIT_SUBJECT_KEY`, hex) over key files; files are created when `create`
/// (the gateway's first start), never by the compliance commands.
pub fn keys(loaded: &Loaded, create: bool) -> anyhow::Result<AuditKeys> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let signing = signing_key(loaded, create)?;
    let subject = match env("WINGSPAN_AUDIT_SUBJECT_KEY") {
        Some(k) => k,
        None => key_from_file(&loaded.subject_key_file, "subject", create, |_| true)?,
    };
    Ok(AuditKeys {
        signing,
        subject: subject.into_bytes(),
    })
}

/// The signing key alone (verification needs nothing else), of the configured suite.
fn signing_key(loaded: &Loaded, create: bool) -> anyhow::Result<SigningKey> {
    let suite = loaded.config.audit.suite;
    let seed = match std::env::var("WINGSPAN_AUDIT_SIGNING_KEY")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(k) => k,
        None => key_from_file(&loaded.signing_key_file, "signing", create, |k| {
            SigningKey::from_seed_hex(suite, k).is_some()
        })?,
    };
    SigningKey::from_seed_hex(suite, &seed).ok_or_else(|| match suite {
        Suite::Sha256Ed25519 => anyhow::anyhow!("the audit signing key is not 64 hex digits"),
        Suite::Sm3Sm2 => anyhow::anyhow!(
            "the audit signing key is not an SM2 private key (64 hex digits, from 1 to the curve's order − 1)"
        ),
    })
}

/// The public key verification trusts: given explicitly, or derived from the configured
/// signing key. Never the key a checkpoint names about itself.
pub fn trusted_key(loaded: &Loaded, given: Option<&str>) -> anyhow::Result<String> {
    match given {
        Some(k) => Ok(k.trim().to_owned()),
        None => Ok(signing_key(loaded, false)?.public_hex()),
    }
}
