//! The audit trail's pure part: what a record holds, how it is hashed into its chain, how a
//! checkpoint is signed, and how a chain is verified — naming the first record that was
//! modified, deleted, inserted or reordered, and any checkpoint whose signature fails.
//!
//! A record never holds personal data: ids, types, destinations, outcomes, reason codes, the
//! SHA-256 of the exact payload bytes, and `subject_ref`, a keyed hash (HMAC-SHA256) of the
//! person's identifier that lets compliance find everything about one person without the
//! audit store ever holding the identifier.
//!
//! Hashing: `hash = SHA-256(chain_id, event, at, message_id, …, prev_hash)`, every field
//! length-prefixed (absent fields marked), hex-encoded. The sequence number is the storage
//! order and is not hashed: the links (`prev_hash`) are the order, so a renumbering shows up
//! as a reordering. The first record of a chain links to [`GENESIS`].

use ring::{digest, hmac, signature};
use serde::{Deserialize, Serialize};

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
}

impl Event {
    pub const ALL: [Event; 18] = [
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
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
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

/// The keyed reference to a person: HMAC-SHA256(key, person id), hex.
pub fn subject_ref(key: &[u8], person_id: &str) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex(hmac::sign(&k, person_id.as_bytes()).as_ref())
}

fn field(ctx: &mut digest::Context, v: Option<&str>) {
    match v {
        Some(s) => {
            ctx.update(&[1]);
            ctx.update(&u64::try_from(s.len()).unwrap_or(u64::MAX).to_be_bytes());
            ctx.update(s.as_bytes());
        }
        None => ctx.update(&[0]),
    }
}

/// The hash of a record with these contents in this chain after `prev_hash`.
pub fn record_hash(chain_id: &str, e: &Entry, prev_hash: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"wingspan-audit/v1");
    let fields = std::iter::once(Some(chain_id))
        .chain(e.fields())
        .chain([Some(prev_hash)]);
    for v in fields {
        field(&mut ctx, v);
    }
    hex(ctx.finish().as_ref())
}

/// The head of a chain: what the next record links to and is numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub chain_id: String,
    pub next_seq: u64,
    pub last_hash: String,
}

impl Head {
    pub fn new(chain_id: impl Into<String>) -> Self {
        Self {
            chain_id: chain_id.into(),
            next_seq: 1,
            last_hash: GENESIS.into(),
        }
    }

    /// Place an entry at the head; the head moves on.
    pub fn append(&mut self, entry: Entry) -> Record {
        let hash = record_hash(&self.chain_id, &entry, &self.last_hash);
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
    /// Hex of the Ed25519 public key that signed.
    pub key_id: String,
    /// Hex of the Ed25519 signature.
    pub signature: String,
}

fn checkpoint_message(chain_id: &str, seq: u64, hash: &str, signed_at: &str) -> Vec<u8> {
    format!("wingspan-audit-checkpoint/v1\n{chain_id}\n{seq}\n{hash}\n{signed_at}").into_bytes()
}

/// An Ed25519 signing key (from a 32-byte seed, hex in config or a key file).
pub struct SigningKey(signature::Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public_hex())
    }
}

impl SigningKey {
    /// From the 32-byte seed, given as 64 hex digits.
    pub fn from_seed_hex(seed: &str) -> Option<Self> {
        let bytes = unhex(seed.trim())?;
        signature::Ed25519KeyPair::from_seed_unchecked(&bytes)
            .ok()
            .map(Self)
    }

    pub fn public_hex(&self) -> String {
        use signature::KeyPair;
        hex(self.0.public_key().as_ref())
    }

    /// Sign the head of a chain.
    pub fn checkpoint(&self, chain_id: &str, seq: u64, hash: &str, signed_at: &str) -> Checkpoint {
        let sig = self
            .0
            .sign(&checkpoint_message(chain_id, seq, hash, signed_at));
        Checkpoint {
            chain_id: chain_id.into(),
            seq,
            hash: hash.into(),
            signed_at: signed_at.into(),
            key_id: self.public_hex(),
            signature: hex(sig.as_ref()),
        }
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
        hex(self.0.sign(&head.message()).as_ref())
    }
}

/// Whether a segment's signature is valid under the trusted public key (hex).
pub fn segment_signed_by(head: &SegmentHead<'_>, signature_hex: &str, public_hex: &str) -> bool {
    let (Some(key), Some(sig)) = (unhex(public_hex), unhex(signature_hex)) else {
        return false;
    };
    signature::UnparsedPublicKey::new(&signature::ED25519, key)
        .verify(&head.message(), &sig)
        .is_ok()
}

/// Whether a checkpoint's signature is valid under the trusted public key (hex).
pub fn checkpoint_signed_by(c: &Checkpoint, public_hex: &str) -> bool {
    let (Some(key), Some(sig)) = (unhex(public_hex), unhex(&c.signature)) else {
        return false;
    };
    signature::UnparsedPublicKey::new(&signature::ED25519, key)
        .verify(
            &checkpoint_message(&c.chain_id, c.seq, &c.hash, &c.signed_at),
            &sig,
        )
        .is_ok()
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
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
    pub checkpoints: u64,
    /// The first problem in chain order, if any.
    pub finding: Option<Finding>,
    /// Sequence numbers of checkpoints whose signature fails under the trusted key.
    pub bad_signatures: Vec<u64>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.finding.is_none() && self.bad_signatures.is_empty()
    }
}

/// Verify one chain's records (in storage order, i.e. by `seq`) and its checkpoints.
/// `start_prev` is what the first record must link to: [`GENESIS`] for a whole chain, or
/// the hash before an exported range.
pub fn verify(
    chain_id: &str,
    records: &[Record],
    checkpoints: &[Checkpoint],
    trusted_key: Option<&str>,
    start_prev: &str,
) -> Report {
    let mut v = Verifier::new(chain_id, checkpoints, trusted_key, start_prev);
    for r in records {
        v.push(r);
    }
    v.finish(|hash| {
        let j = records.iter().position(|r| r.hash == hash)?;
        Some((j, records.get(j + 1).map(|r| r.seq)))
    })
}

/// [`verify`] one record at a time, in storage order, holding no more than the record at hand:
/// a chain of millions of records is verified in constant memory. Only when the chain breaks
/// does [`Verifier::finish`] ask the caller to find one hash (a second pass) to name the break.
#[derive(Debug)]
pub struct Verifier {
    chain_id: String,
    /// The hash the next record must name as its predecessor.
    expected: String,
    seen: usize,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    /// This chain's checkpoints with a good signature, by seq, until a record meets them.
    pending: std::collections::BTreeMap<u64, String>,
    checkpoints: u64,
    bad_signatures: Vec<u64>,
    modified: Option<u64>,
    /// The first record that does not follow its predecessor: (position, seq, prev_hash).
    broken: Option<(usize, u64, String)>,
    /// The first checkpoint a record contradicts.
    rewritten: Option<u64>,
}

impl Verifier {
    pub fn new(
        chain_id: &str,
        checkpoints: &[Checkpoint],
        trusted_key: Option<&str>,
        start_prev: &str,
    ) -> Self {
        let mut pending = std::collections::BTreeMap::new();
        let mut bad_signatures = Vec::new();
        for c in checkpoints.iter().filter(|c| c.chain_id == chain_id) {
            if let Some(key) = trusted_key
                && !checkpoint_signed_by(c, key)
            {
                bad_signatures.push(c.seq);
                continue;
            }
            pending.entry(c.seq).or_insert_with(|| c.hash.clone());
        }
        Self {
            chain_id: chain_id.to_owned(),
            expected: start_prev.to_owned(),
            seen: 0,
            first_seq: None,
            last_seq: None,
            pending,
            checkpoints: u64::try_from(checkpoints.len()).unwrap_or(u64::MAX),
            bad_signatures,
            modified: None,
            broken: None,
            rewritten: None,
        }
    }

    /// The next record in storage order.
    pub fn push(&mut self, r: &Record) {
        let i = self.seen;
        self.seen += 1;
        self.first_seq.get_or_insert(r.seq);
        self.last_seq = Some(r.seq);
        if let Some(h) = self.pending.remove(&r.seq)
            && h != r.hash
            && self.rewritten.is_none()
        {
            self.rewritten = Some(r.seq);
        }
        if self.modified.is_none() && self.broken.is_none() {
            if record_hash(&r.chain_id, &r.entry, &r.prev_hash) != r.hash
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
        // A checkpoint past the last record: records after it were cut away.
        let cut = self
            .pending
            .keys()
            .next_back()
            .is_some_and(|&seq| self.last_seq.is_some_and(|l| l < seq));
        let finding = chain.or(match (self.rewritten, cut) {
            (Some(seq), _) => Some(Finding::RewrittenBeforeCheckpoint { seq }),
            (None, true) => Some(Finding::Deleted {
                seq: self.last_seq.map_or(0, |l| l + 1),
            }),
            (None, false) => None,
        });
        Report {
            chain_id: self.chain_id,
            records: u64::try_from(self.seen).unwrap_or(u64::MAX),
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            last_hash: (self.seen > 0).then_some(self.expected),
            checkpoints: self.checkpoints,
            finding,
            bad_signatures: self.bad_signatures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    fn chain(n: usize) -> Vec<Record> {
        let mut head = Head::new("gw-1");
        (0..n)
            .map(|i| {
                let mut e = Entry::new(Event::Accepted, format!("2026-11-29T10:00:{i:02}Z"));
                e.message_id = Some(format!("m-{i}"));
                head.append(e)
            })
            .collect()
    }

    fn finding(records: &[Record]) -> Option<Finding> {
        verify("gw-1", records, &[], None, GENESIS).finding
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let r = verify("gw-1", &chain(10), &[], None, GENESIS);
        assert!(r.ok());
        assert_eq!((r.records, r.last_seq), (10, Some(10)));
    }

    #[test]
    fn each_kind_of_tampering_is_named_at_the_right_record() {
        let mut modified = chain(10);
        modified[4].entry.outcome = Some("forged".into());
        assert_eq!(finding(&modified), Some(Finding::Modified { seq: 5 }));

        let mut deleted = chain(10);
        deleted.remove(4);
        assert_eq!(finding(&deleted), Some(Finding::Deleted { seq: 6 }));

        let mut inserted = chain(10);
        let mut forged = Entry::new(Event::Delivered, "2026-11-29T10:00:04Z");
        forged.message_id = Some("m-x".into());
        let prev = inserted[3].hash.clone();
        let hash = record_hash("gw-1", &forged, &prev);
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
        assert_eq!(finding(&inserted), Some(Finding::Inserted { seq: 5 }));

        let mut reordered = chain(10);
        reordered.swap(4, 5);
        assert_eq!(finding(&reordered), Some(Finding::Reordered { seq: 6 }));
    }

    #[test]
    fn checkpoints_catch_rewrites_truncation_and_bad_signatures() {
        let key = SigningKey::from_seed_hex(SEED).expect("key");
        let records = chain(10);
        let cp = key.checkpoint("gw-1", 8, &records[7].hash, "2026-11-29T10:01:00Z");
        let public = key.public_hex();
        assert!(
            verify(
                "gw-1",
                &records,
                std::slice::from_ref(&cp),
                Some(&public),
                GENESIS
            )
            .ok()
        );

        // Truncated after the checkpoint's record: the checkpoint proves the loss.
        let r = verify(
            "gw-1",
            &records[..6],
            std::slice::from_ref(&cp),
            Some(&public),
            GENESIS,
        );
        assert_eq!(r.finding, Some(Finding::Deleted { seq: 7 }));

        // A whole rewritten chain (every hash recomputed) still contradicts the signature.
        let mut head = Head::new("gw-1");
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
        let r = verify(
            "gw-1",
            &rewritten,
            std::slice::from_ref(&cp),
            Some(&public),
            GENESIS,
        );
        assert_eq!(
            r.finding,
            Some(Finding::RewrittenBeforeCheckpoint { seq: 8 })
        );

        // A checkpoint re-signed with another key, or altered, fails its signature.
        let other = SigningKey::from_seed_hex(&"11".repeat(32)).expect("key");
        let forged = other.checkpoint("gw-1", 8, &records[7].hash, "2026-11-29T10:01:00Z");
        let mut altered = cp.clone();
        altered.seq = 9;
        let r = verify("gw-1", &records, &[forged, altered], Some(&public), GENESIS);
        assert_eq!(r.bad_signatures, vec![8, 9]);
    }

    #[test]
    fn subject_refs_are_keyed() {
        let a = subject_ref(b"key-1", "32041119900314002X");
        assert_eq!(a, subject_ref(b"key-1", "32041119900314002X"));
        assert_ne!(a, subject_ref(b"key-2", "32041119900314002X"));
        assert!(!a.contains("32041119900314002X"));
        assert_eq!(a.len(), 64);
        assert_eq!(sha256_hex(b"abc").len(), 64);
    }
}
