//! A small HTTP/1.1 client over `std::net::TcpStream`, with TLS for `https://` servers
//! ([`crate::tls`]): one request per connection (`Connection: close`), `Content-Length`
//! or chunked response bodies.
//!
//! The client makes a handful of short REST calls to one server it was pointed at, so a
//! connection per call costs nothing worth a pool, and hand-rolling keeps the dependency
//! list to what the WebSocket needs anyway.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::tls::{Stream, Tls};

/// How long to wait for the TCP connection. Default is 5 s: the server is expected to be
/// near, and a user waiting longer would rather see an error.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one read or write may stall. Default is 15 s: login hashes a password with
/// PBKDF2, which takes a while on a busy server.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest response head accepted. Default is 64 KiB, four times the server's own limit
/// for request heads.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most header lines in a response head. Default is 64 (the server sends about ten).
const MAX_HEADERS: usize = 64;

/// Largest response body accepted. Default is 16 MiB: a `/rooms` listing of a big server
/// fits, a runaway stream does not.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Where the server is: parsed from `--server http://HOST:PORT` or `https://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// `Some` for `https://` (and `wss://`): every connection is TLS.
    pub tls: Option<Tls>,
}

impl Endpoint {
    /// Accepts `http://host:port`, `http://host` (port 80), `https://host[:port]` (port
    /// 443), `ws://` and `wss://` alike, and `host:port` (plain), with or without a
    /// trailing `/`. An `https://` endpoint trusts the public roots; see
    /// [`Endpoint::with_ca_file`].
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let (rest, tls) = if let Some(r) = s.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = s.strip_prefix("https://") {
            (r, true)
        } else if let Some(r) = s.strip_prefix("wss://") {
            (r, true)
        } else if let Some(r) = s.strip_prefix("ws://") {
            (r, false)
        } else if s.contains("://") {
            return Err(format!(
                "unsupported scheme in {s:?}; use http://HOST:PORT or https://HOST:PORT"
            ));
        } else {
            (s, false)
        };
        let default_port = if tls { 443 } else { 80 };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("no host in {s:?}"));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            // [::1]:7878
            let (h, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("bad IPv6 address in {s:?}"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p, s)?,
                None if after.is_empty() => default_port,
                None => return Err(format!("bad address {s:?}")),
            };
            (format!("[{h}]"), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), parse_port(p, s)?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in {s:?}"));
        }
        let tls = if tls { Some(Tls::new(None)?) } else { None };
        Ok(Endpoint { host, port, tls })
    }

    /// Trust the certificates of `path` (PEM) too; only for an `https://` endpoint.
    pub fn with_ca_file(mut self, path: &std::path::Path) -> Result<Endpoint, String> {
        if self.tls.is_none() {
            return Err("--ca-file is for https:// servers".to_owned());
        }
        self.tls = Some(Tls::new(Some(path))?);
        Ok(self)
    }

    /// The `Host` header value, and the authority of the WebSocket URL.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn ws_url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority(), path)
    }

    /// Resolve and connect, trying each address in turn; over TLS, the handshake is
    /// done (within [`IO_TIMEOUT`]) before this returns.
    pub fn connect(&self) -> io::Result<Stream> {
        let tcp = self.connect_tcp()?;
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some(tls) => {
                tcp.set_read_timeout(Some(IO_TIMEOUT))?;
                tcp.set_write_timeout(Some(IO_TIMEOUT))?;
                let host = self.host.trim_start_matches('[').trim_end_matches(']');
                tls.connect(host, tcp)
            }
        }
    }

    fn connect_tcp(&self) -> io::Result<TcpStream> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = (host, self.port).to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for host");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

/// A connection failure as a person would say it: "connection refused", not
/// "Connection refused (os error 111)".
pub fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::NotFound => "no such host".to_owned(),
        _ => e.to_string(),
    }
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .map_err(|_| format!("bad port {p:?} in {whole:?}"))
}

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request, one response. `body` is sent as `application/json`.
pub fn request(
    ep: &Endpoint,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&[u8]>,
) -> io::Result<Response> {
    let mut stream = ep.connect()?;
    stream.tcp().set_read_timeout(Some(IO_TIMEOUT))?;
    stream.tcp().set_write_timeout(Some(IO_TIMEOUT))?;

    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: parley-cli/{}\r\nAccept: application/json\r\nConnection: close\r\n",
        ep.authority(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str("Content-Type: application/json\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()?;
    let resp = read_response(&mut stream, method == "HEAD");
    stream.close();
    resp
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Read one response from `r`. Generic so the parser can be tested on byte slices.
pub fn read_response<R: Read>(r: &mut R, head_only: bool) -> io::Result<Response> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let (mut resp, head_len) = loop {
        if let Some(head) = parse_head(&buf)? {
            break head;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(bad("response head too large"));
        }
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed before a complete response head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let status = resp.status;
    let mut rest = buf.split_off(head_len);
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let chunked = resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        resp.body = read_chunked(r, rest)?;
    } else if let Some(len) = resp.header("Content-Length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
        if len > MAX_BODY_BYTES {
            return Err(bad("response body too large"));
        }
        while rest.len() < len {
            let n = r.read(&mut chunk)?;
            if n == 0 {
                return Err(bad("connection closed in the middle of the body"));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        resp.body = rest;
    } else {
        // No length: the body runs to the end of the connection (we asked for close).
        loop {
            if rest.len() > MAX_BODY_BYTES {
                return Err(bad("response body too large"));
            }
            let n = r.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        resp.body = rest;
    }
    Ok(resp)
}

/// The response head at the start of `buf` (with an empty body) and its length, parsed by
/// httparse; `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> io::Result<Option<(Response, usize)>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(format!("not an HTTP/1 response head: {e}"))),
    };
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| bad(format!("header {} is not UTF-8", h.name)))?;
            Ok((h.name.to_owned(), value.trim().to_owned()))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let resp = Response {
        status: parsed.code.unwrap_or(0),
        headers,
        body: Vec::new(),
    };
    Ok(Some((resp, len)))
}

fn read_chunked<R: Read>(r: &mut R, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut fill = |buf: &mut Vec<u8>| -> io::Result<()> {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed in the middle of a chunked body"));
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    loop {
        let line_end = loop {
            if let Some(p) = find(&buf, b"\r\n") {
                break p;
            }
            if buf.len() > 1024 {
                return Err(bad("chunk size line too long"));
            }
            fill(&mut buf)?;
        };
        let size_line = std::str::from_utf8(&buf[..line_end]).map_err(|_| bad("bad chunk size"))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad(format!("bad chunk size {size_hex:?}")))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            return Ok(body); // trailers, if any, are ignored
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(bad("response body too large"));
        }
        while buf.len() < size + 2 {
            fill(&mut buf)?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encode one path segment (room ids are URL-safe already; user-typed ones may not be).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        let cases: &[(&str, Option<(&str, u16)>)] = &[
            ("http://127.0.0.1:7878", Some(("127.0.0.1", 7878))),
            ("http://127.0.0.1:7878/", Some(("127.0.0.1", 7878))),
            ("localhost:9000", Some(("localhost", 9000))),
            ("http://example", Some(("example", 80))),
            ("http://[::1]:7878", Some(("[::1]", 7878))),
            ("https://example:8443", Some(("example", 8443))),
            ("https://example", Some(("example", 443))),
            ("wss://example/", Some(("example", 443))),
            ("ws://example:1", Some(("example", 1))),
            ("http://:80", None),
            ("http://host:notaport", None),
            ("ftp://x", None),
        ];
        for (input, want) in cases {
            let got = Endpoint::parse(input).ok().map(|e| (e.host, e.port));
            let want = want.map(|(h, p)| (h.to_owned(), p));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn https_endpoints_use_tls_and_wss() {
        let ep = Endpoint::parse("https://chat.example").expect("parses");
        assert!(ep.tls.is_some());
        assert_eq!(ep.ws_url("/api/v1/ws"), "wss://chat.example:443/api/v1/ws");
        assert_eq!(ep.to_string(), "https://chat.example:443");
        let ep = Endpoint::parse("http://h:1").expect("parses");
        assert!(ep.tls.is_none());
        assert_eq!(ep.ws_url("/x"), "ws://h:1/x");
        assert!(ep.with_ca_file(std::path::Path::new("ca.pem")).is_err());
    }

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        let r = read_response(&mut &raw[..], false).expect("parses");
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    #[test]
    fn chunked_body() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = read_response(&mut &raw[..], false).expect("parses");
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn no_content_and_eof_body() {
        let raw = b"HTTP/1.1 204 No Content\r\n\r\n";
        let r = read_response(&mut &raw[..], false).expect("parses");
        assert_eq!((r.status, r.body.len()), (204, 0));
        let raw = b"HTTP/1.0 200 OK\r\n\r\nuntil eof";
        let r = read_response(&mut &raw[..], false).expect("parses");
        assert_eq!(r.body, b"until eof");
    }

    #[test]
    fn broken_responses_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"HTTP/1.1 200 OK\r\n",
            b"SMTP 220 hi\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        ];
        for raw in cases {
            assert!(read_response(&mut &raw[..], false).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("abc-_.~9"), "abc-_.~9");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
