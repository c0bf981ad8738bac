//! Whether the nodes agree: the newest entries of every room of the run, read through each
//! node's REST API and compared, the reader's own `nonce` apart.

use crate::api;
use crate::error::Result;
use crate::http::HttpClient;
use std::net::SocketAddr;

/// The newest entries of every room of the run, read from each node and compared.
#[derive(Clone, Debug, Default)]
pub struct Consistency {
    pub rooms: usize,
    /// Entries compared per room and node (the newest, at most [`COMPARED`]).
    pub compared: usize,
    /// Rooms whose newest entries and `first_seq` are the same on every node.
    pub identical: usize,
    /// What differed, one line a room (the first few).
    pub differences: Vec<String>,
    /// Entries (over all rooms and nodes after the first) whose `nonce` differs from the
    /// first node's; compared apart from the rest, which ignores `nonce`.
    pub nonce_differences: u64,
    /// One example of a `nonce` difference.
    pub nonce_example: Option<String>,
}

/// Newest entries of a room compared between nodes: the most one history page holds.
pub const COMPARED: usize = 500;

/// Reads the newest entries of each `(room, member's token)` from every node and compares
/// them with the first node's.
pub(super) async fn compare(
    rooms: &[(String, String)],
    nodes: &[(&str, SocketAddr)],
) -> Result<Consistency> {
    let mut clients: Vec<HttpClient> = nodes
        .iter()
        .map(|(_, a)| HttpClient::new(*a, None))
        .collect();
    let mut out = Consistency {
        rooms: rooms.len(),
        compared: COMPARED,
        ..Default::default()
    };
    let path_of = |room: &str| format!("/api/v1/rooms/{room}/messages?limit={COMPARED}");
    for (room, token) in rooms {
        let mut pages = Vec::with_capacity(nodes.len());
        for c in clients.iter_mut() {
            let r = api::call(c, "GET", &path_of(room), Some(token), None).await?;
            if r.status != 200 {
                pages.push(Err(r.status));
            } else {
                pages.push(Ok(r.json()?));
            }
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
