//! Manifests kept on disk between runs. A manifest's bytes never change for its digest, so a
//! manifest read once need not be read again: the cache is keyed by digest, and every entry is
//! hashed when it is read. An entry whose bytes do not hash to its name (corrupted, truncated,
//! planted) is dropped and the manifest read from the registry again; nothing in the cache is
//! trusted for what it says.
//!
//! One file, `manifests.pack`, of entries `sha256:HEX LEN\n` + bytes + `\n`, least recently
//! used first (by run: entries one run used are equally recent): thousands of manifests of a few
//! hundred bytes each would take a disk block each as files, and writing them one by one costs
//! more than reading them. New entries are appended (in batches). After a run, what it used
//! moves to the end if it is not there already: what it found, and all that was appended since
//! it opened the pack (its own additions and any other run's). Then the least recently used
//! entries are left out until the pack fits its bound.
//! Runs at the same time cannot corrupt it (a bad entry is dropped when read); the later
//! rewrite may forget what the other added, which only costs reads.
//!
//! Only manifests whose bytes say their own media type (as the registry's `Content-Type` said
//! it) are kept, so an entry alone tells everything a read told.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::manifest::{own_media_type, ManifestInfo};

/// The cache's bound when none is given.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Entries larger than this are neither written nor read (the registry's own manifest limit).
const MAX_ENTRY_BYTES: u64 = 4 * 1024 * 1024;

const PACK: &str = "manifests.pack";

/// A digest as the pack's index holds it.
type Key = [u8; 32];

/// A manifest cache in a directory.
#[derive(Debug)]
pub struct ManifestCache {
    path: PathBuf,
    max_bytes: u64,
    /// The pack as opened, for reading entries.
    file: File,
    /// Each entry of the pack as opened, and whether this run found it.
    index: HashMap<Key, Slot>,
    /// The pack's length when opened: entries after it were appended since, by this run (or
    /// another at the same time), and count as used. No list of this run's keys is kept
    /// (80,000 of them took 4 MB).
    opened_len: u64,
    /// Entries found bad.
    bad: Mutex<Vec<Key>>,
    /// Where new entries are appended, with those not written yet.
    appender: Mutex<Appender>,
    hits: AtomicU64,
    added: AtomicU64,
    discarded: AtomicU64,
}

/// What a run did with the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheUse {
    /// Manifests found in the cache (not read from the registry).
    pub hits: u64,
    /// Manifests read from the registry and added.
    pub added: u64,
    /// Entries that did not hash to their name, dropped.
    pub discarded: u64,
}

/// Where the cache lives unless `--cache-dir` says: `$XDG_CACHE_HOME/do-release`, else
/// `$HOME/.cache/do-release` (None when neither variable is set to an absolute path).
pub fn default_dir() -> Option<PathBuf> {
    default_dir_in(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn default_dir_in(xdg_cache_home: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let absolute = |value: Option<std::ffi::OsString>| value.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(xdg_cache_home)
        .map(|base| base.join("do-release"))
        .or_else(|| absolute(home).map(|home| home.join(".cache").join("do-release")))
}

impl ManifestCache {
    /// The cache in `dir` (created if missing); `None` when it cannot be created or written,
    /// or its pack is not a regular file.
    pub fn open(dir: &Path, max_bytes: u64) -> Option<ManifestCache> {
        std::fs::create_dir_all(dir).ok()?;
        let path = dir.join(PACK);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            return None;
        }
        let appender = File::options().create(true).append(true).open(&path).ok()?;
        let file = File::open(&path).ok()?;
        let opened_len = file.metadata().ok()?.len();
        let (index, _) = scan(&file);
        let index =
            index.into_iter().map(|(key, (offset, len))| (key, Slot { offset, len, used: false.into() })).collect();
        Some(ManifestCache {
            path,
            max_bytes,
            file,
            index,
            opened_len,
            bad: Mutex::new(Vec::new()),
            appender: Mutex::new(Appender { file: appender, pending: Vec::with_capacity(PENDING_ROOM), entries: 0 }),
            hits: AtomicU64::new(0),
            added: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        })
    }

    /// The pack file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn used(&self) -> CacheUse {
        CacheUse {
            hits: self.hits.load(Ordering::Relaxed),
            added: self.added.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
        }
    }

    /// The manifest `digest` from the cache, when its entry hashes to it.
    pub fn get(&self, digest: &Digest) -> Option<ManifestInfo> {
        let key = *digest.sha256()?;
        let slot = self.index.get(&key)?;
        let mut bytes = vec![0; slot.len as usize];
        self.file.read_exact_at(&mut bytes, slot.offset).ok()?;
        let info =
            (Digest::sha256_of(&bytes) == *digest).then(|| ManifestInfo::parse(digest, None, &bytes).ok()).flatten();
        let Some(info) = info else {
            lock(&self.bad).push(key);
            self.discarded.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        slot.used.store(true, Ordering::Relaxed);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(info)
    }

    /// Keeps `bytes`, read from the registry as `info`, when they hash to its digest and say
    /// their own media type.
    pub fn put(&self, info: &ManifestInfo, bytes: &[u8]) {
        // Bytes that hash to the digest also say it is a SHA-256 digest, the only kind kept.
        if bytes.len() as u64 > MAX_ENTRY_BYTES || Digest::sha256_of(bytes) != info.digest {
            return;
        }
        if own_media_type(bytes).as_deref() != Some(info.media_type.as_str()) {
            return;
        }
        let mut appender = lock(&self.appender);
        appender.pending.extend_from_slice(&entry(&info.digest, bytes));
        appender.entries += 1;
        if appender.pending.len() >= WRITE_BYTES {
            self.write(&mut appender);
        }
    }

    /// Writes the entries put and not written yet: [`used`](Self::used) counts an entry added
    /// once it is written.
    pub fn flush(&self) {
        self.write(&mut lock(&self.appender));
    }

    /// Appends the entries put since the last write, in one write: on a file opened for
    /// appending, whole entries, never interleaved with another run's.
    fn write(&self, appender: &mut Appender) {
        let written = appender.file.write_all(&appender.pending).is_ok();
        appender.pending.clear();
        let entries = std::mem::take(&mut appender.entries);
        if written {
            self.added.fetch_add(entries, Ordering::Relaxed);
        }
    }

    /// After a run: the entries this run used go to the end of the pack (most recently used;
    /// among them, the pack's order stands), bad entries go, and the least recently used are
    /// left out until the pack fits its bound. Returns how many were left out for the bound.
    /// The pack is written again only when that changes it: not after a run that used the
    /// entries at its end (a first run, or a run over an unchanged registry).
    pub fn finish(&self) -> usize {
        self.write(&mut lock(&self.appender));
        let bad: HashSet<Key> = lock(&self.bad).iter().copied().collect();
        let CacheUse { hits, added, .. } = self.used();
        if hits == 0 && added == 0 && bad.is_empty() {
            return 0;
        }
        // Read the pack again: it holds this run's additions (and any other run's).
        let Ok(file) = File::open(&self.path) else { return 0 };
        let (index, order) = scan(&file);
        let found = |key: &Key| self.index.get(key).is_some_and(|slot| slot.used.load(Ordering::Relaxed));
        let used = |key: &Key| index[key].0 >= self.opened_len || found(key);
        let (recent, older): (Vec<Key>, Vec<Key>) =
            order.iter().filter(|key| !bad.contains(*key)).partition(|key| used(key));
        let size = |key: &Key| entry_bytes(index[key].1);
        let total: u64 = order.iter().map(size).sum();
        let settled = order.len() == older.len() + recent.len() && order.ends_with(&recent);
        if settled && total <= self.max_bytes {
            return 0;
        }
        let mut kept: Vec<Key> = older;
        kept.extend(recent);
        let mut total: u64 = kept.iter().map(size).sum();
        let mut first = 0;
        for key in &kept {
            if total <= self.max_bytes {
                break;
            }
            total -= size(key);
            first += 1;
        }
        let _ = rewrite(&self.path, &file, &index, kept[first..].iter());
        first
    }
}

/// Entries put are written together once they come to this many bytes (and at the end).
const WRITE_BYTES: usize = 256 * 1024;
/// Room for the entries not written yet: up to `WRITE_BYTES` and the entry that passes it
/// (most are a few KiB), so that the buffer does not double.
const PENDING_ROOM: usize = 320 * 1024;

#[derive(Debug)]
struct Appender {
    file: File,
    /// Entries put and not written yet, and how many.
    pending: Vec<u8>,
    entries: u64,
}

/// Where an entry's bytes start in the pack, their length, and whether this run found it.
#[derive(Debug)]
struct Slot {
    offset: u64,
    len: u32,
    used: std::sync::atomic::AtomicBool,
}

/// A run that ends without `finish` still keeps what it read.
impl Drop for ManifestCache {
    fn drop(&mut self) {
        self.write(&mut lock(&self.appender));
    }
}

/// Whether `dir` can hold a cache: it exists or can be made, and its pack, if any, is a
/// regular file that can be written.
pub fn usable_dir(dir: &Path) -> bool {
    let path = dir.join(PACK);
    std::fs::create_dir_all(dir).is_ok()
        && !std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file())
        && File::options().create(true).append(true).open(&path).is_ok()
}

/// The pack's entries: where each one's bytes are, and the order they come in (the last of a
/// digest written twice counts). Reading stops at the first header that does not parse.
fn scan(file: &File) -> (HashMap<Key, (u64, u32)>, Vec<Key>) {
    let mut index = HashMap::new();
    let mut order = Vec::new();
    let mut reader = BufReader::new(file);
    if reader.seek(SeekFrom::Start(0)).is_err() {
        return (index, order);
    }
    let mut offset = 0u64;
    let mut header = Vec::new();
    loop {
        header.clear();
        match reader.by_ref().take(200).read_until(b'\n', &mut header) {
            Ok(n) if header.ends_with(b"\n") => offset += n as u64,
            _ => break,
        }
        let text = std::str::from_utf8(&header[..header.len() - 1]).unwrap_or("");
        let Some((digest, len)) = text.split_once(' ') else { break };
        let (Some(key), Ok(len)) = (key_of(digest), len.parse::<u32>()) else { break };
        if u64::from(len) > MAX_ENTRY_BYTES || reader.seek_relative(i64::from(len) + 1).is_err() {
            break;
        }
        if index.insert(key, (offset, len)).is_some() {
            order.retain(|k| *k != key);
        }
        order.push(key);
        offset += u64::from(len) + 1;
    }
    (index, order)
}

/// Writes `keys`' entries, in that order, to a new pack that replaces the old one.
fn rewrite<'k>(
    path: &Path,
    from: &File,
    index: &HashMap<Key, (u64, u32)>,
    keys: impl Iterator<Item = &'k Key>,
) -> std::io::Result<()> {
    let temporary = path.with_extension(format!("pack.{}.tmp", std::process::id()));
    let mut out = std::io::BufWriter::new(File::create(&temporary)?);
    let written = (|| {
        for key in keys {
            let (offset, len) = index[key];
            let mut bytes = vec![0; len as usize];
            from.read_exact_at(&mut bytes, offset)?;
            out.write_all(&entry(&Digest::from(*key), &bytes))?;
        }
        out.flush()
    })();
    match written.and_then(|()| std::fs::rename(&temporary, path)) {
        Ok(()) => Ok(()),
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            Err(error)
        }
    }
}

/// An entry as the pack holds it: `DIGEST LEN\n`, the bytes, `\n`.
fn entry(digest: &Digest, bytes: &[u8]) -> Vec<u8> {
    let mut entry = format!("{digest} {}\n", bytes.len()).into_bytes();
    entry.extend_from_slice(bytes);
    entry.push(b'\n');
    entry
}

/// An entry's size in the pack (what [`entry`] makes of `len` bytes).
fn entry_bytes(len: u32) -> u64 {
    ("sha256:".len() + 64 + 1 + len.to_string().len() + 1) as u64 + u64::from(len) + 1
}

/// The key of a `sha256:` digest of 64 lowercase hex digits; None for anything else.
fn key_of(digest: &str) -> Option<Key> {
    Digest::new(digest).sha256().copied()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
#[path = "manifest_cache_tests.rs"]
mod tests;
