//! The manifest cache's specification: entries trusted only when they hash to their name,
//! written in batches, evicted least recently used first.

use super::*;

const MANIFEST: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:cc"},"layers":[]}"#;

fn info_of(bytes: &[u8], content_type: Option<&str>) -> ManifestInfo {
    ManifestInfo::parse(&Digest::sha256_of(bytes), content_type, bytes).unwrap()
}

fn numbered(i: usize) -> (ManifestInfo, Vec<u8>) {
    let body =
        format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","n":"{i:04}"}}"#);
    (info_of(body.as_bytes(), None), body.into_bytes())
}

#[test]
fn an_entry_put_is_got_back_as_it_was_read_in_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let info = info_of(MANIFEST, Some("application/vnd.oci.image.manifest.v1+json"));
    let first = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(first.get(&info.digest), None);
    first.put(&info, MANIFEST);
    assert_eq!(first.finish(), 0);
    assert_eq!(first.used(), CacheUse { hits: 0, added: 1, discarded: 0 });
    let second = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(second.get(&info.digest), Some(info));
    assert_eq!(second.used(), CacheUse { hits: 1, added: 0, discarded: 0 });
    // A run that used what is at the end of the pack leaves it as it is.
    let before = inode(dir.path());
    assert_eq!(second.finish(), 0);
    assert_eq!(inode(dir.path()), before, "not written again");
}

#[test]
fn bytes_that_do_not_hash_to_their_name_are_dropped_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let info = info_of(MANIFEST, None);
    let planted = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    std::fs::write(dir.path().join(PACK), entry(&info.digest, planted)).unwrap();
    let cache = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(cache.get(&info.digest), None);
    assert_eq!(cache.used().discarded, 1);
    cache.finish();
    assert_eq!(std::fs::read(dir.path().join(PACK)).unwrap(), b"", "the planted entry is gone");
    // A pack that is a symlink is not read through, whatever it points at.
    std::fs::remove_file(dir.path().join(PACK)).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", dir.path().join(PACK)).unwrap();
    assert!(ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).is_none());
}

#[test]
fn a_pack_cut_short_or_garbled_keeps_the_entries_before_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (a, a_bytes) = numbered(1);
    let (b, b_bytes) = numbered(2);
    cache.put(&a, &a_bytes);
    cache.put(&b, &b_bytes);
    drop(cache);
    let path = dir.path().join(PACK);
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
    let cut = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(cut.get(&a.digest), Some(a.clone()));
    assert_eq!(cut.get(&b.digest), None);
    let mut garbled = whole.clone();
    garbled.extend_from_slice(b"sha256:zz 99999999999\n");
    std::fs::write(&path, &garbled).unwrap();
    let reopened = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(reopened.get(&b.digest), Some(b));
}

#[test]
fn only_bytes_of_their_digest_that_say_their_media_type_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    // The header said a Docker manifest, the body says nothing: the entry alone would not tell.
    let bare = br#"{"schemaVersion":2,"config":{"digest":"sha256:cc"},"layers":[]}"#;
    let info = info_of(bare, Some("application/vnd.docker.distribution.manifest.v2+json"));
    cache.put(&info, bare);
    // Bytes that are not the digest's.
    cache.put(&info_of(MANIFEST, None), bare);
    assert_eq!(cache.used().added, 0);
    assert_eq!(std::fs::read(dir.path().join(PACK)).unwrap(), b"");
    // A digest that is not a sha256 name is never looked up.
    assert_eq!(key_of("sha256:../../etc/passwd"), None);
    assert_eq!(key_of(&"sha256:".repeat(2)), None);
    assert_eq!(key_of(&format!("sha256:{}", "A".repeat(64))), None);
    assert_eq!(key_of(&format!("sha256:+{}", "f".repeat(63))), None, "no sign, as from_str_radix would take");
    assert_eq!(key_of(&format!("sha256:{}g", "f".repeat(63))), None);
    assert_eq!(key_of(&format!("sha256:{}", "0f".repeat(32))), Some([0x0f; 32]));
}

#[test]
fn the_least_recently_used_go_first_when_the_pack_outgrows_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<(ManifestInfo, Vec<u8>)> = (0..4).map(numbered).collect();
    let each = entry_bytes(entries[0].1.len() as u32);
    let first = ManifestCache::open(dir.path(), 4 * each).unwrap();
    for (info, bytes) in &entries {
        first.put(info, bytes);
    }
    assert_eq!(first.finish(), 0, "four fit");
    // The next run uses the oldest and adds one: the bound holds four, so the least
    // recently used (the second written) goes.
    let second = ManifestCache::open(dir.path(), 4 * each).unwrap();
    assert!(second.get(&entries[0].0.digest).is_some());
    let (fifth, fifth_bytes) = numbered(5);
    second.put(&fifth, &fifth_bytes);
    assert_eq!(second.finish(), 1);
    let third = ManifestCache::open(dir.path(), 4 * each).unwrap();
    let kept: Vec<bool> = entries.iter().map(|(info, _)| third.get(&info.digest).is_some()).collect();
    assert_eq!(kept, [true, false, true, true]);
    assert!(third.get(&fifth.digest).is_some());
    assert_eq!(std::fs::metadata(dir.path().join(PACK)).unwrap().len(), 4 * each);
}

#[test]
fn no_cache_where_the_directory_cannot_be_made() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    assert!(ManifestCache::open(&file, DEFAULT_MAX_BYTES).is_none());
}

/// A manifest of exactly `size` bytes (its own media type in it).
fn of_size(size: usize) -> (ManifestInfo, Vec<u8>) {
    let head = r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","pad":""#;
    let mut body = head.as_bytes().to_vec();
    body.resize(size - 2, b'x');
    body.extend_from_slice(b"\"}");
    (info_of(&body, None), body)
}

fn inode(dir: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join(PACK)).unwrap())
}

#[test]
fn an_entrys_size_is_the_length_of_the_entry() {
    for size in [0, 9, 10, 460, 99_999] {
        assert_eq!(entry_bytes(size as u32), entry(&Digest::sha256_of(b""), &vec![b'x'; size]).len() as u64);
    }
}

#[test]
fn the_bounds_are_the_ones_the_help_states() {
    assert_eq!(crate::units::bytes(DEFAULT_MAX_BYTES), "256.0 MiB");
    assert_eq!(crate::units::bytes(MAX_ENTRY_BYTES), "4.0 MiB");
}

#[test]
fn an_entry_of_the_largest_size_is_kept_and_read_and_one_byte_more_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (largest, largest_bytes) = of_size(MAX_ENTRY_BYTES as usize);
    let (over, over_bytes) = of_size(MAX_ENTRY_BYTES as usize + 1);
    cache.put(&largest, &largest_bytes);
    cache.put(&over, &over_bytes);
    assert_eq!(cache.used().added, 1);
    let next = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(next.get(&largest.digest), Some(largest));
    // A pack entry that says it is larger is where reading the pack stops.
    let (small, small_bytes) = numbered(1);
    let mut pack = std::fs::read(dir.path().join(PACK)).unwrap();
    pack.extend_from_slice(&entry(&over.digest, &over_bytes));
    pack.extend_from_slice(&entry(&small.digest, &small_bytes));
    std::fs::write(dir.path().join(PACK), pack).unwrap();
    let after = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert!(after.get(&over.digest).is_none() && after.get(&small.digest).is_none());
}

#[test]
fn keys_are_the_digests_bytes_and_write_back_as_the_digest() {
    let digest = crate::manifest::sha256_digest(b"any bytes at all");
    let key = key_of(&digest).unwrap();
    assert_eq!(key.as_slice(), ring::digest::digest(&ring::digest::SHA256, b"any bytes at all").as_ref());
    assert_eq!(Digest::from(key).to_string(), digest);
}

#[test]
fn the_default_place_is_xdg_cache_home_else_home_and_only_absolute() {
    let some = |p: &str| Some(std::ffi::OsString::from(p));
    assert_eq!(default_dir_in(some("/x"), some("/h")), Some(PathBuf::from("/x/do-release")));
    assert_eq!(default_dir_in(None, some("/h")), Some(PathBuf::from("/h/.cache/do-release")));
    assert_eq!(default_dir_in(some("relative"), some("/h")), Some(PathBuf::from("/h/.cache/do-release")));
    assert_eq!(default_dir_in(None, some("relative")), None);
    assert_eq!(default_dir_in(None, None), None);
}

#[test]
fn a_usable_dir_is_one_whose_pack_is_a_regular_file_that_can_be_written() {
    let dir = tempfile::tempdir().unwrap();
    assert!(usable_dir(&dir.path().join("new/cache")), "made when missing");
    assert!(dir.path().join("new/cache").join(PACK).is_file());
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    assert!(!usable_dir(&file), "a file is no directory");
    let linked = dir.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", linked.join(PACK)).unwrap();
    assert!(!usable_dir(&linked), "a pack that is a symlink");
    let nested = dir.path().join("nested");
    std::fs::create_dir_all(nested.join(PACK)).unwrap();
    assert!(!usable_dir(&nested), "a pack that is a directory");
}

#[test]
fn a_bad_entry_goes_even_when_what_was_used_is_already_at_the_end() {
    // older o1 o2, then the bad entry, then r1 r2 r3 used this run: the used ones are at the
    // end, but the pack must still be written again without the bad one.
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<(ManifestInfo, Vec<u8>)> = (0..5).map(numbered).collect();
    let (bad, _) = numbered(9);
    let lie = &entries[0].1;
    let mut pack = Vec::new();
    pack.extend(entry(&entries[0].0.digest, &entries[0].1));
    pack.extend(entry(&entries[1].0.digest, &entries[1].1));
    pack.extend(entry(&bad.digest, lie));
    for (info, bytes) in &entries[2..] {
        pack.extend(entry(&info.digest, bytes));
    }
    std::fs::write(dir.path().join(PACK), &pack).unwrap();
    let cache = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert!(cache.get(&bad.digest).is_none());
    for (info, _) in &entries[2..] {
        assert!(cache.get(&info.digest).is_some());
    }
    assert_eq!(cache.finish(), 0);
    let after = std::fs::read_to_string(dir.path().join(PACK)).unwrap();
    assert!(!after.contains(&bad.digest.to_string()), "the bad entry is gone");
    let next = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert!(entries.iter().all(|(info, _)| next.get(&info.digest).is_some()), "the others stay");
}

#[test]
fn as_many_least_recently_used_go_as_the_bound_needs() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<(ManifestInfo, Vec<u8>)> = (0..5).map(numbered).collect();
    let each = entry_bytes(entries[0].1.len() as u32);
    let first = ManifestCache::open(dir.path(), 10 * each).unwrap();
    for (info, bytes) in &entries {
        first.put(info, bytes);
    }
    first.finish();
    let second = ManifestCache::open(dir.path(), 3 * each).unwrap();
    assert!(second.get(&entries[1].0.digest).is_some());
    assert_eq!(second.finish(), 2, "five entries, room for three: the two used least recently go");
    let third = ManifestCache::open(dir.path(), 3 * each).unwrap();
    let kept: Vec<bool> = entries.iter().map(|(info, _)| third.get(&info.digest).is_some()).collect();
    assert_eq!(kept, [false, true, false, true, true]);
}

#[test]
fn entries_put_are_written_together_a_quarter_mebibyte_at_a_time_when_flushed_and_at_the_end_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join(PACK);
    let cache = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (small, small_bytes) = numbered(1);
    cache.put(&small, &small_bytes);
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), 0, "one small entry waits");
    let (half, half_bytes) = of_size(128 * 1024);
    cache.put(&half, &half_bytes);
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), 0, "so do entries under a quarter mebibyte in all");
    let (big, big_bytes) = of_size(256 * 1024);
    cache.put(&big, &big_bytes);
    let written = std::fs::metadata(&pack).unwrap().len();
    let sizes = [&small_bytes, &half_bytes, &big_bytes].map(|bytes| entry_bytes(bytes.len() as u32));
    assert_eq!(written, sizes.iter().sum::<u64>());
    let (last, last_bytes) = numbered(2);
    cache.put(&last, &last_bytes);
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), written);
    assert_eq!(cache.used().added, 3, "counted once written");
    cache.flush();
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), written + entry_bytes(last_bytes.len() as u32));
    assert_eq!(cache.used().added, 4, "written and counted when flushed");
    let (after_flush, after_flush_bytes) = numbered(4);
    cache.put(&after_flush, &after_flush_bytes);
    assert_eq!(cache.finish(), 0);
    assert_eq!(cache.used().added, 5);
    let next = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let all = [&small, &half, &big, &last, &after_flush];
    assert_eq!(all.map(|info| next.get(&info.digest).as_ref() == Some(info)), [true; 5]);
    // A run that ends without finishing still keeps what it read.
    let (dropped, dropped_bytes) = numbered(3);
    next.put(&dropped, &dropped_bytes);
    drop(next);
    let after = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(after.get(&dropped.digest), Some(dropped));
}

#[test]
fn a_digest_written_twice_counts_once_at_its_last_place_and_the_others_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_bytes) = numbered(1);
    let (b, b_bytes) = numbered(2);
    // Two runs at once both read a and appended it.
    let one = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let two = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    one.put(&a, &a_bytes);
    one.put(&b, &b_bytes);
    two.put(&a, &a_bytes);
    drop((one, two));
    // The next run uses only b, which is no longer last: the pack is written again.
    let next = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert!(next.get(&b.digest).is_some());
    next.finish();
    let text = std::fs::read_to_string(dir.path().join(PACK)).unwrap();
    assert_eq!(text.matches(&a.digest.to_string()).count(), 1, "a once");
    assert!(text.find(&a.digest.to_string()) < text.find(&b.digest.to_string()), "b, used last, at the end");
    let after = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!((after.get(&a.digest), after.get(&b.digest)), (Some(a), Some(b)));
}

#[test]
fn a_run_whose_entries_are_already_at_the_end_leaves_the_pack_as_another_run_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let (x, x_bytes) = numbered(1);
    let (y, y_bytes) = numbered(2);
    let one = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let two = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    two.put(&x, &x_bytes);
    assert_eq!(two.finish(), 0);
    one.put(&y, &y_bytes);
    let before = inode(dir.path());
    assert_eq!(one.finish(), 0);
    assert_eq!(inode(dir.path()), before, "not written again: y, used last, is at the end");
    let next = ManifestCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert!(next.get(&x.digest).is_some() && next.get(&y.digest).is_some());
}

#[test]
fn what_another_run_adds_while_this_one_runs_is_as_recent_as_what_this_one_used() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<(ManifestInfo, Vec<u8>)> = (0..4).map(numbered).collect();
    let each = entry_bytes(entries[0].1.len() as u32);
    let first = ManifestCache::open(dir.path(), 10 * each).unwrap();
    for (info, bytes) in &entries[..2] {
        first.put(info, bytes);
    }
    first.finish();
    // This run opens the pack of two and uses the second; another run, at the same time,
    // adds two more and ends first.
    let this = ManifestCache::open(dir.path(), 2 * each).unwrap();
    let other = ManifestCache::open(dir.path(), 10 * each).unwrap();
    for (info, bytes) in &entries[2..] {
        other.put(info, bytes);
    }
    other.finish();
    assert!(this.get(&entries[1].0.digest).is_some());
    // Room for two: the one neither run used goes first, then, among the equally recent, the
    // pack's order stands (this run's find came before the other's additions).
    assert_eq!(this.finish(), 2);
    let next = ManifestCache::open(dir.path(), 2 * each).unwrap();
    let kept: Vec<bool> = entries.iter().map(|(info, _)| next.get(&info.digest).is_some()).collect();
    assert_eq!(kept, [false, false, true, true]);
}

#[test]
fn a_first_run_that_adds_more_than_fits_leaves_out_the_first_added() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<(ManifestInfo, Vec<u8>)> = (0..5).map(numbered).collect();
    let each = entry_bytes(entries[0].1.len() as u32);
    let first = ManifestCache::open(dir.path(), 3 * each).unwrap();
    for (info, bytes) in &entries {
        first.put(info, bytes);
    }
    assert_eq!(first.finish(), 2);
    let next = ManifestCache::open(dir.path(), 3 * each).unwrap();
    let kept: Vec<bool> = entries.iter().map(|(info, _)| next.get(&info.digest).is_some()).collect();
    assert_eq!(kept, [false, false, true, true, true]);
}
