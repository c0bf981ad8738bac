//! The JSON shapes of the Parley wire contract (`docs/PROTOCOL.md`, v1.2) as serde types,
//! shared by the server (`parley`), the terminal client (`parley-cli`) and the load
//! generator (`parley-load`), so the three cannot drift apart.
//!
//! # Layout
//! - [`room`]: `Room` and what lists rooms, members and users (`RoomDetail`, `UserView`,
//!   the paged lists, bans, invitations, invite codes).
//! - [`entry`]: `Entry`, its kinds ([`EntryKind`]) and optional fields ([`EntryExtra`],
//!   v1.1 moderation and conversation fields, v1.2 replies, reactions, files, webhooks).
//! - [`frame`]: WebSocket frames. [`ServerFrame`] is owned, for decoding (and encoding in
//!   tests); [`ServerFrameRef`] borrows, for a server that encodes frames without copying
//!   what it already holds; both give the same JSON. [`ClientFrame`] is both ways.
//! - [`error`]: every `error.code` as [`ErrorCode`] (`as_str`, `parse`), and the REST error
//!   body.
//! - [`close`]: the WebSocket close codes.
//! - [`whole`]: whole numbers written as `5` or `5.0`, as the server accepts them.
//!
//! # Decoding is lenient, encoding is exact
//! A client must ignore frame types, entry kinds and fields it does not know, so decoding
//! ignores unknown fields, maps an unknown frame type to [`ServerFrame::Unknown`] and an
//! unknown entry kind to [`EntryKind::Other`], and defaults fields an older server may leave
//! out. Encoding leaves out optional fields that are `None`, so what a type encodes is what
//! the contract shows. Every frame decodes back to itself (see the tests).
//!
//! The server writes its hottest frames (`entry`, `history`, `presence`) and the history
//! page by hand from kept bytes; its unit tests check that those bytes decode into these
//! types with the same values.
//!
//! Dependencies: serde and serde_json only.

pub mod close;
pub mod entry;
pub mod error;
pub mod frame;
pub mod room;
pub mod whole;

pub use entry::{
    nonce_str, Entry, EntryExtra, EntryKind, EntryPage, FileInfo, FileRef, Reaction, RoomChanges,
};
pub use error::{ErrorBody, ErrorCode, ErrorInfo};
pub use frame::{ClientFrame, ServerFrame, ServerFrameRef};
pub use room::{
    BanList, BanView, InviteCode, InviteView, MemberView, Role, Room, RoomDetail, RoomList,
    UserList, UserView, Visibility,
};
