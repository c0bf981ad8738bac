//! The one error type of the generator.

use crate::frame::FrameError;
use std::fmt;
use std::io;

/// Everything that can go wrong while driving a server.
#[derive(Debug)]
pub enum LoadError {
    Io(io::Error),
    /// The server answered a REST call with an unexpected status.
    Status {
        what: String,
        status: u16,
        body: String,
    },
    /// The server broke HTTP or the contract (bad response head, missing field, no hello).
    Protocol(String),
    Frame(FrameError),
    Timeout(String),
    /// A bad flag, environment variable or unusable server binary.
    Config(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(e) => write!(f, "i/o error: {e}"),
            LoadError::Status { what, status, body } => {
                write!(f, "{what}: unexpected status {status}: {body}")
            }
            LoadError::Protocol(m) => write!(f, "protocol error: {m}"),
            LoadError::Frame(e) => write!(f, "websocket error: {e}"),
            LoadError::Timeout(m) => write!(f, "timed out: {m}"),
            LoadError::Config(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<io::Error> for LoadError {
    fn from(e: io::Error) -> Self {
        LoadError::Io(e)
    }
}

impl From<FrameError> for LoadError {
    fn from(e: FrameError) -> Self {
        LoadError::Frame(e)
    }
}

pub type Result<T, E = LoadError> = std::result::Result<T, E>;
