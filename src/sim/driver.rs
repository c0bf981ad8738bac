//! The one place the simulation drives the core. A [`Cmd`] that is one of the core's
//! [`Command`]s is decided by [`Core::run`] with a [`Ctx`] from the simulated clock and the
//! seed, as `Core::submit` does for the doors with the wall clock; the same command goes to
//! the cluster replicas as a [`Proposal`] that [`Core::execute`] runs. The rest (accounts,
//! read markers, administration) calls the core's methods as the REST handlers do.
//!
//! Waiting for the store is async. [`run`] polls such a future to completion on this thread:
//! whenever it is pending, the simulated journal delivers its acknowledgements (outside every
//! lock of the core, as the journal's delivery thread does), and if none were waiting the
//! future waits for the password hashing pool.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::chat::replica::Proposal;
use crate::chat::{token_hash, Auth, Caller, ChatError, Command, Core, Ctx, Reply as CoreReply};
use crate::store::sim::SimLog;

/// The address every simulated client comes from.
const FROM: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A simulated user's password (long enough for `--min-password-length`).
pub const PASSWORD: &str = "correct horse battery staple";

/// Something one simulated client asks for. Users are named, rooms by id.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// `invite` is the admin setup code for the admin's own registration.
    Register {
        user: String,
        invite: Option<String>,
    },
    Login {
        user: String,
    },
    Logout {
        token: String,
    },
    CreateRoom {
        token: String,
        name: String,
        capacity: i64,
        private: bool,
    },
    Join {
        token: String,
        room: String,
    },
    Leave {
        token: String,
        room: String,
    },
    Invite {
        token: String,
        room: String,
        target: String,
    },
    Remove {
        token: String,
        room: String,
        target: String,
        ban: bool,
    },
    Lift {
        token: String,
        room: String,
        target: String,
        unban: bool,
    },
    Mute {
        token: String,
        room: String,
        target: String,
        seconds: u64,
    },
    Role {
        token: String,
        room: String,
        target: String,
        role: Option<&'static str>,
    },
    Topic {
        token: String,
        room: String,
        topic: String,
    },
    OpenDm {
        token: String,
        target: String,
    },
    Block {
        token: String,
        target: String,
        blocked: bool,
    },
    Post {
        token: String,
        room: String,
        text: String,
    },
    Edit {
        token: String,
        room: String,
        seq: u64,
        text: String,
    },
    Delete {
        token: String,
        room: String,
        seq: u64,
    },
    MarkRead {
        token: String,
        room: String,
        seq: u64,
    },
    /// Writes the read markers that moved (the server does it every second).
    FlushRead,
    DeleteRoom {
        token: String,
        room: String,
        admin: bool,
    },
    Disable {
        token: String,
        target: String,
        disabled: bool,
    },
    CreateInvite {
        token: String,
    },
}

impl Cmd {
    /// The token the command authenticates with.
    pub fn token(&self) -> Option<&str> {
        use Cmd::*;
        match self {
            Register { .. } | Login { .. } | FlushRead => None,
            Logout { token }
            | CreateRoom { token, .. }
            | Join { token, .. }
            | Leave { token, .. }
            | Invite { token, .. }
            | Remove { token, .. }
            | Lift { token, .. }
            | Mute { token, .. }
            | Role { token, .. }
            | Topic { token, .. }
            | OpenDm { token, .. }
            | Block { token, .. }
            | Post { token, .. }
            | Edit { token, .. }
            | Delete { token, .. }
            | MarkRead { token, .. }
            | DeleteRoom { token, .. }
            | Disable { token, .. }
            | CreateInvite { token } => Some(token),
        }
    }
}

/// What a command answered: a token, a room id, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Done,
    Token(String),
    Room(String),
}

/// Polls `f` to completion, delivering `log`'s acknowledgements whenever it waits.
pub fn run<T>(log: &SimLog, f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            log.deliver();
            return out;
        }
        if !log.deliver() {
            // Waiting for the hashing pool's thread.
            std::thread::yield_now();
        }
    }
}

fn auth(core: &Core, token: &str) -> Result<Auth, ChatError> {
    core.authenticate(token_hash(token))
}

/// The core's own command for `cmd`, if it is one (accounts, read markers and
/// administration are methods of their own).
fn command(cmd: &Cmd) -> Option<Command> {
    use Cmd::*;
    let s = |x: &String| x.clone();
    Some(match cmd {
        CreateRoom {
            name,
            capacity,
            private,
            ..
        } => Command::CreateRoom {
            name: s(name),
            capacity: Some(*capacity),
            visibility: Some(if *private { "private" } else { "public" }.into()),
            topic: None,
        },
        Join { room, .. } => Command::Join { room: s(room) },
        Leave { room, .. } => Command::Leave { room: s(room) },
        Invite { room, target, .. } => Command::Invite {
            room: s(room),
            target: s(target),
        },
        Remove {
            room, target, ban, ..
        } => Command::Remove {
            room: s(room),
            target: s(target),
            reason: None,
            ban: *ban,
        },
        Lift {
            room,
            target,
            unban,
            ..
        } => Command::Lift {
            room: s(room),
            target: s(target),
            unban: *unban,
        },
        Mute {
            room,
            target,
            seconds,
            ..
        } => Command::Mute {
            room: s(room),
            target: s(target),
            seconds: Some(*seconds),
        },
        Role {
            room, target, role, ..
        } => Command::Role {
            room: s(room),
            target: s(target),
            role: role.map(str::to_string),
        },
        Topic { room, topic, .. } => Command::Update {
            room: s(room),
            name: None,
            topic: Some(serde_json::Value::String(s(topic))),
            visibility: None,
        },
        OpenDm { target, .. } => Command::OpenDm { target: s(target) },
        Block {
            target, blocked, ..
        } => Command::Block {
            target: s(target),
            blocked: *blocked,
        },
        Post { room, text, .. } => Command::Post {
            room: s(room),
            text: s(text),
            action: false,
            nonce: None,
        },
        Edit {
            room, seq, text, ..
        } => Command::Edit {
            room: s(room),
            seq: *seq,
            text: Some(s(text)),
            nonce: None,
        },
        Delete { room, seq, .. } => Command::Edit {
            room: s(room),
            seq: *seq,
            text: None,
            nonce: None,
        },
        DeleteRoom { room, admin, .. } => Command::DeleteRoom {
            room: s(room),
            admin: *admin,
        },
        _ => return None,
    })
}

/// What the caller's answer turns into for the clients.
fn reply(r: CoreReply) -> Reply {
    match r {
        CoreReply::Room(v) => Reply::Room(v.id),
        _ => Reply::Done,
    }
}

/// A command for the cluster replicas: the caller's name (none for a registration) and the
/// core's command.
pub type Proposed = (Option<String>, Command);

/// Runs `cmd` on `core`, a command of the core's at `now` with random ids from `seed` (the
/// simulated clock), the others with the wall clock; its acknowledgements are delivered
/// before this returns. Also returns the core's command and its caller, once the caller
/// authenticated, for the cluster replicas.
pub fn execute(
    core: &Core,
    log: &SimLog,
    cmd: &Cmd,
    now: u64,
    seed: u64,
) -> (Result<Reply, ChatError>, Option<Proposed>) {
    use Cmd::*;
    let user = match cmd.token() {
        Some(t) => match auth(core, t) {
            Ok(a) => Some(a),
            Err(e) => return (Err(e), None),
        },
        None => None,
    };
    if let (Some(c), Some(a)) = (command(cmd), &user) {
        let out = core
            .run(&mut Ctx::at(now, seed), Caller::user(&a.user), &c)
            .and_then(|(r, commit)| run(log, commit.wait()).map(|_| reply(r)));
        // A command refused midway may have handed records to the store before: their
        // fate is delivered too.
        log.deliver();
        return (out, Some((Some(a.user.name.clone()), c)));
    }
    let out = run(log, async {
        match (cmd, &user) {
            (Register { user, invite }, _) => core
                .register(user, PASSWORD, invite.as_deref(), FROM)
                .await
                .map(|_| Reply::Done),
            (Login { user }, _) => core
                .login(user, PASSWORD, FROM)
                .await
                .map(|(token, _)| Reply::Token(token)),
            (FlushRead, _) => {
                core.flush_read_markers();
                Ok(Reply::Done)
            }
            (Logout { .. }, Some(a)) => core.logout(a).await.map(|_| Reply::Done),
            (MarkRead { room, seq, .. }, Some(a)) => {
                let cmd = Command::MarkRead {
                    room: room.clone(),
                    seq: *seq,
                };
                core.submit(Caller::user(&a.user), cmd)
                    .await
                    .map(|_| Reply::Done)
            }
            (
                Disable {
                    target, disabled, ..
                },
                Some(a),
            ) => core
                .set_disabled(&a.user, target, *disabled)
                .await
                .map(|_| Reply::Done),
            (CreateInvite { .. }, Some(a)) => core
                .create_invite(&a.user, Some(2), Some(3600))
                .await
                .map(|_| Reply::Done),
            _ => Err(ChatError::Unauthorized),
        }
    });
    // In cluster mode a registration is a command with the hash made beforehand.
    let proposed = match cmd {
        Register { user, .. } => Some((
            None,
            Command::Register {
                username: user.clone(),
                hash: "sim".into(),
                invite: None,
            },
        )),
        _ => None,
    };
    (out, proposed)
}

/// Runs a cluster proposal on a replica, at `ts` with `seed`.
pub fn execute_proposal(core: &Core, id: u64, ts: u64, seed: u64, (user, command): Proposed) {
    let p = Proposal {
        origin: "sim".into(),
        id,
        ts,
        seed,
        user,
        conn: None,
        command,
    };
    core.execute(&p);
}

/// Whether a change that succeeded leaves the store's acknowledgement unobservable to the
/// caller: read markers are written in batches, later.
pub fn answers_before_ack(cmd: &Cmd) -> bool {
    matches!(cmd, Cmd::MarkRead { .. } | Cmd::FlushRead)
}
