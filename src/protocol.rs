//! The JSON shapes of `docs/PROTOCOL.md`: REST bodies and WebSocket frames, as serde types.
//!
//! The shapes themselves live in the `parley-protocol` crate (`protocol/`), shared with
//! `parley-cli` and `parley-load`; this module re-exports them under the names the server
//! uses, and keeps the request bodies only the server decodes. `entry`, `history` and
//! `presence` frames and the history page are written by hand from kept bytes
//! (`store::record`, `chat::timeline`, `chat::outbound`); the tests below check them against
//! the shared types.

use serde::Deserialize;
use serde_json::Value;

pub(crate) use parley_protocol::whole;
/// `Room` of the contract, as the server builds it for a viewer.
pub use parley_protocol::Room as RoomView;
/// Server frames the server encodes through serde (borrowing what it holds).
pub use parley_protocol::ServerFrameRef as ServerFrame;
pub use parley_protocol::{
    BanView, ClientFrame, Entry, EntryExtra, EntryKind, InviteCode, InviteView, MemberView, Role,
    RoomChanges, RoomDetail, RoomList, UserList, UserView, Visibility,
};

/// `PATCH /api/v1/rooms/{id}` body: the fields to change, as given (checked by the core).
#[derive(Debug, Default, Deserialize)]
pub struct RoomPatch {
    #[serde(default)]
    pub name: Option<Value>,
    #[serde(default)]
    pub topic: Option<Value>,
    #[serde(default)]
    pub visibility: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WebSocket frames read whole numbers as the REST bodies do.
    #[test]
    fn frames_take_whole_numbers_written_as_floats() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"read","room":"r","seq":3.0}"#).unwrap();
        assert!(matches!(f, ClientFrame::Read { seq: 3, .. }), "{f:?}");
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"sync","room":"r","since":0.0}"#).unwrap();
        assert!(matches!(f, ClientFrame::Sync { since: 0, .. }), "{f:?}");
        let f = r#"{"type":"edit","room":"r","seq":2.0,"text":"x"}"#;
        assert!(matches!(
            serde_json::from_str(f).unwrap(),
            ClientFrame::Edit { seq: 2, .. }
        ));
        let f = r#"{"type":"delete","room":"r","seq":7}"#;
        assert!(matches!(
            serde_json::from_str(f).unwrap(),
            ClientFrame::Delete { seq: 7, .. }
        ));
        let bad = r#"{"type":"read","room":"r","seq":3.5}"#;
        assert!(serde_json::from_str::<ClientFrame>(bad).is_err());
    }
}
