//! Private rooms are seen only by their members and invitees; invitations are listed, used by
//! joining and cancelled by a ban or the room's deletion; every `Room` view carries the
//! v1.1 fields and the caller's role.

use serde_json::{json, Value};

use crate::common::*;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_room_is_no_cursor_for_those_who_cannot_see_it() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "cur", "private").await;
    // A page that started at the private room's place by name would tell where its name
    // sorts; bisection would then spell it out.
    let path = format!("/api/v1/rooms?after={}", c.id);
    let r = get(a, &path, Some(&c.outsider)).await;
    assert_eq!((r.status, r.code().as_str()), (400, "bad_request"));
    let r = get(a, &path, Some(&c.member)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_room_is_listed_only_to_its_members() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "ls", "private").await;
    let open = room(a, &c.outsider, "ls open").await;
    for token in [&c.owner, &c.moderator, &c.member] {
        let ids = listed(a, token).await;
        assert!(ids.contains(&c.id) && ids.contains(&open), "{ids:?}");
    }
    assert_eq!(listed(a, &c.outsider).await, std::slice::from_ref(&open));
    // Filtered by name, still hidden.
    let r = get(a, "/api/v1/rooms?q=ls%20room", Some(&c.outsider)).await;
    assert_eq!(r.json()["rooms"], json!([]), "{:?}", r.json());
    let r = get(a, "/api/v1/rooms?q=ls%20room", Some(&c.member)).await;
    assert_eq!(r.json()["rooms"][0]["id"], json!(c.id), "{:?}", r.json());
    // The /rooms command answers what GET /api/v1/rooms does.
    let (mut w, _) = ws_hello(a, &c.outsider).await;
    let reply = ask(&mut w, "", "/rooms", "reply").await;
    let rooms = reply["data"]["rooms"].as_array().expect("rooms").clone();
    assert!(rooms.iter().all(|r| r["id"] != json!(c.id)), "{reply}");
    assert!(rooms.iter().any(|r| r["id"] == json!(open)), "{reply}");
    let (mut w, _) = ws_hello(a, &c.member).await;
    let reply = ask(&mut w, "", "/rooms", "reply").await;
    let rooms = reply["data"]["rooms"].as_array().expect("rooms").clone();
    assert!(rooms.iter().any(|r| r["id"] == json!(c.id)), "{reply}");
    // An invitation does not list it either; membership does.
    assert_204(&invite(a, &c.owner, &c.id, "lsout").await);
    assert!(!listed(a, &c.outsider).await.contains(&c.id));
    // Made public, it is listed to everyone; private again, hidden again.
    let r = patch(a, &c.owner, &c.id, json!({ "visibility": "public" })).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let stranger = user(a, "lsstranger").await;
    assert!(listed(a, &stranger).await.contains(&c.id));
    let r = patch(a, &c.owner, &c.id, json!({ "visibility": "private" })).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(!listed(a, &stranger).await.contains(&c.id));
    assert_error(&join(a, &stranger, &c.id).await, 403, "room_restricted");
    s.stop().await;
}

/// Every call about a room, as `token` would make it, with the cast's usernames as targets.
async fn every_call(
    a: std::net::SocketAddr,
    token: &str,
    id: &str,
    p: &str,
) -> Vec<(String, Reply)> {
    let mem = format!("{p}mem");
    let out = format!("{p}out");
    vec![
        ("history".into(), messages(a, token, id).await),
        ("leave".into(), leave(a, token, id).await),
        (
            "patch".into(),
            patch(a, token, id, json!({ "topic": "mine" })).await,
        ),
        ("invite".into(), invite(a, token, id, &out).await),
        (
            "invite unknown".into(),
            invite(a, token, id, "nobody").await,
        ),
        ("kick".into(), kick(a, token, id, &mem, None).await),
        ("ban".into(), ban(a, token, id, &mem, None).await),
        ("bans".into(), bans(a, token, id).await),
        ("unban".into(), unban(a, token, id, &mem).await),
        ("mute".into(), mute(a, token, id, &mem, json!(60)).await),
        ("mute bad".into(), mute(a, token, id, &mem, json!(0)).await),
        ("unmute".into(), unmute(a, token, id, &mem).await),
        (
            "roles".into(),
            set_role(a, token, id, &mem, "moderator").await,
        ),
        (
            "roles bad".into(),
            set_role(a, token, id, &mem, "admin").await,
        ),
        ("delete".into(), delete_room(a, token, id).await),
    ]
}

/// Checks that every call got `403 room_restricted`, listing all that did not.
#[track_caller]
fn assert_all_restricted(calls: &[(String, Reply)], who: &str) {
    let wrong: Vec<String> = calls
        .iter()
        .filter(|(_, r)| (r.status, r.code().as_str()) != (403, "room_restricted"))
        .map(|(what, r)| format!("{what}: {} {}", r.status, String::from_utf8_lossy(&r.body)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{who} gets 403 room_restricted for everything, but: {wrong:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_get_room_restricted_for_everything() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "rr", "private").await;
    let before = last_seq(a, &c.owner, &c.id).await;
    let mut calls = every_call(a, &c.outsider, &c.id, "rr").await;
    calls.push(("details".into(), details(a, &c.outsider, &c.id).await));
    calls.push(("join".into(), join(a, &c.outsider, &c.id).await));
    assert_all_restricted(&calls, "an outsider");
    assert_eq!(
        last_seq(a, &c.owner, &c.id).await,
        before,
        "nothing changed"
    );
    assert_eq!(roles_of(&details(a, &c.owner, &c.id).await.json()).len(), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_user_may_read_the_details_and_join_and_nothing_else() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "iv", "private").await;
    assert_eq!(me(a, &c.outsider).await["invites"], json!([]));
    assert_204(&invite(a, &c.moderator, &c.id, "IVOUT").await);
    let before = last_seq(a, &c.owner, &c.id).await;

    let d = details(a, &c.outsider, &c.id).await;
    assert_eq!(d.status, 200, "{:?}", d.json());
    let d = d.json();
    assert_eq!(
        (&d["id"], &d["visibility"], &d["members"], &d["kind"]),
        (&json!(c.id), &json!("private"), &json!(3), &json!("room")),
        "{d}"
    );
    assert!(d.get("role").is_none(), "an invitee has no role yet: {d}");
    assert_eq!(roles_of(&d).len(), 3);
    let invites = me(a, &c.outsider).await["invites"].clone();
    assert_eq!(
        invites,
        json!([{ "room": without_member_list(d.clone()), "by": "ivmod" }]),
        "the invitation shows the Room as the invitee sees it, and who invited"
    );

    let calls = every_call(a, &c.outsider, &c.id, "iv").await;
    assert_all_restricted(&calls, "an invitee");
    assert_eq!(
        last_seq(a, &c.owner, &c.id).await,
        before,
        "nothing changed"
    );

    // Joining uses the invitation.
    let r = join(a, &c.outsider, &c.id).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        (&r.json()["role"], &r.json()["members"]),
        (&json!("member"), &json!(4))
    );
    assert_eq!(me(a, &c.outsider).await["invites"], json!([]));
    assert_eq!(messages(a, &c.outsider, &c.id).await.status, 200);
    // Having left, the invitation is spent: the room is closed again.
    assert_204(&leave(a, &c.outsider, &c.id).await);
    assert_error(&join(a, &c.outsider, &c.id).await, 403, "room_restricted");
    assert_error(
        &details(a, &c.outsider, &c.id).await,
        403,
        "room_restricted",
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_cancels_an_invitation() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "bc", "private").await;
    assert_204(&invite(a, &c.owner, &c.id, "bcout").await);
    assert_eq!(
        me(a, &c.outsider).await["invites"].as_array().map(Vec::len),
        Some(1)
    );
    assert_204(&ban(a, &c.moderator, &c.id, "bcout", Some("no")).await);
    assert_eq!(me(a, &c.outsider).await["invites"], json!([]));
    assert_error(&join(a, &c.outsider, &c.id).await, 403, "banned");
    assert_204(&unban(a, &c.owner, &c.id, "bcout").await);
    assert_eq!(me(a, &c.outsider).await["invites"], json!([]));
    assert_error(
        &details(a, &c.outsider, &c.id).await,
        403,
        "room_restricted",
    );
    assert_error(&join(a, &c.outsider, &c.id).await, 403, "room_restricted");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_room_removes_its_invitations() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "dr", "private").await;
    let other = cast(a, "dq", "public").await;
    assert_204(&invite(a, &c.owner, &c.id, "drout").await);
    assert_204(&invite(a, &other.member, &other.id, "drout").await);
    let invites = me(a, &c.outsider).await["invites"].clone();
    let mut ids: Vec<Value> = invites
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["room"]["id"].clone())
        .collect();
    ids.sort_by_key(|v| v.to_string());
    let mut want = vec![json!(c.id), json!(other.id)];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(ids, want, "{invites}");
    assert_204(&delete_room(a, &c.owner, &c.id).await);
    let invites = me(a, &c.outsider).await["invites"].clone();
    assert_eq!(
        (
            invites.as_array().map(Vec::len),
            &invites[0]["room"]["id"],
            &invites[0]["by"]
        ),
        (Some(1), &json!(other.id), &json!("dqmem")),
        "{invites}"
    );
    assert_error(&join(a, &c.outsider, &c.id).await, 404, "room_not_found");
    s.stop().await;
}

/// The fields every member's `Room` view carries.
fn assert_room_fields(room: &Value, id: &str, visibility: &str, topic: &str, role: &str) {
    assert_eq!(
        (
            &room["id"],
            &room["kind"],
            &room["visibility"],
            &room["topic"],
            &room["role"]
        ),
        (
            &json!(id),
            &json!("room"),
            &json!(visibility),
            &json!(topic),
            &json!(role)
        ),
        "{room}"
    );
}

fn find<'a>(rooms: &'a Value, id: &str) -> &'a Value {
    rooms
        .as_array()
        .unwrap_or_else(|| panic!("rooms: {rooms}"))
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("room {id} not in {rooms}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_room_view_carries_kind_visibility_topic_and_the_callers_role() {
    let s = server().await;
    let a = s.addr;
    let ann = user(a, "ann").await;
    let ben = user(a, "ben").await;
    let cid = user(a, "cid").await;
    let plain = create(a, &ann, json!({ "name": "plain" })).await;
    let id = plain["id"].as_str().unwrap().to_string();
    assert_room_fields(&plain, &id, "public", "", "owner");
    let topical = create(
        a,
        &ann,
        json!({ "name": "topical", "visibility": "private", "topic": "what we talk about" }),
    )
    .await;
    let tid = topical["id"].as_str().unwrap().to_string();
    assert_room_fields(&topical, &tid, "private", "what we talk about", "owner");

    let r = join(a, &ben, &id).await;
    assert_room_fields(&r.json(), &id, "public", "", "member");
    assert_204(&invite(a, &ann, &tid, "cid").await);
    let r = join(a, &cid, &tid).await;
    assert_room_fields(&r.json(), &tid, "private", "what we talk about", "member");
    assert_204(&set_role(a, &ann, &tid, "CID", "moderator").await);

    let m = me(a, &ann).await;
    assert_room_fields(find(&m["rooms"], &id), &id, "public", "", "owner");
    assert_room_fields(
        find(&m["rooms"], &tid),
        &tid,
        "private",
        "what we talk about",
        "owner",
    );
    let m = me(a, &cid).await;
    assert_room_fields(
        find(&m["rooms"], &tid),
        &tid,
        "private",
        "what we talk about",
        "moderator",
    );
    let (_w, hello) = ws_hello(a, &ben).await;
    assert_room_fields(find(&hello["rooms"], &id), &id, "public", "", "member");
    let (_w, hello) = ws_hello(a, &cid).await;
    assert_room_fields(
        find(&hello["rooms"], &tid),
        &tid,
        "private",
        "what we talk about",
        "moderator",
    );

    let d = details(a, &cid, &tid).await.json();
    assert_room_fields(&d, &tid, "private", "what we talk about", "moderator");
    assert_eq!(
        roles_of(&d),
        [
            ("ann".to_string(), "owner".to_string()),
            ("cid".into(), "moderator".into())
        ]
    );
    let d = details(a, &ben, &id).await.json();
    assert_eq!(
        roles_of(&d),
        [
            ("ann".to_string(), "owner".to_string()),
            ("ben".into(), "member".into())
        ]
    );
    // A non-member's view of a public room has the fields but no role.
    let d = details(a, &cid, &id).await.json();
    assert_eq!(
        (&d["kind"], &d["visibility"], &d["topic"]),
        (&json!("room"), &json!("public"), &json!(""))
    );
    assert!(d.get("role").is_none(), "{d}");
    let listing = get(a, "/api/v1/rooms", Some(&cid)).await.json();
    let l = find(&listing["rooms"], &id);
    assert_eq!(
        (&l["visibility"], &l["topic"]),
        (&json!("public"), &json!(""))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_kicked_from_a_private_room_is_an_outsider_again() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "kp", "private").await;
    assert!(listed(a, &c.member).await.contains(&c.id));
    assert_204(&kick(a, &c.moderator, &c.id, "KPMEM", Some("out")).await);
    assert!(!listed(a, &c.member).await.contains(&c.id));
    assert_error(&details(a, &c.member, &c.id).await, 403, "room_restricted");
    assert_error(&join(a, &c.member, &c.id).await, 403, "room_restricted");
    assert_eq!(me(a, &c.member).await["invites"], json!([]));
    // A new invitation lets them back.
    assert_204(&invite(a, &c.moderator, &c.id, "kpmem").await);
    let r = join(a, &c.member, &c.id).await;
    assert_eq!(
        (r.status, &r.json()["role"]),
        (200, &json!("member")),
        "{:?}",
        r.json()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_room_is_listed_and_found_by_its_new_name() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "rn", "public").await;
    let r = patch(a, &c.moderator, &c.id, json!({ "name": "zebra crossing" })).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let found = get(a, "/api/v1/rooms?q=ZEBRA", Some(&c.outsider))
        .await
        .json();
    assert_eq!(
        (&found["rooms"][0]["id"], &found["rooms"][0]["name"]),
        (&json!(c.id), &json!("zebra crossing")),
        "{found}"
    );
    let old = get(a, "/api/v1/rooms?q=rn%20room", Some(&c.outsider))
        .await
        .json();
    assert_eq!(old["rooms"], json!([]), "{old}");
    // Listed in name order under the new name.
    room(a, &c.outsider, "aardvark").await;
    let names: Vec<Value> = get(a, "/api/v1/rooms", Some(&c.outsider)).await.json()["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, [json!("aardvark"), json!("zebra crossing")]);
    s.stop().await;
}

/// Sends a frame with a nonce and returns the frame that echoes it.
async fn answer(w: &mut Ws, mut frame: Value, nonce: &str) -> Value {
    frame["nonce"] = json!(nonce);
    w.send(frame).await;
    loop {
        let f = w.next().await.expect("an answer");
        if f["nonce"] == nonce {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_ways_into_a_private_room_are_closed_to_outsiders() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "wp", "private").await;
    let (mut w, _) = ws_hello(a, &c.outsider).await;
    let id = c.id.as_str();
    let cmd = |text: String| json!({ "type": "send", "room": "", "text": text });
    let mut wrong = Vec::new();
    for (i, frame) in [
        cmd(format!("/who {id}")),
        cmd(format!("/join {id}")),
        json!({ "type": "sync", "room": id, "since": 0 }),
        json!({ "type": "send", "room": id, "text": "/kick wpmem" }),
        json!({ "type": "send", "room": id, "text": "/topic mine" }),
    ]
    .into_iter()
    .enumerate()
    {
        let f = answer(&mut w, frame.clone(), &format!("o{i}")).await;
        if (&f["type"], &f["code"]) != (&json!("error"), &json!("room_restricted")) {
            wrong.push(format!("{frame} got {f}"));
        }
    }
    assert!(wrong.is_empty(), "each gets room_restricted: {wrong:#?}");
    assert_eq!(last_seq(a, &c.owner, id).await, 4, "nothing changed");

    // Invited, the outsider may look with /who and come in with /join.
    assert_204(&invite(a, &c.owner, id, "wpout").await);
    let r = answer(&mut w, cmd(format!("/who {id}")), "i1").await;
    assert_eq!(
        (&r["type"], &r["data"]["id"]),
        (&json!("reply"), &json!(id)),
        "{r}"
    );
    let f = answer(
        &mut w,
        json!({ "type": "sync", "room": id, "since": 0 }),
        "i2",
    )
    .await;
    assert_eq!(
        (&f["type"], &f["code"]),
        (&json!("error"), &json!("room_restricted")),
        "{f}"
    );
    let r = answer(&mut w, cmd(format!("/join {id}")), "i3").await;
    assert_eq!(
        (&r["type"], &r["data"]["role"]),
        (&json!("reply"), &json!("member")),
        "{r}"
    );
    let h = sync_history(&mut w, id).await;
    assert_eq!(h["entries"].as_array().map(Vec::len), Some(5), "{h}");
    s.stop().await;
}

async fn sync_history(w: &mut Ws, id: &str) -> Value {
    w.send(json!({ "type": "sync", "room": id, "since": 0 }))
        .await;
    w.next_where("history", |f| f["room"] == id).await
}
