//! The catch-up of a fresh node: what it measured, and the node's own log lines about it
//! (`caught up with stream ...`, `wrote a snapshot at ...`).

use std::time::Duration;

/// What the catch-up part measured.
#[derive(Clone, Debug, Default)]
pub struct CatchUpReport {
    /// From spawning the fresh node to its listening line.
    pub start_to_listening: Duration,
    /// The node's own log line: the stream sequence of the snapshot it loaded (0: none),
    /// the changes it applied after it, and the milliseconds it took for both.
    pub snapshot: Option<u64>,
    pub changes: Option<u64>,
    pub logged_ms: Option<u64>,
    /// The rest of that line (users, rooms, kept entries).
    pub logged_line: Option<String>,
    /// The fresh node's CPU time and peak RSS once listening.
    pub cpu: Option<Duration>,
    pub peak_rss_kib: Option<u64>,
    /// Node 1's RSS at the same moment, for comparison.
    pub n1_rss_kib: Option<u64>,
    /// Why earlier starts of the fresh node failed, if any did; the figures are those of the
    /// start that worked (none if all failed).
    pub failures: Vec<String>,
}

impl CatchUpReport {
    /// The changes applied, when the node replayed the stream from its start: a snapshot
    /// loaded instead makes a rate of changes meaningless.
    fn replayed(&self) -> Option<u64> {
        self.changes.filter(|_| self.snapshot == Some(0))
    }

    /// Changes applied per second from process start to listening, without a snapshot.
    pub fn per_s_wall(&self) -> Option<f64> {
        let s = self.start_to_listening.as_secs_f64();
        Some(self.replayed()? as f64 / s).filter(|_| s > 0.0)
    }

    /// Changes applied per second by the node's own measure, without a snapshot.
    pub fn per_s_logged(&self) -> Option<f64> {
        let ms = self.logged_ms?;
        Some(self.replayed()? as f64 * 1000.0 / ms.max(1) as f64)
    }
}

/// What the restart of a node on its data directory measured.
#[derive(Clone, Debug, Default)]
pub struct RestartReport {
    /// From spawning the node again to its listening line.
    pub start_to_listening: Duration,
    /// Its `caught up` line.
    pub caught: Option<CaughtUp>,
    pub cpu: Option<Duration>,
    pub peak_rss_kib: Option<u64>,
    /// Why it did not stop cleanly or start again, if it did not.
    pub failure: Option<String>,
}

/// What a node's `caught up` log line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaughtUp {
    /// Whether it resumed from its data directory rather than the latest snapshot.
    pub from_data_dir: bool,
    /// Stream sequence of the state loaded (snapshot or data directory); 0 when none.
    pub snapshot: u64,
    /// Changes applied from the stream after it.
    pub changes: u64,
    pub ms: u64,
    /// The whole line, with its time.
    pub line: String,
}

/// Finds a node's `caught up` line: `caught up with stream S in M ms: the latest snapshot at
/// X, then N changes; ...` (or, before snapshots, `caught up with N changes ... in M ms`).
pub fn caught_up_line(log: &str) -> Option<CaughtUp> {
    let line = log.lines().find(|l| l.contains("caught up with "))?;
    let rest = &line[line.find("caught up with ")?..];
    let number_after = |key: &str| -> Option<u64> {
        let at = rest.find(key)? + key.len();
        let digits: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    };
    let ms = number_after(" in ")?;
    let (snapshot, changes) = match number_after(", then ") {
        Some(n) => (
            number_after("snapshot at ")
                .or_else(|| number_after("directory at "))
                .unwrap_or(0),
            n,
        ),
        None => (0, number_after("caught up with ")?),
    };
    Some(CaughtUp {
        from_data_dir: rest.contains("its data directory at "),
        snapshot,
        changes,
        ms,
        line: line.trim().to_owned(),
    })
}

/// Lines of a node's log that report a snapshot written.
pub fn snapshots_written(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("wrote a snapshot at"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_catch_up_line() {
        let log = "2026-12-01T20:00:00Z INFO parley: starting\n\
                   2026-12-01T20:00:01Z  INFO parley::cluster: cluster: caught up with 123456 changes of stream parley in 4321 ms: 200 users, 101 rooms, 100000 kept entries node=\"n3\"\n";
        let c = caught_up_line(log).unwrap();
        assert_eq!((c.snapshot, c.changes, c.ms), (0, 123_456, 4321));
        assert!(c.line.contains("caught up with 123456"));
        assert_eq!(caught_up_line("nothing here"), None);
        let log = "2026-12-01T21:00:00Z  INFO parley::cluster: cluster: caught up with stream parley in 812 ms: the latest snapshot at 100012, then 5230 changes; 120 users, 21 rooms, 19151 kept entries node=\"n3\"\n";
        let c = caught_up_line(log).unwrap();
        assert_eq!((c.snapshot, c.changes, c.ms), (100_012, 5230, 812));
        assert!(!c.from_data_dir);
        let log = "2026-12-01T22:00:00Z  INFO parley::cluster: cluster: caught up with stream parley in 95 ms: its data directory at 234567, then 3 changes; 200 users\n";
        let c = caught_up_line(log).unwrap();
        assert_eq!((c.snapshot, c.changes, c.ms), (234_567, 3, 95));
        assert!(c.from_data_dir);
    }
}
