//! Server frames as WebSocket bytes, over tungstenite's frame codec, and the close codes.
//!
//! Server frames are never masked, so one encoded frame (header and payload) can be shared by
//! every recipient of a broadcast: [`text`] builds it once and each queue holds a cheap clone.
//! The core encodes here because it owns the outbound queues; the WebSocket layer (`ws`)
//! parses client frames and uses these for its replies.

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::Bytes;

/// Close codes of the contract, shared with the clients (`parley-protocol`).
pub(crate) use parley_protocol::close;

fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let mut out = Vec::with_capacity(header.len(payload.len() as u64) + payload.len());
    // Writing into a Vec cannot fail.
    let _ = header.format(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A final, unmasked text frame.
pub(crate) fn text(json: &[u8]) -> Bytes {
    encode(OpCode::Data(Data::Text), json)
}

pub(crate) fn ping() -> Bytes {
    encode(OpCode::Control(Control::Ping), b"")
}

pub(crate) fn pong(payload: &[u8]) -> Bytes {
    encode(OpCode::Control(Control::Pong), payload)
}

/// A close frame with `code` and a short reason (at most 123 bytes are kept).
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Control(Control::Close), &payload)
}
