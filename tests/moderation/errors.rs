//! Each error code of the moderation calls, and what a refused or empty call leaves behind:
//! nothing.

use serde_json::{json, Value};

use crate::common::*;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_usernames_get_user_not_found() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "unk", "public").await;
    let before = last_seq(a, &c.owner, &c.id).await;
    let t = &c.owner;
    let replies = [
        invite(a, t, &c.id, "nobody").await,
        kick(a, t, &c.id, "nobody", None).await,
        ban(a, t, &c.id, "nobody", Some("who?")).await,
        unban(a, t, &c.id, "nobody").await,
        mute(a, t, &c.id, "nobody", json!(60)).await,
        unmute(a, t, &c.id, "nobody").await,
        set_role(a, t, &c.id, "nobody", "moderator").await,
        set_role(a, t, &c.id, "nobody", "owner").await,
    ];
    for r in &replies {
        assert_error(r, 404, "user_not_found");
    }
    assert_eq!(
        last_seq(a, t, &c.id).await,
        before,
        "no entry for a refusal"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_cannot_be_invited_and_non_members_cannot_be_kicked_muted_or_given_roles() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "nm", "public").await;
    let before = last_seq(a, &c.owner, &c.id).await;
    // Case does not matter in a username.
    for who in ["nmmem", "NMMEM", "nmOwn"] {
        assert_error(
            &invite(a, &c.moderator, &c.id, who).await,
            409,
            "already_member",
        );
    }
    for r in [
        kick(a, &c.owner, &c.id, "nmout", None).await,
        kick(a, &c.owner, &c.id, "NMOUT", Some("gone")).await,
        mute(a, &c.owner, &c.id, "nmout", json!(60)).await,
        set_role(a, &c.owner, &c.id, "nmout", "moderator").await,
        set_role(a, &c.owner, &c.id, "nmout", "owner").await,
    ] {
        assert_error(&r, 409, "not_a_member");
    }
    assert_eq!(last_seq(a, &c.owner, &c.id).await, before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_user_cannot_join_or_be_invited_until_unbanned() {
    let s = server().await;
    let a = s.addr;
    let public = cast(a, "bj", "public").await;
    let private = cast(a, "bp", "private").await;
    let x = user(a, "bjx").await;
    for c in [&public, &private] {
        assert_204(&ban(a, &c.owner, &c.id, "BJX", Some("spam")).await);
        assert_error(&join(a, &x, &c.id).await, 403, "banned");
        assert_error(&invite(a, &c.owner, &c.id, "bjx").await, 409, "banned");
    }
    // Banned from a private room, a user is an outsider there for all else.
    assert_error(&details(a, &x, &private.id).await, 403, "room_restricted");
    assert_error(&messages(a, &x, &private.id).await, 403, "room_restricted");
    // The member of the public room is banned while in it: removed, and kept out.
    assert_204(&ban(a, &public.moderator, &public.id, "bjmem", None).await);
    assert_error(&join(a, &public.member, &public.id).await, 403, "banned");
    let list = bans(a, &public.moderator, &public.id).await;
    assert_eq!(list.status, 200, "{:?}", list.json());
    let mut names: Vec<(Value, Value, Value)> = list.json()["bans"]
        .as_array()
        .expect("bans")
        .iter()
        .map(|b| (b["username"].clone(), b["by"].clone(), b["reason"].clone()))
        .collect();
    names.sort_by_key(|n| n.0.to_string());
    assert_eq!(
        names,
        [
            (json!("bjmem"), json!("bjmod"), Value::Null),
            (json!("bjx"), json!("bjown"), json!("spam")),
        ],
        "bans are listed as registered, with who banned and why"
    );
    for b in list.json()["bans"].as_array().unwrap() {
        assert!(b["ts"].as_u64().is_some_and(|ts| ts > 0), "{b}");
    }
    assert_error(&bans(a, &public.member, &public.id).await, 403, "forbidden");
    // Unbanned, a user may join a public room again, and be invited to a private one.
    assert_204(&unban(a, &public.owner, &public.id, "BJX").await);
    assert_eq!(join(a, &x, &public.id).await.status, 200);
    assert_204(&unban(a, &private.owner, &private.id, "bjx").await);
    assert_204(&invite(a, &private.owner, &private.id, "bjx").await);
    assert_eq!(join(a, &x, &private.id).await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unban_of_a_user_not_banned_and_unmute_of_a_user_not_muted_are_404() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "nf", "public").await;
    let before = last_seq(a, &c.owner, &c.id).await;
    assert_eq!(unban(a, &c.owner, &c.id, "nfout").await.status, 404);
    assert_eq!(unmute(a, &c.owner, &c.id, "nfmem").await.status, 404);
    // Once lifted, they are not banned or muted any more.
    assert_204(&ban(a, &c.owner, &c.id, "nfout", None).await);
    assert_204(&unban(a, &c.owner, &c.id, "nfout").await);
    assert_eq!(unban(a, &c.owner, &c.id, "nfout").await.status, 404);
    assert_204(&mute(a, &c.owner, &c.id, "nfmem", json!(60)).await);
    assert_204(&unmute(a, &c.owner, &c.id, "nfmem").await);
    assert_eq!(unmute(a, &c.owner, &c.id, "nfmem").await.status, 404);
    let kinds: Vec<Value> = entries_after(a, &c.owner, &c.id, before)
        .await
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        [json!("ban"), json!("unban"), json!("mute"), json!("unmute")]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_durations_run_from_1_to_2592000_seconds() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "d", "public").await;
    let before = last_seq(a, &c.owner, &c.id).await;
    // Out of range, or not a number at all (a string, even of digits, is not one).
    let mut accepted = Vec::new();
    for bad in [
        json!(0),
        json!(-5),
        json!(2_592_001),
        json!("soon"),
        json!([60]),
        json!({ "s": 60 }),
        json!("60"),
    ] {
        let r = mute(a, &c.owner, &c.id, "dmem", bad.clone()).await;
        if (r.status, r.code().as_str()) != (400, "invalid_duration") {
            accepted.push(format!("{bad}: {} {:?}", r.status, r.json()));
        }
    }
    assert!(
        accepted.is_empty(),
        "each gets 400 invalid_duration, but: {accepted:#?}"
    );
    assert_eq!(last_seq(a, &c.owner, &c.id).await, before);
    let t0 = now_ms();
    assert_204(&mute(a, &c.owner, &c.id, "dmem", json!(2_592_000)).await);
    let e = entries_after(a, &c.owner, &c.id, before).await;
    assert_eq!(e.len(), 1, "{e:?}");
    let until = e[0]["until"].as_u64().expect("until");
    let want = t0 + 2_592_000_000;
    assert!(
        until + 2000 >= want && until <= now_ms() + 2_592_000_000 + 1000,
        "until {until} is 30 days from now ({want})"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_visibility_topics_and_names_are_checked() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "v", "public").await;
    let before = last_seq(a, &c.owner, &c.id).await;
    for role in ["admin", "", "superuser"] {
        let r = set_role(a, &c.owner, &c.id, "vmem", role).await;
        assert_error(&r, 400, "invalid_role");
    }
    for vis in ["secret", "", "Private "] {
        let r = patch(a, &c.owner, &c.id, json!({ "visibility": vis })).await;
        assert_error(&r, 400, "invalid_visibility");
        let r = post(
            a,
            "/api/v1/rooms",
            Some(&c.owner),
            json!({ "name": "x", "visibility": vis }),
        )
        .await;
        assert_error(&r, 400, "invalid_visibility");
    }
    let long_topic = "t".repeat(257);
    for topic in [
        json!(long_topic),
        json!("bell \u{7} ringing"),
        json!("two\nlines"),
        json!("\u{202e}reversed"),
        json!("zero\u{200b}width"),
    ] {
        let r = patch(a, &c.owner, &c.id, json!({ "topic": topic })).await;
        assert_error(&r, 400, "invalid_topic");
        let r = post(
            a,
            "/api/v1/rooms",
            Some(&c.owner),
            json!({ "name": "x", "topic": topic }),
        )
        .await;
        assert_error(&r, 400, "invalid_topic");
    }
    for name in [
        json!(""),
        json!("n".repeat(65)),
        json!("tab\tname"),
        json!("\u{202e}eman"),
    ] {
        let r = patch(a, &c.owner, &c.id, json!({ "name": name })).await;
        assert_error(&r, 400, "invalid_room_name");
    }
    assert_eq!(last_seq(a, &c.owner, &c.id).await, before, "no entry");
    let d = details(a, &c.owner, &c.id).await.json();
    assert_eq!(
        (&d["name"], &d["topic"], &d["visibility"]),
        (&json!("v room"), &json!(""), &json!("public")),
        "nothing changed: {d}"
    );
    // The limits themselves are allowed: 256 characters (not bytes), 64-character names.
    let topic = "é".repeat(256);
    let r = patch(
        a,
        &c.owner,
        &c.id,
        json!({ "topic": topic, "name": "n".repeat(64) }),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["topic"], json!(topic));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_that_changes_nothing_answers_200_and_appends_nothing() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "pn", "public").await;
    let r = patch(a, &c.owner, &c.id, json!({ "topic": "same" })).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let seq_before = last_seq(a, &c.owner, &c.id).await;
    let (mut w, _) = ws_hello(a, &c.member).await;
    // The visibility is the owner's to set, even to what it already is.
    for (token, body) in [
        (&c.moderator, json!({})),
        (&c.moderator, json!({ "topic": "same" })),
        (&c.moderator, json!({ "name": "pn room", "topic": "same" })),
        (
            &c.owner,
            json!({ "name": "pn room", "visibility": "public" }),
        ),
        (
            &c.owner,
            json!({ "name": "pn room", "topic": "same", "visibility": "public" }),
        ),
    ] {
        let r = patch(a, token, &c.id, body.clone()).await;
        assert_eq!(r.status, 200, "{body}: {:?}", r.json());
        let room = r.json();
        assert_eq!(
            (
                &room["id"],
                &room["topic"],
                &room["name"],
                &room["last_seq"]
            ),
            (
                &json!(c.id),
                &json!("same"),
                &json!("pn room"),
                &json!(seq_before)
            ),
            "{body}: the Room, unchanged"
        );
    }
    assert_eq!(last_seq(a, &c.owner, &c.id).await, seq_before);
    let seen = frames_until_reply(&mut w).await;
    assert!(
        seen.iter().all(|f| f["type"] != "entry"),
        "no entry reached the members: {seen:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_room_is_gone_for_every_call() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "del", "public").await;
    assert_204(&delete_room(a, &c.owner, &c.id).await);
    let t = &c.owner;
    let id = &c.id;
    let replies = [
        details(a, t, id).await,
        messages(a, t, id).await,
        join(a, &c.member, id).await,
        leave(a, t, id).await,
        patch(a, t, id, json!({ "topic": "x" })).await,
        invite(a, t, id, "delout").await,
        kick(a, t, id, "delmem", None).await,
        ban(a, t, id, "delmem", None).await,
        bans(a, t, id).await,
        unban(a, t, id, "delmem").await,
        mute(a, t, id, "delmem", json!(60)).await,
        unmute(a, t, id, "delmem").await,
        set_role(a, t, id, "delmem", "moderator").await,
        delete_room(a, t, id).await,
    ];
    for r in &replies {
        assert_error(r, 404, "room_not_found");
    }
    assert!(!listed(a, t).await.contains(id));
    for token in [&c.owner, &c.moderator, &c.member] {
        assert_eq!(me(a, token).await["rooms"], json!([]));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_room_takes_no_moderation_but_a_topic() {
    let s = server().await;
    let a = s.addr;
    let dee = user(a, "dmdee").await;
    let eli = user(a, "dmeli").await;
    user(a, "dmfay").await;
    let r = post(a, "/api/v1/dms", Some(&dee), json!({ "username": "dmeli" })).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let before = last_seq(a, &dee, &id).await;
    let mut wrong = Vec::new();
    for (what, r) in [
        ("invite", invite(a, &dee, &id, "dmfay").await),
        ("kick", kick(a, &dee, &id, "dmeli", None).await),
        ("ban", ban(a, &dee, &id, "dmeli", None).await),
        ("mute", mute(a, &dee, &id, "dmeli", json!(60)).await),
        ("roles", set_role(a, &dee, &id, "dmeli", "moderator").await),
        ("transfer", set_role(a, &eli, &id, "dmdee", "owner").await),
        (
            "rename",
            patch(a, &dee, &id, json!({ "name": "ours" })).await,
        ),
        (
            "visibility",
            patch(a, &eli, &id, json!({ "visibility": "public" })).await,
        ),
        ("delete", delete_room(a, &dee, &id).await),
    ] {
        if (r.status, r.code().as_str()) != (409, "dm_room") {
            wrong.push(format!("{what}: {} {:?}", r.status, r.json()));
        }
    }
    assert!(wrong.is_empty(), "each gets 409 dm_room: {wrong:#?}");
    assert_eq!(last_seq(a, &dee, &id).await, before, "nothing changed");
    // Either side may set the topic.
    for (token, topic) in [(&dee, "plans"), (&eli, "more plans")] {
        let r = patch(a, token, &id, json!({ "topic": topic })).await;
        assert_eq!(
            (r.status, &r.json()["topic"]),
            (200, &json!(topic)),
            "{:?}",
            r.json()
        );
    }
    s.stop().await;
}
