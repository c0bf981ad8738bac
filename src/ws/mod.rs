//! The WebSocket endpoint: the upgrade handshake on our own HTTP layer, then the
//! per-connection session (`session`) over tungstenite's frame codec (`frame`), fed by a
//! bounded outbound queue (`outbound`).
//!
//! tungstenite's own handshake guards do not run here: the HTTP layer has already enforced
//! the header size, count and time limits before this code sees the request.

pub(crate) mod frame;
pub(crate) mod session;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

use crate::chat::{Auth, Core};
use crate::http::{Request, Response};

const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's key.
fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Checks an upgrade request. On success returns who it is and the 101 response bytes;
/// otherwise the HTTP answer to send instead (400, 401, 403 or 426), and no upgrade.
/// Offered extensions (compression) are ignored: the answer names none.
pub(crate) async fn handshake(core: &Core, req: &Request) -> Result<(Auth, Vec<u8>), Response> {
    let is_upgrade = has_token(req.header("upgrade"), "websocket")
        && has_token(req.header("connection"), "upgrade");
    if !is_upgrade {
        return Err(Response::error(
            426,
            "upgrade_required",
            "this endpoint takes a WebSocket upgrade",
            None,
        )
        .with_header("Upgrade", "websocket".into()));
    }
    if req.header("sec-websocket-version") != Some("13") {
        return Err(Response::error(
            426,
            "upgrade_required",
            "only WebSocket version 13 is supported",
            None,
        )
        .with_header("Sec-WebSocket-Version", "13".into()));
    }
    let key = req.header("sec-websocket-key").unwrap_or("");
    if STANDARD.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(Response::error(
            400,
            "bad_request",
            "missing or malformed Sec-WebSocket-Key",
            None,
        ));
    }
    if !origin_allowed(&core.cfg.allowed_origins, req) {
        return Err(Response::error(
            403,
            "forbidden_origin",
            "this Origin is not allowed",
            None,
        ));
    }
    let token = match req.header("authorization") {
        Some(v) => v
            .split_once(' ')
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string()),
        None => req.query_param("token"),
    };
    let token = token.ok_or(crate::chat::ChatError::Unauthorized)?;
    let auth = core.authenticate_current(&token).await?;
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    );
    Ok((auth, reply.into_bytes()))
}

/// With `--allowed-origin`, a browser's request must name one listed origin. A request
/// without `Origin` comes from a client that is not a browser, which could send any Origin it
/// liked, so it is allowed; two `Origin` headers are ambiguous and refused.
fn origin_allowed(allowed: &[String], req: &Request) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let mut origins = req.headers.iter().filter(|(n, _)| n == "origin");
    match (origins.next(), origins.next()) {
        (None, _) => true,
        (Some((_, o)), None) => allowed.iter().any(|a| a == o),
        (Some(_), Some(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_matches_rfc_6455() {
        assert_eq!(
            super::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
