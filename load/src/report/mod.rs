//! Printing results as Markdown tables, ready to paste into `docs/BENCHMARKS.md`.
//!
//! `state.rs`: the kept-state scenario's tables; `presence.rs`: the presence storm's;
//! `read_markers.rs`: the read-marker scenario's; `cluster.rs`: the cluster scenario's.

mod cluster;
mod presence;
mod read_markers;
mod state;

pub use cluster::cluster;
pub use presence::presence;
pub use read_markers::read_markers;
pub use state::state;

use crate::scenario::burden::BurdenReport;
use crate::scenario::connections::ConnectionsReport;
use crate::scenario::fanout::{fmt_load, FanoutReport};
use crate::scenario::history::PullConfig;
use crate::scenario::rooms::{IsolationReport, RoomsReport};
use crate::scenario::{PhaseResult, Usage};
use crate::stats::{fmt_count, fmt_us};
use std::collections::BTreeMap;
use std::fmt::Write;

fn opt_secs(d: Option<std::time::Duration>) -> String {
    d.map(|d| format!("{:.2}", d.as_secs_f64()))
        .unwrap_or_else(|| "n/a".into())
}

fn opt_mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

fn gen_load(u: &Usage) -> String {
    let wall = u.wall.as_secs_f64();
    if wall > 0.0 {
        format!("{:.0}%", 100.0 * u.generator_cpu.as_secs_f64() / wall)
    } else {
        "n/a".into()
    }
}

/// Major page faults of server and generator over the phase.
fn faults(u: &Usage) -> String {
    let show = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "n/a".into());
    format!(
        "{}/{}",
        show(u.server_major_faults),
        show(u.generator_major_faults)
    )
}

/// Other processes' CPU as a share of one CPU over the phase.
fn other_load(u: &Usage) -> String {
    let wall = u.wall.as_secs_f64();
    match u.other_cpu {
        Some(c) if wall > 0.0 => format!("{:.0}%", 100.0 * c.as_secs_f64() / wall),
        _ => "n/a".into(),
    }
}

const PHASE_HEAD: &str = "| run | offered deliveries/s | messages sent | delivered/s | lost | p50 | p99 | p99.9 | max | server CPU s | deliveries per server CPU-s | same, counting its CPU's softirq | server peak RSS | generator CPU | other CPU | major faults server/generator | missed sends | send lag p99 |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";

fn phase_row(out: &mut String, label: &str, p: &PhaseResult) {
    let _ = writeln!(
        out,
        "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        p.offered_per_s
            .map(|o| fmt_count(o as u64))
            .unwrap_or_else(|| "closed loop".into()),
        fmt_count(p.sent),
        fmt_count(p.delivered_per_s() as u64),
        fmt_count(p.lost()),
        fmt_us(p.latency.p50_us),
        fmt_us(p.latency.p99_us),
        fmt_us(p.latency.p999_us),
        fmt_us(p.latency.max_us),
        opt_secs(p.usage.server_cpu),
        p.per_server_cpu_s()
            .map(|v| fmt_count(v as u64))
            .unwrap_or_else(|| "n/a".into()),
        p.per_server_cpu_irq_s()
            .map(|v| fmt_count(v as u64))
            .unwrap_or_else(|| "n/a".into()),
        opt_mib(p.usage.server_peak_rss_kib),
        gen_load(&p.usage),
        other_load(&p.usage),
        faults(&p.usage),
        fmt_count(p.missed),
        fmt_us(p.send_lag.p99_us),
    );
}

/// Lists the 100 ms slots with slow deliveries, phase by phase.
fn spikes(out: &mut String, phases: &[(String, &PhaseResult)]) {
    let with: Vec<_> = phases
        .iter()
        .filter(|(_, p)| !p.spikes.is_empty())
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nSlow moments: 100 ms slots whose worst delivery took {} or more, how many, and the ten worst (seconds into the phase at the slot's end: worst latency):",
        fmt_us(crate::scenario::SPIKE_US)
    );
    for (label, p) in with {
        let list: Vec<String> = p
            .spikes
            .iter()
            .map(|(t, us)| format!("{t:.1}s: {}", fmt_us(*us)))
            .collect();
        let _ = writeln!(
            out,
            "- {label}: {} slots; {}",
            p.spike_slots,
            list.join(", ")
        );
    }
}

fn problems(out: &mut String, problems: &BTreeMap<String, u64>) {
    if problems.is_empty() {
        out.push_str("\nNo error frames, and no connection closed during the run.\n");
    } else {
        out.push_str("\nErrors and closes seen by the generator's connections:\n");
        for (k, v) in problems {
            let _ = writeln!(out, "- {k}: {v}");
        }
    }
}

pub fn fanout(r: &FanoutReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Fan-out: one room of {} members, {} senders\n",
        fmt_count(r.members as u64),
        r.senders
    );
    out.push_str(PHASE_HEAD);
    for p in &r.phases {
        let label = match p.offered_per_s {
            Some(o) => fmt_load(o),
            None => "saturation".into(),
        };
        phase_row(&mut out, &label, p);
    }
    let labelled: Vec<(String, &PhaseResult)> = r
        .phases
        .iter()
        .map(|p| {
            let l = p
                .offered_per_s
                .map(fmt_load)
                .unwrap_or_else(|| "saturation".into());
            (l, p)
        })
        .collect();
    spikes(&mut out, &labelled);
    let _ = writeln!(
        out,
        "\nSetup (accounts, joins, {} upgrades): {:.1} s. Whole run: server CPU {} s, server peak RSS {}.",
        r.members,
        r.setup.as_secs_f64(),
        opt_secs(r.whole_run.server_cpu),
        opt_mib(r.whole_run.server_peak_rss_kib)
    );
    problems(&mut out, &r.problems);
    out
}

pub fn rooms(r: &RoomsReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Many rooms: {} rooms of {} members, every member sending {} messages/s\n",
        r.rooms, r.room_size, r.rate
    );
    out.push_str(PHASE_HEAD);
    phase_row(&mut out, "many rooms", &r.phase);
    spikes(&mut out, &[("many rooms".into(), &r.phase)]);
    problems(&mut out, &r.problems);
    out
}

fn flood_line(f: &BurdenReport) -> String {
    let statuses: Vec<String> = f
        .statuses
        .iter()
        .map(|(s, n)| {
            if *s == 0 {
                format!("connection errors: {}", fmt_count(*n))
            } else {
                format!("{s}: {}", fmt_count(*n))
            }
        })
        .collect();
    format!(
        "Login flood over {:.1} s: {:.1} successful logins/s; answers by status: {}; answer time p50 {}, p99 {}, max {}.",
        f.duration.as_secs_f64(),
        f.ok_per_s(),
        statuses.join(", "),
        fmt_us(f.latency.p50_us),
        fmt_us(f.latency.p99_us),
        fmt_us(f.latency.max_us)
    )
}

/// The history isolation scenario: other rooms' messages quiet and while one member pulls
/// 500-entry pages.
pub fn history(r: &IsolationReport, pulls: &PullConfig) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### History isolation: {} rooms of {} members at {} messages/s per sender, quiet and while one member pulls `limit={}` pages of {}-byte entries from {} connections\n",
        r.quiet.rooms, r.quiet.room_size, r.quiet.rate, pulls.limit, pulls.text_len, pulls.pullers
    );
    out.push_str(PHASE_HEAD);
    phase_row(&mut out, "quiet", &r.quiet.phase);
    phase_row(&mut out, "history pulls", &r.burdened.phase);
    spikes(
        &mut out,
        &[
            ("quiet".into(), &r.quiet.phase),
            ("history pulls".into(), &r.burdened.phase),
        ],
    );
    let _ = writeln!(
        out,
        "\np50 during the pulls / quiet p50: {:.2}x; p99 during the pulls / quiet p99: {:.2}x",
        r.p50_ratio(),
        r.p99_ratio()
    );
    if let Some(p) = &r.burdened.burden {
        let statuses: Vec<String> = p
            .statuses
            .iter()
            .map(|(s, n)| match s {
                0 => format!("cut or failed: {}", fmt_count(*n)),
                s => format!("{s}: {}", fmt_count(*n)),
            })
            .collect();
        let _ = writeln!(
            out,
            "\nPulls over {:.1} s: answers by status: {}; time to the status line p50 {}, p99 {}, max {}.",
            p.duration.as_secs_f64(),
            statuses.join(", "),
            fmt_us(p.latency.p50_us),
            fmt_us(p.latency.p99_us),
            fmt_us(p.latency.max_us)
        );
    }
    let mut all = r.quiet.problems.clone();
    for (k, v) in &r.burdened.problems {
        *all.entry(k.clone()).or_default() += v;
    }
    problems(&mut out, &all);
    out
}

pub fn isolation(r: &IsolationReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Login isolation: {} rooms of {} members at {} messages/s per sender, quiet and during a login flood\n",
        r.quiet.rooms, r.quiet.room_size, r.quiet.rate
    );
    out.push_str(PHASE_HEAD);
    phase_row(&mut out, "quiet", &r.quiet.phase);
    phase_row(&mut out, "login flood", &r.burdened.phase);
    spikes(
        &mut out,
        &[
            ("quiet".into(), &r.quiet.phase),
            ("login flood".into(), &r.burdened.phase),
        ],
    );
    let _ = writeln!(
        out,
        "\np99 during the flood / quiet p99: {:.2}x",
        r.p99_ratio()
    );
    if let Some(f) = &r.burdened.burden {
        let _ = writeln!(out, "\n{}", flood_line(f));
    }
    let mut all = r.quiet.problems.clone();
    for (k, v) in &r.burdened.problems {
        *all.entry(k.clone()).or_default() += v;
    }
    problems(&mut out, &all);
    out
}

pub fn persistence(ephemeral: &FanoutReport, persistent: &FanoutReport, label: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Persistence: fan-out ({} members) with `--ephemeral` and with {label}\n",
        fmt_count(ephemeral.members as u64)
    );
    out.push_str(PHASE_HEAD);
    for (name, r) in [("ephemeral", ephemeral), ("persistent", persistent)] {
        for p in &r.phases {
            let load = match p.offered_per_s {
                Some(o) => fmt_load(o),
                None => "saturation".into(),
            };
            phase_row(&mut out, &format!("{name} {load}"), p);
        }
    }
    let labelled: Vec<(String, &PhaseResult)> =
        [("ephemeral", ephemeral), ("persistent", persistent)]
            .iter()
            .flat_map(|(name, r)| {
                r.phases.iter().map(move |p| {
                    let l = p
                        .offered_per_s
                        .map(fmt_load)
                        .unwrap_or_else(|| "saturation".into());
                    (format!("{name} {l}"), p)
                })
            })
            .collect();
    spikes(&mut out, &labelled);
    let sat = |r: &FanoutReport| {
        r.phases
            .iter()
            .find(|p| p.offered_per_s.is_none())
            .map(|p| p.delivered_per_s())
    };
    if let (Some(e), Some(p)) = (sat(ephemeral), sat(persistent)) {
        if e > 0.0 {
            let _ = writeln!(
                out,
                "\nSaturation throughput with persistence: {:.1}% of ephemeral ({} vs {} deliveries/s).",
                100.0 * p / e,
                fmt_count(p as u64),
                fmt_count(e as u64)
            );
        }
    }
    let mut all = ephemeral.problems.clone();
    for (k, v) in &persistent.problems {
        *all.entry(k.clone()).or_default() += v;
    }
    problems(&mut out, &all);
    out
}

pub fn connections(r: &ConnectionsReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Connections: {} asked, one room\n",
        fmt_count(r.asked as u64)
    );
    out.push_str("| figure | value |\n| --- | ---: |\n");
    let rows: Vec<(&str, String)> = vec![
        ("connections held", fmt_count(r.connected as u64)),
        (
            "upgrades per second (REST touch + upgrade + hello)",
            fmt_count(r.upgrades_per_s() as u64),
        ),
        ("upgrade to hello p50", fmt_us(r.upgrade_latency.p50_us)),
        ("upgrade to hello p99", fmt_us(r.upgrade_latency.p99_us)),
        (
            "server RSS per connection",
            r.rss_per_connection()
                .map(|b| format!("{:.2} KiB", b / 1024.0))
                .unwrap_or_else(|| "n/a".into()),
        ),
        (
            "server RSS before connecting",
            opt_mib(r.server_rss_before_kib),
        ),
        (
            "server RSS with all connected",
            opt_mib(r.server_rss_after_kib),
        ),
        (
            "server open files",
            r.server_fds
                .map(|n| fmt_count(n as u64))
                .unwrap_or_else(|| "n/a".into()),
        ),
        (
            "server CPU s during connect",
            opt_secs(r.connect_usage.server_cpu),
        ),
        ("generator peak RSS", opt_mib(r.generator_peak_rss_kib)),
        (
            "setup (register, login, join)",
            format!("{:.1} s", r.setup.as_secs_f64()),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    out.push_str("\n| broadcast | reached | time to reach all | p50 | p99 |\n| ---: | ---: | ---: | ---: | ---: |\n");
    for (i, b) in r.broadcasts.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            i + 1,
            fmt_count(b.reached),
            fmt_us(b.to_all.as_micros() as u64),
            fmt_us(b.latency.p50_us),
            fmt_us(b.latency.p99_us)
        );
    }
    if !r.failures.is_empty() {
        out.push_str("\nConnections that failed to open:\n");
        for (k, v) in &r.failures {
            let _ = writeln!(out, "- {k}: {v}");
        }
    }
    problems(&mut out, &r.problems);
    out
}
