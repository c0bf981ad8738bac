//! Load benchmark, presence storm (issue 9): 5,000 members of one room reconnect at once after
//! a restart; 4002 closes, presence frames per connection, whether every connection ends up
//! knowing everyone is online, and how long that takes.
//!
//! Starts the release `parley-server` with a data directory and its default
//! `--max-outbound-bytes` on CPU 0, makes the accounts, restarts it, opens every member's
//! WebSocket from CPU 1 with `parley-load` and prints a Markdown table. Scale:
//! `PARLEY_BENCH_STORM_MEMBERS`, `PARLEY_BENCH_QUICK=1` for 1,000; see `docs/BENCHMARKS.md`.

fn main() {
    parley_load::bench::main(
        "presence",
        option_env!("CARGO_BIN_EXE_parley-server"),
        env!("CARGO_MANIFEST_DIR"),
    );
}
