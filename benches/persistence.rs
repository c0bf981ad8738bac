//! Load benchmark, scenario 5, persistence: scenario 1 with `--ephemeral` and with a data directory at the default `--fsync interval`.
//!
//! Starts the release `parley-server` on CPU 0, drives it from CPU 1 with `parley-load` and
//! prints a Markdown table. Scale: `PARLEY_BENCH_*` variables (`PARLEY_BENCH_QUICK=1` for a
//! short run); see `docs/BENCHMARKS.md`.

fn main() {
    parley_load::bench::main(
        "persistence",
        option_env!("CARGO_BIN_EXE_parley-server"),
        env!("CARGO_MANIFEST_DIR"),
    );
}
