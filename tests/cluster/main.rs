//! Cluster mode (issue 15), black-box against the contract's section "Cluster mode (v1.1)":
//! two or three built `parley-server` nodes, each on a data directory of its own, sharing one
//! state through real `nats-server -js` processes on free loopback ports. Every test starts its
//! own NATS, so they run in parallel.
//!
//! - `nats`: the NATS servers (one, or a cluster of three), installed with `apt-get` when
//!   missing; stopped, killed and restarted on the same ports and store.
//! - `sharing`: a token, a room, a message, blocks, invites, invite codes, read markers,
//!   typing, logouts, disabled accounts and the sender's nonce from one node hold on another.
//! - `ordering`: messages posted at once on every node reach every member on every node in one
//!   seq order with no gaps.
//! - `presence`: a user is online while connected to (or recently asking) any node, and goes
//!   offline after, also when their node dies.
//! - `moderation`: bans, mutes, kicks, roles and deletions decided on one node hold on another.
//! - `bounded`: snapshots keep the stream short, and a node starts from the latest one.
//! - `crash`: `kill -9` of a node during a message storm loses nothing acknowledged; a node
//!   with an empty data directory catches up; everything survives every node and NATS going
//!   down; the epoch is the cluster's.
//! - `resume`: a restarted node resumes from its data directory, and from the latest
//!   snapshot when that cannot serve.
//! - `settings`: a node whose deciding settings differ from the running nodes' refuses to
//!   start.
//! - `outage`: while NATS is down changes answer `unavailable` and reads keep working; the
//!   nodes carry on by themselves when it is back, without what they refused.
//! - `unreachable`: a node started while NATS is unreachable answers `/healthz` with 503 at
//!   once, logs the URL it tries, stops on SIGTERM, and joins once NATS is up.
//! - `nats_cluster`: with `--cluster-replicas 3` on three NATS servers, losing one (the
//!   stream's leader) changes nothing a user notices.

#[path = "../common/mod.rs"]
mod common;

mod bounded;
mod crash;
mod moderation;
mod nats;
mod nats_cluster;
mod ordering;
mod outage;
mod presence;
mod resume;
mod settings;
mod sharing;
mod unreachable;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use common::process::{command, launch_command, start_command, Launch, Proc, TempDir};
use common::*;
pub use common::{assert_204, assert_error, hello_last_seq, within};
use nats::NatsServer;

/// Patience for what crosses NATS or waits out a timeout: an outage being noticed, a
/// recovery, a stream leader election.
pub const SLOW: Duration = Duration::from_secs(30);

/// Parley nodes sharing one state through NATS, each on a data directory of its own under
/// one temporary directory. Dropping it kills every process.
pub struct Cluster {
    /// Declared before `tmp`, so the processes die before their directories go.
    nodes: Vec<Option<Proc>>,
    pub nats: Vec<NatsServer>,
    /// `--cluster-replicas`, when not the default.
    replicas: Option<u32>,
    /// Flags every node gets.
    extra: Vec<String>,
    tmp: TempDir,
}

impl Drop for Cluster {
    /// A failing test shows the end of each node's log, and of each NATS server's.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let tail = |log: String, n: usize| {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(node) = node {
                let log = tail(node.stderr(), 200);
                eprintln!("----- node {i} ({}) stderr:\n{log}", node.addr);
            }
        }
        for server in &self.nats {
            eprintln!("----- {} log:\n{}", server.name, tail(server.log(), 20));
        }
    }
}

impl Cluster {
    /// `nodes` nodes on one NATS server, each with the test defaults plus `extra`.
    pub async fn start(name: &str, nodes: usize, extra: &[&str]) -> Cluster {
        let tmp = TempDir::new(name);
        let nats = vec![NatsServer::single(&tmp.0).await];
        Cluster::with(tmp, nats, None, nodes, extra)
    }

    /// `nodes` nodes on a cluster of three NATS servers with `--cluster-replicas 3`.
    pub async fn start_on_nats_cluster(name: &str, nodes: usize, extra: &[&str]) -> Cluster {
        let tmp = TempDir::new(name);
        let nats = nats::cluster_of_three(&tmp.0).await;
        Cluster::with(tmp, nats, Some(3), nodes, extra)
    }

    fn with(
        tmp: TempDir,
        nats: Vec<NatsServer>,
        replicas: Option<u32>,
        nodes: usize,
        extra: &[&str],
    ) -> Cluster {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            nats,
            replicas,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tmp,
        };
        for i in 0..nodes {
            cluster.start_node(i);
        }
        cluster
    }

    /// The node's data directory; node `i` always gets the same one.
    pub fn data(&self, i: usize) -> PathBuf {
        self.tmp.0.join(format!("node{i}"))
    }

    /// Every NATS server's URL, comma-separated, as `--cluster-nats` takes them.
    pub fn nats_urls(&self) -> String {
        let urls: Vec<String> = self.nats.iter().map(NatsServer::url).collect();
        urls.join(",")
    }

    /// Node `i`'s command line, with `extra` after every other flag.
    fn node_command(&self, i: usize, extra: &[&str]) -> std::process::Command {
        let mut cmd = command(&self.data(i), &[]);
        cmd.arg("--cluster-nats")
            .arg(self.nats_urls())
            .arg("--node-name")
            .arg(format!("n{i}"));
        if let Some(replicas) = self.replicas {
            cmd.arg("--cluster-replicas").arg(replicas.to_string());
        }
        cmd.args(&self.extra).args(extra);
        cmd
    }

    /// Starts node `i` with `extra` flags, which must make it refuse to start; its exit
    /// status and log.
    pub fn refused_node(&self, i: usize, extra: &[&str]) -> (std::process::ExitStatus, String) {
        match launch_command(self.node_command(i, extra)) {
            Launch::Running(proc) => panic!("node {i} started on {}", proc.addr),
            Launch::Exited { status, stderr } => (status, stderr),
        }
    }

    /// Starts node `i` (again, on its data directory; or a new node when `i` is the next
    /// index) and waits for its listening line, which it prints once it has caught up.
    pub fn start_node(&mut self, i: usize) -> SocketAddr {
        self.start_node_with(i, &[])
    }

    /// [`Cluster::start_node`] with `extra` flags for this start.
    pub fn start_node_with(&mut self, i: usize, extra: &[&str]) -> SocketAddr {
        let proc = start_command(self.node_command(i, extra));
        let addr = proc.addr;
        if self.nodes.len() <= i {
            self.nodes.resize_with(i + 1, || None);
        }
        assert!(self.nodes[i].is_none(), "node {i} is already running");
        self.nodes[i] = Some(proc);
        addr
    }

    fn node(&self, i: usize) -> &Proc {
        self.nodes
            .get(i)
            .and_then(Option::as_ref)
            .unwrap_or_else(|| panic!("node {i} is not running"))
    }

    /// Where node `i` listens.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.node(i).addr
    }

    /// The admin setup code node `i` logged at its start.
    pub async fn admin_setup_code(&self, i: usize) -> String {
        self.node(i).admin_setup_code().await
    }

    /// Node `i`'s log so far, for failure messages.
    pub fn stderr(&self, i: usize) -> String {
        self.node(i).stderr()
    }

    /// SIGKILL of node `i`: a crash.
    pub fn kill_9(&mut self, i: usize) {
        let mut proc = self.nodes[i].take().expect("a running node");
        proc.kill_9();
    }

    /// SIGTERM of node `i`, which must exit 0.
    pub async fn stop_node(&mut self, i: usize) {
        let proc = self.nodes[i].take().expect("a running node");
        proc.stop().await;
    }
}

/// The `epoch` of a `hello` frame.
pub fn epoch(hello: &Value) -> String {
    hello["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("hello without an epoch: {hello}"))
        .to_string()
}

/// Every kept entry of `room` on every address in `addrs`, without the sender's nonces
/// (`sharing` checks those), once all of them serve the same timeline (replicas apply a
/// record at slightly different moments); panics with the differences if they never agree.
pub async fn same_history_everywhere(addrs: &[SocketAddr], token: &str, room: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + SLOW;
    loop {
        let mut seen: Vec<Vec<Value>> = Vec::new();
        for &addr in addrs {
            seen.push(kept(addr, token, room).await);
        }
        if seen.windows(2).all(|w| w[0] == w[1]) {
            return seen.swap_remove(0);
        }
        if tokio::time::Instant::now() >= deadline {
            for (addr, entries) in addrs.iter().zip(&seen) {
                eprintln!("history of {room} on {addr}:");
                for e in entries {
                    eprintln!("  {e}");
                }
            }
            panic!("the nodes never served the same history of {room}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every kept entry of `room` on `addr`, without the sender's nonces.
pub async fn kept(addr: SocketAddr, token: &str, room: &str) -> Vec<Value> {
    history(addr, token, room)
        .await
        .0
        .iter()
        .map(as_entry)
        .collect()
}

/// Alice registered on node `n0`, where she makes room `general`; bob registered on node `n1`,
/// where he joins it. Their tokens and the room's id.
pub async fn alice_and_bob(n0: SocketAddr, n1: SocketAddr) -> (String, String, String) {
    let alice = user(n0, "alice").await;
    let bob = user(n1, "bob").await;
    let general = room(n0, &alice, "general").await;
    assert_eq!(join(n1, &bob, &general).await.status, 200);
    (alice, bob, general)
}

/// `GET /api/v1/users/{name}`'s `online`.
pub async fn online(addr: SocketAddr, token: &str, name: &str) -> bool {
    let r = get(addr, &format!("/api/v1/users/{name}"), Some(token)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["online"].as_bool().expect("online")
}

/// `GET /api/v1/me`.
pub async fn me(addr: SocketAddr, token: &str) -> Reply {
    get(addr, "/api/v1/me", Some(token)).await
}

/// Sends `text` with `nonce` and returns the first frame answering it: the acknowledging
/// entry or an error.
pub async fn answer(w: &mut Ws, room: &str, text: &str, nonce: &str) -> Value {
    w.say(room, text, nonce).await;
    let deadline = Instant::now() + SLOW;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = w
            .next_within(left)
            .await
            .unwrap_or_else(|| panic!("no answer to {nonce} within {SLOW:?}"));
        if (f["type"] == "entry" || f["type"] == "error") && f["nonce"] == nonce {
            return f;
        }
    }
}

/// Posts `text` until it is acknowledged, as a user would after an `unavailable`; returns the
/// acknowledging entry.
pub async fn until_accepted(w: &mut Ws, room: &str, text: &str) -> Value {
    let deadline = Instant::now() + SLOW;
    for attempt in 0.. {
        let f = answer(w, room, text, &format!("{text} {attempt}")).await;
        if f["type"] == "entry" {
            return f;
        }
        assert_eq!(f["code"], "unavailable", "{f}");
        assert!(Instant::now() < deadline, "{text:?} still refused: {f}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    unreachable!()
}

/// Waits up to `wait` for the entry with `seq` on `w`.
pub async fn entry_within(w: &mut Ws, seq: u64, wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = w
            .next_within(left)
            .await
            .unwrap_or_else(|| panic!("entry {seq} did not arrive within {wait:?}"));
        if f["type"] == "entry" && f["seq"] == seq {
            return f;
        }
    }
}
