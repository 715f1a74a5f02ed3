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
    pub fn get_all_concurrently<T: DeserializeOwned + Send>(
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
        let totals: Vec<Option<u64>> = firsts.iter().map(|first| first.total).collect();
        // The remaining pages, in rounds of at most `concurrency` per listing, so a first page
        // that promises more than there is costs one round, not every page it promised: a page
        // that disagrees with the first, or comes back empty, stops that listing's reading ahead.
        let mut read: Vec<Vec<ListingPage<T>>> = paths.iter().map(|_| Vec::new()).collect();
        let mut stopped = vec![false; paths.len()];
        loop {
            let jobs: Vec<(usize, &String)> = rest
                .iter()
                .enumerate()
                .filter(|(n, _)| !stopped[*n])
                .flat_map(|(n, pages)| {
                    pages.iter().flatten().skip(read[n].len()).take(concurrency.max(1)).map(move |p| (n, p))
                })
                .collect();
            if jobs.is_empty() {
                break;
            }
            let fetched = crate::concurrent::try_map(&jobs, concurrency, |&(n, path)| {
                self.get_listing_page::<T>(path, field).map_err(of(n))
            })?;
            for (&(n, _), page) in jobs.iter().zip(fetched) {
                if page.total != totals[n] || page.items.is_empty() {
                    stopped[n] = true;
                }
                read[n].push(page);
            }
        }
        let mut listings = Vec::with_capacity(paths.len());
        for (index, ((first, rest), more)) in firsts.into_iter().zip(&rest).zip(read).enumerate() {
            let path = &paths[index];
            let Some(planned) = rest else {
                listings.push(self.follow_pages(path, field, first).map_err(of(index))?);
                continue;
            };
            let total = first.total;
            let mut pages = vec![first];
            pages.extend(more);
            let consistent = pages.len() == planned.len() + 1
                && pages.iter().all(|p| p.total == total)
                && pages.last().is_some_and(|p| p.next.is_none())
                && Some(pages.iter().map(|p| p.items.len() as u64).sum::<u64>()) == total;
            if consistent {
                listings.push(pages.into_iter().flat_map(|p| p.items).collect());
            } else {
                self.progress.debug(&format!("GET {path}: the listing changed while it was read; reading it again"));
                listings.push(self.get_all(path, field).map_err(of(index))?);
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
