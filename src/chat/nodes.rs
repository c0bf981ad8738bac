//! What the other nodes of a cluster say outside the log: who is online there, and who is
//! typing. Both are ephemeral (plain NATS subjects, see `cluster`): a node reports the users
//! its own connections and requests keep online, and a node not heard from for a while counts
//! as gone, its users with it.

use std::collections::HashSet;
use std::sync::Arc;

use super::{now_ms, Core, User};

/// The last presence report of one other node.
#[derive(Default)]
pub(super) struct Report {
    users: HashSet<String>,
    heard: u64,
}

impl Core {
    /// This process among the cluster's nodes (random per start).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The users this node's own connections and requests keep online: what it reports.
    pub fn local_presence(&self) -> Vec<String> {
        let (now, timeout) = (now_ms(), self.presence_timeout_ms());
        let users = self.users.read();
        users
            .values()
            .filter(|u| u.lock().is_online_here(now, timeout))
            .map(|u| u.key.clone())
            .collect()
    }

    /// Takes node `origin`'s report of who is online there; users who came or went are
    /// announced to their room-mates here.
    pub fn node_presence(&self, origin: &str, users: Vec<String>) {
        if origin == self.origin {
            return;
        }
        let now = users.into_iter().collect::<HashSet<String>>();
        let (came, went) = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            let report = nodes.entry(origin.to_string()).or_default();
            report.heard = now_ms();
            let came: Vec<String> = now.difference(&report.users).cloned().collect();
            let went: Vec<String> = report.users.difference(&now).cloned().collect();
            report.users = now;
            (came, went)
        };
        self.count_remote(&came, true);
        self.count_remote(&went, false);
    }

    /// Forgets the nodes not heard from for `silent_ms`: their users' connections count as
    /// gone.
    pub fn forget_silent_nodes(&self, silent_ms: u64) {
        let cutoff = now_ms().saturating_sub(silent_ms);
        let gone: Vec<String> = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            let silent: Vec<String> = nodes
                .iter()
                .filter(|(_, r)| r.heard < cutoff)
                .map(|(o, _)| o.clone())
                .collect();
            silent
                .iter()
                .filter_map(|o| nodes.remove(o))
                .flat_map(|r| r.users)
                .collect()
        };
        if !gone.is_empty() {
            tracing::warn!(
                users = gone.len(),
                "cluster: a node went silent; its users count as offline"
            );
        }
        self.count_remote(&gone, false);
    }

    fn count_remote(&self, keys: &[String], up: bool) {
        for key in keys {
            let Some(user) = self.user(key) else { continue };
            {
                let mut us = user.lock();
                if up {
                    us.remote += 1;
                } else {
                    us.remote = us.remote.saturating_sub(1);
                    if us.remote == 0 {
                        us.last_close = us.last_close.max(now_ms());
                    }
                }
            }
            self.refresh_presence(&user);
        }
    }

    /// `username` is typing in `room_id` on another node: tells this node's connections of
    /// the other members (the node it came from already throttled it).
    pub fn node_typing(&self, origin: &str, room_id: &str, username: &str) {
        if origin == self.origin {
            return;
        }
        let (Some(room), Some(user)) = (
            self.rooms.get(room_id),
            self.user(&username.to_ascii_lowercase()),
        ) else {
            return;
        };
        let subs = {
            let rs = room.lock();
            if !rs.members.contains_key(&user.key) {
                return;
            }
            rs.subscribers.clone()
        };
        self.send_typing(&room.id, &user, &subs);
    }

    /// Cluster mode: tells the other nodes that `user` is typing in `room_id`.
    pub(super) fn share_typing(&self, room_id: &str, user: &Arc<User>) {
        if let Some(r) = self.replica.get() {
            r.typing(room_id, &user.name);
        }
    }
}
