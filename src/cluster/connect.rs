//! Reaching NATS: which server the client tries next and after what back-off, and the
//! file-backed streams a node makes if missing.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::Config;

/// The first pause before trying a NATS server again after it failed. Default is 100 ms.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between two tries at one NATS server: how long a node may take to
/// notice that NATS is back. Default is 5 s.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Which NATS server the client tries next, and after what pause: one of those that failed
/// the fewest times in a row (at random among them, so nodes spread over the servers), after
/// [`backoff`] of its failures. A server that failed before is logged at WARN with its URL
/// and why, once a try: the client library's own events name neither.
pub(super) fn next_server(servers: &[async_nats::Server]) -> Option<async_nats::ReconnectToServer> {
    let fewest = servers.iter().map(|s| s.failed_attempts).min()?;
    let ties: Vec<&async_nats::Server> = servers
        .iter()
        .filter(|s| s.failed_attempts == fewest)
        .collect();
    let next = ties[rand::random_range(0..ties.len())];
    let delay = backoff(next.failed_attempts);
    match (&next.last_error, next.failed_attempts) {
        (Some(why), failures @ 1..) => tracing::warn!(
            url = %next,
            failures,
            "cluster: cannot reach NATS at {next} ({why}; failed {failures} times in a row); \
             trying again in {} ms",
            delay.as_millis()
        ),
        _ => tracing::info!(url = %next, "cluster: connecting to NATS at {next}"),
    }
    Some(async_nats::ReconnectToServer {
        addr: next.addr.clone(),
        delay: Some(delay),
    })
}

/// The pause before trying a NATS server that failed `failures` times in a row: none after
/// a connection was lost, then [`RECONNECT_FIRST`] doubling up to [`RECONNECT_MAX`].
fn backoff(failures: usize) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => RECONNECT_FIRST
            .saturating_mul(1 << (n - 1).min(16))
            .min(RECONNECT_MAX),
    }
}

/// The file-backed stream `name` on `subjects`, with `--cluster-replicas`, made if missing;
/// waits (retrying each second) while JetStream is not ready.
pub(super) async fn file_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: Vec<String>,
    cfg: &Config,
) -> stream::Stream {
    let config = stream::Config {
        name: name.to_string(),
        subjects,
        storage: stream::StorageType::File,
        num_replicas: cfg.cluster_replicas,
        ..Default::default()
    };
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(s) => return s,
            Err(e) => {
                tracing::warn!("cluster: stream {name} not ready ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_pauses_double_from_the_first_to_the_longest() {
        let cases = [(0, 0), (1, 100), (2, 200), (3, 400), (6, 3_200), (7, 5_000)];
        for (failures, ms) in cases {
            assert_eq!(backoff(failures), Duration::from_millis(ms), "{failures}");
        }
        assert_eq!(backoff(usize::MAX), RECONNECT_MAX);
    }
}
