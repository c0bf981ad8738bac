//! Starting and stopping a `parley-server` child process for the benchmarks: the release
//! binary on `127.0.0.1:0`, pinned to one CPU, its address read from its first stdout line.

use crate::error::{LoadError, Result};
use crate::probe::ServerProbe;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to print its address. Default is 60 s (recovery of a
/// large journal takes a while).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM before it is killed. Default is 20 s.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The flags every benchmark passes: loopback on a free port, no per-user rate limit, no
/// per-IP cap, rooms up to 100,000 members, cheap password hashing for the accounts the
/// benchmark makes, and an 8 MiB slow-consumer allowance so a scheduling hiccup of the
/// generator is not mistaken for a slow client (4002 closes are still counted).
pub fn bench_flags(iterations: Option<u32>) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--bind",
        "127.0.0.1:0",
        "--rate-limit",
        "0",
        "--max-outbound-bytes",
        "8388608",
        "--room-capacity",
        "100000",
        "--max-connections-per-ip",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(n) = iterations {
        flags.push("--pbkdf2-iterations".into());
        flags.push(n.to_string());
    }
    flags
}

/// Whether `bin --help` lists `--<flag>`: for flags a newer server has and an older one would
/// refuse.
pub fn supports_flag(bin: &Path, flag: &str) -> bool {
    Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            let help = String::from_utf8_lossy(&o.stdout);
            let needle = format!("--{flag}");
            help.split_whitespace().any(|w| w == needle)
        })
        .unwrap_or(false)
}

/// A running server child.
pub struct ServerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub probe: ServerProbe,
    stderr_path: PathBuf,
    pub args: Vec<String>,
}

impl ServerProcess {
    /// Starts `bin` with `args`, pinned to `pin_cpu` when given, and waits for its
    /// `parley listening on HOST:PORT` line.
    pub fn start(
        bin: &Path,
        args: &[String],
        pin_cpu: Option<usize>,
        nice: Option<i32>,
    ) -> Result<ServerProcess> {
        Self::start_within(bin, args, pin_cpu, nice, START_TIMEOUT)
    }

    /// [`start`](Self::start), waiting up to `timeout` for the listening line: a cluster node
    /// prints it only once it has caught up with the stream.
    pub fn start_within(
        bin: &Path,
        args: &[String],
        pin_cpu: Option<usize>,
        nice: Option<i32>,
        timeout: Duration,
    ) -> Result<ServerProcess> {
        let stderr_path = std::env::temp_dir().join(format!(
            "parley-bench-server-{}-{}.log",
            std::process::id(),
            unique()
        ));
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        pin_child(&mut cmd, pin_cpu, nice);
        let mut child = cmd
            .spawn()
            .map_err(|e| LoadError::Config(format!("cannot start {}: {e}", bin.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| LoadError::Config("server stdout not captured".into()))?;
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = line_tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            let mut sink = [0u8; 4096];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        });
        let pid = child.id();
        let mut server = ServerProcess {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            probe: ServerProbe { pid },
            stderr_path,
            args: args.to_vec(),
        };
        let line = match line_rx.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => {
                return Err(LoadError::Timeout(format!(
                    "server printed nothing in {timeout:?}; stderr: {}",
                    server.stderr_tail()
                )))
            }
        };
        let addr = line
            .trim()
            .strip_prefix("parley listening on ")
            .and_then(|a| a.parse::<SocketAddr>().ok());
        match addr {
            Some(a) => server.addr = a,
            None => {
                // Give an exiting server a moment so its exit status and stderr are complete.
                std::thread::sleep(Duration::from_millis(200));
                let status = server
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "still running".into());
                return Err(LoadError::Config(format!(
                    "server did not announce its address (first line {:?}, {status}); stderr: {}",
                    line.trim(),
                    server.stderr_tail()
                )));
            }
        }
        Ok(server)
    }

    /// The server's whole stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The last 2 KiB of the server's stderr.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let start = text.len().saturating_sub(2048);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].trim().to_owned()
    }

    /// SIGTERM, then wait; SIGKILL if it does not exit in time.
    pub fn stop(mut self) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| LoadError::Config("server already stopped".into()))?;
        if let Some(status) = child.try_wait()? {
            return Err(LoadError::Protocol(format!(
                "server had exited on its own ({status}); stderr: {}",
                self.stderr_tail()
            )));
        }
        // SAFETY: kill only sends a signal to our own child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let status = child.wait()?;
                return Err(LoadError::Timeout(format!(
                    "server did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed: {status})"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// Makes the child `cmd` starts run on `pin_cpu` only and at `nice`, when given.
pub fn pin_child(cmd: &mut Command, pin_cpu: Option<usize>, nice: Option<i32>) {
    if pin_cpu.is_some() || nice.is_some() {
        // SAFETY: between fork and exec only async-signal-safe calls are made
        // (sched_setaffinity on plain data, setpriority).
        unsafe {
            cmd.pre_exec(move || {
                if let Some(cpu) = pin_cpu {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                }
                if let Some(n) = nice {
                    libc::setpriority(libc::PRIO_PROCESS, 0, n);
                }
                Ok(())
            });
        }
    }
}

pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A temporary data directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!(
            "parley-bench-{tag}-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Finds the server binary: `$PARLEY_SERVER_BIN`, else `hint` (a bench passes
/// `CARGO_BIN_EXE_parley-server`), else `<workspace>/target/release/parley-server`, built with
/// `cargo build --release --bin parley-server` if missing.
pub fn server_binary(hint: Option<&str>, workspace: &Path) -> Result<PathBuf> {
    if let Ok(p) = std::env::var("PARLEY_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Some(h) = hint {
        let p = PathBuf::from(h);
        if p.exists() {
            return Ok(p);
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let bin = target.join("release").join("parley-server");
    if !bin.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--bin", "parley-server"])
            .current_dir(workspace)
            .status()?;
        if !status.success() || !bin.exists() {
            return Err(LoadError::Config(format!(
                "could not build {} ({status})",
                bin.display()
            )));
        }
    }
    Ok(bin)
}
