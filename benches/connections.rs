//! Load benchmark, scenario 3, connections: about 19,000 authenticated WebSockets in one room; upgrades/s, server RSS per connection, one broadcast to all.
//!
//! Starts the release `parley-server` on CPU 0, drives it from CPU 1 with `parley-load` and
//! prints a Markdown table. Scale: `PARLEY_BENCH_*` variables (`PARLEY_BENCH_QUICK=1` for a
//! short run); see `docs/BENCHMARKS.md`.

fn main() {
    parley_load::bench::main(
        "connections",
        option_env!("CARGO_BIN_EXE_parley-server"),
        env!("CARGO_MANIFEST_DIR"),
    );
}
