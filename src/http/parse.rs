//! HTTP/1.x request framing: turns the bytes a connection has buffered into a [`Request`] and
//! enforces the "HTTP limits" of PROTOCOL.md (414, 431, 413, 400, 501).
//!
//! [`Parser::parse`] is incremental (`Ok(None)` = read more), keeps its state between reads so
//! a request dribbled a byte at a time costs O(n), and rejects an oversized request as soon
//! as the buffered bytes prove it oversized, so a connection never holds more than about
//! `max_request_line + max_header_bytes + max_body` bytes of one request. Routing, responses and
//! the timeouts live elsewhere; [`Parser::in_body`] tells the timeouts whether the head is in.
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

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Size limits on one request. Every field is a hard cap checked before bytes are buffered past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Longest request line in bytes, excluding its line ending. Default is 8192: the contract's
    /// 414 threshold, far above any path and query this API produces.
    pub(crate) max_request_line: usize,
    /// Largest header block in bytes: every header line with its line ending, from after the
    /// request line up to (not including) the blank line. Default is 16384: the contract's 431
    /// threshold, room for a token, cookies and an origin many times over.
    pub(crate) max_header_bytes: usize,
    /// Most header fields. Default is 64: the contract's 431 threshold; real clients send about a
    /// dozen. It also sizes the httparse slot array, so keep it modest.
    pub(crate) max_headers: usize,
    /// Largest accepted `Content-Length`. Default is 65536 (`--max-body-bytes`): a chat message is
    /// at most 4 KiB of text, so this leaves room for JSON escaping and future fields.
    pub(crate) max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8192,
            max_header_bytes: 16384,
            max_headers: 64,
            max_body: 65536,
        }
    }
}

/// One parsed request, owning its data so the read buffer can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The raw path before `?`, not percent-decoded, so `%2F` cannot forge a path separator.
    pub(crate) path: String,
    /// The raw text after the first `?`, if any.
    pub(crate) query: Option<String>,
    /// In arrival order; names lowercased, values decoded as lossy UTF-8 and trimmed.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Whether the connection may serve another request after this one.
    pub(crate) keep_alive: bool,
}

impl Request {
    /// The first header named `name`, compared case-insensitively.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The last entry of the last `X-Forwarded-For` header: the address the nearest proxy
    /// saw. `None` when there is none or it is not an IP address (`1.2.3.4:5678` and
    /// `[::1]:5678`, with a port, are read too).
    pub(crate) fn forwarded_for(&self) -> Option<IpAddr> {
        let (_, value) = self
            .headers
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))?;
        let last = value.rsplit(',').next()?.trim();
        last.parse::<IpAddr>()
            .ok()
            .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
    }

    /// The first query parameter whose decoded key is `key`, decoded (`+` is a space). `None`
    /// when absent or when that value is not valid percent-encoded UTF-8.
    pub(crate) fn query_param(&self, key: &str) -> Option<String> {
        let form_decode = |s: &str| percent_decode(&s.replace('+', " "));
        self.query
            .as_deref()?
            .split('&')
            .find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (form_decode(k)? == key).then(|| form_decode(v))
            })
            .flatten()
    }
}

/// Decodes `%XX` escapes (`+` is left alone). `None` on a bad escape or invalid UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let hex = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex(bytes.next()?)?;
            let lo = hex(bytes.next()?)?;
            out.push((hi << 4) | lo);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Why a request was refused; [`ParseError::status`] and [`ParseError::code`] map it to the
/// contract's error response. The connection should be closed after answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Request line over `max_request_line`: 414.
    UriTooLong,
    /// Header block over `max_header_bytes`, or more than `max_headers` headers: 431.
    HeadersTooLarge,
    /// `Content-Length` over `max_body`: 413.
    BodyTooLarge,
    /// Anything else wrong with the request, with a short lowercase reason: 400.
    Malformed(&'static str),
    /// A `Transfer-Encoding` without `Content-Length`: 501, as we decode no transfer codings.
    UnsupportedTransferEncoding,
}

impl ParseError {
    /// The HTTP status to answer with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            ParseError::UriTooLong => 414,
            ParseError::HeadersTooLarge => 431,
            ParseError::BodyTooLarge => 413,
            ParseError::Malformed(_) => 400,
            ParseError::UnsupportedTransferEncoding => 501,
        }
    }

    /// The contract's `error.code` string.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ParseError::UriTooLong => "uri_too_long",
            ParseError::HeadersTooLarge => "headers_too_large",
            ParseError::BodyTooLarge => "body_too_large",
            ParseError::Malformed(_) => "bad_request",
            ParseError::UnsupportedTransferEncoding => "not_implemented",
        }
    }

    /// The contract's `error.message`: lowercase, no trailing period.
    pub(crate) fn message(&self) -> String {
        match self {
            ParseError::UriTooLong => "request line too long".to_owned(),
            ParseError::HeadersTooLarge => "request header block too large".to_owned(),
            ParseError::BodyTooLarge => "request body too large".to_owned(),
            ParseError::Malformed(reason) => format!("malformed request: {reason}"),
            ParseError::UnsupportedTransferEncoding => {
                "transfer-encoding is not supported; send content-length".to_owned()
            }
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ParseError {}

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
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_the_last_entry_of_the_last_header() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (&["10.0.0.1"], Some("10.0.0.1")),
            (&["6.6.6.6, 10.0.0.1"], Some("10.0.0.1")),
            (&["6.6.6.6", "10.0.0.2 ,  10.0.0.3 "], Some("10.0.0.3")),
            (&["10.0.0.4:5678"], Some("10.0.0.4")),
            (&["[2001:db8::1]:443"], Some("2001:db8::1")),
            (&["2001:db8::2"], Some("2001:db8::2")),
            (&["10.0.0.1, unknown"], None),
            (&["10.0.0.1,"], None),
        ];
        for (values, want) in cases {
            let mut req = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &Limits::default())
                .unwrap()
                .unwrap()
                .0;
            for v in *values {
                req.headers.push(("x-forwarded-for".into(), v.to_string()));
            }
            let want = want.map(|w| w.parse::<IpAddr>().unwrap());
            assert_eq!(req.forwarded_for(), want, "{values:?}");
        }
    }

    enum Want {
        More,
        Fail(ParseError),
        /// Consumed byte count (`None` = the whole input) and a check on the request.
        Done(Option<usize>, fn(&Request) -> bool),
    }
    use Want::{Done, Fail, More};

    fn bytes(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    /// A GET whose request line is exactly `len` bytes ("GET /aaa HTTP/1.1").
    fn long_line(len: usize) -> Vec<u8> {
        bytes(&format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(len - 14)
        ))
    }

    /// A GET whose header block is exactly `len` bytes: one padded header line.
    fn big_block(len: usize) -> Vec<u8> {
        bytes(&format!(
            "GET / HTTP/1.1\r\nHost: x\r\nx-pad: {}\r\n\r\n",
            "a".repeat(len - 18)
        ))
    }

    /// `n` headers, the first of them `Host`.
    fn many_headers(n: usize) -> Vec<u8> {
        let lines: String = (1..n).map(|i| format!("h{i}: v\r\n")).collect();
        let lines = format!("Host: x\r\n{lines}");
        bytes(&format!("GET / HTTP/1.1\r\n{lines}\r\n"))
    }

    fn post(content_length: usize, body_len: usize) -> Vec<u8> {
        let mut buf = bytes(&format!(
            "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: {content_length}\r\n\r\n"
        ));
        buf.resize(buf.len() + body_len, b'x');
        buf
    }

    #[rustfmt::skip]
    fn cases() -> Vec<(&'static str, Vec<u8>, Want)> {
        use ParseError::*;
        let bad = |reason| Fail(Malformed(reason));
        let get = |s: &str| bytes(&format!("GET / HTTP/1.1\r\nHost: x\r\n{s}\r\n"));
        vec![
            ("simple get", bytes("GET /api/v1/me HTTP/1.1\r\nHost: x\r\n\r\n"),
                Done(None, |r| r.method == "GET" && r.path == "/api/v1/me" && r.query.is_none())),
            ("post with body", bytes("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
                Done(None, |r| r.method == "POST" && r.body == b"hello")),
            ("body incomplete", bytes("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel"), More),
            ("head incomplete", bytes("GET / HTTP/1.1\r\nHost: x\r\n"), More),
            ("query string", bytes("GET /r/m?before=9&limit=5 HTTP/1.1\r\nHost: x\r\n\r\n"),
                Done(None, |r| r.path == "/r/m" && r.query.as_deref() == Some("before=9&limit=5"))),
            ("path stays raw", bytes("GET /a%2Fb?x HTTP/1.1\r\nHost: x\r\n\r\n"),
                Done(None, |r| r.path == "/a%2Fb" && r.query.as_deref() == Some("x"))),
            ("pipelined", bytes("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
                Done(Some(28), |r| r.path == "/1")),
            ("pipelined after body", bytes("POST /1 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhiGET /2"),
                Done(Some(50), |r| r.body == b"hi")),
            ("leading empty lines", bytes("\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), Done(None, |r| r.path == "/")),
            ("bare lf", bytes("GET / HTTP/1.1\nHost: x\n\n"), Done(None, |r| r.header("host") == Some("x"))),
            ("request line at limit", long_line(8192), Done(None, |r| r.path.len() == 8179)),
            ("request line over limit", long_line(8193), Fail(UriTooLong)),
            ("line over limit, no lf yet", vec![b'a'; 8193], Fail(UriTooLong)),
            ("line at limit, no lf yet", vec![b'a'; 8192], More),
            ("line at limit, cr only", long_line(8192)[..8193].to_vec(), More),
            ("empty lines count", [bytes(&"\r\n".repeat(4097)), long_line(20)].concat(), Fail(UriTooLong)),
            ("header block at limit", big_block(16384), Done(None, |r| r.headers.len() == 2)),
            ("header block over limit", big_block(16385), Fail(HeadersTooLarge)),
            ("block over limit, no blank line yet",
                [bytes("GET / HTTP/1.1\r\nx: "), vec![b'a'; 16384]].concat(), Fail(HeadersTooLarge)),
            ("64 headers", many_headers(64), Done(None, |r| r.headers.len() == 64)),
            ("65 headers", many_headers(65), Fail(HeadersTooLarge)),
            ("66 headers", many_headers(66), Fail(HeadersTooLarge)),
            ("body at limit", post(65536, 65536), Done(None, |r| r.body.len() == 65536)),
            ("body over limit, before it arrives", post(65537, 0), Fail(BodyTooLarge)),
            ("cl and te", get("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"),
                bad("both content-length and transfer-encoding")),
            ("te alone", get("Transfer-Encoding: chunked\r\n"), Fail(UnsupportedTransferEncoding)),
            ("cl not digits", get("Content-Length: abc\r\n"), bad("invalid content-length")),
            ("cl signed", get("Content-Length: +5\r\n"), bad("invalid content-length")),
            ("cl empty", get("Content-Length:\r\n"), bad("invalid content-length")),
            ("cl overflow", get("Content-Length: 99999999999999999999999\r\n"), bad("invalid content-length")),
            ("cl duplicate differing", get("Content-Length: 1\r\nContent-Length: 2\r\n"),
                bad("conflicting content-length values")),
            ("cl list differing", get("Content-Length: 1, 2\r\n"), bad("conflicting content-length values")),
            ("cl duplicate same", bytes("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok"),
                Done(None, |r| r.body == b"ok")),
            ("http/2 request line", bytes("GET / HTTP/2.0\r\n\r\n"), bad("unsupported http version")),
            ("space in header name", get("Bad Name: x\r\n"), bad("invalid header name")),
            ("binary garbage", bytes("\u{1}\u{2}\r\n\r\n"), bad("invalid token in request line")),
            ("1.1 keep-alive by default", bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Done(None, |r| r.keep_alive)),
            ("1.1 close", get("Connection: Upgrade, Close\r\n"), Done(None, |r| !r.keep_alive)),
            ("1.0 close by default", bytes("GET / HTTP/1.0\r\n\r\n"), Done(None, |r| !r.keep_alive)),
            ("1.0 keep-alive", bytes("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
                Done(None, |r| r.keep_alive)),
            ("no host", bytes("GET / HTTP/1.1\r\nX: y\r\n\r\n"), bad("missing host header")),
            ("two hosts", get("Host: y\r\n"), bad("more than one host header")),
            ("two hosts, 1.0", bytes("GET / HTTP/1.0\r\nHost: x\r\nhost: x\r\n\r\n"),
                bad("more than one host header")),
            ("1.0 without host", bytes("GET / HTTP/1.0\r\n\r\n"), Done(None, |r| r.header("host").is_none())),
            ("not http at all", vec![0x16, 0x03, 0x01, 0x02], bad("invalid token in request line")),
            ("header case-insensitive", get("X-Token:  abc \r\nx-token: second\r\n"), Done(None, |r| {
                r.header("X-TOKEN") == Some("abc") && r.header("x-token") == Some("abc")
                    && r.headers[1].0 == "x-token" && r.header("missing").is_none()
            })),
            ("query_param decoding", bytes("GET /?q=a%20b+c&k%3D=v&q=2&bad=%zz&flag HTTP/1.1\r\nHost: x\r\n\r\n"),
                Done(None, |r| {
                    r.query_param("q").as_deref() == Some("a b c")
                        && r.query_param("k=").as_deref() == Some("v")
                        && r.query_param("flag").as_deref() == Some("")
                        && r.query_param("bad").is_none()
                        && r.query_param("none").is_none()
                })),
        ]
    }

    #[test]
    fn table() {
        for (name, input, want) in cases() {
            let got = parse(&input, &Limits::default());
            match (want, got) {
                (More, Ok(None)) => {}
                (Fail(e), Err(g)) => assert_eq!(e, g, "{name}"),
                (Done(consumed, check), Ok(Some((req, n)))) => {
                    assert_eq!(n, consumed.unwrap_or(input.len()), "{name}: consumed");
                    assert!(check(&req), "{name}: {:.300}", format!("{req:?}"));
                }
                (_, got) => panic!("{name}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn every_split_point() {
        let requests = [
            bytes("POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"),
            bytes("\r\n\nGET / HTTP/1.0\nConnection: keep-alive\n\n"),
            long_line(8192),
            big_block(16384),
            many_headers(64),
            post(65536, 65536),
        ];
        let limits = Limits::default();
        let tiny = Limits {
            max_request_line: 0,
            max_header_bytes: 0,
            max_headers: 0,
            max_body: 0,
        };
        for full in requests {
            // The reference parse has a pipelined request behind it, which must not leak in.
            let piped = [full.clone(), bytes("GET /next HTTP/1.1\r\nHost: x\r\n\r\n")].concat();
            let Ok(Some((want, n))) = parse(&piped, &limits) else {
                panic!("reference parse failed")
            };
            assert_eq!(n, full.len());
            let head_len = n - want.body.len();
            for k in 0..full.len() {
                let prefix = &full[..k];
                assert_eq!(parse(prefix, &limits), Ok(None), "prefix {k}");
                assert_eq!(head_complete(prefix), k >= head_len, "prefix {k}");
                let _ = parse(prefix, &tiny); // must not panic, whatever the limits
            }
            assert_eq!(parse(&full, &limits), Ok(Some((want.clone(), full.len()))));
            assert!(head_complete(&full));
            assert!(parse(&full, &tiny).is_err());

            // One parser fed a byte at a time sees the same request, then the next one.
            let mut parser = Parser::default();
            for k in 0..piped.len() {
                match parser.parse(&piped[..k], &limits) {
                    Ok(None) => assert!(k < full.len(), "nothing at {k}"),
                    Ok(Some((req, n))) => {
                        assert_eq!((k, n), (full.len(), full.len()));
                        assert_eq!(req, want);
                        break;
                    }
                    Err(e) => panic!("dribbled prefix {k}: {e}"),
                }
                assert_eq!(
                    parser.in_body(),
                    k >= head_len && k < full.len(),
                    "prefix {k}"
                );
            }
            let rest = &piped[full.len()..];
            let next = parser
                .parse(rest, &limits)
                .map(|r| r.map(|(q, n)| (q.path, n)));
            assert_eq!(next, Ok(Some(("/next".to_owned(), rest.len()))));
        }
    }

    /// A request dribbled a byte at a time costs work proportional to its length: the line
    /// searches resume where they stopped and httparse runs a fixed number of times.
    #[test]
    fn dribbling_costs_linear_work() {
        let limits = Limits::default();
        for full in [
            big_block(16384),
            many_headers(64),
            post(65536, 65536),
            long_line(8192),
        ] {
            let mut parser = Parser::default();
            for k in 1..=full.len() {
                let got = parser.parse(&full[..k], &limits).expect("valid request");
                assert_eq!(got.is_some(), k == full.len());
            }
            let work = parser.work();
            assert!(work.httparse_runs <= 3, "{work:?}");
            assert!(
                work.scanned <= full.len() + 3,
                "{work:?} for {} bytes",
                full.len()
            );

            // The same work as when the request arrives whole, give or take the extra runs.
            let mut whole = Parser::default();
            assert!(whole.parse(&full, &limits).is_ok_and(|r| r.is_some()));
            assert_eq!(whole.work().httparse_runs, 1);
            assert!(work.scanned <= whole.work().scanned + 3);
        }
    }

    #[test]
    fn head_completion() {
        for (input, want) in [
            ("", false),
            ("\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: x\r\n", false),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r", false),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
            ("\r\nGET / HTTP/1.1\n\n", true),
        ] {
            assert_eq!(head_complete(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn percent_decoding() {
        for (input, want) in [
            ("plain", Some("plain")),
            ("a%20b+c", Some("a b+c")),
            ("%E2%82%ac", Some("€")),
            ("%", None),
            ("%4", None),
            ("%zz", None),
            ("%FF", None),
        ] {
            assert_eq!(percent_decode(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn error_mapping() {
        for (err, status, code) in [
            (ParseError::UriTooLong, 414, "uri_too_long"),
            (ParseError::HeadersTooLarge, 431, "headers_too_large"),
            (ParseError::BodyTooLarge, 413, "body_too_large"),
            (ParseError::Malformed("x"), 400, "bad_request"),
            (
                ParseError::UnsupportedTransferEncoding,
                501,
                "not_implemented",
            ),
        ] {
            assert_eq!((err.status(), err.code()), (status, code));
            assert!(!err.message().is_empty() && !err.message().ends_with('.'));
        }
    }
}
