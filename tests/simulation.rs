//! The deterministic simulation (`parley::sim`, `docs/TESTING.md`): seeded clients, faults
//! between steps, invariants after every step. `PARLEY_SIM_SEED` and `PARLEY_SIM_STEPS`
//! choose the run; a failure prints its seed, the shortest failing prefix and the command
//! that replays it.

use parley::sim;

#[test]
fn the_simulation_keeps_every_invariant() {
    let opts = sim::options_from_env().expect("PARLEY_SIM_SEED / PARLEY_SIM_STEPS");
    let began = std::time::Instant::now();
    eprintln!("simulation: seed {} steps {}", opts.seed, opts.steps);
    let r = sim::run(&opts);
    if let Ok(s) = &r { eprintln!("{s:?}"); }
    match r {
        Ok(s) => eprintln!(
            "simulation: {} steps in {:.1} s ({} accepted, {} crashes, {} torn, {} failed writes, {} compactions, {} checkpoints; {} users, {} rooms at the end)",
            s.steps,
            began.elapsed().as_secs_f64(),
            s.accepted,
            s.crashes,
            s.torn,
            s.failed_writes,
            s.compactions,
            s.checkpoints,
            s.users,
            s.rooms
        ),
        Err(f) => panic!("simulation failed (shortest failing prefix):\n{f}"),
    }
}
