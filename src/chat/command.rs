//! Commands: every change a client can ask of the core, as data.
//!
//! A door (a REST route, a slash command, a WebSocket frame) parses its input into a
//! [`Command`] and hands it to [`Core::submit`]; nothing about rooms or users is decided in
//! a door. The core decides a command synchronously in [`Core::run`], from the state, the
//! caller and a [`Ctx`] that carries the clock and the randomness: the same state, command
//! and context give the same records and the same reply, so a simulation can replay a run
//! and every cluster replica decides a proposal alike.
//!
//! On a single node `submit` decides the command with the wall clock and waits for the store
//! to keep its records. In cluster mode it proposes the command to the shared log with the
//! proposer's time and a seed (`replica`); every node runs the same `run` on it in log order,
//! with a context rebuilt from the proposal.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::membership::NewRoomSpec;
use super::{ChatError, Commit, Conn, Core, User};
use crate::protocol::{Entry, EntryKind, RoomPatch, RoomView};

/// A change a client asks for. Users are named (the caller is not part of it); rooms by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// An account whose password is already hashed (hashing happens before, off the
    /// workers). `invite` is the invite code the registration spends a use of, if it needs
    /// one.
    Register {
        username: String,
        hash: String,
        invite: Option<String>,
    },
    CreateRoom {
        name: String,
        capacity: Option<i64>,
        visibility: Option<String>,
        topic: Option<String>,
    },
    Join {
        room: String,
    },
    Leave {
        room: String,
    },
    /// `admin`: an administrator deletes it, whatever their role in the room.
    DeleteRoom {
        room: String,
        admin: bool,
    },
    /// A message, or an action (`/me`). `nonce` is the `send` frame's: the sending
    /// connection's copy carries it.
    Post {
        room: String,
        text: String,
        action: bool,
        nonce: Option<Value>,
    },
    /// An edit (`Some(text)`) or deletion (`None`) of the message `seq`.
    Edit {
        room: String,
        seq: u64,
        text: Option<String>,
        nonce: Option<Value>,
    },
    Invite {
        room: String,
        target: String,
    },
    /// A kick, or (`ban`) a ban.
    Remove {
        room: String,
        target: String,
        reason: Option<String>,
        ban: bool,
    },
    /// Lifts a ban (`unban`) or a mute.
    Lift {
        room: String,
        target: String,
        unban: bool,
    },
    /// `seconds`: the mute's length, or `None` when the one given was not a whole number
    /// of seconds in range (answered once the room's access is checked).
    Mute {
        room: String,
        target: String,
        seconds: Option<u64>,
    },
    Role {
        room: String,
        target: String,
        role: Option<String>,
    },
    /// Fields as the client sent them: their types are checked after the room's access.
    Update {
        room: String,
        name: Option<Value>,
        topic: Option<Value>,
        visibility: Option<Value>,
    },
    OpenDm {
        target: String,
    },
    Block {
        target: String,
        blocked: bool,
    },
    /// Moves the caller's read marker in a room up to `seq`.
    MarkRead {
        room: String,
        seq: u64,
    },
    /// A session for the caller, whose password was verified; the token, made from the
    /// operating system's randomness, is known only by its hash (hex).
    StartSession {
        token_hash: String,
    },
    /// Ends the session of this token hash (hex): a logout, or a session ended by the server.
    EndSession {
        token_hash: String,
    },
    /// Replaces the caller's password hash. `old`: the hash the new one was checked
    /// against, for a change of password (refused if the hash changed meanwhile); `None`
    /// for a re-hash at the current iteration count, kept only while the stored hash uses
    /// another count.
    SetPassword {
        hash: String,
        old: Option<String>,
    },
    /// An administrator disables or enables an account.
    SetDisabled {
        target: String,
        disabled: bool,
    },
    /// An administrator makes an invite code (known by its hash, hex) good for `uses`
    /// registrations until `expires`.
    CreateInvite {
        hash: String,
        uses: u32,
        expires: u64,
    },
    /// Cluster mode: a snapshot of the state at this point of the log; nothing changes.
    Snapshot,
}

impl Command {
    /// Whether the cluster decides this command in log order (its outcome depends on state
    /// other nodes change: names, seqs, memberships, roles). The others are decided where
    /// they are asked, and their records go to the log as a journal would get them:
    /// sessions, passwords, read markers, invite codes and disabled flags, whose records
    /// state facts that applying twice or late changes nothing about.
    pub fn in_log_order(&self) -> bool {
        !matches!(
            self,
            Command::MarkRead { .. }
                | Command::StartSession { .. }
                | Command::EndSession { .. }
                | Command::SetPassword { .. }
                | Command::SetDisabled { .. }
                | Command::CreateInvite { .. }
        )
    }
}

/// What a command answers once its records are kept.
#[derive(Debug)]
pub enum Reply {
    Done,
    /// The account's name as registered.
    Name(String),
    /// A room as the caller sees it.
    Room(RoomView),
    /// The entry an edit appended.
    Entry(Box<Entry>),
}

impl Reply {
    pub fn room(self) -> Result<RoomView, ChatError> {
        match self {
            Reply::Room(r) => Ok(r),
            _ => Err(ChatError::Unavailable),
        }
    }

    pub fn entry(self) -> Result<Entry, ChatError> {
        match self {
            Reply::Entry(e) => Ok(*e),
            _ => Err(ChatError::Unavailable),
        }
    }

    pub fn name(self) -> Result<String, ChatError> {
        match self {
            Reply::Name(n) => Ok(n),
            _ => Err(ChatError::Unavailable),
        }
    }
}

/// What deciding a command may read besides the state: the time, the source of random ids,
/// and whether the command comes from the cluster's log (whose records are kept already).
pub struct Ctx {
    pub now: u64,
    seed: u64,
    rng: Option<StdRng>,
    from_log: bool,
}

impl Ctx {
    /// A command decided here and now (a single node's request).
    pub fn live() -> Ctx {
        Ctx::at(super::now_ms(), rand::rng().random())
    }

    /// A command decided at `now`, with random ids from `seed`, whose records go to the
    /// store (a simulation's step).
    pub fn at(now: u64, seed: u64) -> Ctx {
        Ctx {
            now,
            seed,
            rng: None,
            from_log: false,
        }
    }

    /// A command taken from the cluster's log, proposed at `now` with `seed`.
    pub fn from_log(now: u64, seed: u64) -> Ctx {
        Ctx {
            from_log: true,
            ..Ctx::at(now, seed)
        }
    }

    /// True for a command from the cluster's log: its changes take no place in the store,
    /// and the proposer already took its budgets.
    pub fn is_from_log(&self) -> bool {
        self.from_log
    }

    /// A random identifier of `len` characters from a URL-safe alphabet, from the seed.
    pub fn random_id(&mut self, len: usize) -> String {
        let seed = self.seed;
        let rng = self.rng.get_or_insert_with(|| StdRng::seed_from_u64(seed));
        super::random_id_from(rng, len)
    }
}

/// Who submits a command: their account (none for a registration) and the connection it
/// came over, if a WebSocket frame carried it (that connection gets the acknowledging copy).
#[derive(Clone, Copy, Default)]
pub struct Caller<'a> {
    pub user: Option<&'a Arc<User>>,
    pub conn: Option<&'a Arc<Conn>>,
}

impl<'a> Caller<'a> {
    pub fn user(user: &'a Arc<User>) -> Caller<'a> {
        Caller {
            user: Some(user),
            conn: None,
        }
    }

    pub fn conn(conn: &'a Arc<Conn>) -> Caller<'a> {
        Caller {
            user: Some(&conn.user),
            conn: Some(conn),
        }
    }

    fn who(&self) -> Result<&'a Arc<User>, ChatError> {
        self.user.ok_or(ChatError::Unauthorized)
    }
}

impl Core {
    /// Decides `cmd` for `caller` now and waits until the store keeps what it changed; in
    /// cluster mode, proposes it and waits for what this node's replica decided. A message
    /// does not wait: its copy to the sending connection (or an error with the nonce) is
    /// its acknowledgement.
    pub async fn submit(&self, caller: Caller<'_>, cmd: Command) -> Result<Reply, ChatError> {
        if let Some(r) = self.replica().filter(|_| cmd.in_log_order()) {
            return self.propose(r, caller, cmd).await;
        }
        let (reply, commit) = self.run(&mut Ctx::live(), caller, &cmd)?;
        if !matches!(cmd, Command::Post { .. } | Command::MarkRead { .. }) {
            commit.wait().await?;
        }
        Ok(reply)
    }

    /// Decides `cmd`: checks it against the state, applies what it changes and hands its
    /// records to the store (none for a command from the log). The [`Commit`] completes once
    /// the store keeps them.
    pub fn run(
        &self,
        cx: &mut Ctx,
        caller: Caller<'_>,
        cmd: &Command,
    ) -> Result<(Reply, Commit), ChatError> {
        let done = |c: Commit| (Reply::Done, c);
        let room = |(v, c): (RoomView, Commit)| (Reply::Room(v), c);
        Ok(match cmd {
            Command::Register {
                username,
                hash,
                invite,
            } => {
                let hold = match invite {
                    Some(code) => Some(self.invites.take(cx.now, Some(code))?),
                    None => None,
                };
                let commit = self.store_account(cx, username, hash.clone(), hold)?;
                (Reply::Name(username.clone()), commit)
            }
            Command::CreateRoom {
                name,
                capacity,
                visibility,
                topic,
            } => {
                let spec = NewRoomSpec {
                    name,
                    capacity: *capacity,
                    visibility: visibility.as_deref(),
                    topic: topic.as_deref(),
                };
                room(self.create_room(cx, caller.who()?, &spec)?)
            }
            Command::Join { room: id } => room(self.join_room(cx, caller.who()?, id)?),
            Command::Leave { room } => done(self.leave_room(cx, caller.who()?, room)?),
            Command::DeleteRoom { room, admin } => {
                done(self.delete_room(cx, caller.who()?, room, *admin)?)
            }
            Command::Post {
                room,
                text,
                action,
                nonce,
            } => {
                let posted = self.post(cx, caller, room, text, *action, nonce.as_ref());
                if let (Err(e), Some(conn)) = (&posted, caller.conn) {
                    if cx.is_from_log() {
                        // On the proposer, the sender hears of a refusal the log decided.
                        super::deliver_to(&self.metrics, conn, &error_frame(e, nonce.as_ref()));
                    }
                }
                done(posted?)
            }
            Command::Edit {
                room,
                seq,
                text,
                nonce,
            } => {
                let user = caller.who()?;
                let text = text.as_deref().map(|t| self.clean_message(t)).transpose()?;
                let ack = caller.conn.zip(nonce.clone());
                let (entry, commit) =
                    self.change_message(cx, user, room, *seq, text.as_deref(), ack)?;
                (Reply::Entry(Box::new(entry)), commit)
            }
            Command::Invite { room, target } => {
                done(self.invite(cx, caller.who()?, room, target)?)
            }
            Command::Remove {
                room,
                target,
                reason,
                ban,
            } => done(self.remove_member(
                cx,
                caller.who()?,
                room,
                target,
                reason.as_deref(),
                *ban,
            )?),
            Command::Lift {
                room,
                target,
                unban,
            } => {
                let kind = if *unban {
                    EntryKind::Unban
                } else {
                    EntryKind::Unmute
                };
                done(self.lift(cx, caller.who()?, room, target, kind)?)
            }
            Command::Mute {
                room,
                target,
                seconds,
            } => done(self.mute(cx, caller.who()?, room, target, *seconds)?),
            Command::Role { room, target, role } => {
                done(self.set_role(cx, caller.who()?, room, target, role.as_deref())?)
            }
            Command::Update {
                room: id,
                name,
                topic,
                visibility,
            } => {
                let patch = RoomPatch {
                    name: name.clone(),
                    topic: topic.clone(),
                    visibility: visibility.clone(),
                };
                room(self.update_room(cx, caller.who()?, id, &patch)?)
            }
            Command::OpenDm { target } => room(self.open_dm(cx, caller.who()?, target)?),
            Command::Block { target, blocked } => {
                done(self.set_block(cx, caller.who()?, target, *blocked)?)
            }
            Command::MarkRead { room, seq } => {
                let user = caller.who()?;
                done(self.mark_read(user, room, *seq, caller.conn.map(|c| &**c))?)
            }
            Command::StartSession { token_hash } => {
                done(self.start_session(cx, caller.who()?, token_hash)?)
            }
            Command::EndSession { token_hash } => {
                let hash = super::unhex(token_hash).ok_or(ChatError::Unauthorized)?;
                let ended = self.end_session_with(hash, || self.place(cx));
                done(ended.ok_or(ChatError::Unauthorized)??)
            }
            Command::SetPassword { hash, old } => {
                done(self.keep_password(cx, caller.who()?, hash, old.as_deref())?)
            }
            Command::SetDisabled { target, disabled } => {
                done(self.flag_disabled(cx, caller.who()?, target, *disabled)?)
            }
            Command::CreateInvite {
                hash,
                uses,
                expires,
            } => done(self.add_invite(cx, caller.who()?, hash, *uses, *expires)?),
            Command::Snapshot => done(Commit::done()),
        })
    }
}

/// An `error` frame carrying the nonce of the frame it answers.
pub(super) fn error_frame(e: &ChatError, nonce: Option<&Value>) -> tungstenite::Bytes {
    super::encode(&crate::protocol::ServerFrame::Error {
        code: e.code(),
        message: e.to_string(),
        nonce,
        retry_after_ms: e.retry_after_ms(),
    })
}
