//! The deterministic simulation (`parley::sim`, `docs/TESTING.md`): seeded clients, faults
//! between steps, invariants after every step. `PARLEY_SIM_SEED` and `PARLEY_SIM_STEPS`
//! choose the run; a failure prints its seed, the shortest failing prefix and the command
//! that replays it.
//!
//! The other tests are the mutation checks: each breaks one invariant on purpose, in the
//! state behind the core's back, and shows that the checker reports that invariant.

use parley::chat::ChatError;
use parley::sim::{self, Cmd, Invariant, Options, Plant, Reply, Sim};
use parley::store::sim::Fault;

#[test]
fn the_simulation_keeps_every_invariant() {
    let opts = sim::options_from_env().expect("PARLEY_SIM_SEED / PARLEY_SIM_STEPS");
    let began = std::time::Instant::now();
    eprintln!("simulation: seed {} steps {}", opts.seed, opts.steps);
    let s = match sim::run(&opts) {
        Ok(s) => s,
        Err(f) => panic!("simulation failed (shortest failing prefix):\n{f}"),
    };
    let secs = began.elapsed().as_secs_f64();
    eprintln!(
        "simulation: {} steps in {secs:.1} s, {:.0} steps/s ({} accepted, {} crashes, {} torn records, {} failed writes, {} steps with a full journal, {} compactions, {} checkpoints; {} users, {} rooms at the end, {} on the replicas)",
        s.steps,
        s.steps as f64 / secs,
        s.accepted,
        s.crashes,
        s.torn,
        s.failed_writes,
        s.full,
        s.compactions,
        s.checkpoints,
        s.users,
        s.rooms,
        s.replica_rooms
    );
    eprintln!(
        "simulation: seconds drawing commands {:.1}, running and checking them {:.1}, crashes {:.1}, full checks {:.1}",
        s.t_gen, s.t_exec, s.t_crash, s.t_full
    );
    assert!(s.replica_rooms > 0, "the replicas decided something");
}

/// Two runs of a seed draw the same commands and get the same answers, with the same room
/// ids (the seed makes them), step for step.
#[test]
fn a_seed_replays_the_same_run() {
    let a = sim::run(&Options::new(5, 3_000)).expect("clean run");
    let b = sim::run(&Options::new(5, 3_000)).expect("clean run");
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.outcomes, b.outcomes);
    assert_eq!(
        (a.crashes, a.torn, a.compactions),
        (b.crashes, b.torn, b.compactions)
    );
    let c = sim::run(&Options::new(6, 3_000)).expect("clean run");
    assert_ne!(a.trace, c.trace, "another seed, another run");
}

/// A sabotage at step 1,500 is found later (at a crash or the checkpoint at 2,000); the
/// report names step 1,500 itself, the shortest prefix that fails.
#[test]
fn a_failure_reports_the_shortest_failing_prefix() {
    let mut opts = Options::new(7, 5_000);
    opts.sabotage_at = Some(1_500);
    let f = sim::run(&opts).expect_err("the sabotage is found");
    assert_eq!(f.violation.invariant, Invariant::Durability, "{f}");
    assert_eq!(f.step, 1_500, "{f}");
    let text = f.to_string();
    assert!(
        text.contains("PARLEY_SIM_SEED=7 PARLEY_SIM_STEPS=1500 cargo test --test simulation"),
        "{text}"
    );
}

/// A core with alice (owner of a room of capacity 3), bob (a member) and carol and dave
/// (registered, not members); their tokens; the room's id.
struct Scene {
    sim: Sim,
    room: String,
    alice: String,
    bob: String,
}

fn token(sim: &mut Sim, user: &str) -> String {
    let cmd = Cmd::Register {
        user: user.into(),
        invite: None,
    };
    ok(sim, cmd);
    match ok(sim, Cmd::Login { user: user.into() }) {
        Reply::Token(t) => t,
        other => panic!("login {user}: {other:?}"),
    }
}

fn ok(sim: &mut Sim, cmd: Cmd) -> Reply {
    let out = sim.exec(&cmd).expect("checks pass");
    out.unwrap_or_else(|e| panic!("{cmd:?}: {e:?}"))
}

fn scene() -> Scene {
    let mut sim = Sim::new(Options::new(1, 0));
    let alice = token(&mut sim, "alice");
    let bob = token(&mut sim, "bob");
    token(&mut sim, "carol");
    token(&mut sim, "dave");
    let create = Cmd::CreateRoom {
        token: alice.clone(),
        name: "den".into(),
        capacity: 3,
        private: false,
    };
    let Reply::Room(room) = ok(&mut sim, create) else {
        panic!("no room");
    };
    ok(
        &mut sim,
        Cmd::Join {
            token: bob.clone(),
            room: room.clone(),
        },
    );
    assert!(sim.check_rooms().is_ok());
    Scene {
        sim,
        room,
        alice,
        bob,
    }
}

fn post(s: &mut Scene, text: &str) {
    let cmd = Cmd::Post {
        token: s.bob.clone(),
        room: s.room.clone(),
        text: text.into(),
    };
    ok(&mut s.sim, cmd);
}

#[test]
fn mutation_a_member_over_capacity_is_reported() {
    let mut s = scene();
    for user in ["carol", "dave"] {
        let room = s.room.clone();
        assert!(s.sim.plant(&Plant::Member {
            room,
            user: user.into()
        }));
    }
    let v = s.sim.check_rooms().expect_err("4 members in a room of 3");
    assert_eq!(v.invariant, Invariant::Capacity, "{v}");
}

#[test]
fn mutation_a_banned_member_is_reported() {
    let mut s = scene();
    let room = s.room.clone();
    assert!(s.sim.plant(&Plant::Ban {
        room,
        user: "bob".into()
    }));
    let v = s.sim.check_rooms().expect_err("bob is banned and a member");
    assert_eq!(v.invariant, Invariant::Banned, "{v}");
}

#[test]
fn mutation_a_message_accepted_during_a_mute_is_reported() {
    let mut s = scene();
    let mute = Cmd::Mute {
        token: s.alice.clone(),
        room: s.room.clone(),
        target: "bob".into(),
        seconds: 600,
    };
    ok(&mut s.sim, mute);
    let room = s.room.clone();
    assert!(s.sim.plant(&Plant::Unmute {
        room,
        user: "bob".into()
    }));
    let cmd = Cmd::Post {
        token: s.bob.clone(),
        room: s.room.clone(),
        text: "m1z muted".into(),
    };
    let v = s
        .sim
        .exec(&cmd)
        .expect_err("the core took it: the mute is gone");
    assert_eq!(v.invariant, Invariant::Muted, "{v}");
}

#[test]
fn mutation_a_deleted_text_served_again_is_reported() {
    let mut s = scene();
    post(&mut s, "m1z secret");
    let seq = s.sim.core().sim_room(&s.room, 0).expect("room").last_seq;
    let delete = Cmd::Delete {
        token: s.bob.clone(),
        room: s.room.clone(),
        seq,
    };
    ok(&mut s.sim, delete);
    let room = s.room.clone();
    assert!(s.sim.plant(&Plant::Undelete {
        room,
        seq,
        text: "m1z secret".into()
    }));
    let v = s.sim.check_rooms().expect_err("the text is back");
    assert_eq!(v.invariant, Invariant::DeletedText, "{v}");
}

#[test]
fn mutation_shifted_seqs_are_reported() {
    let mut s = scene();
    post(&mut s, "m1z one");
    post(&mut s, "m2z two");
    let room = s.room.clone();
    assert!(s.sim.plant(&Plant::SkipSeq { room }));
    let v = s
        .sim
        .check_rooms()
        .expect_err("every seq names another entry");
    assert_eq!(v.invariant, Invariant::Seqs, "{v}");
}

#[test]
fn mutation_a_change_the_journal_lacks_is_reported_at_the_crash() {
    let mut s = scene();
    let room = s.room.clone();
    assert!(s.sim.plant(&Plant::Topic {
        room,
        topic: "never recorded".into()
    }));
    let v = s
        .sim
        .crash()
        .expect_err("the recovered room has no such topic");
    assert_eq!(v.invariant, Invariant::Durability, "{v}");
}

#[test]
fn mutation_a_replica_that_decided_differently_is_reported() {
    let mut s = scene();
    assert!(s.sim.full_check().is_ok());
    let plant = Plant::Topic {
        room: s.room.clone(),
        topic: "only here".into(),
    };
    assert!(s.sim.replicas()[1].sim_plant(&plant), "same room ids");
    let v = s.sim.full_check().expect_err("replica 1 differs");
    assert_eq!(v.invariant, Invariant::Determinism, "{v}");
}

/// Found by the simulation (seed 21): deleting the oldest kept message when the history is
/// full appends the `delete` entry, which pushes the message itself out of the ring; the
/// `edit` entries that refer to it must still lose their text, as the contract says ("the
/// `edit` entries that refer to it carry no text either").
#[test]
fn deleting_the_oldest_kept_message_clears_the_text_of_its_edits() {
    let mut s = scene();
    post(&mut s, "m1z first");
    let seq = s.sim.core().sim_room(&s.room, 0).expect("room").last_seq;
    let edit = Cmd::Edit {
        token: s.bob.clone(),
        room: s.room.clone(),
        seq,
        text: "e1z secret".into(),
    };
    ok(&mut s.sim, edit);
    // Fill the ring until the message is the oldest entry kept.
    let mut n = 2;
    while s.sim.core().sim_room(&s.room, 0).expect("room").first_seq < seq {
        post(&mut s, &format!("m{n}z filler"));
        n += 1;
    }
    assert_eq!(s.sim.core().sim_room(&s.room, 0).unwrap().first_seq, seq);
    let delete = Cmd::Delete {
        token: s.bob.clone(),
        room: s.room.clone(),
        seq,
    };
    let out = s.sim.exec(&delete).expect("no deleted text is served");
    assert!(out.is_ok(), "{out:?}");
    let facts = s.sim.core().sim_room(&s.room, 0).unwrap();
    assert!(
        facts
            .entries
            .iter()
            .all(|e| e.text.as_deref() != Some("e1z secret")),
        "{:?}",
        facts.entries
    );
    assert!(s.sim.crash().is_ok(), "and the same after a restart");
}

/// Found by the simulation (seed 106): the last member's leave makes two records, the
/// `leave` entry and the room's deletion; when the journal fails them, the leave's undo put
/// the leaver back and the deletion's undo then emptied the room again, so until the restart
/// the room showed no members while the journal (and the answer, `unavailable`) said
/// otherwise.
#[test]
fn a_failed_last_leave_leaves_the_member_in_the_room() {
    let mut sim = Sim::new(Options::new(1, 0));
    let alice = token(&mut sim, "alice");
    let create = Cmd::CreateRoom {
        token: alice.clone(),
        name: "solo".into(),
        capacity: 3,
        private: false,
    };
    let Reply::Room(room) = ok(&mut sim, create) else {
        panic!("no room");
    };
    sim.log().inject(Fault::Fail);
    let out = sim.exec(&Cmd::Leave {
        token: alice,
        room: room.clone(),
    });
    assert!(matches!(out, Ok(Err(ChatError::Unavailable))), "{out:?}");
    let members = sim.core().sim_room(&room, 0).map(|f| f.members);
    assert_eq!(members, Some(vec!["alice".to_string()]));
    sim.crash().expect("the recovered state is the live one");
}

/// Found by the simulation (seeds 101, 103, 105): a message in a DM clears the writer's
/// "unanswered" mark (the DM counts toward their room limit from then on); a message the
/// journal failed must not.
#[test]
fn a_failed_message_in_a_dm_leaves_it_unanswered() {
    let mut sim = Sim::new(Options::new(1, 0));
    let alice = token(&mut sim, "alice");
    let bob = token(&mut sim, "bob");
    let open = Cmd::OpenDm {
        token: alice,
        target: "bob".into(),
    };
    let Reply::Room(dm) = ok(&mut sim, open) else {
        panic!("no DM");
    };
    sim.log().inject(Fault::Fail);
    let post = Cmd::Post {
        token: bob,
        room: dm,
        text: "m1z hi".into(),
    };
    let out = sim.exec(&post);
    assert!(matches!(out, Ok(Err(ChatError::Unavailable))), "{out:?}");
    sim.crash().expect("the recovered state is the live one");
}
