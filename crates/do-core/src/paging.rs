//! Listings: both pagination styles of the API (links and page numbers), and many listings
//! read at once.

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{decode, Client, Retry, MAX_PAGES, PER_PAGE};

impl Client {
    /// GET every page of a collection, following `links.pages.next` until it is absent.
    /// Works for page numbers and page tokens alike; asks for `per_page=200`.
    pub fn get_all<T: DeserializeOwned>(&self, path: &str, field: &str) -> anyhow::Result<Vec<T>> {
        let first = self.get_listing_page(&with_per_page(path), field)?;
        self.follow_pages(path, field, first)
    }

    /// The rest of a listing after `first`, one page after another.
    fn follow_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        field: &str,
        first: ListingPage<T>,
    ) -> anyhow::Result<Vec<T>> {
        let mut visited = std::collections::HashSet::from([first.path.clone()]);
        let mut next = first.next;
        let mut items = first.items;
        while let Some(current) = next.take() {
            if visited.len() >= MAX_PAGES {
                anyhow::bail!("GET {path}: more than {MAX_PAGES} pages, the API keeps sending a next page");
            }
            if !visited.insert(current.clone()) {
                anyhow::bail!(
                    "GET {path}: the next-page link leads back to a page already read ({current}); the listing would never end"
                );
            }
            let page = self.get_listing_page(&current, field)?;
            items.extend(page.items);
            next = page.next;
        }
        Ok(items)
    }

    /// GET one page of a listing: its items, the total it states and the next page's path.
    pub fn get_listing_page<T: DeserializeOwned>(&self, path: &str, field: &str) -> anyhow::Result<ListingPage<T>> {
        let reply = self.send("GET", path, None, Retry::Idempotent)?;
        let page: RawPage = decode(&reply.body, "GET", path)?;
        let items = list_field::<T>(&page, field, path)?;
        let total = page.total();
        let next = match page.part("links").pointer("/pages/next").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(link) => Some(self.path_of_link(link)?),
            None => None,
        };
        Ok(ListingPage { path: path.to_string(), items, total, next })
    }

    /// Every listing in `paths`, each complete and in order, with at most `concurrency`
    /// requests at once over all of them: first pages, then, for each page-number listing whose
    /// first page gives the total, the other pages several at a time. A listing whose pages disagree
    /// (it changed while it was read) is read again one page after another, so the result is
    /// always what [`Client::get_all`] would give.
    pub fn get_all_concurrently<T: DeserializeOwned + Send + Clone>(
        &self,
        paths: &[String],
        field: &str,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Vec<T>>> {
        let of = |index: usize| {
            move |error: anyhow::Error| error.context(FailedListing { index, path: paths[index].clone() })
        };
        let indexes: Vec<usize> = (0..paths.len()).collect();
        let firsts: Vec<ListingPage<T>> = crate::concurrent::try_map(&indexes, concurrency, |&n| {
            self.get_listing_page(&with_per_page(&paths[n]), field).map_err(of(n))
        })?;
        let rest: Vec<Option<Vec<String>>> = firsts.iter().map(remaining_pages).collect();
        // Each planned listing's items go into one list as its pages come, so no page is held
        // past its round and the whole is never copied (100,000 manifests: a copy was 14 MB).
        let mut gathering: Vec<Result<Gathering<T>, ListingPage<T>>> = firsts
            .into_iter()
            .zip(&rest)
            .map(|(first, planned)| match planned {
                Some(planned) => Ok(Gathering::new(first, planned.len())),
                None => Err(first),
            })
            .collect();
        // The remaining pages, in rounds of at most `concurrency` per listing, so a first page
        // that promises more than there is costs one round, not every page it promised: a page
        // that disagrees with the first, or comes back empty, stops that listing's reading ahead.
        loop {
            let jobs: Vec<(usize, &String)> = rest
                .iter()
                .zip(&gathering)
                .enumerate()
                .filter_map(|(n, (pages, gathered))| Some((n, pages.as_ref()?, gathered.as_ref().ok()?)))
                .filter(|(_, _, gathered)| !gathered.stopped)
                .flat_map(|(n, pages, gathered)| {
                    pages.iter().skip(gathered.pages - 1).take(concurrency.max(1)).map(move |p| (n, p))
                })
                .collect();
            if jobs.is_empty() {
                break;
            }
            let fetched = crate::concurrent::try_map(&jobs, concurrency, |&(n, path)| {
                self.get_listing_page::<T>(path, field).map_err(of(n))
            })?;
            for (&(n, _), page) in jobs.iter().zip(fetched) {
                if let Ok(gathered) = &mut gathering[n] {
                    gathered.add(page);
                }
            }
        }
        let mut listings = Vec::with_capacity(paths.len());
        for (index, (gathered, planned)) in gathering.into_iter().zip(&rest).enumerate() {
            let path = &paths[index];
            match gathered {
                Err(first) => listings.push(self.follow_pages(path, field, first).map_err(of(index))?),
                Ok(gathered) if gathered.consistent(planned.as_ref().map_or(0, Vec::len)) => {
                    listings.push(gathered.items)
                }
                Ok(_) => {
                    self.progress
                        .debug(&format!("GET {path}: the listing changed while it was read; reading it again"));
                    listings.push(self.get_all(path, field).map_err(of(index))?);
                }
            }
        }
        Ok(listings)
    }

    /// GET one page of a collection (`?page=1&per_page=N` in `path`): its `field` list, failing
    /// closed like [`Client::get_all`] when the list is missing.
    pub fn get_page<T: DeserializeOwned>(&self, path: &str, field: &str) -> anyhow::Result<Vec<T>> {
        let reply = self.send("GET", path, None, Retry::Idempotent)?;
        let page: RawPage = decode(&reply.body, "GET", path)?;
        list_field(&page, field, path)
    }

    /// A `links.pages.next` URL as a path on our own base URL: the token never follows a
    /// link to another host.
    fn path_of_link(&self, link: &str) -> anyhow::Result<String> {
        let uri: ureq::http::Uri =
            link.parse().with_context(|| format!("the API sent a next-page link that is not a URL: {link:?}"))?;
        let path_and_query = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        let base_path =
            self.base_url().split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..])).unwrap_or("");
        Ok(path_and_query
            .strip_prefix(base_path)
            .filter(|_| !base_path.is_empty())
            .unwrap_or(path_and_query)
            .to_string())
    }
}

/// A collection answer with its parts left unparsed: the list is parsed once, straight into
/// its type (not through a `Value` of every item first).
type RawPage = std::collections::HashMap<String, Box<serde_json::value::RawValue>>;

trait PageParts {
    /// A small part of the answer (`meta`, `links`) as a value; null when absent or not JSON.
    fn part(&self, name: &str) -> Value;
    fn total(&self) -> Option<u64>;
}

impl PageParts for RawPage {
    fn part(&self, name: &str) -> Value {
        self.get(name).and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or(Value::Null)
    }

    fn total(&self) -> Option<u64> {
        self.part("meta").get("total").and_then(Value::as_u64)
    }
}

/// The `field` list of a collection answer. A missing or null list is an error unless the
/// answer says the collection is empty (`meta.total` 0, as proto3 JSON leaves out empty lists):
/// an answer that lost its list must never read as "nothing there".
fn list_field<T: DeserializeOwned>(page: &RawPage, field: &str, path: &str) -> anyhow::Result<Vec<T>> {
    match page.get(field).map(|raw| raw.get()).filter(|raw| raw.trim() != "null") {
        None => {
            anyhow::ensure!(
                page.total() == Some(0),
                "GET {path}: the answer has no {field} list (and does not say the list is empty); nothing was changed"
            );
            Ok(Vec::new())
        }
        Some(list) => serde_json::from_str::<Vec<T>>(list)
            .with_context(|| format!("GET {path}: the {field} list has an unexpected shape")),
    }
}

/// Which of the paths given to [`Client::get_all_concurrently`] failed (the error's context).
#[derive(Debug)]
pub struct FailedListing {
    pub index: usize,
    pub path: String,
}

impl std::fmt::Display for FailedListing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot list {}", self.path)
    }
}

/// A page-number listing as its pages come in: the items in order, and what the pages said,
/// enough to tell whether the listing changed while it was read. Items are copied on the
/// thread that gathers and the page's dropped: what a listing keeps is then allocated in one
/// place, not left among each reading thread's freed page buffers (at 100,000 manifests, 9 MB
/// more memory in use for the same items).
struct Gathering<T> {
    items: Vec<T>,
    /// Pages added, the first included.
    pages: usize,
    total: Option<u64>,
    totals_agree: bool,
    last_has_next: bool,
    /// A page disagreed with the first or came back empty: read no further ahead.
    stopped: bool,
}

impl<T: Clone> Gathering<T> {
    /// Room for every page planned (the first is full, so that is at least its stated total),
    /// when it can be had: a total a server made up is never an allocation that fails the run.
    fn new(first: ListingPage<T>, planned: usize) -> Gathering<T> {
        let mut items = Vec::new();
        let _room = items.try_reserve_exact(first.items.len().saturating_mul(planned + 1));
        let (total, last_has_next) = (first.total, first.next.is_some());
        items.extend(first.items.iter().cloned());
        Gathering { items, pages: 1, total, totals_agree: true, last_has_next, stopped: false }
    }

    fn add(&mut self, page: ListingPage<T>) {
        let agrees = page.total == self.total;
        self.stopped |= !agrees || page.items.is_empty();
        self.totals_agree &= agrees;
        self.last_has_next = page.next.is_some();
        self.pages += 1;
        self.items.extend(page.items.iter().cloned());
    }

    /// Every planned page read, all stating one total that the items add up to, the last
    /// with no next page.
    fn consistent(&self, planned: usize) -> bool {
        self.pages == planned + 1
            && self.totals_agree
            && !self.last_has_next
            && Some(self.items.len() as u64) == self.total
    }
}

/// One page of a listing, as [`Client::get_listing_page`] read it.
pub struct ListingPage<T> {
    pub path: String,
    pub items: Vec<T>,
    /// `meta.total`: how many items the whole listing has, when the API says.
    pub total: Option<u64>,
    /// The next page's path (`links.pages.next`), if any.
    pub next: Option<String>,
}

/// The paths of pages 2 to the last of a page-number listing, known from its first page's
/// total and page size; `None` when they cannot be known (page tokens, no total, an odd link),
/// so the listing is followed page by page instead.
fn remaining_pages<T>(first: &ListingPage<T>) -> Option<Vec<String>> {
    let next = first.next.as_deref()?;
    let (base, query) = next.split_once('?')?;
    let pairs: Vec<(&str, &str)> = query.split('&').filter_map(|pair| pair.split_once('=')).collect();
    let value = |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    if value("page_token").is_some() || value("page")? != "2" {
        return None;
    }
    let per_page: u64 = value("per_page")?.parse().ok().filter(|n| *n > 0)?;
    let total = first.total?;
    if first.items.len() as u64 != per_page || total <= per_page {
        return None;
    }
    let last = total.div_ceil(per_page);
    if last > MAX_PAGES as u64 {
        return None;
    }
    let others: Vec<String> = pairs.iter().filter(|(k, _)| *k != "page").map(|(k, v)| format!("{k}={v}")).collect();
    Some(
        (2..=last)
            .map(|page| {
                let mut query = vec![format!("page={page}")];
                query.extend(others.iter().cloned());
                format!("{base}?{}", query.join("&"))
            })
            .collect(),
    )
}

fn with_per_page(path: &str) -> String {
    if path.contains("per_page=") {
        path.to_string()
    } else if path.contains('?') {
        format!("{path}&per_page={PER_PAGE}")
    } else {
        format!("{path}?per_page={PER_PAGE}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_page_is_added_once() {
        assert_eq!(with_per_page("/v2/apps"), "/v2/apps?per_page=200");
        assert_eq!(with_per_page("/v2/x?page=2"), "/v2/x?page=2&per_page=200");
        assert_eq!(with_per_page("/v2/x?per_page=5"), "/v2/x?per_page=5");
    }
}
