//! HTTP responses: JSON bodies, the contract's error shape, and encoding to bytes. A core
//! error becomes a response in `api` (`From<ChatError>`): this layer knows nothing of the core.

use serde::Serialize;
use serde_json::json;

/// A body written in pieces, whose length is known before any of it is: a large answer is
/// put together piece by piece as it is written, and its writing stops when the client has
/// gone.
pub(crate) trait Pieces: Send + Sync {
    /// The body's length in bytes, the sum of every piece's.
    fn len(&self) -> usize;
    /// Appends piece `i` to `out`; false past the last piece.
    fn write_piece(&self, i: usize, out: &mut Vec<u8>) -> bool;
}

pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
    /// Close the connection after this response.
    pub(crate) close: bool,
    /// A body written in pieces after the head, instead of `body`.
    pub(crate) pieces: Option<Box<dyn Pieces>>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("content_type", &self.content_type)
            .field("body", &self.body.len())
            .field("pieces", &self.pieces.as_ref().map(|p| p.len()))
            .field("close", &self.close)
            .finish()
    }
}

impl Response {
    pub(crate) fn json<T: Serialize>(status: u16, body: &T) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body: serde_json::to_vec(body).unwrap_or_default(),
            close: false,
            pieces: None,
        }
    }

    /// A JSON response whose body is written in `pieces`.
    pub(crate) fn json_pieces(status: u16, pieces: Box<dyn Pieces>) -> Response {
        Response {
            pieces: Some(pieces),
            ..Response::empty(status)
        }
        .with_content_type("application/json")
    }

    fn with_content_type(mut self, content_type: &'static str) -> Response {
        self.content_type = content_type;
        self
    }

    /// A response without a body, such as 204.
    pub(crate) fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type: "",
            body: Vec::new(),
            close: false,
            pieces: None,
        }
    }

    pub(crate) fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type,
            body: body.into_bytes(),
            close: false,
            pieces: None,
        }
    }

    /// `{"error":{"code","message"}}`, plus `retry_after_ms` and `Retry-After` on a 429.
    pub(crate) fn error(
        status: u16,
        code: &str,
        message: &str,
        retry_after_ms: Option<u64>,
    ) -> Response {
        let mut error = json!({ "code": code, "message": message });
        let mut headers = Vec::new();
        if let Some(ms) = retry_after_ms {
            error["retry_after_ms"] = json!(ms);
            headers.push(("Retry-After", ms.div_ceil(1000).max(1).to_string()));
        }
        let mut r = Response::json(status, &json!({ "error": error }));
        r.headers = headers;
        r
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    /// Appends the response to `out`; without its body (but with the body's
    /// `Content-Length`) when `with_body` is false, as the answer to a `HEAD`. A body in
    /// `pieces` is not appended: the caller writes it after the head.
    pub(crate) fn encode(&self, keep_alive: bool, with_body: bool, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        if !self.content_type.is_empty() {
            let _ = write!(out, "Content-Type: {}\r\n", self.content_type);
        }
        // 204 and 304 have no body and so no length (a 304's would be the 200's).
        if self.status != 204 && self.status != 304 {
            let len = self.pieces.as_ref().map_or(self.body.len(), |p| p.len());
            let _ = write!(out, "Content-Length: {len}\r\n");
        }
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        // An API answer is about one user at one moment: no cache (a shared proxy's least
        // of all) may keep it. And no body is ever to be sniffed into something it is not.
        if self.content_type == "application/json" && !has("Cache-Control") {
            out.extend_from_slice(b"Cache-Control: no-store\r\n");
        }
        if !has("X-Content-Type-Options") {
            out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
        }
        if !keep_alive || self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if with_body {
            out.extend_from_slice(&self.body);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
