//! Blocks: the list calls, a blocked user refused in the DM (send, `/me`, edits) and when
//! opening one, the blocker not refused, and shared rooms unchanged.

use serde_json::json;

use crate::common::*;
use crate::*;

async fn list(addr: std::net::SocketAddr, token: &str) -> serde_json::Value {
    let r = get(addr, "/api/v1/blocks", Some(token)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()
}

#[tokio::test]
async fn blocking_and_unblocking_through_the_list_calls() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let _bob = user(s.addr, "Bob").await;
    let _carol = user(s.addr, "carol").await;

    assert_eq!(list(s.addr, &alice).await, json!({ "blocks": [] }));
    assert_eq!(block(s.addr, &alice, "bob").await.status, 204);
    // Again: still 204, and listed once.
    assert_eq!(block(s.addr, &alice, "BOB").await.status, 204);
    assert_eq!(block(s.addr, &alice, "carol").await.status, 204);
    let mut blocked: Vec<String> = list(s.addr, &alice).await["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    blocked.sort();
    assert_eq!(
        blocked,
        vec!["Bob", "carol"],
        "listed once each, as registered"
    );

    let r = block(s.addr, &alice, "Alice").await;
    assert_eq!((r.status, r.code()), (400, "invalid_target".into()));
    let r = block(s.addr, &alice, "nobody").await;
    assert_eq!((r.status, r.code()), (404, "user_not_found".into()));
    let r = get(s.addr, "/api/v1/blocks", None).await;
    assert_eq!(r.status, 401);

    assert_eq!(unblock(s.addr, &alice, "bOb").await.status, 204);
    assert_eq!(list(s.addr, &alice).await, json!({ "blocks": ["carol"] }));
    // Not blocked (any more), or no such user: 404.
    assert_eq!(unblock(s.addr, &alice, "bob").await.status, 404);
    assert_eq!(unblock(s.addr, &alice, "nobody").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn a_blocked_user_cannot_open_a_dm_but_the_blocker_can() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    assert_eq!(block(s.addr, &alice, "bob").await.status, 204);

    let r = open_dm(s.addr, &bob, "alice").await;
    assert_eq!((r.status, r.code()), (403, "blocked".into()));
    let me = get(s.addr, "/api/v1/me", Some(&bob)).await.json();
    assert_eq!(me["rooms"], json!([]), "no DM was made: {me}");
    let (mut wb, _) = ws_hello(s.addr, &bob).await;
    let f = ask(&mut wb, "", "/msg alice let me in").await;
    assert_eq!(error_code(&f), "blocked", "{f}");

    // Only the blocked side is refused.
    let id = dm_id(s.addr, &alice, "bob").await;
    // Once unblocked, bob may open it too: the same room.
    assert_eq!(unblock(s.addr, &alice, "bob").await.status, 204);
    assert_eq!(dm_id(s.addr, &bob, "alice").await, id);
    s.stop().await;
}

#[tokio::test]
async fn a_blocked_user_cannot_write_or_edit_in_the_dm_and_the_blocker_can() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let id = dm_id(s.addr, &alice, "bob").await;
    let (mut wa, _) = ws_hello(s.addr, &alice).await;
    let (mut wb, _) = ws_hello(s.addr, &bob).await;
    let before = post_msg(&mut wb, &id, "before the block").await;
    let before_seq = seq(&before);

    assert_eq!(block(s.addr, &alice, "bob").await.status, 204);

    let f = ask(&mut wb, &id, "hello?").await;
    assert_eq!(error_code(&f), "blocked", "send: {f}");
    let f = ask(&mut wb, &id, "/me knocks").await;
    assert_eq!(error_code(&f), "blocked", "/me: {f}");
    let f = ask_frame(
        &mut wb,
        json!({ "type": "edit", "room": id, "seq": before_seq, "text": "changed" }),
    )
    .await;
    assert_eq!(error_code(&f), "blocked", "edit frame: {f}");
    let r = edit(s.addr, &bob, &id, before_seq, "changed").await;
    assert_eq!((r.status, r.code()), (403, "blocked".into()));
    // Reopening the DM from the blocked side is refused too.
    let r = open_dm(s.addr, &bob, "alice").await;
    assert_eq!((r.status, r.code()), (403, "blocked".into()));

    // The blocker still writes, and bob still reads it.
    let ack = post_msg(&mut wa, &id, "I can still talk").await;
    let got = wb
        .next_where("entry", |f| {
            f["kind"] == "message" && f["seq"] == ack["seq"]
        })
        .await;
    assert_eq!(got["text"], "I can still talk");
    let acted = post_msg(&mut wa, &id, "/me sighs").await;
    assert_eq!(acted["action"], true, "{acted}");
    let r = edit(s.addr, &alice, &id, seq(&ack), "I can still talk, and edit").await;
    assert_eq!(r.status, 200, "the blocker edits: {:?}", r.json());

    // Nothing of bob's got in.
    let (entries, _) = history(s.addr, &alice, &id).await;
    let bobs: Vec<&str> = entries
        .iter()
        .filter(|e| e["from"] == "bob" && e["kind"] != "join")
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(bobs, vec!["message"], "{entries:?}");
    assert_eq!(entry_at(&entries, before_seq)["text"], "before the block");
    assert!(
        entries.iter().all(|e| e["text"] != "changed"),
        "{entries:?}"
    );

    // `blocked` is for edits only: bob may still take his own message back.
    let oops = post_msg(&mut wa, &id, "a message alice keeps").await;
    let r = delete(s.addr, &bob, &id, seq(&oops)).await;
    assert_eq!((r.status, r.code()), (403, "forbidden".into()), "not his");
    assert_eq!(delete(s.addr, &bob, &id, before_seq).await.status, 204);

    // Unblocked, bob writes again.
    assert_eq!(unblock(s.addr, &alice, "bob").await.status, 204);
    post_msg(&mut wb, &id, "thanks").await;
    s.stop().await;
}

#[tokio::test]
async fn blocks_change_nothing_in_shared_rooms() {
    let s = start(&[]).await;
    let (lobby, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (alice, bob) = (&t[0], &t[1]);
    assert_eq!(block(s.addr, alice, "bob").await.status, 204);
    let (mut wa, _) = ws_hello(s.addr, alice).await;
    let (mut wb, _) = ws_hello(s.addr, bob).await;

    let ack = post_msg(&mut wb, &lobby, "hi @alice").await;
    assert_eq!(ack["mentions"], json!(["alice"]), "{ack}");
    let got = wa
        .next_where("entry", |f| {
            f["kind"] == "message" && f["seq"] == ack["seq"]
        })
        .await;
    assert_eq!(got["text"], "hi @alice", "the blocker still sees it");
    let acted = post_msg(&mut wb, &lobby, "/me waves").await;
    assert_eq!(acted["action"], true);
    let r = edit(s.addr, bob, &lobby, seq(&ack), "hello @alice").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    s.stop().await;
}

#[tokio::test]
async fn a_blocked_users_typing_does_not_reach_the_blocker() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let id = dm_id(s.addr, &alice, "bob").await;
    let (mut wa, _) = ws_hello(s.addr, &alice).await;
    let (mut wb, _) = ws_hello(s.addr, &bob).await;
    post_msg(&mut wb, &id, "hi").await;
    assert_eq!(block(s.addr, &alice, "bob").await.status, 204);

    wb.send(json!({ "type": "typing", "room": id })).await;
    // Answered after the typing frame was handled: whatever it caused is queued by now.
    let f = ask(&mut wb, &id, "hello?").await;
    assert_eq!(error_code(&f), "blocked", "{f}");
    let saw = frames_until_own(&mut wa, &id, "marker").await;
    assert!(saw.iter().all(|f| f["type"] != "typing"), "{saw:?}");
    s.stop().await;
}
