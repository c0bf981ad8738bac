//! The server's runs over one data directory: the epoch rule at start, the clean-stop
//! record, the periodic sweep of presence, sessions and the login throttle, and the
//! records a snapshot is made of.

use std::sync::Arc;

use super::{hex, now_ms, random_id, Core, Record, User};
use crate::config;

impl Core {
    pub fn epoch(&self) -> String {
        self.epoch.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets a fresh epoch if recovery found none, or if acknowledged entries may have been
    /// lost, and records this start. Entries can be lost only when the previous run did not
    /// stop cleanly, the machine rebooted since (a process crash leaves every acknowledged
    /// record with the OS; a power loss does not), and that run did not fsync every batch.
    /// Their seqs would then be handed out again, so clients must forget the ones they hold.
    pub fn begin_run(&self, boot_id: &str) {
        let lost = self
            .last_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|r| !r.stopped && r.boot_id != boot_id && r.fsync != "always");
        let started = Record::Started {
            boot_id: boot_id.to_string(),
            fsync: self.cfg.fsync.to_string(),
        };
        {
            let _gate = self.store.gate();
            self.apply(&started);
            self.store.append(&started, None);
        }
        if self.epoch().is_empty() || lost {
            let rec = Record::Epoch {
                epoch: random_id(16),
            };
            let _gate = self.store.gate();
            self.apply(&rec);
            self.store.append(&rec, None);
        }
    }

    /// Ends presence by request activity that timed out, and sessions past their idle or
    /// maximum age; prunes the login throttle.
    pub fn sweep(&self) {
        let now = now_ms();
        let users: Vec<Arc<User>> = {
            let users = self.users.read().unwrap_or_else(|e| e.into_inner());
            users.values().cloned().collect()
        };
        for u in &users {
            if u.lock().online {
                self.refresh_presence(u);
            }
        }
        let idle = self.cfg.session_idle_timeout.as_millis() as u64;
        let max_age = self.cfg.session_max_age.as_millis() as u64;
        let expired: Vec<[u8; 32]> = {
            let sessions = self.sessions();
            sessions
                .iter()
                .filter(|(_, s)| {
                    let us = s.user.lock();
                    let idle_for = if us.online {
                        0
                    } else {
                        us.last_seen.map_or(0, |t| now.saturating_sub(t))
                    };
                    now.saturating_sub(s.created) >= max_age || idle_for >= idle
                })
                .map(|(h, _)| *h)
                .collect()
        };
        for h in expired {
            self.end_session(h);
        }
        let window = config::LOGIN_WINDOW.as_millis() as u64;
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, f| f.iter().any(|&t| now.saturating_sub(t) < window));
        self.store.compact_if_due(|| self.snapshot_records());
    }

    /// Records a clean stop: nothing acknowledged can be missing after it.
    pub fn end_run(&self) {
        let _gate = self.store.gate();
        self.store.append(&Record::Stopped, None);
    }

    /// Every record needed to rebuild the current state, for a snapshot. Each room's ring
    /// contributes only the entries it keeps.
    pub fn snapshot_records(&self) -> Vec<Record> {
        let mut out = vec![Record::Epoch {
            epoch: self.epoch(),
        }];
        if let Some(run) = self
            .last_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            out.push(Record::Started {
                boot_id: run.boot_id,
                fsync: run.fsync,
            });
        }
        let users: Vec<Arc<User>> = {
            let users = self.users.read().unwrap_or_else(|e| e.into_inner());
            users.values().cloned().collect()
        };
        for u in &users {
            out.push(Record::UserRegistered {
                username: u.name.clone(),
                hash: u.lock().hash.clone(),
                ts: 0,
            });
        }
        for (hash, s) in self.sessions().iter() {
            out.push(Record::SessionStarted {
                token_hash: hex(hash),
                username: s.user.name.clone(),
                created: s.created,
            });
        }
        for room in self.rooms.all() {
            let rs = room.lock();
            out.push(Record::RoomSnapshot {
                id: room.id.clone(),
                name: room.name.clone(),
                owner: room.owner.clone(),
                capacity: room.capacity,
                last_seq: rs.last_seq,
                members: rs.members.values().map(|u| u.name.clone()).collect(),
                entries: rs.ring.iter().map(|e| (**e).clone()).collect(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::filter::Filter;
    use crate::config::Config;
    use crate::store::Store;

    fn core(fsync: &str) -> Core {
        let cfg = Config {
            fsync: fsync.parse().unwrap(),
            ..Config::default()
        };
        Core::new(
            Arc::new(cfg),
            Arc::default(),
            Store::memory(),
            Filter::default(),
        )
    }

    /// Replays a previous run's records, starts a new run on boot `now`, and tells whether
    /// the epoch changed.
    fn epoch_changes(previous: &[Record], now: &str) -> bool {
        let c = core("interval");
        c.apply(&Record::Epoch {
            epoch: "old".into(),
        });
        for r in previous {
            c.apply(r);
        }
        c.begin_run(now);
        c.epoch() != "old"
    }

    #[test]
    fn only_an_unclean_stop_across_a_reboot_without_fsync_changes_the_epoch() {
        let started = |boot: &str, fsync: &str| Record::Started {
            boot_id: boot.into(),
            fsync: fsync.into(),
        };
        let cases = [
            (
                "crash, same boot",
                vec![started("b1", "interval")],
                "b1",
                false,
            ),
            (
                "reboot after a crash",
                vec![started("b1", "interval")],
                "b2",
                true,
            ),
            (
                "reboot, fsync never",
                vec![started("b1", "never")],
                "b2",
                true,
            ),
            (
                "reboot, fsync always",
                vec![started("b1", "always")],
                "b2",
                false,
            ),
            (
                "clean stop, reboot",
                vec![started("b1", "interval"), Record::Stopped],
                "b2",
                false,
            ),
            ("no run recorded", vec![], "b2", false),
        ];
        for (name, previous, now, want) in cases {
            assert_eq!(epoch_changes(&previous, now), want, "{name}");
        }
    }

    #[test]
    fn a_fresh_directory_gets_an_epoch() {
        let c = core("interval");
        c.begin_run("b1");
        assert_eq!(c.epoch().len(), 16);
    }
}
