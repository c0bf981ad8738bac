//! Direct messages: `POST /api/v1/dms`, the DM room's shape and name, reuse, a side who left
//! coming back, the moderation calls a DM refuses with `dm_room`, and `/msg`.

use serde_json::json;

use crate::common::*;
use crate::*;

#[tokio::test]
async fn a_dm_is_a_private_room_of_two_named_after_both_sides() {
    let s = start(&[]).await;
    let zoe = user(s.addr, "zoe").await;
    let adam = user(s.addr, "Adam").await;
    let carol = user(s.addr, "carol").await;
    let (mut wa, _) = ws_hello(s.addr, &adam).await;
    let (mut wz, _) = ws_hello(s.addr, &zoe).await;

    // The name is matched case-insensitively.
    let r = open_dm(s.addr, &zoe, "ADAM").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let dm = r.json();
    let id = dm["id"].as_str().unwrap().to_string();
    assert_eq!(dm["kind"], "dm", "{dm}");
    assert_eq!(dm["visibility"], "private", "{dm}");
    assert_eq!(dm["capacity"], 2, "{dm}");
    assert_eq!(dm["members"], 2, "{dm}");
    assert_eq!(dm["role"], "member", "the opener is a plain member: {dm}");
    // Sorted case-insensitively ("Adam" before "zoe", though 'A' < 'z' either way) and
    // shown as registered.
    assert_eq!(dm["name"], "Adam, zoe", "{dm}");

    // The other side learns of it like any other door: `joined`, then its history.
    let joined = wa.next_where("joined", |_| true).await;
    assert_eq!(joined["room"]["id"], id.as_str(), "{joined}");
    assert_eq!(joined["room"]["kind"], "dm", "{joined}");
    assert_eq!(joined["room"]["role"], "member", "{joined}");
    assert_eq!(
        (&joined["room"]["read_seq"], &joined["room"]["unread"]),
        (&json!(0), &json!(0)),
        "the receiver's view, with a marker: {joined}"
    );
    let h = wa.next().await.expect("history after joined");
    assert_eq!(
        (&h["type"], &h["room"]),
        (&json!("history"), &json!(id)),
        "{h}"
    );

    // The opener became a member too: the same frames.
    let joined = wz.next_where("joined", |_| true).await;
    assert_eq!(joined["room"]["id"], id.as_str(), "{joined}");
    assert_eq!(joined["room"]["name"], "Adam, zoe", "{joined}");
    let h = wz.next().await.expect("history after joined");
    assert_eq!(h["type"], "history", "{h}");

    let info = room_info(s.addr, &adam, &id).await;
    let mut roles: Vec<(String, String)> = info["member_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["username"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        vec![
            ("Adam".to_string(), "member".to_string()),
            ("zoe".to_string(), "member".to_string())
        ]
    );

    // The timeline starts with a join entry for each side.
    let (entries, _) = history(s.addr, &zoe, &id).await;
    let joins: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["from"].as_str().unwrap()))
        .collect();
    assert_eq!(joins.len(), 2, "{entries:?}");
    assert!(joins.iter().all(|(k, _)| *k == "join"), "{entries:?}");
    let mut who: Vec<&str> = joins.iter().map(|(_, f)| *f).collect();
    who.sort();
    assert_eq!(who, vec!["Adam", "zoe"]);

    // The same pair gets the same room, from either side, however the name is written.
    assert_eq!(dm_id(s.addr, &adam, "Zoe").await, id);
    assert_eq!(dm_id(s.addr, &zoe, "adam").await, id);
    assert_eq!(room_info(s.addr, &zoe, &id).await["members"], 2);
    let (again, _) = history(s.addr, &zoe, &id).await;
    assert_eq!(again.len(), 2, "reopening appends nothing: {again:?}");

    // A third user can neither see it nor get in.
    let r = get(s.addr, &format!("/api/v1/rooms/{id}"), Some(&carol)).await;
    assert_eq!((r.status, r.code()), (403, "room_restricted".into()));
    let r = join(s.addr, &carol, &id).await;
    assert_eq!(r.status, 403, "{:?}", r.json());
    let listed = get(s.addr, "/api/v1/rooms", Some(&carol)).await.json();
    assert!(
        !listed["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id),
        "a DM is not listed to others: {listed}"
    );
    // Its members see it listed.
    let listed = get(s.addr, "/api/v1/rooms", Some(&zoe)).await.json();
    assert!(
        listed["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id),
        "{listed}"
    );
    // Each side sees it in /me with kind dm.
    assert_eq!(room_in_me(s.addr, &adam, &id).await["kind"], "dm");
    s.stop().await;
}

#[tokio::test]
async fn a_dm_sorts_the_names_case_insensitively() {
    let s = start(&[]).await;
    // Byte order would put "Zed" before "amy"; case-insensitive order puts amy first.
    let zed = user(s.addr, "Zed").await;
    let _amy = user(s.addr, "amy").await;
    let r = open_dm(s.addr, &zed, "AMY").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["name"], "amy, Zed", "{:?}", r.json());
    s.stop().await;
}

#[tokio::test]
async fn opening_a_dm_with_yourself_or_nobody_fails() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let r = open_dm(s.addr, &alice, "ALICE").await;
    assert_eq!((r.status, r.code()), (400, "invalid_target".into()));
    let r = open_dm(s.addr, &alice, "nobody").await;
    assert_eq!((r.status, r.code()), (404, "user_not_found".into()));
    let r = post(s.addr, "/api/v1/dms", None, json!({ "username": "alice" })).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized".into()));
    let me = get(s.addr, "/api/v1/me", Some(&alice)).await.json();
    assert_eq!(me["rooms"], json!([]), "no room was made: {me}");
    s.stop().await;
}

#[tokio::test]
async fn a_side_who_left_comes_back_with_a_new_join_by_opening_it() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let id = dm_id(s.addr, &alice, "bob").await;
    let (mut wb, _) = ws_hello(s.addr, &bob).await;

    assert_eq!(leave(s.addr, &bob, &id).await.status, 204);
    assert_eq!(room_info(s.addr, &alice, &id).await["members"], 1);

    // Alice opens it again: the same room, without bob; he comes back by opening it.
    let r = open_dm(s.addr, &alice, "bob").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["id"], id.as_str());
    assert_eq!(r.json()["members"], 1);
    assert_eq!(dm_id(s.addr, &bob, "alice").await, id);
    let joined = wb.next_where("joined", |_| true).await;
    assert_eq!(joined["room"]["id"], id.as_str(), "{joined}");
    let (entries, _) = history(s.addr, &bob, &id).await;
    let trail: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["from"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        trail[2..].to_vec(),
        vec![
            ("leave".to_string(), "bob".to_string()),
            ("join".to_string(), "bob".to_string())
        ],
        "{entries:?}"
    );

    // The side who left may also come back by opening it himself.
    assert_eq!(leave(s.addr, &bob, &id).await.status, 204);
    assert_eq!(dm_id(s.addr, &bob, "alice").await, id);
    assert_eq!(room_info(s.addr, &alice, &id).await["members"], 2);
    let (entries, _) = history(s.addr, &alice, &id).await;
    let last = entries.last().unwrap();
    assert_eq!(
        (&last["kind"], &last["from"]),
        (&json!("join"), &json!("bob"))
    );

    // Once both sides left, the room is gone; the pair then gets a new one.
    assert_eq!(leave(s.addr, &bob, &id).await.status, 204);
    assert_eq!(leave(s.addr, &alice, &id).await.status, 204);
    let r = get(s.addr, &format!("/api/v1/rooms/{id}"), Some(&alice)).await;
    assert_eq!(r.status, 404, "{:?}", r.json());
    let fresh = dm_id(s.addr, &alice, "bob").await;
    assert_ne!(fresh, id);
    let (entries, _) = history(s.addr, &bob, &fresh).await;
    assert_eq!(entries.len(), 2, "a fresh timeline: {entries:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_dm_refuses_moderation_but_either_side_may_set_its_topic() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let _carol = user(s.addr, "carol").await;
    let id = dm_id(s.addr, &alice, "bob").await;
    let base = format!("/api/v1/rooms/{id}");

    let refused = [
        (
            "POST",
            format!("{base}/invites"),
            Some(json!({"username": "carol"})),
        ),
        (
            "POST",
            format!("{base}/kick"),
            Some(json!({"username": "bob"})),
        ),
        (
            "POST",
            format!("{base}/bans"),
            Some(json!({"username": "bob"})),
        ),
        ("DELETE", format!("{base}/bans/bob"), None),
        (
            "POST",
            format!("{base}/mutes"),
            Some(json!({"username": "bob", "seconds": 60})),
        ),
        ("DELETE", format!("{base}/mutes/bob"), None),
        (
            "POST",
            format!("{base}/roles"),
            Some(json!({"username": "bob", "role": "moderator"})),
        ),
        (
            "POST",
            format!("{base}/roles"),
            Some(json!({"username": "bob", "role": "owner"})),
        ),
        ("PATCH", base.clone(), Some(json!({"name": "ours"}))),
        ("PATCH", base.clone(), Some(json!({"visibility": "public"}))),
        ("DELETE", base.clone(), None),
    ];
    for (method, path, body) in &refused {
        for token in [&alice, &bob] {
            let r = request(s.addr, method, path, Some(token), body.as_ref()).await;
            assert_eq!(
                (r.status, r.code()),
                (409, "dm_room".into()),
                "{method} {path} {body:?}: {:?}",
                r.json()
            );
        }
    }
    // Nothing of it happened.
    let info = room_info(s.addr, &alice, &id).await;
    assert_eq!(info["members"], 2);
    assert_eq!(info["name"], "alice, bob");
    assert_eq!(info["visibility"], "private");

    // Neither side is the DM's owner: the opener may not delete the other's message.
    let (mut wb, _) = ws_hello(s.addr, &bob).await;
    let bobs = seq(&post_msg(&mut wb, &id, "mine, not hers").await);
    let r = delete(s.addr, &alice, &id, bobs).await;
    assert_eq!((r.status, r.code()), (403, "forbidden".into()));

    // The same through a slash command.
    let (mut wa, _) = ws_hello(s.addr, &alice).await;
    for line in [
        "/kick bob",
        "/ban bob",
        "/unban bob",
        "/mute bob 60",
        "/unmute bob",
        "/op bob",
        "/deop bob",
        "/invite carol",
        "/visibility public",
    ] {
        let f = ask(&mut wa, &id, line).await;
        assert_eq!(error_code(&f), "dm_room", "{line}: {f}");
    }
    let f = ask(&mut wa, &id, "/topic by command").await;
    assert_eq!(f["type"], "reply", "{f}");

    // Either side may change the topic.
    for (token, topic) in [(&alice, "plans"), (&bob, "more plans")] {
        let r = request(
            s.addr,
            "PATCH",
            &base,
            Some(token),
            Some(&json!({ "topic": topic })),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert_eq!(r.json()["topic"], topic);
    }
    let (entries, _) = history(s.addr, &alice, &id).await;
    let updates: Vec<_> = entries.iter().filter(|e| e["kind"] == "update").collect();
    assert_eq!(updates.len(), 3, "{entries:?}");
    assert_eq!(updates[0]["changes"]["topic"], "by command");
    assert_eq!(updates[2]["changes"]["topic"], "more plans");
    assert_eq!(updates[2]["from"], "bob");
    s.stop().await;
}

#[tokio::test]
async fn msg_opens_or_reuses_the_dm_and_posts_there() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "Bob").await;
    let (mut wa, _) = ws_hello(s.addr, &alice).await;
    let (mut wb, _) = ws_hello(s.addr, &bob).await;

    // A command needs no room of the frame.
    let n = nonce();
    wa.say("", "/msg bob hello there", &n).await;
    let mut before_reply = Vec::new();
    let reply = loop {
        let f = wa.next().await.expect("the /msg reply");
        if f["nonce"] == n.as_str() {
            break f;
        }
        before_reply.push(f);
    };
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["command"], "msg", "{reply}");
    let dm = &reply["data"];
    assert_eq!(dm["kind"], "dm", "{reply}");
    assert_eq!(dm["name"], "alice, Bob", "{reply}");
    // The Room as its receiver sees it: with the caller's role and marker.
    assert_eq!(dm["role"], "member", "{reply}");
    assert!(dm["read_seq"].is_u64() && dm["unread"].is_u64(), "{reply}");
    let id = dm["id"].as_str().unwrap().to_string();
    // The sender became a member too: `joined`, then the DM's history.
    let mut rest = before_reply.clone();
    while !rest
        .iter()
        .any(|f| f["type"] == "history" && f["room"] == id)
    {
        rest.push(wa.next().await.expect("the DM's history"));
    }
    let j = rest
        .iter()
        .position(|f| f["type"] == "joined" && f["room"]["id"] == id)
        .unwrap_or_else(|| panic!("no joined frame for the DM: {rest:?}"));
    assert_eq!(rest[j + 1]["type"], "history", "{rest:?}");

    let joined = wb.next_where("joined", |_| true).await;
    assert_eq!(joined["room"]["id"], id.as_str());
    let got = wb
        .next_where("entry", |f| f["kind"] == "message" && f["room"] == id)
        .await;
    assert_eq!(
        (&got["from"], &got["text"]),
        (&json!("alice"), &json!("hello there"))
    );

    // Again: the same DM.
    let reply = ask(&mut wa, "", "/msg BOB second").await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["data"]["id"], id.as_str(), "{reply}");
    let got = wb
        .next_where("entry", |f| f["kind"] == "message" && f["room"] == id)
        .await;
    assert_eq!(got["text"], "second");
    let (entries, _) = history(s.addr, &bob, &id).await;
    let texts: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["hello there", "second"]);

    // Errors are those of the REST call.
    let f = ask(&mut wa, "", "/msg alice talking to myself").await;
    assert_eq!(error_code(&f), "invalid_target", "{f}");
    let f = ask(&mut wa, "", "/msg nobody hi").await;
    assert_eq!(error_code(&f), "user_not_found", "{f}");
    s.stop().await;
}

#[tokio::test]
async fn dms_are_not_owned_rooms() {
    let s = start(&["--max-owned-rooms", "1"]).await;
    let alice = user(s.addr, "alice").await;
    for name in ["bob", "carol", "dave"] {
        user(s.addr, name).await;
    }
    room(s.addr, &alice, "mine").await;
    // Opening DMs is not creating rooms she owns: both sides are plain members.
    for name in ["bob", "carol", "dave"] {
        let r = open_dm(s.addr, &alice, name).await;
        assert_eq!(r.status, 200, "DM with {name}: {:?}", r.json());
        assert_eq!(r.json()["role"], "member");
    }
    let r = post(
        s.addr,
        "/api/v1/rooms",
        Some(&alice),
        json!({ "name": "second" }),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "too_many_rooms".into()));
    s.stop().await;
}
