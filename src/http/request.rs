//! One parsed HTTP request and what bounds it: [`Request`] with its header, query and
//! `X-Forwarded-For` accessors, the size [`Limits`], and [`ParseError`], the one place a refused
//! request maps to its status and the contract's error code. The parser that produces them is
//! `parse`.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::parse;

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
