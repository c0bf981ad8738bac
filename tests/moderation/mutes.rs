//! A muted member's sends to the room are refused with `muted` and `retry_after_ms` until the
//! mute ends, by itself at `until` or at once by an unmute; their commands still work.

use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_refuses_sends_until_it_ends_by_itself_at_until() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "mu", "public").await;
    let elsewhere = room(a, &c.member, "mu elsewhere").await;
    let (mut wm, _) = ws_hello(a, &c.member).await;
    let (mut wo, _) = ws_hello(a, &c.owner).await;
    let t0 = now_ms();
    assert_204(&mute(a, &c.moderator, &c.id, "MuMem", json!(1)).await);
    let t1 = now_ms();
    let e = next_entry(&mut wo, &c.id, "mute").await;
    assert_eq!(
        (&e["from"], &e["target"]),
        (&json!("mumod"), &json!("mumem")),
        "{e}"
    );
    let until = e["until"].as_u64().expect("until");
    assert!(
        until + 5 >= t0 + 1000 && until <= t1 + 1000 + 5,
        "until {until} is a second after the call ({t0}..{t1})"
    );

    let f = try_send(&mut wm, &c.id, "let me speak").await;
    assert_eq!(
        (&f["type"], &f["code"]),
        (&json!("error"), &json!("muted")),
        "{f}"
    );
    let wait = f["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(wait > 0 && wait <= 1000, "retry_after_ms {wait}");
    // Commands still work, and the mute is for this room only.
    let who = ask(&mut wm, &c.id, "/who", "reply").await;
    assert_eq!(who["data"]["id"], json!(c.id));
    let ack = try_send(&mut wm, &elsewhere, "I can talk here").await;
    assert_eq!(ack["type"], "entry", "{ack}");

    // The mute ends by itself at `until`, within about a second.
    let posted = loop {
        let f = try_send(&mut wm, &c.id, "free yet?").await;
        if f["type"] == "entry" {
            break f;
        }
        assert_eq!(f["code"], "muted", "{f}");
        assert!(
            now_ms() < until + 1000,
            "still muted a second after until: {f}"
        );
        let wait = f["retry_after_ms"].as_u64().expect("retry_after_ms");
        tokio::time::sleep(Duration::from_millis(wait.clamp(1, 100))).await;
    };
    let ts = posted["ts"].as_u64().expect("ts");
    assert!(
        ts <= until + 1000,
        "posted at {ts}: the mute outlived until {until} by over a second"
    );
    assert!(
        ts + 5 >= until,
        "posted at {ts}, before the mute's end {until}"
    );
    // It ended with no entry: after the mute comes only the message.
    let kinds: Vec<_> = entries_after(a, &c.owner, &c.id, seq(&e))
        .await
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("message")], "no unmute entry");
    // Over, it is no longer there to lift.
    assert_eq!(unmute(a, &c.owner, &c.id, "mumem").await.status, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmute_lets_the_member_send_at_once() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "un", "public").await;
    user(a, "unguest").await;
    let (mut wm, _) = ws_hello(a, &c.member).await;
    let (mut wo, _) = ws_hello(a, &c.owner).await;
    assert_204(&mute(a, &c.owner, &c.id, "unmem", json!(600)).await);
    let m = next_entry(&mut wo, &c.id, "mute").await;
    let f = try_send(&mut wm, &c.id, "hello?").await;
    assert_eq!(f["code"], "muted", "{f}");
    let wait = f["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(
        (590_000..=600_000).contains(&wait),
        "retry_after_ms {wait} is the time left"
    );
    // A muted member may still invite (any member of a public room may).
    let r = ask(&mut wm, &c.id, "/invite unguest", "reply").await;
    assert_eq!(
        (&r["command"], &r["data"]),
        (&json!("invite"), &json!(null))
    );

    assert_204(&unmute(a, &c.moderator, &c.id, "UNMEM").await);
    let e = next_entry(&mut wo, &c.id, "unmute").await;
    assert_eq!(
        (&e["from"], &e["target"], &e["seq"]),
        (&json!("unmod"), &json!("unmem"), &json!(seq(&m) + 1)),
        "{e}"
    );
    let f = try_send(&mut wm, &c.id, "thank you").await;
    assert_eq!(
        (&f["type"], &f["kind"]),
        (&json!("entry"), &json!("message")),
        "{f}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_members_edits_and_actions_are_refused_too() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "ea", "public").await;
    let (mut wm, _) = ws_hello(a, &c.member).await;
    let said = try_send(&mut wm, &c.id, "before the mute").await;
    assert_eq!(said["type"], "entry", "{said}");
    let said_seq = seq(&said);
    assert_204(&mute(a, &c.owner, &c.id, "eamem", json!(600)).await);
    let before = last_seq(a, &c.owner, &c.id).await;

    // An action.
    let f = ask(&mut wm, &c.id, "/me waves", "error").await;
    assert_eq!(f["code"], "muted", "{f}");
    assert!(f["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{f}");
    // An edit, over WebSocket and REST.
    wm.send(
        json!({ "type": "edit", "room": c.id, "seq": said_seq, "text": "edited", "nonce": "e1" }),
    )
    .await;
    let f = wm.next_where("error", |f| f["nonce"] == "e1").await;
    assert_eq!(f["code"], "muted", "{f}");
    let r = request(
        a,
        "PATCH",
        &format!("/api/v1/rooms/{}/messages/{said_seq}", c.id),
        Some(&c.member),
        Some(&json!({ "text": "edited" })),
    )
    .await;
    assert_error(&r, 403, "muted");
    assert_eq!(last_seq(a, &c.owner, &c.id).await, before, "nothing posted");

    assert_204(&unmute(a, &c.owner, &c.id, "eamem").await);
    wm.send(json!({ "type": "send", "room": c.id, "text": "/me waves", "nonce": "act" }))
        .await;
    let e = wm.next_where("entry", |f| f["nonce"] == "act").await;
    assert_eq!(
        (&e["kind"], &e["action"]),
        (&json!("message"), &json!(true)),
        "{e}"
    );
    s.stop().await;
}
