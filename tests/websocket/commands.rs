//! Slash commands answer with the data of the matching REST call; `//` escapes a leading
//! slash; messages are filtered.

use serde_json::{json, Value};

use crate::common::*;
use crate::{ask, next_message, room_with};

/// A REST body as JSON, checking the status.
async fn rest(addr: std::net::SocketAddr, method: &str, path: &str, token: &str) -> Value {
    let body = (method == "POST").then(|| json!({}));
    let r = request(addr, method, path, Some(token), body.as_ref()).await;
    assert!(
        r.status < 300,
        "{method} {path}: {} {:?}",
        r.status,
        r.json()
    );
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_reply_with_what_the_rest_calls_return() {
    let s = start(&[]).await;
    let alice = user(s.addr, "alice").await;
    let bob = user(s.addr, "bob").await;
    let bobs = room(s.addr, &bob, "bob's").await;
    let (mut w, _) = ws_hello(s.addr, &alice).await;

    let r = ask(&mut w, "", "/create den", "reply").await;
    assert_eq!(r["command"], "create");
    assert!(r["text"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
    let den = r["data"]["id"].as_str().unwrap().to_string();
    let mut detail = rest(s.addr, "GET", &format!("/api/v1/rooms/{den}"), &alice).await;
    detail.as_object_mut().unwrap().remove("member_list");
    assert_eq!(r["data"], detail, "/create answers the new Room");
    let by_rest = post(
        s.addr,
        "/api/v1/rooms",
        Some(&alice),
        json!({ "name": "den" }),
    )
    .await;
    assert_eq!(by_rest.status, 201);
    let mut by_rest = by_rest.json();
    by_rest["id"] = json!(den);
    assert_eq!(
        r["data"], by_rest,
        "same Room as POST /api/v1/rooms, but for the id"
    );

    let r = ask(&mut w, "", &format!("/join {bobs}"), "reply").await;
    assert_eq!(r["command"], "join");
    let again = rest(
        s.addr,
        "POST",
        &format!("/api/v1/rooms/{bobs}/join"),
        &alice,
    )
    .await;
    assert_eq!(r["data"], again);
    assert_eq!(r["data"]["members"], 2);

    // /who defaults to the frame's room.
    let r = ask(&mut w, &bobs, "/who", "reply").await;
    assert_eq!(r["command"], "who");
    let who = rest(s.addr, "GET", &format!("/api/v1/rooms/{bobs}"), &alice).await;
    assert_eq!(r["data"], who);
    let r = ask(&mut w, &bobs, &format!("/who {den}"), "reply").await;
    let who = rest(s.addr, "GET", &format!("/api/v1/rooms/{den}"), &alice).await;
    assert_eq!(r["data"], who);

    for (line, path) in [
        ("/rooms", "/api/v1/rooms"),
        ("/users", "/api/v1/users"),
        ("/me", "/api/v1/me"),
    ] {
        let r = ask(&mut w, "", line, "reply").await;
        assert_eq!(r["command"], line.trim_start_matches('/'));
        assert!(r["text"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
        assert_eq!(r["data"], rest(s.addr, "GET", path, &alice).await, "{line}");
    }

    let r = ask(&mut w, "", "/help", "reply").await;
    assert_eq!(r["command"], "help");
    let text = r["text"].as_str().unwrap();
    for c in [
        "/create", "/join", "/leave", "/rooms", "/who", "/users", "/me", "/help",
    ] {
        assert!(text.contains(c), "/help mentions {c}: {text}");
    }

    // /leave defaults to the frame's room; REST's 204 has no body, the reply's data is null.
    let r = ask(&mut w, &bobs, "/leave", "reply").await;
    assert_eq!((&r["command"], &r["data"]), (&json!("leave"), &Value::Null));
    let me = rest(s.addr, "GET", "/api/v1/me", &alice).await;
    let ids: Vec<&Value> = me["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert!(!ids.contains(&&json!(bobs)), "{me}");
    let e = ask(&mut w, "", &format!("/leave {bobs}"), "error").await;
    assert_eq!(e["code"], "not_a_member");
    let rest_leave = post(
        s.addr,
        &format!("/api/v1/rooms/{bobs}/leave"),
        Some(&alice),
        json!({}),
    )
    .await;
    assert_eq!(
        (rest_leave.status, rest_leave.code()),
        (409, "not_a_member".into())
    );
    s.stop().await;
}

/// A file that is removed when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_slash_posts_a_literal_slash_and_messages_are_filtered() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let words = TempFile(
        std::env::temp_dir().join(format!("parley-blocked-{}-{nanos}.txt", std::process::id())),
    );
    std::fs::write(&words.0, "darn\nHeck\n").unwrap();
    let s = start(&["--blocked-words", words.0.to_str().unwrap()]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;

    let cases = [
        ("//shrug", "/shrug"),
        ("// not a command", "/ not a command"),
        ("//help", "/help"),
        (
            "Darn it, what the HECK? darned",
            "**** it, what the ****? darned",
        ),
        (
            "bell\u{7} esc\u{1b}[31m nul\u{0} tab\there\nnext line",
            "bell esc[31m nul tab\there\nnext line",
        ),
    ];
    for (i, (sent, shown)) in cases.iter().enumerate() {
        wa.say(&id, sent, &format!("n{i}")).await;
        for w in [&mut wa, &mut wb] {
            let m = next_message(w).await;
            assert_eq!(m["text"], *shown, "{sent:?}");
        }
    }
    // What is kept is the filtered text.
    let page = get(s.addr, &format!("/api/v1/rooms/{id}/messages"), Some(&t[1])).await;
    let kept: Vec<Value> = page.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["text"].clone())
        .collect();
    let shown: Vec<Value> = cases.iter().map(|c| json!(c.1)).collect();
    assert_eq!(kept, shown);
    s.stop().await;
}

/// A blocked word disguised with a zero-width space or a Cyrillic lookalike is masked as the
/// plain word is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_words_disguised_with_invisible_or_lookalike_letters_are_masked() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let words = TempFile(std::env::temp_dir().join(format!(
        "parley-blocked-disguised-{}-{nanos}.txt",
        std::process::id()
    )));
    std::fs::write(&words.0, "darn\n").unwrap();
    let s = start(&["--blocked-words", words.0.to_str().unwrap()]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    // "darn", then with a zero-width space, then with a Cyrillic a (U+0430).
    let sent = ["darn it", "da\u{200B}rn it", "d\u{430}rn it"];
    for (i, text) in sent.iter().enumerate() {
        wa.say(&id, text, &format!("n{i}")).await;
        for w in [&mut wa, &mut wb] {
            let m = next_message(w).await;
            assert_eq!(m["text"], "**** it", "{text:?}");
        }
    }
    let page = get(s.addr, &format!("/api/v1/rooms/{id}/messages"), Some(&t[1])).await;
    let kept: Vec<Value> = page.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["text"].clone())
        .collect();
    assert_eq!(kept, vec![json!("**** it"); 3]);
    s.stop().await;
}

/// Format characters are removed from message text (but for an emoji's joiners); a text of
/// nothing else is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_characters_are_removed_from_messages() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    let cases = [
        ("a\u{202E}b", "ab"),
        (
            "zero\u{200B}width soft\u{AD}hyphen \u{FEFF}bom",
            "zerowidth softhyphen bom",
        ),
        ("\u{2066}isolated\u{2069} tag\u{E0041}", "isolated tag"),
        ("coder 👩\u{200D}💻", "coder 👩\u{200D}💻"),
    ];
    for (i, (sent, kept)) in cases.iter().enumerate() {
        wa.say(&id, sent, &format!("n{i}")).await;
        for w in [&mut wa, &mut wb] {
            let m = next_message(w).await;
            assert_eq!(m["text"], *kept, "{sent:?}");
        }
    }
    wa.send(
        json!({ "type": "send", "room": id, "text": "\u{200B}\u{202E} \u{FEFF}", "nonce": "e" }),
    )
    .await;
    let e = wa.next().await.expect("an error frame");
    assert_eq!(
        (&e["type"], &e["code"]),
        (&json!("error"), &json!("empty_message")),
        "{e}"
    );
    let page = get(s.addr, &format!("/api/v1/rooms/{id}/messages"), Some(&t[1])).await;
    let texts: Vec<Value> = page.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["text"].clone())
        .collect();
    let want: Vec<Value> = cases.iter().map(|c| json!(c.1)).collect();
    assert_eq!(texts, want);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_larger_than_the_outbound_limit_reaches_a_client_that_keeps_up() {
    let s = start(&["--max-outbound-bytes", "1024"]).await;
    let token = user(s.addr, "alice").await;
    for i in 0..40 {
        let creds = json!({ "username": format!("member-{i:02}"), "password": PASSWORD });
        assert_eq!(
            post(s.addr, "/api/v1/register", None, creds).await.status,
            201
        );
    }
    let (mut ws, _) = ws_hello(s.addr, &token).await;
    let reply = ask(&mut ws, "", "/users", "reply").await;
    let users = reply["data"]["users"].as_array().expect("users");
    assert_eq!(users.len(), 41);
    assert!(
        reply.to_string().len() > 1024,
        "the reply is over the limit"
    );
    // Still open and served.
    let again = ask(&mut ws, "", "/me", "reply").await;
    assert_eq!(again["data"]["username"], "alice");
    s.stop().await;
}
