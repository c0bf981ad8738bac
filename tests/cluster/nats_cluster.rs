//! Three NATS servers in a cluster, the stream kept on all three (`--cluster-replicas 3`):
//! losing one of them, the stream's leader if it can be found, changes nothing a user notices
//! once a new leader is elected. Messages are still accepted and delivered, and nothing
//! acknowledged before is lost.

use crate::common::*;
use crate::{entry_within, same_history_everywhere, until_accepted, within, Cluster, SLOW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_of_three_nats_servers_changes_nothing() {
    let mut cluster = Cluster::start_on_nats_cluster("nats-cluster", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    let (mut a, _) = ws_hello(n0, &alice).await;
    let (mut b, _) = ws_hello(n1, &bob).await;
    let mut acks = Vec::new();
    for i in 0..10 {
        acks.push(say_acked(&mut a, &general, &format!("before {i}")).await);
    }
    b.next_where("entry", |f| f["seq"] == seq(acks.last().unwrap()))
        .await;

    // Kill the server leading the stream, so a new leader has to take over.
    let leader = cluster.nats[0].stream_leader("parley").await;
    let victim = cluster
        .nats
        .iter()
        .position(|s| Some(&s.name) == leader.as_ref())
        .unwrap_or(0);
    eprintln!(
        "killing {} (stream leader: {leader:?})",
        cluster.nats[victim].name
    );
    cluster.nats[victim].kill();

    // Both nodes keep taking messages and delivering them to each other.
    let ack = until_accepted(&mut a, &general, "after the loss").await;
    let got = entry_within(&mut b, seq(&ack), SLOW).await;
    assert_eq!(as_entry(&got), as_entry(&ack));
    let ack = until_accepted(&mut b, &general, "bob after the loss").await;
    let got = entry_within(&mut a, seq(&ack), SLOW).await;
    assert_eq!(as_entry(&got), as_entry(&ack));
    for i in 0..10 {
        acks.push(say_acked(&mut b, &general, &format!("after {i}")).await);
    }
    room(n1, &bob, "new room").await;
    for addr in [n0, n1] {
        assert!(
            within(SLOW, || async {
                get(addr, "/healthz", None).await.status == 200
            })
            .await,
            "{addr} unhealthy with two of three NATS servers up"
        );
    }

    let kept = same_history_everywhere(&[n0, n1], &alice, &general).await;
    for ack in &acks {
        assert!(kept.contains(&as_entry(ack)), "acknowledged {ack} is gone");
    }
}
