//! Storage usage as the listing shows it, and how far to go for `--target-usage`. Pure.
//!
//! Usage is computed from the listing (the unique blobs of the manifests it shows), not taken
//! from the registry's own figure: that one keeps counting deleted manifests until a GC has run,
//! so a second prune before GC would delete again for space it already freed.

use std::collections::HashMap;

use do_core::digest::Digest;
use do_core::types::Manifest;

use crate::policy;

/// Bytes of the unique blobs of `manifests` (a manifest listed without blobs counts its own size).
pub fn unique_blob_bytes<'a>(manifests: impl Iterator<Item = &'a Manifest> + Clone) -> u64 {
    // Only summed, so hashed: a registry of 100,000 manifests has twice as many blob digests,
    // and a table grown to them by doubling held the old one beside the new.
    let room = manifests.clone().map(|m| m.blobs.len().max(1)).sum();
    let mut blobs: HashMap<&Digest, u64> = HashMap::with_capacity(room);
    for manifest in manifests {
        let mut described = false;
        for blob in &manifest.blobs {
            if let Some(digest) = &blob.digest {
                blobs.insert(digest, blob.compressed_size_bytes.get().unwrap_or(0));
                described = true;
            }
        }
        if !described {
            blobs.insert(&manifest.digest, policy::bytes(manifest));
        }
    }
    blobs.values().sum()
}

/// The fewest deletions, taken in order from `candidates` (oldest first), that bring the estimated
/// usage to `target` or below: the smallest `k` with `usage_after(k) <= target`, or all of them
/// when even that is not enough. `usage_after` must not grow with `k`.
pub fn deletions_for_target(candidates: usize, target: u64, usage_after: impl Fn(usize) -> u64) -> usize {
    let (mut low, mut high) = (0, candidates);
    while low < high {
        let middle = low + (high - low) / 2;
        if usage_after(middle) <= target {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    low
}

#[cfg(test)]
mod tests {
    use super::*;
    use do_core::types::Blob;

    fn manifest(digest: &str, blobs: &[(&str, u64)]) -> Manifest {
        Manifest {
            digest: digest.into(),
            blobs: blobs
                .iter()
                .map(|(d, s)| Blob { digest: Some((*d).into()), compressed_size_bytes: Some(*s).into() })
                .collect(),
            ..Manifest::default()
        }
    }

    #[test]
    fn shared_blobs_count_once() {
        let a = manifest("a", &[("x", 10), ("shared", 5)]);
        let b = manifest("b", &[("y", 20), ("shared", 5)]);
        assert_eq!(unique_blob_bytes([&a, &b].into_iter()), 35);
        assert_eq!(unique_blob_bytes([&a].into_iter()), 15);
        let bare = Manifest { digest: "c".into(), compressed_size_bytes: Some(7).into(), ..Manifest::default() };
        assert_eq!(unique_blob_bytes([&a, &bare].into_iter()), 22, "no blob list: its own size");
        assert_eq!(unique_blob_bytes(std::iter::empty()), 0);
    }

    #[test]
    fn the_fewest_deletions_that_reach_the_target() {
        // Usage 100, each deletion frees 10.
        let after = |k: usize| 100 - 10 * k as u64;
        assert_eq!(deletions_for_target(8, 75, after), 3);
        assert_eq!(deletions_for_target(8, 70, after), 3, "exactly the target is enough");
        assert_eq!(deletions_for_target(8, 100, after), 0, "already there: delete nothing");
        assert_eq!(deletions_for_target(8, 5, after), 8, "out of reach: all that the rules allow");
        assert_eq!(deletions_for_target(0, 5, after), 0);
    }
}
