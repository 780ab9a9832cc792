//! A fixed-size Bloom filter of the (source, message_id) pairs this store has accepted.
//!
//! Almost every message is new; the filter lets the duplicate check answer "never seen" from
//! memory and go to SQLite only when a pair may have been seen (a real duplicate, or a false
//! positive, about 1 % up to 1.75 million receipts and rising slowly beyond). Memory is fixed
//! at 2 MiB whatever the volume. It is rebuilt from the receipts table at start.
//!
//! It is only valid while this process is the store's only writer (the embedded SQLite store);
//! a store shared by several gateway instances must not use it.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

const BITS: usize = 1 << 24;
const HASHES: u64 = 7;

#[derive(Debug)]
pub struct Seen {
    words: Vec<AtomicU64>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            words: (0..BITS / 64).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl Seen {
    fn positions(&self, source: &str, message_id: &str) -> impl Iterator<Item = usize> {
        let mut h = self.hasher.build_hasher();
        source.hash(&mut h);
        message_id.hash(&mut h);
        let h = h.finish();
        let (h1, h2) = (h & 0xffff_ffff, (h >> 32) | 1);
        (0..HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) as usize) % BITS)
    }

    /// Remember a pair. Callers insert before the receipt commits, so a duplicate that can
    /// see the committed receipt can also see these bits.
    pub fn insert(&self, source: &str, message_id: &str) {
        for p in self.positions(source, message_id) {
            self.words[p / 64].fetch_or(1 << (p % 64), Ordering::Release);
        }
    }

    /// False: certainly never inserted. True: perhaps inserted.
    pub fn may_contain(&self, source: &str, message_id: &str) -> bool {
        self.positions(source, message_id)
            .all(|p| self.words[p / 64].load(Ordering::Acquire) & (1 << (p % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let seen = Seen::default();
        for i in 0..100_000 {
            seen.insert("rehab", &format!("m-{i}"));
        }
        assert!((0..100_000).all(|i| seen.may_contain("rehab", &format!("m-{i}"))));
        let false_positives = (0..100_000)
            .filter(|i| seen.may_contain("rehab", &format!("other-{i}")))
            .count();
        assert!(false_positives < 100, "false positives: {false_positives}");
        // The pair is remembered, not the id alone: the same ids from another source are new.
        let other_source = (0..100_000)
            .filter(|i| seen.may_contain("police", &format!("m-{i}")))
            .count();
        assert!(
            other_source < 100,
            "false positives for another source: {other_source}"
        );
    }
}
