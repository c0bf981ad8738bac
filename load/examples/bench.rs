//! Runs one benchmark scenario without `cargo bench`:
//! `cargo run --release -p parley-load --example bench -- fanout` (scenarios: fanout, rooms,
//! connections, logins, persistence, state, presence, read_markers). Same environment
//! variables as the benches.

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "fanout".into());
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    if let Err(e) = parley_load::bench::run(&scenario, None, std::path::Path::new(workspace)) {
        eprintln!("benchmark {scenario} failed: {e}");
        std::process::exit(1);
    }
}
