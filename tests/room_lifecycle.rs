//! Rooms against a flood: a room goes with its last member, a user owns a bounded number of
//! rooms, and the room and user listings answer in bounded pages.

mod common;

use std::net::SocketAddr;

use common::{get, join, leave, post, room, start, user, Reply};
use serde_json::{json, Value};

fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.code().as_str()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

async fn create(addr: SocketAddr, token: &str, name: &str) -> Reply {
    post(addr, "/api/v1/rooms", Some(token), json!({ "name": name })).await
}

/// Every item of a listing, following `next` with pages of `limit`; also the page count.
async fn all_pages(addr: SocketAddr, token: &str, what: &str, query: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/v1/{what}?{query}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let r = get(addr, &path, Some(token)).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.json());
        let body = r.json();
        items.extend(body[what].as_array().expect("items").iter().cloned());
        pages += 1;
        match &body["next"] {
            Value::Null => return (items, pages),
            Value::String(next) => after = Some(next.clone()),
            other => panic!("next is a string or null: {other}"),
        }
        assert!(pages < 1000, "the listing ends");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_last_member_leaves_is_deleted() {
    let s = start(&[]).await;
    let a = user(s.addr, "alma").await;
    let b = user(s.addr, "bert").await;
    let id = room(s.addr, &a, "short-lived").await;
    assert_eq!(join(s.addr, &b, &id).await.status, 200);
    // The owner leaving is not the end: bert is still in it.
    assert_eq!(leave(s.addr, &a, &id).await.status, 204);
    let r = get(s.addr, &format!("/api/v1/rooms/{id}"), Some(&b)).await;
    assert_eq!((r.status, &r.json()["members"]), (200, &json!(1)));
    // The last member's leave deletes it, with its timeline.
    assert_eq!(leave(s.addr, &b, &id).await.status, 204);
    for (method, path) in [
        ("GET", format!("/api/v1/rooms/{id}")),
        ("GET", format!("/api/v1/rooms/{id}/messages")),
        ("POST", format!("/api/v1/rooms/{id}/join")),
        ("POST", format!("/api/v1/rooms/{id}/leave")),
    ] {
        let body = (method == "POST").then(|| json!({}));
        let r = common::request(s.addr, method, &path, Some(&b), body.as_ref()).await;
        assert_error(&r, 404, "room_not_found");
    }
    let listed = get(s.addr, "/api/v1/rooms", Some(&a)).await.json();
    assert_eq!(listed["rooms"], json!([]), "{listed}");

    // Create-then-leave no longer piles up rooms: 150 of them leave nothing behind, and the
    // room cap never gets in the way.
    for i in 0..150 {
        let r = create(s.addr, &a, &format!("flood {i}")).await;
        assert_eq!(r.status, 201, "room {i}: {:?}", r.json());
        let id = r.json()["id"].as_str().unwrap().to_string();
        assert_eq!(leave(s.addr, &a, &id).await.status, 204);
    }
    let listed = get(s.addr, "/api/v1/rooms", Some(&a)).await.json();
    assert_eq!(listed["rooms"], json!([]), "{listed}");
    let metrics = get(s.addr, "/metrics", None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines()
            .any(|l| l.starts_with("parley_rooms ") && l.ends_with(" 0")),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_owns_at_most_max_owned_rooms() {
    let s = start(&["--max-owned-rooms", "3"]).await;
    let a = user(s.addr, "cora").await;
    let b = user(s.addr, "dirk").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(room(s.addr, &a, &format!("mine {i}")).await);
    }
    assert_error(
        &create(s.addr, &a, "one too many").await,
        409,
        "too_many_rooms",
    );
    // Others are not affected.
    room(s.addr, &b, "dirk's").await;
    // Joining others' rooms is not owning them.
    assert_eq!(join(s.addr, &b, &ids[0]).await.status, 200);
    // Leaving a room someone else is still in passes its ownership on: it no longer counts.
    assert_eq!(leave(s.addr, &a, &ids[0]).await.status, 204);
    let r = get(s.addr, &format!("/api/v1/rooms/{}", ids[0]), Some(&b)).await;
    assert_eq!(r.json()["owner"], "dirk");
    room(s.addr, &a, "in its place").await;
    assert_error(
        &create(s.addr, &a, "still too many").await,
        409,
        "too_many_rooms",
    );
    // A deleted room no longer counts.
    assert_eq!(leave(s.addr, &a, &ids[1]).await.status, 204);
    room(s.addr, &a, "room again").await;
    assert_error(
        &create(s.addr, &a, "and again").await,
        409,
        "too_many_rooms",
    );
    s.stop().await;

    // 0 turns the cap off: past the default of 100.
    let s = start(&["--max-owned-rooms", "0", "--max-rooms-per-user", "1000"]).await;
    let a = user(s.addr, "emil").await;
    for i in 0..101 {
        room(s.addr, &a, &format!("r{i}")).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_owned_room_cap_is_100() {
    let s = start(&["--max-rooms-per-user", "1000"]).await;
    let a = user(s.addr, "fynn").await;
    for i in 0..100 {
        room(s.addr, &a, &format!("r{i}")).await;
    }
    assert_error(&create(s.addr, &a, "r100").await, 409, "too_many_rooms");
    let b = user(s.addr, "gala").await;
    room(s.addr, &b, "still served").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_listed_in_pages_by_name_then_id() {
    let s = start(&["--max-owned-rooms", "0", "--max-rooms-per-user", "1000"]).await;
    let a = user(s.addr, "hugo").await;
    let names = [
        "delta", "Alpha", "bravo", "alpha", "bravo", "charlie", "bravo",
    ];
    for n in names {
        room(s.addr, &a, n).await;
    }
    let (rooms, pages) = all_pages(s.addr, &a, "rooms", "limit=3").await;
    assert_eq!(pages, 3);
    let got: Vec<(String, String)> = rooms
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut want = got.clone();
    want.sort();
    assert_eq!(got, want, "by name then id");
    assert_eq!(got.len(), names.len());
    // Each item is the contract's Room.
    for key in ["id", "name", "owner", "members", "capacity", "last_seq"] {
        assert!(rooms[0].get(key).is_some(), "{key}: {}", rooms[0]);
    }

    // q filters names case-insensitively, across pages too.
    let (alphas, _) = all_pages(s.addr, &a, "rooms", "q=ALPH&limit=1").await;
    let alpha_names: Vec<&str> = alphas.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(alpha_names, ["Alpha", "alpha"]);
    let (bravos, pages) = all_pages(s.addr, &a, "rooms", "q=rav&limit=2").await;
    assert_eq!((bravos.len(), pages), (3, 2));

    // A page whose cursor room was deleted meanwhile goes on where it was.
    let first = get(s.addr, "/api/v1/rooms?limit=2", Some(&a)).await.json();
    let cursor = first["next"].as_str().unwrap().to_string();
    assert_eq!(leave(s.addr, &a, &cursor).await.status, 204);
    let rest = get(s.addr, &format!("/api/v1/rooms?after={cursor}"), Some(&a))
        .await
        .json();
    let rest_ids: Vec<&Value> = rest["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    let want_ids: Vec<&Value> = rooms[2..].iter().map(|r| &r["id"]).collect();
    assert_eq!(rest_ids, want_ids);
    assert_eq!(rest["next"], Value::Null);

    // Bad limits and unknown cursors are refused.
    let r = get(s.addr, "/api/v1/rooms?limit=lots", Some(&a)).await;
    assert_error(&r, 400, "bad_request");
    let r = get(s.addr, "/api/v1/rooms?after=nosuchroom", Some(&a)).await;
    assert_error(&r, 400, "bad_request");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_holds_100_rooms_by_default_and_500_at_most() {
    let s = start(&["--max-owned-rooms", "0", "--max-rooms-per-user", "1000"]).await;
    let a = user(s.addr, "ines").await;
    for i in 0..501 {
        room(s.addr, &a, &format!("room {i:03}")).await;
    }
    let page = get(s.addr, "/api/v1/rooms", Some(&a)).await.json();
    assert_eq!(page["rooms"].as_array().unwrap().len(), 100);
    assert_eq!(page["next"], page["rooms"][99]["id"]);
    let page = get(s.addr, "/api/v1/rooms?limit=100000", Some(&a))
        .await
        .json();
    assert_eq!(page["rooms"].as_array().unwrap().len(), 500);
    assert!(page["next"].is_string());
    let (all, pages) = all_pages(s.addr, &a, "rooms", "limit=500").await;
    assert_eq!((all.len(), pages), (501, 2));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_listed_in_pages_by_name() {
    let s = start(&[]).await;
    let mut token = String::new();
    for name in ["zoe", "Bob", "alice", "Carl", "bea"] {
        token = user(s.addr, name).await;
    }
    let (users, pages) = all_pages(s.addr, &token, "users", "limit=2").await;
    assert_eq!(pages, 3);
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bea", "Bob", "Carl", "zoe"]);
    for key in ["username", "online", "last_seen"] {
        assert!(users[0].get(key).is_some(), "{key}: {}", users[0]);
    }
    let page = get(s.addr, "/api/v1/users?limit=2", Some(&token))
        .await
        .json();
    assert_eq!(page["next"], "bea");
    let (bs, _) = all_pages(s.addr, &token, "users", "q=B").await;
    let names: Vec<&str> = bs.iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["bea", "Bob"]);
    // The cursor is a name, matched case-insensitively.
    let page = get(s.addr, "/api/v1/users?after=BOB", Some(&token))
        .await
        .json();
    let names: Vec<&str> = page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Carl", "zoe"]);
    assert_eq!(page["next"], Value::Null);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_and_users_commands_answer_the_first_page() {
    let s = start(&["--max-owned-rooms", "0", "--max-rooms-per-user", "1000"]).await;
    let a = user(s.addr, "jana").await;
    for i in 0..101 {
        room(s.addr, &a, &format!("room {i:03}")).await;
    }
    let (mut w, _) = common::ws_hello(s.addr, &a).await;
    for (line, path) in [("/rooms", "/api/v1/rooms"), ("/users", "/api/v1/users")] {
        w.send(json!({ "type": "send", "room": "", "text": line }))
            .await;
        let reply = w.next_where("reply", |_| true).await;
        let rest = get(s.addr, path, Some(&a)).await.json();
        assert_eq!(reply["data"], rest, "{line}");
    }
    w.send(json!({ "type": "send", "room": "", "text": "/rooms" }))
        .await;
    let reply = w.next_where("reply", |_| true).await;
    assert_eq!(reply["data"]["rooms"].as_array().unwrap().len(), 100);
    assert_eq!(reply["data"]["next"], reply["data"]["rooms"][99]["id"]);
    assert!(reply["text"].as_str().unwrap().contains("first 100 shown"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_rooms_stay_deleted_after_compaction_and_a_crash() {
    use common::process::{start as spawn, TempDir};
    let tmp = TempDir::new("room-deleted");
    let data = tmp.data();
    let flags = ["--compact-bytes", "4096", "--max-owned-rooms", "3"];
    let server = spawn(&data, &flags);
    let addr = server.addr;
    let a = user(addr, "kira").await;
    let kept = room(addr, &a, "kept").await;
    let gone = room(addr, &a, "gone").await;
    assert_eq!(leave(addr, &a, &gone).await.status, 204);
    // Enough create-and-leave to pass --compact-bytes; the sweep then writes a snapshot.
    for i in 0..40 {
        let id = room(addr, &a, &format!("churn {i}")).await;
        assert_eq!(leave(addr, &a, &id).await.status, 204);
    }
    assert!(
        common::eventually(|| {
            let snapshot = data.join("snapshot");
            async move { snapshot.exists() }
        })
        .await,
        "a snapshot was written"
    );
    // And one more after the snapshot, for the journal to replay.
    let late = room(addr, &a, "late").await;
    assert_eq!(leave(addr, &a, &late).await.status, 204);
    drop(server); // kill -9

    let server = spawn(&data, &flags);
    let addr = server.addr;
    let a = common::login(addr, "kira", common::PASSWORD).await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    for id in [&gone, &late] {
        let r = get(addr, &format!("/api/v1/rooms/{id}"), Some(&a)).await;
        assert_error(&r, 404, "room_not_found");
    }
    let listed = get(addr, "/api/v1/rooms", Some(&a)).await.json();
    let ids: Vec<&Value> = listed["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!(kept)]);
    // The owned count was rebuilt: kira owns one room, so two more and no further.
    room(addr, &a, "second").await;
    room(addr, &a, "third").await;
    assert_error(&create(addr, &a, "fourth").await, 409, "too_many_rooms");
    server.stop().await;
}
