//! Logs: one event a line on standard error, as text or JSON (`--log-format`), at
//! `--log-level` and above. Events come from `tracing` macros across the crate: start-up,
//! recovery, logins (username and client address, never a password or token), WebSocket
//! closes with 1008, 4001 and 4002, journal errors, compactions and shutdown. Message text
//! is never logged.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
    // The NATS client logs every event at INFO, a failed try to connect among them, without
    // the URL; cluster mode logs what matters of them itself (`cluster::next_server`).
    let nats = if level >= LevelFilter::DEBUG {
        level
    } else {
        level.min(LevelFilter::WARN)
    };
    let targets = Targets::new()
        .with_default(level)
        .with_target("async_nats", nats);
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
            .finish()
            .with(targets)
            .try_init()
    } else {
        builder.finish().with(targets).try_init()
    };
}
