//! Read markers (issue 12): one big room with a journal, a few senders at fixed rates and
//! unthrottled, and every member answering each message entry it receives with a `read` frame
//! for that seq. Each load runs twice on the same connections: first without the answers (the
//! baseline), then with them, so what the markers cost shows as the difference.
//!
//! Besides the fan-out figures it measures what the journal took: the growth of `/metrics`'
//! `parley_journal_bytes_total` over a phase, and the records appended to the data directory's
//! `journal-*.log` files by kind (see [`JournalScan`]), so the `read_markers` records are
//! counted apart from the message entries.

use super::{finish_all, open_many, secs, Meter, OpenOptions, PhaseResult, Target, Usage};
use crate::api;
use crate::conn::WsConfig;
use crate::error::{LoadError, Result};
use crate::http::HttpClient;
use crate::sender::{run_closed_loop, run_open_loop, ClosedLoop, OpenLoop, SendSpec};
use crate::stats::{Latency, Shared};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Settings of the read-marker scenario. Defaults are those of issue 12.
#[derive(Clone, Debug)]
pub struct ReadMarkersConfig {
    /// Room members, each with one connection. Default is 1000.
    pub members: usize,
    /// Members that also send. Default is 10.
    pub senders: usize,
    /// Offered loads in messages per second over all senders (not deliveries). Default is
    /// 50 and 200.
    pub rates: Vec<f64>,
    /// Seconds per measured phase. Default is 10.
    pub phase_secs: f64,
    /// Seconds of the unthrottled (closed-loop) phases; 0 skips them. Default is 10.
    pub unthrottled_secs: f64,
    /// Unthrottled: messages in flight room-wide. Default is 200.
    pub window: u64,
    /// Seconds to wait after a phase's deliveries are in before reading the journal: the
    /// server writes markers once a second. Default is 1.5.
    pub settle_secs: f64,
    /// Message text length in bytes. Default is 100.
    pub text_len: usize,
    /// Seconds of warm-up (with answers) at the lowest rate; 0 skips it. Default is 1.
    pub warmup_secs: f64,
    /// REST clients used for setup. Default is 16.
    pub setup_concurrency: usize,
}

impl Default for ReadMarkersConfig {
    fn default() -> Self {
        ReadMarkersConfig {
            members: 1000,
            senders: 10,
            rates: vec![50.0, 200.0],
            phase_secs: 10.0,
            unthrottled_secs: 10.0,
            window: 200,
            settle_secs: 1.5,
            text_len: 100,
            warmup_secs: 1.0,
            setup_concurrency: 16,
        }
    }
}

/// Journal records of one kind (the `t` tag of the record's JSON): how many, and their bytes
/// on disk, each with its 8-byte length and checksum header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindTally {
    pub records: u64,
    pub bytes: u64,
}

/// Records appended to the journal, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalTally {
    pub kinds: BTreeMap<String, KindTally>,
}

impl JournalTally {
    pub fn kind(&self, name: &str) -> KindTally {
        self.kinds.get(name).copied().unwrap_or_default()
    }

    pub fn total(&self) -> KindTally {
        self.kinds
            .values()
            .fold(KindTally::default(), |a, k| KindTally {
                records: a.records + k.records,
                bytes: a.bytes + k.bytes,
            })
    }

    fn add(&mut self, kind: &str, bytes: u64) {
        let k = self.kinds.entry(kind.to_owned()).or_default();
        k.records += 1;
        k.bytes += bytes;
    }
}

/// Reads the records the server appends to its journal files, from where the last look
/// stopped. It knows the on-disk layout of `src/store/journal/format.rs` (not part of the
/// public contract): a 32-byte file header, then records of a u32 LE payload length, a u32
/// CRC and the payload, which is the JSON of a `Record` tagged `{"t":"<kind>",...`. A record
/// not yet wholly written is left for the next look.
pub struct JournalScan {
    dir: PathBuf,
    /// Where each journal file was read up to.
    offsets: BTreeMap<String, u64>,
}

/// Bytes of a journal file's header.
const JOURNAL_HEADER: u64 = 32;
/// Bytes of a record's header: length and checksum.
const RECORD_HEADER: usize = 8;

impl JournalScan {
    pub fn new(dir: &Path) -> JournalScan {
        JournalScan {
            dir: dir.to_owned(),
            offsets: BTreeMap::new(),
        }
    }

    /// The records appended since the last call (all of them at the first).
    pub fn take(&mut self) -> Result<JournalTally> {
        let mut tally = JournalTally::default();
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("journal-") && n.ends_with(".log"))
            .collect();
        names.sort();
        for name in names {
            let from = self.offsets.get(&name).copied().unwrap_or(JOURNAL_HEADER);
            let mut file = match std::fs::File::open(self.dir.join(&name)) {
                Ok(f) => f,
                // Deleted by a compaction since the listing.
                Err(_) => continue,
            };
            if file.metadata()?.len() <= from {
                continue;
            }
            file.seek(SeekFrom::Start(from))?;
            let mut data = Vec::new();
            file.read_to_end(&mut data)?;
            let used = tally_records(&data, &mut tally);
            self.offsets.insert(name, from + used as u64);
        }
        Ok(tally)
    }
}

/// Adds the whole records at the start of `data` to `tally`; returns the bytes they took.
fn tally_records(data: &[u8], tally: &mut JournalTally) -> usize {
    let mut pos = 0;
    while let Some(head) = data.get(pos..pos + RECORD_HEADER) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(payload) = data.get(pos + RECORD_HEADER..pos + RECORD_HEADER + len) else {
            break;
        };
        tally.add(record_kind(payload), (RECORD_HEADER + len) as u64);
        pos += RECORD_HEADER + len;
    }
    pos
}

/// The `t` tag of a record's JSON, `{"t":"read_markers",...}`, or `other`.
fn record_kind(payload: &[u8]) -> &str {
    payload
        .strip_prefix(br#"{"t":""#)
        .and_then(|rest| {
            let end = memchr::memchr(b'"', rest)?;
            std::str::from_utf8(&rest[..end]).ok()
        })
        .unwrap_or("other")
}

/// One measured phase.
#[derive(Clone, Debug, Default)]
pub struct MarkerPhase {
    /// Deliveries, latency and CPU, as in fan-out. Usage covers the phase, its drain and the
    /// settling wait.
    pub result: PhaseResult,
    /// Offered messages per second over all senders; `None` unthrottled.
    pub rate: Option<f64>,
    /// Whether members answered entries with `read` frames.
    pub answering: bool,
    /// `read` frames the members queued.
    pub reads: u64,
    /// Growth of `parley_journal_bytes_total` over the phase and settling wait.
    pub journal_bytes: Option<u64>,
    /// Records appended to the journal files meanwhile, by kind.
    pub journal: Option<JournalTally>,
    /// Snapshots (compactions) the server wrote meanwhile: the file scan misses what a
    /// compaction deleted before it was read.
    pub snapshots: Option<u64>,
}

impl MarkerPhase {
    /// Journal bytes per message sent, from `/metrics`.
    pub fn journal_bytes_per_message(&self) -> Option<f64> {
        let b = self.journal_bytes?;
        (self.result.sent > 0).then(|| b as f64 / self.result.sent as f64)
    }

    /// `read_markers` record bytes per message sent, from the journal files.
    pub fn marker_bytes_per_message(&self) -> Option<f64> {
        let k = self.journal.as_ref()?.kind("read_markers");
        (self.result.sent > 0).then(|| k.bytes as f64 / self.result.sent as f64)
    }

    /// `read` frames per second, over the same time as delivered/s.
    pub fn reads_per_s(&self) -> f64 {
        let secs = self.result.active.as_secs_f64();
        if secs > 0.0 {
            self.reads as f64 / secs
        } else {
            0.0
        }
    }

    /// Server CPU per message sent, in microseconds.
    pub fn server_cpu_us_per_message(&self) -> Option<f64> {
        let cpu = self.result.usage.server_cpu?.as_secs_f64();
        (self.result.sent > 0).then(|| cpu * 1e6 / self.result.sent as f64)
    }
}

/// A member's view of the room after the run: whether the last phase's markers arrived.
#[derive(Clone, Debug, Default)]
pub struct MarkerCheck {
    pub username: String,
    pub read_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub unread: Option<u64>,
}

/// What the read-marker scenario measured.
#[derive(Clone, Debug, Default)]
pub struct ReadMarkersReport {
    pub members: usize,
    pub senders: usize,
    pub window: u64,
    pub phases: Vec<MarkerPhase>,
    pub setup: Duration,
    pub problems: BTreeMap<String, u64>,
    pub whole_run: Usage,
    /// The last member's room after the run (`GET /api/v1/me`).
    pub check: Option<MarkerCheck>,
    /// Why the journal files could not be read, if they could not.
    pub scan_error: Option<String>,
}

/// Counters read from `GET /metrics`.
#[derive(Clone, Copy, Debug, Default)]
struct JournalMetrics {
    bytes: Option<u64>,
    snapshots: Option<u64>,
}

async fn journal_metrics(client: &mut HttpClient) -> JournalMetrics {
    let Ok(r) = client.request("GET", "/metrics", None, None).await else {
        return JournalMetrics::default();
    };
    if r.status != 200 {
        return JournalMetrics::default();
    }
    let text = String::from_utf8_lossy(&r.body);
    JournalMetrics {
        bytes: metric(&text, "parley_journal_bytes_total"),
        snapshots: metric(&text, "parley_journal_snapshots"),
    }
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        if parts.next()? != name {
            return None;
        }
        parts.next()?.parse().ok()
    })
}

/// Runs the scenario against `target`, whose data directory is `data_dir`.
pub async fn run(
    target: &Target,
    data_dir: &Path,
    cfg: &ReadMarkersConfig,
) -> Result<ReadMarkersReport> {
    if cfg.members == 0 || cfg.senders == 0 || cfg.senders > cfg.members {
        return Err(LoadError::Config(
            "read markers need 1 <= senders <= members".into(),
        ));
    }
    let whole = Meter::start(target);
    let setup_start = Instant::now();
    let prefix = api::run_prefix();
    let users = api::create_users(target.addr, &prefix, cfg.members, cfg.setup_concurrency).await?;
    let mut client = HttpClient::new(target.addr, None);
    let room = api::create_room(
        &mut client,
        &users[0].token,
        &format!("{prefix}reads"),
        cfg.members as u64,
    )
    .await?;
    api::join_all(
        target.addr,
        &users,
        std::slice::from_ref(&room),
        |_| 0,
        cfg.setup_concurrency,
    )
    .await?;

    let shared = Arc::new(Shared::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tokens: Vec<String> = users.iter().map(|u| u.token.clone()).collect();
    let opts = OpenOptions {
        ws: WsConfig::default(),
        concurrency: 64,
        touch: false,
    };
    let conns = open_many(target.addr, &tokens, &opts, &shared, &stop_rx)
        .await
        .all()?;
    // Let presence and join traffic settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let setup = setup_start.elapsed();

    let spec = Arc::new(SendSpec::new(&room, cfg.text_len));
    let fanout = cfg.members as u64;
    // (label, messages/s or None for unthrottled, seconds, answering)
    let mut plan: Vec<(String, Option<f64>, f64, bool)> = Vec::new();
    if cfg.warmup_secs > 0.0 {
        if let Some(&first) = cfg.rates.first() {
            plan.push(("warm-up".into(), Some(first), cfg.warmup_secs, true));
        }
    }
    let mut loads: Vec<Option<f64>> = cfg.rates.iter().map(|&r| Some(r)).collect();
    if cfg.unthrottled_secs > 0.0 {
        loads.push(None);
    }
    for load in loads {
        let (name, secs) = match load {
            Some(r) => (format!("{} messages/s", fmt_rate(r)), cfg.phase_secs),
            None => ("unthrottled".to_string(), cfg.unthrottled_secs),
        };
        // The answering run last, so the markers checked at the end are the last phase's.
        plan.push((format!("{name}, no markers"), load, secs, false));
        plan.push((format!("{name}, markers"), load, secs, true));
    }

    let mut scan = JournalScan::new(data_dir);
    let mut scan_error = None;
    if let Err(e) = scan.take() {
        scan_error = Some(e.to_string());
    }
    let mut phases = Vec::new();
    for (i, (label, load, duration, answering)) in plan.into_iter().enumerate() {
        let phase = i as u32;
        shared.answer_reads.store(answering, Ordering::Relaxed);
        let before = journal_metrics(&mut client).await;
        if scan_error.is_none() {
            if let Err(e) = scan.take() {
                scan_error = Some(e.to_string());
            }
        }
        let meter = Meter::start(target);
        let duration = secs(duration);
        let mut result = PhaseResult {
            label,
            phase,
            offered_per_s: load.map(|r| r * fanout as f64),
            start_ns: shared.clock.now_ns(),
            ..Default::default()
        };
        let mut tasks = Vec::new();
        match load {
            Some(load) => {
                let rate = load / cfg.senders as f64;
                let start = Instant::now() + Duration::from_millis(20);
                result.start_ns = shared.clock.now_ns() + 20_000_000;
                for (s, conn) in conns.iter().take(cfg.senders).enumerate() {
                    let offset = Duration::from_secs_f64(s as f64 / (rate * cfg.senders as f64));
                    let plan = OpenLoop {
                        phase,
                        rate,
                        start: start + offset,
                        duration,
                        max_backlog: ((rate * 0.5) as u64).max(1),
                    };
                    tasks.push(tokio::spawn(run_open_loop(
                        conn.tx.clone(),
                        spec.clone(),
                        plan,
                        shared.clone(),
                        (phase as u64) << 40 | s as u64,
                    )));
                }
            }
            None => {
                for (s, conn) in conns.iter().take(cfg.senders).enumerate() {
                    let plan = ClosedLoop {
                        phase,
                        duration,
                        window: cfg.window,
                        fanout,
                        senders: cfg.senders as u64,
                    };
                    tasks.push(tokio::spawn(run_closed_loop(
                        conn.tx.clone(),
                        spec.clone(),
                        plan,
                        shared.clone(),
                        (phase as u64) << 40 | s as u64,
                    )));
                }
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        shared.drain_phase(phase, fanout).await;
        // The last `read` frames reach the server just after the last deliveries; the
        // markers they moved are written at its next once-a-second flush.
        tokio::time::sleep(secs(cfg.settle_secs)).await;
        let usage = meter.finish();
        let after = journal_metrics(&mut client).await;
        let journal = if scan_error.is_none() {
            match scan.take() {
                Ok(t) => Some(t),
                Err(e) => {
                    scan_error = Some(e.to_string());
                    None
                }
            }
        } else {
            None
        };
        result.usage = usage;
        result.record_counts(&shared, fanout);
        phases.push(MarkerPhase {
            result,
            rate: load,
            answering,
            reads: shared.reads(phase),
            journal_bytes: after.bytes.zip(before.bytes).map(|(a, b)| a - b.min(a)),
            journal,
            snapshots: after
                .snapshots
                .zip(before.snapshots)
                .map(|(a, b)| a - b.min(a)),
        });
    }
    shared.answer_reads.store(false, Ordering::Relaxed);

    let check = marker_check(target.addr, &users[cfg.members - 1], &room)
        .await
        .ok();
    let totals = finish_all(conns, &stop_tx, &shared).await;
    for p in &mut phases {
        p.result.latency = Latency::of(&totals[p.result.phase as usize]);
    }
    if cfg.warmup_secs > 0.0 && !cfg.rates.is_empty() {
        phases.remove(0);
    }
    Ok(ReadMarkersReport {
        members: cfg.members,
        senders: cfg.senders,
        window: cfg.window,
        phases,
        setup,
        problems: shared.problems(),
        whole_run: whole.finish(),
        check,
        scan_error,
    })
}

/// The room as `user` sees it in `GET /api/v1/me`.
async fn marker_check(addr: SocketAddr, user: &api::User, room: &str) -> Result<MarkerCheck> {
    let mut client = HttpClient::new(addr, None);
    let r = api::call(&mut client, "GET", "/api/v1/me", Some(&user.token), None).await?;
    let v = r.json()?;
    let found = v
        .get("rooms")
        .and_then(|r| r.as_array())
        .and_then(|rooms| {
            rooms
                .iter()
                .find(|r| r.get("id").and_then(|i| i.as_str()) == Some(room))
        })
        .ok_or_else(|| LoadError::Protocol("the member's rooms lack the room".into()))?;
    let num = |k: &str| found.get(k).and_then(|n| n.as_u64());
    Ok(MarkerCheck {
        username: user.name.clone(),
        read_seq: num("read_seq"),
        last_seq: num("last_seq"),
        unread: num("unread"),
    })
}

/// `50`, `200`, `12.5`.
pub fn fmt_rate(r: f64) -> String {
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(out: &mut Vec<u8>, payload: &[u8]) {
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
    }

    #[test]
    fn tallies_whole_records_by_kind() {
        let mut data = Vec::new();
        let (a, b) = (
            br#"{"t":"read_markers","room":"r","markers":[["a",1]]}"#.as_slice(),
            br#"{"t":"read_markers","room":"r","markers":[]}"#.as_slice(),
        );
        record(&mut data, a);
        record(&mut data, br#"{"t":"appended","x":1}"#);
        record(&mut data, b);
        record(&mut data, b"[1,2]");
        let whole = data.len();
        // A record whose payload is not all there yet.
        data.extend_from_slice(&100u32.to_le_bytes());
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(b"{\"t\":\"app");
        let mut t = JournalTally::default();
        assert_eq!(tally_records(&data, &mut t), whole);
        assert_eq!(t.kind("read_markers").records, 2);
        assert_eq!(
            t.kind("read_markers").bytes,
            (16 + a.len() + b.len()) as u64
        );
        assert_eq!(t.kind("appended").records, 1);
        assert_eq!(t.kind("other").records, 1);
        assert_eq!(t.total().records, 4);
        assert_eq!(t.total().bytes, whole as u64);
    }

    #[test]
    fn scans_journal_files_from_where_it_stopped() {
        let dir = std::env::temp_dir().join(format!("parley-scan-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal-0000000001.log");
        let mut data = vec![0u8; 32];
        record(&mut data, br#"{"t":"epoch","epoch":"e"}"#);
        std::fs::write(&path, &data).unwrap();
        std::fs::write(dir.join("snapshot"), b"not scanned").unwrap();
        let mut scan = JournalScan::new(&dir);
        assert_eq!(scan.take().unwrap().kind("epoch").records, 1);
        assert_eq!(scan.take().unwrap(), JournalTally::default());
        record(
            &mut data,
            br#"{"t":"read_markers","room":"r","markers":[]}"#,
        );
        std::fs::write(&path, &data).unwrap();
        let t = scan.take().unwrap();
        assert_eq!(t.total().records, 1);
        assert_eq!(t.kind("read_markers").records, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_metrics() {
        let text = "# HELP parley_journal_bytes_total Bytes.\nparley_journal_bytes_total 1234\nparley_journal_snapshots 2\n";
        assert_eq!(metric(text, "parley_journal_bytes_total"), Some(1234));
        assert_eq!(metric(text, "parley_journal_snapshots"), Some(2));
        assert_eq!(metric(text, "parley_nothing"), None);
    }
}
