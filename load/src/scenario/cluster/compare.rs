//! Whether the nodes agree: every kept entry of every room of the run, and each room's
//! description and member list, read through each node's REST API and compared (the
//! reader's own `nonce` and members' `online` apart).

use crate::api;
use crate::error::Result;
use crate::http::HttpClient;
use std::net::SocketAddr;

/// Every kept entry of every room of the run, read from each node and compared.
#[derive(Clone, Debug, Default)]
pub struct Consistency {
    /// The nodes compared, the first being the reference.
    pub nodes: Vec<String>,
    pub rooms: usize,
    /// Entries compared, over all rooms, as read from the first node.
    pub compared: usize,
    /// Rooms whose kept entries and `first_seq` are the same on every node.
    pub identical: usize,
    /// Rooms whose `GET /api/v1/rooms/{id}` (members' `online` left out) is the same on
    /// every node.
    pub same_description: usize,
    /// What differed in the descriptions, one line a room (the first few).
    pub description_differences: Vec<String>,
    /// What differed, one line a room (the first few).
    pub differences: Vec<String>,
    /// Entries (over all rooms and nodes after the first) whose `nonce` differs from the
    /// first node's; compared apart from the rest, which ignores `nonce`.
    pub nonce_differences: u64,
    /// One example of a `nonce` difference.
    pub nonce_example: Option<String>,
    /// Sessions of the run checked with `GET /api/v1/me` on every node.
    pub tokens: usize,
    /// Per node, the statuses other than 200 that `GET /api/v1/me` got, with counts.
    pub token_failures: Vec<(String, std::collections::BTreeMap<u16, usize>)>,
}

/// Entries per history page read: the most the contract allows.
const PAGE: usize = 500;

/// Every kept entry of `room`, oldest first, as `{"first_seq", "entries"}`; or the status
/// of a refused read.
async fn timeline(
    c: &mut HttpClient,
    room: &str,
    token: &str,
) -> Result<std::result::Result<serde_json::Value, u16>> {
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut before: Option<u64> = None;
    let first_seq = loop {
        let path = match before {
            Some(b) => format!("/api/v1/rooms/{room}/messages?limit={PAGE}&before={b}"),
            None => format!("/api/v1/rooms/{room}/messages?limit={PAGE}"),
        };
        let r = api::call(c, "GET", &path, Some(token), None).await?;
        if r.status != 200 {
            return Ok(Err(r.status));
        }
        let mut v = r.json()?;
        let first_seq = v["first_seq"].clone();
        let page = match v["entries"].take() {
            serde_json::Value::Array(a) => a,
            _ => Vec::new(),
        };
        let oldest = page.first().and_then(|e| e["seq"].as_u64());
        let full = page.len() == PAGE;
        entries.splice(0..0, page);
        match oldest {
            Some(o) if full && Some(o) > first_seq.as_u64() => before = Some(o),
            _ => break first_seq,
        }
    };
    Ok(Ok(
        serde_json::json!({ "first_seq": first_seq, "entries": entries }),
    ))
}

/// `GET /api/v1/rooms/{id}` without the members' `online`, which follows presence.
async fn description(
    c: &mut HttpClient,
    room: &str,
    token: &str,
) -> Result<std::result::Result<serde_json::Value, u16>> {
    let r = api::call(
        c,
        "GET",
        &format!("/api/v1/rooms/{room}"),
        Some(token),
        None,
    )
    .await?;
    if r.status != 200 {
        return Ok(Err(r.status));
    }
    let mut v = r.json()?;
    if let Some(members) = v["member_list"].as_array_mut() {
        for m in members {
            if let Some(o) = m.as_object_mut() {
                o.remove("online");
            }
        }
    }
    Ok(Ok(v))
}

/// Checks every session in `tokens` on every node, then reads all kept entries and the
/// description of each `(room, member's token)` from every node and compares them with the
/// first node's.
pub(super) async fn compare(
    rooms: &[(String, String)],
    tokens: &[String],
    nodes: &[(&str, SocketAddr)],
) -> Result<Consistency> {
    let mut clients: Vec<HttpClient> = nodes
        .iter()
        .map(|(_, a)| HttpClient::new(*a, None))
        .collect();
    let mut out = Consistency {
        nodes: nodes.iter().map(|(n, _)| n.to_string()).collect(),
        rooms: rooms.len(),
        tokens: tokens.len(),
        ..Default::default()
    };
    // A session made on one node works on every node.
    for ((name, _), c) in nodes.iter().zip(clients.iter_mut()) {
        let mut failures = std::collections::BTreeMap::new();
        for t in tokens {
            let r = api::call(c, "GET", "/api/v1/me", Some(t), None).await?;
            if r.status != 200 {
                *failures.entry(r.status).or_default() += 1;
            }
        }
        out.token_failures.push((name.to_string(), failures));
    }
    for (room, token) in rooms {
        let mut descs = Vec::with_capacity(nodes.len());
        let mut pages = Vec::with_capacity(nodes.len());
        for c in clients.iter_mut() {
            descs.push(description(c, room, token).await?);
            pages.push(timeline(c, room, token).await?);
        }
        let differing: Vec<&str> = nodes
            .iter()
            .zip(&descs)
            .skip(1)
            .filter(|(_, d)| *d != &descs[0])
            .map(|((name, _), _)| *name)
            .collect();
        if differing.is_empty() {
            out.same_description += 1;
        } else if out.description_differences.len() < 10 {
            let members = |d: &std::result::Result<serde_json::Value, u16>| match d {
                Ok(v) => format!(
                    "{} members",
                    v["member_list"].as_array().map(Vec::len).unwrap_or(0)
                ),
                Err(s) => format!("status {s}"),
            };
            out.description_differences.push(format!(
                "room {room}: {} {} differs from {}: {}",
                differing.join(", "),
                descs[1..]
                    .iter()
                    .map(members)
                    .collect::<Vec<_>>()
                    .join(", "),
                nodes[0].0,
                members(&descs[0])
            ));
        }
        if let Ok(v) = &pages[0] {
            out.compared += v["entries"].as_array().map(Vec::len).unwrap_or(0);
        }
        // The reader's own entries carry their nonce; set apart, then compare the rest.
        let nonces: Vec<Vec<serde_json::Value>> = pages
            .iter_mut()
            .map(|p| match p {
                Ok(v) => v["entries"]
                    .as_array_mut()
                    .map(|es| {
                        es.iter_mut()
                            .map(|e| {
                                e.as_object_mut()
                                    .and_then(|o| o.remove("nonce"))
                                    .unwrap_or(serde_json::Value::Null)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            })
            .collect();
        for (i, other) in nonces.iter().enumerate().skip(1) {
            for (k, (a, b)) in nonces[0].iter().zip(other).enumerate() {
                if a != b {
                    out.nonce_differences += 1;
                    if out.nonce_example.is_none() {
                        let seq = pages[0]
                            .as_ref()
                            .ok()
                            .and_then(|v| v["entries"][k]["seq"].as_u64())
                            .unwrap_or(0);
                        out.nonce_example = Some(format!(
                            "room {room}, seq {seq}, read by its author: nonce {a} on {}, {b} on {}",
                            nodes[0].0, nodes[i].0
                        ));
                    }
                }
            }
        }
        let first = &pages[0];
        let mut differs = Vec::new();
        for ((name, _), page) in nodes.iter().zip(&pages).skip(1) {
            if page != first {
                differs.push(format!("{name}: {}", first_difference(first, page)));
            }
        }
        if differs.is_empty() {
            out.identical += 1;
        } else if out.differences.len() < 10 {
            out.differences.push(format!(
                "room {room}: {}: {}; {}",
                nodes[0].0,
                page_summary(first),
                differs.join("; ")
            ));
        }
    }
    Ok(out)
}

/// Where page `b` first differs from page `a`: the entry and the fields that differ.
fn first_difference(
    a: &std::result::Result<serde_json::Value, u16>,
    b: &std::result::Result<serde_json::Value, u16>,
) -> String {
    let (Ok(a), Ok(b)) = (a, b) else {
        return page_summary(b);
    };
    if a["first_seq"] != b["first_seq"] {
        return page_summary(&Ok(b.clone()));
    }
    let none = Vec::new();
    let ea = a["entries"].as_array().unwrap_or(&none);
    let eb = b["entries"].as_array().unwrap_or(&none);
    if ea.len() != eb.len() {
        return page_summary(&Ok(b.clone()));
    }
    let differing = ea.iter().zip(eb).filter(|(x, y)| x != y).count();
    let Some((x, y)) = ea.iter().zip(eb).find(|(x, y)| x != y) else {
        return "same entries, other fields differ".into();
    };
    let mut fields = Vec::new();
    if let (Some(x), Some(y)) = (x.as_object(), y.as_object()) {
        for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
            if x.get(k) != y.get(k) {
                let show = |v: Option<&serde_json::Value>| {
                    let t = v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into());
                    t.chars().take(60).collect::<String>()
                };
                fields.push(format!("{k} {} vs {}", show(x.get(k)), show(y.get(k))));
            }
        }
    }
    format!(
        "{differing} of {} entries differ, the first at seq {}: {}",
        ea.len(),
        x["seq"],
        fields.join(", ")
    )
}

/// `first_seq`, entries and the seq range of a history page, or its error status.
fn page_summary(page: &std::result::Result<serde_json::Value, u16>) -> String {
    match page {
        Err(status) => format!("status {status}"),
        Ok(v) => {
            let entries = v["entries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let seq = |e: Option<&serde_json::Value>| {
                e.and_then(|e| e["seq"].as_u64())
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            format!(
                "first_seq {}, {} entries, seqs {}..{}",
                v["first_seq"],
                entries.len(),
                seq(entries.first()),
                seq(entries.last())
            )
        }
    }
}
