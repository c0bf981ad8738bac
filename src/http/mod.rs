//! The hand-rolled HTTP/1.1 layer: incremental request parsing with the contract's limits
//! (`parse`, into `request`'s types), responses (`response`), the keep-alive connection loop
//! (`conn`) and the plain or TLS socket under it (`stream`).

pub(crate) mod conn;
pub(crate) mod parse;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

pub(crate) use parse::Request;
pub(crate) use response::Response;
pub(crate) use stream::Stream;
