//! Client frames, parsed with tungstenite's [`FrameHeader::parse`] and unmasked here. Server
//! frames are encoded by the core (`chat::wire`), which owns the outbound queues.

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

pub(crate) use crate::chat::wire::{close, close_frame, pong};

/// One parsed, unmasked client frame.
#[derive(Debug, PartialEq, Eq)]
pub struct InFrame {
    pub fin: bool,
    pub opcode: OpCode,
    pub payload: Vec<u8>,
}

/// Why the peer's bytes cannot be framed; each maps to a close code.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Frame over the size cap: 1009.
    TooBig,
    /// Unmasked client frame, reserved bits, bad opcode or control-frame rules broken: 1002.
    Protocol(&'static str),
}

impl FrameError {
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooBig => close::TOO_BIG,
            FrameError::Protocol(_) => close::PROTOCOL,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::TooBig => "frame too big",
            FrameError::Protocol(why) => why,
        }
    }
}

/// Parses one frame from the start of `buf`. `Ok(None)` means more bytes are needed; on
/// success, returns the frame and the bytes it took. Frames over `max` are refused as soon as
/// their header is read, before their payload is buffered.
pub fn parse(buf: &[u8], max: usize) -> Result<Option<(InFrame, usize)>, FrameError> {
    let mut cursor = Cursor::new(buf);
    let (header, len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(_) => return Err(FrameError::Protocol("malformed frame header")),
    };
    if len > max as u64 {
        return Err(FrameError::TooBig);
    }
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let Some(mask) = header.mask else {
        return Err(FrameError::Protocol("client frames must be masked"));
    };
    match header.opcode {
        OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
            return Err(FrameError::Protocol("reserved opcode"));
        }
        OpCode::Control(_) if len > 125 || !header.is_final => {
            return Err(FrameError::Protocol("bad control frame"));
        }
        _ => {}
    }
    let start = cursor.position() as usize;
    let end = start + len as usize;
    let Some(masked) = buf.get(start..end) else {
        return Ok(None);
    };
    let payload = masked
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i & 3])
        .collect();
    let frame = InFrame {
        fin: header.is_final,
        opcode: header.opcode,
        payload,
    };
    Ok(Some((frame, end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::wire::text;

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    #[test]
    fn parses_masked_frames_at_every_split() {
        let raw = client_frame(true, 1, b"{\"type\":\"send\"}");
        for k in 0..raw.len() {
            assert_eq!(parse(&raw[..k], 1024), Ok(None), "split at {k}");
        }
        let (f, used) = parse(&raw, 1024).unwrap().unwrap();
        assert_eq!(used, raw.len());
        assert_eq!(f.payload, b"{\"type\":\"send\"}");
        assert!(f.fin);
    }

    #[test]
    fn refuses_what_the_contract_closes_on() {
        let big = client_frame(true, 2, &[0u8; 300]);
        assert_eq!(parse(&big, 200).unwrap_err(), FrameError::TooBig);
        let mut unmasked = client_frame(true, 1, b"hi");
        unmasked[1] &= 0x7f;
        assert!(matches!(
            parse(&unmasked, 1024),
            Err(FrameError::Protocol(_))
        ));
        let long_ping = client_frame(true, 9, &[0u8; 126]);
        assert!(matches!(
            parse(&long_ping, 1024),
            Err(FrameError::Protocol(_))
        ));
        let rsv = {
            let mut f = client_frame(true, 1, b"x");
            f[0] |= 0x40;
            f
        };
        assert!(matches!(parse(&rsv, 1024), Err(FrameError::Protocol(_))));
    }

    #[test]
    fn server_frames_are_unmasked_and_final() {
        let f = text(b"hi");
        assert_eq!(&f[..], &[0x81, 2, b'h', b'i']);
        let c = close_frame(4002, "too slow");
        assert_eq!(&c[..4], &[0x88, 10, 0x0f, 0xa2]);
    }
}
