//! The v1.1 slash commands act on the `send` frame's room, answer a `reply` whose `command` is
//! the name without the slash and whose `data` is the REST call's (`null` for a `204`), and
//! refuse a bad argument with the REST call's error code.

use serde_json::{json, Value};

use crate::common::*;
use crate::*;

/// Asks `line` in `room`, checks the reply's `command` and `data`, and returns the reply and
/// the entry of `kind` the command appended to the room, whether it reached `w` before the
/// reply or after it.
async fn command(
    w: &mut Ws,
    room: &str,
    line: &str,
    name: &str,
    data: &Value,
    kind: &str,
) -> (Value, Value) {
    let (r, before) = ask_seen(w, room, line, "reply").await;
    assert_eq!(
        (&r["command"], &r["data"]),
        (&json!(name), data),
        "{line}: {r}"
    );
    let is_it = |f: &Value| f["type"] == "entry" && f["room"] == room && f["kind"] == kind;
    let entry = match before.iter().find(|f| is_it(f)) {
        Some(e) => e.clone(),
        None => next_entry(w, room, kind).await,
    };
    (r, entry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_commands_act_on_the_frames_room_and_reply_with_the_rest_data() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "sc", "public").await;
    let guest = user(a, "scguest").await;
    let (mut wo, _) = ws_hello(a, &c.owner).await;
    let (mut wg, _) = ws_hello(a, &guest).await;
    let null = json!(null);
    let id = c.id.as_str();

    let r = ask(&mut wo, id, "/invite SCGUEST", "reply").await;
    assert_eq!((&r["command"], &r["data"]), (&json!("invite"), &null));
    let inv = wg.next_where("invite", |_| true).await;
    assert_eq!(
        (&inv["room"]["id"], &inv["by"]),
        (&json!(id), &json!("scown"))
    );

    let (_, e) = command(&mut wo, id, "/kick SCMEM being rude", "kick", &null, "kick").await;
    assert_eq!(
        (&e["from"], &e["target"], &e["text"]),
        (&json!("scown"), &json!("scmem"), &json!("being rude"))
    );
    assert_eq!(join(a, &c.member, id).await.status, 200);

    let (_, e) = command(&mut wo, id, "/ban scMem spam and more", "ban", &null, "ban").await;
    assert_eq!(
        (&e["target"], &e["text"]),
        (&json!("scmem"), &json!("spam and more"))
    );
    assert_error(&join(a, &c.member, id).await, 403, "banned");
    let (_, e) = command(&mut wo, id, "/unban SCMEM", "unban", &null, "unban").await;
    assert_eq!(e["target"], "scmem");
    assert_eq!(join(a, &c.member, id).await.status, 200);

    let t0 = now_ms();
    let (_, e) = command(&mut wo, id, "/mute scmem 60", "mute", &null, "mute").await;
    let until = e["until"].as_u64().expect("until");
    assert!(
        until + 5 >= t0 + 60_000 && until <= now_ms() + 60_005,
        "{e}"
    );
    let (_, e) = command(&mut wo, id, "/unmute ScMem", "unmute", &null, "unmute").await;
    assert_eq!(e["target"], "scmem");

    let (_, e) = command(&mut wo, id, "/op scmem", "op", &null, "role").await;
    assert_eq!(
        (&e["target"], &e["text"]),
        (&json!("scmem"), &json!("moderator"))
    );
    let (_, e) = command(&mut wo, id, "/deop SCMEM", "deop", &null, "role").await;
    assert_eq!(
        (&e["target"], &e["text"]),
        (&json!("scmem"), &json!("member"))
    );

    // /topic and /visibility answer the Room, as PATCH does.
    let line = "/topic what we talk about here";
    let d = without_member_list(details(a, &c.owner, id).await.json());
    let mut want = d.clone();
    want["topic"] = json!("what we talk about here");
    want["last_seq"] = json!(d["last_seq"].as_u64().unwrap() + 1);
    let (r, e) = command(&mut wo, id, line, "topic", &want, "update").await;
    assert_eq!(e["changes"], json!({ "topic": "what we talk about here" }));
    assert_eq!(
        r["data"],
        without_member_list(details(a, &c.owner, id).await.json())
    );

    let d = without_member_list(details(a, &c.owner, id).await.json());
    let mut want = d.clone();
    want["visibility"] = json!("private");
    want["last_seq"] = json!(d["last_seq"].as_u64().unwrap() + 1);
    let (_, e) = command(
        &mut wo,
        id,
        "/visibility private",
        "visibility",
        &want,
        "update",
    )
    .await;
    assert_eq!(e["changes"], json!({ "visibility": "private" }));
    let stranger = user(a, "scstranger").await;
    assert_error(&details(a, &stranger, id).await, 403, "room_restricted");
    let r = ask(&mut wo, id, "/visibility public", "reply").await;
    assert_eq!(r["data"]["visibility"], "public");
    assert_eq!(details(a, &stranger, id).await.status, 200);

    // The roles the commands left: guest still invited, member back to member.
    let d = details(a, &c.owner, id).await.json();
    assert_eq!(
        roles_of(&d),
        [
            ("scmem".to_string(), "member".to_string()),
            ("scmod".into(), "moderator".into()),
            ("scown".into(), "owner".into())
        ]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_command_argument_gets_the_rest_error_code() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "bc", "public").await;
    let (mut wo, _) = ws_hello(a, &c.owner).await;
    let (mut wm, _) = ws_hello(a, &c.member).await;
    let id = c.id.as_str();
    let before = last_seq(a, &c.owner, id).await;
    for (by_owner, line, code) in [
        (true, "/visibility secret", "invalid_visibility"),
        (true, "/mute bcmem soon", "invalid_duration"),
        (true, "/mute bcmem 0", "invalid_duration"),
        (true, "/mute bcmem 2592001", "invalid_duration"),
        (true, "/kick nobody", "user_not_found"),
        (true, "/ban nobody", "user_not_found"),
        (true, "/kick bcout", "not_a_member"),
        (true, "/mute bcout 60", "not_a_member"),
        (true, "/op bcout", "not_a_member"),
        (true, "/invite BCMOD", "already_member"),
        (true, "/unmute bcmem", "not_found"),
        (false, "/op bcmem", "forbidden"),
        (false, "/kick bcmod", "forbidden"),
        (false, "/topic mine now", "forbidden"),
        (false, "/visibility private", "forbidden"),
    ] {
        let w = if by_owner { &mut wo } else { &mut wm };
        let f = ask(w, id, line, "error").await;
        if code == "not_found" {
            // The contract gives a 404 without naming its code.
            assert!(
                f["code"].as_str().is_some_and(|c| !c.is_empty()),
                "{line}: {f}"
            );
        } else {
            assert_eq!(f["code"], code, "{line}: {f}");
        }
    }
    assert_eq!(
        last_seq(a, &c.owner, id).await,
        before,
        "no entry for a refusal"
    );
    s.stop().await;
}
