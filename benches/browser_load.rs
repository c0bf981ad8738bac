//! Page-load benchmark of the browser client (issue 14): the page's size, and the time from
//! navigation to an interactive room list of 100 rooms and to a 1,000-entry room's latest
//! entries, in Debian's headless Chromium.
//!
//! Starts the release `parley-server` (ephemeral, cheap password hashing, no rate limits),
//! then runs `tests/browser/load.mjs` with Node.js: it seeds the user, the rooms and the
//! entries over REST and a WebSocket and prints Markdown tables (median and worst of
//! `PARLEY_BENCH_RUNS` runs, default 7). Needs `/usr/bin/chromium` and Node.js, as
//! `cargo test --test browser` does; installs the script's npm packages from the committed
//! lock file when missing. A benchmark prints figures; it fails only when it cannot run.
//! See `docs/BENCHMARKS.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use parley_load::server::{bench_flags, server_binary, supports_flag, ServerProcess};

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selecting nothing of ours skips.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    if filter.is_some_and(|f| !"browser_load".contains(f.as_str())) {
        return;
    }
    if let Err(e) = run() {
        eprintln!("benchmark browser_load failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "{chromium} is missing: `apt-get install chromium` (or set CHROMIUM)"
        ));
    }
    let dir = workspace.join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() || !dir.join("node_modules/ws").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel", "error"])
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("npm: {e}"))?
            .success();
        if !ok {
            return Err("npm ci in tests/browser failed".into());
        }
    }
    let bin = server_binary(option_env!("CARGO_BIN_EXE_parley-server"), &workspace)
        .map_err(|e| e.to_string())?;

    let mut flags = bench_flags(Some(1000));
    flags.push("--ephemeral".into());
    for (flag, value) in [
        ("rest-rate-limit", "0"),
        ("register-per-ip-per-hour", "0"),
        ("log-level", "warn"),
    ] {
        if supports_flag(&bin, flag) {
            flags.extend([format!("--{flag}"), value.into()]);
        }
    }
    println!("{}", machine(&workspace, &chromium));
    println!(
        "server: `{} {}` (not pinned: the browser, the script and the server share the machine)\n",
        bin.file_name()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default(),
        flags.join(" ")
    );
    let server = ServerProcess::start(&bin, &flags, None, None).map_err(|e| e.to_string())?;
    let status = Command::new("node")
        .arg("load.mjs")
        .current_dir(&dir)
        .env("PARLEY_URL", format!("http://{}", server.addr))
        .env("CHROMIUM", &chromium)
        .env(
            "RUNS",
            std::env::var("PARLEY_BENCH_RUNS").unwrap_or_else(|_| "7".into()),
        )
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("node: {e}"));
    let stopped = server.stop();
    let status = status?;
    if let Ok(s) = stopped {
        if !s.success() {
            eprintln!("warning: server exited with {s}");
        }
    }
    if !status.success() {
        return Err(format!("tests/browser/load.mjs failed ({status})"));
    }
    Ok(())
}

/// The machine, the browser and the commit, for the record.
fn machine(workspace: &Path, chromium: &str) -> String {
    let cpu = parley_load::bench::cpu_model();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let output = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .current_dir(workspace)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    format!(
        "machine: {cpu}, {cpus} CPUs; {}; Node.js {}; commit {}\n",
        output(chromium, &["--version"]),
        output("node", &["--version"]),
        output("git", &["rev-parse", "--short", "HEAD"]),
    )
}
