//! DMs and `--max-rooms-per-user`: a DM someone else opened counts toward your limit only
//! once you acted in it (opened it yourself or wrote in it); such unanswered DMs are capped
//! at the same number; and a side who left a DM comes back only by opening it themselves.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::common::*;
use crate::*;

/// `POST /api/v1/rooms {"name"}`, whatever it answers.
pub async fn create(addr: SocketAddr, token: &str, name: &str) -> Reply {
    post(addr, "/api/v1/rooms", Some(token), json!({ "name": name })).await
}

/// The ids of the rooms in `GET /api/v1/me`.
pub async fn my_rooms(addr: SocketAddr, token: &str) -> Vec<String> {
    let r = get(addr, "/api/v1/me", Some(token)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    ids(&r.json()["rooms"])
}

fn ids(rooms: &Value) -> Vec<String> {
    rooms
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

/// Registers `names` and has each open a DM with `victim`; returns their tokens and the
/// DMs' ids, in order.
pub async fn dms_at(addr: SocketAddr, victim: &str, names: &[&str]) -> (Vec<String>, Vec<String>) {
    let (mut tokens, mut dms) = (Vec::new(), Vec::new());
    for n in names {
        let t = user(addr, n).await;
        dms.push(dm_id(addr, &t, victim).await);
        tokens.push(t);
    }
    (tokens, dms)
}

#[tokio::test]
async fn dms_others_open_do_not_fill_your_room_limit() {
    let s = start(&["--max-rooms-per-user", "3"]).await;
    let vic = user(s.addr, "vic").await;
    let (_, dms) = dms_at(s.addr, "vic", &["oth1", "oth2", "oth3", "oth4", "oth5"]).await;
    // He sees the DMs he was added to, and can answer them.
    let (_, hello) = ws_hello(s.addr, &vic).await;
    let listed = ids(&hello["rooms"]);
    for dm in &dms[..3] {
        assert!(listed.contains(dm), "{dm} not in hello: {hello}");
    }
    // They take none of his three rooms: he creates two and joins a third.
    assert_eq!(create(s.addr, &vic, "mine").await.status, 201);
    assert_eq!(create(s.addr, &vic, "also mine").await.status, 201);
    let host = user(s.addr, "host").await;
    let lounge = room(s.addr, &host, "lounge").await;
    let r = join(s.addr, &vic, &lounge).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    // The limit still holds for the rooms he chose.
    let r = create(s.addr, &vic, "one too many").await;
    assert_error(&r, 409, "too_many_rooms");
    assert_eq!(my_rooms(s.addr, &vic).await.len(), 6, "3 rooms and 3 DMs");
    s.stop().await;
}

#[tokio::test]
async fn a_side_who_left_a_dm_is_back_only_when_they_open_it() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let id = dm_id(s.addr, &alice, "bob").await;
    assert_eq!(leave(s.addr, &bob, &id).await.status, 204);

    // Alice opens it again and writes: the same room, bob still out of it.
    let r = open_dm(s.addr, &alice, "bob").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        (&r.json()["id"], &r.json()["members"]),
        (&json!(id), &json!(1))
    );
    let (mut wa, _) = ws_hello(s.addr, &alice).await;
    post_msg(&mut wa, &id, "are you there?").await;
    let f = ask(&mut wa, "", "/msg bob hello?").await;
    assert_eq!(f["type"], "reply", "{f}");
    let info = room_info(s.addr, &alice, &id).await;
    assert_eq!(
        info["member_list"],
        json!([{ "username": "alice", "online": true, "role": "member" }])
    );
    assert!(
        !my_rooms(s.addr, &bob).await.contains(&id),
        "bob was added back"
    );
    let (_, hello) = ws_hello(s.addr, &bob).await;
    assert!(!ids(&hello["rooms"]).contains(&id), "{hello}");
    let r = get(s.addr, &format!("/api/v1/rooms/{id}/messages"), Some(&bob)).await;
    assert_error(&r, 403, "room_restricted");

    // Bob opens it himself: back in, with what she wrote meanwhile.
    let r = open_dm(s.addr, &bob, "alice").await;
    assert_eq!(
        (&r.json()["id"], &r.json()["members"]),
        (&json!(id), &json!(2))
    );
    let (entries, _) = history(s.addr, &bob, &id).await;
    let texts: Vec<&str> = entries.iter().filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(texts, ["are you there?", "hello?"], "{entries:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_dm_you_answered_counts_toward_your_limit() {
    let s = start(&["--max-rooms-per-user", "3"]).await;
    let vic = user(s.addr, "vic").await;
    assert_eq!(create(s.addr, &vic, "r1").await.status, 201);
    let (_, dms) = dms_at(s.addr, "vic", &["bob", "carol"]).await;
    // Unanswered, they leave room for two more.
    let r2 = room(s.addr, &vic, "r2").await;
    let r3 = create(s.addr, &vic, "r3").await;
    assert_eq!(r3.status, 201, "{:?}", r3.json());
    let r3 = r3.json()["id"].as_str().unwrap().to_string();
    assert_eq!(leave(s.addr, &vic, &r3).await.status, 204);

    // Writing in bob's DM answers it: r1, r2 and that DM are his three.
    let (mut w, _) = ws_hello(s.addr, &vic).await;
    post_msg(&mut w, &dms[0], "hi bob").await;
    assert_error(&create(s.addr, &vic, "r4").await, 409, "too_many_rooms");

    // Opening carol's himself answers it too.
    assert_eq!(leave(s.addr, &vic, &r2).await.status, 204);
    assert_eq!(dm_id(s.addr, &vic, "carol").await, dms[1]);
    assert_error(&create(s.addr, &vic, "r5").await, 409, "too_many_rooms");
    s.stop().await;
}

#[tokio::test]
async fn unanswered_dms_are_capped_at_the_room_limit() {
    let s = start(&["--max-rooms-per-user", "3"]).await;
    let vic = user(s.addr, "vic").await;
    let names = ["oth1", "oth2", "oth3", "oth4", "oth5"];
    let (tokens, dms) = dms_at(s.addr, "vic", &names).await;
    // The first three add him; the last two make the room without him, as if he had left.
    for (i, (t, dm)) in tokens.iter().zip(&dms).enumerate() {
        let want = if i < 3 { 2 } else { 1 };
        assert_eq!(room_info(s.addr, t, dm).await["members"], want, "DM {i}");
    }
    assert_eq!(my_rooms(s.addr, &vic).await, dms[..3].to_vec());

    // o4 writes; he is still not in it. He opens it himself: in, with her message.
    let (mut w4, _) = ws_hello(s.addr, &tokens[3]).await;
    post_msg(&mut w4, &dms[3], "knock knock").await;
    assert!(!my_rooms(s.addr, &vic).await.contains(&dms[3]));
    assert_eq!(dm_id(s.addr, &vic, "oth4").await, dms[3]);
    let (entries, _) = history(s.addr, &vic, &dms[3]).await;
    assert!(
        entries.iter().any(|e| e["text"] == "knock knock"),
        "{entries:?}"
    );

    // Answering all of them puts him over his limit (4 counted rooms): new DMs are added
    // again, up to 6 rooms in all (twice the limit).
    let (mut w, _) = ws_hello(s.addr, &vic).await;
    for dm in &dms[..3] {
        post_msg(&mut w, dm, "hello").await;
    }
    assert_error(&create(s.addr, &vic, "mine").await, 409, "too_many_rooms");
    let (more, late) = dms_at(s.addr, "vic", &["oth6", "oth7", "oth8"]).await;
    let members: Vec<Value> = {
        let mut v = Vec::new();
        for (t, dm) in more.iter().zip(&late) {
            v.push(room_info(s.addr, t, dm).await["members"].clone());
        }
        v
    };
    assert_eq!(members, [json!(2), json!(2), json!(1)]);
    assert_eq!(my_rooms(s.addr, &vic).await.len(), 6);
    s.stop().await;
}
