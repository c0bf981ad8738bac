//! The hand-rolled HTTP/1.1 layer: incremental request parsing with the contract's limits
//! (`parse`), responses (`response`) and the keep-alive connection loop (`conn`).

pub(crate) mod conn;
pub(crate) mod parse;
pub(crate) mod response;

pub(crate) use parse::Request;
pub(crate) use response::Response;
