//! A WebSocket client written by hand on a `TcpStream`, for what a library client will not
//! do: never read, never answer pings, send unmasked or malformed frames.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{read_reply, Reply, WAIT};

/// RFC 6455's sample key and the accept value it must produce.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub const TEXT: u8 = 0x1;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// An upgrade request for `target` with `extra` header lines (each ending in `\r\n`).
pub fn upgrade_request(target: &str, key: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Sends an upgrade request on a fresh connection and returns the HTTP answer.
pub async fn try_upgrade(addr: SocketAddr, target: &str, key: &str, extra: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = upgrade_request(target, key, extra);
    stream.write_all(req.as_bytes()).await.unwrap();
    read_reply(&mut stream, &mut Vec::new())
        .await
        .expect("an answer to the upgrade")
}

/// A frame from the server.
#[derive(Debug)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code and reason of a close frame.
    pub fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, CLOSE);
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        (code, String::from_utf8_lossy(&self.payload[2..]).into())
    }
}

/// How a connection ended, as [`Raw::ended`] saw it.
#[derive(Debug, PartialEq)]
pub enum End {
    Close(u16, String),
    /// The server dropped the connection without a close frame.
    Eof,
}

pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr, token: &str) -> Raw {
        Raw::over(TcpStream::connect(addr).await.unwrap(), token).await
    }

    /// Upgrades an already connected stream, checking the 101 answer and its accept key.
    pub async fn over(mut stream: TcpStream, token: &str) -> Raw {
        let req = upgrade_request(&format!("/api/v1/ws?token={token}"), KEY, "");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("upgrade answer in time")
                .unwrap();
            assert!(n > 0, "server closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.lines().any(
                |l| l.to_ascii_lowercase().starts_with("sec-websocket-accept:")
                    && l.ends_with(ACCEPT)
            ),
            "{head}"
        );
        buf.drain(..end + 4);
        Raw { stream, buf }
    }

    /// Writes one frame; client frames are masked unless `masked` is false.
    pub async fn write_frame(&mut self, fin: bool, opcode: u8, payload: &[u8], masked: bool) {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= u16::MAX as usize => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let mask = [0x37u8, 0xfa, 0x21, 0x3d];
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next frame, or `None` at end of stream (or a reset).
    pub async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(f);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("a frame or the end of the stream in time")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next text frame as JSON, skipping control frames.
    pub async fn json(&mut self) -> Option<Value> {
        loop {
            let f = self.frame().await?;
            match f.opcode {
                TEXT => return Some(serde_json::from_slice(&f.payload).expect("JSON")),
                CLOSE => return None,
                _ => continue,
            }
        }
    }

    /// Reads until the connection ends; returns how, and every frame seen before.
    pub async fn ended(&mut self) -> (End, Vec<Frame>) {
        let mut seen = Vec::new();
        loop {
            match self.frame().await {
                None => return (End::Eof, seen),
                Some(f) if f.opcode == CLOSE => {
                    let (code, reason) = f.close();
                    return (End::Close(code, reason), seen);
                }
                Some(f) => seen.push(f),
            }
        }
    }
}

/// Parses one unmasked server frame from the start of `buf`.
fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames are never masked");
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    at += len;
    let frame = Frame {
        fin: buf[0] & 0x80 != 0,
        opcode: buf[0] & 0x0f,
        payload,
    };
    Some((frame, at))
}
