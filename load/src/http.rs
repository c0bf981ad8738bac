//! A minimal HTTP/1.1 keep-alive client for the REST half of the contract, and the shared
//! TCP connect helper.
//!
//! Setup traffic (register, login, rooms) is not the hot path, but it runs for tens of
//! thousands of users in the connection scenario, so one client reuses one connection and
//! bodies are parsed with `serde_json` only by the callers that need a field.

use crate::error::{LoadError, Result};
use crate::tls::Stream;
use parley_protocol::{ErrorBody, ErrorInfo};
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest response head accepted. Default is 64 KiB, four times the server's own request cap.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines in a response head. Default is 64 (the server sends about ten).
const MAX_HEADERS: usize = 64;
/// Longest response body accepted. Default is 16 MiB (a `GET /api/v1/users` of 20,000 users
/// is about 1.5 MiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Connects to `addr`, from `local` when given (another 127.0.0.x source address multiplies
/// the ephemeral ports on loopback), with Nagle off.
/// With [`crate::tls::enable`], the TLS handshake is part of connecting.
pub async fn connect(addr: SocketAddr, local: Option<IpAddr>) -> Result<Stream> {
    let stream = match local {
        Some(ip) => {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    Stream::over(stream).await
}

/// One answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| LoadError::Protocol(format!("response body is not json: {e}")))
    }

    /// The JSON body as one of the contract's types.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| LoadError::Protocol(format!("unexpected response body: {e}")))
    }

    /// A string field of the JSON body.
    pub fn str_field(&self, name: &str) -> Result<String> {
        self.json()?
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| LoadError::Protocol(format!("response has no string field {name:?}")))
    }

    /// The contract's error body, if this is one.
    pub fn error(&self) -> Option<ErrorInfo> {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .ok()
            .map(|b| b.error)
    }

    /// `error.code` of an error body, if it has one.
    pub fn error_code(&self) -> Option<String> {
        self.error().map(|e| e.code)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }
}

/// The parts of a response head the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<usize>,
    pub chunked: bool,
    pub close: bool,
    /// Bytes of the head, including the blank line.
    pub len: usize,
}

/// Parses a response head from the start of `buf`; `Ok(None)` means incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(LoadError::Protocol("response head too long".into()));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(LoadError::Protocol(format!("bad response head: {e}"))),
    };
    let mut head = Head {
        status: parsed.code.unwrap_or(0),
        content_length: None,
        chunked: false,
        close: parsed.version == Some(0),
        len,
    };
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| LoadError::Protocol(format!("header {} is not utf-8", h.name)))?
            .trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse()
                .map_err(|_| LoadError::Protocol(format!("bad content-length {value:?}")))?;
            head.content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(head))
}

/// Decodes a chunked body from the start of `buf`: the body and the bytes it took, or
/// `Ok(None)` if incomplete. Trailers are skipped.
pub fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = memchr::memmem::find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + eol])
            .map_err(|_| LoadError::Protocol("bad chunk size line".into()))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| LoadError::Protocol(format!("bad chunk size {size_text:?}")))?;
        at += eol + 2;
        if size == 0 {
            // Trailer lines until an empty one.
            loop {
                let Some(eol) = memchr::memmem::find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if size > MAX_BODY_BYTES || body.len() + size > MAX_BODY_BYTES {
            return Err(LoadError::Protocol("response body too long".into()));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// A keep-alive connection to one server, reopened when the server closes it.
pub struct HttpClient {
    addr: SocketAddr,
    local: Option<IpAddr>,
    stream: Option<Stream>,
    buf: Vec<u8>,
    host: String,
}

impl HttpClient {
    pub fn new(addr: SocketAddr, local: Option<IpAddr>) -> HttpClient {
        HttpClient {
            addr,
            local,
            stream: None,
            buf: Vec::with_capacity(4096),
            host: addr.to_string(),
        }
    }

    /// Sends one request and reads its answer. A request on a reused connection that the server
    /// had already closed is retried once on a new connection.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(t) = token {
            req.push_str("Authorization: Bearer ");
            req.push_str(t);
            req.push_str("\r\n");
        }
        let body = body.unwrap_or(b"");
        if !body.is_empty() || method == "POST" {
            req.push_str("Content-Type: application/json\r\n");
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);

        let reused = self.stream.is_some();
        match self.exchange(&bytes).await {
            Ok(r) => Ok(r),
            Err(LoadError::Io(_)) if reused => {
                self.stream = None;
                self.exchange(&bytes).await
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Response> {
        if self.stream.is_none() {
            self.stream = Some(connect(self.addr, self.local).await?);
            self.buf.clear();
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(LoadError::Protocol("no connection".into()));
        };
        stream.write_all(request).await?;
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if read_more(stream, &mut self.buf).await? == 0 {
                return Err(LoadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        self.buf.drain(..head.len);
        let body = if head.chunked {
            loop {
                if let Some((body, used)) = decode_chunked(&self.buf)? {
                    self.buf.drain(..used);
                    break body;
                }
                if read_more(stream, &mut self.buf).await? == 0 {
                    return Err(LoadError::Protocol("eof inside chunked body".into()));
                }
            }
        } else if let Some(n) = head.content_length {
            if n > MAX_BODY_BYTES {
                return Err(LoadError::Protocol("response body too long".into()));
            }
            while self.buf.len() < n {
                if read_more(stream, &mut self.buf).await? == 0 {
                    return Err(LoadError::Protocol("eof inside body".into()));
                }
            }
            self.buf.drain(..n).collect()
        } else if head.status == 204 || head.status == 304 || head.status / 100 == 1 {
            Vec::new()
        } else {
            // Body delimited by close.
            while read_more(stream, &mut self.buf).await? != 0 {
                if self.buf.len() > MAX_BODY_BYTES {
                    return Err(LoadError::Protocol("response body too long".into()));
                }
            }
            self.stream = None;
            std::mem::take(&mut self.buf)
        };
        if head.close {
            self.stream = None;
        }
        Ok(Response {
            status: head.status,
            body,
        })
    }
}

async fn read_more(stream: &mut Stream, buf: &mut Vec<u8>) -> Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_heads() {
        let h = parse_head(b"HTTP/1.1 201 Created\r\nContent-Length: 17\r\nX: y\r\n\r\n{}")
            .unwrap()
            .unwrap();
        assert_eq!(
            h,
            Head {
                status: 201,
                content_length: Some(17),
                chunked: false,
                close: false,
                len: 50
            }
        );
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(h.chunked && h.close);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
            .unwrap()
            .is_none());
        assert!(parse_head(b"SMTP 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n").is_err());
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(parse_head(many.as_bytes()).is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_head(&vec![b'a'; MAX_HEAD_BYTES + 1]).is_err());
    }

    #[test]
    fn decodes_chunked_bodies() {
        let raw = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (body, used) = decode_chunked(raw).unwrap().unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(&raw[used..], b"NEXT");
        for cut in 0..raw.len() - 4 {
            assert!(decode_chunked(&raw[..cut]).unwrap().is_none(), "cut {cut}");
        }
        assert!(decode_chunked(b"zz\r\n").is_err());
        assert!(decode_chunked(b"ffffffffffffffff\r\nabc").is_err());
    }

    #[test]
    fn reads_error_codes() {
        let r = Response {
            status: 409,
            body: br#"{"error":{"code":"username_taken","message":"m"}}"#.to_vec(),
        };
        assert_eq!(r.error_code().as_deref(), Some("username_taken"));
        assert!(r.str_field("token").is_err());
    }
}
