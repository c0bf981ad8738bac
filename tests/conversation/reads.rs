//! Read markers (the `read` frame and `POST .../read`), unread counts in a member's `Room`,
//! and typing events.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::*;

/// `(read_seq, unread)` of a `Room`.
fn marker(room: &Value) -> (u64, u64) {
    (
        room["read_seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("read_seq: {room}")),
        room["unread"]
            .as_u64()
            .unwrap_or_else(|| panic!("unread: {room}")),
    )
}

/// The marker as `GET /rooms/{id}`, `GET /me` and a new connection's `hello` show it; all
/// three must agree.
async fn marker_everywhere(addr: std::net::SocketAddr, token: &str, id: &str) -> (u64, u64) {
    let from_room = marker(&room_info(addr, token, id).await);
    let from_me = marker(&room_in_me(addr, token, id).await);
    let (_w, hello) = ws_hello(addr, token).await;
    let in_hello = hello["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} in hello: {hello}"))
        .clone();
    let from_hello = marker(&in_hello);
    assert_eq!(from_room, from_me, "GET /rooms/{id} and /me agree");
    assert_eq!(from_room, from_hello, "GET /rooms/{id} and hello agree");
    from_room
}

#[tokio::test]
async fn unread_counts_others_kept_undeleted_messages_after_the_marker() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await; // seqs 1, 2: joins
    let (alice, bob) = (&t[0], &t[1]);
    let (mut wa, _) = ws_hello(s.addr, alice).await;
    let (mut wb, _) = ws_hello(s.addr, bob).await;
    assert_eq!(marker(&room_info(s.addr, bob, &id).await).0, 0, "never set");

    for text in ["one", "two", "three"] {
        post_msg(&mut wb, &id, text).await; // 3, 4, 5
    }
    assert_eq!(marker_everywhere(s.addr, alice, &id).await, (0, 3));
    // Bob's own posts moved his marker and do not count for him.
    assert_eq!(marker_everywhere(s.addr, bob, &id).await, (5, 0));

    // Posting moves the poster's marker: alice has read everything up to her own message.
    let mine = post_msg(&mut wa, &id, "mine").await; // 6
    assert_eq!(seq(&mine), 6);
    assert_eq!(marker_everywhere(s.addr, alice, &id).await, (6, 0));
    // Bob has not read alice's.
    assert_eq!(marker(&room_info(s.addr, bob, &id).await), (5, 1));

    post_msg(&mut wb, &id, "seven").await; // 7
    let eight = post_msg(&mut wb, &id, "eight").await; // 8
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (6, 2));
    // A deleted message is not unread.
    assert_eq!(delete(s.addr, bob, &id, seq(&eight)).await.status, 204); // 9
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (6, 1));
    // Entries other than messages (a join) do not count.
    let _carol = {
        let c = user(s.addr, "carol").await;
        assert_eq!(join(s.addr, &c, &id).await.status, 200); // 10
        c
    };
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (6, 1));

    assert_eq!(mark_read(s.addr, alice, &id, 7).await.status, 204);
    assert_eq!(marker_everywhere(s.addr, alice, &id).await, (7, 0));

    // An action is a message; an edit entry is not a new one.
    let act = post_msg(&mut wb, &id, "/me nods").await; // 11
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (7, 1));
    assert_eq!(
        edit(s.addr, bob, &id, seq(&act), "nods twice").await.status,
        200
    ); // 12
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (7, 1));
    s.stop().await;
}

#[tokio::test]
async fn unread_counts_only_kept_messages() {
    let s = start(&["--history", "5"]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    for i in 0..12 {
        post_msg(&mut wb, &id, &format!("m{i}")).await;
    }
    // Only the last 5 entries are kept, all of them bob's messages.
    assert_eq!(marker(&room_info(s.addr, &t[0], &id).await), (0, 5));
    s.stop().await;
}

#[tokio::test]
async fn a_marker_never_moves_back_and_stops_at_the_last_seq() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    for i in 0..6 {
        post_msg(&mut wb, &id, &format!("m{i}")).await; // 3..=8
    }
    let alice = &t[0];
    assert_eq!(mark_read(s.addr, alice, &id, 6).await.status, 204);
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (6, 2));
    // Lower: ignored, still 204.
    assert_eq!(mark_read(s.addr, alice, &id, 4).await.status, 204);
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (6, 2));
    let (mut wa, _) = ws_hello(s.addr, alice).await;
    wa.send(json!({ "type": "read", "room": id, "seq": 3 }))
        .await;
    settle(&mut wa, &id, 8).await;
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (6, 2));
    // Past the end: clamped to last_seq.
    assert_eq!(mark_read(s.addr, alice, &id, 1000).await.status, 204);
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (8, 0));
    // So a later message is unread, not hidden by a marker from the future.
    post_msg(&mut wb, &id, "news").await; // 9
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (8, 1));
    wa.send(json!({ "type": "read", "room": id, "seq": 5000 }))
        .await;
    settle(&mut wa, &id, 9).await;
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (9, 0));
    post_msg(&mut wb, &id, "more").await; // 10
    assert_eq!(marker(&room_info(s.addr, alice, &id).await), (9, 1));

    // Only members have markers.
    let carol = user(s.addr, "carol").await;
    let r = mark_read(s.addr, &carol, &id, 3).await;
    assert_eq!((r.status, r.code()), (403, "not_a_member".into()));
    let r = mark_read(s.addr, &carol, "nosuchroom", 3).await;
    assert_eq!(r.status, 404);
    let (mut wc, _) = ws_hello(s.addr, &carol).await;
    wc.send(json!({ "type": "read", "room": id, "seq": 3 }))
        .await;
    let f = wc.next_where("error", |_| true).await;
    assert_eq!(error_code(&f), "not_a_member", "{f}");
    s.stop().await;
}

#[tokio::test]
async fn a_read_frame_reaches_the_users_other_connections_only() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    for i in 0..4 {
        post_msg(&mut wb, &id, &format!("m{i}")).await; // 3..=6
    }
    let (mut a1, _) = ws_hello(s.addr, &t[0]).await;
    let (mut a2, _) = ws_hello(s.addr, &t[0]).await;

    a1.send(json!({ "type": "read", "room": id, "seq": 4 }))
        .await;
    let f = a2.next_where("read", |_| true).await;
    assert_eq!(f, json!({ "type": "read", "room": id, "seq": 4 }));
    assert_eq!(marker(&room_info(s.addr, &t[0], &id).await), (4, 2));
    // The sending connection got no read frame (anything for it is queued before its own
    // later message); bob, another user, got none either.
    let a1_saw = frames_until_own(&mut a1, &id, "a1-marker").await;
    assert!(a1_saw.iter().all(|f| f["type"] != "read"), "{a1_saw:?}");
    let b_saw = frames_until_own(&mut wb, &id, "b-marker").await;
    assert!(b_saw.iter().all(|f| f["type"] != "read"), "{b_saw:?}");

    // Through REST no connection sent it, so every connection of the user hears of it.
    // (Alice's marker message above moved her marker to 7; bob's is 8.)
    assert_eq!(mark_read(s.addr, &t[0], &id, 8).await.status, 204);
    for w in [&mut a1, &mut a2] {
        let f = w.next_where("read", |f| f["seq"] == 8).await;
        assert_eq!(f, json!({ "type": "read", "room": id, "seq": 8 }));
    }
    s.stop().await;
}

#[tokio::test]
async fn typing_reaches_the_other_members_only_and_at_most_every_two_seconds() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob", "carol"]).await;
    let dave = user(s.addr, "dave").await; // not a member
    let (mut a1, _) = ws_hello(s.addr, &t[0]).await;
    let (mut a2, _) = ws_hello(s.addr, &t[0]).await;
    let (mut b1, _) = ws_hello(s.addr, &t[1]).await;
    let (mut b2, _) = ws_hello(s.addr, &t[1]).await;
    let (mut c, _) = ws_hello(s.addr, &t[2]).await;
    let (mut d, _) = ws_hello(s.addr, &dave).await;

    let typing = json!({ "type": "typing", "room": id });
    for _ in 0..3 {
        a1.send(typing.clone()).await;
    }
    // Everything caused by those frames is queued before alice's marker message.
    let a1_saw = frames_until_own(&mut a1, &id, "after-typing").await;
    let want = json!({ "type": "typing", "room": id, "username": "alice" });
    for (who, w) in [("bob 1", &mut b1), ("bob 2", &mut b2), ("carol", &mut c)] {
        let mut got = Vec::new();
        loop {
            let f = w.next().await.expect("frames");
            if f["type"] == "entry" && f["text"] == "after-typing" {
                break;
            }
            if f["type"] == "typing" {
                got.push(f);
            }
        }
        assert_eq!(got, vec![want.clone()], "{who}: one typing event of three");
    }
    assert!(a1_saw.iter().all(|f| f["type"] != "typing"), "{a1_saw:?}");
    let mut a2_typing = Vec::new();
    loop {
        let f = a2.next().await.expect("frames");
        if f["type"] == "entry" && f["text"] == "after-typing" {
            break;
        }
        a2_typing.push(f);
    }
    assert!(
        a2_typing.iter().all(|f| f["type"] != "typing"),
        "the typer's other connection: {a2_typing:?}"
    );
    // Not stored: the timeline holds only the joins and the marker.
    let (entries, _) = history(s.addr, &t[1], &id).await;
    assert_eq!(entries.len(), 4, "{entries:?}");

    // Someone else typing is their own event, within alice's 2 s.
    b1.send(typing.clone()).await;
    let f = c.next_where("typing", |_| true).await;
    assert_eq!(f["username"], "bob");
    let f = a2.next_where("typing", |_| true).await;
    assert_eq!(f["username"], "bob");

    // A second later alice is still within her 2 s: dropped.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a1.send(typing.clone()).await;
    frames_until_own(&mut a1, &id, "mid-typing").await;
    loop {
        let f = c.next().await.expect("frames");
        if f["type"] == "entry" && f["text"] == "mid-typing" {
            break;
        }
        assert_ne!(
            f["type"], "typing",
            "typing within 2 s of the last one: {f}"
        );
    }

    // Past 2 s from the one forwarded, alice is heard again, though she kept typing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a1.send(typing.clone()).await;
    let f = c.next_where("typing", |_| true).await;
    assert_eq!(f, want);

    // Not a member: an error, and nothing reaches the room.
    d.send(json!({ "type": "typing", "room": id })).await;
    let f = d.next_where("error", |_| true).await;
    assert_eq!(error_code(&f), "not_a_member", "{f}");
    let c_saw = frames_until_own(&mut c, &id, "c-marker").await;
    assert!(c_saw.iter().all(|f| f["type"] != "typing"), "{c_saw:?}");
    s.stop().await;
}

#[tokio::test]
async fn typing_does_not_use_up_the_message_rate_limit() {
    let s = start(&["--rate-limit", "1", "--rate-burst", "1"]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut a, _) = ws_hello(s.addr, &t[0]).await;
    for _ in 0..3 {
        a.send(json!({ "type": "typing", "room": id })).await;
    }
    // The one message of the burst is still there.
    let f = ask(&mut a, &id, "after typing").await;
    assert_eq!(f["type"], "entry", "typing used up the rate limit: {f}");
    // And the limit is real: the next message at once is refused.
    let f = ask(&mut a, &id, "one too many").await;
    assert_eq!(error_code(&f), "rate_limited", "{f}");
    s.stop().await;
}

/// What `unread` must be for `me` at marker `read_seq`, counted from the served history:
/// kept, not deleted `message` entries after the marker that others posted.
pub fn expected_unread(entries: &[Value], read_seq: u64, me: &str) -> u64 {
    entries
        .iter()
        .filter(|e| e["kind"] == "message" && e["deleted"] != true)
        .filter(|e| seq(e) > read_seq && !e["from"].as_str().unwrap().eq_ignore_ascii_case(me))
        .count() as u64
}

#[tokio::test]
async fn a_member_who_comes_back_has_no_unread_of_their_own() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await; // 1, 2
    let (alice, bob) = (&t[0], &t[1]);
    let (mut wa, _) = ws_hello(s.addr, alice).await;
    let (mut wb, _) = ws_hello(s.addr, bob).await;
    for i in 0..3 {
        post_msg(&mut wa, &id, &format!("alice {i}")).await; // 3..=5
    }
    for i in 0..2 {
        post_msg(&mut wb, &id, &format!("bob {i}")).await; // 6, 7
    }
    assert_eq!(leave(s.addr, alice, &id).await.status, 204); // 8
    let r = join(s.addr, alice, &id).await; // 9
    assert_eq!(r.status, 200, "{:?}", r.json());
    let (entries, _) = history(s.addr, alice, &id).await;
    let mut seen = vec![("join answer", r.json())];
    let joined = wa.next_where("joined", |_| true).await;
    seen.push(("joined frame", joined["room"].clone()));
    seen.push(("GET room", room_info(s.addr, alice, &id).await));
    for (what, room) in seen {
        let read_seq = room["read_seq"].as_u64().expect("read_seq");
        assert_eq!(
            room["unread"].as_u64().expect("unread"),
            expected_unread(&entries, read_seq, "alice"),
            "{what}: alice's own messages are not unread for her: {room}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_dm_side_back_in_it_has_no_unread_of_their_own() {
    let s = start(&[]).await;
    let alice = &user(s.addr, "alice").await;
    let bob = &user(s.addr, "bob").await;
    let (mut wa, _) = ws_hello(s.addr, alice).await;
    let (mut wb, _) = ws_hello(s.addr, bob).await;
    let dm = dm_id(s.addr, bob, "alice").await;
    for i in 0..2 {
        post_msg(&mut wb, &dm, &format!("dm bob {i}")).await;
    }
    post_msg(&mut wa, &dm, "dm alice").await;
    assert_eq!(leave(s.addr, bob, &dm).await.status, 204);
    let r = open_dm(s.addr, bob, "alice").await;
    assert_eq!(r.status, 200);
    let (entries, _) = history(s.addr, bob, &dm).await;
    let room = room_info(s.addr, bob, &dm).await;
    let read_seq = room["read_seq"].as_u64().unwrap();
    assert_eq!(
        room["unread"].as_u64().unwrap(),
        expected_unread(&entries, read_seq, "bob"),
        "bob's own DM messages are not unread for him: {room}"
    );
    s.stop().await;
}
