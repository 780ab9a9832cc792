//! The audit trail's pure part: what a record holds, how it is hashed into its chain, how a
//! checkpoint is signed, and how a chain is verified — naming the first record that was
//! modified, deleted, inserted or reordered, and any checkpoint whose signature fails.
//!
//! A record never holds personal data: ids, types, destinations, outcomes, reason codes, the
//! SHA-256 of the exact payload bytes, and `subject_ref`, a keyed hash (HMAC-SHA256) of the
//! person's identifier that lets compliance find everything about one person without the
//! audit store ever holding the identifier.
//!
//! Hashing: `hash = H(chain_id, event, at, message_id, …, prev_hash)`, every field
//! length-prefixed (absent fields marked), hex-encoded, where `H` is the chain's [`Suite`]'s
//! hash: SHA-256 (`sha256-ed25519`, the default) or SM3 (`sm3-sm2`, GB/T 32905). The suite
//! also chooses the subject reference's HMAC and the checkpoints' signature (Ed25519, or SM2
//! per GB/T 32918 with the standard's default user id). The sequence number is the storage
//! order and is not hashed: the links (`prev_hash`) are the order, so a renumbering shows up
//! as a reordering. The first record of a chain links to [`GENESIS`].

use ring::{digest, hmac, signature};
use serde::{Deserialize, Serialize};
use sm2::dsa::signature::{Signer as _, Verifier as _};
use sm3::Digest as _;

/// The algorithms a chain is kept with: chosen once, when the chain starts, and recorded
/// with it (a store refuses a config naming another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Suite {
    /// SHA-256 chain hash, HMAC-SHA256 subject references, Ed25519 signatures.
    #[default]
    #[serde(rename = "sha256-ed25519")]
    Sha256Ed25519,
    /// SM3 chain hash (GB/T 32905), HMAC-SM3 subject references, SM2 signatures
    /// (GB/T 32918, user id [`SM2_DEFAULT_ID`]).
    #[serde(rename = "sm3-sm2")]
    Sm3Sm2,
}

/// The default distinguishing identifier of GB/T 32918 (GM/T 0009), used by every SM2
/// signature of the trail.
pub const SM2_DEFAULT_ID: &str = "1234567812345678";

impl Suite {
    pub const ALL: [Suite; 2] = [Self::Sha256Ed25519, Self::Sm3Sm2];

    /// The stable name stored with a chain and written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256Ed25519 => "sha256-ed25519",
            Self::Sm3Sm2 => "sm3-sm2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The hash of bytes under this suite, hex.
    pub fn digest_hex(self, bytes: &[u8]) -> String {
        let mut h = Hasher::new(self);
        h.update(bytes);
        h.finish_hex()
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// An incremental hash of one suite.
enum Hasher {
    Sha256(digest::Context),
    Sm3(sm3::Sm3),
}

impl Hasher {
    fn new(suite: Suite) -> Self {
        match suite {
            Suite::Sha256Ed25519 => Self::Sha256(digest::Context::new(&digest::SHA256)),
            Suite::Sm3Sm2 => Self::Sm3(sm3::Sm3::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(c) => c.update(bytes),
            Self::Sm3(c) => c.update(bytes),
        }
    }

    fn finish_hex(self) -> String {
        match self {
            Self::Sha256(c) => hex(c.finish().as_ref()),
            Self::Sm3(c) => hex(&c.finalize()),
        }
    }
}

/// `prev_hash` of a chain's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened. The names are the stable codes stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    ConfigLoaded,
    Received,
    Rejected,
    Duplicate,
    Accepted,
    Routed,
    DeliveryAttempt,
    RetryScheduled,
    Parked,
    Delivered,
    ReplyCorrelated,
    Replayed,
    Discarded,
    /// The store found a torn tail at start and cut it back; the reason says how far.
    Recovered,
    /// An operator was shown a parked message's payload.
    PayloadViewed,
    /// A config was offered (reload or rollback) and refused; the old one kept running.
    ConfigRefused,
    /// A sealed segment of the chain was written to the archive and verified; the record
    /// names its range (reason) and its file's SHA-256 (payload_sha256).
    Archived,
    /// A compliance user searched the trail by person: who (actor), why (reason) and whom
    /// (the person's reference, never the id).
    SubjectSearched,
    /// A compliance user produced a person's subject access report: who, why and whom (the
    /// reference), recorded before the report is made.
    SubjectReported,
    /// The signing key was rotated: the reason holds both public keys and the statement's
    /// two signatures (see [`Rotation`]); records from this one on are signed by the new key.
    KeyRotated,
}

impl Event {
    pub const ALL: [Event; 20] = [
        Self::ConfigLoaded,
        Self::Received,
        Self::Rejected,
        Self::Duplicate,
        Self::Accepted,
        Self::Routed,
        Self::DeliveryAttempt,
        Self::RetryScheduled,
        Self::Parked,
        Self::Delivered,
        Self::ReplyCorrelated,
        Self::Replayed,
        Self::Discarded,
        Self::Recovered,
        Self::PayloadViewed,
        Self::ConfigRefused,
        Self::Archived,
        Self::SubjectSearched,
        Self::SubjectReported,
        Self::KeyRotated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigLoaded => "config_loaded",
            Self::Received => "received",
            Self::Rejected => "rejected",
            Self::Duplicate => "duplicate",
            Self::Accepted => "accepted",
            Self::Routed => "routed",
            Self::DeliveryAttempt => "delivery_attempt",
            Self::RetryScheduled => "retry_scheduled",
            Self::Parked => "parked",
            Self::Delivered => "delivered",
            Self::ReplyCorrelated => "reply_correlated",
            Self::Replayed => "replayed",
            Self::Discarded => "discarded",
            Self::Recovered => "recovered",
            Self::PayloadViewed => "payload_viewed",
            Self::ConfigRefused => "config_refused",
            Self::Archived => "archived",
            Self::SubjectSearched => "subject_searched",
            Self::SubjectReported => "subject_reported",
            Self::KeyRotated => "key_rotated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// The outcome of the `received` record of a message that was accepted: that one record also
/// says where it was routed (`destination`: the destinations, comma-separated; `reason`: the
/// routes that chose them). Chains written before it was so hold three records for the same
/// step — `received`, `accepted` and `routed` — and are read alike (see [`accepted`]).
pub const ACCEPTED: &str = "accepted";

/// Whether a record says its message was accepted: an `accepted` record (as older chains
/// hold), or a `received` record with the outcome [`ACCEPTED`].
pub fn accepted(e: &Entry) -> bool {
    e.event == Event::Accepted
        || (e.event == Event::Received && e.outcome.as_deref() == Some(ACCEPTED))
}

/// Whether a record accounts for one delivery attempt: a `delivery_attempt` record, or a
/// `delivered` record that carries the hash of the bytes sent (the attempt that delivered is
/// recorded once, as the delivery). Older chains hold both records for it, their `delivered`
/// records without a hash; a delivery made at intake (a confirmed publish to the partner's
/// exchange) has none either.
pub fn attempted(e: &Entry) -> bool {
    e.event == Event::DeliveryAttempt || (e.event == Event::Delivered && e.payload_sha256.is_some())
}

/// One step, as the shell reports it (the store adds sequence, chain and hashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub event: Event,
    /// RFC 3339, UTC, from the shell's clock.
    pub at: String,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub message_type: Option<String>,
    /// SHA-256 (hex) of the exact payload bytes received or delivered.
    pub payload_sha256: Option<String>,
    /// e.g. `ok`, `http 503`, `refused`, a problem slug.
    pub outcome: Option<String>,
    /// A reason code or short text that never holds message content.
    pub reason: Option<String>,
    /// Who: `gateway`, or the operator for replays, discards and reloads.
    pub actor: Option<String>,
    /// HMAC-SHA256 (hex) of the person's identifier.
    pub subject_ref: Option<String>,
    /// The W3C trace id (32 hex digits) of the trace the step belongs to. Records that carry
    /// one hash as version 2 (the field after `subject_ref`); records without one hash as
    /// they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl Entry {
    /// The entry's fields in their hashed (and exported) order, from `event` to `subject_ref`.
    pub fn fields(&self) -> [Option<&str>; 12] {
        [
            Some(self.event.as_str()),
            Some(self.at.as_str()),
            self.message_id.as_deref(),
            self.correlation_id.as_deref(),
            self.source.as_deref(),
            self.destination.as_deref(),
            self.message_type.as_deref(),
            self.payload_sha256.as_deref(),
            self.outcome.as_deref(),
            self.reason.as_deref(),
            self.actor.as_deref(),
            self.subject_ref.as_deref(),
        ]
    }

    /// An entry with only the event and the time set.
    pub fn new(event: Event, at: impl Into<String>) -> Self {
        Self {
            event,
            at: at.into(),
            message_id: None,
            correlation_id: None,
            source: None,
            destination: None,
            message_type: None,
            payload_sha256: None,
            outcome: None,
            reason: None,
            actor: None,
            subject_ref: None,
            trace_id: None,
        }
    }
}

/// A stored record: an entry placed in its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub chain_id: String,
    #[serde(flatten)]
    pub entry: Entry,
    pub prev_hash: String,
    pub hash: String,
}

/// Lower-case hex, as every hash of the chain is written.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// The keyed reference to a person: HMAC-SHA256 or HMAC-SM3 (by suite) of the person id
/// under the subject key, hex.
pub fn subject_ref(suite: Suite, key: &[u8], person_id: &str) -> String {
    match suite {
        Suite::Sha256Ed25519 => {
            let k = hmac::Key::new(hmac::HMAC_SHA256, key);
            hex(hmac::sign(&k, person_id.as_bytes()).as_ref())
        }
        Suite::Sm3Sm2 => {
            use ::hmac::Mac as _;
            // HMAC takes a key of any length: `new_from_slice` cannot fail.
            let Ok(mut mac) = ::hmac::Hmac::<sm3::Sm3>::new_from_slice(key) else {
                return String::new();
            };
            mac.update(person_id.as_bytes());
            hex(&mac.finalize().into_bytes())
        }
    }
}

fn field(ctx: &mut Hasher, v: Option<&str>) {
    match v {
        Some(s) => {
            ctx.update(&[1]);
            ctx.update(&u64::try_from(s.len()).unwrap_or(u64::MAX).to_be_bytes());
            ctx.update(s.as_bytes());
        }
        None => ctx.update(&[0]),
    }
}

/// The hash of a record with these contents in this chain after `prev_hash`, under the
/// chain's suite (each suite with a domain tag of its own).
pub fn record_hash(suite: Suite, chain_id: &str, e: &Entry, prev_hash: &str) -> String {
    let mut ctx = Hasher::new(suite);
    // Version 2 adds the trace id; a record without one is a version 1 record.
    ctx.update(match (suite, e.trace_id.is_some()) {
        (Suite::Sha256Ed25519, false) => b"wingspan-audit/v1".as_slice(),
        (Suite::Sha256Ed25519, true) => b"wingspan-audit/v2".as_slice(),
        (Suite::Sm3Sm2, false) => b"wingspan-audit/sm3/v1".as_slice(),
        (Suite::Sm3Sm2, true) => b"wingspan-audit/sm3/v2".as_slice(),
    });
    let trace = e.trace_id.as_deref().map(Some);
    let fields = std::iter::once(Some(chain_id))
        .chain(e.fields())
        .chain(trace)
        .chain([Some(prev_hash)]);
    for v in fields {
        field(&mut ctx, v);
    }
    ctx.finish_hex()
}

/// The head of a chain: what the next record links to and is numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub chain_id: String,
    pub suite: Suite,
    pub next_seq: u64,
    pub last_hash: String,
}

impl Head {
    pub fn new(chain_id: impl Into<String>, suite: Suite) -> Self {
        Self {
            chain_id: chain_id.into(),
            suite,
            next_seq: 1,
            last_hash: GENESIS.into(),
        }
    }

    /// Place an entry at the head; the head moves on.
    pub fn append(&mut self, entry: Entry) -> Record {
        let hash = record_hash(self.suite, &self.chain_id, &entry, &self.last_hash);
        let r = Record {
            seq: self.next_seq,
            chain_id: self.chain_id.clone(),
            entry,
            prev_hash: std::mem::replace(&mut self.last_hash, hash.clone()),
            hash,
        };
        self.next_seq += 1;
        r
    }
}

/// A signed statement: "record `seq` of `chain_id` has hash `hash`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub chain_id: String,
    pub seq: u64,
    pub hash: String,
    pub signed_at: String,
    /// Hex of the public key that signed: 32 bytes for Ed25519, the 65-byte uncompressed
    /// SEC 1 point for SM2.
    pub key_id: String,
    /// Hex of the signature: 64 bytes for either algorithm (SM2 as r ‖ s).
    pub signature: String,
}

fn checkpoint_message(chain_id: &str, seq: u64, hash: &str, signed_at: &str) -> Vec<u8> {
    format!("wingspan-audit-checkpoint/v1\n{chain_id}\n{seq}\n{hash}\n{signed_at}").into_bytes()
}

impl Checkpoint {
    /// The statement the checkpoint's signature covers (and a time-stamp's imprint hashes).
    pub fn message(&self) -> Vec<u8> {
        checkpoint_message(&self.chain_id, self.seq, &self.hash, &self.signed_at)
    }
}

/// A checkpoint signing key of one suite: Ed25519 from a 32-byte seed, or SM2 from its
/// 32-byte private scalar (hex in the environment or a key file).
pub struct SigningKey(Key);

enum Key {
    Ed25519(signature::Ed25519KeyPair),
    Sm2(Box<sm2::dsa::SigningKey>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {})", self.suite(), self.public_hex())
    }
}

impl SigningKey {
    /// From the 32-byte secret, given as 64 hex digits: an Ed25519 seed, or an SM2 private
    /// scalar (which must lie in [1, n − 1]: almost every random 32 bytes do).
    pub fn from_seed_hex(suite: Suite, seed: &str) -> Option<Self> {
        let bytes = unhex(seed.trim())?;
        match suite {
            Suite::Sha256Ed25519 => signature::Ed25519KeyPair::from_seed_unchecked(&bytes)
                .ok()
                .map(|k| Self(Key::Ed25519(k))),
            Suite::Sm3Sm2 => {
                if bytes.len() != 32 {
                    return None;
                }
                sm2::dsa::SigningKey::from_slice(SM2_DEFAULT_ID, &bytes)
                    .ok()
                    .map(|k| Self(Key::Sm2(Box::new(k))))
            }
        }
    }

    pub fn suite(&self) -> Suite {
        match self.0 {
            Key::Ed25519(_) => Suite::Sha256Ed25519,
            Key::Sm2(_) => Suite::Sm3Sm2,
        }
    }

    pub fn public_hex(&self) -> String {
        match &self.0 {
            Key::Ed25519(k) => {
                use signature::KeyPair;
                hex(k.public_key().as_ref())
            }
            Key::Sm2(k) => hex(&k.verifying_key().to_sec1_bytes()),
        }
    }

    fn sign(&self, message: &[u8]) -> String {
        match &self.0 {
            Key::Ed25519(k) => hex(k.sign(message).as_ref()),
            Key::Sm2(k) => {
                let sig: sm2::dsa::Signature = k.sign(message);
                hex(&sig.to_bytes())
            }
        }
    }

    /// Sign the head of a chain.
    pub fn checkpoint(&self, chain_id: &str, seq: u64, hash: &str, signed_at: &str) -> Checkpoint {
        Checkpoint {
            chain_id: chain_id.into(),
            seq,
            hash: hash.into(),
            signed_at: signed_at.into(),
            key_id: self.public_hex(),
            signature: self.sign(&checkpoint_message(chain_id, seq, hash, signed_at)),
        }
    }
}

/// Whether `signature_hex` signs `message` under the public key `public_hex`, whose form
/// names its algorithm: 32 bytes Ed25519, a SEC 1 point SM2 (with [`SM2_DEFAULT_ID`]).
/// The key is always the one the verifier trusts, never one a record names about itself.
pub fn signed_by(message: &[u8], signature_hex: &str, public_hex: &str) -> bool {
    let (Some(key), Some(sig)) = (unhex(public_hex.trim()), unhex(signature_hex)) else {
        return false;
    };
    if key.len() == 32 {
        return signature::UnparsedPublicKey::new(&signature::ED25519, key)
            .verify(message, &sig)
            .is_ok();
    }
    let (Ok(vk), Ok(sig)) = (
        sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DEFAULT_ID, &key),
        sm2::dsa::Signature::from_slice(&sig),
    ) else {
        return false;
    };
    vk.verify(message, &sig).is_ok()
}

/// The suite a public key (hex) belongs to, from its form; `None` if it is neither.
pub fn key_suite(public_hex: &str) -> Option<Suite> {
    match unhex(public_hex.trim())?.len() {
        32 => Some(Suite::Sha256Ed25519),
        33 | 65 => Some(Suite::Sm3Sm2),
        _ => None,
    }
}

/// What an archive segment's signature covers: the chain, the range, the links at both ends
/// and the records file's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHead<'a> {
    pub chain_id: &'a str,
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u64,
    pub start_prev_hash: &'a str,
    pub final_hash: &'a str,
    pub file_sha256: &'a str,
    pub sealed_at: &'a str,
}

impl SegmentHead<'_> {
    fn message(&self) -> Vec<u8> {
        format!(
            "wingspan-audit-segment/v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.chain_id,
            self.first_seq,
            self.last_seq,
            self.count,
            self.start_prev_hash,
            self.final_hash,
            self.file_sha256,
            self.sealed_at
        )
        .into_bytes()
    }
}

impl SigningKey {
    /// Sign an archive segment's head (hex signature).
    pub fn sign_segment(&self, head: &SegmentHead<'_>) -> String {
        self.sign(&head.message())
    }

    /// Sign any statement of the trail (an export's manifest, a key rotation): hex.
    pub fn sign_bytes(&self, message: &[u8]) -> String {
        self.sign(message)
    }
}

/// Whether a segment's signature is valid under the trusted public key (hex).
pub fn segment_signed_by(head: &SegmentHead<'_>, signature_hex: &str, public_hex: &str) -> bool {
    signed_by(&head.message(), signature_hex, public_hex)
}

/// Whether a checkpoint's signature is valid under the trusted public key (hex).
pub fn checkpoint_signed_by(c: &Checkpoint, public_hex: &str) -> bool {
    signed_by(
        &checkpoint_message(&c.chain_id, c.seq, &c.hash, &c.signed_at),
        &c.signature,
        public_hex,
    )
}

/// A hand-over of the chain from one signing key to the next, made at record `seq` (the
/// `key_rotated` record itself): checkpoints below `seq` are signed by `old_key`, from `seq`
/// on by `new_key`. Both keys sign the statement, so a verifier that trusts either key comes
/// to trust the other for its own records, and nobody holding only one key can make one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub chain_id: String,
    pub seq: u64,
    pub at: String,
    pub old_key: String,
    pub new_key: String,
    pub by_old: String,
    pub by_new: String,
}

impl Rotation {
    fn message(chain_id: &str, seq: u64, at: &str, old_key: &str, new_key: &str) -> Vec<u8> {
        format!("wingspan-audit-rotation/v1\n{chain_id}\n{seq}\n{at}\n{old_key}\n{new_key}")
            .into_bytes()
    }

    /// The statement that `old` hands `chain_id` over to `new` at record `seq`, signed by both.
    pub fn sign(chain_id: &str, seq: u64, at: &str, old: &SigningKey, new: &SigningKey) -> Self {
        let (old_key, new_key) = (old.public_hex(), new.public_hex());
        let message = Self::message(chain_id, seq, at, &old_key, &new_key);
        Self {
            chain_id: chain_id.into(),
            seq,
            at: at.into(),
            by_old: old.sign(&message),
            by_new: new.sign(&message),
            old_key,
            new_key,
        }
    }

    /// Both signatures hold, under two keys of one algorithm.
    pub fn valid(&self) -> bool {
        let message = Self::message(
            &self.chain_id,
            self.seq,
            &self.at,
            &self.old_key,
            &self.new_key,
        );
        key_suite(&self.old_key).is_some()
            && key_suite(&self.old_key) == key_suite(&self.new_key)
            && signed_by(&message, &self.by_old, &self.old_key)
            && signed_by(&message, &self.by_new, &self.new_key)
    }

    /// The `key_rotated` entry that records it in the chain (its seq must be `self.seq`).
    pub fn entry(&self, actor: &str) -> Entry {
        let mut e = Entry::new(Event::KeyRotated, self.at.clone());
        e.actor = Some(actor.into());
        e.reason = Some(format!(
            "old={} new={} by-old={} by-new={}",
            self.old_key, self.new_key, self.by_old, self.by_new
        ));
        e
    }

    /// The rotation a `key_rotated` record states; `None` for any other record or one whose
    /// statement is not in the form [`Rotation::entry`] writes.
    pub fn from_record(r: &Record) -> Option<Self> {
        if r.entry.event != Event::KeyRotated {
            return None;
        }
        let mut fields = r.entry.reason.as_deref()?.split(' ');
        let mut take = |name: &str| {
            fields
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_owned)
        };
        let (old_key, new_key, by_old, by_new) =
            (take("old")?, take("new")?, take("by-old")?, take("by-new")?);
        Some(Self {
            chain_id: r.chain_id.clone(),
            seq: r.seq,
            at: r.entry.at.clone(),
            old_key,
            new_key,
            by_old,
            by_new,
        })
    }
}

/// The key in force over each stretch of a chain, from a key the verifier trusts and the
/// chain's rotations: `epochs[i]` = (first seq, public key). Trust passes along every valid
/// rotation, both ways; a rotation whose signatures fail, or whose old key is not the key
/// then in force, is set aside (and reported), so what follows it is checked against the
/// key before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    epochs: Vec<(u64, String)>,
    trusted: bool,
    bad_rotations: Vec<u64>,
}

impl Trust {
    pub fn new(chain_id: &str, trusted_key: &str, rotations: &[Rotation]) -> Self {
        let trusted_key = trusted_key.trim();
        let mut rots: Vec<&Rotation> = rotations
            .iter()
            .filter(|r| r.chain_id == chain_id)
            .collect();
        rots.sort_by_key(|r| r.seq);
        rots.dedup_by(|a, b| a == b);
        let mut bad_rotations = Vec::new();
        let mut epochs: Vec<(u64, String)> = Vec::new();
        for r in rots {
            if !r.valid() {
                bad_rotations.push(r.seq);
                continue;
            }
            match epochs.last() {
                None => epochs.push((0, r.old_key.clone())),
                Some((_, key)) if *key != r.old_key => {
                    bad_rotations.push(r.seq);
                    continue;
                }
                Some(_) => {}
            }
            epochs.push((r.seq, r.new_key.clone()));
        }
        if epochs.is_empty() {
            epochs.push((0, trusted_key.to_owned()));
        }
        Self {
            trusted: epochs.iter().any(|(_, k)| k == trusted_key),
            epochs,
            bad_rotations,
        }
    }

    fn epoch_at(&self, seq: u64) -> usize {
        self.epochs
            .iter()
            .rposition(|(from, _)| *from <= seq)
            .unwrap_or(0)
    }

    /// The trusted key in force at `seq`; `None` if the verifier's key is not of this chain.
    pub fn key_at(&self, seq: u64) -> Option<&str> {
        self.trusted
            .then(|| self.epochs[self.epoch_at(seq)].1.as_str())
    }

    /// The trusted keys in force at `seq` or later (what may seal a segment ending at `seq`).
    pub fn keys_from(&self, seq: u64) -> impl Iterator<Item = &str> {
        let from = if self.trusted {
            self.epoch_at(seq)
        } else {
            self.epochs.len()
        };
        self.epochs[from..].iter().map(|(_, k)| k.as_str())
    }

    /// Rotations applied (valid and in order).
    pub fn rotations(&self) -> u64 {
        u64::try_from(self.epochs.len().saturating_sub(1)).unwrap_or(u64::MAX)
    }

    /// Rotations set aside: signatures that fail, or an old key that was not in force.
    pub fn bad_rotations(&self) -> &[u64] {
        &self.bad_rotations
    }
}

/// The key a chain is signed by now, as its own records say: the newest rotation's new key
/// among `tail` (the records since the last checkpoint), else the last checkpoint's key.
pub fn current_key(last_checkpoint_key: Option<&str>, tail: &[Record]) -> Option<String> {
    tail.iter()
        .rev()
        .find_map(Rotation::from_record)
        .map(|r| r.new_key)
        .or_else(|| last_checkpoint_key.map(str::to_owned))
}

/// What verification found wrong first, located by sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The record's contents no longer match its hash.
    Modified { seq: u64 },
    /// One or more records are missing before `seq` (or, with `seq` = last + 1, at the end,
    /// as a checkpoint proves).
    Deleted { seq: u64 },
    /// The record was not in the chain where it stands.
    Inserted { seq: u64 },
    /// The record stands somewhere other than where it was written.
    Reordered { seq: u64 },
    /// The chain was rewritten up to a signed checkpoint: the record at `seq` does not have
    /// the hash the checkpoint signed.
    RewrittenBeforeCheckpoint { seq: u64 },
}

/// The outcome of verifying one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub chain_id: String,
    /// The suite the chain was checked under.
    pub suite: Suite,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
    pub checkpoints: u64,
    /// The first problem in chain order, if any.
    pub finding: Option<Finding>,
    /// Sequence numbers of checkpoints whose signature fails under the key trusted for them.
    pub bad_signatures: Vec<u64>,
    /// Key rotations followed.
    pub key_rotations: u64,
    /// Sequence numbers of `key_rotated` records that could not be followed: a signature
    /// that fails, a statement that does not parse, or an old key that was not in force.
    pub bad_rotations: Vec<u64>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.finding.is_none() && self.bad_signatures.is_empty() && self.bad_rotations.is_empty()
    }
}

/// Verify one chain's records (in storage order, i.e. by `seq`) and its checkpoints.
/// `start_prev` is what the first record must link to: [`GENESIS`] for a whole chain, or
/// the hash before an exported range.
pub fn verify(
    suite: Suite,
    chain_id: &str,
    records: &[Record],
    checkpoints: &[Checkpoint],
    trusted_key: Option<&str>,
    start_prev: &str,
) -> Report {
    let mut v = Verifier::new(suite, chain_id, checkpoints, trusted_key, start_prev);
    for r in records {
        v.push(r);
    }
    v.finish(|hash| {
        let j = records.iter().position(|r| r.hash == hash)?;
        Some((j, records.get(j + 1).map(|r| r.seq)))
    })
}

/// [`verify`] one record at a time, in storage order, holding no more than the record at hand
/// (and, per checkpoint, the hash found at its seq): a chain of millions of records is
/// verified in constant memory. Signatures are checked at the end, once the chain's key
/// rotations are known. Only when the chain breaks does [`Verifier::finish`] ask the caller
/// to find one hash (a second pass) to name the break.
#[derive(Debug)]
pub struct Verifier {
    suite: Suite,
    chain_id: String,
    /// The hash the next record must name as its predecessor.
    expected: String,
    seen: usize,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    /// This chain's checkpoints, and the seqs they sign.
    checkpoints: Vec<Checkpoint>,
    signed_seqs: std::collections::HashSet<u64>,
    /// How many checkpoints were given (all chains').
    given: u64,
    /// The record hash found at each checkpoint's seq.
    reached: std::collections::HashMap<u64, String>,
    trusted_key: Option<String>,
    /// Rotations met in the records, and any known from elsewhere (earlier in the chain).
    rotations: Vec<Rotation>,
    /// `key_rotated` records whose statement does not parse.
    unreadable_rotations: Vec<u64>,
    modified: Option<u64>,
    /// The first record that does not follow its predecessor: (position, seq, prev_hash).
    broken: Option<(usize, u64, String)>,
}

impl Verifier {
    pub fn new(
        suite: Suite,
        chain_id: &str,
        checkpoints: &[Checkpoint],
        trusted_key: Option<&str>,
        start_prev: &str,
    ) -> Self {
        let given = u64::try_from(checkpoints.len()).unwrap_or(u64::MAX);
        let checkpoints: Vec<Checkpoint> = checkpoints
            .iter()
            .filter(|c| c.chain_id == chain_id)
            .cloned()
            .collect();
        Self {
            suite,
            chain_id: chain_id.to_owned(),
            expected: start_prev.to_owned(),
            seen: 0,
            first_seq: None,
            last_seq: None,
            signed_seqs: checkpoints.iter().map(|c| c.seq).collect(),
            checkpoints,
            given,
            reached: std::collections::HashMap::new(),
            trusted_key: trusted_key.map(|k| k.trim().to_owned()),
            rotations: Vec::new(),
            unreadable_rotations: Vec::new(),
            modified: None,
            broken: None,
        }
    }

    /// Rotations of this chain known from outside the records at hand (a segment or export
    /// verified on its own, when the chain's keys changed after it).
    pub fn knowing(mut self, rotations: &[Rotation]) -> Self {
        self.rotations.extend_from_slice(rotations);
        self
    }

    /// The rotations met so far (and those known beforehand).
    pub fn rotations(&self) -> &[Rotation] {
        &self.rotations
    }

    /// The next record in storage order.
    pub fn push(&mut self, r: &Record) {
        let i = self.seen;
        self.seen += 1;
        self.first_seq.get_or_insert(r.seq);
        self.last_seq = Some(r.seq);
        if self.signed_seqs.contains(&r.seq) {
            self.reached.entry(r.seq).or_insert_with(|| r.hash.clone());
        }
        if r.entry.event == Event::KeyRotated {
            match Rotation::from_record(r) {
                Some(rot) => self.rotations.push(rot),
                None => self.unreadable_rotations.push(r.seq),
            }
        }
        if self.modified.is_none() && self.broken.is_none() {
            if record_hash(self.suite, &r.chain_id, &r.entry, &r.prev_hash) != r.hash
                || r.chain_id != self.chain_id
            {
                self.modified = Some(r.seq);
            } else if r.prev_hash != self.expected {
                self.broken = Some((i, r.seq, r.prev_hash.clone()));
            }
        }
        r.hash.clone_into(&mut self.expected);
    }

    /// If the chain broke where a record does not follow its predecessor: the hash that
    /// record names, which [`Verifier::finish`]'s `locate` will be asked to find.
    pub fn broken_link(&self) -> Option<&str> {
        match (self.modified, &self.broken) {
            (None, Some((_, _, prev))) => Some(prev),
            _ => None,
        }
    }

    /// The report. `locate(hash)` is asked only if the chain broke: the position of the record
    /// with that hash, and the seq of the record after it, if any.
    pub fn finish(self, locate: impl FnOnce(&str) -> Option<(usize, Option<u64>)>) -> Report {
        let chain = match (self.modified, &self.broken) {
            (Some(seq), _) => Some(Finding::Modified { seq }),
            (None, Some((i, seq, prev))) => Some(match locate(prev) {
                // Its predecessor stands earlier: what stands between was put there.
                Some((j, next)) if j + 1 < *i => Finding::Inserted {
                    seq: next.unwrap_or(*seq),
                },
                // Its predecessor stands later: moved.
                Some(_) => Finding::Reordered { seq: *seq },
                None if *i == 0 && prev == GENESIS => Finding::Inserted { seq: *seq },
                None => Finding::Deleted { seq: *seq },
            }),
            (None, None) => None,
        };
        // Signatures, each under the key in force at its seq; only good checkpoints count.
        let trust = self
            .trusted_key
            .as_deref()
            .map(|k| Trust::new(&self.chain_id, k, &self.rotations));
        let mut bad_signatures = Vec::new();
        let (mut rewritten, mut cut) = (None::<u64>, false);
        for c in &self.checkpoints {
            if let Some(t) = &trust
                && !t.key_at(c.seq).is_some_and(|k| checkpoint_signed_by(c, k))
            {
                bad_signatures.push(c.seq);
                continue;
            }
            match self.reached.get(&c.seq) {
                // The chain was rewritten up to a checkpoint.
                Some(h) if *h != c.hash => {
                    rewritten = Some(rewritten.map_or(c.seq, |s| s.min(c.seq)));
                }
                Some(_) => {}
                // A checkpoint past the last record: records after it were cut away.
                None => cut |= self.last_seq.is_some_and(|l| l < c.seq),
            }
        }
        bad_signatures.sort_unstable();
        let mut bad_rotations = self.unreadable_rotations;
        if let Some(t) = &trust {
            bad_rotations.extend_from_slice(t.bad_rotations());
        }
        bad_rotations.sort_unstable();
        bad_rotations.dedup();
        let finding = chain.or(match (rewritten, cut) {
            (Some(seq), _) => Some(Finding::RewrittenBeforeCheckpoint { seq }),
            (None, true) => Some(Finding::Deleted {
                seq: self.last_seq.map_or(0, |l| l + 1),
            }),
            (None, false) => None,
        });
        Report {
            suite: self.suite,
            chain_id: self.chain_id,
            records: u64::try_from(self.seen).unwrap_or(u64::MAX),
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            last_hash: (self.seen > 0).then_some(self.expected),
            checkpoints: self.given,
            finding,
            bad_signatures,
            key_rotations: trust.as_ref().map_or(0, Trust::rotations),
            bad_rotations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    fn chain(suite: Suite, n: usize) -> Vec<Record> {
        let mut head = Head::new("gw-1", suite);
        (0..n)
            .map(|i| {
                let mut e = Entry::new(Event::Accepted, format!("2026-11-29T10:00:{i:02}Z"));
                e.message_id = Some(format!("m-{i}"));
                head.append(e)
            })
            .collect()
    }

    fn finding(suite: Suite, records: &[Record]) -> Option<Finding> {
        verify(suite, "gw-1", records, &[], None, GENESIS).finding
    }

    #[test]
    fn an_untouched_chain_verifies_under_its_own_suite_only() {
        for suite in Suite::ALL {
            let records = chain(suite, 10);
            let r = verify(suite, "gw-1", &records, &[], None, GENESIS);
            assert!(r.ok(), "{suite}");
            assert_eq!((r.records, r.last_seq, r.suite), (10, Some(10), suite));
            let other = Suite::ALL.into_iter().find(|s| *s != suite).expect("two");
            assert_eq!(
                finding(other, &records),
                Some(Finding::Modified { seq: 1 }),
                "{suite} checked as {other}"
            );
        }
        let (sha, sm3) = (chain(Suite::Sha256Ed25519, 1), chain(Suite::Sm3Sm2, 1));
        assert_ne!(sha[0].hash, sm3[0].hash);
        assert_eq!(sm3[0].hash.len(), 64);
    }

    #[test]
    fn a_trace_id_is_hashed_as_record_version_2_and_older_records_hash_as_before() {
        // The first record of `chain` as every store written before traces holds it.
        let v1 = chain(Suite::Sha256Ed25519, 1).remove(0);
        assert_eq!(
            v1.hash,
            "68ed276746e84f95048bb249a93f3836f77044830072bf5babeea82eb51be696"
        );
        for suite in Suite::ALL {
            let mut head = Head::new("gw-1", suite);
            let mut records = chain(suite, 3);
            let last = records[2].hash.clone();
            head.next_seq = 4;
            head.last_hash = last;
            let mut traced = Entry::new(Event::Delivered, "2026-11-29T10:00:03Z");
            traced.message_id = Some("m-3".into());
            traced.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
            let mut untraced = traced.clone();
            untraced.trace_id = None;
            let with = head.clone().append(traced);
            assert_ne!(with.hash, head.clone().append(untraced).hash);
            records.push(with);
            assert!(
                verify(suite, "gw-1", &records, &[], None, GENESIS).ok(),
                "{suite}"
            );
            // Changing, dropping or adding a trace id is a modification.
            let mut changed = records.clone();
            changed[3].entry.trace_id = Some("00000000000000000000000000000001".into());
            assert_eq!(finding(suite, &changed), Some(Finding::Modified { seq: 4 }));
            let mut dropped = records.clone();
            dropped[3].entry.trace_id = None;
            assert_eq!(finding(suite, &dropped), Some(Finding::Modified { seq: 4 }));
            let mut added = records.clone();
            added[1].entry.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
            assert_eq!(finding(suite, &added), Some(Finding::Modified { seq: 2 }));
        }
    }

    #[test]
    fn each_kind_of_tampering_is_named_at_the_right_record() {
        for suite in Suite::ALL {
            let mut modified = chain(suite, 10);
            modified[4].entry.outcome = Some("forged".into());
            assert_eq!(
                finding(suite, &modified),
                Some(Finding::Modified { seq: 5 })
            );

            let mut deleted = chain(suite, 10);
            deleted.remove(4);
            assert_eq!(finding(suite, &deleted), Some(Finding::Deleted { seq: 6 }));

            let mut inserted = chain(suite, 10);
            let mut forged = Entry::new(Event::Delivered, "2026-11-29T10:00:04Z");
            forged.message_id = Some("m-x".into());
            let prev = inserted[3].hash.clone();
            let hash = record_hash(suite, "gw-1", &forged, &prev);
            inserted.insert(
                4,
                Record {
                    seq: 5,
                    chain_id: "gw-1".into(),
                    entry: forged,
                    prev_hash: prev,
                    hash,
                },
            );
            for (i, r) in inserted.iter_mut().enumerate() {
                r.seq = u64::try_from(i).expect("small") + 1;
            }
            assert_eq!(
                finding(suite, &inserted),
                Some(Finding::Inserted { seq: 5 })
            );

            let mut reordered = chain(suite, 10);
            reordered.swap(4, 5);
            assert_eq!(
                finding(suite, &reordered),
                Some(Finding::Reordered { seq: 6 })
            );
        }
    }

    #[test]
    fn checkpoints_catch_rewrites_truncation_and_bad_signatures() {
        for suite in Suite::ALL {
            let key = SigningKey::from_seed_hex(suite, SEED).expect("key");
            assert_eq!(key.suite(), suite);
            assert_eq!(key_suite(&key.public_hex()), Some(suite));
            let records = chain(suite, 10);
            let cp = key.checkpoint("gw-1", 8, &records[7].hash, "2026-11-29T10:01:00Z");
            let public = key.public_hex();
            let check = |records: &[Record], cps: &[Checkpoint]| {
                verify(suite, "gw-1", records, cps, Some(&public), GENESIS)
            };
            assert!(check(&records, std::slice::from_ref(&cp)).ok(), "{suite}");

            // Truncated after the checkpoint's record: the checkpoint proves the loss.
            let r = check(&records[..6], std::slice::from_ref(&cp));
            assert_eq!(r.finding, Some(Finding::Deleted { seq: 7 }));

            // A whole rewritten chain (every hash recomputed) still contradicts the signature.
            let mut head = Head::new("gw-1", suite);
            let rewritten: Vec<Record> = records
                .iter()
                .map(|r| {
                    let mut e = r.entry.clone();
                    if r.seq == 3 {
                        e.outcome = Some("forged".into());
                    }
                    head.append(e)
                })
                .collect();
            let r = check(&rewritten, std::slice::from_ref(&cp));
            assert_eq!(
                r.finding,
                Some(Finding::RewrittenBeforeCheckpoint { seq: 8 })
            );

            // A checkpoint re-signed with another key (of either suite), or altered, fails
            // its signature.
            let forged: Vec<Checkpoint> = Suite::ALL
                .into_iter()
                .map(|s| {
                    let other = SigningKey::from_seed_hex(s, &"11".repeat(32)).expect("key");
                    other.checkpoint("gw-1", 8, &records[7].hash, "2026-11-29T10:01:00Z")
                })
                .collect();
            let mut altered = cp.clone();
            altered.seq = 9;
            let mut all = forged;
            all.push(altered);
            let r = check(&records, &all);
            assert_eq!(r.bad_signatures, vec![8, 8, 9], "{suite}");
        }
    }

    /// A chain of 12 records whose key is rotated at seq 7, checkpoints at 6 (old key) and
    /// 7 and 12 (new key).
    fn rotated(suite: Suite) -> (Vec<Record>, Vec<Checkpoint>, SigningKey, SigningKey) {
        let old = SigningKey::from_seed_hex(suite, SEED).expect("old");
        let new = SigningKey::from_seed_hex(
            suite,
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        )
        .expect("new");
        let mut head = Head::new("gw-1", suite);
        let mut records: Vec<Record> = (0..6)
            .map(|i| {
                head.append(Entry::new(
                    Event::Accepted,
                    format!("2026-12-06T10:00:0{i}Z"),
                ))
            })
            .collect();
        let mut cps = vec![old.checkpoint("gw-1", 6, &head.last_hash, "2026-12-06T10:00:06Z")];
        let rot = Rotation::sign("gw-1", head.next_seq, "2026-12-06T10:00:07Z", &old, &new);
        records.push(head.append(rot.entry("operator")));
        cps.push(new.checkpoint("gw-1", 7, &head.last_hash, "2026-12-06T10:00:07Z"));
        records.extend(
            (0..5).map(|_| head.append(Entry::new(Event::Delivered, "2026-12-06T10:00:08Z"))),
        );
        cps.push(new.checkpoint("gw-1", 12, &head.last_hash, "2026-12-06T10:00:09Z"));
        (records, cps, old, new)
    }

    #[test]
    fn verification_follows_key_rotations_from_either_key() {
        for suite in Suite::ALL {
            let (records, cps, old, new) = rotated(suite);
            assert_eq!(
                Rotation::from_record(&records[6]).map(|r| r.valid()),
                Some(true)
            );
            for trusted in [old.public_hex(), new.public_hex()] {
                let r = verify(suite, "gw-1", &records, &cps, Some(&trusted), GENESIS);
                assert!(r.ok(), "{suite}: {r:?}");
                assert_eq!(r.key_rotations, 1);
            }
            // A key the chain never had: every checkpoint fails.
            let stranger = SigningKey::from_seed_hex(suite, &"11".repeat(32)).expect("key");
            let r = verify(
                suite,
                "gw-1",
                &records,
                &cps,
                Some(&stranger.public_hex()),
                GENESIS,
            );
            assert_eq!(r.bad_signatures, vec![6, 7, 12]);
            // The old key goes on signing after it handed over: refused.
            let mut late = cps.clone();
            late[2] = old.checkpoint("gw-1", 12, &records[11].hash, "2026-12-06T10:00:09Z");
            let r = verify(
                suite,
                "gw-1",
                &records,
                &late,
                Some(&old.public_hex()),
                GENESIS,
            );
            assert_eq!(r.bad_signatures, vec![12]);
            // A segment verified on its own, before the rotation, with the new key: the
            // rotation known from the rest of the chain carries the trust back.
            let rot = Rotation::from_record(&records[6]).expect("rotation");
            let mut v = Verifier::new(suite, "gw-1", &cps[..1], Some(&new.public_hex()), GENESIS)
                .knowing(std::slice::from_ref(&rot));
            records[..6].iter().for_each(|r| v.push(r));
            assert!(v.finish(|_| None).ok(), "{suite}");
            let trust = Trust::new("gw-1", &new.public_hex(), std::slice::from_ref(&rot));
            assert_eq!(trust.keys_from(6).count(), 2);
            assert_eq!(
                trust.keys_from(7).collect::<Vec<_>>(),
                vec![new.public_hex()]
            );
        }
    }

    #[test]
    fn a_rotation_signed_by_one_key_only_is_not_followed() {
        for suite in Suite::ALL {
            let (records, cps, old, _) = rotated(suite);
            // Someone holding only a key of their own writes a rotation to it; the chain is
            // re-hashed from there (as someone with the database, not the keys, could).
            let thief = SigningKey::from_seed_hex(suite, &"22".repeat(32)).expect("key");
            let mut forged = Rotation::from_record(&records[6]).expect("rotation");
            forged.new_key = thief.public_hex();
            forged.by_new = thief.sign_bytes(b"anything");
            let mut head = Head::new("gw-1", suite);
            let mut rewritten: Vec<Record> = records[..6]
                .iter()
                .map(|r| head.append(r.entry.clone()))
                .collect();
            rewritten.push(head.append(forged.entry("intruder")));
            let cps2 = vec![
                cps[0].clone(),
                thief.checkpoint("gw-1", 7, &head.last_hash, "2026-12-06T10:00:07Z"),
            ];
            let r = verify(
                suite,
                "gw-1",
                &rewritten,
                &cps2,
                Some(&old.public_hex()),
                GENESIS,
            );
            assert_eq!(
                (r.bad_rotations.clone(), r.bad_signatures.clone()),
                (vec![7], vec![7])
            );
            assert!(!r.ok());
            // A statement that does not parse is reported too.
            let mut garbled = records.clone();
            garbled[6].entry.reason = Some("old=zz".into());
            let r = verify(suite, "gw-1", &garbled, &[], None, GENESIS);
            assert!(r.bad_rotations.contains(&7));
        }
    }

    #[test]
    fn the_current_key_is_the_newest_rotations() {
        let (records, _, old, new) = rotated(Suite::Sha256Ed25519);
        assert_eq!(
            current_key(Some(&old.public_hex()), &records[6..]),
            Some(new.public_hex())
        );
        assert_eq!(
            current_key(Some(&old.public_hex()), &records[..6]),
            Some(old.public_hex())
        );
        assert_eq!(current_key(None, &[]), None);
    }

    #[test]
    fn subject_refs_are_keyed_per_suite() {
        for suite in Suite::ALL {
            let a = subject_ref(suite, b"key-1", "32041119900314002X");
            assert_eq!(a, subject_ref(suite, b"key-1", "32041119900314002X"));
            assert_ne!(a, subject_ref(suite, b"key-2", "32041119900314002X"));
            assert!(!a.contains("32041119900314002X"));
            assert_eq!(a.len(), 64);
        }
        assert_ne!(
            subject_ref(Suite::Sha256Ed25519, b"key-1", "p"),
            subject_ref(Suite::Sm3Sm2, b"key-1", "p")
        );
        assert_eq!(sha256_hex(b"abc").len(), 64);
    }

    /// GB/T 32905-2016 Appendix A, examples 1 and 2.
    #[test]
    fn sm3_matches_the_standards_examples() {
        assert_eq!(
            Suite::Sm3Sm2.digest_hex(b"abc"),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(
            Suite::Sm3Sm2.digest_hex("abcd".repeat(16).as_bytes()),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
        // HMAC-SM3 as OpenSSL computes it (`openssl dgst -sm3 -hmac key-1`).
        assert_eq!(
            subject_ref(Suite::Sm3Sm2, b"key-1", "32041119900314002X"),
            "a5239275adb24d4fa0cbdd205b7511d3bf417f8d79d6876eea6a0038a9eea9e8"
        );
    }

    /// GB/T 32918.5-2017 (GM/T 0003.5-2012) Appendix A: the key pair and the signature of
    /// "message digest" under user id 1234567812345678.
    #[test]
    fn sm2_matches_the_standards_signature_example() {
        let key = SigningKey::from_seed_hex(
            Suite::Sm3Sm2,
            "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8",
        )
        .expect("the example's private key");
        let public = key.public_hex();
        assert_eq!(
            public,
            "04\
             09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020\
             ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
        );
        let published = "f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3\
                         b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa";
        assert!(signed_by(b"message digest", published, &public));
        assert!(!signed_by(b"message digesT", published, &public));
        // Our own signature of it (deterministic k) verifies too, and differs from the
        // example's (which drew k at random).
        let ours = key.sign_bytes(b"message digest");
        assert!(signed_by(b"message digest", &ours, &public));
        assert_ne!(ours, published);
        assert!(SigningKey::from_seed_hex(Suite::Sm3Sm2, &"00".repeat(32)).is_none());
        assert!(SigningKey::from_seed_hex(Suite::Sm3Sm2, &"ff".repeat(32)).is_none());
    }

    #[test]
    fn suites_have_stable_names() {
        for suite in Suite::ALL {
            assert_eq!(Suite::parse(suite.as_str()), Some(suite));
            assert_eq!(
                serde_json::to_string(&suite).expect("json"),
                format!("\"{suite}\"")
            );
        }
        assert_eq!(Suite::default(), Suite::Sha256Ed25519);
        assert_eq!(Suite::parse("sm3"), None);
    }
}
