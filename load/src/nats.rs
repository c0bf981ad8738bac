//! Starting and stopping a `nats-server -js` child for the cluster benchmark: JetStream on a
//! free loopback port, its store in a temporary directory, pinned like the Parley nodes.

use crate::error::{LoadError, Result};
use crate::probe::ServerProbe;
use crate::server::{pin_child, TempDir};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `nats-server` may take to accept connections. Default is 15 s.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long it may take to exit after SIGTERM before it is killed. Default is 10 s.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `nats-server` with JetStream; killed and its store removed on drop.
pub struct NatsProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub probe: ServerProbe,
    /// The full command line, for the record.
    pub command: String,
    log_path: PathBuf,
    /// The JetStream store; removed after the process.
    _store: TempDir,
}

/// The server binary: `$PARLEY_NATS_BIN`, else `nats-server` from `PATH`.
pub fn nats_binary() -> PathBuf {
    std::env::var_os("PARLEY_NATS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

impl NatsProcess {
    /// Starts `nats-server -js -a 127.0.0.1 -p PORT -sd STORE` on a port that was free a moment
    /// ago, and waits until it accepts TCP connections.
    pub fn start(pin_cpu: Option<usize>, nice: Option<i32>) -> Result<NatsProcess> {
        let bin = nats_binary();
        let store = TempDir::new("nats")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_path = store.0.with_extension("log");
        let log = std::fs::File::create(&log_path)?;
        let args = [
            "-js".to_string(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-sd".into(),
            store.0.display().to_string(),
        ];
        let mut cmd = Command::new(&bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        pin_child(&mut cmd, pin_cpu, nice);
        let child = cmd.spawn().map_err(|e| {
            LoadError::Config(format!(
                "cannot start {} (apt-get install nats-server): {e}",
                bin.display()
            ))
        })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut nats = NatsProcess {
            probe: ServerProbe { pid: child.id() },
            child: Some(child),
            addr,
            command: format!("{} {}", bin.display(), args.join(" ")),
            log_path,
            _store: store,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = nats
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                return Err(LoadError::Config(format!(
                    "nats-server did not come up on {addr}: {}",
                    nats.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nats)
    }

    /// `nats://127.0.0.1:PORT`, for `--cluster-nats`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The last 2 KiB of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let start = text.len().saturating_sub(2048);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].trim().to_owned()
    }

    /// SIGTERM, then wait; SIGKILL if it does not exit in time.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill only sends a signal to our own child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LoadError::Timeout(format!(
                    "nats-server did not exit within {STOP_TIMEOUT:?} of SIGTERM"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}
