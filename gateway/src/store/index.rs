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
//! rows), about 20–40 bytes a receipt: 30 days at 100,000 messages a day is ~3 M receipts,
//! 60–120 MB. It is rebuilt from the table when the store opens (one scan in row order).
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
        // Give memory back after a large prune (a window shortened by a reload).
        let one = &mut maps.one;
        if one.capacity() > 4096 && one.len() < one.capacity() / 4 {
            one.shrink_to(one.len() * 2);
        }
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

    #[test]
    fn removing_a_row_it_does_not_hold_changes_nothing() {
        let index = ReceiptIndex::default();
        index.add([(1, "a"), (2, "b")]);
        index.remove([(3, "a"), (1, "b")]);
        assert_eq!(index.candidates("a"), vec![1]);
        assert_eq!(index.candidates("b"), vec![2]);
    }
}
