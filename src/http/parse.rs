//! HTTP/1.x request framing: turns the bytes a connection has buffered into a [`Request`] and
//! enforces the "HTTP limits" of PROTOCOL.md (414, 431, 413, 400, 501).
//!
//! [`Parser::parse`] is incremental (`Ok(None)` = read more), keeps its state between reads so
//! a request dribbled a byte at a time costs O(n), and rejects an oversized request as soon
//! as the buffered bytes prove it oversized, so a connection never holds more than about
//! `max_request_line + max_header_bytes + max_body` bytes of one request. Routing, responses and
//! the timeouts live elsewhere; [`Parser::in_body`] tells the timeouts whether the head is in.
//! The types it returns ([`Request`], [`Limits`], [`ParseError`]) are `request`'s, re-exported
//! here.
//!
//! Choices a caller should know:
//! - Empty lines before the request line are skipped (RFC 9112 §2.2) and included in the
//!   consumed count, but they count toward `max_request_line` so they cannot arrive forever.
//! - Lines may end in CRLF or bare LF, as httparse accepts.
//! - No `Transfer-Encoding` is accepted (501); without `Content-Length` the body is empty.
//!   Repeated or comma-listed `Content-Length` values are accepted only when all agree.
//! - The request target is passed through unchanged (origin-form, `*` or absolute-form).
//! - An HTTP/1.1 request without `Host`, and any request with more than one, is malformed
//!   (RFC 9112 §3.2); an HTTP/1.0 request may omit it.

pub(crate) use super::request::{percent_decode, Limits, ParseError, Request};

/// What one [`Parser`] has done, so a test can show that its work grows linearly with the bytes
/// of a request however they are split into reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Work {
    /// Bytes looked at while searching for line ends.
    pub(crate) scanned: usize,
    /// Runs of httparse (each one reads the buffered head from its start).
    pub(crate) httparse_runs: usize,
}

/// What httparse read from a complete head.
struct Parsed {
    head_len: usize,
    method: String,
    target: String,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    version: u8,
    /// Names lowercased, values decoded as lossy UTF-8 and trimmed.
    headers: Vec<(String, String)>,
}

/// A request head that has been parsed and is waiting for its body.
#[derive(Debug)]
struct Head {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    keep_alive: bool,
    head_len: usize,
    body_len: usize,
}

/// Parses the requests of one connection, keeping its state between reads so that a client
/// sending a request a byte at a time costs O(n), not O(n²): the searches for the end of the
/// request line and of the head resume where they stopped, and httparse runs at most three
/// times a request (on the first bytes, to refuse garbage at once; on the complete request
/// line; on the complete head), never again while the body arrives.
///
/// Between two calls the caller may only append to the buffer; once a request is returned it
/// removes the `consumed` bytes from the front, and the parser starts afresh.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    /// Offset of the request line, after any empty lines before it.
    start: usize,
    /// Where the search for the request line's LF resumes.
    line_scan: usize,
    /// The request line's LF, once seen.
    line_end: Option<usize>,
    /// Where the search for the blank line that ends the head resumes.
    head_scan: usize,
    /// httparse has looked at the first bytes of the request line.
    checked_start: bool,
    /// httparse has looked at the complete request line.
    checked_line: bool,
    /// The parsed head, while its body arrives.
    head: Option<Head>,
    work: Work,
}

impl Parser {
    /// Incremental: `Ok(None)` while more bytes are needed; `Ok(Some((req, consumed)))` once a
    /// whole request (head and `Content-Length` body) is at the start of `buf`, so pipelined
    /// requests can follow in `buf[consumed..]`. Never panics, never trusts client lengths.
    ///
    /// An error is final for the connection: answer it and close, since the stream can no
    /// longer be framed.
    pub(crate) fn parse(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(Request, usize)>, ParseError> {
        if self.head.is_none() {
            match self.parse_head(buf, limits)? {
                Some(head) => self.head = Some(head),
                None => return Ok(None),
            }
        }
        let Some(head) = &self.head else {
            return Ok(None);
        };
        let end = head.head_len + head.body_len;
        let Some(body) = buf.get(head.head_len..end) else {
            return Ok(None);
        };
        let body = body.to_vec();
        let Some(head) = self.head.take() else {
            return Ok(None);
        };
        *self = Parser {
            work: self.work,
            ..Parser::default()
        };
        let request = Request {
            method: head.method,
            path: head.path,
            query: head.query,
            headers: head.headers,
            body,
            keep_alive: head.keep_alive,
        };
        Ok(Some((request, end)))
    }

    /// True while a parsed head waits for the rest of its body.
    pub(crate) fn in_body(&self) -> bool {
        self.head.is_some()
    }

    /// The work done so far by this parser.
    #[cfg(test)]
    pub(crate) fn work(&self) -> Work {
        self.work
    }

    /// The head of the request at the start of `buf`, once it is complete.
    fn parse_head(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<Head>, ParseError> {
        // Only whole empty lines are skipped, so `start` never has to move back.
        let skipped = skip_empty_lines(buf.get(self.start..).unwrap_or_default());
        self.work.scanned += skipped;
        self.start += skipped;
        if self.line_end.is_none() {
            let from = self.line_scan.max(self.start);
            let rest = buf.get(from..).unwrap_or_default();
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.work.scanned += i + 1;
                    self.line_end = Some(from + i);
                }
                None => {
                    self.work.scanned += rest.len();
                    self.line_scan = buf.len();
                }
            }
        }
        // Leading empty lines count toward the line; an unterminated trailing CR may yet
        // become the line's CRLF, so it does not.
        let line_len = self.line_end.unwrap_or(buf.len());
        let line_len = match line_len.checked_sub(1) {
            Some(before) if buf.get(before) == Some(&b'\r') => before,
            _ => line_len,
        };
        if line_len > limits.max_request_line {
            return Err(ParseError::UriTooLong);
        }
        let Some(line_end) = self.line_end else {
            if !self.checked_start && buf.len() > self.start {
                // Refuse a stream that is not HTTP at all (TLS, say) without waiting for a LF.
                self.checked_start = true;
                self.run_httparse(buf, limits)?;
            }
            return Ok(None);
        };
        let headers_start = line_end + 1;
        let Some(head_end) = self.find_head_end(buf, line_end) else {
            if !self.checked_line {
                self.checked_line = true;
                self.run_httparse(buf, limits)?;
            }
            // A block within the limit ends with its blank line at most two bytes later.
            let seen = buf.len().saturating_sub(headers_start);
            if seen > limits.max_header_bytes.saturating_add(2) {
                return Err(ParseError::HeadersTooLarge);
            }
            return Ok(None);
        };
        let head = self.run_httparse(buf.get(..head_end).unwrap_or_default(), limits)?;
        let Some(Parsed {
            head_len,
            method,
            target,
            version,
            headers,
        }) = head
        else {
            return Err(ParseError::Malformed("incomplete request head"));
        };
        let blank_len = if buf.get(..head_len).is_some_and(|h| h.ends_with(b"\r\n")) {
            2
        } else {
            1
        };
        let block_len = head_len
            .saturating_sub(blank_len)
            .saturating_sub(headers_start);
        if block_len > limits.max_header_bytes || headers.len() > limits.max_headers {
            return Err(ParseError::HeadersTooLarge);
        }
        // RFC 9112 §3.2: an HTTP/1.1 request must carry exactly one Host; HTTP/1.0 predates it.
        match headers.iter().filter(|(n, _)| n == "host").count() {
            0 if version >= 1 => return Err(ParseError::Malformed("missing host header")),
            0 | 1 => {}
            _ => return Err(ParseError::Malformed("more than one host header")),
        }
        let body_len = body_length(&headers, limits.max_body)?;
        head_len
            .checked_add(body_len)
            .ok_or(ParseError::BodyTooLarge)?;
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (target, None),
        };
        Ok(Some(Head {
            method,
            path,
            query,
            keep_alive: keep_alive(version, &headers),
            headers,
            head_len,
            body_len,
        }))
    }

    /// Resumes the search for the blank line that ends the head, from the request line's LF
    /// on; returns the offset just past it. Stops before a LF whose next bytes have not come.
    fn find_head_end(&mut self, buf: &[u8], line_end: usize) -> Option<usize> {
        let mut i = self.head_scan.max(line_end);
        let found = loop {
            let Some(&b) = buf.get(i) else { break None };
            if b == b'\n' {
                match (buf.get(i + 1), buf.get(i + 2)) {
                    (Some(b'\n'), _) => break Some(i + 2),
                    (Some(b'\r'), Some(b'\n')) => break Some(i + 3),
                    (None, _) | (Some(b'\r'), None) => break None,
                    _ => {}
                }
            }
            i += 1;
        };
        self.work.scanned += i.saturating_sub(self.head_scan.max(line_end));
        self.head_scan = i;
        found
    }

    /// Runs httparse over `buf`: `Ok(None)` if the head is not complete in it.
    fn run_httparse(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ParseError> {
        self.work.httparse_runs += 1;
        // One spare slot tells "exactly max_headers" from "too many" without an httparse error.
        let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers.saturating_add(1)];
        let mut req = httparse::Request::new(&mut slots);
        let head_len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadersTooLarge),
            Err(e) => return Err(ParseError::Malformed(httparse_reason(e))),
        };
        let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
        else {
            return Err(ParseError::Malformed("incomplete request line"));
        };
        let headers = req
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).trim().to_owned();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect();
        Ok(Some(Parsed {
            head_len,
            method: method.to_owned(),
            target: target.to_owned(),
            version,
            headers,
        }))
    }
}

/// Parses a request from the start of `buf` with a fresh [`Parser`].
pub(crate) fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, ParseError> {
    Parser::default().parse(buf, limits)
}

/// True once the request head (up to and including the blank line) is complete in buf: the
/// reference the parser's incremental search is tested against.
#[cfg(test)]
fn head_complete(buf: &[u8]) -> bool {
    let rest = buf.get(skip_empty_lines(buf)..).unwrap_or_default();
    rest.iter().enumerate().any(|(i, &b)| {
        b == b'\n'
            && rest
                .get(i + 1..)
                .is_some_and(|r| r.starts_with(b"\n") || r.starts_with(b"\r\n"))
    })
}

/// Offset of the first byte after any leading CRLF or LF lines.
fn skip_empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match (buf.get(i), buf.get(i + 1)) {
            (Some(b'\n'), _) => i += 1,
            (Some(b'\r'), Some(b'\n')) => i += 2,
            _ => return i,
        }
    }
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::Version => "unsupported http version",
        httparse::Error::Status | httparse::Error::TooManyHeaders => "invalid request",
    }
}

/// The body length the headers announce, validated against RFC 9112 §6.3 and `max_body`.
fn body_length(headers: &[(String, String)], max_body: usize) -> Result<usize, ParseError> {
    let chunked = headers.iter().any(|(n, _)| n == "transfer-encoding");
    let mut length: Option<u64> = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        for part in value.split(',').map(str::trim) {
            // u64::from_str would accept a leading '+', which the grammar does not.
            let valid = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            let n = part.parse::<u64>().ok().filter(|_| valid);
            let n = n.ok_or(ParseError::Malformed("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::Malformed("conflicting content-length values"));
            }
            length = Some(n);
        }
    }
    match (length, chunked) {
        (Some(_), true) => Err(ParseError::Malformed(
            "both content-length and transfer-encoding",
        )),
        (None, true) => Err(ParseError::UnsupportedTransferEncoding),
        (None, false) => Ok(0),
        (Some(n), false) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= max_body)
            .ok_or(ParseError::BodyTooLarge),
    }
}

/// HTTP/1.1 persists unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
fn keep_alive(version: u8, headers: &[(String, String)]) -> bool {
    let has = |token: &str| {
        headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    !has("close") && (version >= 1 || has("keep-alive"))
}

#[cfg(test)]
mod tests;
