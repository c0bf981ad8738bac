//! The core's side of cluster mode: changes proposed to the log the nodes share, and their
//! execution in log order.
//!
//! A change whose outcome depends on state (a name taken, a member banned, the next seq) is
//! not decided where the client asked. The node wraps its [`Command`] in a [`Proposal`]
//! (with the caller, the time and a seed for random ids) and hands it to the [`Replicator`];
//! every node, the proposer included, takes the proposals from the log in order and decides
//! each with [`Core::run`], the function a single node runs, in a context rebuilt from the
//! proposal (`Ctx::from_log`: its clock, its seed, and no place taken in the store, since
//! the log already holds the change). So every replica decides the same and hands out the
//! same seqs; the proposer answers its client with the [`Reply`] its own replica decided.
//!
//! Changes that decide nothing (sessions, password changes, read markers, invite codes,
//! disabled accounts) go to the log as the records a journal would get (`store::Log`): the
//! proposer applies them at once, the others when they read them, and applying one twice
//! changes nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::command::{error_frame, Caller, Command, Ctx, Reply};
use super::{deliver_to, now_ms, ChatError, Conn, Core, Record, User};

/// How long a client waits for its change to come back from the log before `unavailable`.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A command as the log carries it: who proposed it, who asked, and what it needs to be
/// decided the same everywhere.
#[derive(Debug, Serialize, Deserialize)]
#[serde(try_from = "WireProposal")]
pub struct Proposal {
    /// The proposing process (a random id per start), which alone answers the client.
    pub origin: String,
    pub id: u64,
    /// The proposer's clock: the time every replica decides it at.
    pub ts: u64,
    /// Seeds the random ids (rooms) the change makes.
    pub seed: u64,
    /// The caller's name (none for a registration).
    #[serde(default)]
    pub user: Option<String>,
    /// The caller's connection on the proposer, which gets the acknowledging copy.
    #[serde(default)]
    pub conn: Option<u64>,
    pub command: Command,
}

/// A proposal as read from the stream: this version's, or one an older version wrote
/// before commands were their own type (`op`: the command with its caller's `user` and
/// `conn` inside), which a stream may still hold after its last snapshot point.
#[derive(Deserialize)]
struct WireProposal {
    origin: String,
    id: u64,
    ts: u64,
    seed: u64,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    conn: Option<u64>,
    #[serde(default)]
    command: Option<Command>,
    #[serde(default)]
    op: Option<serde_json::Value>,
}

impl TryFrom<WireProposal> for Proposal {
    type Error = String;

    fn try_from(w: WireProposal) -> Result<Proposal, String> {
        let (command, user, conn) = match (w.command, w.op) {
            (Some(command), _) => (command, w.user, w.conn),
            (None, Some(op)) => {
                // The old variants carry the same tag and fields as the commands, plus the
                // caller: the command's decoding skips what it does not know.
                let user = op.get("user").and_then(|u| u.as_str()).map(str::to_string);
                let conn = op.get("conn").and_then(serde_json::Value::as_u64);
                let command = serde_json::from_value(op).map_err(|e| e.to_string())?;
                (command, user, conn)
            }
            (None, None) => return Err("a proposal without a command".into()),
        };
        Ok(Proposal {
            origin: w.origin,
            id: w.id,
            ts: w.ts,
            seed: w.seed,
            user,
            conn,
            command,
        })
    }
}

/// What a proposal decided, for the proposer's waiting client.
type Outcome = Result<Reply, ChatError>;

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

impl Core {
    /// Turns on cluster mode: changes go to `replicator` from now on.
    pub fn set_replicator(&self, replicator: Arc<dyn Replicator>) {
        let _ = self.replica.set(replicator);
    }

    /// Cluster mode: the stream sequence of the last change applied here.
    pub fn cluster_position(&self) -> Option<u64> {
        self.replica.get().map(|r| r.position())
    }

    /// The replicator, in cluster mode.
    pub(super) fn replica(&self) -> Option<&Arc<dyn Replicator>> {
        self.replica.get()
    }

    fn proposal(&self, caller: Caller<'_>, command: Command) -> (u64, Vec<u8>) {
        let id = self.next_proposal.fetch_add(1, Relaxed);
        let p = Proposal {
            origin: self.origin.clone(),
            id,
            ts: now_ms(),
            seed: rand::rng().random(),
            user: caller.user.map(|u| u.name.clone()),
            conn: caller.conn.map(|c| c.id),
            command,
        };
        (id, serde_json::to_vec(&p).unwrap_or_default())
    }

    /// Proposes `cmd` and waits for what this node's replica decided. A message waits for
    /// nothing: its outcome reaches the sending connection as frames (the copy with the
    /// nonce, or an error with it), as on a single node. Entries draw on the room's budget
    /// here, on the proposer: time is not the log's.
    pub(super) async fn propose(
        &self,
        r: &Arc<dyn Replicator>,
        caller: Caller<'_>,
        cmd: Command,
    ) -> Result<Reply, ChatError> {
        match (caller.user, &cmd) {
            (Some(user), Command::Post { room, text, .. }) => {
                self.propose_budget(room, &user.name, Some(text))?;
            }
            (Some(user), Command::Edit { room, text, .. }) => {
                self.propose_budget(room, &user.name, text.as_deref())?;
            }
            _ => {}
        }
        if let Command::Post { nonce, .. } = &cmd {
            let (metrics, sender) = (self.metrics.clone(), caller.conn.cloned());
            let nonce = nonce.clone();
            let (_, bytes) = self.proposal(caller, cmd);
            let failed = Box::new(move || {
                if let Some(conn) = sender {
                    let f = error_frame(&ChatError::Unavailable, nonce.as_ref());
                    deliver_to(&metrics, &conn, &f);
                }
            });
            r.propose(bytes, failed)?;
            return Ok(Reply::Done);
        }
        let (id, bytes) = self.proposal(caller, cmd);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        let pending = self.pending.clone();
        let failed = Box::new(move || pending.settle(id, Err(ChatError::Unavailable)));
        if let Err(e) = r.propose(bytes, failed) {
            self.pending.lock().remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(PROPOSAL_TIMEOUT, rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => {
                self.pending.lock().remove(&id);
                Err(ChatError::Unavailable)
            }
        }
    }

    /// [`Core::authenticate`], except that in cluster mode this node first catches up with
    /// the log: an unknown token may come from a login on another node, and a known one may
    /// have been logged out (or its user disabled) on another node that already answered.
    pub async fn authenticate_current(&self, token: &str) -> Result<super::Auth, ChatError> {
        let hash = super::token_hash(token);
        if let Some(r) = self.replica() {
            let known = self.sessions.contains(&hash);
            r.catch_up(!known).await;
        }
        self.authenticate(hash)
    }

    /// Proposes a snapshot at the point of the log this lands at; nobody waits for it.
    pub fn propose_snapshot(&self) {
        if let Some(r) = self.replica() {
            let (_, bytes) = self.proposal(Caller::default(), Command::Snapshot);
            let _ = r.propose(bytes, Box::new(|| {}));
        }
    }

    /// Decides a proposal from the log, in log order; the proposer's waiting client gets
    /// the outcome.
    pub fn execute(&self, p: &Proposal) {
        let mine = p.origin == self.origin;
        let user = match &p.user {
            Some(name) => match self.named(name) {
                Ok(u) => Some(u),
                Err(e) => {
                    if mine {
                        self.pending.settle(p.id, Err(e));
                    }
                    return;
                }
            },
            None => None,
        };
        let conn = self.local_conn(p.conn, mine);
        let caller = Caller {
            user: user.as_ref(),
            conn: conn.as_ref(),
        };
        let mut cx = Ctx::from_log(p.ts, p.seed);
        let outcome = self
            .run(&mut cx, caller, &p.command)
            .map(|(reply, _)| reply);
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
                self.end_session_with(hash, || Ok(crate::store::Slot::Memory));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proposal goes through the log as JSON: it comes back the same.
    #[test]
    fn a_proposal_survives_its_trip_through_json() {
        let p = Proposal {
            origin: "o".into(),
            id: 7,
            ts: 1_000,
            seed: 42,
            user: Some("Al".into()),
            conn: Some(3),
            command: Command::Mute {
                room: "r".into(),
                target: "Bo".into(),
                seconds: Some(60),
            },
        };
        let back: Proposal = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back.command, p.command);
        assert_eq!(
            (back.user, back.conn, back.ts, back.seed),
            (p.user, p.conn, 1_000, 42)
        );
    }

    /// A stream written by the previous version still holds proposals in its old shape
    /// after its last snapshot point: they are decided as the commands they were.
    #[test]
    fn a_proposal_of_the_previous_version_reads_as_its_command() {
        let old = |op: &str| {
            let json = format!(r#"{{"origin":"o","id":1,"ts":5,"seed":9,"op":{op}}}"#);
            serde_json::from_str::<Proposal>(&json).expect(op)
        };
        let p = old(r#"{"op":"mute","user":"Al","room":"r","target":"Bo","seconds":60}"#);
        assert_eq!(p.user.as_deref(), Some("Al"));
        let mute = Command::Mute {
            room: "r".into(),
            target: "Bo".into(),
            seconds: Some(60),
        };
        assert_eq!(p.command, mute);
        let post = r#"{"op":"post","user":"Al","room":"r","text":"hi","action":false,"conn":4,"nonce":"n"}"#;
        let p = old(post);
        assert_eq!((p.user.as_deref(), p.conn), (Some("Al"), Some(4)));
        assert!(matches!(p.command, Command::Post { ref text, .. } if text == "hi"));
        let p = old(r#"{"op":"register","username":"Cy","hash":"h","invite":null}"#);
        assert_eq!(p.user, None);
        assert!(matches!(p.command, Command::Register { .. }));
        assert!(matches!(
            old(r#"{"op":"snapshot"}"#).command,
            Command::Snapshot
        ));
        let none = r#"{"origin":"o","id":1,"ts":5,"seed":9}"#;
        assert!(serde_json::from_str::<Proposal>(none).is_err());
    }
}
