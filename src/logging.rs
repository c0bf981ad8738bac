//! Logs: one event a line on standard error, as text or JSON (`--log-format`), at
//! `--log-level` and above. Events come from `tracing` macros across the crate: start-up,
//! recovery, logins (username and client address, never a password or token), WebSocket
//! closes with 1008, 4001 and 4002, journal errors, compactions and shutdown. Message text
//! is never logged.

use tracing::level_filters::LevelFilter;

use crate::config::{Config, LogLevel};

/// Sends the process's `tracing` events to standard error. Call once, before anything
/// logs; later calls change nothing.
pub fn init(cfg: &Config) {
    let level = match cfg.log_level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let _ = if cfg.log_json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
