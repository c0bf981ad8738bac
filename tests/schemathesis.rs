//! schemathesis against the built server and its own OpenAPI document: runs
//! `scripts/schemathesis.sh` (which installs schemathesis into `target/schemathesis-venv`
//! when missing) and fails when it fails: a 5xx, a dropped connection, a status, header,
//! content type or body the document does not describe, a schema-violating request
//! accepted, an undeclared method not answered 405, or a server panic.
//!
//! The report is printed (cargo shows it when the test fails, or with `--nocapture`).
//! `PARLEY_SKIP_SCHEMATHESIS=1` skips it (offline work); CI never sets it.

use std::path::Path;
use std::process::Command;

#[test]
fn the_server_keeps_to_its_openapi_document() {
    if std::env::var_os("PARLEY_SKIP_SCHEMATHESIS").is_some_and(|v| v == "1") {
        eprintln!("PARLEY_SKIP_SCHEMATHESIS=1: schemathesis skipped");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let out = Command::new("bash")
        .arg(root.join("scripts/schemathesis.sh"))
        .current_dir(root)
        .env("PARLEY_SERVER_BIN", env!("CARGO_BIN_EXE_parley-server"))
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run scripts/schemathesis.sh");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    // The report goes to the test's output: shown on failure, or with --nocapture.
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found the server and src/api/openapi.json disagreeing ({}); its report \
         is above. Replay a run with SCHEMATHESIS_SEED=<its seed> scripts/schemathesis.sh",
        out.status
    );
}
