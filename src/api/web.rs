//! The browser client: the files under `web/`, embedded in the binary at compile time and
//! served at `GET /` (the page) and `GET /web/NAME` (its stylesheet and script modules).
//!
//! Every answer carries an `ETag` made from a hash of the file's bytes and
//! `Cache-Control: no-cache`, so a browser keeps its copy and revalidates it: an
//! `If-None-Match` that names the current tag gets `304` and no body. The page loads nothing
//! from another origin and runs no inline script; its `Content-Security-Policy` says so to the
//! browser as well, so an injected `<script>` or `onerror=` would not run even if one slipped
//! through the page's own rule of putting user text only in text nodes.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::http::{Request, Response};

/// The policy of every HTML answer: this origin only, no inline script or style, no plugins,
/// no framing; the WebSocket is allowed on this origin's `ws:` or `wss:`.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    /// The name after `/web/` (`index.html` is also served at `/`).
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../web/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("socket.js", "text/javascript; charset=utf-8"),
    asset!("view.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The quoted entity tag of each asset, in `ASSETS` order: the first 16 bytes of its SHA-256.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body);
                let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// Whether `name` is a file of the browser client.
pub(crate) fn exists(name: &str) -> bool {
    ASSETS.iter().any(|a| a.name == name)
}

/// Whether an `If-None-Match` header value names `etag` (or is `*`); weak tags compare equal.
fn matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|t| {
        let t = t.strip_prefix("W/").unwrap_or(t);
        t == "*" || t == etag
    })
}

/// The answer for the asset `name` (`index.html` for `/`); 404 for an unknown one.
pub(crate) fn serve(req: &Request, name: &str) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return Response::error(404, "not_found", "no such file", None);
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let mut resp = if req
        .header("if-none-match")
        .is_some_and(|h| matches(h, etag))
    {
        Response::empty(304)
    } else {
        let mut r = Response::text(200, asset.content_type, String::new());
        r.body = asset.body.to_vec();
        r
    };
    resp = resp
        .with_header("ETag", etag.clone())
        .with_header("Cache-Control", "no-cache".to_owned())
        .with_header("X-Content-Type-Options", "nosniff".to_owned())
        .with_header("Referrer-Policy", "no-referrer".to_owned());
    if asset.content_type.starts_with("text/html") {
        resp = resp
            .with_header("Content-Security-Policy", CSP.to_owned())
            .with_header("X-Frame-Options", "DENY".to_owned());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let tag = "\"abc\"";
        for (header, want) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
            ("abc", false),
            ("", false),
        ] {
            assert_eq!(matches(header, tag), want, "{header}");
        }
    }

    #[test]
    fn assets_are_small_and_tagged_apart() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total < 100 * 1024, "the client is {total} bytes");
        let tags = etags();
        for (i, t) in tags.iter().enumerate() {
            assert!(!tags[..i].contains(t), "{} shares a tag", ASSETS[i].name);
        }
    }
}
