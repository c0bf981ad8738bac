//! Presence events for users who share a room, and the heartbeat timeout.
//!
//! These servers run with `--presence-timeout 1`, so the REST calls that set a test up keep a
//! user online for one second only; after that, open sockets alone decide.

use std::time::Instant;

use serde_json::{json, Value};

use crate::common::*;
use crate::raw::{End, Raw, PING, TEXT};
use crate::{frames_until_own, next_message};

fn about(name: &'static str, online: bool) -> impl Fn(&Value) -> bool {
    move |f: &Value| f["username"] == name && f["online"] == online
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_mates_see_a_user_come_online_and_go_offline() {
    let s = start(&["--presence-timeout", "1"]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let carol = user(s.addr, "carol").await;
    let id = room(s.addr, &alice, "lobby").await;
    let carols = room(s.addr, &carol, "carol's").await;
    let (mut wa, _) = ws_hello(s.addr, &alice).await;
    let (mut wc, _) = ws_hello(s.addr, &carol).await;
    assert_eq!(join(s.addr, &bob, &id).await.status, 200);
    // Bob's REST calls kept him online for a second; then he is announced offline.
    let f = wa.next_where("presence", about("bob", false)).await;
    assert_eq!(
        f,
        json!({ "type": "presence", "username": "bob", "online": false })
    );

    let (mut wb, _) = ws_hello(s.addr, &bob).await;
    wa.next_where("presence", about("bob", true)).await;
    let info = get(s.addr, "/api/v1/users/bob", Some(&alice)).await.json();
    assert_eq!(info["online"], true, "{info}");
    // REST agrees with the events: both members are online.
    let who = get(s.addr, &format!("/api/v1/rooms/{id}"), Some(&alice))
        .await
        .json();
    assert!(
        who["member_list"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["online"] == true),
        "{who}"
    );

    let closed_at = now_ms();
    wb.inner.close(None).await.unwrap();
    drop(wb);
    wa.next_where("presence", about("bob", false)).await;
    let info = get(s.addr, "/api/v1/users/bob", Some(&alice)).await.json();
    assert_eq!(info["online"], false, "{info}");
    let last_seen = info["last_seen"].as_u64().expect("last_seen once offline");
    assert!(last_seen + 5_000 >= closed_at, "{last_seen} vs {closed_at}");

    // Carol shares no room with bob: none of this reached her.
    let seen = frames_until_own(&mut wc, &carols, "carol-marker").await;
    assert!(
        seen.iter().all(|f| f["type"] != "presence"),
        "presence leaked to a stranger: {seen:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_times_out_and_its_user_goes_offline() {
    let s = start(&["--heartbeat-interval", "1", "--presence-timeout", "1"]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let id = room(s.addr, &alice, "lobby").await;
    // Alice's client reads all along, so it answers every ping.
    let (mut wa, hello) = ws_hello(s.addr, &alice).await;
    let alice_since = Instant::now();
    assert_eq!(hello["heartbeat_ms"], 1000);
    assert_eq!(join(s.addr, &bob, &id).await.status, 200);
    wa.next_where("presence", about("bob", false)).await;

    // Bob's connection upgrades and then neither reads nor writes.
    let mut silent = Raw::connect(s.addr, &bob).await;
    wa.next_where("presence", about("bob", true)).await;
    let silent_since = Instant::now();
    wa.next_where("presence", about("bob", false)).await;
    let lasted = silent_since.elapsed().as_millis();
    assert!(
        lasted >= 2_500,
        "closed after {lasted} ms, before three intervals"
    );

    let (end, frames) = silent.ended().await;
    assert_eq!(end, End::Close(1000, "heartbeat timeout".into()));
    assert_eq!(frames[0].opcode, TEXT, "hello first");
    let pings = frames.iter().filter(|f| f.opcode == PING).count();
    assert!(pings >= 2, "the server pinged every second: {pings} pings");

    // Alice, who answered the pings, outlived three intervals and is still served.
    assert!(alice_since.elapsed().as_secs() >= 3);
    wa.say(&id, "still here", "here").await;
    assert_eq!(next_message(&mut wa).await["nonce"], "here");
    s.stop().await;
}

/// REST and the events come from one presence state: the moment `GET /api/v1/users/{name}`
/// (or a room's member list) says a user is offline, room-mates have been told so too, not
/// up to a second later when the sweep would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_says_offline_only_once_room_mates_were_told() {
    let s = start(&["--presence-timeout", "1"]).await;
    let owner = user(s.addr, "olga").await;
    let id = room(s.addr, &owner, "lobby").await;
    let (mut wo, _) = ws_hello(s.addr, &owner).await;
    for name in ["pia", "quin", "ravi"] {
        let t = user(s.addr, name).await;
        assert_eq!(join(s.addr, &t, &id).await.status, 200);
        // Her REST calls keep her online for a second: watch REST until it says offline.
        let mut offline_by_rest = false;
        let deadline = Instant::now() + WAIT;
        while !offline_by_rest {
            assert!(
                Instant::now() < deadline,
                "{name} never went offline by REST"
            );
            let info = get(s.addr, &format!("/api/v1/users/{name}"), Some(&owner))
                .await
                .json();
            offline_by_rest = info["online"] == false;
            if !offline_by_rest {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        let told = tokio::time::timeout(
            std::time::Duration::from_millis(150),
            wo.next_where("presence", move |f: &Value| {
                f["username"] == name && f["online"] == false
            }),
        )
        .await;
        assert!(
            told.is_ok(),
            "REST said {name} is offline before room-mates were told"
        );
    }
    s.stop().await;
}
