//! Load benchmark, kept state (issue 9): server RSS per kept entry live and after a restart,
//! restart time and recovery peak RSS, and acknowledgement latency during a compaction.
//!
//! Starts the release `parley-server` with a data directory on CPU 0, fills 1,000 rooms with
//! 1,000 messages each from CPU 1 with `parley-load`, restarts it and probes it while it
//! compacts, and prints Markdown tables. Scale: `PARLEY_BENCH_ENTRIES`, `PARLEY_BENCH_QUICK=1`
//! for a short run; see `docs/BENCHMARKS.md`.

fn main() {
    parley_load::bench::main(
        "state",
        option_env!("CARGO_BIN_EXE_parley-server"),
        env!("CARGO_MANIFEST_DIR"),
    );
}
