//! What the client's test binaries share: the server binary they run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `PARLEY_SERVER_BIN`, or `cargo build --bin parley-server` into this test's target
/// directory (a no-op when it is fresh).
pub fn server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("PARLEY_SERVER_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("test binary path");
        // <target>/<profile>/deps/TEST-HASH
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("target dir");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("client/ sits in the workspace");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .args(["build", "--bin", "parley-server"])
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo to build parley-server");
        assert!(status.success(), "cargo build --bin parley-server failed");
        let bin = profile_dir.join("parley-server");
        assert!(bin.exists(), "no server binary at {}", bin.display());
        bin
    })
}
