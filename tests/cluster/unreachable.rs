//! A node started while NATS is unreachable (issue 20, item 11): it used to bind its port and
//! answer nothing, ignore SIGTERM, and log `client error: nats: IO error` each second without
//! the URL. It answers `/healthz` with 503 at once (and every call with `503 unavailable`
//! until it has caught up), logs the URL it tries at WARN, stops on SIGTERM within the drain
//! timeout, and joins by itself once NATS is up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::process::{command, spawn_command, Proc, TempDir};
use serde_json::json;

use crate::common::*;
use crate::nats::{free_port, NatsServer};
use crate::SLOW;

/// How long the server waits for its connections at a stop (`server::DRAIN_TIMEOUT`).
const DRAIN: Duration = Duration::from_secs(5);

/// A node on a picked port, pointed at `nats`, which may not be running; started without
/// waiting for its listening line, which it prints only once it has caught up.
fn node(tmp: &TempDir, nats: &NatsServer) -> (Proc, std::sync::mpsc::Receiver<String>) {
    let port = free_port().to_string();
    let bind = format!("127.0.0.1:{port}");
    let mut cmd = command(&tmp.data(), &["--bind", &bind]);
    cmd.args(["--cluster-nats", &nats.url(), "--node-name", "n0"]);
    let (mut proc, first_line) = spawn_command(cmd);
    proc.addr = bind.parse().unwrap();
    (proc, first_line)
}

/// `GET path` on `addr`, or `None` when nothing answers within `SLOW` (the node's port is
/// bound from the start, so a connect succeeds even when nothing serves it).
async fn get_within(addr: SocketAddr, path: &str) -> Option<Reply> {
    let deadline = Instant::now() + SLOW;
    loop {
        // Until the node has bound its port, a connect is refused: try again.
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return tokio::time::timeout(SLOW, get(addr, path, None)).await.ok();
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_nats_answers_503_logs_the_url_and_stops_on_sigterm() {
    let tmp = TempDir::new("unreachable-stop");
    let nats = NatsServer::unstarted(&tmp.0);
    let (mut proc, _first_line) = node(&tmp, &nats);

    let health = get_within(proc.addr, "/healthz").await;
    let health = health.unwrap_or_else(|| panic!("/healthz never answered: {}", proc.stderr()));
    assert_eq!(health.status, 503, "{:?}", health.json());
    assert_eq!(health.json()["status"], "failing");
    let login = json!({ "username": "alice", "password": PASSWORD });
    let r = tokio::time::timeout(SLOW, post(proc.addr, "/api/v1/login", None, login))
        .await
        .expect("a login answers");
    assert_eq!(
        r.status,
        503,
        "a partial state decides nothing: {:?}",
        r.json()
    );
    assert_eq!(r.json()["error"]["code"], "unavailable");

    let log = proc.stderr_eventually_contains(&nats.url()).await;
    let warned = log
        .lines()
        .any(|l| l.contains(" WARN ") && l.contains(&nats.url()));
    assert!(warned, "a WARN line names {}:\n{log}", nats.url());

    let began = Instant::now();
    proc.sigterm();
    let status = proc.exited().await;
    assert_eq!(status.code(), Some(0), "{status}: {}", proc.stderr());
    assert!(
        began.elapsed() < DRAIN + Duration::from_secs(3),
        "stopped after {:?}",
        began.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_nats_joins_once_nats_is_up() {
    let tmp = TempDir::new("unreachable-join");
    let mut nats = NatsServer::unstarted(&tmp.0);
    let (proc, first_line) = node(&tmp, &nats);
    let health = get_within(proc.addr, "/healthz").await;
    let health = health.unwrap_or_else(|| panic!("/healthz never answered: {}", proc.stderr()));
    assert_eq!(health.status, 503);
    // A few tries fail first, so the node is backing off when NATS comes up.
    proc.stderr_eventually_contains("times in a row").await;

    nats.start().await;
    let healthy = || async { get(proc.addr, "/healthz", None).await.status == 200 };
    assert!(
        within(SLOW, healthy).await,
        "never joined once NATS was up: {}",
        proc.stderr()
    );
    let line = first_line.recv_timeout(SLOW).expect("the listening line");
    assert_eq!(line, format!("parley listening on {}", proc.addr));
    user(proc.addr, "alice").await;
    proc.stop().await;
}
