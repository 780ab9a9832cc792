//! The receipts' index by message id, in memory.
//!
//! Receipts are kept in the order they were accepted (the table's row ids grow with time), so
//! each commit appends to the table's last pages; an index of them by message id kept in the
//! database would put every new receipt on a random leaf page (message ids are random), and
//! each such page is written whole to the write-ahead log at every commit that touches it and
//! again when the log is copied back: about 2 KB written and a B-tree descent per message.
//! Here the index is a hash table from a keyed 64-bit hash of the message id to the receipt's
//! row id: every lookup and insert is a few hundred nanoseconds and writes nothing.
//!
//! It holds the receipts within the deduplication window (pruning removes entries with their
//! rows) in a table kept less than half full once pruning runs, 40–80 bytes a receipt: 30
//! days at 100,000 messages a day is ~3 M receipts, 120–240 MB. It is rebuilt from the table
//! when the store opens (one scan in row order).
//! It holds committed receipts only: the writer adds a batch's receipts after its commit, and
//! removes pruned ones after theirs. A hit names candidate rows; the caller reads the row and
//! compares the source and message id (two ids may share a hash; one id may come from two
//! sources).
//!
//! Like the table it indexes, it is only valid while this process is the store's only writer.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::RwLock;

/// The keys are already hashes (keyed SipHash, so an upstream cannot choose colliding ids):
/// the table uses them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table<V> = HashMap<u64, V, BuildHasherDefault<Identity>>;

#[derive(Default)]
struct Maps {
    /// The first receipt under a hash (nearly every hash has exactly one).
    one: Table<i64>,
    /// Further receipts under a hash already in `one`.
    more: Table<Vec<i64>>,
    /// `one`'s capacity when it was last sized for pruning (see [`ReceiptIndex::remove`]).
    sized_for: usize,
}

pub(super) struct ReceiptIndex {
    hasher: std::collections::hash_map::RandomState,
    maps: RwLock<Maps>,
}

impl std::fmt::Debug for ReceiptIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiptIndex({} receipts)", self.len())
    }
}

impl Default for ReceiptIndex {
    fn default() -> Self {
        Self {
            hasher: std::collections::hash_map::RandomState::new(),
            maps: RwLock::new(Maps::default()),
        }
    }
}

impl ReceiptIndex {
    fn key(&self, message_id: &str) -> u64 {
        self.hasher.hash_one(message_id)
    }

    /// (hash, row id) of each (row id, message id), hashed before the lock is taken.
    fn keyed<'a>(&self, receipts: impl IntoIterator<Item = (i64, &'a str)>) -> Vec<(u64, i64)> {
        receipts
            .into_iter()
            .map(|(row, id)| (self.key(id), row))
            .collect()
    }

    /// Row ids of the receipts whose message id may be `message_id` (any source), oldest first.
    pub(super) fn candidates(&self, message_id: &str) -> Vec<i64> {
        let key = self.key(message_id);
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        let Some(first) = maps.one.get(&key) else {
            return Vec::new();
        };
        let mut rows = vec![*first];
        if let Some(more) = maps.more.get(&key) {
            rows.extend_from_slice(more);
        }
        rows
    }

    /// Add committed receipts: (row id, message id).
    pub(super) fn add<'a>(&self, receipts: impl IntoIterator<Item = (i64, &'a str)>) {
        let keyed = self.keyed(receipts);
        if keyed.is_empty() {
            return;
        }
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        for (key, row) in keyed {
            match maps.one.entry(key) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(row);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    maps.more.entry(key).or_default().push(row);
                }
            }
        }
    }

    /// Remove pruned receipts: (row id, message id).
    pub(super) fn remove<'a>(&self, receipts: impl IntoIterator<Item = (i64, &'a str)>) {
        let keyed = self.keyed(receipts);
        if keyed.is_empty() {
            return;
        }
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        for (key, row) in keyed {
            if maps.one.get(&key) == Some(&row) {
                // The next under the same hash, if any, moves up.
                match maps.more.get_mut(&key) {
                    Some(more) => {
                        let next = more.remove(0);
                        if more.is_empty() {
                            maps.more.remove(&key);
                        }
                        maps.one.insert(key, next);
                    }
                    None => {
                        maps.one.remove(&key);
                    }
                }
            } else if let Some(more) = maps.more.get_mut(&key) {
                more.retain(|r| *r != row);
                if more.is_empty() {
                    maps.more.remove(&key);
                }
            }
        }
        // Once pruning runs, every receipt added is matched by one removed, and each removal
        // may leave a tombstone that uses up the table's spare room. When that runs out, the
        // table is rehashed in place if it is at most half full, and doubled otherwise: at
        // 700,000 receipts in a window that doubling came long after the window was reached,
        // at a time set by the tombstones (a step of 17 MiB of resident memory 8–26 minutes
        // into the soak's steady state). So the table is made less than half full when pruning
        // starts, and again only if the window itself grows: its size is reached with the
        // window, and churn afterwards rehashes it in place.
        let Maps { one, sized_for, .. } = &mut *maps;
        if one.len() * 2 > *sized_for {
            one.reserve(one.len() + one.len() / 8);
            *sized_for = one.capacity();
        }
        // Give memory back after a large prune (a window shortened by a reload).
        if one.capacity() > 4096 && one.len() < one.capacity() / 4 {
            one.shrink_to(one.len() * 2 + one.len() / 4);
            *sized_for = one.capacity();
        }
    }

    /// The table's capacity (its entries plus the room left before it must grow or rehash).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .one
            .capacity()
    }

    /// How many receipts it holds.
    pub(super) fn len(&self) -> usize {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        maps.one.len() + maps.more.values().map(Vec::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_receipt_under_its_id_and_forgets_pruned_ones() {
        let index = ReceiptIndex::default();
        let ids: Vec<String> = (0..50_000).map(|i| format!("m-{i}")).collect();
        index.add(
            ids.iter()
                .enumerate()
                .map(|(row, id)| (row as i64, id.as_str())),
        );
        assert_eq!(index.len(), 50_000);
        assert!(
            ids.iter()
                .enumerate()
                .all(|(row, id)| index.candidates(id).contains(&(row as i64)))
        );
        assert!(index.candidates("never").is_empty());
        // The same id again (another source): both rows, oldest first.
        index.add([(50_000, "m-7")]);
        assert_eq!(index.candidates("m-7"), vec![7, 50_000]);
        index.remove([(7, "m-7")]);
        assert_eq!(index.candidates("m-7"), vec![50_000]);
        index.remove(
            ids.iter()
                .enumerate()
                .map(|(row, id)| (row as i64, id.as_str())),
        );
        assert_eq!(index.candidates("m-7"), vec![50_000]);
        index.remove([(50_000, "m-7")]);
        assert_eq!(index.len(), 0);
        assert!(index.candidates("m-7").is_empty());
    }

    /// A window at steady state: each batch adds receipts and prunes as many of the oldest.
    /// The table takes its size when pruning starts and never grows after it, however many
    /// tombstones the churn leaves (it was doubled by them, at a time they decided).
    #[test]
    fn a_steady_window_does_not_grow_the_table() {
        let index = ReceiptIndex::default();
        // 43,000 receipts fill three quarters of a 65,536-bucket table: without the sizing
        // at the first prune, its tombstones doubled it after ~68,000 receipts of churn.
        let window = 43_000i64;
        let id = |row: i64| format!("{row:016x}-{}", row.wrapping_mul(0x9E37_79B9));
        let ids: Vec<String> = (0..window).map(id).collect();
        index.add(ids.iter().enumerate().map(|(r, s)| (r as i64, s.as_str())));
        let mut sized = None;
        let (mut next, mut oldest) = (window, 0i64);
        while next < window * 6 {
            let added: Vec<(i64, String)> = (next..next + 64).map(|r| (r, id(r))).collect();
            index.add(added.iter().map(|(r, s)| (*r, s.as_str())));
            let pruned: Vec<(i64, String)> = (oldest..oldest + 64).map(|r| (r, id(r))).collect();
            index.remove(pruned.iter().map(|(r, s)| (*r, s.as_str())));
            (next, oldest) = (next + 64, oldest + 64);
            let capacity = index.capacity();
            let limit = *sized.get_or_insert(capacity);
            assert!(
                capacity <= limit,
                "the table grew from {limit} to {capacity} after {} receipts of churn",
                next - window
            );
        }
        assert_eq!(index.len(), window as usize);
        let last = id(next - 1);
        assert_eq!(index.candidates(&last), vec![next - 1]);
        assert!(index.candidates(&id(oldest - 1)).is_empty());
    }

    #[test]
    fn removing_a_row_it_does_not_hold_changes_nothing() {
        let index = ReceiptIndex::default();
        index.add([(1, "a"), (2, "b")]);
        index.remove([(3, "a"), (1, "b")]);
        assert_eq!(index.candidates("a"), vec![1]);
        assert_eq!(index.candidates("b"), vec![2]);
    }
}
