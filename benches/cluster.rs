//! Load benchmark, cluster mode (issue 15): one `nats-server -js` and two Parley nodes sharing
//! its stream. Cross-node delivery in a 100-member room split over both nodes at 10K offered
//! deliveries/s, records per second through the stream, and how fast a third node with an
//! empty data directory catches up with 100,000 messages.
//!
//! Starts NATS and the release `parley-server` nodes, each with a data directory, on CPU 0,
//! drives them from CPU 1 with `parley-load` and prints Markdown tables. Needs `nats-server`
//! (Debian package `nats-server`, or `PARLEY_NATS_BIN`). Scale: `PARLEY_BENCH_CLUSTER_*`,
//! `PARLEY_BENCH_QUICK=1` for a short run; see `docs/BENCHMARKS.md`.

fn main() {
    parley_load::bench::main(
        "cluster",
        option_env!("CARGO_BIN_EXE_parley-server"),
        env!("CARGO_MANIFEST_DIR"),
    );
}
