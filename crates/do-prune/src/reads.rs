//! Manifests read from the registry host, and what the OCI referrers API says where a
//! registry has it: made as the closure asks, several at once, never twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex};

use do_core::oci::{NotInRegistry, RegistryClient};
use do_core::progress::Progress;
use do_core::types::Manifest;
use do_core::Exit;

use crate::artifacts::{self, Subjects};
use crate::closure::{self, Closure, Read};

/// Manifests read from the registry host, by repository and digest; reads are made as the
/// closure asks for them, several at once, and never twice.
pub struct Reads<'a> {
    reader: &'a RegistryClient,
    cache: Mutex<BTreeMap<String, BTreeMap<String, Read>>>,
    concurrency: usize,
    /// Reads under way, over every repository planned at once: never more than `concurrency`.
    in_flight: (Mutex<usize>, Condvar),
    progress: &'a Progress,
    /// Whether the registry answers the OCI referrers API: probed once, on first use.
    referrers_api: std::sync::OnceLock<bool>,
    /// What the referrers API answered, by repository: subject -> referrers; `None` for a
    /// repository where a call failed (its untagged manifests are read instead).
    api: Mutex<ReferrersAsked>,
}

type ReferrersAsked = BTreeMap<String, Option<BTreeMap<String, Vec<String>>>>;

impl<'a> Reads<'a> {
    pub fn new(reader: &'a RegistryClient, concurrency: usize, progress: &'a Progress) -> Reads<'a> {
        Reads {
            reader,
            cache: Mutex::new(BTreeMap::new()),
            concurrency: concurrency.max(1),
            in_flight: (Mutex::new(0), Condvar::new()),
            progress,
            referrers_api: std::sync::OnceLock::new(),
            api: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether the referrers API answered (None: never asked).
    pub fn referrers_api(&self) -> Option<bool> {
        self.referrers_api.get().copied()
    }

    /// Asks the registry's referrers API for the referrers of those of `digests` not asked yet
    /// in `repository`. The first call ever is the probe: a registry without the API is never
    /// asked again. A call that fails after the probe makes the repository fall back to reading
    /// its untagged manifests (nothing is lost, it costs reads).
    pub fn ask_referrers(&self, repository: &str, digests: &[String]) {
        let unasked: Vec<String> = {
            let api = self.api.lock().unwrap_or_else(|e| e.into_inner());
            match api.get(repository) {
                Some(None) => return,
                Some(Some(known)) => digests.iter().filter(|d| !known.contains_key(*d)).cloned().collect(),
                None => digests.to_vec(),
            }
        };
        let Some((first, rest)) = unasked.split_first() else { return };
        let ask = |digest: &String| match self.reader.referrers(repository, digest) {
            Ok(answer) => answer,
            Err(error) => {
                self.progress.debug(&format!("the referrers of {repository}@{digest}: {error:#}"));
                None
            }
        };
        let mut answers: Vec<(String, Option<Vec<String>>)> = Vec::new();
        let answering = *self.referrers_api.get_or_init(|| {
            let answer = ask(first);
            let answered = answer.is_some();
            answers.push((first.clone(), answer));
            answered
        });
        if !answering {
            return;
        }
        let pending: Vec<&String> = if answers.is_empty() { unasked.iter().collect() } else { rest.iter().collect() };
        let more = do_core::concurrent::try_map(&pending, self.concurrency, |d| {
            Ok::<_, std::convert::Infallible>(((*d).clone(), ask(d)))
        });
        answers.extend(more.unwrap_or_else(|never| match never {}));
        let mut api = self.api.lock().unwrap_or_else(|e| e.into_inner());
        let entry = api.entry(repository.to_string()).or_insert_with(|| Some(BTreeMap::new()));
        for (subject, answer) in answers {
            match (entry.as_mut(), answer) {
                (Some(known), Some(referrers)) => {
                    known.insert(subject, referrers);
                }
                _ => *entry = None,
            }
        }
    }

    /// What the referrers API said in `repository`: the digests asked and the referrers it named
    /// (artifact -> subjects); `None` when it is not used there (no API, or a call failed).
    pub fn api_view(&self, repository: &str) -> Option<(BTreeSet<String>, BTreeMap<String, Subjects>)> {
        if self.referrers_api.get() != Some(&true) {
            return None;
        }
        let api = self.api.lock().unwrap_or_else(|e| e.into_inner());
        let known = match api.get(repository) {
            Some(Some(known)) => known,
            Some(None) => return None,
            None => return Some(Default::default()),
        };
        let mut edges: BTreeMap<String, Subjects> = BTreeMap::new();
        for (subject, referrers) in known {
            for referrer in referrers {
                edges.entry(referrer.clone()).or_default().push((subject.clone(), artifacts::Kind::Referrer));
            }
        }
        Some((known.keys().cloned().collect(), edges))
    }

    /// `tag_artifacts` with the referrers the API named in `repository` added.
    pub fn edges(&self, repository: &str, tag_artifacts: &BTreeMap<String, Subjects>) -> BTreeMap<String, Subjects> {
        match self.api_view(repository) {
            Some((_, from_api)) => with_referrers(tag_artifacts.clone(), from_api),
            None => tag_artifacts.clone(),
        }
    }

    /// The closure of `roots` with the reads and referrers asked so far, reading nothing.
    pub fn closure_now(
        &self,
        repository: &str,
        listing: &[Manifest],
        roots: &BTreeMap<String, String>,
        tag_artifacts: &BTreeMap<String, Subjects>,
    ) -> Closure {
        let api = self.api_view(repository);
        let edges = match &api {
            Some((_, from_api)) => with_referrers(tag_artifacts.clone(), from_api.clone()),
            None => tag_artifacts.clone(),
        };
        self.with(repository, |read| {
            closure::compute(listing, roots, read, &edges, api.as_ref().map(|(asked, _)| asked))
        })
    }

    /// One manifest read, waiting for a free place when `concurrency` reads are under way.
    fn read_one(&self, repository: &str, digest: &str) -> anyhow::Result<do_core::oci::ManifestInfo> {
        let (count, freed) = &self.in_flight;
        {
            let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
            while *running >= self.concurrency {
                running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
            }
            *running += 1;
        }
        let result = self.reader.manifest(repository, digest);
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
        result
    }

    /// The repository's closure of `roots`, reading until it is complete. A deadline reached
    /// while reading is an error (exit 3); any other failed read is in the closure's `failed`.
    pub fn closure(
        &self,
        repository: &str,
        listing: &[Manifest],
        roots: &BTreeMap<String, String>,
        tag_artifacts: &BTreeMap<String, Subjects>,
    ) -> anyhow::Result<Closure> {
        // The referrers API, where it answers, spares reading every untagged manifest.
        let first_root: Vec<String> = roots.keys().take(1).cloned().collect();
        self.ask_referrers(repository, &first_root);
        loop {
            let closure = self.closure_now(repository, listing, roots, tag_artifacts);
            if closure.is_complete() {
                return Ok(closure);
            }
            let unread: Vec<String> = self
                .with(repository, |read| closure.pending.iter().filter(|d| !read.contains_key(*d)).cloned().collect());
            // Each round reads or asks something new, so the loop ends; fail closed if it would not.
            anyhow::ensure!(
                !unread.is_empty() || !closure.unasked.is_empty(),
                "the keep closure of {repository} asks again for manifests already read; nothing was deleted"
            );
            self.ask_referrers(repository, &closure.unasked);
            self.read_all(repository, &unread)?;
        }
    }

    /// Reads those of `digests` not read yet.
    pub fn ensure(&self, repository: &str, digests: &[String]) -> anyhow::Result<()> {
        let unread: Vec<String> =
            self.with(repository, |read| digests.iter().filter(|d| !read.contains_key(*d)).cloned().collect());
        if unread.is_empty() {
            return Ok(());
        }
        self.read_all(repository, &unread)
    }

    /// Runs `f` over the reads made so far in a repository, without copying them.
    pub fn with<T>(&self, repository: &str, f: impl FnOnce(&BTreeMap<String, Read>) -> T) -> T {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let empty = BTreeMap::new();
        f(cache.get(repository).unwrap_or(&empty))
    }

    /// The reads made so far in a repository (for ordering deletions).
    pub fn of(&self, repository: &str) -> BTreeMap<String, Read> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(repository).cloned().unwrap_or_default()
    }

    fn read_all(&self, repository: &str, digests: &[String]) -> anyhow::Result<()> {
        let total = digests.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let read = do_core::concurrent::try_map(digests, self.concurrency, |digest| {
            let read = match self.read_one(repository, digest) {
                Ok(info) => Read::Info(info),
                Err(error) if error.chain().any(|c| c.is::<NotInRegistry>()) => Read::Missing,
                // The deadline stops the reads; any other failure is recorded (and fails closed).
                Err(error) if do_core::exit::exit_code_of(&error) == Exit::Deadline => return Err(error),
                Err(error) => Read::Failed(format!("{error:#}")),
            };
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(repository.to_string())
                .or_default()
                .insert(digest.clone(), read);
            let count = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if count.is_multiple_of((total / 10).max(1)) || count == total {
                self.progress.status(&format!("reading manifests of {repository}: {count}/{total}"));
            }
            Ok(())
        });
        self.progress.finish();
        read.map(drop)
            .map_err(|error| error.context("the deadline passed while reading manifests; nothing was deleted"))
    }
}

/// The artifact edges with those the referrers API named (artifact -> subjects) added.
pub(crate) fn with_referrers(
    mut edges: BTreeMap<String, Subjects>,
    from_api: BTreeMap<String, Subjects>,
) -> BTreeMap<String, Subjects> {
    for (referrer, subjects) in from_api {
        let known = edges.entry(referrer).or_default();
        for (subject, kind) in subjects {
            if !known.iter().any(|(k, _)| *k == subject) {
                known.push((subject, kind));
            }
        }
    }
    edges
}
