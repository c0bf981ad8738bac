//! Moderation decided on one node holds on another: a ban refuses a join, a mute refuses a
//! send, a kick removes the member's connections there, and a new role gives its powers there.

use serde_json::{json, Value};

use crate::common::*;
use crate::{assert_204, assert_error, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_on_one_node_is_enforced_on_another() {
    let cluster = Cluster::start("moderation", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let alice = user(n0, "alice").await;
    let bob = user(n1, "bob").await;
    let carol = user(n1, "carol").await;
    let dave = user(n1, "dave").await;
    let general = room(n0, &alice, "general").await;
    for token in [&bob, &carol] {
        let r = join(n1, token, &general).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
    }
    // A moderation call on `general`: `POST /api/v1/rooms/{general}/{what}`.
    let act = |addr, token: &str, what: &str, body: Value| {
        let (path, token) = (format!("/api/v1/rooms/{general}/{what}"), token.to_string());
        async move { post(addr, &path, Some(&token), body).await }
    };

    // A ban on node 0: dave's join on node 1 is refused.
    let r = act(n0, &alice, "bans", json!({ "username": "dave" })).await;
    assert_204(&r);
    assert_error(&join(n1, &dave, &general).await, 403, "banned");

    // A mute on node 0: bob's send on node 1 is refused, with the time left.
    let (mut b, _) = ws_hello(n1, &bob).await;
    let r = act(
        n0,
        &alice,
        "mutes",
        json!({ "username": "bob", "seconds": 600 }),
    )
    .await;
    assert_204(&r);
    b.say(&general, "can anyone hear me", "muted-1").await;
    let f = b
        .next_where("error", |f| f["nonce"] == "muted-1" || f["code"] == "muted")
        .await;
    assert_eq!(f["code"], "muted", "{f}");
    assert!(f["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{f}");

    // Unmuted on node 0: bob's next send on node 1 goes through.
    let r = request(
        n0,
        "DELETE",
        &format!("/api/v1/rooms/{general}/mutes/bob"),
        Some(&alice),
        None,
    )
    .await;
    assert_204(&r);
    say_acked(&mut b, &general, "back again").await;

    // Bob made a moderator on node 0 may kick carol on node 1.
    let r = act(
        n0,
        &alice,
        "roles",
        json!({ "username": "bob", "role": "moderator" }),
    )
    .await;
    assert_204(&r);
    let (mut c, _) = ws_hello(n1, &carol).await;
    let r = act(n1, &bob, "kick", json!({ "username": "carol" })).await;
    assert_204(&r);
    let kick = c
        .next_where("entry", |f| {
            f["room"] == general.as_str() && f["kind"] == "kick"
        })
        .await;
    assert_eq!(
        (kick["from"].as_str(), kick["target"].as_str()),
        (Some("bob"), Some("carol"))
    );
    // Node 0 applies the kick a moment later: then carol may no longer read there either.
    let messages = format!("/api/v1/rooms/{general}/messages");
    assert!(
        crate::within(crate::SLOW, || async {
            get(n0, &messages, Some(&carol)).await.code() == "not_a_member"
        })
        .await,
        "node 0 still lets a kicked member read"
    );

    // Kicked on node 1 by bob: carol's connection on node 0 gets the kick, then nothing more
    // from the room.
    let r = join(n0, &carol, &general).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let (mut c0, _) = ws_hello(n0, &carol).await;
    let r = act(n1, &bob, "kick", json!({ "username": "carol" })).await;
    assert_204(&r);
    c0.next_where("entry", |f| {
        f["room"] == general.as_str() && f["kind"] == "kick"
    })
    .await;
    let (mut a, _) = ws_hello(n0, &alice).await;
    say_acked(&mut a, &general, "after the kick").await;
    c0.send(json!({ "type": "send", "room": "", "text": "/rooms", "nonce": "marker" }))
        .await;
    loop {
        let f = c0.next().await.expect("carol's connection stays open");
        assert!(
            !(f["type"] == "entry" && f["room"] == general.as_str()),
            "carol still gets the room's entries: {f}"
        );
        if f["type"] == "reply" && f["nonce"] == "marker" {
            break;
        }
    }

    // Only the owner changes roles, on whatever node the moderator asks.
    let r = act(
        n1,
        &bob,
        "roles",
        json!({ "username": "bob", "role": "owner" }),
    )
    .await;
    assert_error(&r, 403, "forbidden");
    // The owner hands the room to bob on node 1; alice, now a moderator, may not ban him on
    // node 0.
    let r = act(
        n1,
        &alice,
        "roles",
        json!({ "username": "bob", "role": "owner" }),
    )
    .await;
    assert_204(&r);
    let r = act(n0, &alice, "bans", json!({ "username": "bob" })).await;
    assert_error(&r, 403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_deleted_on_one_node_is_gone_on_another() {
    let cluster = Cluster::start("delete", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    let (mut b, _) = ws_hello(n1, &bob).await;

    let r = request(
        n0,
        "DELETE",
        &format!("/api/v1/rooms/{general}"),
        Some(&alice),
        None,
    )
    .await;
    assert_204(&r);
    let f = b
        .next_where("room_deleted", |f| f["room"] == general.as_str())
        .await;
    assert_eq!(f["by"], "alice", "{f}");
    assert_error(
        &get(n1, &format!("/api/v1/rooms/{general}"), Some(&bob)).await,
        404,
        "room_not_found",
    );
    assert_error(&join(n1, &bob, &general).await, 404, "room_not_found");
}
