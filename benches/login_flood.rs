//! Load benchmark, scenario 4, login isolation: scenario 2's latency quiet and during a flood of logins at the default 600,000 PBKDF2 iterations.
//!
//! Starts the release `parley-server` on CPU 0, drives it from CPU 1 with `parley-load` and
//! prints a Markdown table. Scale: `PARLEY_BENCH_*` variables (`PARLEY_BENCH_QUICK=1` for a
//! short run); see `docs/BENCHMARKS.md`.

fn main() {
    parley_load::bench::main(
        "login_flood",
        option_env!("CARGO_BIN_EXE_parley-server"),
        env!("CARGO_MANIFEST_DIR"),
    );
}
