//! The browser client in real headless Chromium: `tests/browser/run.mjs`, driven by
//! playwright-core with Debian's `/usr/bin/chromium`, against the built `parley-server`
//! (which the script starts, kills and restarts on a data directory of its own).
//!
//! What the script needs is installed here when missing, so `cargo test --workspace` runs it
//! on a fresh machine: Chromium and Node.js from Debian's packages (`apt-get`, as root), and
//! the script's npm packages with `npm ci` from the committed lock file.
//! `PARLEY_SCREENSHOTS=1` also writes the screenshots under `docs/screenshots/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole run is bounded; it takes well under a minute when healthy.
const RUN_LIMIT: Duration = Duration::from_secs(240);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(what: &str, cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// Debian packages for the commands that are missing: one `apt-get update`, one install.
fn ensure_packages(wanted: &[(&str, &str)]) {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(probe, _)| !Path::new(probe).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return;
    }
    eprintln!("browser test: installing {missing:?} with apt-get");
    run(
        "apt-get update",
        Command::new("apt-get").args(["update", "-qq"]),
    );
    run(
        "apt-get install",
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
}

#[test]
fn browser_client_in_headless_chromium() {
    ensure_packages(&[
        ("/usr/bin/chromium", "chromium"),
        ("/usr/bin/node", "nodejs"),
        ("/usr/bin/npm", "npm"),
    ]);
    let dir = root().join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() || !dir.join("node_modules/ws").exists() {
        run(
            "npm ci",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel", "error"])
                .current_dir(&dir),
        );
    }
    assert!(
        succeeds(Command::new("/usr/bin/chromium").arg("--version")),
        "/usr/bin/chromium does not run"
    );

    let mut node = Command::new("node");
    node.arg("run.mjs")
        .current_dir(&dir)
        .env("PARLEY_BIN", env!("CARGO_BIN_EXE_parley-server"))
        .env("CHROMIUM", "/usr/bin/chromium")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var_os("PARLEY_SCREENSHOTS").is_some() {
        node.env("SCREENSHOTS", root().join("docs/screenshots"));
    }
    let mut child = node.spawn().expect("start node");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            // SIGTERM first: the script then stops the server it started.
            // SAFETY: kill(2) on our own child's pid, which has not been reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(5) {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    println!("{out}");
    eprintln!("{err}");
    match status {
        Some(s) => assert!(s.success(), "browser tests failed ({s}):\n{out}\n{err}"),
        None => panic!("browser tests took over {RUN_LIMIT:?}:\n{out}\n{err}"),
    }
}
