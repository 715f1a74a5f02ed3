//! Manifests read from the registry host, and what the OCI referrers API says where a
//! registry has it: made as the closure asks, several at once, never twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use do_core::concurrent::Limit;

use do_core::digest::Digest;
use do_core::oci::{NotInRegistry, RegistryClient};
use do_core::progress::Progress;
use do_core::types::Manifest;
use do_core::Exit;

use crate::artifacts::{self, Subjects};
use crate::closure::{self, Closure, Read, ReadsByDigest};

/// What was learnt of one repository: its manifests read so far, and what the referrers API
/// answered there. A value: the phases hand it on, and only `Reader` adds to it.
#[derive(Clone, Debug)]
pub struct Reads {
    /// Manifests read, by digest.
    pub read: ReadsByDigest,
    /// What the referrers API answered: subject -> referrers; `None` once a call failed (the
    /// repository's untagged manifests are read instead).
    referrers: Option<BTreeMap<Digest, Vec<Digest>>>,
}

impl Default for Reads {
    fn default() -> Reads {
        Reads { read: ReadsByDigest::new(), referrers: Some(BTreeMap::new()) }
    }
}

/// What was learnt of every repository, by name.
pub type AllReads = BTreeMap<String, Reads>;

/// Reads manifests from the registry host and asks its referrers API, for every repository
/// planned at once: never more than `concurrency` reads under way, never the same read twice.
pub struct Reader<'a> {
    client: &'a RegistryClient,
    concurrency: usize,
    under_way: Limit,
    progress: &'a Progress,
    /// Whether the registry answers the OCI referrers API: probed once, on first use.
    referrers_api: OnceLock<bool>,
    /// Reads asked for and made, over every repository: the counter people see.
    asked: AtomicUsize,
    made: AtomicUsize,
}

impl<'a> Reader<'a> {
    pub fn new(client: &'a RegistryClient, concurrency: usize, progress: &'a Progress) -> Reader<'a> {
        Reader {
            client,
            concurrency: concurrency.max(1),
            under_way: Limit::new(concurrency),
            progress,
            referrers_api: OnceLock::new(),
            asked: AtomicUsize::new(0),
            made: AtomicUsize::new(0),
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
    pub fn ask_referrers<'d>(
        &self,
        reads: &mut Reads,
        repository: &str,
        digests: impl IntoIterator<Item = &'d Digest>,
    ) {
        let unasked: Vec<Digest> = match &reads.referrers {
            None => return,
            Some(known) => digests.into_iter().filter(|d| !known.contains_key(*d)).cloned().collect(),
        };
        let Some((first, rest)) = unasked.split_first() else { return };
        let ask = |digest: &Digest| match self.client.referrers(repository, digest) {
            Ok(answer) => answer,
            Err(error) => {
                self.progress.debug(&format!("the referrers of {repository}@{digest}: {error:#}"));
                None
            }
        };
        let mut answers: Vec<(Digest, Option<Vec<Digest>>)> = Vec::new();
        let answering = *self.referrers_api.get_or_init(|| {
            let answer = ask(first);
            let answered = answer.is_some();
            answers.push((first.clone(), answer));
            answered
        });
        if !answering {
            return;
        }
        let pending: Vec<&Digest> = if answers.is_empty() { unasked.iter().collect() } else { rest.iter().collect() };
        let more = do_core::concurrent::try_map(&pending, self.concurrency, |d| {
            Ok::<_, std::convert::Infallible>(((*d).clone(), ask(d)))
        });
        answers.extend(more.unwrap_or_else(|never| match never {}));
        for (subject, answer) in answers {
            match (reads.referrers.as_mut(), answer) {
                (Some(known), Some(referrers)) => {
                    known.insert(subject, referrers);
                }
                _ => reads.referrers = None,
            }
        }
    }

    /// What the referrers API said in a repository: the digests asked and the referrers it
    /// named (artifact -> subjects); `None` when it is not used there (no API, or a call failed).
    pub fn api_view(&self, reads: &Reads) -> Option<(BTreeSet<Digest>, BTreeMap<Digest, Subjects>)> {
        if self.referrers_api.get() != Some(&true) {
            return None;
        }
        let known = reads.referrers.as_ref()?;
        let mut edges: BTreeMap<Digest, Subjects> = BTreeMap::new();
        for (subject, referrers) in known {
            for referrer in referrers {
                edges.entry(referrer.clone()).or_default().push((subject.clone(), artifacts::Kind::Referrer));
            }
        }
        Some((known.keys().cloned().collect(), edges))
    }

    /// `tag_artifacts` with the referrers the API named in the repository added.
    pub fn edges(&self, reads: &Reads, tag_artifacts: &BTreeMap<Digest, Subjects>) -> BTreeMap<Digest, Subjects> {
        match self.api_view(reads) {
            Some((_, from_api)) => with_referrers(tag_artifacts.clone(), from_api),
            None => tag_artifacts.clone(),
        }
    }

    /// The closure of `roots` with the reads and referrers asked so far, reading nothing.
    pub fn closure_now(
        &self,
        reads: &Reads,
        listing: &[Manifest],
        roots: &BTreeMap<Digest, String>,
        tag_artifacts: &BTreeMap<Digest, Subjects>,
    ) -> Closure {
        let api = self.api_view(reads);
        let edges = match &api {
            Some((_, from_api)) => with_referrers(tag_artifacts.clone(), from_api.clone()),
            None => tag_artifacts.clone(),
        };
        closure::compute(listing, roots, &reads.read, &edges, api.as_ref().map(|(asked, _)| asked))
    }

    /// The repository's closure of `roots`, reading until it is complete. A deadline reached
    /// while reading is an error (exit 3); any other failed read is in the closure's `failed`.
    pub fn closure(
        &self,
        reads: &mut Reads,
        repository: &str,
        listing: &[Manifest],
        roots: &BTreeMap<Digest, String>,
        tag_artifacts: &BTreeMap<Digest, Subjects>,
    ) -> anyhow::Result<Closure> {
        // The referrers API, where it answers, spares reading every untagged manifest.
        let first_root: Vec<Digest> = roots.keys().take(1).cloned().collect();
        self.ask_referrers(reads, repository, &first_root);
        loop {
            let mut closure = self.closure_now(reads, listing, roots, tag_artifacts);
            if closure.is_complete() {
                return Ok(closure);
            }
            // Taken, not copied: 80,000 digests to read, grown by doubling, took 5 MB.
            let mut unread = std::mem::take(&mut closure.pending);
            unread.retain(|d| !reads.read.contains_key(d));
            // Each round reads or asks something new, so the loop ends; fail closed if it would not.
            anyhow::ensure!(
                !unread.is_empty() || !closure.unasked.is_empty(),
                "the keep closure of {repository} asks again for manifests already read; nothing was deleted"
            );
            self.ask_referrers(reads, repository, &closure.unasked);
            self.read_all(reads, repository, &unread)?;
        }
    }

    /// Reads those of `digests` not read yet.
    pub fn ensure(&self, reads: &mut Reads, repository: &str, digests: &[Digest]) -> anyhow::Result<()> {
        let unread: Vec<Digest> = digests.iter().filter(|d| !reads.read.contains_key(d)).cloned().collect();
        if unread.is_empty() {
            return Ok(());
        }
        self.read_all(reads, repository, &unread)
    }

    /// Reads `digests` a chunk at a time, each chunk's answers going into the table as it ends:
    /// answers held for every read at once were as large as the table.
    fn read_all(&self, reads: &mut Reads, repository: &str, digests: &[Digest]) -> anyhow::Result<()> {
        let total = self.asked.fetch_add(digests.len(), Ordering::Relaxed) + digests.len();
        // Room for all at once: a table grown by doubling held the old one and the new together.
        reads.read.reserve(digests.len());
        let done = digests.chunks(READ_CHUNK.max(self.concurrency)).try_for_each(|chunk| -> anyhow::Result<()> {
            let answers = do_core::concurrent::try_map(chunk, self.concurrency, |digest| {
                let read = self.read_one(repository, digest)?;
                let made = self.made.fetch_add(1, Ordering::Relaxed) + 1;
                let asked = self.asked.load(Ordering::Relaxed);
                if made.is_multiple_of((total / 10).max(1)) || made == asked {
                    self.progress.count("reading manifests on the registry host", made, asked);
                }
                Ok::<_, anyhow::Error>((digest.clone(), read))
            })?;
            reads.read.extend(answers);
            Ok(())
        });
        self.progress.finish();
        done.map_err(|error| error.context("the deadline passed while reading manifests; nothing was deleted"))
    }

    /// One read: the manifest, its absence, or why it failed. Only a deadline is an error.
    fn read_one(&self, repository: &str, digest: &Digest) -> anyhow::Result<Read> {
        Ok(match self.under_way.run(|| self.client.manifest(repository, &digest.text())) {
            Ok(info) => Read::from(info),
            Err(error) if error.chain().any(|c| c.is::<NotInRegistry>()) => Read::Missing,
            // The deadline stops the reads; any other failure is recorded (and fails closed).
            Err(error) if do_core::exit::exit_code_of(&error) == Exit::Deadline => return Err(error),
            Err(error) => Read::Failed(format!("{error:#}").into()),
        })
    }
}

/// Reads made at once before their answers go into the table.
const READ_CHUNK: usize = 16384;

/// The artifact edges with those the referrers API named (artifact -> subjects) added.
pub(crate) fn with_referrers(
    mut edges: BTreeMap<Digest, Subjects>,
    from_api: BTreeMap<Digest, Subjects>,
) -> BTreeMap<Digest, Subjects> {
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
