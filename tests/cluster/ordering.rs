//! Messages posted at the same time through every node: every member's connection, on every
//! node, receives all of them in one seq order with no gaps, and each sender's acknowledgement
//! names the seq everybody else saw.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::time::Instant;

use crate::common::*;
use crate::{hello_last_seq, same_history_everywhere, Cluster, SLOW};

const NODES: usize = 3;
const USERS: usize = 6;
const PER_USER: usize = 30;

/// What one connection saw: the live entries of the room in arrival order, and the acks of
/// its own messages by nonce.
struct Seen {
    label: String,
    first_expected: u64,
    entries: Vec<Value>,
    acks: Vec<Value>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_on_every_node_arrive_everywhere_in_one_order() {
    let cluster = Cluster::start("order", NODES, &[]).await;
    let addrs: Vec<_> = (0..NODES).map(|i| cluster.addr(i)).collect();
    let mut tokens = Vec::new();
    for u in 0..USERS {
        tokens.push(user(addrs[u % NODES], &format!("user{u}")).await);
    }
    let general = room(addrs[0], &tokens[0], "general").await;
    for (u, token) in tokens.iter().enumerate().skip(1) {
        let r = join(addrs[u % NODES], token, &general).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
    }

    // Every node has applied every join before anyone connects (a join through one node
    // reaches the others a moment later).
    for &addr in &addrs {
        let path = format!("/api/v1/rooms/{general}");
        assert!(
            crate::within(SLOW, || async {
                get(addr, &path, Some(&tokens[0])).await.json()["members"] == USERS
            })
            .await,
            "{addr} never saw every join"
        );
    }

    // Each user has a connection on two nodes; the first one sends.
    let mut conns = Vec::new();
    for (u, token) in tokens.iter().enumerate() {
        for k in 0..2 {
            let node = (u + k) % NODES;
            let (w, hello) = ws_hello(addrs[node], token).await;
            let label = format!("user{u} on node {node}");
            conns.push((u, k == 0, label, w, hello_last_seq(&hello, &general)));
        }
    }

    let total = USERS * PER_USER;
    let mut tasks = Vec::new();
    for (u, sends, label, mut w, last) in conns {
        let general = general.clone();
        tasks.push(tokio::spawn(async move {
            if sends {
                for i in 0..PER_USER {
                    let text = format!("user{u} message {i}");
                    w.say(&general, &text, &format!("{u}-{i}")).await;
                }
            }
            let mut seen = Seen {
                label,
                first_expected: last + 1,
                entries: Vec::new(),
                acks: Vec::new(),
            };
            let deadline = Instant::now() + SLOW;
            let mut messages = 0;
            while messages < total {
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(f) = w.next_within(left).await else {
                    panic!(
                        "{}: only {messages} of {total} messages arrived",
                        seen.label
                    );
                };
                if f["type"] == "error" {
                    panic!("{}: {f}", seen.label);
                }
                if f["type"] != "entry" || f["room"] != general.as_str() {
                    continue;
                }
                if f["kind"] == "message" {
                    messages += 1;
                }
                if f.get("nonce").is_some() {
                    seen.acks.push(f.clone());
                }
                seen.entries.push(as_entry(&f));
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.expect("a connection's task"));
    }

    // One seq order, no gaps, on every connection; the same entry at each seq everywhere.
    let mut by_seq: BTreeMap<u64, (Value, String)> = BTreeMap::new();
    for seen in &all {
        let seqs: Vec<u64> = seen.entries.iter().map(seq).collect();
        let expected: Vec<u64> = (seen.first_expected..).take(seqs.len()).collect();
        assert_eq!(
            seqs, expected,
            "{}: seqs out of order or with gaps",
            seen.label
        );
        for e in &seen.entries {
            let (first, who) = by_seq
                .entry(seq(e))
                .or_insert_with(|| (e.clone(), seen.label.clone()));
            assert_eq!(e, first, "seq {} differs: {} vs {who}", seq(e), seen.label);
        }
    }

    // Every message once; each sender's own in the order sent, acked with the seq all saw.
    let messages: Vec<&Value> = by_seq
        .values()
        .map(|(e, _)| e)
        .filter(|e| e["kind"] == "message")
        .collect();
    assert_eq!(messages.len(), total);
    for u in 0..USERS {
        let mine: Vec<&str> = messages
            .iter()
            .filter(|e| e["from"] == format!("user{u}").as_str())
            .map(|e| e["text"].as_str().unwrap())
            .collect();
        let sent: Vec<String> = (0..PER_USER)
            .map(|i| format!("user{u} message {i}"))
            .collect();
        assert_eq!(mine, sent, "user{u}'s messages");
    }
    for seen in &all {
        for ack in &seen.acks {
            assert_eq!(&by_seq[&seq(ack)].0, &as_entry(ack), "{}'s ack", seen.label);
        }
    }

    // And the same on each node afterwards, through the history call.
    let kept = same_history_everywhere(&addrs, &tokens[0], &general).await;
    for e in &kept {
        if let Some((live, _)) = by_seq.get(&seq(e)) {
            assert_eq!(e, live, "history differs from what was delivered");
        }
    }
    assert_eq!(seq(kept.last().unwrap()), *by_seq.keys().last().unwrap());
}
