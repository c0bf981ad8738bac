//! The settings every node of a cluster must share. Each node applies every change with its
//! own settings, so two nodes with another `--history` or `--room-capacity` would decide the
//! same change differently and their replicas would part ways. A starting node therefore asks
//! the running ones for theirs (`STREAM.settings`) and refuses to start when they differ.
//!
//! To change one of them, stop every node, then start them all with the new value.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chat::hex;
use crate::config::Config;

/// How long a starting node listens for the running nodes' answers.
const ANSWERS_WITHIN: Duration = Duration::from_millis(500);

/// A node's deciding settings, by flag.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub(super) struct Settings {
    node: String,
    origin: String,
    values: BTreeMap<String, String>,
}

impl Settings {
    /// This node's settings: the flags that decide, with `--blocked-words` as a digest of the
    /// list (paths may differ from node to node; the words may not).
    pub(super) fn of(cfg: &Config, node: &str, origin: &str) -> Result<Settings, String> {
        let words = match &cfg.blocked_words {
            Some(path) => {
                let list = std::fs::read(path)
                    .map_err(|e| format!("cannot read --blocked-words {}: {e}", path.display()))?;
                format!("a list with SHA-256 {}", &hex(&Sha256::digest(list))[..16])
            }
            None => "none".to_string(),
        };
        let mut admins = cfg.admins.clone();
        admins.sort();
        let values = [
            ("--history", cfg.history.to_string()),
            ("--room-capacity", cfg.room_capacity.to_string()),
            ("--max-rooms-per-user", cfg.max_rooms_per_user.to_string()),
            ("--max-owned-rooms", cfg.max_owned_rooms.to_string()),
            (
                "--registration",
                format!("{:?}", cfg.registration).to_lowercase(),
            ),
            ("--admin", admins.join(",")),
            ("--blocked-words", words),
            ("--min-password-length", cfg.min_password_length.to_string()),
            (
                "--cluster-snapshot-every",
                cfg.cluster_snapshot_every.to_string(),
            ),
        ];
        Ok(Settings {
            node: node.to_string(),
            origin: origin.to_string(),
            values: values
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
    }

    /// What differs from `other`'s, in words; `None` when nothing does.
    fn differences(&self, other: &Settings) -> Option<String> {
        let diffs: Vec<String> = self
            .values
            .iter()
            .filter(|(k, v)| other.values.get(*k) != Some(v))
            .map(|(k, v)| {
                let theirs = other.values.get(k).map_or("unset", String::as_str);
                format!(
                    "{k} is {v:?} on node {} and {theirs:?} on node {}",
                    self.node, other.node
                )
            })
            .collect();
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }

    /// Asks the running nodes for their settings: an error naming the differences when any
    /// node's differ from these.
    pub(super) async fn check(
        &self,
        client: &async_nats::Client,
        base: &str,
    ) -> Result<(), String> {
        let inbox = client.new_inbox();
        let mut answers = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| format!("cluster: cannot ask the other nodes' settings: {e}"))?;
        let question = serde_json::to_vec(self).unwrap_or_default();
        client
            .publish_with_reply(format!("{base}.settings"), inbox, question.into())
            .await
            .map_err(|e| format!("cluster: cannot ask the other nodes' settings: {e}"))?;
        let until = tokio::time::sleep(ANSWERS_WITHIN);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => return Ok(()),
                Some(m) = answers.next() => {
                    let Ok(theirs) = serde_json::from_slice::<Settings>(&m.payload) else {
                        continue;
                    };
                    if theirs.origin == self.origin {
                        continue;
                    }
                    if let Some(diffs) = self.differences(&theirs) {
                        return Err(format!(
                            "cluster: every node must run with the same deciding settings, and \
                             {diffs}. Start this node with the cluster's, or stop every node \
                             and start them all with the new ones"
                        ));
                    }
                }
            }
        }
    }

    /// Answers the questions of starting nodes with these settings, for as long as the node
    /// runs; logs a warning when a starting node's differ (it will refuse to start).
    pub(super) async fn answer(self, client: async_nats::Client, base: String) {
        let mut questions = loop {
            match client.subscribe(format!("{base}.settings")).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!("cluster: cannot answer other nodes' settings: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        let payload = serde_json::to_vec(&self).unwrap_or_default();
        while let Some(question) = questions.next().await {
            let Some(reply) = question.reply else {
                continue;
            };
            if let Ok(theirs) = serde_json::from_slice::<Settings>(&question.payload) {
                if theirs.origin == self.origin {
                    continue;
                }
                if let Some(diffs) = theirs.differences(&self) {
                    tracing::warn!("cluster: node {} cannot join: {diffs}", theirs.node);
                }
            }
            let _ = client.publish(reply, payload.clone().into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_setting_and_both_nodes_values() {
        let cfg = Config::default();
        let ours = Settings::of(&cfg, "n1", "o1").unwrap();
        let same = Settings::of(&cfg, "n2", "o2").unwrap();
        assert_eq!(ours.differences(&same), None);
        let mut other = cfg.clone();
        other.history = 20;
        other.admins = vec!["root".into()];
        let theirs = Settings::of(&other, "n2", "o2").unwrap();
        let diffs = ours.differences(&theirs).expect("differences");
        assert!(
            diffs.contains(&format!(
                "--history is \"{}\" on node n1 and \"20\" on node n2",
                cfg.history
            )),
            "{diffs}"
        );
        assert!(
            diffs.contains("--admin is \"\" on node n1 and \"root\" on node n2"),
            "{diffs}"
        );
        assert!(!diffs.contains("--room-capacity"), "{diffs}");
    }
}
