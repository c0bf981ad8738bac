//! What is not in the log: each node's online users and who is typing, as plain NATS
//! subjects (`STREAM.presence`, `STREAM.typing`), and the task that reports and takes them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::RETRY;
use crate::chat::Core;

/// How often a node compares its users' presence with what it last reported.
const PRESENCE_EVERY: Duration = Duration::from_millis(250);
/// A node reports its online users at least this often: its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node not heard from for this long counts as gone, and its users' connections with it.
const SILENT_MS: u64 = 6_000;

/// A node's report of the users online there (`STREAM.presence`).
#[derive(Serialize, Deserialize)]
struct PresenceReport {
    origin: String,
    node: String,
    users: Vec<String>,
}

/// Someone typing on a node (`STREAM.typing`).
#[derive(Serialize, Deserialize)]
pub(super) struct TypingReport {
    pub(super) origin: String,
    pub(super) room: String,
    pub(super) user: String,
}

/// Reports this node's online users when they change and at every heartbeat; takes the
/// other nodes' reports and typing; forgets nodes gone silent.
pub(super) async fn ephemeral(
    core: Arc<Core>,
    client: async_nats::Client,
    base: String,
    node: String,
) {
    let subject = format!("{base}.presence");
    let (mut presence, mut typing) = loop {
        let p = client.subscribe(subject.clone()).await;
        let t = client.subscribe(format!("{base}.typing")).await;
        match (p, t) {
            (Ok(p), Ok(t)) => break (p, t),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cluster: cannot subscribe to presence: {e}");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let mut tick = tokio::time::interval(PRESENCE_EVERY);
    let mut reported: Option<(Vec<String>, std::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut users = core.local_presence();
                users.sort_unstable();
                let due = match &reported {
                    Some((last, at)) => *last != users || at.elapsed() >= HEARTBEAT,
                    None => true,
                };
                if due {
                    let report = PresenceReport {
                        origin: core.origin().to_string(),
                        node: node.clone(),
                        users: users.clone(),
                    };
                    let payload = serde_json::to_vec(&report).unwrap_or_default();
                    if client.publish(subject.clone(), payload.into()).await.is_ok() {
                        reported = Some((users, std::time::Instant::now()));
                    }
                }
                core.forget_silent_nodes(SILENT_MS);
            }
            Some(m) = presence.next() => {
                if let Ok(r) = serde_json::from_slice::<PresenceReport>(&m.payload) {
                    core.node_presence(&r.origin, r.users);
                }
            }
            Some(m) = typing.next() => {
                if let Ok(t) = serde_json::from_slice::<TypingReport>(&m.payload) {
                    core.node_typing(&t.origin, &t.room, &t.user);
                }
            }
        }
    }
}
