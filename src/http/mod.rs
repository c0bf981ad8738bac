//! The hand-rolled HTTP/1.1 vocabulary that the socket layer (`server`) hands the session
//! layer (`api`, `ws`): incremental request parsing with the contract's limits (`parse`, into
//! `request`'s types), responses (`response`), and the plain or TLS byte stream under a
//! connection (`stream`), which a WebSocket session takes over. The keep-alive loop that
//! drives them is `server::conn`. Nothing here imports the rest of the crate.

pub(crate) mod parse;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

pub(crate) use parse::Request;
pub(crate) use response::Response;
pub(crate) use stream::Stream;
