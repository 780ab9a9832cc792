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
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BITS: usize = 1 << 24;
const HASHES: u64 = 7;

/// Two generations of bits. With a deduplication window set, the older one is emptied and
/// becomes the newer every window: a pair is remembered for at least one window (it is
/// emptied at the second rotation after its insertion, and rotations are a window apart), so
/// the filter holds at most two windows' receipts, whatever runs for years. Without one it
/// is a single filter, as full as the store.
#[derive(Debug)]
pub struct Seen {
    generations: [Vec<AtomicU64>; 2],
    current: AtomicUsize,
    hasher: std::collections::hash_map::RandomState,
    /// The window, held while rotating.
    window: Mutex<Option<Duration>>,
    base: Instant,
    /// When the next rotation is due, in nanoseconds after `base` (`u64::MAX`: never).
    due: AtomicU64,
}

impl Default for Seen {
    fn default() -> Self {
        let bits = || (0..BITS / 64).map(|_| AtomicU64::new(0)).collect();
        Self {
            generations: [bits(), bits()],
            current: AtomicUsize::new(0),
            hasher: std::collections::hash_map::RandomState::new(),
            window: Mutex::new(None),
            base: Instant::now(),
            due: AtomicU64::new(u64::MAX),
        }
    }
}

impl Seen {
    fn positions(&self, source: &str, message_id: &str) -> impl Iterator<Item = usize> + use<> {
        let mut h = self.hasher.build_hasher();
        source.hash(&mut h);
        message_id.hash(&mut h);
        let h = h.finish();
        let (h1, h2) = (h & 0xffff_ffff, (h >> 32) | 1);
        (0..HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) as usize) % BITS)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Set (or change) the deduplication window; the first rotation is a window from now.
    pub fn window(&self, window: Duration) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if *w == Some(window) {
            return;
        }
        *w = Some(window);
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        self.due
            .store(self.now().saturating_add(window), Ordering::Release);
    }

    /// Empty the older generation and make it the newer, if a window has passed.
    fn rotate_if_due(&self) {
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.now();
        let (Some(window), true) = (*w, now >= self.due.load(Ordering::Acquire)) else {
            return;
        };
        let older = 1 - self.current.load(Ordering::Acquire);
        for word in &self.generations[older] {
            word.store(0, Ordering::Relaxed);
        }
        self.current.store(older, Ordering::Release);
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        self.due
            .store(now.saturating_add(window), Ordering::Release);
    }

    /// Remember a pair. Callers insert before the receipt commits, so a duplicate that can
    /// see the committed receipt can also see these bits.
    pub fn insert(&self, source: &str, message_id: &str) {
        if self.now() >= self.due.load(Ordering::Acquire) {
            self.rotate_if_due();
        }
        let words = &self.generations[self.current.load(Ordering::Acquire)];
        for p in self.positions(source, message_id) {
            words[p / 64].fetch_or(1 << (p % 64), Ordering::Release);
        }
    }

    /// False: certainly never inserted (within the last window). True: perhaps inserted.
    pub fn may_contain(&self, source: &str, message_id: &str) -> bool {
        self.generations.iter().any(|words| {
            self.positions(source, message_id)
                .all(|p| words[p / 64].load(Ordering::Acquire) & (1 << (p % 64)) != 0)
        })
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

    #[test]
    fn a_pair_is_remembered_for_a_window_and_forgotten_after_two() {
        let seen = Seen::default();
        seen.window(Duration::from_millis(100));
        seen.insert("rehab", "a");
        std::thread::sleep(Duration::from_millis(120));
        // The first rotation: "a" moves to the older generation, still remembered.
        seen.insert("rehab", "b");
        assert!(seen.may_contain("rehab", "a") && seen.may_contain("rehab", "b"));
        std::thread::sleep(Duration::from_millis(120));
        // The second: "a" (two windows old) is forgotten, "b" (one) is not.
        seen.insert("rehab", "c");
        assert!(
            !seen.may_contain("rehab", "a"),
            "a pair two windows old is forgotten"
        );
        assert!(seen.may_contain("rehab", "b") && seen.may_contain("rehab", "c"));
    }
}
