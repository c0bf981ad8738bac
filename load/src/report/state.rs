//! The kept-state scenario's tables: memory per kept entry, the restart, and acknowledgement
//! latency during a compaction.

use super::{opt_mib, other_load, problems};
use crate::scenario::state::StateReport;
use crate::stats::{fmt_count, fmt_us};
use std::fmt::Write;

fn bytes_each(v: Option<f64>) -> String {
    v.map(|b| format!("{b:.0} B"))
        .unwrap_or_else(|| "n/a".into())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn table(out: &mut String, rows: &[(String, String, &str)]) {
    out.push_str("| figure | value | target |\n| --- | ---: | ---: |\n");
    for (k, v, t) in rows {
        let _ = writeln!(out, "| {k} | {v} | {t} |");
    }
}

pub fn state(r: &StateReport) -> String {
    let mut out = String::new();
    let entries = fmt_count(r.entries);
    let _ = writeln!(
        out,
        "### Kept state: {entries} entries of {}-byte text ({} rooms × {}, `--history {}`)\n",
        r.text_len,
        fmt_count(r.rooms as u64),
        fmt_count(r.history as u64),
        r.history
    );
    let fill_rate = r.entries as f64 / r.fill.as_secs_f64().max(1e-9);
    table(
        &mut out,
        &[
            (
                format!(
                    "fill: {} senders, {} messages unacknowledged at most",
                    r.senders,
                    fmt_count(r.window as u64)
                ),
                format!(
                    "{}, {} messages/s",
                    secs(r.fill),
                    fmt_count(fill_rate as u64)
                ),
                "",
            ),
            (
                "server RSS: empty server, 1 s after its first `/healthz` 200".into(),
                opt_mib(r.rss_empty_kib),
                "",
            ),
            (
                "server RSS: accounts, rooms and sender connections made, before the fill".into(),
                opt_mib(r.rss_before_kib),
                "",
            ),
            (
                "server RSS: after the fill, 1 s after the last ack and any compaction".into(),
                opt_mib(r.rss_after_kib),
                "",
            ),
            (
                "**live, per kept entry**: (after − before the fill) ÷ kept entries".into(),
                bytes_each(r.live_per_entry()),
                "≤ 250 B",
            ),
            (
                "server RSS: restarted server, steady (below)".into(),
                opt_mib(r.steady_kib),
                "",
            ),
            (
                "**after restart, per kept entry**: (steady − empty server) ÷ kept entries".into(),
                bytes_each(r.restart_per_entry()),
                "≤ 250 B",
            ),
            (
                "data directory at stop: journal + snapshot".into(),
                format!(
                    "{} + {} ({:.0} B per kept entry)",
                    mib(r.journal_bytes),
                    mib(r.snapshot_bytes),
                    (r.journal_bytes + r.snapshot_bytes) as f64 / r.entries.max(1) as f64
                ),
                "",
            ),
            ("stop: SIGTERM to exit".into(), secs(r.stop), ""),
        ],
    );

    let _ = writeln!(out, "\n### Restart on {entries} kept entries\n");
    table(
        &mut out,
        &[
            (
                "restart: spawn to the first `/healthz` 200".into(),
                secs(r.restart),
                "≤ 2 s at 1M entries",
            ),
            (
                "recovery peak RSS (`VmHWM` at the first 200)".into(),
                opt_mib(r.recovery_peak_kib),
                "",
            ),
            (
                "steady RSS (`VmRSS` 1 s later)".into(),
                opt_mib(r.steady_kib),
                "",
            ),
            (
                "peak ÷ steady".into(),
                r.peak_ratio()
                    .map(|x| format!("{x:.2}×"))
                    .unwrap_or_else(|| "n/a".into()),
                "≤ 1.5×",
            ),
        ],
    );

    let p = &r.probe;
    let _ = writeln!(
        out,
        "\n### Acknowledgement latency during a compaction of {entries} kept entries: one message every {:.0} ms to the probe's own room\n",
        1000.0 / r.probe_rate
    );
    let at = |ns: u64| ns.saturating_sub(r.probe_start_ns) as f64 / 1e9;
    let compaction = match r.compactions.first() {
        None => format!("none within {:.0} s", r.probe_limit.as_secs_f64()),
        Some(c) => format!(
            "first file change between {:.3} s and {:.3} s; snapshot in place at {}; snapshot {}{}",
            at(c.quiet_ns),
            at(c.seen_ns),
            c.done_ns
                .map(|d| format!("{:.3} s", at(d)))
                .unwrap_or_else(|| "never".into()),
            c.snapshot_bytes.map(mib).unwrap_or_else(|| "n/a".into()),
            if r.compactions.len() > 1 {
                format!(" ({} compactions in all)", r.compactions.len())
            } else {
                String::new()
            }
        ),
    };
    table(
        &mut out,
        &[
            (
                "probe messages sent / acknowledged".into(),
                format!("{} / {}", fmt_count(p.sent), fmt_count(p.acked)),
                "",
            ),
            (
                "ack latency p50 / p99 / max, whole probe".into(),
                format!(
                    "{} / {} / {}",
                    fmt_us(p.all.p50_us),
                    fmt_us(p.all.p99_us),
                    fmt_us(p.all.max_us)
                ),
                "",
            ),
            (
                "`--compact-bytes` of the restarted server (journal at restart + margin)".into(),
                fmt_count(r.compact_bytes),
                "",
            ),
            ("compaction, seconds into the probe".into(), compaction, ""),
            (
                "**acks in flight during the compaction**: count, p50 / max".into(),
                format!(
                    "{}; {} / **{}**",
                    fmt_count(p.during.count),
                    fmt_us(p.during.p50_us),
                    fmt_us(p.during.max_us)
                ),
                "max ≤ 20 ms",
            ),
            (
                "acks outside it: count, p99 / max".into(),
                format!(
                    "{}; {} / {}",
                    fmt_count(p.outside.count),
                    fmt_us(p.outside.p99_us),
                    fmt_us(p.outside.max_us)
                ),
                "",
            ),
            (
                "server CPU / other processes' CPU (noise) over the probe, share of one core"
                    .into(),
                format!(
                    "{} / {}",
                    r.probe_usage
                        .server_cpu
                        .map(|c| format!(
                            "{:.0}%",
                            100.0 * c.as_secs_f64() / r.probe_usage.wall.as_secs_f64().max(1e-9)
                        ))
                        .unwrap_or_else(|| "n/a".into()),
                    other_load(&r.probe_usage)
                ),
                "",
            ),
        ],
    );
    if !p.slowest.is_empty() {
        let list: Vec<String> = p
            .slowest
            .iter()
            .map(|s| {
                format!(
                    "{:.2}s: {}{}",
                    s.at_s,
                    fmt_us(s.latency_us),
                    if s.during { "*" } else { "" }
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "\nSlowest acknowledgements (seconds into the probe at sending: latency; * = in flight during the compaction): {}",
            list.join(", ")
        );
    }
    problems(&mut out, &r.problems);
    out
}
