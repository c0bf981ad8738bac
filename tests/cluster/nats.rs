//! Real `nats-server -js` processes for the cluster tests: one server, or three clustered with
//! routes between them, each on free loopback ports with a JetStream store directory of its
//! own. A server can be stopped (SIGTERM), killed (SIGKILL) and started again on the same ports
//! and store, as an operator restarting it would. Every process is killed when dropped.
//!
//! `nats-server` is Debian's package; when it is missing it is installed with `apt-get` (as
//! root), once per test run, so `cargo test --workspace` works on a fresh machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Patience for a NATS server to accept clients and, in a cluster, to elect a JetStream
/// meta leader. Elections take a few seconds; a loaded machine makes them slower.
const NATS_WAIT: Duration = Duration::from_secs(30);

/// Starts on freshly picked ports before giving up: another process may take a picked port
/// between its release and the server's bind.
const ATTEMPTS: u32 = 3;

/// Where Debian puts the binary, and where other installs usually do.
const CANDIDATES: [&str; 3] = [
    "/usr/sbin/nats-server",
    "/usr/bin/nats-server",
    "/usr/local/bin/nats-server",
];

/// The `nats-server` binary, installed from Debian's package first if it is missing. Tests run
/// as threads of one process, so the `OnceLock` keeps them from running `apt-get` twice.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(found) = find() {
            return found;
        }
        eprintln!("cluster tests: installing nats-server with apt-get");
        run(Command::new("apt-get").args(["update", "-qq"]));
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300"])
            .arg("nats-server")
            .env("DEBIAN_FRONTEND", "noninteractive"));
        find().expect("nats-server installed but not found")
    })
}

fn find() -> Option<PathBuf> {
    let works = |bin: &Path| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .chain(std::iter::once(PathBuf::from("nats-server")))
        .find(|bin| works(bin))
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (installing nats-server needs apt-get)"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// A loopback port nobody listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// One `nats-server -js` process, started again on the same ports and store after a stop.
pub struct NatsServer {
    pub name: String,
    /// The client port.
    pub port: u16,
    /// The HTTP monitoring port (`/healthz`, `/jsz`).
    monitor: u16,
    /// The route port and every server's route port, when clustered.
    cluster: Option<(u16, Vec<u16>)>,
    /// The JetStream store and the server's log file.
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl NatsServer {
    /// A stand-alone server with a store under `dir`, ready for JetStream.
    pub async fn single(dir: &Path) -> NatsServer {
        for attempt in 1.. {
            let _ = fs::remove_dir_all(dir.join("nats0"));
            let mut server = NatsServer::new("nats0", dir, 0, None);
            server.spawn();
            match server.try_ready().await {
                Ok(()) => return server,
                Err(e) if attempt < ATTEMPTS => eprintln!("again on other ports: {e}"),
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    /// A stand-alone server on picked ports, not started: nothing listens on its port until
    /// [`NatsServer::start`].
    pub fn unstarted(dir: &Path) -> NatsServer {
        let _ = fs::remove_dir_all(dir.join("nats0"));
        NatsServer::new("nats0", dir, 0, None)
    }

    fn new(name: &str, dir: &Path, route: u16, cluster: Option<Vec<u16>>) -> NatsServer {
        let dir = dir.join(name);
        fs::create_dir_all(&dir).expect("create a NATS store dir");
        NatsServer {
            name: name.to_string(),
            port: free_port(),
            monitor: free_port(),
            cluster: cluster.map(|routes| (route, routes)),
            dir,
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again) and waits until it is ready.
    pub async fn start(&mut self) {
        self.spawn();
        self.ready().await;
    }

    /// Starts the process without waiting for it.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut cmd = Command::new(binary());
        cmd.args(["-js", "-a", "127.0.0.1", "-n", &self.name])
            .args([
                "-p",
                &self.port.to_string(),
                "-m",
                &self.monitor.to_string(),
            ])
            .arg("-sd")
            .arg(self.dir.join("store"))
            .arg("-l")
            .arg(self.dir.join("log"));
        if let Some((route, routes)) = &self.cluster {
            let routes: Vec<String> = routes
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            cmd.args(["--cluster_name", "parley-test"])
                .arg("--cluster")
                .arg(format!("nats://127.0.0.1:{route}"))
                .arg("--routes")
                .arg(routes.join(","));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Waits until the server answers `/healthz` with 200 and, when clustered, knows its
    /// JetStream meta leader.
    async fn ready(&mut self) {
        if let Err(e) = self.try_ready().await {
            panic!("{e}");
        }
    }

    /// Like [`NatsServer::ready`], but an exit (a port taken since it was picked, say) is an
    /// error to retry on other ports.
    async fn try_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + NATS_WAIT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("{} exited ({status}): {}", self.name, self.log()));
                }
            }
            if self.is_ready().await {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {NATS_WAIT:?}: {}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn is_ready(&self) -> bool {
        if monitor_get(self.monitor, "/healthz").await.map(|r| r.0) != Some(200) {
            return false;
        }
        if self.cluster.is_none() {
            return true;
        }
        self.jsz("/jsz").await.is_some_and(|j| {
            j["meta_cluster"]["leader"]
                .as_str()
                .is_some_and(|l| !l.is_empty())
        })
    }

    /// A monitoring document as JSON.
    async fn jsz(&self, path: &str) -> Option<Value> {
        let (status, body) = monitor_get(self.monitor, path).await?;
        (status == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// Stream `stream` as this server's monitoring describes it.
    async fn stream_detail(&self, stream: &str) -> Option<Value> {
        let jsz = self.jsz("/jsz?accounts=true&streams=true").await?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == stream)
    }

    /// The name of the server leading stream `stream`, as this server sees it.
    pub async fn stream_leader(&self, stream: &str) -> Option<String> {
        let detail = self.stream_detail(stream).await?;
        detail["cluster"]["leader"].as_str().map(str::to_string)
    }

    /// Number of messages stream `stream` holds, as this server sees it.
    pub async fn stream_messages(&self, stream: &str) -> Option<u64> {
        self.stream_detail(stream).await?["state"]["messages"].as_u64()
    }

    /// SIGTERM, and waits for the exit: the orderly stop of an operator.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + NATS_WAIT;
            while child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Deletes the JetStream store of a stopped server: it lost its disk.
    pub fn lose_store(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        fs::remove_dir_all(self.dir.join("store")).expect("remove the NATS store");
    }

    /// SIGKILL: the server dies as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three clustered servers with JetStream, all routed to each other.
pub async fn cluster_of_three(dir: &Path) -> Vec<NatsServer> {
    'attempt: for attempt in 1.. {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut servers: Vec<NatsServer> = (0..3)
            .map(|i| {
                let name = format!("nats{i}");
                let _ = fs::remove_dir_all(dir.join(&name));
                NatsServer::new(&name, dir, routes[i], Some(routes.clone()))
            })
            .collect();
        // All three must be up for the first meta-leader election.
        for server in &mut servers {
            server.spawn();
        }
        for server in &mut servers {
            match server.try_ready().await {
                Ok(()) => {}
                Err(e) if attempt < ATTEMPTS => {
                    eprintln!("again on other ports: {e}");
                    continue 'attempt;
                }
                Err(e) => panic!("{e}"),
            }
        }
        return servers;
    }
    unreachable!()
}

/// `GET path` on a monitoring port over HTTP/1.0 (so the answer is neither chunked nor kept
/// alive): the status and the body, or `None` if nothing answered.
async fn monitor_get(port: u16, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// The harness itself: a server restarts on its ports and store, and three servers elect a
/// leader for a stream kept on all of them. Failures here are the machine's, not Parley's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_servers_start_restart_and_cluster() {
    let tmp = crate::common::process::TempDir::new("nats-harness");
    let mut single = NatsServer::single(&tmp.0.join("single")).await;
    single.stop();
    assert!(!single.is_ready().await, "stopped but still answering");
    single.start().await;
    single.kill();
    single.start().await;

    let three = cluster_of_three(&tmp.0.join("three")).await;
    let mut leaders: Vec<String> = Vec::new();
    for server in &three {
        let jsz = server.jsz("/jsz").await.expect("/jsz");
        leaders.push(jsz["meta_cluster"]["leader"].as_str().unwrap().to_string());
    }
    leaders.dedup();
    assert_eq!(
        leaders.len(),
        1,
        "three servers, one meta leader: {leaders:?}"
    );
}
