//! A connection opened while entries are on their way to the journal. `hello` says how far
//! each room's timeline goes (`last_seq`), and the live stream must carry on from exactly
//! there: the first entry after `hello` is `last_seq + 1`, then every next one, none missing
//! and none twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::common::process::{start, TempDir};
use crate::common::*;
use crate::hello_last_seq;

/// Users who keep reconnecting, one task each.
const READERS: usize = 12;
/// How long they keep at it.
const RUN: Duration = Duration::from_secs(10);
/// How long one connection watches the room before it closes...
const WATCH: Duration = Duration::from_millis(60);
/// ...unless it has seen this many entries first.
const ENOUGH: usize = 4;

/// What one connection saw: `hello`'s `last_seq` for the room, then the seqs of the room's
/// entries that arrived after it.
struct Seen {
    last_seq: u64,
    seqs: Vec<u64>,
}

/// One user posts every millisecond into a room while a dozen others keep opening a
/// connection, reading `hello` and a few entries, and closing it; about a thousand
/// connections in all. `--fsync always` makes each commit slow, so entries are nearly always
/// in flight when a connection opens.
///
/// What a user notices when this breaks: a freshly opened client (a reconnect, a second
/// device) silently lacks a message that everyone else saw. `hello` told it the room was at
/// `last_seq` L, so it will not ask for L+1 again, yet L+1 never came on the live stream:
/// the server had already fixed that entry's recipients when it handed it to the journal,
/// before this connection subscribed, while `hello` reports only what is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_never_misses_an_entry() {
    let tmp = TempDir::new("newconn");
    let server = start(&tmp.data(), &["--fsync", "always"]);
    let addr = server.addr;
    let sender = user(addr, "sender").await;
    let id = room(addr, &sender, "busy").await;
    let mut readers = Vec::new();
    for i in 0..READERS {
        let token = user(addr, &format!("reader{i}")).await;
        assert_eq!(join(addr, &token, &id).await.status, 200);
        readers.push(token);
    }

    // The sender posts every millisecond and reads its own traffic so it never falls behind.
    let (ws, _) = ws_hello(addr, &sender).await;
    let (mut sink, mut stream) = ws.inner.split();
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (stop, id) = (Arc::clone(&stop), id.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut posted = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let f = json!({ "type": "send", "room": id, "text": format!("tick {posted}") });
                if sink.send(Message::text(f.to_string())).await.is_err() {
                    break;
                }
                posted += 1;
            }
            posted
        })
    };
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });

    let deadline = Instant::now() + RUN;
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|token| {
            let id = id.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while Instant::now() < deadline {
                    let (mut w, hello) = ws_hello(addr, &token).await;
                    let last_seq = hello_last_seq(&hello, &id);
                    let mut seqs = Vec::new();
                    let until = Instant::now() + WATCH;
                    while seqs.len() < ENOUGH {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match w.next_within(left).await {
                            Some(f) if f["type"] == "entry" && f["room"] == id.as_str() => {
                                seqs.push(seq(&f))
                            }
                            Some(_) => {}
                            None => break,
                        }
                    }
                    let _ = w.inner.close(None).await;
                    seen.push(Seen { last_seq, seqs });
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("reader task"));
    }
    stop.store(true, Ordering::Relaxed);
    let posted = poster.await.expect("poster");
    drain.abort();

    let watched: Vec<&Seen> = all.iter().filter(|s| !s.seqs.is_empty()).collect();
    let gaps: Vec<&Seen> = watched
        .iter()
        .copied()
        .filter(|s| {
            let want: Vec<u64> = (s.last_seq + 1..).take(s.seqs.len()).collect();
            s.seqs != want
        })
        .collect();
    eprintln!(
        "{} connections, {} saw entries, {} did not continue from hello's last_seq; {posted} messages posted",
        all.len(),
        watched.len(),
        gaps.len()
    );
    assert!(
        watched.len() >= 200,
        "too few connections saw entries for the test to mean anything: {} of {}",
        watched.len(),
        all.len()
    );
    let examples: Vec<String> = gaps
        .iter()
        .take(5)
        .map(|s| format!("hello said {}, then {:?}", s.last_seq, s.seqs))
        .collect();
    assert!(
        gaps.is_empty(),
        "{} of {} new connections did not get the entries right after hello's last_seq \
         (each must see last_seq+1, last_seq+2, ...); e.g. {examples:?}",
        gaps.len(),
        watched.len()
    );
    drop(server);
}
