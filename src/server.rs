//! The accept loop: connection caps, file-descriptor exhaustion, periodic work and shutdown.
//!
//! Shutdown has one source, a `watch` channel every task listens to. Each connection task
//! holds a clone of an mpsc sender; when all are dropped the server knows every task ended.

use std::collections::HashMap;
use std::future::Future;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::api;
use crate::chat::Core;
use crate::http::{self, Response};
use crate::metrics::Metrics;
use crate::ws::{self, frame::close};

/// How long shutdown waits for connections to finish closing.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after `accept` fails for lack of file descriptors, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often presence, sessions and the throttle are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Counts a connection against the caps for as long as it lives.
struct Slot {
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        Metrics::sub(&self.metrics.connections, 1);
    }
}

/// Serves `listener` until `shutdown` completes, then closes every WebSocket with 1001 and
/// waits (up to a few seconds) for connections to end.
pub(crate) async fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    spawn_periodic(&core, &stop_rx);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE and friends: wait for connections to close instead of spinning.
                let pause = match e.kind() {
                    ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset => Duration::ZERO,
                    _ => ACCEPT_BACKOFF,
                };
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        Metrics::add(&core.metrics.connections_accepted_total, 1);
        let Some(slot) = admit(&core, &per_ip, peer.ip()) else {
            Metrics::add(&core.metrics.connections_refused_total, 1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let (core, stop, alive) = (core.clone(), stop_rx.clone(), alive_tx.clone());
        tokio::spawn(async move {
            connection(core, stream, client_address(peer.ip()), stop).await;
            drop(slot);
            drop(alive);
        });
    }
    let _ = stop_tx.send(true);
    core.close_all(close::GOING_AWAY, "server shutting down");
    drop(alive_tx);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, alive_rx.recv()).await;
}

/// What Parley serves over HTTP: the REST API, and the WebSocket upgrade; for one connection,
/// whose client address the per-address limits count.
struct Parley<'a> {
    core: &'a Arc<Core>,
    peer: IpAddr,
}

impl http::conn::Service for Parley<'_> {
    type Accepted = crate::chat::Auth;

    async fn respond(&self, req: &http::Request) -> http::Response {
        let resp = api::handle(self.core, req, self.peer).await;
        Metrics::add(&self.core.metrics.http_requests_total, 1);
        resp
    }

    fn handshake(&self, req: &http::Request) -> Result<(Self::Accepted, Vec<u8>), http::Response> {
        ws::handshake(self.core, req)
    }
}

/// One connection: HTTP requests until one upgrades it, then a WebSocket session.
async fn connection(core: Arc<Core>, stream: TcpStream, peer: IpAddr, stop: watch::Receiver<bool>) {
    let limits = http::conn::ConnLimits {
        max_body: core.cfg.max_body_bytes,
        header_timeout: core.cfg.header_timeout,
        keepalive_timeout: core.cfg.keepalive_timeout,
    };
    let parley = Parley { core: &core, peer };
    let upgraded = http::conn::serve(&parley, limits, stream, stop.clone()).await;
    if let Some(up) = upgraded {
        ws::session::run(core, up.stream, up.leftover, up.accepted, stop).await;
    }
}

/// The address the per-address limits count: an IPv4 client as itself (also when it reaches
/// an IPv6 socket as `::ffff:a.b.c.d`), an IPv6 client by its /64, since a single host
/// commonly holds a whole /64 and could otherwise take a new address per attempt.
fn client_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

fn admit(
    core: &Arc<Core>,
    per_ip: &Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
) -> Option<Slot> {
    if core.metrics.connections.load(Relaxed) as usize >= core.cfg.max_connections {
        return None;
    }
    let cap = core.cfg.max_connections_per_ip;
    let mut map = per_ip.lock().unwrap_or_else(|e| e.into_inner());
    let n = map.entry(ip).or_insert(0);
    if cap > 0 && *n >= cap {
        return None;
    }
    *n += 1;
    drop(map);
    Metrics::add(&core.metrics.connections, 1);
    Some(Slot {
        ip,
        per_ip: per_ip.clone(),
        metrics: core.metrics.clone(),
    })
}

/// Tells a refused client why, best effort, and closes.
async fn refuse(mut stream: TcpStream) {
    let mut out = Vec::new();
    Response::error(
        503,
        "too_many_connections",
        "connection limit reached",
        None,
    )
    .encode(false, true, &mut out);
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
}

/// Work the server does on a timer.
type Periodic = (Duration, fn(&Arc<Core>));

fn spawn_periodic(core: &Arc<Core>, stop: &watch::Receiver<bool>) {
    let tasks: [Periodic; 2] = [
        (SWEEP_EVERY, |core| {
            core.sweep();
            core.flush_read_markers();
            core.compact_if_due();
        }),
        (core.cfg.heartbeat_interval, |core| core.heartbeat()),
    ];
    for (every, work) in tasks {
        let (core, mut stop) = (core.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => work(&core),
                    _ = stop.changed() => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_group_ipv6_by_64_and_unmap_ipv4() {
        let cases = [
            ("127.0.0.2", "127.0.0.2"),
            ("::ffff:10.1.2.3", "10.1.2.3"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
        ];
        for (peer, want) in cases {
            let got = client_address(peer.parse().unwrap());
            assert_eq!(got, want.parse::<IpAddr>().unwrap(), "{peer}");
        }
    }
}
