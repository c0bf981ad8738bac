//! The stream is bounded: kept history, not all history, decides its size. With snapshots
//! every few changes (`--cluster-snapshot-every`), the stream stops holding every change ever
//! made, and a node that starts from nothing (or restarts after `kill -9`) still serves
//! everything from the latest snapshot and the changes after it.

use crate::common::*;
use crate::{kept, me, same_history_everywhere, Cluster, SLOW};

const EVERY: u64 = 50;
const MESSAGES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_bounded_and_a_new_node_starts_from_a_snapshot() {
    let every = EVERY.to_string();
    let mut cluster =
        Cluster::start("bounded", 2, &["--cluster-snapshot-every", every.as_str()]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    let (mut a, _) = ws_hello(n0, &alice).await;
    for i in 0..MESSAGES {
        say_acked(&mut a, &general, &format!("message {i}")).await;
    }
    let expected = same_history_everywhere(&[n0, n1], &alice, &general).await;
    assert_eq!(expected.len(), MESSAGES + 2, "two joins and the messages");

    // Far fewer messages in the stream than changes made.
    let deadline = tokio::time::Instant::now() + SLOW;
    loop {
        let held = cluster.nats[0].stream_messages("parley").await;
        if held.is_some_and(|n| n <= 3 * EVERY) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream holds {held:?} messages after {MESSAGES} messages with snapshots every {EVERY}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A node from nothing serves everything, at once.
    let n2 = cluster.start_node(2);
    assert_eq!(
        kept(n2, &bob, &general).await,
        expected,
        "the new node's history"
    );
    assert_eq!(
        me(n2, &alice).await.status,
        200,
        "alice's token on the new node"
    );
    let r = login(n2, "bob", PASSWORD).await;
    assert_eq!(r.status, 200, "{:?}", r.json());

    // So does a node killed and restarted after more changes.
    cluster.kill_9(0);
    let (mut b, _) = ws_hello(n1, &bob).await;
    for i in 0..EVERY * 2 {
        say_acked(&mut b, &general, &format!("while node 0 was down {i}")).await;
    }
    let n0 = cluster.start_node(0);
    let all = same_history_everywhere(&[n0, n1, n2], &alice, &general).await;
    assert_eq!(all.len(), expected.len() + 2 * EVERY as usize);
    assert_eq!(all[..expected.len()], expected[..]);
    let (mut a, _) = ws_hello(n0, &alice).await;
    let ack = say_acked(&mut a, &general, "back").await;
    let got = b.next_where("entry", |f| f["seq"] == seq(&ack)).await;
    assert_eq!(as_entry(&got), as_entry(&ack));
}
