//! What each party's connections receive, and what they do not: `invite`, `joined` before
//! `history`, the removal entry and then silence, `room_deleted`, `update` entries, and the
//! `role` entries of an ownership transfer or of the owner's leave.

use serde_json::{json, Value};

use crate::common::*;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invitee_gets_an_invite_frame_on_every_connection_and_nobody_else_does() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "if", "private").await;
    let (mut o1, _) = ws_hello(a, &c.outsider).await;
    let (mut o2, _) = ws_hello(a, &c.outsider).await;
    let (mut wm, _) = ws_hello(a, &c.member).await;
    let (mut wmod, _) = ws_hello(a, &c.moderator).await;
    assert_204(&invite(a, &c.moderator, &c.id, "IfOut").await);
    let d = details(a, &c.outsider, &c.id).await;
    assert_eq!(d.status, 200, "{:?}", d.json());
    let want = without_member_list(d.json());
    for w in [&mut o1, &mut o2] {
        let f = w.next_where("invite", |_| true).await;
        assert_eq!(
            (&f["room"], &f["by"]),
            (&want, &json!("ifmod")),
            "the Room as the invitee sees it, and who invited: {f}"
        );
    }
    for w in [&mut wm, &mut wmod] {
        let seen = frames_until_reply(w).await;
        assert!(
            seen.iter()
                .all(|f| f["type"] != "invite" && f["type"] != "entry"),
            "an invitation is no entry and goes to the invitee only: {seen:?}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_invitation_sends_no_second_invite_frame() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "ri", "private").await;
    let (mut o, _) = ws_hello(a, &c.outsider).await;
    assert_204(&invite(a, &c.moderator, &c.id, "RiOut").await);
    o.next_where("invite", |_| true).await;
    for by in [&c.moderator, &c.owner, &c.moderator] {
        assert_204(&invite(a, by, &c.id, "riout").await);
    }
    let seen = frames_until_reply(&mut o).await;
    assert!(
        seen.iter().all(|f| f["type"] != "invite"),
        "one invitation, one frame: {seen:?}"
    );
    let r = get(a, "/api/v1/me", Some(&c.outsider)).await;
    let invites = r.json()["invites"].as_array().expect("invites").len();
    assert_eq!(invites, 1, "{:?}", r.json());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_by_someone_the_invitee_blocked_is_not_pushed_to_them() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "bi", "private").await;
    let (mut o, _) = ws_hello(a, &c.outsider).await;
    let r = post(
        a,
        "/api/v1/blocks",
        Some(&c.outsider),
        json!({ "username": "bimod" }),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.json());
    assert_204(&invite(a, &c.moderator, &c.id, "biout").await);
    let seen = frames_until_reply(&mut o).await;
    assert!(
        seen.iter().all(|f| f["type"] != "invite"),
        "no invite frame from a blocked user: {seen:?}"
    );
    // From anyone else it is.
    let (mut o2, _) = ws_hello(a, &c.outsider).await;
    let r = post(
        a,
        "/api/v1/rooms",
        Some(&c.owner),
        json!({ "name": "bi other", "visibility": "private" }),
    )
    .await;
    let other = r.json()["id"].as_str().expect("a room").to_string();
    assert_204(&invite(a, &c.owner, &other, "biout").await);
    let f = o2.next_where("invite", |_| true).await;
    assert_eq!(f["by"], json!("biown"), "{f}");
    s.stop().await;
}

/// Reads up to the `joined` frame of `id` and checks that the very next frame is that room's
/// `history`; returns the `joined` frame's Room.
async fn joined_then_history(w: &mut Ws, id: &str) -> Value {
    let j = w.next_where("joined", |f| f["room"]["id"] == id).await;
    let h = w.next().await.expect("a frame after joined");
    assert_eq!(
        (&h["type"], &h["room"]),
        (&json!("history"), &json!(id)),
        "joined comes just before the room's history: {h}"
    );
    j["room"].clone()
}

/// A frame's `Room` is the room as its receiver sees it in the details (without
/// `member_list`): the same fields, with the same values but for the counters the join
/// entry itself may have moved.
fn assert_as_seen(frame_room: &Value, detail: &Value) {
    let detail = without_member_list(detail.clone());
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(frame_room), keys(&detail), "{frame_room} vs {detail}");
    for (k, v) in detail.as_object().unwrap() {
        if !["last_seq", "read_seq", "unread"].contains(&k.as_str()) {
            assert_eq!(&frame_room[k], v, "{k}: {frame_room} vs {detail}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_arrives_just_before_history_on_each_connection_for_every_door() {
    let s = server().await;
    let a = s.addr;
    let ada = user(a, "ada").await;
    let bo = user(a, "bob").await;
    let (mut a1, _) = ws_hello(a, &ada).await;
    let (mut a2, _) = ws_hello(a, &ada).await;
    let (mut b1, _) = ws_hello(a, &bo).await;
    let (mut b2, _) = ws_hello(a, &bo).await;

    // Create.
    let pub_room = create(a, &ada, json!({ "name": "door one", "topic": "doors" })).await;
    let pid = pub_room["id"].as_str().unwrap().to_string();
    for w in [&mut a1, &mut a2] {
        let r = joined_then_history(w, &pid).await;
        assert_as_seen(&r, &details(a, &ada, &pid).await.json());
        assert_eq!(
            (
                &r["role"],
                &r["owner"],
                &r["topic"],
                &r["kind"],
                &r["visibility"]
            ),
            (
                &json!("owner"),
                &json!("ada"),
                &json!("doors"),
                &json!("room"),
                &json!("public")
            ),
            "{r}"
        );
    }
    // Join.
    assert_eq!(join(a, &bo, &pid).await.status, 200);
    for w in [&mut b1, &mut b2] {
        let r = joined_then_history(w, &pid).await;
        assert_as_seen(&r, &details(a, &bo, &pid).await.json());
        assert_eq!(
            (&r["role"], &r["members"]),
            (&json!("member"), &json!(2)),
            "{r}"
        );
    }
    // An accepted invitation.
    let priv_room = create(
        a,
        &ada,
        json!({ "name": "door two", "visibility": "private" }),
    )
    .await;
    let qid = priv_room["id"].as_str().unwrap().to_string();
    assert_204(&invite(a, &ada, &qid, "bob").await);
    for w in [&mut b1, &mut b2] {
        w.next_where("invite", |f| f["room"]["id"] == qid.as_str())
            .await;
    }
    assert_eq!(join(a, &bo, &qid).await.status, 200);
    for w in [&mut b1, &mut b2] {
        let r = joined_then_history(w, &qid).await;
        assert_as_seen(&r, &details(a, &bo, &qid).await.json());
        assert_eq!(
            (&r["role"], &r["visibility"]),
            (&json!("member"), &json!("private")),
            "{r}"
        );
    }
    // The /create and /join commands are doors too.
    let reply = ask(&mut a1, "", "/create door three", "reply").await;
    let cid = reply["data"]["id"].as_str().unwrap().to_string();
    joined_then_history(&mut a2, &cid).await;
    ask(&mut b1, "", &format!("/join {cid}"), "reply").await;
    joined_then_history(&mut b2, &cid).await;
    // Nobody else is told that someone joined, beyond the join entry.
    let seen = frames_until_reply(&mut a1).await;
    assert!(
        seen.iter().all(|f| f["type"] != "joined"),
        "joined goes to the joiner only: {seen:?}"
    );
    s.stop().await;
}

/// `Kick` or `Ban` of a member with two connections: both get the entry, then nothing more
/// from the room, while the others carry on.
async fn removal(kind: &str) {
    let s = server().await;
    let a = s.addr;
    let p = &kind[..1];
    let c = cast(a, &format!("r{p}"), "public").await;
    let target = format!("r{p}mem");
    let (mut t1, _) = ws_hello(a, &c.member).await;
    let (mut t2, _) = ws_hello(a, &c.member).await;
    let (mut wo, _) = ws_hello(a, &c.owner).await;
    let (mut wmod, _) = ws_hello(a, &c.moderator).await;
    let r = match kind {
        "kick" => {
            kick(
                a,
                &c.moderator,
                &c.id,
                &target.to_uppercase(),
                Some("be nice"),
            )
            .await
        }
        _ => ban(a, &c.moderator, &c.id, &target.to_uppercase(), Some("spam")).await,
    };
    assert_204(&r);
    let reason = if kind == "kick" { "be nice" } else { "spam" };
    let mut seen = Vec::new();
    for w in [&mut t1, &mut t2, &mut wo, &mut wmod] {
        let e = next_entry(w, &c.id, kind).await;
        assert_eq!(
            (&e["from"], &e["target"], &e["text"]),
            (&json!(format!("r{p}mod")), &json!(target), &json!(reason)),
            "the target as registered: {e}"
        );
        seen.push(as_entry(&e));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    let (kept, _) = history(a, &c.owner, &c.id).await;
    assert_eq!(kept.last(), Some(&seen[0]), "the entry is in the timeline");

    // The room carries on without them.
    let after = say_acked(&mut wo, &c.id, "after the removal").await;
    let got = wmod.next_where("entry", |f| f["kind"] == "message").await;
    assert_eq!(got["seq"], after["seq"]);
    for w in [&mut t1, &mut t2] {
        let seen = frames_until_reply(w).await;
        assert!(
            seen.iter().all(|f| f["room"] != json!(c.id)),
            "nothing more from the room after the {kind}: {seen:?}"
        );
        let f = try_send(w, &c.id, "let me back").await;
        assert_eq!(f["code"], "not_a_member", "{f}");
        w.send(json!({ "type": "sync", "room": c.id, "since": 0, "nonce": "resync" }))
            .await;
        let f = w.next().await.expect("an answer to sync");
        assert_eq!(
            (&f["type"], &f["code"]),
            (&json!("error"), &json!("not_a_member")),
            "no more history for the removed: {f}"
        );
    }
    assert_error(&messages(a, &c.member, &c.id).await, 403, "not_a_member");
    assert!(me(a, &c.member).await["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["id"] != json!(c.id)));
    // A kicked user may come back to a public room; a banned one may not.
    let r = join(a, &c.member, &c.id).await;
    if kind == "kick" {
        assert_eq!(r.status, 200, "{:?}", r.json());
    } else {
        assert_error(&r, 403, "banned");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_members_connections_get_the_kick_then_nothing_more() {
    removal("kick").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_members_connections_get_the_ban_then_nothing_more() {
    removal("ban").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_deleted_reaches_every_connection_of_every_member() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "rd", "private").await;
    let other = room(a, &c.member, "rd elsewhere").await;
    let mut conns = Vec::new();
    for t in [&c.owner, &c.owner, &c.moderator, &c.member, &c.member] {
        conns.push(ws_hello(a, t).await.0);
    }
    let (mut wout, _) = ws_hello(a, &c.outsider).await;
    assert_204(&delete_room(a, &c.owner, &c.id).await);
    for w in conns.iter_mut() {
        let f = w.next_where("room_deleted", |_| true).await;
        assert_eq!(
            (&f["room"], &f["by"]),
            (&json!(c.id), &json!("rdown")),
            "{f}"
        );
    }
    let seen = frames_until_reply(&mut wout).await;
    assert!(
        seen.iter().all(|f| f["type"] != "room_deleted"),
        "a non-member is not told: {seen:?}"
    );
    // The members' other rooms are untouched.
    let ack = say_acked(&mut conns[3], &other, "still here").await;
    assert_eq!(ack["room"], json!(other));
    let f = try_send(&mut conns[3], &c.id, "hello?").await;
    assert_eq!(f["type"], "error", "{f}");
    // A new connection's hello no longer has it.
    let (_w, hello) = ws_hello(a, &c.member).await;
    let ids: Vec<&Value> = hello["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!(other)], "{hello}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_entry_carries_exactly_the_changed_fields() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "up", "public").await;
    let (mut w, _) = ws_hello(a, &c.member).await;
    let start_seq = last_seq(a, &c.owner, &c.id).await;

    let r = patch(
        a,
        &c.moderator,
        &c.id,
        json!({ "name": "up renamed", "topic": "first" }),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        (&r.json()["name"], &r.json()["topic"], &r.json()["role"]),
        (&json!("up renamed"), &json!("first"), &json!("moderator")),
        "the Room after the change, as the caller sees it"
    );
    let e = next_entry(&mut w, &c.id, "update").await;
    assert_eq!(
        (&e["from"], &e["changes"], &e["seq"]),
        (
            &json!("upmod"),
            &json!({ "name": "up renamed", "topic": "first" }),
            &json!(start_seq + 1)
        ),
        "{e}"
    );
    // The unchanged name is not among the changes.
    patch(
        a,
        &c.owner,
        &c.id,
        json!({ "name": "up renamed", "topic": "second" }),
    )
    .await;
    let e = next_entry(&mut w, &c.id, "update").await;
    assert_eq!(
        (&e["from"], &e["changes"]),
        (&json!("upown"), &json!({ "topic": "second" }))
    );
    patch(a, &c.owner, &c.id, json!({ "visibility": "private" })).await;
    let e = next_entry(&mut w, &c.id, "update").await;
    assert_eq!(e["changes"], json!({ "visibility": "private" }));
    // Clearing the topic records the new, empty value.
    patch(a, &c.owner, &c.id, json!({ "topic": "" })).await;
    let e = next_entry(&mut w, &c.id, "update").await;
    assert_eq!(e["changes"], json!({ "topic": "" }));
    let d = details(a, &c.member, &c.id).await.json();
    assert_eq!(
        (&d["name"], &d["topic"], &d["visibility"], &d["last_seq"]),
        (
            &json!("up renamed"),
            &json!(""),
            &json!("private"),
            &json!(start_seq + 4)
        )
    );
    // The same entries in the history call and in sync.
    let kept = entries_after(a, &c.member, &c.id, start_seq).await;
    w.send(json!({ "type": "sync", "room": c.id, "since": start_seq }))
        .await;
    let h = w.next_where("history", |f| f["room"] == json!(c.id)).await;
    assert_eq!(h["entries"], json!(kept));
    assert_eq!(kept.len(), 4);
    assert!(kept.iter().all(|e| e["kind"] == "update"), "{kept:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ownership_transfer_appends_two_role_entries() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "ot", "public").await;
    let (mut w, _) = ws_hello(a, &c.member).await;
    let start_seq = last_seq(a, &c.owner, &c.id).await;
    assert_204(&set_role(a, &c.owner, &c.id, "OTMEM", "owner").await);
    let first = next_entry(&mut w, &c.id, "role").await;
    let second = next_entry(&mut w, &c.id, "role").await;
    assert_eq!(
        [
            (
                &first["seq"],
                &first["from"],
                &first["target"],
                &first["text"]
            ),
            (
                &second["seq"],
                &second["from"],
                &second["target"],
                &second["text"]
            ),
        ],
        [
            (
                &json!(start_seq + 1),
                &json!("otown"),
                &json!("otmem"),
                &json!("owner")
            ),
            (
                &json!(start_seq + 2),
                &json!("otown"),
                &json!("otown"),
                &json!("moderator")
            ),
        ]
    );
    let d = details(a, &c.member, &c.id).await.json();
    assert_eq!(
        (&d["owner"], &d["role"]),
        (&json!("otmem"), &json!("owner")),
        "{d}"
    );
    assert_eq!(
        roles_of(&d),
        [
            ("otmem".to_string(), "owner".to_string()),
            ("otmod".into(), "moderator".into()),
            ("otown".into(), "moderator".into())
        ],
        "exactly one owner"
    );
    // The new owner rules; the old one is a moderator among others.
    assert_error(
        &set_role(a, &c.owner, &c.id, "otmod", "member").await,
        403,
        "forbidden",
    );
    assert_204(&set_role(a, &c.member, &c.id, "otown", "member").await);
    let e = next_entry(&mut w, &c.id, "role").await;
    assert_eq!(
        (&e["from"], &e["target"], &e["text"]),
        (&json!("otmem"), &json!("otown"), &json!("member"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_owner_leaves_the_first_moderator_to_have_joined_takes_over() {
    let s = server().await;
    let a = s.addr;
    let names = ["lown", "lfirst", "lmodlate", "lmodearly", "lmodlast"];
    let mut t = Vec::new();
    for n in names {
        t.push(user(a, n).await);
    }
    let id = room(a, &t[0], "succession").await;
    // Join order: lfirst, lmodearly, lmodlate, lmodlast.
    for i in [1, 3, 2, 4] {
        assert_eq!(join(a, &t[i], &id).await.status, 200);
    }
    // Made moderators in another order than they joined.
    for n in ["lmodlast", "lmodlate", "lmodearly"] {
        assert_204(&set_role(a, &t[0], &id, n, "moderator").await);
    }
    let (mut w, _) = ws_hello(a, &t[1]).await;
    let before = last_seq(a, &t[0], &id).await;
    assert_204(&leave(a, &t[0], &id).await);
    let l = next_entry(&mut w, &id, "leave").await;
    let r = w.next_where("entry", |f| f["room"] == id.as_str()).await;
    assert_eq!(
        (&l["seq"], &l["from"]),
        (&json!(before + 1), &json!("lown")),
        "{l}"
    );
    assert_eq!(
        (&r["seq"], &r["kind"], &r["from"], &r["target"], &r["text"]),
        (
            &json!(before + 2),
            &json!("role"),
            &json!("lown"),
            &json!("lmodearly"),
            &json!("owner")
        ),
        "after the leave, a role entry records the new owner: {r}"
    );
    let d = details(a, &t[1], &id).await.json();
    assert_eq!(d["owner"], "lmodearly", "{d}");
    assert_eq!(
        roles_of(&d),
        [
            ("lfirst".to_string(), "member".to_string()),
            ("lmodearly".into(), "owner".into()),
            ("lmodlast".into(), "moderator".into()),
            ("lmodlate".into(), "moderator".into()),
        ]
    );
    assert_204(&delete_room(a, &t[3], &id).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_owner_leaves_a_room_without_moderators_the_first_member_to_join_takes_over() {
    let s = server().await;
    let a = s.addr;
    let names = ["nown", "nearly", "nlate"];
    let mut t = Vec::new();
    for n in names {
        t.push(user(a, n).await);
    }
    let id = room(a, &t[0], "no staff").await;
    assert_eq!(join(a, &t[1], &id).await.status, 200);
    assert_eq!(join(a, &t[2], &id).await.status, 200);
    // "nearly" leaves and comes back: now "nlate" joined first.
    assert_204(&leave(a, &t[1], &id).await);
    assert_eq!(join(a, &t[1], &id).await.status, 200);
    let (mut w, _) = ws_hello(a, &t[1]).await;
    assert_204(&leave(a, &t[0], &id).await);
    next_entry(&mut w, &id, "leave").await;
    let r = w.next_where("entry", |f| f["room"] == id.as_str()).await;
    assert_eq!(
        (&r["kind"], &r["from"], &r["target"], &r["text"]),
        (
            &json!("role"),
            &json!("nown"),
            &json!("nlate"),
            &json!("owner")
        ),
        "{r}"
    );
    let d = details(a, &t[1], &id).await.json();
    assert_eq!(d["owner"], "nlate");
    assert_eq!(
        roles_of(&d),
        [
            ("nearly".to_string(), "member".to_string()),
            ("nlate".into(), "owner".into())
        ]
    );
    // The new owner holds the owner's powers, the old one none.
    let r = patch(a, &t[2], &id, json!({ "visibility": "private" })).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_error(&details(a, &t[0], &id).await, 403, "room_restricted");
    s.stop().await;
}
