//! The server's runs over one data directory: the epoch rule at start, the clean-stop
//! record, and the periodic sweep of presence, sessions and the login throttle.

use super::{now_ms, random_id, Core, Record};

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
        let lost = self.loss_possible(boot_id);
        let started = Record::Started {
            boot_id: boot_id.to_string(),
            fsync: self.cfg.fsync.to_string(),
        };
        self.apply(&started);
        self.store.append_system(&started);
        if self.epoch().is_empty() || lost {
            let rec = Record::Epoch {
                epoch: random_id(16),
            };
            self.apply(&rec);
            self.store.append_system(&rec);
        }
    }

    /// Whether the run recorded so far may have lost acknowledged records: it did not stop
    /// cleanly, the machine rebooted since (a process crash leaves every acknowledged record
    /// with the OS; a power cut does not), and it did not fsync every batch. Recovery asks
    /// this when it finds damage followed by valid records.
    pub fn loss_possible(&self, boot_id: &str) -> bool {
        self.last_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|r| !r.stopped && r.boot_id != boot_id && r.fsync != "always")
    }

    /// Ends presence by request activity that timed out, and sessions past their idle or
    /// maximum age; prunes the login throttle.
    pub fn sweep(&self) {
        let now = now_ms();
        let users = self.all_users();
        for u in &users {
            if u.lock().online {
                self.refresh_presence(u);
            }
        }
        let idle = self.cfg.session_idle_timeout.as_millis() as u64;
        let max_age = self.cfg.session_max_age.as_millis() as u64;
        let expired = self.sessions.select(|user, created| {
            let us = user.lock();
            let idle_for = if us.online {
                0
            } else {
                us.last_seen.map_or(0, |t| now.saturating_sub(t))
            };
            now.saturating_sub(created) >= max_age || idle_for >= idle
        });
        for h in expired {
            self.end_session(h);
        }
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sweep(now);
    }

    /// Records a clean stop, after the read markers not yet written: nothing acknowledged
    /// can be missing after it.
    pub fn end_run(&self) {
        self.flush_read_markers();
        self.flush_last_seen(true);
        self.store.append_system(&Record::Stopped);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
