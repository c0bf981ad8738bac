//! The built `parley-server` binary as a child process on a data directory of its own: start
//! it (or watch it refuse to start), read its stderr, stop it with SIGTERM or kill it with
//! SIGKILL.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::WAIT;

/// A fresh directory under the system temp dir, removed when the test ends. The server's data
/// directory is `data` inside it, which the server has to create itself.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "parley-test-{name}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn data(&self) -> PathBuf {
        self.0.join("data")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A running `parley-server`. Dropping it kills the process (SIGKILL) and reaps it.
pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    /// Everything the process wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a start attempt ended.
pub enum Launch {
    Running(Proc),
    Exited { status: ExitStatus, stderr: String },
}

/// The built server on 127.0.0.1:0 and `data_dir`, with fast hashing and no rate limit, plus
/// `extra`. Callers may adjust the command further before [`launch_command`].
pub fn command(data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parley-server"));
    command
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["--pbkdf2-iterations", "1000", "--min-password-length", "8"])
        .args(["--rate-limit", "0", "--rest-rate-limit", "0"])
        .args(extra);
    command
}

/// Starts [`command`] and waits for its `parley listening on HOST:PORT` line (or its exit).
pub fn launch(data_dir: &Path, extra: &[&str]) -> Launch {
    launch_command(command(data_dir, extra))
}

/// Starts `command` with piped output without waiting for anything: the process (whose
/// `addr` is unknown yet, 127.0.0.1:0) and its first stdout line when it comes.
pub fn spawn_command(mut command: Command) -> (Proc, mpsc::Receiver<String>) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn parley-server");
    let stdout = child.stdout.take().expect("stdout");
    let stderr_pipe = child.stderr.take().expect("stderr");
    let stderr = Arc::new(Mutex::new(String::new()));
    let stderr_reader = {
        let stderr = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr_pipe);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                stderr.lock().unwrap().push_str(&line);
                line.clear();
            }
        })
    };
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let proc = Proc {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        stderr,
        stderr_reader: Some(stderr_reader),
    };
    (proc, rx)
}

/// Starts `command` with piped output and waits for its listening line (or its exit).
pub fn launch_command(command: Command) -> Launch {
    let (mut proc, rx) = spawn_command(command);
    match rx.recv_timeout(WAIT) {
        Ok(line) => {
            let addr = line
                .strip_prefix("parley listening on ")
                .and_then(|a| a.trim().parse().ok())
                .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
            proc.addr = addr;
            Launch::Running(proc)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // Stdout closed without the line: the process is exiting.
            let status = proc.wait_blocking();
            let stderr = proc.stderr_after_exit();
            Launch::Exited { status, stderr }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!(
                "no listening line within {WAIT:?}; stderr: {}",
                proc.stderr()
            )
        }
    }
}

/// Starts a server that must come up.
pub fn start(data_dir: &Path, extra: &[&str]) -> Proc {
    start_command(command(data_dir, extra))
}

/// Starts `command`, which must come up.
pub fn start_command(command: Command) -> Proc {
    match launch_command(command) {
        Launch::Running(proc) => proc,
        Launch::Exited { status, stderr } => {
            panic!("parley-server did not start ({status}): {stderr}")
        }
    }
}

/// Starts a server that must refuse to start; returns its exit status and stderr.
pub fn refused(data_dir: &Path, extra: &[&str]) -> (ExitStatus, String) {
    match launch(data_dir, extra) {
        Launch::Running(proc) => panic!(
            "parley-server started on {} but should have refused; stderr: {}",
            proc.addr,
            proc.stderr()
        ),
        Launch::Exited { status, stderr } => (status, stderr),
    }
}

impl Proc {
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// All of stderr, once the process has exited and the pipe is drained.
    pub fn stderr_after_exit(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr()
    }

    pub fn wait_blocking(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "parley-server did not exit");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM (std has no signal API, so through `kill`).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Sends SIGHUP.
    pub fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed: {status}");
    }

    /// Waits for the process to exit, without blocking the runtime.
    pub async fn exited(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "parley-server still running {WAIT:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGTERM, then the exit status, which must be 0.
    pub async fn stop(self) {
        self.sigterm();
        self.finish().await;
    }

    /// After a SIGTERM: waits for the exit, which must be with status 0.
    pub async fn finish(mut self) {
        let status = self.exited().await;
        assert_eq!(
            status.code(),
            Some(0),
            "exit after SIGTERM: {status}; stderr: {}",
            self.stderr()
        );
    }

    /// SIGKILL, as a crash: nothing gets flushed or closed by the server.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// The admin setup code this start logged (it has an `--admin` name without an account).
    pub async fn admin_setup_code(&self) -> String {
        let log = self
            .stderr_eventually_contains(super::SETUP_CODE_SAYS)
            .await;
        super::setup_code_in(&log).expect("a code after the words")
    }

    /// Polls stderr until it contains `needle`.
    pub async fn stderr_eventually_contains(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.stderr();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "stderr never mentioned {needle:?}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
