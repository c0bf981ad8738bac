//! The read-marker scenario's tables (issue 12).

use super::{gen_load, opt_mib, opt_secs, other_load, problems, spikes};
use crate::scenario::read_markers::{fmt_rate, MarkerPhase, ReadMarkersReport};
use crate::scenario::PhaseResult;
use crate::stats::{fmt_count, fmt_us};
use std::collections::BTreeMap;
use std::fmt::Write;

const HEAD: &str = "| run | offered deliveries/s | messages sent | delivered/s | lost | read frames sent | read frames/s | p50 | p99 | p99.9 | max | server CPU s | deliveries per server CPU-s | journal bytes | journal bytes per message | `read_markers` records | `read_markers` bytes | `read_markers` bytes per message | server peak RSS | generator CPU | other CPU | missed sends | send lag p99 |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";

fn na() -> String {
    "n/a".into()
}

fn opt_f(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(na)
}

fn row(out: &mut String, p: &MarkerPhase) {
    let r = &p.result;
    let markers = p.journal.as_ref().map(|j| j.kind("read_markers"));
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.label,
        r.offered_per_s
            .map(|o| fmt_count(o as u64))
            .unwrap_or_else(|| "closed loop".into()),
        fmt_count(r.sent),
        fmt_count(r.delivered_per_s() as u64),
        fmt_count(r.lost()),
        fmt_count(p.reads),
        fmt_count(p.reads_per_s() as u64),
        fmt_us(r.latency.p50_us),
        fmt_us(r.latency.p99_us),
        fmt_us(r.latency.p999_us),
        fmt_us(r.latency.max_us),
        opt_secs(r.usage.server_cpu),
        r.per_server_cpu_s()
            .map(|v| fmt_count(v as u64))
            .unwrap_or_else(na),
        p.journal_bytes.map(fmt_count).unwrap_or_else(na),
        opt_f(p.journal_bytes_per_message(), 1),
        markers.map(|k| fmt_count(k.records)).unwrap_or_else(na),
        markers.map(|k| fmt_count(k.bytes)).unwrap_or_else(na),
        opt_f(p.marker_bytes_per_message(), 1),
        opt_mib(r.usage.server_peak_rss_kib),
        gen_load(&r.usage),
        other_load(&r.usage),
        fmt_count(r.missed),
        fmt_us(r.send_lag.p99_us),
    );
}

/// `a / b` of two optional figures; whole numbers with thousands separators.
fn pair(a: Option<f64>, b: Option<f64>, digits: usize) -> String {
    let show = |v: Option<f64>| match v {
        Some(v) if digits == 0 => fmt_count(v.max(0.0).round() as u64),
        v => opt_f(v, digits),
    };
    format!("{} / {}", show(a), show(b))
}

pub fn read_markers(r: &ReadMarkersReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Read markers: one room of {} members, {} senders, `--data-dir` at the default `--fsync interval`; every member answers each message entry with a `read` frame (\"markers\") or not (\"no markers\")\n",
        fmt_count(r.members as u64),
        r.senders
    );
    out.push_str(HEAD);
    for p in &r.phases {
        row(&mut out, p);
    }
    let labelled: Vec<(String, &PhaseResult)> = r
        .phases
        .iter()
        .map(|p| (p.result.label.clone(), &p.result))
        .collect();
    spikes(&mut out, &labelled);

    // Baseline and answering run of each load, side by side.
    let mut by_load: Vec<(String, Option<&MarkerPhase>, Option<&MarkerPhase>)> = Vec::new();
    for p in &r.phases {
        let name = match p.rate {
            Some(rate) => format!("{} messages/s", fmt_rate(rate)),
            None => format!("unthrottled ({} in flight)", r.window),
        };
        let slot = match by_load.iter_mut().find(|(n, _, _)| *n == name) {
            Some(s) => s,
            None => {
                by_load.push((name, None, None));
                by_load.last_mut().expect("just pushed")
            }
        };
        if p.answering {
            slot.2 = Some(p);
        } else {
            slot.1 = Some(p);
        }
    }
    out.push_str(
        "\nWhat the markers cost, each figure without / with them:\n\n\
         | load | delivered/s | p99 | server CPU µs per message | journal bytes per message | of which `read_markers` | journal bytes per message added by the markers |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (name, without, with) in &by_load {
        let f = |p: &Option<&MarkerPhase>, get: &dyn Fn(&MarkerPhase) -> Option<f64>| {
            (*p).and_then(get)
        };
        let delivered = |p: &MarkerPhase| Some(p.result.delivered_per_s());
        let p99 = |p: &Option<&MarkerPhase>| {
            p.map(|p| fmt_us(p.result.latency.p99_us))
                .unwrap_or_else(na)
        };
        let added = match (
            f(with, &MarkerPhase::journal_bytes_per_message),
            f(without, &MarkerPhase::journal_bytes_per_message),
        ) {
            (Some(a), Some(b)) => format!("{:.1}", a - b),
            _ => na(),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} / {} | {} | {} | {} | {added} |",
            pair(f(without, &delivered), f(with, &delivered), 0),
            p99(without),
            p99(with),
            pair(
                f(without, &MarkerPhase::server_cpu_us_per_message),
                f(with, &MarkerPhase::server_cpu_us_per_message),
                0
            ),
            pair(
                f(without, &MarkerPhase::journal_bytes_per_message),
                f(with, &MarkerPhase::journal_bytes_per_message),
                1
            ),
            pair(
                f(without, &MarkerPhase::marker_bytes_per_message),
                f(with, &MarkerPhase::marker_bytes_per_message),
                1
            ),
        );
    }

    // Every kind of record the journal got over the measured phases.
    let mut kinds: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for p in &r.phases {
        if let Some(j) = &p.journal {
            for (k, t) in &j.kinds {
                let e = kinds.entry(k.as_str()).or_default();
                e.0 += t.records;
                e.1 += t.bytes;
            }
        }
    }
    if !kinds.is_empty() {
        let list: Vec<String> = kinds
            .iter()
            .map(|(k, (n, b))| format!("`{k}` {} records, {} bytes", fmt_count(*n), fmt_count(*b)))
            .collect();
        let _ = writeln!(
            out,
            "\nJournal records over the measured phases, by kind (from the journal files): {}.",
            list.join("; ")
        );
    }
    if let Some(e) = &r.scan_error {
        let _ = writeln!(out, "\nThe journal files could not be read: {e}.");
    }
    let compactions: u64 = r.phases.iter().filter_map(|p| p.snapshots).sum();
    if compactions > 0 {
        let _ = writeln!(
            out,
            "\n{compactions} compaction(s) during the measured phases: records in journal files a compaction deleted before they were read are missing from the record counts (the `/metrics` bytes are complete)."
        );
    }
    match &r.check {
        Some(c) => {
            let show = |v: Option<u64>| v.map(fmt_count).unwrap_or_else(na);
            let _ = writeln!(
                out,
                "\nAfter the run, member `{}` sees the room at `read_seq` {} of `last_seq` {}, `unread` {}.",
                c.username,
                show(c.read_seq),
                show(c.last_seq),
                show(c.unread)
            );
        }
        None => out.push_str("\nThe member's room could not be read after the run.\n"),
    }
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
