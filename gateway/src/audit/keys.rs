//! The audit keys: the signing key (checkpoints, segments, exports: Ed25519 or SM2 by the
//! configured suite) and the subject key (HMAC-SHA256 or HMAC-SM3 person references), read
//! from the environment or from key files created on first start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use wingspan_core::audit::{SigningKey, Suite};

use crate::load::Loaded;

/// The audit keys. Neither is ever logged. The signing key can be rotated while the
/// gateway runs (the store's writer swaps it once the rotation record commits).
pub struct AuditKeys {
    signing: RwLock<Arc<SigningKey>>,
    subject: Vec<u8>,
    /// The signing key's file; `None` when it came from the environment (which a rotation
    /// cannot rewrite).
    signing_file: Option<PathBuf>,
    /// The payload key, when queued copies are sealed at rest.
    sealer: Option<Arc<crate::seal::Sealer>>,
    /// The time-stamping authority's certificate (DER), when checkpoints are time-stamped.
    tsa_cert: Option<Vec<u8>>,
    /// Subject keys rotated away from: references made under them are still searched.
    earlier_subjects: Vec<Vec<u8>>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("signing", &self.signing())
            .finish_non_exhaustive()
    }
}

/// Where a rotation's new key waits until the rotation has committed: beside the key file.
fn next_file(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

impl AuditKeys {
    /// The payload key, when queued copies are sealed at rest.
    pub fn sealer(&self) -> Option<&Arc<crate::seal::Sealer>> {
        self.sealer.as_ref()
    }

    /// The time-stamping authority's certificate (DER), if one is configured.
    pub fn tsa_cert(&self) -> Option<&[u8]> {
        self.tsa_cert.as_deref()
    }

    /// Seal queued copies with `sealer` (tests and tools).
    pub fn with_sealer(mut self, sealer: crate::seal::Sealer) -> Self {
        self.sealer = Some(Arc::new(sealer));
        self
    }

    /// The signing key in force.
    pub fn signing(&self) -> Arc<SigningKey> {
        self.signing
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// From now on, sign with `key` (the store's writer, once a rotation to it committed).
    pub fn swap_signing(&self, key: Arc<SigningKey>) {
        *self
            .signing
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
    }

    /// A fresh key of the suite for a rotation, written (mode 0600, synced) to `<key file>.next`
    /// before the rotation is recorded, so that a rotation that commits always has its key on
    /// disk. Refused when the key comes from the environment.
    pub fn prepare_rotation(&self) -> anyhow::Result<Arc<SigningKey>> {
        let Some(file) = &self.signing_file else {
            anyhow::bail!(
                "the audit signing key comes from WINGSPAN_AUDIT_SIGNING_KEY: a rotation cannot replace it there (use signing_key_file)"
            );
        };
        let suite = self.suite();
        let next = next_file(file);
        let _ = std::fs::remove_file(&next);
        let seed = key_from_file(&next, "next signing", true, 32, |k| {
            SigningKey::from_seed_hex(suite, k).is_some()
        })?;
        SigningKey::from_seed_hex(suite, &seed)
            .map(Arc::new)
            .ok_or_else(|| anyhow::anyhow!("the new signing key is not usable"))
    }

    /// The rotation committed: `<key file>.next` becomes the key file (the old secret is gone;
    /// its public key stays in the chain). The writer has already swapped the key in memory.
    pub fn finish_rotation(&self) -> anyhow::Result<()> {
        let Some(file) = &self.signing_file else {
            return Ok(());
        };
        std::fs::rename(next_file(file), file)?;
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// At start: the chain says it is signed by `current` (hex). If that is not the configured
    /// key, it must be the `.next` key of a rotation cut off before its file was renamed: that
    /// rotation is finished now. Anything else is refused: signing on with another key would
    /// make every later checkpoint fail verification.
    pub fn reconcile(&self, chain_id: &str, current: &str) -> Result<(), String> {
        let configured = self.signing().public_hex();
        if configured == current {
            return Ok(());
        }
        if let Some(file) = &self.signing_file
            && let Ok(text) = std::fs::read_to_string(next_file(file))
            && let Some(next) = SigningKey::from_seed_hex(self.suite(), text.trim())
            && next.public_hex() == current
        {
            self.swap_signing(Arc::new(next));
            self.finish_rotation().map_err(|e| {
                format!(
                    "cannot finish the interrupted key rotation of audit chain {chain_id:?}: {e}"
                )
            })?;
            tracing::warn!(
                chain = chain_id,
                "finished an audit key rotation that a stop had interrupted"
            );
            return Ok(());
        }
        Err(format!(
            "audit chain {chain_id:?} is signed by the key {current}, the configured signing key is {configured}: \
             restore the key file (a chain changes keys only by `wingspan audit rotate-key`)"
        ))
    }

    /// The subject reference of a person id (the suite's HMAC under the subject key).
    pub fn subject_ref(&self, person_id: &str) -> String {
        wingspan_core::audit::subject_ref(self.suite(), &self.subject, person_id)
    }

    /// The person's references under the earlier subject keys, newest first.
    pub fn earlier_subject_refs(&self, person_id: &str) -> Vec<String> {
        self.earlier_subjects
            .iter()
            .map(|k| wingspan_core::audit::subject_ref(self.suite(), k, person_id))
            .collect()
    }

    /// With earlier subject keys (tests and tools).
    pub fn with_earlier_subjects(mut self, keys: Vec<Vec<u8>>) -> Self {
        self.earlier_subjects = keys;
        self
    }

    /// The suite the keys belong to (the signing key's).
    pub fn suite(&self) -> Suite {
        self.signing().suite()
    }

    /// For tests and tools that hold both secrets in hand.
    pub fn from_parts(suite: Suite, signing_seed_hex: &str, subject: &[u8]) -> Option<Self> {
        Some(Self {
            signing: RwLock::new(Arc::new(SigningKey::from_seed_hex(
                suite,
                signing_seed_hex,
            )?)),
            subject: subject.to_vec(),
            signing_file: None,
            sealer: None,
            tsa_cert: None,
            earlier_subjects: Vec::new(),
        })
    }

    /// As [`AuditKeys::from_parts`], the signing key kept in (and rotated through) `file`.
    pub fn from_file(suite: Suite, file: &Path, subject: &[u8]) -> anyhow::Result<Self> {
        let seed = key_from_file(file, "signing", true, 32, |k| {
            SigningKey::from_seed_hex(suite, k).is_some()
        })?;
        let mut keys = Self::from_parts(suite, &seed, subject)
            .ok_or_else(|| anyhow::anyhow!("{} holds no usable key", file.display()))?;
        keys.signing_file = Some(file.to_owned());
        Ok(keys)
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
    len: usize,
    usable: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut key = random_hex(len)?;
            while !usable(&key) {
                key = random_hex(len)?;
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
        None => key_from_file(&loaded.subject_key_file, "subject", create, 32, |_| true)?,
    };
    let sealer = payload_sealer(loaded, create)?;
    Ok(AuditKeys {
        signing: RwLock::new(Arc::new(signing)),
        subject: subject.into_bytes(),
        signing_file: env("WINGSPAN_AUDIT_SIGNING_KEY")
            .is_none()
            .then(|| loaded.signing_key_file.clone()),
        sealer,
        tsa_cert: loaded.tsa_cert_der.clone(),
        earlier_subjects: loaded
            .previous_subject_key_files
            .iter()
            .map(|f| {
                std::fs::read_to_string(f)
                    .map(|k| k.trim().as_bytes().to_vec())
                    .map_err(|e| {
                        anyhow::anyhow!("cannot read the earlier subject key {}: {e}", f.display())
                    })
            })
            .collect::<anyhow::Result<_>>()?,
    })
}

/// The payload key of the configured suite, when one is configured (`payload_key_file`, or
/// `WINGSPAN_PAYLOAD_KEY` in hex); its file is created on the gateway's first start.
fn payload_sealer(
    loaded: &Loaded,
    create: bool,
) -> anyhow::Result<Option<Arc<crate::seal::Sealer>>> {
    let suite = loaded.config.audit.suite;
    let len = crate::seal::Sealer::key_len(suite);
    let hex = match std::env::var("WINGSPAN_PAYLOAD_KEY")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(k) => k,
        None => match &loaded.payload_key_file {
            // A command that only reads the trail does not need it.
            Some(f) if !create && !f.exists() => return Ok(None),
            Some(f) => key_from_file(f, "payload", create, len, |_| true)?,
            None => return Ok(None),
        },
    };
    let key = (0..hex.trim().len())
        .step_by(2)
        .map(|i| {
            hex.trim()
                .get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| anyhow::anyhow!("the payload key is not hex"))?;
    crate::seal::Sealer::new(suite, &key)
        .map(|s| Some(Arc::new(s)))
        .map_err(|e| anyhow::anyhow!(e))
}

/// The signing key alone (verification needs nothing else), of the configured suite.
fn signing_key(loaded: &Loaded, create: bool) -> anyhow::Result<SigningKey> {
    let suite = loaded.config.audit.suite;
    let seed = match std::env::var("WINGSPAN_AUDIT_SIGNING_KEY")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(k) => k,
        None => key_from_file(&loaded.signing_key_file, "signing", create, 32, |k| {
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
