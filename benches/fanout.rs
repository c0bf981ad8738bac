//! Load benchmark, scenario 1, fan-out: one 1000-member room at 100K, 500K and 1M offered deliveries/s, then closed-loop saturation.
//!
//! Starts the release `parley-server` on CPU 0, drives it from CPU 1 with `parley-load` and
//! prints a Markdown table. Scale: `PARLEY_BENCH_*` variables (`PARLEY_BENCH_QUICK=1` for a
//! short run); see `docs/BENCHMARKS.md`.

fn main() {
    parley_load::bench::main(
        "fanout",
        option_env!("CARGO_BIN_EXE_parley-server"),
        env!("CARGO_MANIFEST_DIR"),
    );
}
