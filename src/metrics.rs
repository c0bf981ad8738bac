//! Process-wide counters, rendered in the Prometheus text format for `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! metrics {
    ($( $(#[doc = $doc:literal])* $field:ident : $kind:literal ),* $(,)?) => {
        /// Counters and gauges. Every field is a relaxed atomic: figures, not synchronization.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( $(#[doc = $doc])* pub $field: AtomicU64, )*
        }

        impl Metrics {
            /// The Prometheus exposition of every field, `parley_` prefixed.
            pub(crate) fn render(&self, extra: &[(&str, &str, u64)]) -> String {
                let mut out = String::new();
                $(
                    let help = concat!($($doc),*).trim();
                    let _ = writeln!(out, "# HELP parley_{} {}", stringify!($field), help);
                    let _ = writeln!(out, "# TYPE parley_{} {}", stringify!($field), $kind);
                    let _ = writeln!(out, "parley_{} {}", stringify!($field), self.$field.load(Relaxed));
                )*
                for (name, help, value) in extra {
                    let _ = writeln!(out, "# HELP parley_{name} {help}");
                    let _ = writeln!(out, "# TYPE parley_{name} gauge");
                    let _ = writeln!(out, "parley_{name} {value}");
                }
                out
            }
        }
    };
}

metrics! {
    /// Open TCP connections, HTTP and WebSocket.
    connections: "gauge",
    /// Open WebSocket connections.
    websocket_connections: "gauge",
    /// Connections accepted since start.
    connections_accepted_total: "counter",
    /// Connections refused by the total or per-IP cap.
    connections_refused_total: "counter",
    /// HTTP requests answered.
    http_requests_total: "counter",
    /// Accounts registered since start.
    registrations_total: "counter",
    /// Successful logins since start.
    logins_total: "counter",
    /// Failed logins since start.
    login_failures_total: "counter",
    /// Timeline entries appended.
    entries_appended_total: "counter",
    /// WebSocket frames queued for delivery.
    frames_delivered_total: "counter",
    /// Bytes written to WebSocket connections.
    bytes_out_total: "counter",
    /// Connections closed with 4002 for not reading their output.
    slow_consumer_closes_total: "counter",
    /// Messages refused by the rate limit.
    rate_limited_total: "counter",
    /// Bytes of history served: `GET /rooms/{id}/messages` pages and `sync` answers.
    history_bytes_total: "counter",
    /// History pages whose writing stopped part way because the client had gone.
    history_abandoned_total: "counter",
    /// Bytes written to the journal.
    journal_bytes_total: "counter",
    /// fsync calls on the journal.
    journal_fsyncs_total: "counter",
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Relaxed);
    }
}
