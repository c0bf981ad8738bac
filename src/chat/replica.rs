//! The core's side of cluster mode: changes proposed to the log the nodes share, and their
//! execution in log order.
//!
//! A change whose outcome depends on state (a name taken, a member banned, the next seq) is
//! not decided where the client asked. The node turns it into a [`Proposal`] (an [`Op`] with
//! the time, a seed for random ids and any password hash already made) and hands it to the
//! [`Replicator`]; every node, the proposer included, takes the proposals from the log in
//! order and runs each through [`Core::execute`], which calls the same method a single node
//! runs, with the clock and the random ids fixed by the proposal and the store acknowledging
//! at once (the log already holds the change). So every replica decides the same and hands
//! out the same seqs; the proposer answers its client with what its own replica decided.
//!
//! Changes that decide nothing (sessions, password changes, read markers, invite codes,
//! disabled accounts) go to the log as the records a journal would get (`store::Log`): the
//! proposer applies them at once, the others when they read them, and applying one twice
//! changes nothing.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{deliver_to, now_ms, ChatError, Conn, Core, NewRoomSpec, Record, User};
use crate::protocol::{EntryKind, RoomPatch, ServerFrame};

/// How long a client waits for its change to come back from the log before `unavailable`.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A change as the log carries it: who proposed it, and what it needs to be decided the same
/// everywhere.
#[derive(Debug, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposing process (a random id per start), which alone answers the client.
    pub origin: String,
    pub id: u64,
    /// The proposer's clock: the time every replica applies it at.
    pub ts: u64,
    /// Seeds the random ids (rooms) the change makes.
    pub seed: u64,
    pub op: Op,
}

/// A change that is decided when applied. Users are named; rooms by id.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Register {
        username: String,
        hash: String,
        /// The invite code, when the registration needs one.
        invite: Option<String>,
    },
    CreateRoom {
        user: String,
        name: String,
        capacity: Option<i64>,
        visibility: Option<String>,
        topic: Option<String>,
    },
    Join {
        user: String,
        room: String,
    },
    Leave {
        user: String,
        room: String,
    },
    DeleteRoom {
        user: String,
        room: String,
        admin: bool,
    },
    Post {
        user: String,
        room: String,
        text: String,
        action: bool,
        /// The sending connection on the proposer, and its nonce.
        conn: Option<u64>,
        nonce: Option<Value>,
    },
    Edit {
        user: String,
        room: String,
        seq: u64,
        /// None deletes the message.
        text: Option<String>,
        conn: Option<u64>,
        nonce: Option<Value>,
    },
    Invite {
        user: String,
        room: String,
        target: String,
    },
    Remove {
        user: String,
        room: String,
        target: String,
        reason: Option<String>,
        ban: bool,
    },
    Lift {
        user: String,
        room: String,
        target: String,
        unban: bool,
    },
    Mute {
        user: String,
        room: String,
        target: String,
        seconds: u64,
    },
    Role {
        user: String,
        room: String,
        target: String,
        role: Option<String>,
    },
    Update {
        user: String,
        room: String,
        name: Option<Value>,
        topic: Option<Value>,
        visibility: Option<Value>,
    },
    OpenDm {
        user: String,
        target: String,
    },
    Block {
        user: String,
        target: String,
        blocked: bool,
    },
    /// A snapshot of the state at this point of the log, written by its proposer (`cluster`);
    /// nothing changes.
    Snapshot,
}

/// What a proposal decided, for the proposer's waiting client: the method's `Ok` value.
pub(super) type Outcome = Result<Box<dyn Any + Send>, ChatError>;

/// Called if the log never takes a proposal (NATS unreachable, no acknowledgement).
pub type Failed = Box<dyn FnOnce() + Send>;

/// The transport to the shared log (the `cluster` module).
pub trait Replicator: Send + Sync {
    /// Queues a proposal (its JSON) for the log, after those queued before. Refused at once
    /// (`unavailable`) when the log cannot be reached; `failed` runs if it is refused later.
    fn propose(&self, proposal: Vec<u8>, failed: Failed) -> Result<(), ChatError>;
    /// Tells the other nodes, best effort, that `username` is typing in `room`.
    fn typing(&self, room: &str, username: &str);
    /// Completes once this node applied everything the log held when it was called (or
    /// after a short bound): what another node acknowledged is then here too. A `stranger`
    /// (an unknown token) gives up at once when enough others are waiting; a known caller
    /// waits for its turn.
    fn catch_up(&self, stranger: bool) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// The stream sequence of the last change this node applied.
    fn position(&self) -> u64;
}

/// Proposals of this process waiting for their outcome, by id.
#[derive(Default)]
pub(super) struct Pending {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Outcome>>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Outcome>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(&self, id: u64, outcome: Outcome) {
        if let Some(tx) = self.lock().remove(&id) {
            let _ = tx.send(outcome);
        }
    }
}

thread_local! {
    /// The time of the proposal being applied on this thread, if one is.
    static APPLYING: Cell<Option<u64>> = const { Cell::new(None) };
    /// Random ids while a proposal is applied, from its seed.
    static RNG: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// The applied proposal's time, while one is applied on this thread.
pub(super) fn clock() -> Option<u64> {
    APPLYING.with(Cell::get)
}

/// Whether this thread is applying a proposal: changes are then decided here, not proposed.
pub(super) fn applying() -> bool {
    clock().is_some()
}

/// An index below `n`: from the applied proposal's seed while one is applied, else random.
pub(super) fn random_below(n: usize) -> usize {
    RNG.with(|r| match r.borrow_mut().as_mut() {
        Some(rng) => rng.random_range(0..n),
        None => rand::rng().random_range(0..n),
    })
}

/// Runs `f` as the application of a proposal made at `ts` with `seed`.
fn as_applied<T>(ts: u64, seed: u64, f: impl FnOnce() -> T) -> T {
    APPLYING.with(|a| a.set(Some(ts)));
    RNG.with(|r| *r.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
    let out = f();
    APPLYING.with(|a| a.set(None));
    RNG.with(|r| *r.borrow_mut() = None);
    out
}

/// The result of a method run while applying: its store acknowledges at once, so it never
/// waits. Unconstrained: tokio's cooperative budget would otherwise make a ready
/// acknowledgement look pending once the reader applied a hundred changes in a row.
fn ready<T>(f: impl Future<Output = Result<T, ChatError>>) -> Result<T, ChatError> {
    let mut f = pin!(tokio::task::unconstrained(f));
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => {
            tracing::error!("an applied change waited; answering unavailable");
            Err(ChatError::Unavailable)
        }
    }
}

fn boxed<T: Send + 'static>(r: Result<T, ChatError>) -> Outcome {
    r.map(|v| Box::new(v) as Box<dyn Any + Send>)
}

impl Core {
    /// Turns on cluster mode: changes go to `replicator` from now on.
    pub fn set_replicator(&self, replicator: Arc<dyn Replicator>) {
        let _ = self.replica.set(replicator);
    }

    /// Cluster mode: the stream sequence of the last change applied here.
    pub fn cluster_position(&self) -> Option<u64> {
        self.replica.get().map(|r| r.position())
    }

    /// The replicator, unless this is a single node or the change is being applied.
    pub(super) fn replica(&self) -> Option<&Arc<dyn Replicator>> {
        match self.replica.get() {
            Some(r) if !applying() => Some(r),
            _ => None,
        }
    }

    fn proposal(&self, op: Op) -> (u64, Vec<u8>) {
        let id = self.next_proposal.fetch_add(1, Relaxed);
        let p = Proposal {
            origin: self.origin.clone(),
            id,
            ts: now_ms(),
            seed: rand::rng().random(),
            op,
        };
        (id, serde_json::to_vec(&p).unwrap_or_default())
    }

    /// Proposes `op` and waits for what this node's replica decided, the value the method
    /// would have returned on a single node.
    pub(super) async fn replicate<T: Send + 'static>(
        &self,
        r: &Arc<dyn Replicator>,
        op: Op,
    ) -> Result<T, ChatError> {
        let (id, bytes) = self.proposal(op);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        let pending = self.pending.clone();
        let failed = Box::new(move || pending.settle(id, Err(ChatError::Unavailable)));
        if let Err(e) = r.propose(bytes, failed) {
            self.pending.lock().remove(&id);
            return Err(e);
        }
        let outcome = match tokio::time::timeout(PROPOSAL_TIMEOUT, rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => {
                self.pending.lock().remove(&id);
                Err(ChatError::Unavailable)
            }
        };
        outcome?
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| ChatError::Unavailable)
    }

    /// [`Core::authenticate`], except that in cluster mode this node first catches up with
    /// the log: an unknown token may come from a login on another node, and a known one may
    /// have been logged out (or its user disabled) on another node that already answered.
    pub async fn authenticate_current(&self, token: &str) -> Result<super::Auth, ChatError> {
        let hash = super::token_hash(token);
        if let Some(r) = self.replica() {
            let known = self.sessions().contains_key(&hash);
            r.catch_up(!known).await;
        }
        self.authenticate(hash)
    }

    /// Proposes a snapshot at the point of the log this lands at; nobody waits for it.
    pub fn propose_snapshot(&self) {
        if let Some(r) = self.replica() {
            let (_, bytes) = self.proposal(Op::Snapshot);
            let _ = r.propose(bytes, Box::new(|| {}));
        }
    }

    /// Proposes a message: its outcome reaches the sending connection as frames (the copy
    /// with the nonce, or an error with it), as on a single node.
    pub(super) fn propose_post(
        &self,
        r: &Arc<dyn Replicator>,
        op: Op,
        sender: Option<(&Arc<Conn>, Option<Value>)>,
    ) -> Result<(), ChatError> {
        let (_, bytes) = self.proposal(op);
        let (metrics, sender) = (
            self.metrics.clone(),
            sender.map(|(c, n)| (c.clone(), n.clone())),
        );
        let failed = Box::new(move || {
            if let Some((conn, nonce)) = sender {
                let f = error_frame(&ChatError::Unavailable, nonce.as_ref());
                deliver_to(&metrics, &conn, &f);
            }
        });
        r.propose(bytes, failed)
    }

    /// Applies a proposal from the log, in log order; the proposer's waiting client gets
    /// the outcome.
    pub fn execute(&self, p: &Proposal) {
        let mine = p.origin == self.origin;
        let outcome = as_applied(p.ts, p.seed, || self.run_op(&p.op, mine));
        if mine {
            self.pending.settle(p.id, outcome);
        }
    }

    /// Applies a record from the log, with what it does on this node besides memory: an
    /// ended session's sockets close here too.
    pub fn apply_shared(&self, rec: &Record) {
        if let Record::SessionEnded { token_hash } = rec {
            if let Some(hash) = super::unhex(token_hash) {
                // Applied, not proposed: the end is in the log already.
                as_applied(now_ms(), 0, || self.end_session(hash));
                return;
            }
        }
        if let Record::ReadMarkers { room, markers } = rec {
            self.read_markers_shared(room, markers);
            return;
        }
        self.apply(rec);
    }

    /// Read markers moved on another node: the users' connections here hear of it too, so
    /// unread counts clear on every device.
    fn read_markers_shared(&self, room_id: &str, markers: &[(String, u64)]) {
        for (user, seq) in self.move_read_markers(room_id, markers) {
            self.send_read(&user, room_id, seq, None);
        }
    }

    fn named(&self, name: &str) -> Result<Arc<User>, ChatError> {
        self.user(&name.to_ascii_lowercase())
            .ok_or(ChatError::Unauthorized)
    }

    /// The connection `id` of this process, for a proposal it made.
    fn local_conn(&self, id: Option<u64>, mine: bool) -> Option<Arc<Conn>> {
        let id = id.filter(|_| mine)?;
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.get(&id).cloned()
    }

    fn run_op(&self, op: &Op, mine: bool) -> Outcome {
        match op {
            Op::Register {
                username,
                hash,
                invite,
            } => {
                let hold = match invite {
                    Some(code) => Some(self.take_invite(Some(code))?),
                    None => None,
                };
                boxed(ready(self.store_account(username, hash.clone(), hold)))
            }
            Op::CreateRoom {
                user,
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
                boxed(ready(self.create_room(&self.named(user)?, &spec)))
            }
            Op::Join { user, room } => boxed(ready(self.join_room(&self.named(user)?, room))),
            Op::Leave { user, room } => boxed(ready(self.leave_room(&self.named(user)?, room))),
            Op::DeleteRoom { user, room, admin } => {
                boxed(ready(self.delete_room(&self.named(user)?, room, *admin)))
            }
            Op::Post {
                user,
                room,
                text,
                action,
                conn,
                nonce,
            } => {
                let conn = self.local_conn(*conn, mine);
                let posted = self.named(user).and_then(|u| {
                    let text = text.clone();
                    self.post_here(&u, room, text, *action, conn.as_ref(), nonce.clone())
                });
                if let (Err(e), Some(conn)) = (&posted, &conn) {
                    deliver_to(&self.metrics, conn, &error_frame(e, nonce.as_ref()));
                }
                boxed(posted)
            }
            Op::Edit {
                user,
                room,
                seq,
                text,
                conn,
                nonce,
            } => {
                let user = self.named(user)?;
                let conn = self.local_conn(*conn, mine);
                let ack = conn.as_ref().zip(nonce.clone());
                match text {
                    Some(text) => boxed(ready(self.edit(&user, room, *seq, text, ack))),
                    None => boxed(ready(self.delete_message(&user, room, *seq, ack))),
                }
            }
            Op::Invite { user, room, target } => {
                boxed(ready(self.invite(&self.named(user)?, room, target)))
            }
            Op::Remove {
                user,
                room,
                target,
                reason,
                ban,
            } => boxed(ready(self.remove_member(
                &self.named(user)?,
                room,
                target,
                reason.as_deref(),
                *ban,
            ))),
            Op::Lift {
                user,
                room,
                target,
                unban,
            } => {
                let kind = if *unban {
                    EntryKind::Unban
                } else {
                    EntryKind::Unmute
                };
                boxed(ready(self.lift(&self.named(user)?, room, target, kind)))
            }
            Op::Mute {
                user,
                room,
                target,
                seconds,
            } => {
                let user = self.named(user)?;
                boxed(ready(self.mute_seconds(&user, room, target, *seconds)))
            }
            Op::Role {
                user,
                room,
                target,
                role,
            } => boxed(ready(self.set_role(
                &self.named(user)?,
                room,
                target,
                role.as_deref(),
            ))),
            Op::Update {
                user,
                room,
                name,
                topic,
                visibility,
            } => {
                let patch = RoomPatch {
                    name: name.clone(),
                    topic: topic.clone(),
                    visibility: visibility.clone(),
                };
                boxed(ready(self.update_room(&self.named(user)?, room, &patch)))
            }
            Op::OpenDm { user, target } => boxed(ready(self.open_dm(&self.named(user)?, target))),
            Op::Block {
                user,
                target,
                blocked,
            } => boxed(ready(self.set_block(&self.named(user)?, target, *blocked))),
            Op::Snapshot => boxed(Ok(())),
        }
    }
}

/// An `error` frame carrying the nonce of the `send` it answers.
fn error_frame(e: &ChatError, nonce: Option<&Value>) -> tungstenite::Bytes {
    super::encode(&ServerFrame::Error {
        code: e.code(),
        message: e.to_string(),
        nonce,
        retry_after_ms: e.retry_after_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Commit;

    /// A reader applies changes one after another without yielding: an acknowledgement that is
    /// ready must still be ready after tokio's cooperative budget of the task ran out.
    #[tokio::test]
    async fn a_ready_acknowledgement_stays_ready_however_many_are_applied_in_a_row() {
        for i in 0..1_000 {
            let r = ready(async { Commit::done().wait().await });
            assert!(r.is_ok(), "change {i} looked pending");
        }
    }
}
