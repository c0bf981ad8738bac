//! The presence storm's table: 4002 closes, presence frames, final views, time to converge,
//! and what the storm cost the server.

use super::{gen_load, opt_mib, opt_secs, other_load, problems};
use crate::scenario::presence::StormReport;
use crate::stats::{fmt_count, fmt_us};
use std::fmt::Write;

fn count(v: impl Into<u64>) -> String {
    fmt_count(v.into())
}

fn opt_count(v: Option<usize>) -> String {
    v.map(|n| fmt_count(n as u64))
        .unwrap_or_else(|| "n/a".into())
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn presence(r: &StormReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Presence storm: {} members of one room reconnecting at once after a restart\n",
        count(r.members as u64)
    );
    let outbound = match r.max_outbound_bytes {
        None => "1 MiB (the server's default)".to_owned(),
        Some(b) => format!("{} bytes", fmt_count(b)),
    };
    let closes = if r.other_closes.is_empty() {
        "none".to_owned()
    } else {
        r.other_closes
            .iter()
            .map(|(code, n)| match code {
                0 => format!("no close frame: {n}"),
                c => format!("{c}: {n}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let closed = r.closed_4002 + r.other_closes.values().sum::<usize>();
    let converged = match r.converged {
        Some(d) => secs(d),
        None if closed > 0 => format!("never: {} connections closed", count(closed as u64)),
        None if r.opened < r.members => format!(
            "never: {} connections did not open",
            count((r.members - r.opened) as u64)
        ),
        None if r.timed_out => format!("not within {} (timeout)", secs(r.limit)),
        None => "never".to_owned(),
    };
    let mean_owed = if r.opened > 0 {
        count((r.owed as f64 / r.opened as f64).round() as u64)
    } else {
        "n/a".into()
    };
    let upgrades_per_s = if r.open_wall.as_secs_f64() > 0.0 {
        count((r.opened as f64 / r.open_wall.as_secs_f64()) as u64)
    } else {
        "n/a".into()
    };
    let rows: Vec<(&str, String)> = vec![
        ("server `--max-outbound-bytes`", outbound),
        (
            "members online before the storm (server's member list)",
            opt_count(r.online_before),
        ),
        (
            "connections opened (upgrades in flight at once)",
            format!(
                "{} ({})",
                count(r.opened as u64),
                count(r.concurrency as u64)
            ),
        ),
        ("**closed with 4002**", count(r.closed_4002 as u64)),
        ("other closes by the server", closes),
        ("presence frames received", count(r.frames)),
        ("of which `online: false`", count(r.offline_frames)),
        (
            "presence frames per connection, p50 / max",
            format!("{} / {}", count(r.frames_p50), count(r.frames_max)),
        ),
        ("members owed per connection (mean)", mean_owed),
        ("owed members never told online", count(r.missing)),
        (
            "connections left told offline about a connected member",
            count(r.told_offline as u64),
        ),
        (
            "connections whose final view is complete",
            format!(
                "{} of {}",
                count(r.complete as u64),
                count(r.members as u64)
            ),
        ),
        (
            "members online at the end (server's member list)",
            opt_count(r.online_after),
        ),
        ("first upgrade to the last `hello`", secs(r.open_wall)),
        ("upgrades per second", upgrades_per_s),
        (
            "upgrade to `hello` p50 / p99",
            format!(
                "{} / {}",
                fmt_us(r.upgrade_latency.p50_us),
                fmt_us(r.upgrade_latency.p99_us)
            ),
        ),
        ("**first upgrade until every view is complete**", converged),
        (
            "server CPU s, first upgrade to the end of the wait",
            opt_secs(r.usage.server_cpu),
        ),
        (
            "server peak RSS over the storm",
            opt_mib(r.usage.server_peak_rss_kib),
        ),
        (
            "server RSS before / after",
            format!(
                "{} / {}",
                opt_mib(r.rss_before_kib),
                opt_mib(r.rss_after_kib)
            ),
        ),
        ("generator CPU", gen_load(&r.usage)),
        ("other CPU (noise)", other_load(&r.usage)),
        ("wait (first upgrade to the figures)", secs(r.usage.wall)),
        (
            "setup (register, login, join); restart",
            format!("{}; {}", secs(r.setup), secs(r.restart)),
        ),
    ];
    out.push_str("| figure | value |\n| --- | ---: |\n");
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    if r.stranger_frames > 0 {
        let _ = writeln!(
            out,
            "\n{} presence frames named no member or could not be read.",
            count(r.stranger_frames)
        );
    }
    if !r.open_failures.is_empty() {
        out.push_str("\nConnections that failed to open:\n");
        for (k, v) in &r.open_failures {
            let _ = writeln!(out, "- {k}: {v}");
        }
    }
    problems(&mut out, &r.problems);
    out
}
