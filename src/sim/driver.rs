//! The one place the simulation drives the core: a [`Cmd`] becomes a call of the core's
//! public methods (as the REST handlers and the WebSocket session make them), and, for the
//! cluster replicas, a [`Proposal`] that [`Core::execute`] runs.
//!
//! The core's methods are async only because they wait for the store's acknowledgement (and
//! for password hashing on its pool). [`run`] polls such a future to completion on this
//! thread: whenever it is pending, the simulated journal delivers its acknowledgements
//! (outside every lock of the core, as the journal's delivery thread does), and if none were
//! waiting the future waits for the hashing pool.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::chat::moderation::Seconds;
use crate::chat::replica::{Op, Proposal};
use crate::chat::{token_hash, Auth, ChatError, Core, NewRoomSpec};
use crate::protocol::{EntryKind, RoomPatch};
use crate::store::sim::SimLog;

/// The address every simulated client comes from.
const FROM: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A simulated user's password (long enough for `--min-password-length`).
pub const PASSWORD: &str = "correct horse battery staple";

/// Something one simulated client asks for. Users are named, rooms by id.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// `invite` is the admin setup code for the admin's own registration.
    Register { user: String, invite: Option<String> },
    Login { user: String },
    Logout { token: String },
    CreateRoom { token: String, name: String, capacity: i64, private: bool },
    Join { token: String, room: String },
    Leave { token: String, room: String },
    Invite { token: String, room: String, target: String },
    Remove { token: String, room: String, target: String, ban: bool },
    Lift { token: String, room: String, target: String, unban: bool },
    Mute { token: String, room: String, target: String, seconds: u64 },
    Role { token: String, room: String, target: String, role: Option<&'static str> },
    Topic { token: String, room: String, topic: String },
    OpenDm { token: String, target: String },
    Block { token: String, target: String, blocked: bool },
    Post { token: String, room: String, text: String },
    Edit { token: String, room: String, seq: u64, text: String },
    Delete { token: String, room: String, seq: u64 },
    MarkRead { token: String, room: String, seq: u64 },
    /// Writes the read markers that moved (the server does it every second).
    FlushRead,
    DeleteRoom { token: String, room: String, admin: bool },
    Disable { token: String, target: String, disabled: bool },
    CreateInvite { token: String },
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

/// Runs `cmd` on `core`; the command's acknowledgements are delivered before this returns.
/// Also returns the proposal the same change is in cluster mode, if it is one (`op` only:
/// the caller numbers and times it), made after authentication succeeded.
pub fn execute(core: &Core, log: &SimLog, cmd: &Cmd) -> (Result<Reply, ChatError>, Option<Op>) {
    let mut op = None;
    let out = run(log, async {
        use Cmd::*;
        match cmd {
            Register { user, invite } => {
                op = Some(Op::Register {
                    username: user.clone(),
                    hash: "sim".into(),
                    invite: None,
                });
                core.register(user, PASSWORD, invite.as_deref(), FROM)
                    .await
                    .map(Reply::Token)
            }
            Login { user } => core
                .login(user, PASSWORD, FROM)
                .await
                .map(|(token, _)| Reply::Token(token)),
            Logout { token } => {
                let a = auth(core, token)?;
                core.logout(&a).await.map(|_| Reply::Done)
            }
            CreateRoom { token, name, capacity, private } => {
                let a = auth(core, token)?;
                let visibility = if *private { "private" } else { "public" };
                op = Some(Op::CreateRoom {
                    user: a.user.name.clone(),
                    name: name.clone(),
                    capacity: Some(*capacity),
                    visibility: Some(visibility.into()),
                    topic: None,
                });
                let spec = NewRoomSpec {
                    name,
                    capacity: Some(*capacity),
                    visibility: Some(visibility),
                    topic: None,
                };
                core.create_room(&a.user, &spec).await.map(|v| Reply::Room(v.id))
            }
            Join { token, room } => {
                let a = auth(core, token)?;
                op = Some(Op::Join { user: a.user.name.clone(), room: room.clone() });
                core.join_room(&a.user, room).await.map(|_| Reply::Done)
            }
            Leave { token, room } => {
                let a = auth(core, token)?;
                op = Some(Op::Leave { user: a.user.name.clone(), room: room.clone() });
                core.leave_room(&a.user, room).await.map(|_| Reply::Done)
            }
            Invite { token, room, target } => {
                let a = auth(core, token)?;
                op = Some(Op::Invite {
                    user: a.user.name.clone(),
                    room: room.clone(),
                    target: target.clone(),
                });
                core.invite(&a.user, room, target).await.map(|_| Reply::Done)
            }
            Remove { token, room, target, ban } => {
                let a = auth(core, token)?;
                op = Some(Op::Remove {
                    user: a.user.name.clone(),
                    room: room.clone(),
                    target: target.clone(),
                    reason: None,
                    ban: *ban,
                });
                core.remove_member(&a.user, room, target, None, *ban)
                    .await
                    .map(|_| Reply::Done)
            }
            Lift { token, room, target, unban } => {
                let a = auth(core, token)?;
                op = Some(Op::Lift {
                    user: a.user.name.clone(),
                    room: room.clone(),
                    target: target.clone(),
                    unban: *unban,
                });
                let kind = if *unban { EntryKind::Unban } else { EntryKind::Unmute };
                core.lift(&a.user, room, target, kind).await.map(|_| Reply::Done)
            }
            Mute { token, room, target, seconds } => {
                let a = auth(core, token)?;
                op = Some(Op::Mute {
                    user: a.user.name.clone(),
                    room: room.clone(),
                    target: target.clone(),
                    seconds: *seconds,
                });
                let s = seconds.to_string();
                core.mute(&a.user, room, target, Seconds::Word(&s))
                    .await
                    .map(|_| Reply::Done)
            }
            Role { token, room, target, role } => {
                let a = auth(core, token)?;
                op = Some(Op::Role {
                    user: a.user.name.clone(),
                    room: room.clone(),
                    target: target.clone(),
                    role: role.map(str::to_string),
                });
                core.set_role(&a.user, room, target, *role).await.map(|_| Reply::Done)
            }
            Topic { token, room, topic } => {
                let a = auth(core, token)?;
                let topic = Some(serde_json::Value::String(topic.clone()));
                op = Some(Op::Update {
                    user: a.user.name.clone(),
                    room: room.clone(),
                    name: None,
                    topic: topic.clone(),
                    visibility: None,
                });
                let patch = RoomPatch { name: None, topic, visibility: None };
                core.update_room(&a.user, room, &patch).await.map(|_| Reply::Done)
            }
            OpenDm { token, target } => {
                let a = auth(core, token)?;
                op = Some(Op::OpenDm { user: a.user.name.clone(), target: target.clone() });
                core.open_dm(&a.user, target).await.map(|v| Reply::Room(v.id))
            }
            Block { token, target, blocked } => {
                let a = auth(core, token)?;
                op = Some(Op::Block {
                    user: a.user.name.clone(),
                    target: target.clone(),
                    blocked: *blocked,
                });
                core.set_block(&a.user, target, *blocked).await.map(|_| Reply::Done)
            }
            Post { token, room, text } => {
                let a = auth(core, token)?;
                op = Some(Op::Post {
                    user: a.user.name.clone(),
                    room: room.clone(),
                    text: text.clone(),
                    action: false,
                    conn: None,
                    nonce: None,
                });
                let text = core.clean_message(text)?;
                core.post(&a.user, room, text, false, None).map(|_| Reply::Done)
            }
            Edit { token, room, seq, text } => {
                let a = auth(core, token)?;
                op = Some(Op::Edit {
                    user: a.user.name.clone(),
                    room: room.clone(),
                    seq: *seq,
                    text: Some(text.clone()),
                    conn: None,
                    nonce: None,
                });
                core.edit(&a.user, room, *seq, text, None).await.map(|_| Reply::Done)
            }
            Delete { token, room, seq } => {
                let a = auth(core, token)?;
                op = Some(Op::Edit {
                    user: a.user.name.clone(),
                    room: room.clone(),
                    seq: *seq,
                    text: None,
                    conn: None,
                    nonce: None,
                });
                core.delete_message(&a.user, room, *seq, None)
                    .await
                    .map(|_| Reply::Done)
            }
            MarkRead { token, room, seq } => {
                let a = auth(core, token)?;
                core.mark_read(&a.user, room, *seq, None).map(|_| Reply::Done)
            }
            FlushRead => {
                core.flush_read_markers();
                Ok(Reply::Done)
            }
            DeleteRoom { token, room, admin } => {
                let a = auth(core, token)?;
                op = Some(Op::DeleteRoom {
                    user: a.user.name.clone(),
                    room: room.clone(),
                    admin: *admin,
                });
                core.delete_room(&a.user, room, *admin).await.map(|_| Reply::Done)
            }
            Disable { token, target, disabled } => {
                let a = auth(core, token)?;
                core.set_disabled(&a.user, target, *disabled)
                    .await
                    .map(|_| Reply::Done)
            }
            CreateInvite { token } => {
                let a = auth(core, token)?;
                core.create_invite(&a.user, Some(2), Some(3600))
                    .await
                    .map(|_| Reply::Done)
            }
        }
    });
    (out, op)
}

/// Runs a cluster proposal on a replica, at `ts` with `seed`.
pub fn execute_proposal(core: &Arc<Core>, id: u64, ts: u64, seed: u64, op: Op) {
    let p = Proposal {
        origin: "sim".into(),
        id,
        ts,
        seed,
        op,
    };
    core.execute(&p);
}

/// Whether a change that succeeded leaves the store's acknowledgement unobservable to the
/// caller: a message's answer comes before it (its copy or an error frame follows).
pub fn answers_before_ack(cmd: &Cmd) -> bool {
    matches!(cmd, Cmd::Post { .. } | Cmd::MarkRead { .. } | Cmd::FlushRead)
}
