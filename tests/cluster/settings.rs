//! Nodes must share the settings that decide (a room's capacity, the kept history, the
//! blocked words...): each applies every change with its own, and different ones would make
//! the replicas part ways. A node started with other settings than the running nodes' refuses
//! to start and says which, and the running nodes carry on.

use crate::common::*;
use crate::{me, Cluster, SLOW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_other_deciding_settings_refuses_to_start() {
    let mut cluster = Cluster::start("settings", 1, &["--history", "50"]).await;
    let n0 = cluster.addr(0);
    let alice = user(n0, "alice").await;

    let (status, log) = cluster.refused_node(1, &["--history", "20"]);
    assert!(!status.success(), "{status}");
    assert!(
        log.contains("--history is \"20\" on node n1 and \"50\" on node n0"),
        "the log names the setting and both values:\n{log}"
    );
    let said = || async { cluster.stderr(0).contains("node n1 cannot join") };
    assert!(
        crate::within(SLOW, said).await,
        "the running node says so too:\n{}",
        cluster.stderr(0)
    );
    assert_eq!(me(n0, &alice).await.status, 200, "node 0 carries on");

    // The blocked words count by their content, not by the file's path.
    let dir = cluster.data(9);
    std::fs::create_dir_all(&dir).unwrap();
    let (ours, other, same) = (dir.join("a.txt"), dir.join("b.txt"), dir.join("c.txt"));
    std::fs::write(&ours, "darn\n").unwrap();
    std::fs::write(&other, "heck\n").unwrap();
    std::fs::write(&same, "darn\n").unwrap();
    cluster.stop_node(0).await;
    let ours = ours.to_str().unwrap();
    let n0 = cluster.start_node_with(0, &["--blocked-words", ours]);
    let (status, log) = cluster.refused_node(1, &["--blocked-words", other.to_str().unwrap()]);
    assert!(!status.success(), "{status}");
    assert!(log.contains("--blocked-words"), "{log}");
    let n1 = cluster.start_node_with(1, &["--blocked-words", same.to_str().unwrap()]);
    assert_eq!(me(n1, &alice).await.status, 200, "the same words elsewhere");
    assert_eq!(me(n0, &alice).await.status, 200);
}
