//! `parley-load`: an efficient load generator for Parley servers, and the driver of the
//! workspace's `cargo bench` targets. It speaks only the public contract
//! (`docs/PROTOCOL.md`): REST for accounts and rooms, WebSocket for messages. Bodies and
//! frames it decodes (errors, rooms) are the workspace's shared `parley-protocol` types; the
//! frames on its hot paths (`send`, `read`, and the scans of `entry` and `presence`) are
//! written and read by hand, and tested against those types.
//!
//! # Layout
//!
//! - [`frame`]: WebSocket frame codec, many frames per read, masked client frames.
//! - [`scan`]: message texts carry a send-time stamp; finding it and a frame's `type`
//!   without parsing JSON.
//! - [`http`]: a minimal HTTP/1.1 keep-alive client; [`api`]: the REST calls and bulk
//!   setup of users, rooms and memberships.
//! - [`conn`]: one WebSocket connection: upgrade, `hello`, reader and writer tasks;
//!   [`roster`]: what each member's connection was told about the others' presence.
//! - [`sender`]: open-loop (fixed schedule) and closed-loop (window) senders.
//! - [`stats`]: the clock, per-phase counters, HdrHistograms; [`probe`]: server CPU time
//!   and memory from `/proc`, pinning.
//! - [`scenario`]: fan-out, many rooms, connections, login isolation, kept state, presence
//!   storm, read markers, cluster mode.
//! - [`tls`]: HTTPS and WSS for every connection when a benchmark runs the server with TLS.
//! - [`server`]: starting `parley-server` as a child; [`nats`]: a `nats-server -js` for
//!   the cluster scenario; [`bench`]: the `cargo bench` driver;
//!   [`report`]: Markdown tables; [`cli`]: the `parley-load` command line.
//!
//! # How a measurement works
//!
//! Every message text starts with `~p<phase>t<nanos>~`: the phase it belongs to and its send
//! time on the generator's one monotonic clock. Each receiving connection finds the stamp by a
//! byte scan, records `now - sent` into its own HdrHistogram for that phase, and adds its
//! delivery count to shared per-phase counters once per `read()`. Histograms are merged when
//! the connections close. Senders follow a fixed schedule (open loop), so a stalled server
//! shows up as latency and as lost deliveries, not as a lower offered load.

pub mod api;
pub mod bench;
pub mod cli;
pub mod conn;
pub mod error;
pub mod frame;
pub mod http;
pub mod nats;
pub mod probe;
pub mod report;
pub mod roster;
pub mod scan;
pub mod scenario;
pub mod sender;
pub mod server;
pub mod stats;
pub mod tls;

pub use error::{LoadError, Result};
