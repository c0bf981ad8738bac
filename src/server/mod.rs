//! The accept loop: connection caps, file-descriptor exhaustion, TLS handshakes, client
//! addresses behind trusted proxies, periodic work and shutdown.
//!
//! A connection from a `--trusted-proxy` is not counted against `--max-connections-per-ip`
//! at accept (it carries many clients; the total cap still applies); its requests are counted
//! against the address in their last `X-Forwarded-For` entry, and a WebSocket it upgrades
//! counts against that address's connection cap from the upgrade on. The TLS handshake runs
//! in the connection's own task, bounded by `--header-timeout`, never in the accept loop.
//!
//! Shutdown has one source, a `watch` channel every task listens to. Each connection task
//! holds a clone of an mpsc sender; when all are dropped the server knows every task ended.
//!
//! Each connection's HTTP requests are served by the keep-alive loop in `conn`, which hands
//! them to this module's `Service` (REST to `api`, the upgrade to `ws`).

mod conn;

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
use crate::http::{self, Response, Stream};
use crate::metrics::Metrics;
use crate::tls::Tls;
use crate::ws::{self, frame::close};

/// How long shutdown waits for connections to finish closing.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after `accept` fails for lack of file descriptors, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often presence, sessions and the throttle are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Open connections per client address.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Counts a connection against `--max-connections-per-ip` for its address while it lives.
struct IpCount {
    ip: IpAddr,
    per_ip: PerIp,
}

impl IpCount {
    /// One more connection for `ip`, unless it already has `cap` (0: no cap).
    fn take(per_ip: &PerIp, ip: IpAddr, cap: usize) -> Option<IpCount> {
        let mut map = per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if cap > 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(IpCount {
            ip,
            per_ip: per_ip.clone(),
        })
    }
}

impl Drop for IpCount {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Counts a connection against the caps for as long as it lives.
struct Slot {
    /// None for a trusted proxy, whose connections are not counted by the proxy's address.
    _ip: Option<IpCount>,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        Metrics::sub(&self.metrics.connections, 1);
    }
}

/// Serves `listener` (over TLS when `tls` is given) until `shutdown` completes, then closes
/// every WebSocket with 1001 and waits (up to a few seconds) for connections to end.
pub(crate) async fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let per_ip: PerIp = Arc::default();
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
        let peer = Peer::new(&core, peer.ip());
        let Some(slot) = admit(&core, &per_ip, &peer) else {
            Metrics::add(&core.metrics.connections_refused_total, 1);
            // Under TLS the 503 would need the handshake the cap is there to spare: just close.
            if tls.is_none() {
                tokio::spawn(refuse(stream));
            }
            continue;
        };
        let (core, stop, alive) = (core.clone(), stop_rx.clone(), alive_tx.clone());
        let (tls, per_ip) = (tls.clone(), per_ip.clone());
        tokio::spawn(async move {
            connection(core, stream, tls, peer, per_ip, stop).await;
            drop(slot);
            drop(alive);
        });
    }
    let _ = stop_tx.send(true);
    core.close_all(close::GOING_AWAY, "server shutting down");
    drop(alive_tx);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, alive_rx.recv()).await;
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy)]
struct Peer {
    /// The client address of the socket's peer (see [`client_address`]).
    addr: IpAddr,
    /// Whether the peer is a `--trusted-proxy`, whose requests name their client.
    proxy: bool,
}

impl Peer {
    fn new(core: &Core, ip: IpAddr) -> Peer {
        let ip = ip.to_canonical();
        Peer {
            addr: client_address(ip),
            proxy: core.cfg.trusted_proxies.contains(&ip),
        }
    }

    /// The address the per-address limits and the logs use for `req`: a trusted proxy's
    /// last `X-Forwarded-For` entry (the client as that proxy saw it), else the peer.
    /// Entries further left were written by whoever the proxy talked to and prove nothing.
    fn client(&self, req: &http::Request) -> IpAddr {
        match self.proxy.then(|| req.forwarded_for()).flatten() {
            Some(ip) => client_address(ip.to_canonical()),
            None => self.addr,
        }
    }
}

/// What Parley serves over HTTP: the REST API, and the WebSocket upgrade; for one connection,
/// whose client address the per-address limits count.
struct Parley<'a> {
    core: &'a Arc<Core>,
    peer: Peer,
    per_ip: &'a PerIp,
}

impl conn::Service for Parley<'_> {
    /// Who the WebSocket is, and for a connection from a trusted proxy, its count against the
    /// forwarded client's `--max-connections-per-ip`.
    type Accepted = (crate::chat::Auth, Option<IpCount>);

    async fn respond(&self, req: &http::Request) -> http::Response {
        let resp = match joining(self.core, req) {
            Some(refused) => refused,
            None => api::handle(self.core, req, self.peer.client(req)).await,
        };
        Metrics::add(&self.core.metrics.http_requests_total, 1);
        resp
    }

    /// A WebSocket through a trusted proxy holds a connection for one client from then on, so
    /// it counts against that client's per-address cap (the proxy's own connection was not
    /// counted at accept); over the cap it gets the 503 a direct connection would.
    async fn handshake(
        &self,
        req: &http::Request,
    ) -> Result<(Self::Accepted, Vec<u8>), http::Response> {
        let count = if self.peer.proxy {
            let cap = self.core.cfg.max_connections_per_ip;
            match IpCount::take(self.per_ip, self.peer.client(req), cap) {
                Some(c) => Some(c),
                None => {
                    Metrics::add(&self.core.metrics.connections_refused_total, 1);
                    return Err(too_many_connections());
                }
            }
        } else {
            None
        };
        if let Some(refused) = joining(self.core, req) {
            return Err(refused);
        }
        let (auth, reply) = ws::handshake(self.core, req).await?;
        Ok(((auth, count), reply))
    }
}

/// A cluster node that has not caught up with the stream yet holds a partial state: it
/// answers `503 unavailable` to everything but `/healthz` (503 too, with the reason) and
/// `/metrics`, rather than a login refused or a room missing that the cluster has.
fn joining(core: &Core, req: &http::Request) -> Option<Response> {
    if core.store().joined() || matches!(req.path.as_str(), "/healthz" | "/metrics") {
        return None;
    }
    let message = "this node has not caught up with the cluster yet; try again shortly";
    Some(Response::error(503, "unavailable", message, None))
}

/// One connection: the TLS handshake if any, HTTP requests until one upgrades it, then a
/// WebSocket session.
async fn connection(
    core: Arc<Core>,
    tcp: TcpStream,
    tls: Option<Arc<Tls>>,
    peer: Peer,
    per_ip: PerIp,
    mut stop: watch::Receiver<bool>,
) {
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(tls) => {
            // A client that stays silent, or stops part-way through its hello, is dropped
            // after the time a request head gets.
            let handshake =
                tokio::time::timeout(core.cfg.header_timeout, tls.acceptor().accept(tcp));
            let done = tokio::select! {
                r = handshake => r,
                _ = stop.changed() => return,
            };
            match done {
                Ok(Ok(s)) => Stream::tls(s),
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer.addr, "TLS handshake failed: {e}");
                    return;
                }
                Err(_elapsed) => {
                    tracing::debug!(peer = %peer.addr, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let limits = conn::ConnLimits {
        max_body: core.cfg.max_body_bytes,
        header_timeout: core.cfg.header_timeout,
        keepalive_timeout: core.cfg.keepalive_timeout,
    };
    let parley = Parley {
        core: &core,
        peer,
        per_ip: &per_ip,
    };
    let upgraded = conn::serve(&parley, limits, stream, stop.clone()).await;
    if let Some(up) = upgraded {
        let (auth, _count) = up.accepted;
        ws::session::run(core, up.stream, up.leftover, auth, stop).await;
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

/// Takes a connection slot for `peer`, or refuses: the total cap, and the per-address cap
/// unless the peer is a trusted proxy (whose connections carry many clients; which one a
/// connection is for is known only from its requests, after the accept).
fn admit(core: &Arc<Core>, per_ip: &PerIp, peer: &Peer) -> Option<Slot> {
    if core.metrics.connections.load(Relaxed) as usize >= core.cfg.max_connections {
        return None;
    }
    let ip = match peer.proxy {
        true => None,
        false => Some(IpCount::take(
            per_ip,
            peer.addr,
            core.cfg.max_connections_per_ip,
        )?),
    };
    Metrics::add(&core.metrics.connections, 1);
    Some(Slot {
        _ip: ip,
        metrics: core.metrics.clone(),
    })
}

fn too_many_connections() -> Response {
    Response::error(
        503,
        "too_many_connections",
        "connection limit reached",
        None,
    )
}

/// Tells a refused client why, best effort, and closes.
async fn refuse(mut stream: TcpStream) {
    let mut out = Vec::new();
    too_many_connections().encode(false, true, &mut out);
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
}

/// Work the server does on a timer.
type Periodic = (Duration, fn(&Arc<Core>));

fn spawn_periodic(core: &Arc<Core>, stop: &watch::Receiver<bool>) {
    let tasks: [Periodic; 2] = [
        (SWEEP_EVERY, |core| {
            // A cluster node's sessions and markers are the stream's until it has caught up.
            if !core.store().joined() {
                return;
            }
            core.sweep();
            core.flush_read_markers();
            core.flush_last_seen(false);
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
