//! The hand-rolled HTTP/1.1 layer: incremental request parsing with the contract's limits
//! (`parse`), responses (`response`) and the keep-alive connection loop (`conn`).

pub mod conn;
pub mod parse;
pub mod response;

pub use parse::Request;
pub use response::Response;
