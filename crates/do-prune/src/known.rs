//! What reads of the registry made known, held small: a large repository's reads are nearly
//! all plain image manifests, and 80,000 of them are held as 80,000 sorted digests (2.5 MB),
//! not a table of whole reads (28 MB, then 8.5 MB as a hashed table of small reads).

use std::collections::HashMap;

use do_core::digest::Digest;
use do_core::oci::ManifestInfo;

/// What reading a manifest from the registry gave: of a manifest read, only what the closure
/// asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// An image manifest that holds no manifest and refers to none.
    Plain,
    /// Any other manifest: an index, or one that holds or refers to manifests.
    Info(Box<ManifestInfo>),
    /// The registry has no such manifest (404).
    Missing,
    /// Any other failure, with why.
    Failed(Box<str>),
}

impl From<ManifestInfo> for Read {
    fn from(info: ManifestInfo) -> Read {
        if info.is_index() || !info.children.is_empty() || info.subject.is_some() {
            Read::Info(Box::new(info))
        } else {
            Read::Plain
        }
    }
}

/// Manifests read, by digest; only ever looked up. A plain read of a SHA-256 digest is held as
/// the digest's 32 bytes in a sorted list; any other read hashed with what it gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadsByDigest {
    /// Sorted, each once.
    plain: Vec<Key>,
    /// Where each bucket of `plain` starts (and, last, its length): the keys whose first bits
    /// make `b` are `plain[starts[b]..starts[b + 1]]`. A lookup searches one bucket, about 80
    /// keys at 80,000 (7 steps in 2.5 KB), not the whole list (17 steps, most of them misses
    /// of the cache: a tenth of a warm run's CPU).
    starts: Vec<u32>,
    other: HashMap<Digest, Read>,
}

/// `plain` in 1,024 buckets by the first 10 bits of the digest (4 KB for any number of reads).
const BUCKET_BITS: u32 = 10;

fn bucket(key: &Key) -> usize {
    (key.0 >> (128 - BUCKET_BITS)) as usize
}

impl ReadsByDigest {
    pub fn new() -> ReadsByDigest {
        ReadsByDigest::default()
    }

    pub fn get(&self, digest: &Digest) -> Option<&Read> {
        if let Some(read) = self.other.get(digest) {
            return Some(read);
        }
        let key = key(digest.sha256()?);
        let at = bucket(&key);
        let [start, end] = *self.starts.get(at..at + 2)? else { return None };
        self.plain[start as usize..end as usize].binary_search(&key).ok().map(|_| &Read::Plain)
    }

    pub fn contains_key(&self, digest: &Digest) -> bool {
        self.get(digest).is_some()
    }

    pub fn len(&self) -> usize {
        self.plain.len() + self.other.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every read (the plain ones after the others).
    pub fn values(&self) -> impl Iterator<Item = &Read> {
        self.other.values().chain(std::iter::repeat_n(&Read::Plain, self.plain.len()))
    }

    /// Room for `more` reads, taken to be plain (most are).
    pub fn reserve(&mut self, more: usize) {
        self.plain.reserve_exact(more);
    }

    /// Holds `read` for `digest`, in place of what was held.
    pub fn insert(&mut self, digest: Digest, read: Read) {
        self.extend([(digest, read)]);
    }
}

/// A SHA-256 digest as two numbers, which order as its bytes do and compare without a call
/// (a lookup compares 17 times).
type Key = (u128, u128);

fn key(bytes: &[u8; 32]) -> Key {
    let (high, low) = bytes.split_at(16);
    let number = |half: &[u8]| u128::from_be_bytes(half.try_into().unwrap_or_default());
    (number(high), number(low))
}

impl Extend<(Digest, Read)> for ReadsByDigest {
    /// A digest given again: its last read counts, as in a map.
    fn extend<I: IntoIterator<Item = (Digest, Read)>>(&mut self, reads: I) {
        let mut batch: Vec<(Digest, Read)> = reads.into_iter().collect();
        // Sorted by digest, the last given of each first (the sort is stable), then only that.
        batch.reverse();
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        batch.dedup_by(|later, kept| later.0 == kept.0);
        let mut held = self.plain.len();
        for (digest, read) in batch {
            match (digest.sha256().map(key), read) {
                (Some(key), Read::Plain) => {
                    self.other.remove(&digest);
                    self.plain.push(key);
                }
                (key, read) => {
                    if let Some(at) = key.and_then(|key| self.plain[..held].binary_search(&key).ok()) {
                        self.plain.remove(at);
                        held -= 1;
                    }
                    self.other.insert(digest, read);
                }
            }
        }
        // Two sorted runs, the held and the new: the sort merges them, linear in the length.
        self.plain.sort();
        self.plain.dedup();
        let first = |at: usize| self.plain.partition_point(|key| bucket(key) < at) as u32;
        self.starts = (0..=1 << BUCKET_BITS).map(first).collect();
    }
}

impl FromIterator<(Digest, Read)> for ReadsByDigest {
    fn from_iter<I: IntoIterator<Item = (Digest, Read)>>(reads: I) -> ReadsByDigest {
        let mut table = ReadsByDigest::new();
        table.extend(reads);
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use do_core::oci::OCI_INDEX;

    fn sha(n: u8) -> Digest {
        Digest::from([n; 32])
    }

    fn index() -> Read {
        Read::Info(Box::new(ManifestInfo {
            digest: sha(9),
            media_type: OCI_INDEX.into(),
            children: vec![],
            subject: None,
            config: None,
            size: 1,
        }))
    }

    #[test]
    fn each_read_is_found_by_its_digest_plain_or_not_and_nothing_else_is() {
        let mut table: ReadsByDigest = [
            (sha(3), Read::Plain),
            (sha(1), Read::Plain),
            (Digest::new("k"), Read::Plain),
            (sha(9), index()),
            (sha(7), Read::Missing),
        ]
        .into_iter()
        .collect();
        table.extend([(sha(2), Read::Plain), (sha(5), Read::Failed("503".into())), (sha(1), Read::Plain)]);
        let found = |n: u8| table.get(&sha(n)).cloned();
        assert_eq!(found(1), Some(Read::Plain));
        assert_eq!(found(2), Some(Read::Plain));
        assert_eq!(found(3), Some(Read::Plain));
        assert_eq!(found(9), Some(index()));
        assert_eq!(found(7), Some(Read::Missing));
        assert_eq!(found(5), Some(Read::Failed("503".into())));
        assert_eq!(table.get(&Digest::new("k")), Some(&Read::Plain), "a digest of another form is held too");
        for absent in [0, 4, 6, 8, 10] {
            assert_eq!(found(absent), None);
            assert!(!table.contains_key(&sha(absent)));
        }
        assert!(table.contains_key(&sha(2)) && table.contains_key(&sha(9)));
        assert_eq!((table.len(), table.is_empty(), ReadsByDigest::new().is_empty()), (7, false, true));
        let plain = table.values().filter(|r| **r == Read::Plain).count();
        assert_eq!((plain, table.values().count()), (4, 7));
    }

    #[test]
    fn a_later_read_of_a_digest_replaces_the_earlier_either_way() {
        let mut table = ReadsByDigest::new();
        table.insert(sha(1), Read::Plain);
        table.insert(sha(1), Read::Missing);
        assert_eq!((table.get(&sha(1)), table.len()), (Some(&Read::Missing), 1));
        table.insert(sha(1), Read::Plain);
        assert_eq!((table.get(&sha(1)), table.len()), (Some(&Read::Plain), 1));
        // Several plain reads replaced at once, and one given twice in the batch: its last counts.
        table.extend([2, 3, 4, 5].map(|n| (sha(n), Read::Plain)));
        table.extend([(sha(2), Read::Missing), (sha(4), Read::Plain), (sha(4), Read::Missing), (sha(5), index())]);
        let reads: Vec<Option<&Read>> = (1..=5).map(|n| table.get(&sha(n))).collect();
        let missing = Some(&Read::Missing);
        assert_eq!(reads, [Some(&Read::Plain), missing, Some(&Read::Plain), missing, Some(&index())]);
        assert_eq!(table.len(), 5);
    }

    #[test]
    fn plain_reads_added_in_several_batches_stay_sorted_and_found() {
        let mut table = ReadsByDigest::new();
        // Room for all at once: the batches go in without the list being moved.
        table.reserve(40);
        let room = (table.plain.as_ptr(), table.plain.capacity());
        for batch in [[30u8, 10, 20, 0], [35, 5, 25, 15], [1, 39, 2, 38]] {
            table.extend(batch.map(|n| (sha(n), Read::Plain)));
        }
        assert_eq!((table.plain.as_ptr(), table.plain.capacity()), room);
        assert!(room.1 >= 40);
        assert!(table.plain.windows(2).all(|pair| pair[0] < pair[1]));
        assert!([0u8, 1, 2, 5, 10, 15, 20, 25, 30, 35, 38, 39]
            .iter()
            .all(|n| table.get(&sha(*n)) == Some(&Read::Plain)));
        assert_eq!(table.get(&sha(3)), None);
    }

    #[test]
    fn a_lookup_searches_the_bucket_of_the_digests_first_ten_bits_and_each_bucket_holds_its_own() {
        let starting = |first: u8, second: u8| {
            let mut bytes = [0x5a; 32];
            bytes[..2].copy_from_slice(&[first, second]);
            key(&bytes)
        };
        let buckets = [(0x00, 0x00), (0x00, 0x3f), (0x00, 0x40), (0x80, 0x00), (0xff, 0xc0), (0xff, 0xff)]
            .map(|(first, second)| bucket(&starting(first, second)));
        assert_eq!(buckets, [0, 0, 1, 512, 1023, 1023]);
        let reads: ReadsByDigest = (0..=255u8).map(|n| (sha(n), Read::Plain)).collect();
        assert_eq!(reads.starts.len(), 1025);
        assert_eq!(reads.starts.last().map(|&end| end as usize), Some(256));
        for (at, range) in reads.starts.windows(2).enumerate() {
            let held = &reads.plain[range[0] as usize..range[1] as usize];
            assert!(held.iter().all(|key| bucket(key) == at), "bucket {at}");
        }
    }

    #[test]
    fn a_plain_image_keeps_nothing_else_of_its_read() {
        let plain = ManifestInfo {
            digest: sha(1),
            media_type: do_core::oci::OCI_MANIFEST.into(),
            children: vec![],
            subject: None,
            config: Some(sha(2)),
            size: 10,
        };
        assert_eq!(Read::from(plain.clone()), Read::Plain);
        let referrer = ManifestInfo { subject: Some(sha(3)), ..plain.clone() };
        assert_eq!(Read::from(referrer.clone()), Read::Info(Box::new(referrer)));
    }
}
