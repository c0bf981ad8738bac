//! Every row of the role table, allowed and refused: who may invite, kick, mute, unmute, ban,
//! unban, change the topic, name or visibility, change roles, transfer ownership and delete
//! the room, and delete others' messages. A refusal is `403 forbidden` and changes nothing.
//! Roles follow ownership counts and do not outlive a membership.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::common::*;
use crate::*;

/// A [`Cast`] with a second moderator, `{prefix}mod2`, who joined last (seq 5, role entry 6).
async fn cast_with_two_moderators(addr: SocketAddr, prefix: &str) -> (Cast, String) {
    let c = cast(addr, prefix, "public").await;
    let mod2 = user(addr, &format!("{prefix}mod2")).await;
    assert_eq!(join(addr, &mod2, &c.id).await.status, 200);
    assert_204(&set_role(addr, &c.owner, &c.id, &format!("{prefix}mod2"), "moderator").await);
    (c, mod2)
}

/// The room as its owner sees it: details with `member_list`.
async fn snapshot(addr: SocketAddr, c: &Cast) -> Value {
    let r = details(addr, &c.owner, &c.id).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let mut v = r.json();
    // Presence may change between two looks; roles and membership may not.
    for m in v["member_list"].as_array_mut().unwrap() {
        m.as_object_mut().unwrap().remove("online");
    }
    for k in ["read_seq", "unread"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Kick,
    Mute,
    Ban,
}

async fn act(addr: SocketAddr, what: Act, token: &str, id: &str, who: &str) -> Reply {
    match what {
        Act::Kick => kick(addr, token, id, who, Some("row")).await,
        Act::Mute => mute(addr, token, id, who, json!(600)).await,
        Act::Ban => ban(addr, token, id, who, Some("row")).await,
    }
}

/// Kick, mute and ban: owner and moderators act on lower roles only; a member acts on nobody;
/// a non-member of a public room acts on nobody.
async fn check_action_rows(what: Act, p: &str) {
    let s = server().await;
    let a = s.addr;
    let (c, mod2) = cast_with_two_moderators(a, p).await;
    let (own, moder, mem, mod2n) = (
        format!("{p}own"),
        format!("{p}mod"),
        format!("{p}mem"),
        format!("{p}mod2"),
    );
    let before = snapshot(a, &c).await;
    let refused: [(&str, &String, &String); 7] = [
        ("moderator on moderator", &c.moderator, &mod2n),
        ("moderator on owner", &c.moderator, &own),
        ("member on member", &c.member, &mem),
        ("member on moderator", &c.member, &moder),
        ("member on owner", &c.member, &own),
        ("non-member on member", &c.outsider, &mem),
        ("non-member on owner", &c.outsider, &own),
    ];
    for (row, token, target) in refused {
        let r = act(a, what, token, &c.id, target).await;
        assert_eq!(
            (r.status, r.code()),
            (403, "forbidden".to_string()),
            "{what:?}, {row}: {:?}",
            r.json()
        );
    }
    assert_eq!(
        snapshot(a, &c).await,
        before,
        "{what:?}: refusals change nothing, and append no entry"
    );

    // Allowed: moderator on member, owner on moderator, owner on member.
    let r = act(a, what, &c.moderator, &c.id, &mem).await;
    assert_204(&r);
    let r = act(a, what, &c.owner, &c.id, &mod2n).await;
    assert_204(&r);
    let after = snapshot(a, &c).await;
    let roles = roles_of(&after);
    match what {
        Act::Kick | Act::Ban => {
            assert_eq!(
                roles,
                [
                    (moder.clone(), "moderator".into()),
                    (own.clone(), "owner".into())
                ],
                "{what:?} removes the member and the moderator: {after}"
            );
        }
        Act::Mute => {
            assert_eq!(roles.len(), 4, "a mute removes nobody: {after}");
            // Both are muted: their sends are refused.
            for token in [&c.member, &mod2] {
                let (mut w, _) = ws_hello(a, token).await;
                let f = try_send(&mut w, &c.id, "can I speak?").await;
                assert_eq!(
                    (&f["type"], &f["code"]),
                    (&json!("error"), &json!("muted")),
                    "{f}"
                );
            }
        }
    }
    let kinds: Vec<Value> = entries_after(a, &c.owner, &c.id, before["last_seq"].as_u64().unwrap())
        .await
        .iter()
        .map(|e| json!([e["kind"], e["from"], e["target"]]))
        .collect();
    let kind = match what {
        Act::Kick => "kick",
        Act::Mute => "mute",
        Act::Ban => "ban",
    };
    assert_eq!(
        kinds,
        [json!([kind, moder, mem]), json!([kind, own, mod2n])],
        "one {kind} entry per allowed call, from the actor"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_is_for_owner_and_moderators_on_lower_roles() {
    check_action_rows(Act::Kick, "k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_is_for_owner_and_moderators_on_lower_roles() {
    check_action_rows(Act::Mute, "m").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_is_for_owner_and_moderators_on_lower_roles_and_non_members() {
    check_action_rows(Act::Ban, "b").await;
    // A non-member counts lowest: a moderator may ban one, a member may not.
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "bn", "public").await;
    assert_error(
        &ban(a, &c.member, &c.id, "bnout", None).await,
        403,
        "forbidden",
    );
    assert_204(&ban(a, &c.moderator, &c.id, "bnout", None).await);
    assert_error(&join(a, &c.outsider, &c.id).await, 403, "banned");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmute_is_for_owner_and_moderators_on_lower_roles() {
    let s = server().await;
    let a = s.addr;
    let (c, mod2) = cast_with_two_moderators(a, "u").await;
    assert_204(&mute(a, &c.owner, &c.id, "umem", json!(600)).await);
    assert_204(&mute(a, &c.owner, &c.id, "umod2", json!(600)).await);
    let before = snapshot(a, &c).await;
    for (token, target) in [
        (&c.moderator, "umod2"),
        (&c.member, "umem"),
        (&c.member, "umod2"),
        (&c.outsider, "umem"),
    ] {
        assert_error(&unmute(a, token, &c.id, target).await, 403, "forbidden");
    }
    assert_eq!(
        snapshot(a, &c).await,
        before,
        "refused unmutes change nothing"
    );
    let (mut wmem, _) = ws_hello(a, &c.member).await;
    let (mut wmod2, _) = ws_hello(a, &mod2).await;
    for w in [&mut wmem, &mut wmod2] {
        let f = try_send(w, &c.id, "still muted?").await;
        assert_eq!(f["code"], "muted", "{f}");
    }
    assert_204(&unmute(a, &c.moderator, &c.id, "umem").await);
    assert_204(&unmute(a, &c.owner, &c.id, "umod2").await);
    for w in [&mut wmem, &mut wmod2] {
        let f = try_send(w, &c.id, "free again").await;
        assert_eq!(
            (&f["type"], &f["kind"]),
            (&json!("entry"), &json!("message")),
            "{f}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unban_is_for_owner_and_moderators() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "ub", "public").await;
    let x = user(a, "ubx").await;
    let y = user(a, "uby").await;
    assert_204(&ban(a, &c.owner, &c.id, "ubx", None).await);
    assert_204(&ban(a, &c.owner, &c.id, "uby", None).await);
    for token in [&c.member, &c.outsider] {
        assert_error(&unban(a, token, &c.id, "ubx").await, 403, "forbidden");
    }
    assert_error(&join(a, &x, &c.id).await, 403, "banned");
    assert_204(&unban(a, &c.moderator, &c.id, "ubx").await);
    assert_204(&unban(a, &c.owner, &c.id, "uby").await);
    assert_eq!(join(a, &x, &c.id).await.status, 200);
    assert_eq!(join(a, &y, &c.id).await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_is_for_any_member_of_a_public_room_and_the_staff_of_a_private_one() {
    let s = server().await;
    let a = s.addr;
    for n in ["ix1", "ix2", "ix3", "ix4", "ix5"] {
        user(a, n).await;
    }
    let public = cast(a, "ipub", "public").await;
    assert_204(&invite(a, &public.member, &public.id, "ix1").await);
    assert_204(&invite(a, &public.moderator, &public.id, "ix2").await);
    assert_error(
        &invite(a, &public.outsider, &public.id, "ix3").await,
        403,
        "forbidden",
    );

    let private = cast(a, "ipriv", "private").await;
    let before = last_seq(a, &private.owner, &private.id).await;
    assert_error(
        &invite(a, &private.member, &private.id, "ix3").await,
        403,
        "forbidden",
    );
    assert_eq!(
        me(a, &user_token(a, "ix3").await).await["invites"],
        json!([])
    );
    assert_204(&invite(a, &private.moderator, &private.id, "ix4").await);
    assert_204(&invite(a, &private.owner, &private.id, "ix5").await);
    assert_eq!(last_seq(a, &private.owner, &private.id).await, before);
    for (n, by) in [("ix4", "iprivmod"), ("ix5", "iprivown")] {
        let invites = me(a, &user_token(a, n).await).await["invites"].clone();
        assert_eq!(invites.as_array().map(Vec::len), Some(1), "{n}: {invites}");
        assert_eq!(
            (&invites[0]["room"]["id"], &invites[0]["by"]),
            (&json!(private.id), &json!(by))
        );
    }
    s.stop().await;
}

/// A new session of a registered user.
pub async fn user_token(addr: SocketAddr, name: &str) -> String {
    let r = login(addr, name, PASSWORD).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_and_name_are_for_owner_and_moderators() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "t", "public").await;
    for token in [&c.member, &c.outsider] {
        for body in [json!({ "topic": "mine" }), json!({ "name": "mine" })] {
            assert_error(&patch(a, token, &c.id, body).await, 403, "forbidden");
        }
    }
    let r = patch(
        a,
        &c.moderator,
        &c.id,
        json!({ "topic": "by the moderator" }),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["topic"], "by the moderator");
    let r = patch(a, &c.moderator, &c.id, json!({ "name": "renamed by mod" })).await;
    assert_eq!(r.json()["name"], "renamed by mod", "{:?}", r.json());
    let r = patch(
        a,
        &c.owner,
        &c.id,
        json!({ "topic": "by the owner", "name": "owned" }),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let d = details(a, &c.member, &c.id).await.json();
    assert_eq!(
        (&d["topic"], &d["name"]),
        (&json!("by the owner"), &json!("owned"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_roles_transfer_and_delete_are_for_the_owner_only() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "o", "public").await;
    let before = snapshot(a, &c).await;
    for token in [&c.moderator, &c.member, &c.outsider] {
        let refused = [
            patch(a, token, &c.id, json!({ "visibility": "private" })).await,
            set_role(a, token, &c.id, "omem", "moderator").await,
            set_role(a, token, &c.id, "omod", "member").await,
            set_role(a, token, &c.id, "omem", "owner").await,
            delete_room(a, token, &c.id).await,
        ];
        for r in &refused {
            assert_error(r, 403, "forbidden");
        }
    }
    assert_eq!(snapshot(a, &c).await, before, "refusals change nothing");

    let r = patch(a, &c.owner, &c.id, json!({ "visibility": "private" })).await;
    assert_eq!(
        (r.status, &r.json()["visibility"]),
        (200, &json!("private")),
        "{:?}",
        r.json()
    );
    assert_204(&set_role(a, &c.owner, &c.id, "omem", "moderator").await);
    assert_204(&set_role(a, &c.owner, &c.id, "omod", "member").await);
    // The demoted moderator lost the powers, the promoted member gained them.
    assert_error(
        &patch(a, &c.moderator, &c.id, json!({ "topic": "still mine?" })).await,
        403,
        "forbidden",
    );
    let r = patch(a, &c.member, &c.id, json!({ "topic": "mine now" })).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        roles_of(&details(a, &c.owner, &c.id).await.json()),
        [
            ("omem".to_string(), "moderator".to_string()),
            ("omod".into(), "member".into()),
            ("oown".into(), "owner".into())
        ]
    );
    // Transfer: the new owner may delete, the old one (now a moderator) may not.
    assert_204(&set_role(a, &c.owner, &c.id, "omem", "owner").await);
    let d = details(a, &c.owner, &c.id).await.json();
    assert_eq!(d["owner"], "omem", "{d}");
    assert_eq!(d["role"], "moderator", "the old owner's view: {d}");
    assert_error(&delete_room(a, &c.owner, &c.id).await, 403, "forbidden");
    assert_204(&delete_room(a, &c.member, &c.id).await);
    assert_error(&details(a, &c.member, &c.id).await, 404, "room_not_found");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transferred_or_deleted_room_no_longer_counts_as_owned() {
    let s = start(&["--register-per-ip-per-hour", "0", "--max-owned-rooms", "1"]).await;
    let a = s.addr;
    let al = user(a, "owal").await;
    let bea = user(a, "owbea").await;
    let first = room(a, &al, "al's first").await;
    let again = post(a, "/api/v1/rooms", Some(&al), json!({ "name": "second" })).await;
    assert_error(&again, 409, "too_many_rooms");
    assert_eq!(join(a, &bea, &first).await.status, 200);
    // Handed on, the room is Bea's to count, not Al's.
    assert_204(&set_role(a, &al, &first, "owbea", "owner").await);
    let second = room(a, &al, "al's second").await;
    let r = post(a, "/api/v1/rooms", Some(&bea), json!({ "name": "bea's" })).await;
    assert_error(&r, 409, "too_many_rooms");
    // Deleted, it counts for nobody.
    assert_204(&delete_room(a, &al, &second).await);
    room(a, &al, "al's third").await;
    assert_204(&delete_room(a, &bea, &first).await);
    room(a, &bea, "bea's").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_who_leaves_or_is_removed_comes_back_as_a_member() {
    let s = server().await;
    let a = s.addr;
    let (c, mod2) = cast_with_two_moderators(a, "rj").await;
    let out = user(a, "rjx").await;
    // Left, kicked, banned and unbanned: each comes back without the old role.
    assert_204(&leave(a, &c.moderator, &c.id).await);
    assert_204(&kick(a, &c.owner, &c.id, "rjmod2", None).await);
    for token in [&c.moderator, &mod2] {
        let r = join(a, token, &c.id).await;
        assert_eq!(r.json()["role"], "member", "{:?}", r.json());
    }
    assert_204(&set_role(a, &c.owner, &c.id, "rjmod", "moderator").await);
    assert_204(&ban(a, &c.owner, &c.id, "rjmod", None).await);
    assert_204(&unban(a, &c.owner, &c.id, "rjmod").await);
    let r = join(a, &c.moderator, &c.id).await;
    assert_eq!(r.json()["role"], "member", "{:?}", r.json());
    assert_eq!(
        roles_of(&details(a, &c.owner, &c.id).await.json()),
        [
            ("rjmem".to_string(), "member".to_string()),
            ("rjmod".into(), "member".into()),
            ("rjmod2".into(), "member".into()),
            ("rjown".into(), "owner".into())
        ]
    );
    // And without the powers.
    assert_error(
        &kick(a, &c.moderator, &c.id, "rjmem", None).await,
        403,
        "forbidden",
    );
    assert_error(&ban(a, &mod2, &c.id, "rjx", None).await, 403, "forbidden");
    assert_eq!(join(a, &out, &c.id).await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_others_messages_is_for_owner_and_moderators() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "dm", "public").await;
    let mut seqs = Vec::new();
    for token in [&c.owner, &c.moderator, &c.member] {
        let (mut w, _) = ws_hello(a, token).await;
        seqs.push(seq(&say_acked(&mut w, &c.id, "delete me if you can").await));
    }
    let [by_owner, by_mod, by_member] = seqs.try_into().unwrap();
    let del = |token: &str, seq: u64| {
        let path = format!("/api/v1/rooms/{}/messages/{seq}", c.id);
        let token = token.to_string();
        async move { request(a, "DELETE", &path, Some(&token), None).await }
    };
    // A member may delete only their own.
    assert_error(&del(&c.member, by_owner).await, 403, "forbidden");
    assert_error(&del(&c.member, by_mod).await, 403, "forbidden");
    // Staff may delete anyone's, whoever wrote it.
    assert_204(&del(&c.moderator, by_member).await);
    assert_204(&del(&c.moderator, by_owner).await);
    assert_204(&del(&c.owner, by_mod).await);
    let kept = entries_after(a, &c.owner, &c.id, by_member).await;
    let trail: Vec<Value> = kept
        .iter()
        .map(|e| json!([e["kind"], e["from"], e["ref"]]))
        .collect();
    assert_eq!(
        trail,
        [
            json!(["delete", "dmmod", by_member]),
            json!(["delete", "dmmod", by_owner]),
            json!(["delete", "dmown", by_mod]),
        ]
    );
    s.stop().await;
}
