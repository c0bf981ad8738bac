//! One state on every node: accounts and sessions, rooms and their timelines, blocks, invites
//! and read markers made through one node are there on another.

use serde_json::json;

use crate::common::*;
use crate::{assert_204, assert_error, hello_last_seq, me, same_history_everywhere, Cluster, SLOW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_one_node_works_on_another() {
    let cluster = Cluster::start("token", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));

    let alice = user(n0, "alice").await;
    assert!(
        crate::within(SLOW, || async { me(n1, &alice).await.status == 200 }).await,
        "node 1 never took node 0's token"
    );
    let r = me(n1, &alice).await;
    assert_eq!(r.json()["username"], "alice", "{:?}", r.json());

    // A second session, made on the other node, works on the first.
    let r = login(n1, "alice", PASSWORD).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let second = r.json()["token"].as_str().unwrap().to_string();
    assert!(
        crate::within(SLOW, || async { me(n0, &second).await.status == 200 }).await,
        "node 0 never took node 1's token"
    );

    // Logging out on one node ends the session on both; the other session lives on.
    let r = post(n1, "/api/v1/logout", Some(&alice), json!({})).await;
    assert_204(&r);
    assert_eq!(me(n1, &alice).await.status, 401);
    assert!(
        crate::within(SLOW, || async { me(n0, &alice).await.status == 401 }).await,
        "node 0 still takes a token logged out on node 1"
    );
    assert_eq!(me(n0, &second).await.status, 200);
    assert_eq!(me(n1, &second).await.status, 200);

    // A wrong password is refused on every node alike.
    for addr in [n0, n1] {
        assert_error(
            &login(addr, "alice", "wrong password!").await,
            401,
            "invalid_credentials",
        );
    }
}

/// Behind a load balancer a client's next request may reach any node: the token a login just
/// returned must work there, and a token just logged out must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holds_on_every_node_as_soon_as_the_answer_came() {
    let cluster = Cluster::start("token-at-once", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    for i in 0..5 {
        let name = format!("user{i}");
        let token = user(n0, &name).await;
        let r = me(n1, &token).await;
        assert_eq!(
            r.status,
            200,
            "login on node 0, then /me on node 1: {:?}",
            r.json()
        );
        assert_eq!(r.json()["username"], name.as_str());
        assert_204(&post(n1, "/api/v1/logout", Some(&token), json!({})).await);
        assert_eq!(
            me(n0, &token).await.status,
            401,
            "logout on node 1, then /me on node 0"
        );
    }
}

/// A logout, and an admin's disable, answered on one node end the session on the other at
/// once: the next request there is refused, however soon it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_holds_on_the_other_as_soon_as_it_was_answered() {
    let cluster = Cluster::start("logout-at-once", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    user(n0, "quinn").await;
    let mut survived = 0;
    for i in 0..40 {
        let token = login(n0, "quinn", PASSWORD).await.json()["token"]
            .as_str()
            .expect("token")
            .to_string();
        // Known on both nodes first, so the second check is not a catch-up for a stranger.
        assert_eq!(me(n1, &token).await.status, 200, "round {i}");
        assert_204(&post(n0, "/api/v1/logout", Some(&token), json!({})).await);
        if me(n1, &token).await.status != 401 {
            survived += 1;
        }
    }
    assert_eq!(
        survived, 0,
        "sessions still served on node 1 after a logout on node 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_created_on_one_node_is_joined_and_used_on_another() {
    let cluster = Cluster::start("room", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let alice = user(n0, "alice").await;
    let bob = user(n1, "bob").await;
    let general = room(n0, &alice, "general").await;

    let (mut a, _) = ws_hello(n0, &alice).await;
    let (mut b, _) = ws_hello(n1, &bob).await;
    let r = join(n1, &bob, &general).await;
    assert_eq!(r.status, 200, "join on node 1: {:?}", r.json());
    assert_eq!(r.json()["members"], 2, "{:?}", r.json());
    let joined = b.next_where("joined", |f| f["room"]["id"] == general).await;
    assert_eq!(joined["room"]["name"], "general");
    b.next_where("history", |f| f["room"] == general).await;
    let bob_joined = a
        .next_where("entry", |f| f["room"] == general && f["kind"] == "join")
        .await;
    assert_eq!(bob_joined["from"], "bob");

    // Each side's message reaches the other side's node with the seq its sender was told.
    let ack = say_acked(&mut a, &general, "hello from node 0").await;
    let got = b
        .next_where("entry", |f| f["room"] == general && f["kind"] == "message")
        .await;
    assert_eq!(as_entry(&got), as_entry(&ack), "node 1's copy differs");
    assert!(
        got.get("nonce").is_none(),
        "the nonce is the sender's: {got}"
    );

    let ack = say_acked(&mut b, &general, "hello from node 1").await;
    let got = a
        .next_where("entry", |f| f["room"] == general && f["kind"] == "message")
        .await;
    assert_eq!(as_entry(&got), as_entry(&ack), "node 0's copy differs");

    let entries = same_history_everywhere(&[n0, n1], &alice, &general).await;
    let texts: Vec<&str> = entries.iter().filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(texts, ["hello from node 0", "hello from node 1"]);
    assert_eq!(seq(entries.last().unwrap()), seq(&ack));

    // The room, its members and its last seq look the same from both nodes.
    for addr in [n0, n1] {
        let r = get(addr, &format!("/api/v1/rooms/{general}"), Some(&bob)).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        let room = r.json();
        assert_eq!(room["members"], 2, "{room}");
        assert_eq!(room["owner"], "alice", "{room}");
        assert_eq!(room["last_seq"], seq(&ack), "{room}");
    }
    let (_, hello) = ws_hello(n0, &bob).await;
    assert_eq!(hello_last_seq(&hello, &general), seq(&ack));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_invites_and_read_markers_are_the_same_on_every_node() {
    let cluster = Cluster::start("state", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let alice = user(n0, "alice").await;
    let bob = user(n1, "bob").await;
    let carol = user(n1, "carol").await;

    // A block made on node 0 refuses a DM opened on node 1.
    assert_204(
        &post(
            n0,
            "/api/v1/blocks",
            Some(&alice),
            json!({ "username": "bob" }),
        )
        .await,
    );
    let r = post(
        n1,
        "/api/v1/dms",
        Some(&bob),
        json!({ "username": "alice" }),
    )
    .await;
    assert_error(&r, 403, "blocked");
    assert!(
        crate::within(SLOW, || async {
            get(n1, "/api/v1/blocks", Some(&alice)).await.json() == json!({ "blocks": ["bob"] })
        })
        .await,
        "node 1 never listed alice's block"
    );

    // An invitation made on node 0 shows and works on node 1.
    let r = post(
        n0,
        "/api/v1/rooms",
        Some(&alice),
        json!({ "name": "den", "visibility": "private" }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let den = r.json()["id"].as_str().unwrap().to_string();
    assert_error(&join(n1, &carol, &den).await, 403, "room_restricted");
    let r = post(
        n0,
        &format!("/api/v1/rooms/{den}/invites"),
        Some(&alice),
        json!({ "username": "carol" }),
    )
    .await;
    assert_204(&r);
    assert!(
        crate::within(SLOW, || async {
            me(n1, &carol).await.json()["invites"]
                .as_array()
                .is_some_and(|i| i.iter().any(|i| i["room"]["id"] == den.as_str()))
        })
        .await,
        "node 1 never showed carol's invitation"
    );
    let r = join(n1, &carol, &den).await;
    assert_eq!(r.status, 200, "{:?}", r.json());

    // A read marker set on node 1 is carol's on node 0 too.
    let (mut a, _) = ws_hello(n0, &alice).await;
    let mut last = 0;
    for i in 0..3 {
        last = seq(&say_acked(&mut a, &den, &format!("note {i}")).await);
    }
    let r = post(
        n1,
        &format!("/api/v1/rooms/{den}/read"),
        Some(&carol),
        json!({ "seq": last - 1 }),
    )
    .await;
    assert_204(&r);
    assert!(
        crate::within(SLOW, || async {
            let room = get(n0, &format!("/api/v1/rooms/{den}"), Some(&carol))
                .await
                .json();
            room["read_seq"] == last - 1 && room["unread"] == 1
        })
        .await,
        "node 0 never showed carol's read marker"
    );
}

/// A client that lost track of a message across a reconnect finds it by its nonce, which the
/// server shows its sender again (docs/BEHAVIOUR.md); the reconnect may reach another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_senders_nonce_is_shown_to_them_on_every_node() {
    let cluster = Cluster::start("nonce", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    let (mut a, _) = ws_hello(n0, &alice).await;
    a.say(&general, "find me", "lost-42").await;
    let ack = a.next_where("entry", |f| f["nonce"] == "lost-42").await;
    same_history_everywhere(&[n0, n1], &alice, &general).await;

    for addr in [n0, n1] {
        let (entries, _) = history(addr, &alice, &general).await;
        let mine = entries.iter().find(|e| e["seq"] == ack["seq"]).unwrap();
        assert_eq!(
            mine["nonce"], "lost-42",
            "alice's history on {addr}: {mine}"
        );
        let (entries, _) = history(addr, &bob, &general).await;
        let theirs = entries.iter().find(|e| e["seq"] == ack["seq"]).unwrap();
        assert!(
            theirs.get("nonce").is_none(),
            "bob's history on {addr}: {theirs}"
        );
    }
    let (mut w, _) = ws_hello(n1, &alice).await;
    w.send(json!({ "type": "sync", "room": general, "since": 0 }))
        .await;
    let h = w
        .next_where("history", |f| f["room"] == general.as_str())
        .await;
    let mine = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["seq"] == ack["seq"])
        .cloned()
        .unwrap();
    assert_eq!(mine["nonce"], "lost-42", "alice's sync on node 1: {mine}");
}

/// What a session's end does on one node reaches its connections on the others: a logout
/// closes them with 4001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_closes_the_sessions_connections_on_another() {
    let cluster = Cluster::start("logout", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let alice = user(n0, "alice").await;
    let (mut w, _) = ws_hello(n1, &alice).await;
    assert_204(&post(n0, "/api/v1/logout", Some(&alice), json!({})).await);
    assert_eq!(w.closed().await, Ended::Close(4001));
}

/// Typing and read markers are not in the timeline, but reach the other nodes' connections
/// all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_read_markers_reach_connections_on_another_node() {
    let cluster = Cluster::start("typing", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let (alice, bob, general) = crate::alice_and_bob(n0, n1).await;
    let (mut a, _) = ws_hello(n0, &alice).await;
    let (mut b, _) = ws_hello(n1, &bob).await;

    a.send(json!({ "type": "typing", "room": general })).await;
    let f = b
        .next_where("typing", |f| f["room"] == general.as_str())
        .await;
    assert_eq!(f["username"], "alice", "{f}");

    // Bob reads on node 1; his connection on node 0 hears of it.
    let ack = say_acked(&mut a, &general, "read me").await;
    let (mut b0, _) = ws_hello(n0, &bob).await;
    b.send(json!({ "type": "read", "room": general, "seq": seq(&ack) }))
        .await;
    let f = b0
        .next_where("read", |f| f["room"] == general.as_str())
        .await;
    assert_eq!(f["seq"], seq(&ack), "{f}");
}

/// Administration through one node holds on the others: the first admin registers on node 0
/// with node 0's admin setup code; an invite code made on node 0
/// registers on node 1, once; an account disabled on node 0 loses its connections and its
/// logins on node 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_codes_and_disabled_accounts_hold_on_every_node() {
    let flags = ["--registration", "invite", "--admin", "root"];
    let cluster = Cluster::start("admin", 2, &flags).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    // Each node has its own admin setup code, good for registrations through it.
    let (code0, code1) = (
        cluster.admin_setup_code(0).await,
        cluster.admin_setup_code(1).await,
    );
    assert_ne!(code0, code1);
    let r = post(
        n0,
        "/api/v1/register",
        None,
        json!({ "username": "root", "password": PASSWORD, "invite_code": code1 }),
    )
    .await;
    assert_error(&r, 403, "invite_required");
    let root = register_with_code(n0, "root", &code0).await;
    let r = post(
        n0,
        "/api/v1/admin/invite-codes",
        Some(&root),
        json!({ "uses": 1 }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let code = r.json()["code"].as_str().unwrap().to_string();
    let with_code =
        |name: &str| json!({ "username": name, "password": PASSWORD, "invite_code": code });
    let r = post(n1, "/api/v1/register", None, with_code("newbie")).await;
    assert_eq!(r.status, 201, "the code on node 1: {:?}", r.json());
    let r = post(n0, "/api/v1/register", None, with_code("second")).await;
    assert_error(&r, 403, "invite_required");

    let r = login(n1, "newbie", PASSWORD).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let newbie = r.json()["token"].as_str().unwrap().to_string();
    let (mut w, _) = ws_hello(n1, &newbie).await;
    assert_204(
        &post(
            n0,
            "/api/v1/admin/users/newbie/disable",
            Some(&root),
            json!({}),
        )
        .await,
    );
    assert_eq!(w.closed().await, Ended::Close(4001));
    assert_eq!(me(n1, &newbie).await.status, 401);
    assert_error(
        &login(n1, "newbie", PASSWORD).await,
        403,
        "account_disabled",
    );
}

/// The ids of a user's rooms in `GET /api/v1/me` on a node, sorted.
async fn room_ids(addr: std::net::SocketAddr, token: &str) -> Vec<String> {
    let mut ids: Vec<String> = me(addr, token).await.json()["rooms"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_dms_and_the_room_limit_are_the_same_on_every_node() {
    let cluster = Cluster::start("dm-limit", 2, &["--max-rooms-per-user", "2"]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let vic = user(n0, "vic").await;
    assert!(
        crate::within(SLOW, || async { me(n1, &vic).await.status == 200 }).await,
        "node 1 never took vic's token"
    );
    let mut opened = Vec::new();
    for (i, name) in ["oth1", "oth2", "oth3"].iter().enumerate() {
        let node = [n0, n1][i % 2];
        let t = user(node, name).await;
        let r = post(node, "/api/v1/dms", Some(&t), json!({ "username": "vic" })).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        opened.push((
            t,
            r.json()["id"].as_str().unwrap().to_string(),
            r.json()["members"].clone(),
        ));
    }
    // Two unanswered DMs are his cap: the third is made without him.
    let members: Vec<_> = opened.iter().map(|o| o.2.clone()).collect();
    assert_eq!(members, [json!(2), json!(2), json!(1)]);
    // He leaves the first on node 1; its opener opens it again and writes on node 0.
    assert_204(
        &post(
            n1,
            &format!("/api/v1/rooms/{}/leave", opened[0].1),
            Some(&vic),
            json!({}),
        )
        .await,
    );
    let r = post(
        n0,
        "/api/v1/dms",
        Some(&opened[0].0),
        json!({ "username": "vic" }),
    )
    .await;
    assert_eq!(r.json()["members"], 1, "{:?}", r.json());
    let (mut w, _) = ws_hello(n0, &opened[0].0).await;
    crate::until_accepted(&mut w, &opened[0].1, "still there?").await;
    // Neither DM counts: he creates two rooms, one through each node, and no third.
    let r = post(n0, "/api/v1/rooms", Some(&vic), json!({ "name": "one" })).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r = post(n1, "/api/v1/rooms", Some(&vic), json!({ "name": "two" })).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    for node in [n0, n1] {
        let r = post(
            node,
            "/api/v1/rooms",
            Some(&vic),
            json!({ "name": "three" }),
        )
        .await;
        assert_error(&r, 409, "too_many_rooms");
    }
    let want = room_ids(n0, &vic).await;
    assert_eq!(want.len(), 3, "two rooms and the second DM: {want:?}");
    assert!(!want.contains(&opened[0].1) && want.contains(&opened[1].1));
    assert!(
        crate::within(SLOW, || async { room_ids(n1, &vic).await == want }).await,
        "node 1 shows other rooms for vic"
    );
}

/// A counter from a node's `/metrics`, 0 if absent.
async fn counter(addr: std::net::SocketAddr, name: &str) -> u64 {
    let text = String::from_utf8(get(addr, "/metrics", None).await.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// `parley_registrations_total` counts an account once, on the node it registered through,
/// not on every replica that applied it (nor on none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_counted_once_on_the_node_it_came_through() {
    let cluster = Cluster::start("registrations", 2, &[]).await;
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    user(n0, "alice").await;
    let bob = user(n0, "bob").await;
    assert!(
        crate::within(SLOW, || async { me(n1, &bob).await.status == 200 }).await,
        "node 1 never took node 0's registrations"
    );
    let name = "parley_registrations_total";
    assert_eq!((counter(n0, name).await, counter(n1, name).await), (2, 0));
}
