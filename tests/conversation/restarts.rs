//! The built binary on a data directory, stopped cleanly or killed with `kill -9`: read
//! markers (a crash may cost at most the last second of moves), unread counts, DMs, blocks,
//! edits and deletions come back as they were acknowledged.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::common::process::{start as start_proc, TempDir};
use crate::common::*;
use crate::*;

/// `(read_seq, unread)` from `GET /rooms/{id}`.
async fn marker(addr: SocketAddr, token: &str, id: &str) -> (u64, u64) {
    let r = room_info(addr, token, id).await;
    (
        r["read_seq"].as_u64().expect("read_seq"),
        r["unread"].as_u64().expect("unread"),
    )
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_markers_survive_a_clean_restart() {
    let tmp = TempDir::new("conv-markers");
    let data = tmp.data();
    let server = start_proc(&data, &[]);
    let addr = server.addr;
    let (id, t) = room_with(addr, &["alice", "bob", "carol"]).await; // 1..=3
    let (mut wb, _) = ws_hello(addr, &t[1]).await;
    for i in 0..6 {
        post_msg(&mut wb, &id, &format!("m{i}")).await; // 4..=9
    }
    assert_eq!(mark_read(addr, &t[0], &id, 6).await.status, 204);
    let (mut wc, _) = ws_hello(addr, &t[2]).await;
    wc.send(json!({ "type": "read", "room": id, "seq": 8 }))
        .await;
    settle(&mut wc, &id, 9).await;
    assert_eq!(marker(addr, &t[0], &id).await, (6, 3));
    assert_eq!(marker(addr, &t[1], &id).await, (9, 0));
    assert_eq!(marker(addr, &t[2], &id).await, (8, 1));
    // A deleted message no longer counts, and must not count again after the restart.
    assert_eq!(delete(addr, &t[1], &id, 7).await.status, 204); // 10
    assert_eq!(marker(addr, &t[0], &id).await, (6, 2));
    drop((wb, wc));
    server.stop().await;

    let server = start_proc(&data, &[]);
    let addr = server.addr;
    assert_eq!(marker(addr, &t[0], &id).await, (6, 2), "alice's marker");
    assert_eq!(marker(addr, &t[1], &id).await, (9, 0), "bob's marker");
    assert_eq!(marker(addr, &t[2], &id).await, (8, 1), "carol's marker");
    server.stop().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_marker_older_than_a_second_survives_kill_9() {
    let tmp = TempDir::new("conv-markers-crash");
    let data = tmp.data();
    let mut server = start_proc(&data, &[]);
    let addr = server.addr;
    let (id, t) = room_with(addr, &["alice", "bob"]).await;
    let (mut wb, _) = ws_hello(addr, &t[1]).await;
    for i in 0..5 {
        post_msg(&mut wb, &id, &format!("m{i}")).await; // 3..=7
    }
    let (mut wa, _) = ws_hello(addr, &t[0]).await;
    wa.send(json!({ "type": "read", "room": id, "seq": 5 }))
        .await;
    settle(&mut wa, &id, 7).await;
    assert_eq!(marker(addr, &t[0], &id).await, (5, 2));
    // The contract allows a crash to lose up to 1 s of marker moves; wait past that.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    server.kill_9();
    drop((wa, wb));

    let server = start_proc(&data, &[]);
    assert_eq!(marker(server.addr, &t[0], &id).await, (5, 2));
    assert_eq!(marker(server.addr, &t[1], &id).await, (7, 0), "bob's posts");
    server.stop().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_your_own_messages_are_not_unread() {
    let tmp = TempDir::new("conv-own-unread");
    let data = tmp.data();
    let mut server = start_proc(&data, &[]);
    let addr = server.addr;
    let (id, t) = room_with(addr, &["alice", "bob"]).await; // 1, 2
    let (mut wb, _) = ws_hello(addr, &t[1]).await;
    post_msg(&mut wb, &id, "from bob").await; // 3
    assert_eq!(mark_read(addr, &t[0], &id, 3).await.status, 204);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Alice's posts move her marker; the crash comes before a second passes.
    let (mut wa, _) = ws_hello(addr, &t[0]).await;
    for i in 0..3 {
        post_msg(&mut wa, &id, &format!("from alice {i}")).await; // 4..=6
    }
    server.kill_9();
    drop((wa, wb));

    let server = start_proc(&data, &[]);
    let (entries, _) = history(server.addr, &t[0], &id).await;
    assert_eq!(entries.len(), 6, "every acknowledged message is back");
    let room = room_info(server.addr, &t[0], &id).await;
    let read_seq = room["read_seq"].as_u64().unwrap();
    // The marker may be up to a second older, but never below what was set earlier.
    assert!(read_seq >= 3, "{room}");
    assert_eq!(
        room["unread"].as_u64().unwrap(),
        crate::reads::expected_unread(&entries, read_seq, "alice"),
        "alice's own messages are not unread for her: {room}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_blocks_edits_and_deletions_survive_kill_9() {
    let tmp = TempDir::new("conv-crash");
    let data = tmp.data();
    let mut server = start_proc(&data, &[]);
    let addr = server.addr;
    let alice = user(addr, "alice").await;
    let bob = user(addr, "bob").await;
    let carol = user(addr, "carol").await;
    let dm = dm_id(addr, &alice, "bob").await;
    assert_eq!(block(addr, &carol, "alice").await.status, 204);
    assert_eq!(block(addr, &bob, "carol").await.status, 204);
    assert_eq!(unblock(addr, &bob, "carol").await.status, 204);
    let (mut wa, _) = ws_hello(addr, &alice).await;
    let kept = seq(&post_msg(&mut wa, &dm, "first").await);
    let r = edit(addr, &alice, &dm, kept, "first, edited").await;
    assert_eq!(r.status, 200);
    let gone = seq(&post_msg(&mut wa, &dm, "regrettable").await);
    let r = edit(addr, &alice, &dm, gone, "regrettable, edited").await;
    assert_eq!(r.status, 200);
    let gone_edit = seq(&r.json());
    assert_eq!(delete(addr, &alice, &dm, gone).await.status, 204);
    // A frame-made edit, acknowledged just before the crash.
    let ack = ask_frame(
        &mut wa,
        json!({ "type": "edit", "room": dm, "seq": kept, "text": "first, final" }),
    )
    .await;
    assert_eq!(ack["kind"], "edit", "{ack}");
    // A frame-made deletion and a DM opened by /msg, acknowledged just before the crash.
    let last = seq(&post_msg(&mut wa, &dm, "last words").await);
    let ack = ask_frame(
        &mut wa,
        json!({ "type": "delete", "room": dm, "seq": last }),
    )
    .await;
    assert_eq!(ack["kind"], "delete", "{ack}");
    let _dave = user(addr, "dave").await;
    // The reply may come before or after the message is stored; the message's delivered
    // entry is the promise that it is.
    let n = nonce();
    wa.say("", "/msg dave are you there", &n).await;
    let (mut reply, mut posted) = (None, None);
    while reply.is_none() || posted.is_none() {
        let f = wa.next().await.expect("the /msg reply and entry");
        if f["nonce"] == n.as_str() {
            reply = Some(f);
        } else if f["type"] == "entry" && f["kind"] == "message" && f["text"] == "are you there" {
            posted = Some(f);
        }
    }
    let reply = reply.unwrap();
    assert_eq!(reply["type"], "reply", "{reply}");
    let dave_dm = reply["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(posted.unwrap()["room"], dave_dm.as_str());
    let (before, _) = history(addr, &bob, &dm).await;
    let (dave_before, _) = history(addr, &alice, &dave_dm).await;
    server.kill_9();
    drop(wa);

    let server = start_proc(&data, &[]);
    let addr = server.addr;
    assert_eq!(dm_id(addr, &bob, "alice").await, dm, "the same DM");
    let info = room_info(addr, &alice, &dm).await;
    assert_eq!((&info["kind"], &info["members"]), (&json!("dm"), &json!(2)));
    let r = get(addr, "/api/v1/blocks", Some(&carol)).await;
    assert_eq!(r.json(), json!({ "blocks": ["alice"] }));
    let r = get(addr, "/api/v1/blocks", Some(&bob)).await;
    assert_eq!(r.json(), json!({ "blocks": [] }), "the unblock survives");
    let r = open_dm(addr, &alice, "carol").await;
    assert_eq!((r.status, r.code()), (403, "blocked".into()));

    let (after, _) = history(addr, &bob, &dm).await;
    assert_eq!(after, before, "the timeline as served before the crash");
    let m = entry_at(&after, kept);
    assert_eq!(
        (&m["text"], &m["edited"]),
        (&json!("first, final"), &json!(true))
    );
    let d = entry_at(&after, gone);
    assert_eq!(d["deleted"], true, "{d}");
    assert!(d.get("text").is_none(), "{d}");
    let e = entry_at(&after, gone_edit);
    assert!(
        e.get("text").is_none(),
        "the edit of a deleted message: {e}"
    );
    // Deleting again is still refused: the deletion is remembered, not just hidden.
    let r = delete(addr, &alice, &dm, gone).await;
    assert_eq!((r.status, r.code()), (404, "entry_not_found".into()));
    let l = entry_at(&after, last);
    assert_eq!(l["deleted"], true, "{l}");
    assert_eq!(history(addr, &alice, &dave_dm).await.0, dave_before);
    assert_eq!(dm_id(addr, &alice, "dave").await, dave_dm);
    server.stop().await;
}
