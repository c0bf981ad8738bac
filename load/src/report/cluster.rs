//! The cluster scenario's tables: cross-node delivery, records through the stream, catch-up
//! of a fresh node, and the CPU and memory of every process in each.

use super::{opt_mib, opt_secs, problems};
use crate::scenario::cluster::{ClusterReport, ClusterUsage, RestartReport};
use crate::stats::{fmt_count, fmt_us};
use std::fmt::Write;

/// `n1 1.23 s / 45.6 MiB, n2 …, nats …; generator 40%, other 3%`.
fn usage(u: &ClusterUsage) -> String {
    let procs: Vec<String> = u
        .procs
        .iter()
        .map(|(name, p)| {
            format!(
                "{name} {} s / {}",
                opt_secs(p.server_cpu),
                opt_mib(p.server_peak_rss_kib)
            )
        })
        .collect();
    let wall = u.wall().as_secs_f64();
    let share = |d: std::time::Duration| {
        if wall > 0.0 {
            format!("{:.0}%", 100.0 * d.as_secs_f64() / wall)
        } else {
            "n/a".into()
        }
    };
    format!(
        "{}; generator {}, other {}",
        procs.join(", "),
        share(u.generator_cpu()),
        u.other_cpu.map(share).unwrap_or_else(|| "n/a".into())
    )
}

pub fn cluster(r: &ClusterReport) -> String {
    let mut out = String::new();
    out.push_str("Processes:\n");
    for c in &r.commands {
        let _ = writeln!(out, "- {c}");
    }

    let d = &r.delivery;
    let _ = writeln!(
        out,
        "\n### Cluster: cross-node delivery, one room of {} members ({} on n1, {} on n2)\n",
        d.members,
        d.on_n1,
        d.members - d.on_n1
    );
    out.push_str(
        "| senders | receivers | offered deliveries/s | messages sent | deliveries expected | received | lost | delivered/s | p50 | p99 | p99.9 | max |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for run in &d.runs {
        let secs = run.active.as_secs_f64();
        for g in &run.groups {
            let _ = writeln!(
                out,
                "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                run.label,
                g.label,
                g.receivers,
                fmt_count(run.offered_per_s as u64),
                fmt_count(run.sent),
                fmt_count(g.expected),
                fmt_count(g.received),
                fmt_count(g.expected.saturating_sub(g.received)),
                if secs > 0.0 {
                    fmt_count((g.received as f64 / secs) as u64)
                } else {
                    "n/a".into()
                },
                fmt_us(g.latency.p50_us),
                fmt_us(g.latency.p99_us),
                fmt_us(g.latency.p999_us),
                fmt_us(g.latency.max_us),
            );
        }
    }
    out.push_str("\nCPU time and peak RSS per process over each run (and its drain):\n");
    for run in &d.runs {
        let _ = writeln!(
            out,
            "- {}: {}; missed sends {}, send lag p99 {}",
            run.label,
            usage(&run.usage),
            fmt_count(run.missed),
            fmt_us(run.send_lag.p99_us)
        );
    }
    problems(&mut out, &d.problems);

    let rec = &r.records;
    let _ = writeln!(
        out,
        "\n### Cluster: records through the stream, {} one-member rooms, their senders {} on n1 and {} on n2, closed loop\n",
        rec.senders,
        rec.senders / 2,
        rec.senders - rec.senders / 2
    );
    out.push_str(
        "| messages in flight | sent | acknowledged | acknowledged/s | ack p50 | ack p99 | ack p99.9 | ack max | n1 CPU s | n2 CPU s | nats CPU s | n1 / n2 / nats peak RSS |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for s in &rec.steps {
        let cpu = |i: usize| {
            s.usage
                .procs
                .get(i)
                .map(|(_, u)| opt_secs(u.server_cpu))
                .unwrap_or_else(|| "n/a".into())
        };
        let rss: Vec<String> = s
            .usage
            .procs
            .iter()
            .map(|(_, u)| opt_mib(u.server_peak_rss_kib))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt_count(s.window),
            fmt_count(s.sent),
            fmt_count(s.acked),
            fmt_count(s.acked_per_s() as u64),
            fmt_us(s.latency.p50_us),
            fmt_us(s.latency.p99_us),
            fmt_us(s.latency.p999_us),
            fmt_us(s.latency.max_us),
            cpu(0),
            cpu(1),
            cpu(2),
            rss.join(" / "),
        );
    }
    out.push_str("\nPer step:\n");
    for s in &rec.steps {
        let _ = writeln!(
            out,
            "- {} in flight: {}",
            fmt_count(s.window),
            usage(&s.usage)
        );
    }
    let _ = writeln!(
        out,
        "\nMessages posted in these rooms in all, the topping up for the catch-up included: {} ({:.1} s of topping up).",
        fmt_count(rec.posted),
        rec.seed.as_secs_f64()
    );
    problems(&mut out, &rec.problems);

    let c = &r.catch_up;
    out.push_str("\n### Cluster: catch-up of a fresh node (empty data directory)\n\n");
    out.push_str(
        "| snapshot loaded at | changes applied after it | process start to listening | changes/s (start to listening) | node's own catch-up time | changes/s (node's own) | node CPU s | node peak RSS | n1 RSS then |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let _ = writeln!(
        out,
        "| {} | {} | {:.2} s | {} | {} | {} | {} | {} | {} |",
        c.snapshot
            .map(|s| if s == 0 { "none".into() } else { fmt_count(s) })
            .unwrap_or_else(|| "not logged".into()),
        c.changes
            .map(fmt_count)
            .unwrap_or_else(|| "not logged".into()),
        c.start_to_listening.as_secs_f64(),
        c.per_s_wall()
            .map(|v| fmt_count(v as u64))
            .unwrap_or_else(|| "- (snapshot)".into()),
        c.logged_ms
            .map(|ms| format!("{:.2} s", ms as f64 / 1000.0))
            .unwrap_or_else(|| "n/a".into()),
        c.per_s_logged()
            .map(|v| fmt_count(v as u64))
            .unwrap_or_else(|| "- (snapshot)".into()),
        opt_secs(c.cpu),
        opt_mib(c.peak_rss_kib),
        opt_mib(c.n1_rss_kib),
    );
    for (i, f) in c.failures.iter().enumerate() {
        let _ = writeln!(
            out,
            "\nStart {} of the fresh node FAILED (it was started again on the same data directory a second later): {}",
            i + 1,
            f.replace('\n', " / ")
        );
    }
    if let Some(line) = &c.logged_line {
        let _ = writeln!(out, "\nThe node's log: `{line}`");
    }
    restart(&mut out, &r.restart);
    let snaps: Vec<String> = r
        .snapshots
        .iter()
        .map(|(n, k)| format!("{n} {k}"))
        .collect();
    let _ = writeln!(
        out,
        "\nSnapshots written during the run (`wrote a snapshot` log lines): {}.",
        snaps.join(", ")
    );
    for l in &r.snapshot_lines {
        let _ = writeln!(out, "- {l}");
    }
    let k = &r.consistency;
    let all = match k.nodes.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => k.nodes.join(", "),
    };
    if k.identical == k.rooms {
        let _ = writeln!(
            out,
            "\nAfter the catch-up, every kept entry (without `nonce`; {} entries as read from n1) and `first_seq` of all {} rooms are the same on {all}.",
            fmt_count(k.compared as u64),
            k.rooms
        );
    } else {
        let _ = writeln!(
            out,
            "\nAfter the catch-up, the kept entries (without `nonce`) or `first_seq` DIFFER between nodes in {} of {} rooms (the first 10):",
            k.rooms - k.identical,
            k.rooms
        );
        for d in &k.differences {
            let _ = writeln!(out, "- {d}");
        }
    }
    if k.same_description == k.rooms {
        let _ = writeln!(
            out,
            "\nEach room's `GET /api/v1/rooms/{{id}}`, member list included (without `online`), is the same on {all}."
        );
    } else {
        let _ = writeln!(
            out,
            "\n`GET /api/v1/rooms/{{id}}` (without members' `online`) DIFFERS between nodes in {} of {} rooms (the first 10):",
            k.rooms - k.same_description,
            k.rooms
        );
        for d in &k.description_differences {
            let _ = writeln!(out, "- {d}");
        }
    }
    let refused: Vec<String> = k
        .token_failures
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(n, f)| format!("{n}: {f:?}"))
        .collect();
    if refused.is_empty() {
        let _ = writeln!(
            out,
            "\nAll {} sessions of the run (made on n1 or n2) answer `GET /api/v1/me` with 200 on {all}.",
            k.tokens
        );
    } else {
        let _ = writeln!(
            out,
            "\n`GET /api/v1/me` with the run's {} sessions did NOT answer 200 everywhere (node: status and count): {}.",
            k.tokens,
            refused.join("; ")
        );
    }
    if k.nonce_differences > 0 {
        let _ = writeln!(
            out,
            "\n`nonce` of the reader's own entries, compared apart: {} entries differ between n1 and the other nodes (null = absent); for example {}.",
            fmt_count(k.nonce_differences),
            k.nonce_example.as_deref().unwrap_or("-")
        );
    } else {
        let _ = writeln!(
            out,
            "\n`nonce` of the reader's own entries, compared apart: the same on {all}."
        );
    }
    if r.log_problems.is_empty() {
        out.push_str("\nNo WARN or ERROR line in the nodes' logs.\n");
    } else {
        let _ = writeln!(
            out,
            "\nWARN and ERROR lines in the nodes' logs ({}; the first 20):",
            r.log_problems.len()
        );
        for l in r.log_problems.iter().take(20) {
            let _ = writeln!(out, "- {l}");
        }
    }
    out
}

/// The table of n2's restart on its data directory.
fn restart(out: &mut String, r: &RestartReport) {
    out.push_str("\n### Cluster: restart of n2 on its data directory (clean stop)\n\n");
    if let Some(f) = &r.failure {
        let _ = writeln!(out, "FAILED: {f}");
        return;
    }
    out.push_str(
        "| resumed from | at stream sequence | changes read after it | process start to listening | node's own catch-up time | node CPU s | node peak RSS |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let c = r.caught.as_ref();
    let _ = writeln!(
        out,
        "| {} | {} | {} | {:.2} s | {} | {} | {} |",
        c.map_or("not logged", |c| if c.from_data_dir {
            "its data directory"
        } else {
            "the latest snapshot"
        }),
        c.map_or_else(|| "-".into(), |c| fmt_count(c.snapshot)),
        c.map_or_else(|| "-".into(), |c| fmt_count(c.changes)),
        r.start_to_listening.as_secs_f64(),
        c.map_or_else(
            || "n/a".into(),
            |c| format!("{:.2} s", c.ms as f64 / 1000.0)
        ),
        opt_secs(r.cpu),
        opt_mib(r.peak_rss_kib),
    );
    if let Some(c) = c {
        let _ = writeln!(out, "\nThe node's log: `{}`", c.line);
    }
}
