//! Pagination as the API answers it: page and per_page checked, `links.pages` and `meta.total`,
//! and token-style listings.

use serde_json::{json, Value};

use crate::state::SimError;
use crate::wire::*;

/// The page a page-number listing asks for: which items (`skip`, `take`) and the links.
pub(crate) struct PageWindow {
    pub(crate) skip: usize,
    pub(crate) take: usize,
    pub(crate) links: Value,
}

/// Page-number pagination: `page` from 1, `per_page` 1 to 200 (default 20).
pub(crate) fn page_window(total: usize, incoming: &Incoming, base_url: &str) -> Result<PageWindow, SimError> {
    let per_page = number_param(incoming, "per_page", 20)?;
    let page = number_param(incoming, "page", 1)?;
    if !(1..=200).contains(&per_page) || page < 1 {
        return Err(SimError::bad_request("per_page must be between 1 and 200 and page at least 1"));
    }
    let last = total.div_ceil(per_page).max(1);
    let link = |n: usize| format!("{base_url}{}?page={n}&per_page={per_page}", incoming.path);
    let mut pages = serde_json::Map::new();
    if page > 1 {
        pages.insert("first".into(), json!(link(1)));
        pages.insert("prev".into(), json!(link(page - 1)));
    }
    if page < last {
        pages.insert("next".into(), json!(link(page + 1)));
        pages.insert("last".into(), json!(link(last)));
    }
    Ok(PageWindow { skip: (page - 1).saturating_mul(per_page), take: per_page, links: json!({"pages": pages}) })
}

pub(crate) fn paginate(
    items: Vec<Value>,
    incoming: &Incoming,
    base_url: &str,
) -> Result<(Vec<Value>, Value, usize), SimError> {
    let total = items.len();
    let window = page_window(total, incoming, base_url)?;
    let slice = items.into_iter().skip(window.skip).take(window.take).collect();
    Ok((slice, window.links, total))
}

pub(crate) fn number_param(incoming: &Incoming, key: &str, default: usize) -> Result<usize, SimError> {
    match incoming.query(key) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| SimError::bad_request(format!("{key} must be a positive integer"))),
    }
}

pub(crate) fn listing(key: &str, items: Vec<Value>, incoming: &Incoming, base_url: &str) -> Answer {
    let total = items.len();
    listing_page(key, total, items.into_iter(), |item| item, incoming, base_url)
}

/// One page of a listing of `total` items: only the page's items are turned into JSON, so a
/// page costs the same whatever the listing's length (skipping is a walk, not a copy).
pub(crate) fn listing_page<T>(
    key: &str,
    total: usize,
    items: impl Iterator<Item = T>,
    to_json: impl Fn(T) -> Value,
    incoming: &Incoming,
    base_url: &str,
) -> Answer {
    windowed_page(key, total, |skip, take| items.skip(skip).take(take).map(to_json).collect(), incoming, base_url)
}

/// A page of a listing whose items `page` gives by position (skip, take): for collections that
/// reach a position without walking to it.
pub(crate) fn windowed_page(
    key: &str,
    total: usize,
    page: impl FnOnce(usize, usize) -> Vec<Value>,
    incoming: &Incoming,
    base_url: &str,
) -> Answer {
    let window = page_window(total, incoming, base_url)?;
    let page: Vec<Value> = page(window.skip, window.take);
    let mut body = json!({ key: page, "meta": {"total": total} });
    if !window.links["pages"].as_object().is_some_and(|p| p.is_empty()) {
        body["links"] = window.links;
    }
    Ok((200, Some(body)))
}

/// Page-token pagination (repositoriesV2): the token is opaque; `page` is ignored when a token is given.
pub(crate) fn token_listing(items: Vec<Value>, incoming: &Incoming, base_url: &str) -> Answer {
    let per_page = number_param(incoming, "per_page", 20)?;
    if !(1..=200).contains(&per_page) {
        return Err(SimError::bad_request("per_page must be between 1 and 200"));
    }
    let offset = match incoming.query("page_token") {
        Some(token) => token
            .strip_prefix("off-")
            .and_then(|hex| usize::from_str_radix(hex, 16).ok())
            .filter(|offset| *offset <= items.len())
            .ok_or_else(|| SimError::bad_request("invalid page_token"))?,
        None => (number_param(incoming, "page", 1)?.max(1) - 1) * per_page,
    };
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let page_number = offset / per_page + 1;
    let mut body = json!({
        "repositories": items.into_iter().skip(offset).take(per_page).collect::<Vec<_>>(),
        "meta": {"total": total},
    });
    if offset + per_page < total {
        let path = &incoming.path;
        body["links"] = json!({"pages": {
            "next": format!("{base_url}{path}?page={}&page_token=off-{:x}&per_page={per_page}", page_number + 1, offset + per_page),
            "last": format!("{base_url}{path}?page={last}&per_page={per_page}"),
        }});
    }
    Ok((200, Some(body)))
}
