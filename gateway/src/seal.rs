//! Payload copies sealed at rest in the gateway's own queues.
//!
//! The gateway's only payload copies are the ones it queues for its workers: the copy each
//! queued destination gets, its retries, and — once a partner refuses it or its attempts run
//! out — its parked copy, kept for replay. The broker writes all of them to disk. With a
//! payload key configured, each is sealed with an AEAD before it is published: AES-256-GCM
//! (ring), or SM4-GCM (GB/T 32907 SM4 in GCM, as RFC 8998) under the `sm3-sm2` suite. The
//! message id is the associated data, so a sealed body cannot be passed off as another
//! message's. The copy carries [`SEALED_HEADER`] = `<algorithm>:<key id>` (the key id is the
//! first 8 bytes of the key's SHA-256, hex); the body is nonce ‖ ciphertext ‖ tag, with a
//! random 96-bit nonce per seal. Direct deliveries to AMQP partners and the upstreams' own
//! messages in the ingress queue are not the gateway's copies and are not sealed.

use std::borrow::Cow;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use wingspan_core::audit::Suite;

/// The header naming how a queued copy was sealed.
pub const SEALED_HEADER: &str = "x-wingspan-sealed";

type Sm4Gcm = aes_gcm::AesGcm<sm4::Sm4, U12>;

const TAG_LEN: usize = 16;

/// Why a sealed copy could not be opened. None of them names anything of the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the copy is sealed ({0}) and no payload key is configured")]
    NoKey(String),
    #[error("the copy is sealed under key {0}, which this gateway does not hold")]
    UnknownKey(String),
    #[error("the sealed copy does not authenticate (damaged, or not this message's)")]
    Forged,
    #[error("no system randomness for a nonce")]
    NoRandomness,
}

enum Cipher {
    Aes(Box<LessSafeKey>),
    Sm4(Box<Sm4Gcm>),
}

/// The payload key, ready to seal and open.
pub struct Sealer {
    cipher: Cipher,
    /// `<algorithm>:<key id>`, the value of [`SEALED_HEADER`].
    label: String,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({})", self.label)
    }
}

impl Sealer {
    /// How many bytes of key a suite's cipher takes: 32 for AES-256, 16 for SM4.
    pub fn key_len(suite: Suite) -> usize {
        match suite {
            Suite::Sha256Ed25519 => 32,
            Suite::Sm3Sm2 => 16,
        }
    }

    /// The suite's cipher under `key` (of [`Sealer::key_len`] bytes).
    pub fn new(suite: Suite, key: &[u8]) -> Result<Self, String> {
        if key.len() != Self::key_len(suite) {
            return Err(format!(
                "the payload key must be {} bytes ({} hex digits) under {suite}",
                Self::key_len(suite),
                2 * Self::key_len(suite)
            ));
        }
        let id = &wingspan_core::audit::sha256_hex(key)[..16];
        let (cipher, algorithm) = match suite {
            Suite::Sha256Ed25519 => (
                Cipher::Aes(Box::new(LessSafeKey::new(
                    UnboundKey::new(&AES_256_GCM, key).map_err(|_| "unusable AES key")?,
                ))),
                "aes-256-gcm",
            ),
            Suite::Sm3Sm2 => (
                Cipher::Sm4(Box::new(
                    Sm4Gcm::new_from_slice(key).map_err(|_| "unusable SM4 key")?,
                )),
                "sm4-gcm",
            ),
        };
        Ok(Self {
            cipher,
            label: format!("{algorithm}:{id}"),
            random: SystemRandom::new(),
        })
    }

    /// The value of [`SEALED_HEADER`] on what this key seals.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Seal `plain` as the copy of message `message_id`: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, message_id: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::NoRandomness)?;
        Ok(self.seal_with(&nonce, message_id, plain))
    }

    fn seal_with(&self, nonce: &[u8; NONCE_LEN], message_id: &str, plain: &[u8]) -> Vec<u8> {
        match &self.cipher {
            Cipher::Aes(key) => {
                // One buffer: the nonce, the bytes sealed in place after it, the tag.
                let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
                out.extend_from_slice(nonce);
                out.extend_from_slice(plain);
                // Only an input over 64 GB fails; copies are bounded by the body limit.
                if let Ok(tag) = key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(message_id.as_bytes()),
                    &mut out[NONCE_LEN..],
                ) {
                    out.extend_from_slice(tag.as_ref());
                }
                out
            }
            Cipher::Sm4(key) => {
                let sealed = key
                    .encrypt(
                        nonce.into(),
                        Payload {
                            msg: plain,
                            aad: message_id.as_bytes(),
                        },
                    )
                    .unwrap_or_default();
                [nonce.as_slice(), &sealed].concat()
            }
        }
    }

    /// Open a copy sealed as `label` for `message_id`.
    pub fn open(&self, label: &str, message_id: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if label != self.label {
            return Err(SealError::UnknownKey(label.to_owned()));
        }
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Forged);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        match &self.cipher {
            Cipher::Aes(key) => {
                let nonce =
                    Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Forged)?;
                let mut body = body.to_vec();
                let n = key
                    .open_in_place(nonce, Aad::from(message_id.as_bytes()), &mut body)
                    .map_err(|_| SealError::Forged)?
                    .len();
                body.truncate(n);
                Ok(body)
            }
            Cipher::Sm4(key) => key
                .decrypt(
                    nonce.into(),
                    Payload {
                        msg: body,
                        aad: message_id.as_bytes(),
                    },
                )
                .map_err(|_| SealError::Forged),
        }
    }
}

/// The plain bytes of a queued copy: opened if it is sealed (`label` from its header).
pub fn plain<'a>(
    sealer: Option<&Sealer>,
    label: Option<&str>,
    message_id: &str,
    data: &'a [u8],
) -> Result<Cow<'a, [u8]>, SealError> {
    match (label, sealer) {
        (None, _) => Ok(Cow::Borrowed(data)),
        (Some(label), None) => Err(SealError::NoKey(label.to_owned())),
        (Some(label), Some(s)) => s.open(label, message_id, data).map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 8998, Appendix A.1: SM4-GCM (the AAD is the vector's, not a message id).
    #[test]
    fn sm4_gcm_matches_rfc_8998() {
        let key = unhex("0123456789ABCDEFFEDCBA9876543210");
        let nonce = unhex("00001234567800000000ABCD");
        let aad = unhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
        let plain = unhex(
            "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD\
             EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
        );
        let expected = unhex(
            "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735\
             D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D\
             83DE3541E4C2B58177E065A9BF7B62EC",
        );
        let gcm = Sm4Gcm::new_from_slice(&key).expect("key");
        let sealed = gcm
            .encrypt(
                nonce.as_slice().into(),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .expect("seal");
        assert_eq!(sealed, expected);
    }

    #[test]
    fn each_suite_seals_opens_and_refuses_what_is_not_its_own() {
        for suite in Suite::ALL {
            let key = vec![7u8; Sealer::key_len(suite)];
            let s = Sealer::new(suite, &key).expect("sealer");
            let plain = br#"{"payload":{"person_id":"32041119900314002X"}}"#;
            let sealed = s.seal("m-1", plain).expect("seal");
            assert!(!sealed.windows(8).any(|w| w == b"32041119"), "{suite}");
            assert_eq!(sealed.len(), plain.len() + NONCE_LEN + TAG_LEN);
            assert_ne!(
                s.seal("m-1", plain).expect("seal"),
                sealed,
                "a fresh nonce each time"
            );
            assert_eq!(s.open(s.label(), "m-1", &sealed).expect("open"), plain);
            // Another message's id, a flipped bit, a cut body, another key.
            assert_eq!(s.open(s.label(), "m-2", &sealed), Err(SealError::Forged));
            let mut flipped = sealed.clone();
            flipped[NONCE_LEN + 3] ^= 1;
            assert_eq!(s.open(s.label(), "m-1", &flipped), Err(SealError::Forged));
            assert_eq!(
                s.open(s.label(), "m-1", &sealed[..20]),
                Err(SealError::Forged)
            );
            let other = Sealer::new(suite, &vec![8u8; Sealer::key_len(suite)]).expect("other");
            assert!(matches!(
                other.open(s.label(), "m-1", &sealed),
                Err(SealError::UnknownKey(_))
            ));
            assert!(matches!(
                plain_of(None, Some(s.label()), &sealed),
                Err(SealError::NoKey(_))
            ));
            assert_eq!(
                plain_of(Some(&s), None, plain).expect("plain").as_ref(),
                plain
            );
            assert!(Sealer::new(suite, &[1u8; 5]).is_err());
        }
        assert!(
            Sealer::new(Suite::Sm3Sm2, &[0u8; 16])
                .expect("sm4")
                .label()
                .starts_with("sm4-gcm:")
        );
    }

    fn plain_of<'a>(
        s: Option<&Sealer>,
        label: Option<&str>,
        data: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, SealError> {
        plain(s, label, "m-1", data)
    }
}
