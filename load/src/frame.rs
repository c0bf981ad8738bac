//! The WebSocket frame codec of the generator (RFC 6455, section 5), apart from any socket.
//!
//! Only what a client needs: parsing the server's unmasked frames straight out of a read
//! buffer without copying or allocating, and encoding masked client frames into an output
//! buffer. Many frames are parsed per `read()`, which is what lets one core receive millions
//! of small frames per second.

use std::fmt;

/// Frame opcodes (RFC 6455, section 5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) may not be fragmented or exceed 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// One parsed server frame, borrowing its payload from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: OpCode,
    pub payload: &'a [u8],
}

/// Why a server's bytes are not a valid frame. Any of these ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// RSV bits set although no extension was negotiated.
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    UnknownOpCode(u8),
    /// A server frame carried a mask, which RFC 6455 forbids.
    MaskedServerFrame,
    /// A control frame was fragmented or longer than 125 bytes.
    BadControlFrame,
    /// The payload is longer than the caller's limit.
    TooLarge(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedBits => write!(f, "reserved bits set in server frame"),
            FrameError::UnknownOpCode(op) => write!(f, "unknown opcode {op:#x}"),
            FrameError::MaskedServerFrame => write!(f, "server frame is masked"),
            FrameError::BadControlFrame => write!(f, "fragmented or oversized control frame"),
            FrameError::TooLarge(n) => write!(f, "frame payload of {n} bytes is over the limit"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses one server frame from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame (read more), or the frame and
/// the number of bytes it took.
pub fn parse(buf: &[u8], max_payload: u64) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(FrameError::UnknownOpCode(b0 & 0x0F))?;
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 != 0 {
        return Err(FrameError::MaskedServerFrame);
    }
    let (len, head) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(FrameError::BadControlFrame);
    }
    if len > max_payload {
        return Err(FrameError::TooLarge(len));
    }
    // `len <= max_payload`, which the caller chose as a usize-sized limit.
    let len = len as usize;
    let total = head + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload: &buf[head..total],
        },
        total,
    )))
}

/// The total size of the frame starting at `buf`, once its header is complete; lets the reader
/// grow its buffer for a frame larger than the buffer.
pub fn frame_len(buf: &[u8]) -> Option<u64> {
    if buf.len() < 2 {
        return None;
    }
    match buf[1] & 0x7F {
        126 if buf.len() >= 4 => Some(4 + u64::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            Some(10u64.saturating_add(u64::from_be_bytes(b)))
        }
        126 | 127 => None,
        n => Some(2 + u64::from(n)),
    }
}

/// Appends one final, masked client frame to `out`.
pub fn encode_masked(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode.bits());
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `data` with the repeating 4-byte `mask` (its own inverse).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// A close frame payload: the status code, if any.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    if payload.len() >= 2 {
        Some(u16::from_be_bytes([payload[0], payload[1]]))
    } else {
        None
    }
}

/// A cheap source of mask keys and handshake nonces; masks need not be secret for a load
/// generator, only present (RFC 6455 section 10.3 guards against proxies, not load tests).
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }
}

/// Standard base64 (with padding), enough for the 16-byte `Sec-WebSocket-Key`.
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![if fin { 0x80 } else { 0 } | op];
        match payload.len() {
            n if n < 126 => v.push(n as u8),
            n if n <= 65535 => {
                v.push(126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parses_frames_of_each_length_form() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload = vec![b'a'; len];
            let bytes = server_frame(true, 1, &payload);
            let (frame, used) = parse(&bytes, 1 << 20).unwrap().unwrap();
            assert_eq!(used, bytes.len(), "len {len}");
            assert_eq!(frame.payload.len(), len);
            assert!(frame.fin);
            assert_eq!(frame.opcode, OpCode::Text);
            assert_eq!(frame_len(&bytes), Some(bytes.len() as u64));
            // Every strict prefix is incomplete, never an error.
            for cut in [0, 1, 2, 3, bytes.len() / 2, bytes.len() - 1] {
                if cut < bytes.len() {
                    assert_eq!(
                        parse(&bytes[..cut], 1 << 20),
                        Ok(None),
                        "len {len} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn parses_many_frames_from_one_buffer() {
        let mut buf = Vec::new();
        for i in 0..100u8 {
            buf.extend(server_frame(true, 1, &[i; 100]));
        }
        buf.extend(server_frame(true, 9, b"ping"));
        let mut at = 0;
        let mut n = 0;
        while let Some((frame, used)) = parse(&buf[at..], 1 << 20).unwrap() {
            if n < 100 {
                assert_eq!(frame.payload, &[n as u8; 100][..]);
            } else {
                assert_eq!(frame.opcode, OpCode::Ping);
            }
            at += used;
            n += 1;
        }
        assert_eq!((n, at), (101, buf.len()));
    }

    #[test]
    fn rejects_invalid_server_frames() {
        let cases: [(&[u8], FrameError); 5] = [
            (&[0xC1, 0x00], FrameError::ReservedBits),
            (&[0x83, 0x00], FrameError::UnknownOpCode(3)),
            (&[0x81, 0x81, 1, 2, 3, 4, 0], FrameError::MaskedServerFrame),
            (&[0x09, 0x00], FrameError::BadControlFrame),
            (&[0x89, 126, 0, 126], FrameError::BadControlFrame),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(bytes, 1 << 20), Err(want));
        }
        let big = server_frame(true, 1, &[0; 300]);
        assert_eq!(parse(&big, 200), Err(FrameError::TooLarge(300)));
    }

    #[test]
    fn encodes_masked_frames_that_unmask_to_the_payload() {
        for len in [0usize, 5, 125, 126, 1000, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mask = [0x12, 0x34, 0x56, 0x78];
            let mut out = Vec::new();
            encode_masked(&mut out, OpCode::Text, &payload, mask);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0x80, "client frames are masked");
            let head = match len {
                n if n < 126 => 2,
                n if n <= 65535 => 4,
                _ => 10,
            };
            assert_eq!(&out[head..head + 4], &mask);
            let mut body = out[head + 4..].to_vec();
            apply_mask(&mut body, mask);
            assert_eq!(body, payload, "len {len}");
        }
    }

    #[test]
    fn close_codes_and_base64() {
        assert_eq!(close_code(&[0x0F, 0xA2, b'x']), Some(4002));
        assert_eq!(close_code(&[]), None);
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0u8; 16]).len(), 24);
    }
}
