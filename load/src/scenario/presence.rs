//! Scenario: a presence storm (issue 9). After a restart every member of one big room is
//! offline; then all of them open their WebSocket at once, and each one's coming online is
//! news to every connection already open. Does any connection get cut with 4002 for the
//! presence frames it is owed, and does every connection end up knowing that everyone who
//! came after it is online?
//!
//! The server runs with a data directory and is restarted between [`prepare`] and [`storm`]
//! (the caller does that): sessions survive a restart, and presence does not, so the members'
//! tokens still work and nobody is online when the storm begins.
//!
//! # What a connection must be told
//!
//! The server announces a user's change to the connections subscribed at that moment; a
//! connection learns about those already online from the room's member list, not from frames.
//! So the view a connection is checked for is: every member whose upgrade *began* after this
//! connection's `hello` had arrived (the server subscribed it before sending `hello`, and
//! announces a user only once its upgrade request is in) must have been told online, and no
//! member that connected may be left told offline. Members whose upgrades overlapped this
//! one's are not checked either way: the server may have announced them just before or just
//! after this connection subscribed.

use super::{finish_all, open_many, Meter, OpenOptions, Target, Usage};
use crate::api::{self, User};
use crate::conn::WsConfig;
use crate::error::{LoadError, Result};
use crate::http::HttpClient;
use crate::roster::{Roster, Told};
use crate::stats::{Latency, Shared};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the scenario looks whether every view is complete. Default is 50 ms.
const POLL: Duration = Duration::from_millis(50);
/// Once every view is complete, how long without a presence frame before the figures are
/// taken, so that late extra frames (a resync) are counted. Default is 1 s.
const QUIET: Duration = Duration::from_secs(1);

/// Settings of the presence storm.
#[derive(Clone, Debug)]
pub struct StormConfig {
    /// Members of the one room, each with one connection. Default is 5,000.
    pub members: usize,
    /// Upgrades in flight at once. Default is 64, as in the connections scenario.
    pub concurrency: usize,
    /// REST clients for the setup. Default is 32.
    pub setup_concurrency: usize,
    /// Longest wait from the first upgrade for every view to be complete. Default is 60 s.
    pub limit: Duration,
    /// The server's `--max-outbound-bytes`; `None` leaves its default (1 MiB), which is the
    /// point: the benchmark flags' 8 MiB would hide a 4002.
    pub max_outbound_bytes: Option<u64>,
}

impl Default for StormConfig {
    fn default() -> Self {
        StormConfig {
            members: 5000,
            concurrency: 64,
            setup_concurrency: 32,
            limit: Duration::from_secs(60),
            max_outbound_bytes: None,
        }
    }
}

/// Accounts and the room, made before the restart.
#[derive(Clone, Debug)]
pub struct StormSetup {
    pub members: Vec<User>,
    /// An account in no room: it asks for the member list without being announced to anyone.
    pub observer: User,
    pub room: String,
    pub took: Duration,
}

/// What the storm measured.
#[derive(Clone, Debug, Default)]
pub struct StormReport {
    pub members: usize,
    pub concurrency: usize,
    pub limit: Duration,
    pub max_outbound_bytes: Option<u64>,
    pub setup: Duration,
    /// Spawning the restarted server to its first `/healthz` 200 (set by the caller).
    pub restart: Duration,
    /// Members online by the server's member list just before the first upgrade, and at the
    /// end.
    pub online_before: Option<usize>,
    pub online_after: Option<usize>,
    pub opened: usize,
    pub open_failures: BTreeMap<String, u64>,
    /// First upgrade to the last `hello`.
    pub open_wall: Duration,
    pub upgrade_latency: Latency,
    /// Connections the server closed with 4002 (too slow).
    pub closed_4002: usize,
    /// Other ends of connections before the scenario closed them, by close code (0: no close
    /// frame).
    pub other_closes: BTreeMap<u16, usize>,
    /// Presence frames received, over all connections; those that said offline; those about
    /// no member or not understood.
    pub frames: u64,
    pub offline_frames: u64,
    pub stranger_frames: u64,
    /// Presence frames per connection (opened ones): p50 and max.
    pub frames_p50: u32,
    pub frames_max: u32,
    /// Members each connection had to be told online (those whose upgrade began after its
    /// `hello`), summed over connections.
    pub owed: u64,
    /// Of those, the ones a connection was never told online (or last told offline).
    pub missing: u64,
    /// Connections last told offline about a member who had connected.
    pub told_offline: usize,
    /// Connections still open whose view is complete: every member owed told online, nobody
    /// who connected left offline.
    pub complete: usize,
    /// First upgrade until every connection was open and its view complete; `None` if that
    /// never happened within [`StormConfig::limit`].
    pub converged: Option<Duration>,
    /// The wait ended at [`StormConfig::limit`] rather than with every view complete or every
    /// connection ended.
    pub timed_out: bool,
    /// From the first upgrade to the end of the wait: server CPU and peak RSS, the generator's
    /// and the rest of the machine's CPU.
    pub usage: Usage,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub problems: BTreeMap<String, u64>,
}

/// Registers `members` accounts and an observer, creates one room and makes every member
/// join it.
pub async fn prepare(addr: SocketAddr, cfg: &StormConfig) -> Result<StormSetup> {
    if cfg.members < 2 {
        return Err(LoadError::Config("a storm needs at least 2 members".into()));
    }
    let start = Instant::now();
    let prefix = api::run_prefix();
    let n = cfg.members;
    let mut members = api::create_users(addr, &prefix, n + 1, cfg.setup_concurrency).await?;
    let observer = members
        .pop()
        .ok_or_else(|| LoadError::Protocol("no observer account".into()))?;
    let mut client = HttpClient::new(addr, None);
    let room = api::create_room(
        &mut client,
        &members[0].token,
        &format!("{prefix}storm"),
        n as u64,
    )
    .await?;
    api::join_all(
        addr,
        &members,
        std::slice::from_ref(&room),
        |_| 0,
        cfg.setup_concurrency,
    )
    .await?;
    Ok(StormSetup {
        members,
        observer,
        room,
        took: start.elapsed(),
    })
}

/// Members online by `GET /api/v1/rooms/{id}`'s `member_list`, asked as the observer.
pub async fn members_online(addr: SocketAddr, setup: &StormSetup) -> Result<usize> {
    let mut client = HttpClient::new(addr, None);
    let path = format!("/api/v1/rooms/{}", setup.room);
    let r = api::call(&mut client, "GET", &path, Some(&setup.observer.token), None).await?;
    if r.status != 200 {
        return Err(LoadError::Status {
            what: "room details".into(),
            status: r.status,
            body: r.body_text(),
        });
    }
    let v = r.json()?;
    let list = v
        .get("member_list")
        .and_then(|l| l.as_array())
        .ok_or_else(|| LoadError::Protocol("room details without member_list".into()))?;
    Ok(list
        .iter()
        .filter(|m| m.get("online").and_then(|o| o.as_bool()) == Some(true))
        .count())
}

/// Who each opened connection must be told about: opened members in the order their upgrades
/// began, and for each member the position in that order from which on it is owed.
struct Owed {
    order: Vec<usize>,
    from: Vec<Option<usize>>,
}

impl Owed {
    fn new(spans: &[Option<(u64, u64)>]) -> Owed {
        let mut order: Vec<usize> = (0..spans.len()).filter(|&i| spans[i].is_some()).collect();
        order.sort_by_key(|&i| spans[i].map(|s| s.0));
        let began: Vec<u64> = order
            .iter()
            .filter_map(|&i| spans[i].map(|s| s.0))
            .collect();
        let from = spans
            .iter()
            .map(|s| s.map(|(_, hello)| began.partition_point(|&b| b <= hello)))
            .collect();
        Owed { order, from }
    }

    /// The members `row` is owed (its own upgrade began before its hello, so it is not among
    /// them).
    fn of(&self, row: usize) -> &[usize] {
        self.from[row].map(|f| &self.order[f..]).unwrap_or(&[])
    }

    fn opened(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().copied()
    }
}

/// Whether every open connection has been told every member it is owed; the cheap count
/// first, each member's cell only when the count allows it.
fn all_complete(roster: &Roster, owed: &Owed) -> bool {
    let open = || owed.opened().filter(|&r| roster.ended(r).is_none());
    if open().any(|r| (roster.online(r) as usize) < owed.of(r).len()) {
        return false;
    }
    open().all(|r| {
        owed.of(r)
            .iter()
            .all(|&m| matches!(roster.told(r, m), Told::Online(_)))
    })
}

/// The storm, against a server restarted since [`prepare`].
pub async fn storm(target: &Target, setup: &StormSetup, cfg: &StormConfig) -> Result<StormReport> {
    let n = setup.members.len();
    let mut report = StormReport {
        members: n,
        concurrency: cfg.concurrency,
        limit: cfg.limit,
        max_outbound_bytes: cfg.max_outbound_bytes,
        setup: setup.took,
        ..StormReport::default()
    };
    report.online_before = members_online(target.addr, setup).await.ok();
    report.rss_before_kib = target.probe.and_then(|p| p.rss_kib());

    let names: Vec<String> = setup.members.iter().map(|u| u.name.clone()).collect();
    let roster = Arc::new(Roster::new(&names));
    let shared = Arc::new(Shared::new(true).with_roster(roster.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tokens: Vec<String> = setup.members.iter().map(|u| u.token.clone()).collect();
    let opts = OpenOptions {
        ws: WsConfig {
            read_buf: 16 * 1024,
            write_queue: 4,
            ..WsConfig::default()
        },
        concurrency: cfg.concurrency,
        // No request before the upgrade: the upgrade itself brings each member online.
        touch: false,
    };
    eprintln!("presence: {n} members opening their websockets");
    let meter = Meter::start(target);
    let start = Instant::now();
    let start_ns = shared.clock.now_ns();
    let opened = open_many(target.addr, &tokens, &opts, &shared, &stop_rx).await;
    report.opened = opened.count();
    report.open_failures = opened.failures.clone();
    report.open_wall = opened.wall;
    report.upgrade_latency = Latency::of(&opened.upgrade_latency);
    let owed = Owed::new(&opened.spans);
    eprintln!(
        "presence: {} open in {:.1} s; waiting for every view to be complete (at most {:?} from the first upgrade)",
        report.opened,
        opened.wall.as_secs_f64(),
        cfg.limit
    );

    let mut complete = false;
    loop {
        if start.elapsed() >= cfg.limit {
            report.timed_out = true;
            break;
        }
        if owed.opened().all(|r| roster.ended(r).is_some()) {
            break;
        }
        if all_complete(&roster, &owed) {
            complete = true;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    // Late frames (a resync after an overflow) still count.
    while complete && start.elapsed() < cfg.limit {
        let quiet_ns = shared.clock.now_ns().saturating_sub(roster.last_ns());
        if quiet_ns >= QUIET.as_nanos() as u64 {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    report.usage = meter.finish();
    report.rss_after_kib = target.probe.and_then(|p| p.rss_kib());
    report.online_after = members_online(target.addr, setup).await.ok();

    tally(&mut report, &roster, &owed, &opened.spans, start_ns);
    let conns: Vec<_> = opened.conns.into_iter().flatten().collect();
    finish_all(conns, &stop_tx, &shared).await;
    report.problems = shared.problems();
    Ok(report)
}

/// The figures of the report that come from the roster.
fn tally(
    report: &mut StormReport,
    roster: &Roster,
    owed: &Owed,
    spans: &[Option<(u64, u64)>],
    start_ns: u64,
) {
    report.frames = roster.total();
    report.offline_frames = roster.offline_frames();
    report.stranger_frames = roster.strangers();
    let mut per_conn: Vec<u32> = owed.opened().map(|r| roster.frames(r)).collect();
    per_conn.sort_unstable();
    report.frames_p50 = per_conn.get(per_conn.len() / 2).copied().unwrap_or(0);
    report.frames_max = per_conn.last().copied().unwrap_or(0);

    // The moment the last view became complete: the last hello, or the last owed member
    // told online.
    let mut last_ns = spans
        .iter()
        .flatten()
        .map(|s| s.1)
        .max()
        .unwrap_or(start_ns);
    for r in owed.opened() {
        match roster.ended(r) {
            Some(4002) => report.closed_4002 += 1,
            Some(code) => *report.other_closes.entry(code).or_default() += 1,
            None => {}
        }
        let mut missing = 0u64;
        for &m in owed.of(r) {
            match roster.told(r, m) {
                Told::Online(ms) => last_ns = last_ns.max(u64::from(ms) * 1_000_000),
                _ => missing += 1,
            }
        }
        let offline = owed
            .opened()
            .any(|m| matches!(roster.told(r, m), Told::Offline(_)));
        report.owed += owed.of(r).len() as u64;
        report.missing += missing;
        report.told_offline += usize::from(offline);
        if roster.ended(r).is_none() && missing == 0 && !offline {
            report.complete += 1;
        }
    }
    if report.complete == report.members {
        report.converged = Some(Duration::from_nanos(last_ns.saturating_sub(start_ns)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_owed_the_members_whose_upgrade_began_after_its_hello() {
        // Member 2 began first; 0 overlapped 2's upgrade; 1 began after 2's hello; 3 never
        // opened.
        let spans = [Some((20, 40)), Some((50, 60)), Some((10, 30)), None];
        let owed = Owed::new(&spans);
        assert_eq!(owed.opened().collect::<Vec<_>>(), vec![2, 0, 1]);
        assert_eq!(owed.of(2), &[1]);
        assert_eq!(owed.of(0), &[1]);
        assert!(owed.of(1).is_empty());
        assert!(owed.of(3).is_empty());
    }

    #[test]
    fn views_are_complete_once_every_owed_member_is_told_online() {
        let names: Vec<String> = (0..3).map(|i| format!("m{i}")).collect();
        let roster = Roster::new(&names);
        let owed = Owed::new(&[Some((10, 20)), Some((30, 40)), Some((50, 60))]);
        let online = |m: &str| format!(r#"{{"type":"presence","username":"{m}","online":true}}"#);
        roster.note(0, online("m1").as_bytes(), 45_000_000);
        assert!(!all_complete(&roster, &owed));
        roster.note(0, online("m2").as_bytes(), 70_000_000);
        roster.note(1, online("m2").as_bytes(), 65_000_000);
        assert!(all_complete(&roster, &owed));

        let mut report = StormReport {
            members: 3,
            ..StormReport::default()
        };
        let spans = [Some((10, 20)), Some((30, 40)), Some((50, 60))];
        tally(&mut report, &roster, &owed, &spans, 10);
        assert_eq!((report.owed, report.missing, report.complete), (3, 0, 3));
        assert_eq!(
            report.converged,
            Some(Duration::from_nanos(70_000_000 - 10))
        );
        assert_eq!(
            (report.frames, report.frames_max, report.frames_p50),
            (3, 2, 1)
        );

        // A connection cut with 4002 leaves the storm unconverged.
        roster.end(2, 4002);
        let mut report = StormReport {
            members: 3,
            ..StormReport::default()
        };
        tally(&mut report, &roster, &owed, &spans, 10);
        assert_eq!((report.closed_4002, report.complete), (1, 2));
        assert_eq!(report.converged, None);
    }
}
