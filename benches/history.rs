//! Load benchmark, history isolation (issue 20): the many-rooms measurement quiet and while
//! one member of another room pulls 500-entry pages of 4,000-byte entries from 8
//! connections, closing each as soon as the status line arrives; other rooms' round trip
//! p50/p99 and the pulls' answers by status.
//!
//! Starts the release `parley-server` on CPU 0, drives it from CPU 1 with `parley-load` and
//! prints Markdown tables. Scale: `PARLEY_BENCH_*` variables (`PARLEY_BENCH_QUICK=1` for a
//! short run); see `docs/BENCHMARKS.md`.

fn main() {
    parley_load::bench::main(
        "history",
        option_env!("CARGO_BIN_EXE_parley-server"),
        env!("CARGO_MANIFEST_DIR"),
    );
}
