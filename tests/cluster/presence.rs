//! Cluster-wide presence: a user is online while they have a connection to any node, on every
//! node; they go offline when the last one closes, or when the node holding it dies.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::common::*;
use crate::{online, within, Cluster, SLOW};

/// Short, so REST activity stops counting as presence quickly and only connections do.
const PRESENCE: [&str; 2] = ["--presence-timeout", "1"];

/// Waits for a `presence` frame about `name` with `online`, for up to `wait`.
async fn presence(w: &mut Ws, name: &str, is_online: bool, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = w.next_within(left).await.unwrap_or_else(|| {
            panic!("no presence frame saying {name} is online={is_online} within {wait:?}")
        });
        if f["type"] == "presence" && f["username"] == name && f["online"] == is_online {
            return;
        }
    }
}

/// Alice on node 0 and bob on node 1 share a room; returns once alice's REST activity no
/// longer makes her online anywhere.
async fn alice_and_bob(cluster: &Cluster) -> (String, String) {
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let alice = user(n0, "alice").await;
    let bob = user(n1, "bob").await;
    let general = room(n0, &alice, "general").await;
    let r = join(n1, &bob, &general).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(
        within(SLOW, || async { !online(n1, &bob, "alice").await }).await,
        "alice stayed online without any connection"
    );
    (alice, bob)
}

async fn online_on_both(addrs: [SocketAddr; 2], token: &str, name: &str, expected: bool) -> bool {
    online(addrs[0], token, name).await == expected
        && online(addrs[1], token, name).await == expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_connected_to_one_node_is_online_on_every_node() {
    let cluster = Cluster::start("presence", 2, &PRESENCE).await;
    let addrs = [cluster.addr(0), cluster.addr(1)];
    let (alice, bob) = alice_and_bob(&cluster).await;
    let (mut b, _) = ws_hello(addrs[1], &bob).await;

    let (a0, _) = ws_hello(addrs[0], &alice).await;
    presence(&mut b, "alice", true, SLOW).await;
    assert!(online_on_both(addrs, &bob, "alice", true).await);

    // Her connection keeps her online on both nodes long after her last request lapsed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        online_on_both(addrs, &bob, "alice", true).await,
        "alice went offline while connected to node 0"
    );

    // Moving her connection from node 0 to node 1 keeps her online.
    let (a1, _) = ws_hello(addrs[1], &alice).await;
    drop(a0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        online_on_both(addrs, &bob, "alice", true).await,
        "alice went offline while connected to node 1"
    );

    // Closing the last one makes her offline everywhere, with a last_seen.
    drop(a1);
    presence(&mut b, "alice", false, SLOW).await;
    assert!(
        within(SLOW, || online_on_both(addrs, &bob, "alice", false)).await,
        "alice still online somewhere"
    );
    for addr in addrs {
        let r = get(addr, "/api/v1/users/alice", Some(&bob)).await;
        assert!(r.json()["last_seen"].is_u64(), "{:?}", r.json());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_killed_node_go_offline_on_the_others() {
    let mut cluster = Cluster::start("presence-kill", 2, &PRESENCE).await;
    let n1 = cluster.addr(1);
    let (alice, bob) = alice_and_bob(&cluster).await;
    let (mut b, _) = ws_hello(n1, &bob).await;
    let (_a, _) = ws_hello(cluster.addr(0), &alice).await;
    presence(&mut b, "alice", true, SLOW).await;

    cluster.kill_9(0);
    // The node cannot say goodbye; the others notice its silence.
    presence(&mut b, "alice", false, Duration::from_secs(60)).await;
    assert!(!online(n1, &bob, "alice").await);
}

/// Presence also counts a recent request, on any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recent_request_on_one_node_shows_online_on_another() {
    let cluster = Cluster::start("presence-rest", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let alice = user(n0, "alice").await;
    let bob = user(n1, "bob").await;
    assert!(
        within(SLOW, || async { online(n1, &bob, "alice").await }).await,
        "alice's requests on node 0 did not make her online on node 1"
    );
    assert!(
        within(SLOW, || async { online(n0, &alice, "bob").await }).await,
        "bob's requests on node 1 did not make him online on node 0"
    );
}
