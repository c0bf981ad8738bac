//! The REST API against a real server over real sockets: accounts, sessions, presence, rooms,
//! history and the operations endpoints, with each error code of docs/PROTOCOL.md.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn creds(name: &str, password: &str) -> Value {
    json!({ "username": name, "password": password })
}

async fn register(s: &Server, name: &str, password: &str) -> Reply {
    post(s.addr, "/api/v1/register", None, creds(name, password)).await
}

async fn login(s: &Server, name: &str, password: &str) -> Reply {
    post(s.addr, "/api/v1/login", None, creds(name, password)).await
}

/// A request with a raw `Authorization` header value (or none).
async fn with_auth(s: &Server, method: &str, path: &str, auth: Option<&str>) -> Reply {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    raw(s.addr, req.into_bytes()).await.0.expect("a response")
}

/// Asserts the contract's error shape and returns the code.
fn error_code(r: &Reply) -> String {
    let v = r.json();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error body has a message: {v}"
    );
    r.code()
}

fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(
        (r.status, error_code(r).as_str()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Checks the contract's `Room` shape and returns it.
fn assert_room(v: &Value) -> &Value {
    let want: BTreeSet<&str> = ["id", "name", "owner", "members", "capacity", "last_seq"].into();
    let got = keys(v);
    assert!(want.is_subset(&got), "room shape: {v}");
    let id = v["id"].as_str().expect("id is a string");
    assert!(
        !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "room ids are URL-safe and at most 32 characters: {id}"
    );
    assert!(v["members"].is_u64() && v["capacity"].is_u64() && v["last_seq"].is_u64());
    v
}

// ----- register -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_answers_201_with_the_name_as_registered() {
    let s = start(&[]).await;
    let r = register(&s, "Alice_9-x", PASSWORD).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json(), json!({ "username": "Alice_9-x" }));
    let r = login(&s, "Alice_9-x", PASSWORD).await;
    assert_eq!(r.status, 200);
    let token = r.json()["token"].as_str().unwrap().to_string();
    let me = get(s.addr, "/api/v1/me", Some(&token)).await;
    assert_eq!(me.json()["username"], "Alice_9-x");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_rejects_bad_usernames() {
    let s = start(&[]).await;
    let long = "a".repeat(33);
    for bad in [
        "",
        "ab",
        long.as_str(),
        "has space",
        "dot.name",
        "slash/name",
        "ünïcode",
        "emoji😀",
    ] {
        let r = register(&s, bad, PASSWORD).await;
        assert_error(&r, 400, "invalid_username");
    }
    // The bounds themselves are fine.
    let max = "Z".repeat(32);
    for good in ["abc", max.as_str(), "a-b_c-0123456789"] {
        assert_eq!(register(&s, good, PASSWORD).await.status, 201, "{good}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_rejects_bad_passwords() {
    // The contract's default minimum, not the tests' shorter one.
    let s = start(&["--min-password-length", "15"]).await;
    let cases = [
        ("p14", "x".repeat(14), 400),
        ("p15", "x".repeat(15), 201),
        ("p1024", "x".repeat(1024), 201),
        ("p1025", "x".repeat(1025), 400),
        // Lengths are bytes: 7 two-byte characters are 14 bytes, 8 are 16.
        ("utf7", "é".repeat(7), 400),
        ("utf8", "é".repeat(8), 201),
        ("empty", String::new(), 400),
    ];
    for (name, password, status) in cases {
        let r = register(&s, name, &password).await;
        if status == 400 {
            assert_error(&r, 400, "invalid_password");
        } else {
            assert_eq!(r.status, 201, "{name}: {:?}", r.json());
            assert_eq!(login(&s, name, &password).await.status, 200, "{name}");
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_rejects_malformed_bodies() {
    let s = start(&[]).await;
    let bodies: [(&[u8], &str); 7] = [
        (b"", "bad_request"),
        (b"{", "bad_request"),
        (b"not json", "bad_request"),
        (b"[]", "bad_request"),
        (br#"{"username":"alice"}"#, "bad_request"),
        // A username of the wrong type is an invalid one (issue 21).
        (
            br#"{"username":7,"password":"correct horse battery"}"#,
            "invalid_username",
        ),
        (br#"{"password":"correct horse battery"}"#, "bad_request"),
    ];
    for (body, code) in bodies {
        let mut req = format!(
            "POST /api/v1/register HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let (r, _) = raw(s.addr, req).await;
        let r = r.expect("a response");
        assert_error(&r, 400, code);
    }
    // Nothing was registered along the way.
    let t = user(s.addr, "alice").await;
    let users = get(s.addr, "/api/v1/users", Some(&t)).await.json();
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "{users}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_are_unique_ignoring_case() {
    let s = start(&[]).await;
    assert_eq!(register(&s, "Carol", PASSWORD).await.status, 201);
    for taken in ["Carol", "carol", "CAROL", "cArOl"] {
        let r = register(&s, taken, "another good password").await;
        assert_error(&r, 409, "username_taken");
    }
    // The first registration keeps its spelling and its password.
    let t = user(s.addr, "dave").await;
    let carol = get(s.addr, "/api/v1/users/Carol", Some(&t)).await;
    assert_eq!(carol.json()["username"], "Carol");
    assert_eq!(login(&s, "Carol", PASSWORD).await.status, 200);
    let r = login(&s, "Carol", "another good password").await;
    assert_error(&r, 401, "invalid_credentials");
    s.stop().await;
}

// ----- login, logout, tokens -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_login_is_a_new_session_with_a_url_safe_token() {
    let s = start(&[]).await;
    assert_eq!(register(&s, "erin", PASSWORD).await.status, 201);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let r = login(&s, "erin", PASSWORD).await;
        assert_eq!(r.status, 200);
        let body = r.json();
        assert_eq!(keys(&body), ["token", "username"].into(), "{body}");
        assert_eq!(body["username"], "erin");
        let token = body["token"].as_str().unwrap().to_string();
        // 256 random bits take at least 43 URL-safe characters.
        assert!(token.len() >= 43, "{token}");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        tokens.push(token);
    }
    assert_ne!(tokens[0], tokens[1]);
    for t in &tokens {
        assert_eq!(get(s.addr, "/api/v1/me", Some(t)).await.status, 200);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_look_the_same_for_unknown_users_and_wrong_passwords() {
    let s = start(&[]).await;
    assert_eq!(register(&s, "frank", PASSWORD).await.status, 201);
    let wrong = login(&s, "frank", "not the password").await;
    let unknown = login(&s, "nobody", "not the password").await;
    assert_error(&wrong, 401, "invalid_credentials");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.headers, unknown.headers);
    // Throttling does not tell them apart either.
    for _ in 0..4 {
        assert_eq!(login(&s, "frank", "not the password").await.status, 401);
        assert_eq!(login(&s, "nobody", "not the password").await.status, 401);
    }
    let wrong = login(&s, "frank", "not the password").await;
    let unknown = login(&s, "nobody", "not the password").await;
    assert_error(&wrong, 429, "too_many_attempts");
    assert_error(&unknown, 429, "too_many_attempts");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_that_session_only() {
    let s = start(&[]).await;
    let t1 = user(s.addr, "gina").await;
    let t2 = post(s.addr, "/api/v1/login", None, creds("gina", PASSWORD))
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post(s.addr, "/api/v1/logout", Some(&t1), json!({})).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_error(
        &get(s.addr, "/api/v1/me", Some(&t1)).await,
        401,
        "unauthorized",
    );
    assert_error(
        &post(s.addr, "/api/v1/logout", Some(&t1), json!({})).await,
        401,
        "unauthorized",
    );
    assert_eq!(get(s.addr, "/api/v1/me", Some(&t2)).await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_get_401() {
    let s = start(&[]).await;
    let t = user(s.addr, "hank").await;
    let id = room(s.addr, &t, "lobby").await;
    let endpoints = [
        ("POST", "/api/v1/logout".to_string()),
        ("GET", "/api/v1/me".to_string()),
        ("GET", "/api/v1/users".to_string()),
        ("GET", "/api/v1/users/hank".to_string()),
        ("GET", "/api/v1/rooms".to_string()),
        ("POST", "/api/v1/rooms".to_string()),
        ("GET", format!("/api/v1/rooms/{id}")),
        ("POST", format!("/api/v1/rooms/{id}/join")),
        ("POST", format!("/api/v1/rooms/{id}/leave")),
        ("GET", format!("/api/v1/rooms/{id}/messages")),
    ];
    let bogus = format!("Bearer {}", "A".repeat(43));
    let truncated = format!("Bearer {}", &t[..t.len() - 1]);
    let basic = "Basic aGFuazpwYXNzd29yZA==";
    let headers = [
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer "),
        Some(basic),
        Some(t.as_str()),
        Some(bogus.as_str()),
        Some(truncated.as_str()),
    ];
    for (method, path) in &endpoints {
        for auth in headers {
            let r = with_auth(&s, method, path, auth).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}");
            assert_eq!(error_code(&r), "unauthorized", "{method} {path}");
        }
    }
    // The real token still works, and none of that logged hank out or changed the room.
    let r = with_auth(
        &s,
        "GET",
        &format!("/api/v1/rooms/{id}"),
        Some(&format!("Bearer {t}")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["members"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_at_their_maximum_age() {
    let s = start(&["--session-max-age", "1"]).await;
    let began = Instant::now();
    let t = user(s.addr, "ivan").await;
    assert_eq!(get(s.addr, "/api/v1/me", Some(&t)).await.status, 200);
    let addr = s.addr;
    let expired = eventually(|| {
        let t = t.clone();
        async move { get(addr, "/api/v1/me", Some(&t)).await.status == 401 }
    })
    .await;
    assert!(expired, "the token still works after its maximum age");
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "ended early: {:?}",
        began.elapsed()
    );
    // A new login works.
    let r = login(&s, "ivan", PASSWORD).await;
    assert_eq!(r.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_users_offline_too_long_end() {
    let s = start(&["--session-idle-timeout", "1", "--presence-timeout", "1"]).await;
    let judy = user(s.addr, "judy").await;
    let kim = user(s.addr, "kim").await;
    // Any request of judy's would keep her online, so watch her through kim.
    let addr = s.addr;
    let offline = eventually(|| {
        let kim = kim.clone();
        async move {
            let v = get(addr, "/api/v1/users/judy", Some(&kim)).await.json();
            v["online"] == false && v["last_seen"].is_u64()
        }
    })
    .await;
    assert!(offline, "judy never went offline");
    // The sweep runs each second; she has now been offline for the idle timeout, and only a
    // request of hers could tell, so wait rather than poll.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_error(
        &get(s.addr, "/api/v1/me", Some(&judy)).await,
        401,
        "unauthorized",
    );
    s.stop().await;
}

// ----- login throttling -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failed_logins_throttle_that_account_only() {
    let s = start(&[]).await;
    assert_eq!(register(&s, "leo", PASSWORD).await.status, 201);
    assert_eq!(register(&s, "mia", PASSWORD).await.status, 201);
    for i in 0..5 {
        let r = login(&s, "leo", "wrong password!").await;
        assert_error(&r, 401, "invalid_credentials");
        assert!(r.header("retry-after").is_none(), "attempt {i}");
    }
    // Even the right password is refused now, in any spelling of the name.
    for name in ["leo", "LEO"] {
        let r = login(&s, name, PASSWORD).await;
        assert_error(&r, 429, "too_many_attempts");
        let ms = r.retry_after_ms();
        assert!(ms <= 15 * 60 * 1000, "{ms}");
    }
    // Another account is unaffected.
    let r = login(&s, "mia", PASSWORD).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["username"], "mia");
    s.stop().await;
}

// ----- the default hashing cost -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_hashed_with_600000_iterations_by_default() {
    let cfg = parley::Config {
        ephemeral: true,
        ..parley::Config::default()
    };
    let s = start_config(cfg).await;
    // The default minimum length is 15 bytes; PASSWORD has 21. 600,000 rounds take a while in
    // an unoptimized build, so this one answer gets more patience than WAIT.
    let req = format!(
        "POST /api/v1/register HTTP/1.1\r\nHost: t\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n{body}",
        body = creds("Nora", PASSWORD),
        body_len = creds("Nora", PASSWORD).to_string().len(),
    );
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, req.as_bytes())
        .await
        .unwrap();
    let mut bytes = until_closed(&mut stream, Duration::from_secs(120))
        .await
        .expect("an answer");
    let r = parse_reply(&mut bytes).expect("a response");
    assert_eq!(r.status, 201, "{:?}", r.json());
    let stored = s.core.stored_hash("Nora").expect("a stored hash");
    assert_eq!(
        parley::chat::password::iterations_of(&stored),
        Some(600_000),
        "{stored}"
    );
    assert!(!stored.contains(PASSWORD));
    s.stop().await;
}

// ----- me, users, presence -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_lists_my_rooms_in_the_order_joined() {
    let s = start(&[]).await;
    let a = user(s.addr, "olga").await;
    let b = user(s.addr, "pete").await;
    let me = get(s.addr, "/api/v1/me", Some(&a)).await;
    assert_eq!(me.status, 200);
    assert_eq!(
        me.json(),
        json!({ "username": "olga", "rooms": [], "invites": [], "admin": false })
    );
    let mine = room(s.addr, &a, "mine").await;
    let theirs = room(s.addr, &b, "theirs").await;
    assert_eq!(join(s.addr, &a, &theirs).await.status, 200);
    let me = get(s.addr, "/api/v1/me", Some(&a)).await.json();
    let rooms = me["rooms"].as_array().unwrap();
    let ids: Vec<&str> = rooms
        .iter()
        .map(|r| assert_room(r)["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str(), theirs.as_str()]);
    assert_eq!(rooms[1]["owner"], "pete");
    assert_eq!(rooms[1]["members"], 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_lists_everyone_with_presence() {
    let s = start(&[]).await;
    assert_eq!(register(&s, "Quinn", PASSWORD).await.status, 201);
    let t = user(s.addr, "rosa").await;
    let r = get(s.addr, "/api/v1/users", Some(&t)).await;
    assert_eq!(r.status, 200);
    let users = r.json()["users"].as_array().unwrap().clone();
    let find = |name: &str| {
        users
            .iter()
            .find(|u| u["username"] == name)
            .unwrap_or_else(|| panic!("{name} listed"))
            .clone()
    };
    assert_eq!(users.len(), 2);
    // Registered but never online.
    assert_eq!(
        find("Quinn"),
        json!({ "username": "Quinn", "online": false, "last_seen": null })
    );
    // Logged in and asking: online, never yet offline.
    assert_eq!(
        find("rosa"),
        json!({ "username": "rosa", "online": true, "last_seen": null })
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_lookup_finds_users_or_answers_404() {
    let s = start(&[]).await;
    assert_eq!(register(&s, "Sam", PASSWORD).await.status, 201);
    let t = user(s.addr, "tess").await;
    let r = get(s.addr, "/api/v1/users/Sam", Some(&t)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({ "username": "Sam", "online": false, "last_seen": null })
    );
    let r = get(s.addr, "/api/v1/users/tess", Some(&t)).await;
    assert_eq!(r.json()["online"], true);
    for missing in ["nobody", "x", "%E2%82%AC"] {
        let r = get(s.addr, &format!("/api/v1/users/{missing}"), Some(&t)).await;
        assert_error(&r, 404, "user_not_found");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_request_activity() {
    let s = start(&["--presence-timeout", "1"]).await;
    let before_login = now_ms();
    let uma = user(s.addr, "uma").await;
    let vic = user(s.addr, "vic").await;
    let seen = get(s.addr, "/api/v1/users/uma", Some(&vic)).await.json();
    assert_eq!(seen["online"], true, "{seen}");
    assert_eq!(seen["last_seen"], Value::Null, "{seen}");

    // Without requests of her own she goes offline, and last_seen says when.
    let deadline = Instant::now() + WAIT;
    let last = loop {
        let v = get(s.addr, "/api/v1/users/uma", Some(&vic)).await.json();
        if v["online"] == false && !v["last_seen"].is_null() {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "uma still online or without last_seen: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let last_seen = last["last_seen"].as_u64().expect("last_seen is ms");
    // Online for the presence timeout after her last request, and not in the future.
    assert!(
        last_seen >= before_login + 1000,
        "{last_seen} vs {before_login}"
    );
    assert!(last_seen <= now_ms(), "{last_seen}");
    let listed = get(s.addr, "/api/v1/users", Some(&vic)).await.json();
    let in_list = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "uma")
        .cloned();
    assert_eq!(in_list, Some(last.clone()));

    // One request and she is back, with the old last_seen kept until she leaves again.
    assert_eq!(get(s.addr, "/api/v1/me", Some(&uma)).await.status, 200);
    let back = get(s.addr, "/api/v1/users/uma", Some(&vic)).await.json();
    assert_eq!(back["online"], true, "{back}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn offline_users_always_have_a_last_seen() {
    // `last_seen` is null only for users never online, so an offline answer about someone who
    // was online must carry it, whenever it is asked.
    let s = start(&["--presence-timeout", "1"]).await;
    let _wes = user(s.addr, "wes").await;
    let xia = user(s.addr, "xia").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let v = get(s.addr, "/api/v1/users/wes", Some(&xia)).await.json();
        if v["online"] == false {
            assert!(v["last_seen"].is_u64(), "offline without last_seen: {v}");
            if v["last_seen"].is_u64() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "wes never went offline");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.stop().await;
}

// ----- rooms -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_room_makes_the_creator_owner_and_first_member() {
    let s = start(&["--room-capacity", "7"]).await;
    let a = user(s.addr, "yara").await;
    let b = user(s.addr, "zack").await;
    let r = post(
        s.addr,
        "/api/v1/rooms",
        Some(&a),
        json!({ "name": "General chat" }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let general = r.json();
    assert_room(&general);
    assert_eq!(general["name"], "General chat");
    assert_eq!(general["owner"], "yara");
    assert_eq!(general["members"], 1);
    assert_eq!(general["capacity"], 7, "--room-capacity is the default");
    let r = post(
        s.addr,
        "/api/v1/rooms",
        Some(&b),
        json!({ "name": "Tiny", "capacity": 2 }),
    )
    .await;
    assert_eq!(r.status, 201);
    let tiny = r.json();
    assert_eq!(tiny["capacity"], 2);
    assert_ne!(tiny["id"], general["id"]);

    // Everyone sees both rooms, as created.
    let r = get(s.addr, "/api/v1/rooms", Some(&b)).await;
    assert_eq!(r.status, 200);
    let rooms = r.json()["rooms"].as_array().unwrap().clone();
    assert_eq!(rooms.len(), 2);
    for want in [&general, &tiny] {
        let got = rooms
            .iter()
            .find(|r| r["id"] == want["id"])
            .expect("listed");
        // The creator's copy carries their role; the lister's carries theirs, if any.
        let (mut got, mut want) = (got.clone(), want.clone());
        assert_eq!(want["role"], "owner");
        for member_only in ["role", "read_seq", "unread"] {
            let listed = got.as_object_mut().unwrap().remove(member_only);
            assert_eq!(listed.is_some(), want["owner"] == "zack", "{got}");
            want.as_object_mut().unwrap().remove(member_only);
        }
        assert_eq!(got, want);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_names_and_capacities_are_validated() {
    let s = start(&[]).await;
    let t = user(s.addr, "abe").await;
    let addr = s.addr;
    let create = |body: Value| {
        let t = t.clone();
        async move { post(addr, "/api/v1/rooms", Some(&t), body).await }
    };
    for name in [
        String::new(),
        "   ".to_string(),
        "x".repeat(65),
        "bell\u{7}".to_string(),
        "new\nline".to_string(),
    ] {
        let r = create(json!({ "name": name })).await;
        assert_error(&r, 400, "invalid_room_name");
    }
    for capacity in [json!(0), json!(-1), json!(100_001)] {
        let r = create(json!({ "name": "ok", "capacity": capacity })).await;
        assert_error(&r, 400, "invalid_capacity");
    }
    // Names count characters, not bytes; the bounds are allowed.
    for (name, capacity) in [
        ("é".repeat(64), 1),
        ("x".to_string(), 100_000),
        ("Café ☕".to_string(), 50),
    ] {
        let r = create(json!({ "name": name, "capacity": capacity })).await;
        assert_eq!(r.status, 201, "{name}: {:?}", r.json());
        assert_eq!(r.json()["name"], json!(name));
        assert_eq!(r.json()["capacity"], capacity);
    }
    // A missing or non-string name is an invalid name; a body that is not an object is
    // not a request at all.
    for body in [json!({}), json!({ "name": 5 })] {
        assert_error(&create(body).await, 400, "invalid_room_name");
    }
    assert_error(&create(json!("lobby")).await, 400, "bad_request");
    let rooms = get(s.addr, "/api/v1/rooms", Some(&t)).await.json();
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 3, "{rooms}");
    s.stop().await;
}

/// Bidirectional overrides, zero-width and other format characters (Unicode category Cf) could
/// make a room name read as something else, so they are refused like control characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_names_with_format_characters_are_refused() {
    let s = start(&[]).await;
    let t = user(s.addr, "fay").await;
    for c in [
        '\u{202E}',
        '\u{202A}',
        '\u{2066}',
        '\u{2069}',
        '\u{200B}',
        '\u{200D}',
        '\u{200F}',
        '\u{2060}',
        '\u{FEFF}',
        '\u{00AD}',
        '\u{061C}',
        '\u{E0041}',
    ] {
        let name = format!("lob{c}by");
        let r = post(s.addr, "/api/v1/rooms", Some(&t), json!({ "name": name })).await;
        assert_error(&r, 400, "invalid_room_name");
    }
    // Letters of right-to-left scripts, emoji and combining marks are names like any other.
    for name in ["שלום", "مرحبا", "👩 team", "cafe\u{301}"] {
        let r = post(s.addr, "/api/v1/rooms", Some(&t), json!({ "name": name })).await;
        assert_eq!(r.status, 201, "{name}: {:?}", r.json());
    }
    s.stop().await;
}

/// A room name must show something, may not start with `@` (parley-cli's mark for a DM), and
/// may not stack more than two combining marks on one character; this holds for a rename too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_names_that_show_nothing_look_like_a_dm_or_stack_marks_are_refused() {
    let s = start(&[]).await;
    let t = user(s.addr, "gus").await;
    for name in [
        "\u{200B}\u{200B}",
        "\u{301}",
        " \u{301}\u{302} ",
        "\u{3164}",
        "@alice",
        "a\u{301}\u{301}\u{301}\u{301}",
    ] {
        let r = post(s.addr, "/api/v1/rooms", Some(&t), json!({ "name": name })).await;
        assert_error(&r, 400, "invalid_room_name");
    }
    let mut id = String::new();
    for name in ["Café", "日本語", "alice@home", "e\u{302}\u{301}"] {
        let r = post(s.addr, "/api/v1/rooms", Some(&t), json!({ "name": name })).await;
        assert_eq!(r.status, 201, "{name:?}: {:?}", r.json());
        id = r.json()["id"].as_str().unwrap().to_string();
    }
    let path = format!("/api/v1/rooms/{id}");
    let body = json!({ "name": "@bob" });
    let r = request(s.addr, "PATCH", &path, Some(&t), Some(&body)).await;
    assert_error(&r, 400, "invalid_room_name");
    s.stop().await;
}

/// A room name whose word mixes Latin with Cyrillic or Greek letters ("Gеneral" with a
/// Cyrillic `е`) passes for another room's; it is refused, for a rename too. Names in one
/// script per word are fine, whatever the script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_names_that_mix_lookalike_scripts_in_a_word_are_refused() {
    let s = start(&[]).await;
    let t = user(s.addr, "hal").await;
    for name in ["Gеneral", "pаypal", "Αlpha team", "ｇеneral"] {
        let r = post(s.addr, "/api/v1/rooms", Some(&t), json!({ "name": name })).await;
        assert_error(&r, 400, "invalid_room_name");
    }
    let mut id = String::new();
    for name in [
        "General",
        "Общий чат",
        "Ελληνικά",
        "Общий chat",
        "naïve café",
    ] {
        let r = post(s.addr, "/api/v1/rooms", Some(&t), json!({ "name": name })).await;
        assert_eq!(r.status, 201, "{name:?}: {:?}", r.json());
        id = r.json()["id"].as_str().unwrap().to_string();
    }
    let path = format!("/api/v1/rooms/{id}");
    let body = json!({ "name": "Gеneral" });
    let r = request(s.addr, "PATCH", &path, Some(&t), Some(&body)).await;
    assert_error(&r, 400, "invalid_room_name");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_detail_lists_members_with_their_presence() {
    let s = start(&[]).await;
    let a = user(s.addr, "bea").await;
    let b = user(s.addr, "cal").await;
    let c = user(s.addr, "dot").await;
    let id = room(s.addr, &a, "detail").await;
    assert_eq!(join(s.addr, &b, &id).await.status, 200);
    // Anyone logged in may look, member or not.
    let r = get(s.addr, &format!("/api/v1/rooms/{id}"), Some(&c)).await;
    assert_eq!(r.status, 200);
    let detail = r.json();
    assert_room(&detail);
    assert_eq!(detail["members"], 2);
    let mut members: Vec<Value> = detail["member_list"].as_array().unwrap().clone();
    members.sort_by_key(|m| m["username"].as_str().unwrap().to_string());
    assert_eq!(
        members,
        [
            json!({ "username": "bea", "online": true, "role": "owner" }),
            json!({ "username": "cal", "online": true, "role": "member" }),
        ]
    );
    for missing in ["nope", "0000000000"] {
        let r = get(s.addr, &format!("/api/v1/rooms/{missing}"), Some(&c)).await;
        assert_error(&r, 404, "room_not_found");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_is_idempotent_and_unknown_rooms_are_404() {
    let s = start(&[]).await;
    let a = user(s.addr, "eve").await;
    let b = user(s.addr, "fay").await;
    let id = room(s.addr, &a, "joinable").await;
    let r = join(s.addr, &b, &id).await;
    assert_eq!(r.status, 200);
    assert_room(&r.json());
    assert_eq!(r.json()["id"], json!(id));
    assert_eq!(r.json()["members"], 2);
    let again = join(s.addr, &b, &id).await;
    assert_eq!(again.status, 200, "joining twice is fine");
    assert_eq!(again.json()["members"], 2);
    let owner_again = join(s.addr, &a, &id).await;
    assert_eq!(owner_again.status, 200);
    assert_eq!(owner_again.json()["members"], 2);
    assert_error(
        &join(s.addr, &b, "no-such-room").await,
        404,
        "room_not_found",
    );
    let me = get(s.addr, "/api/v1/me", Some(&b)).await.json();
    assert_eq!(me["rooms"].as_array().unwrap().len(), 1, "{me}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_new_members() {
    let s = start(&[]).await;
    let a = user(s.addr, "gus").await;
    let b = user(s.addr, "hal").await;
    let c = user(s.addr, "ivo").await;
    let r = post(
        s.addr,
        "/api/v1/rooms",
        Some(&a),
        json!({ "name": "pair", "capacity": 2 }),
    )
    .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(join(s.addr, &b, &id).await.status, 200);
    assert_error(&join(s.addr, &c, &id).await, 409, "room_full");
    // A member is not refused, and a freed place can be taken.
    assert_eq!(join(s.addr, &b, &id).await.status, 200);
    let leave = post(
        s.addr,
        &format!("/api/v1/rooms/{id}/leave"),
        Some(&b),
        json!({}),
    )
    .await;
    assert_eq!(leave.status, 204);
    let r = join(s.addr, &c, &id).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["members"], 2);
    assert_error(&join(s.addr, &b, &id).await, 409, "room_full");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_in_too_many_rooms_cannot_join_or_create_more() {
    let s = start(&["--max-rooms-per-user", "2"]).await;
    let a = user(s.addr, "ida").await;
    let b = user(s.addr, "jon").await;
    let first = room(s.addr, &a, "one").await;
    room(s.addr, &a, "two").await;
    let third = room(s.addr, &b, "three").await;
    assert_error(&join(s.addr, &a, &third).await, 409, "too_many_rooms");
    let r = post(s.addr, "/api/v1/rooms", Some(&a), json!({ "name": "four" })).await;
    assert_error(&r, 409, "too_many_rooms");
    // Already a member is still fine at the cap.
    assert_eq!(join(s.addr, &a, &first).await.status, 200);
    // Leaving one makes room for another.
    let leave = post(
        s.addr,
        &format!("/api/v1/rooms/{first}/leave"),
        Some(&a),
        json!({}),
    )
    .await;
    assert_eq!(leave.status, 204);
    assert_eq!(join(s.addr, &a, &third).await.status, 200);
    let rooms = get(s.addr, "/api/v1/rooms", Some(&a)).await.json();
    assert_eq!(
        rooms["rooms"].as_array().unwrap().len(),
        2,
        "no room 'four', and 'one' went with its last member: {rooms}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_removes_membership() {
    let s = start(&[]).await;
    let a = user(s.addr, "kai").await;
    let b = user(s.addr, "lou").await;
    let id = room(s.addr, &a, "leavable").await;
    assert_eq!(join(s.addr, &b, &id).await.status, 200);
    let leave_path = format!("/api/v1/rooms/{id}/leave");
    let r = post(s.addr, &leave_path, Some(&b), json!({})).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let detail = get(s.addr, &format!("/api/v1/rooms/{id}"), Some(&b))
        .await
        .json();
    assert_eq!(detail["members"], 1);
    assert_eq!(detail["member_list"].as_array().unwrap().len(), 1);
    assert_eq!(
        get(s.addr, "/api/v1/me", Some(&b)).await.json()["rooms"],
        json!([])
    );
    assert_error(
        &post(s.addr, &leave_path, Some(&b), json!({})).await,
        409,
        "not_a_member",
    );
    let r = post(s.addr, "/api/v1/rooms/nowhere/leave", Some(&b), json!({})).await;
    assert_error(&r, 404, "room_not_found");
    let r = get(s.addr, &format!("/api/v1/rooms/{id}/messages"), Some(&b)).await;
    assert_error(&r, 403, "not_a_member");
    s.stop().await;
}

// ----- history -----

fn seqs(page: &Value) -> Vec<u64> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_backwards_through_what_is_kept() {
    let s = start(&["--history", "10"]).await;
    let a = user(s.addr, "max").await;
    let b = user(s.addr, "ned").await;
    let id = room(s.addr, &a, "paged").await;
    // The creator's join is seq 1; twelve joins and leaves make seqs 2..=25.
    for _ in 0..12 {
        assert_eq!(join(s.addr, &b, &id).await.status, 200);
        let r = post(
            s.addr,
            &format!("/api/v1/rooms/{id}/leave"),
            Some(&b),
            json!({}),
        )
        .await;
        assert_eq!(r.status, 204);
    }
    let addr = s.addr;
    let page = |query: &str| {
        let (a, path) = (a.clone(), format!("/api/v1/rooms/{id}/messages{query}"));
        async move {
            let r = get(addr, &path, Some(&a)).await;
            assert_eq!(r.status, 200, "{path}: {:?}", r.json());
            r.json()
        }
    };
    let newest = page("").await;
    assert_eq!(seqs(&newest), (16..=25).collect::<Vec<_>>());
    assert_eq!(newest["first_seq"], 16);
    let entries = newest["entries"].as_array().unwrap();
    for e in entries {
        assert_eq!(e["room"], json!(id));
        assert_eq!(e["from"], "ned");
        assert!(
            e["ts"].as_u64().is_some_and(|ts| ts > 1_600_000_000_000),
            "{e}"
        );
        assert!(e.get("text").is_none(), "join and leave carry no text: {e}");
    }
    // After the creator's join at 1, ned's joins have even seqs and his leaves odd ones.
    assert_eq!(entries[0]["kind"], "join");
    assert_eq!(entries[1]["kind"], "leave");

    assert_eq!(seqs(&page("?before=20&limit=3").await), [17, 18, 19]);
    assert_eq!(seqs(&page("?limit=2").await), [24, 25]);
    assert_eq!(
        seqs(&page("?before=17&limit=5").await),
        [16],
        "older ones are gone"
    );
    assert_eq!(seqs(&page("?before=16").await), Vec::<u64>::new());
    assert_eq!(seqs(&page("?before=1").await), Vec::<u64>::new());
    assert_eq!(seqs(&page("?before=1000&limit=1").await), [25]);
    assert_eq!(page("?before=5").await["first_seq"], 16);

    for bad in ["?before=abc", "?limit=-1", "?limit=ten"] {
        let r = get(
            s.addr,
            &format!("/api/v1/rooms/{id}/messages{bad}"),
            Some(&a),
        )
        .await;
        assert_error(&r, 400, "bad_request");
    }
    let r = get(s.addr, &format!("/api/v1/rooms/{id}/messages"), Some(&b)).await;
    assert_error(&r, 403, "not_a_member");
    let r = get(s.addr, "/api/v1/rooms/missing/messages", Some(&a)).await;
    assert_error(&r, 404, "room_not_found");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_returns_messages_and_caps_the_page_at_500() {
    let s = start(&["--rate-limit", "0"]).await;
    let a = user(s.addr, "ora").await;
    let id = room(s.addr, &a, "busy").await;
    let (mut ws, _) = ws_hello(s.addr, &a).await;
    let started = now_ms();
    for i in 0..520 {
        ws.say(&id, &format!("message {i}"), &format!("n{i}")).await;
    }
    ws.next_where("entry", |f| f["nonce"] == "n519").await;
    let path = format!("/api/v1/rooms/{id}/messages");
    // Default page: the newest 50.
    let page = get(s.addr, &path, Some(&a)).await.json();
    assert_eq!(seqs(&page), (472..=521).collect::<Vec<_>>());
    assert_eq!(page["first_seq"], 1);
    let last = &page["entries"][49];
    assert_eq!(last["kind"], "message");
    assert_eq!(last["from"], "ora");
    assert_eq!(last["text"], "message 519");
    assert!(last["ts"].as_u64().unwrap() >= started);
    // At most 500, whatever the client asks.
    let page = get(s.addr, &format!("{path}?limit=100000"), Some(&a))
        .await
        .json();
    assert_eq!(seqs(&page), (22..=521).collect::<Vec<_>>());
    s.stop().await;
}

// ----- routing and operations -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let s = start(&[]).await;
    // `/` is the browser client now (tests/browser.rs); its unknown files are 404.
    for path in [
        "/web/nope.js",
        "/web",
        "/nope",
        "/api/v1",
        "/api/v1/nope",
        "/api/v2/me",
        "/api/v1/rooms/x/y/z",
        "/api/v1/users/a/b",
        "/healthz/extra",
    ] {
        let r = get(s.addr, path, None).await;
        assert_eq!(r.status, 404, "{path}");
        error_code(&r);
    }
    for (method, path, allow) in [
        ("GET", "/api/v1/register", "POST"),
        ("GET", "/api/v1/login", "POST"),
        ("GET", "/api/v1/logout", "POST"),
        ("POST", "/api/v1/me", "GET"),
        ("DELETE", "/api/v1/users", "GET"),
        ("PUT", "/api/v1/rooms", "GET, POST"),
        ("PUT", "/api/v1/rooms/abc", "DELETE, GET, PATCH"),
        ("GET", "/api/v1/rooms/abc/join", "POST"),
        ("GET", "/api/v1/rooms/abc/leave", "POST"),
        ("POST", "/api/v1/rooms/abc/messages", "GET"),
        ("POST", "/healthz", "GET"),
        ("POST", "/metrics", "GET"),
        ("POST", "/", "GET"),
        ("DELETE", "/web/app.js", "GET"),
    ] {
        let r = request(s.addr, method, path, None, None).await;
        assert_eq!(r.status, 405, "{method} {path}");
        error_code(&r);
        let got: BTreeSet<&str> = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: Allow header"))
            .split(',')
            .map(str::trim)
            .collect();
        let want: BTreeSet<&str> = allow.split(", ").collect();
        assert_eq!(got, want, "{method} {path}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_ok() {
    let s = start(&[]).await;
    let r = get(s.addr, "/healthz", None).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/json"));
    assert_eq!(r.json(), json!({ "status": "ok" }));
    s.stop().await;
}

/// The samples of a Prometheus text exposition, checking its syntax on the way.
fn prometheus(text: &str) -> std::collections::HashMap<String, f64> {
    let mut typed = BTreeSet::new();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.insert(name.to_string());
        } else if !line.starts_with("# HELP ") {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{line}"
            );
            assert!(typed.contains(name), "{name} has a # TYPE line");
            samples.insert(name.to_string(), value.parse().expect("a number"));
        }
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_contracts_counters() {
    let s = start(&["--rate-limit", "1", "--rate-burst", "1"]).await;
    let a = user(s.addr, "pia").await;
    let id = room(s.addr, &a, "measured").await;
    let (mut ws, _) = ws_hello(s.addr, &a).await;
    ws.say(&id, "hello", "n1").await;
    ws.next_where("entry", |f| f["nonce"] == "n1").await;
    ws.say(&id, "too fast", "n2").await;
    let refused = ws.next_where("error", |_| true).await;
    assert_eq!(refused["code"], "rate_limited");

    let r = get(s.addr, "/metrics", None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{:?}",
        r.header("content-type")
    );
    let m = prometheus(&String::from_utf8(r.body.clone()).unwrap());
    let value = |name: &str| *m.get(name).unwrap_or_else(|| panic!("{name} in {m:?}"));
    // Every figure the contract names.
    for name in [
        "parley_connections",
        "parley_online_users",
        "parley_rooms",
        "parley_entries_appended_total",
        "parley_frames_delivered_total",
        "parley_bytes_out_total",
        "parley_slow_consumer_closes_total",
        "parley_rate_limited_total",
        "parley_journal_bytes_total",
        "parley_journal_fsyncs_total",
        "parley_journal_snapshots",
    ] {
        value(name);
    }
    // And they follow what happened: this request and the WebSocket are open, pia is online,
    // one room with a join and a message, one refusal.
    assert!(value("parley_connections") >= 2.0);
    assert_eq!(value("parley_online_users"), 1.0);
    assert_eq!(value("parley_rooms"), 1.0);
    assert_eq!(value("parley_entries_appended_total"), 2.0);
    assert!(value("parley_frames_delivered_total") >= 1.0);
    assert!(value("parley_bytes_out_total") > 0.0);
    assert_eq!(value("parley_rate_limited_total"), 1.0);
    assert_eq!(value("parley_slow_consumer_closes_total"), 0.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_100_sessions_and_the_oldest_ends_first() {
    let s = start(&[]).await;
    let first = user(s.addr, "alice").await;
    let (mut ws, _) = ws_hello(s.addr, &first).await;
    let mut tokens = vec![first.clone()];
    for _ in 0..100 {
        let r = login(&s, "alice", PASSWORD).await;
        assert_eq!(r.status, 200);
        tokens.push(r.json()["token"].as_str().unwrap().to_string());
    }
    assert_eq!(
        get(s.addr, "/api/v1/me", Some(&first)).await.status,
        401,
        "the 101st login ends the oldest session"
    );
    assert_eq!(
        ws.closed().await,
        Ended::Close(4001),
        "and closes its sockets"
    );
    for t in &tokens[1..] {
        assert_eq!(get(s.addr, "/api/v1/me", Some(t)).await.status, 200);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_client_is_served_with_a_csp_and_revalidated_by_etag() {
    let s = start(&[]).await;
    let page = get(s.addr, "/", None).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let csp = page.header("content-security-policy").expect("a CSP");
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains(r#"<script type="module" src="/web/app.js"></script>"#));
    let etag = page.header("etag").expect("an ETag").to_owned();

    let again =
        format!("GET / HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n");
    let (r, _) = raw(s.addr, again.into_bytes()).await;
    let r = r.expect("an answer");
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    let js = get(s.addr, "/web/app.js", None).await;
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/javascript")));
    assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(js.header("cache-control"), Some("no-cache"));
    assert_ne!(js.header("etag"), Some(etag.as_str()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_are_never_cached_or_sniffed_and_the_page_connects_only_to_itself() {
    let s = start(&[]).await;
    let token = user(s.addr, "nocache").await;
    let me = get(s.addr, "/api/v1/me", Some(&token)).await;
    let refused = get(s.addr, "/api/v1/me", Some("not a token")).await;
    for r in [&me, &refused] {
        assert_eq!(r.header("cache-control"), Some("no-store"), "{}", r.status);
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    let page = get(s.addr, "/", None).await;
    let csp = page.header("content-security-policy").expect("a CSP");
    let connect = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("connect-src"))
        .expect("a connect-src");
    assert_eq!(
        connect, "connect-src 'self'",
        "no WebSocket to any other host"
    );
    assert_eq!(
        page.header("cache-control"),
        Some("no-cache"),
        "the page revalidates"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_sets_last_seen_to_the_logout_time() {
    let s = start(&[]).await;
    let wes = user(s.addr, "wes").await;
    let xan = user(s.addr, "xan").await;
    let before = now_ms();
    let r = post(s.addr, "/api/v1/logout", Some(&wes), json!({})).await;
    assert_eq!(r.status, 204);
    let after = now_ms();
    let v = get(s.addr, "/api/v1/users/wes", Some(&xan)).await.json();
    assert_eq!(v["online"], false, "{v}");
    let last_seen = v["last_seen"].as_u64().expect("last_seen is ms");
    assert!(
        (before..=after).contains(&last_seen),
        "{last_seen} not in {before}..={after}"
    );
    s.stop().await;
}
