//! Load benchmark, read markers (issue 12): a 1000-member room with a journal where every
//! member answers each message entry with a `read` frame, at 50 and 200 messages/s and
//! unthrottled, each also without the answers as a baseline; deliveries per second, read
//! frames per second, latency, server CPU and journal bytes per message.
//!
//! Starts the release `parley-server` on CPU 0 with a temporary `--data-dir`, drives it from
//! CPU 1 with `parley-load` and prints Markdown tables. Scale: `PARLEY_BENCH_*` variables
//! (`PARLEY_BENCH_QUICK=1` for a short run); see `docs/BENCHMARKS.md`.

fn main() {
    parley_load::bench::main(
        "read_markers",
        option_env!("CARGO_BIN_EXE_parley-server"),
        env!("CARGO_MANIFEST_DIR"),
    );
}
