//! The JSON the edge made of catalog pages, kept by request.
//!
//! A page's JSON and its `ETag` follow from the request and the offers it
//! was cut from, which the catalog names by a version (a digest of their
//! content). The edge keeps what it made, sends the version back with the
//! next same request, and when the catalog says it still holds, answers
//! from the copy: the page is not sent, decoded, written as JSON or
//! digested again. What is kept is bounded in count and size.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderValue;
use hashlink::LruCache;
use serde::Serialize;

/// Pages kept: each list's first pages at the sizes clients ask for, and
/// the cursors they page through.
const PAGES: usize = 64;
/// A page's JSON above this is not kept (200 offers, the largest page, are
/// about 80 KiB), so the copies stay under 8 MiB.
const LARGEST: usize = 128 * 1024;

/// What a page depends on besides the offers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub show_inactive: bool,
    pub page_size: i32,
    pub page_token: String,
}

/// An answer as JSON, with its `ETag` (a digest of the JSON) and the
/// version of the offers it was made from (empty when it has none).
pub struct Encoded {
    pub version: String,
    pub body: Bytes,
    pub tag: HeaderValue,
}

impl Encoded {
    pub fn of<T: Serialize>(body: &T, version: String) -> Result<Self, offers_kit::Error> {
        use sha2::Digest;
        let body = serde_json::to_vec(body).map_err(|e| offers_kit::Error::internal(e.to_string()))?;
        let digest = sha2::Sha256::digest(&body);
        let tag = HeaderValue::try_from(format!("\"{}\"", hex::encode(&digest[..16])))
            .map_err(|e| offers_kit::Error::internal(e.to_string()))?;
        Ok(Self { version, body: body.into(), tag })
    }
}

/// The pages this edge made and may answer again.
#[derive(Clone)]
pub struct KeptPages(Arc<Mutex<LruCache<PageRequest, Arc<Encoded>>>>);

impl Default for KeptPages {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(LruCache::new(PAGES))))
    }
}

impl KeptPages {
    pub fn get(&self, request: &PageRequest) -> Option<Arc<Encoded>> {
        self.0.lock().ok()?.get(request).cloned()
    }

    /// Keeps `page` for `request`, unless it has no version or is too large.
    pub fn keep(&self, request: PageRequest, page: Arc<Encoded>) {
        if page.version.is_empty() || page.body.len() > LARGEST {
            return;
        }
        if let Ok(mut pages) = self.0.lock() {
            pages.insert(request, page);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: &str) -> PageRequest {
        PageRequest { show_inactive: false, page_size: 50, page_token: token.into() }
    }

    #[test]
    fn only_versioned_pages_of_bounded_size_are_kept() {
        let kept = KeptPages::default();
        kept.keep(request("a"), Arc::new(Encoded::of(&["x"], String::new()).expect("encodes")));
        assert!(kept.get(&request("a")).is_none(), "a page without a version cannot be revalidated");
        let huge = "y".repeat(LARGEST);
        kept.keep(request("b"), Arc::new(Encoded::of(&[huge], "v1".into()).expect("encodes")));
        assert!(kept.get(&request("b")).is_none(), "a page above the bound is not kept");
        kept.keep(request("c"), Arc::new(Encoded::of(&["z"], "v1".into()).expect("encodes")));
        let page = kept.get(&request("c")).expect("kept");
        assert_eq!((page.version.as_str(), &page.body[..]), ("v1", &b"[\"z\"]"[..]));
    }

    #[test]
    fn the_least_recently_used_page_goes_first() {
        let kept = KeptPages::default();
        for i in 0..=PAGES {
            kept.keep(request(&i.to_string()), Arc::new(Encoded::of(&i, "v".into()).expect("encodes")));
        }
        assert!(kept.get(&request("0")).is_none());
        assert!(kept.get(&request(&PAGES.to_string())).is_some());
    }
}
