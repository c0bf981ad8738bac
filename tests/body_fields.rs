//! Every field of every REST body in the contract, sent with a value of the wrong JSON type
//! (a number for a string, a string for a number, `true`, an object, an array, `null` where
//! the field is needed): the answer is that field's own status and code, the one a bad value
//! of the right type gets, never the catch-all `bad_request` (except where the contract gives
//! the field no other code). A body that is not an object, or lacks a needed field, is still
//! `400 bad_request`.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{json, Value};

/// Values that are not a string; `null` only where the field is needed.
fn not_text(needed: bool) -> Vec<Value> {
    let mut v = vec![json!(7), json!(1.5), json!(true), json!({}), json!(["x"])];
    if needed {
        v.push(Value::Null);
    }
    v
}

/// Values that are not a whole number; `null` only where the field is needed.
fn not_whole(needed: bool) -> Vec<Value> {
    let mut v = vec![
        json!("ten"),
        json!("5"),
        json!(1.5),
        json!(true),
        json!({}),
        json!([5]),
    ];
    if needed {
        v.push(Value::Null);
    }
    v
}

/// The error codes `src/api/openapi.json` documents for `method path` answering `status`:
/// the template matching `path` with the fewest parameters.
fn documented(doc: &Value, method: &str, path: &str, status: u16) -> Vec<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let paths = doc["paths"].as_object().expect("paths");
    let template = paths
        .keys()
        .filter(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segments.len()
                && ts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
        .min_by_key(|t| t.matches('{').count())
        .unwrap_or_else(|| panic!("{path} is not documented"));
    let mut answer = &paths[template][method.to_ascii_lowercase()]["responses"][status.to_string()];
    if let Some(r) = answer["$ref"].as_str() {
        answer = doc
            .pointer(r.trim_start_matches('#'))
            .expect("a resolvable $ref");
    }
    let schema = &answer["content"]["application/json"]["schema"]["allOf"][1];
    let codes = schema["properties"]["error"]["properties"]["code"]["enum"].as_array();
    let codes = codes.unwrap_or_else(|| panic!("{method} {template} {status}: no codes"));
    codes
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// One call: where it goes, who asks, and a body that is right but for the field tried.
struct Call<'a> {
    method: &'a str,
    path: &'a str,
    token: Option<&'a str>,
    base: Value,
}

/// A registration of `newbie`.
fn register_call() -> Call<'static> {
    Call {
        method: "POST",
        path: "/api/v1/register",
        token: None,
        base: json!({ "username": "newbie", "password": PASSWORD }),
    }
}

impl Call<'_> {
    /// Sends the call with `field` set to each of `wrong`, expecting `status` and `code`,
    /// which the OpenAPI document lists for that call and status.
    async fn refuses(&self, addr: SocketAddr, field: &str, wrong: &[Value], want: (u16, &str)) {
        let doc = get(addr, "/api/v1/openapi.json", None).await.json();
        let codes = documented(&doc, self.method, self.path, want.0);
        assert!(
            codes.iter().any(|c| c == want.1),
            "{} {} {}: {} is not among the documented {codes:?}",
            self.method,
            self.path,
            want.0,
            want.1
        );
        for value in wrong {
            let mut body = self.base.clone();
            body[field] = value.clone();
            let r = request(addr, self.method, self.path, self.token, Some(&body)).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                want,
                "{} {} {body}: {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&r.body)
            );
        }
    }

    /// The base body itself is answered `status` (the field was what made it fail).
    async fn takes(&self, addr: SocketAddr, status: u16) -> Reply {
        let r = request(addr, self.method, self.path, self.token, Some(&self.base)).await;
        assert_eq!(
            r.status,
            status,
            "{} {} {}: {}",
            self.method,
            self.path,
            self.base,
            String::from_utf8_lossy(&r.body)
        );
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_fields_of_the_wrong_type_get_their_codes() {
    let s = start(&["--admin", "ada"]).await;
    let a = s.addr;
    let ada = register_admin(a, &s.core, "ada").await;

    let register = register_call();
    register
        .refuses(a, "username", &not_text(true), (400, "invalid_username"))
        .await;
    register
        .refuses(a, "password", &not_text(true), (400, "invalid_password"))
        .await;

    let login = Call {
        method: "POST",
        path: "/api/v1/login",
        token: None,
        base: json!({ "username": "ada", "password": PASSWORD }),
    };
    for field in ["username", "password"] {
        login
            .refuses(a, field, &not_text(true), (401, "invalid_credentials"))
            .await;
    }
    login.takes(a, 200).await;

    let admin_user = Call {
        method: "POST",
        path: "/api/v1/admin/users",
        token: Some(&ada),
        base: json!({ "username": "made", "password": PASSWORD }),
    };
    admin_user
        .refuses(a, "username", &not_text(true), (400, "invalid_username"))
        .await;
    admin_user
        .refuses(a, "password", &not_text(true), (400, "invalid_password"))
        .await;

    // The contract gives an invite code's fields only `bad_request`, whatever is wrong.
    let codes = Call {
        method: "POST",
        path: "/api/v1/admin/invite-codes",
        token: Some(&ada),
        base: json!({ "uses": 2, "expires_in": 3600 }),
    };
    for field in ["uses", "expires_in"] {
        codes
            .refuses(a, field, &not_whole(false), (400, "bad_request"))
            .await;
    }

    let password = Call {
        method: "POST",
        path: "/api/v1/password",
        token: Some(&ada),
        base: json!({ "old": PASSWORD, "new": "another good password" }),
    };
    password
        .refuses(a, "old", &not_text(true), (401, "invalid_credentials"))
        .await;
    password
        .refuses(a, "new", &not_text(true), (400, "invalid_password"))
        .await;

    // Nothing above made an account or changed a password.
    assert_eq!(login.takes(a, 200).await.json()["username"], "ada");
    for name in ["newbie", "made"] {
        let r = get(a, &format!("/api/v1/users/{name}"), Some(&ada)).await;
        assert_error(&r, 404, "user_not_found");
    }
    register.takes(a, 201).await;
    admin_user.takes(a, 201).await;
    codes.takes(a, 201).await;
    s.stop().await;
}

/// A code that is not a string is refused with `invite_required` under every
/// `--registration`, even open, where a string that is no live code is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_code_of_the_wrong_type_is_refused() {
    for mode in ["invite", "open"] {
        let s = start(&["--registration", mode]).await;
        let a = s.addr;
        let register = register_call();
        register
            .refuses(a, "invite_code", &not_text(false), (403, "invite_required"))
            .await;
        register
            .refuses(a, "username", &not_text(true), (400, "invalid_username"))
            .await;
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_fields_of_the_wrong_type_get_their_codes() {
    let s = start(&[]).await;
    let a = s.addr;
    let alice = user(a, "alice").await;
    let bob = user(a, "bob").await;
    let id = room(a, &alice, "lobby").await;
    assert_eq!(join(a, &bob, &id).await.status, 200);

    // The issue's own example.
    let r = post(
        a,
        "/api/v1/rooms",
        Some(&alice),
        json!({ "name": "x", "capacity": "ten" }),
    )
    .await;
    assert_error(&r, 400, "invalid_capacity");

    let create = Call {
        method: "POST",
        path: "/api/v1/rooms",
        token: Some(&alice),
        base: json!({ "name": "x", "capacity": 10, "visibility": "private", "topic": "t" }),
    };
    create
        .refuses(a, "name", &not_text(true), (400, "invalid_room_name"))
        .await;
    let mut capacities = not_whole(false);
    capacities.push(json!(1e20));
    create
        .refuses(a, "capacity", &capacities, (400, "invalid_capacity"))
        .await;
    create
        .refuses(
            a,
            "visibility",
            &not_text(false),
            (400, "invalid_visibility"),
        )
        .await;
    create
        .refuses(a, "topic", &not_text(false), (400, "invalid_topic"))
        .await;

    let path = format!("/api/v1/rooms/{id}");
    let patch = Call {
        method: "PATCH",
        path: &path,
        token: Some(&alice),
        base: json!({ "name": "hall", "topic": "t", "visibility": "public" }),
    };
    patch
        .refuses(a, "name", &not_text(false), (400, "invalid_room_name"))
        .await;
    patch
        .refuses(a, "topic", &not_text(false), (400, "invalid_topic"))
        .await;
    patch
        .refuses(
            a,
            "visibility",
            &not_text(false),
            (400, "invalid_visibility"),
        )
        .await;

    // The calls that name a user: a username of the wrong type is no username.
    let paths: Vec<(String, Value)> = [
        ("invites", json!({ "username": "carol" })),
        ("kick", json!({ "username": "bob", "reason": "r" })),
        ("bans", json!({ "username": "bob", "reason": "r" })),
        ("mutes", json!({ "username": "bob", "seconds": 60 })),
        ("roles", json!({ "username": "bob", "role": "moderator" })),
    ]
    .into_iter()
    .map(|(p, b)| (format!("/api/v1/rooms/{id}/{p}"), b))
    .chain([
        ("/api/v1/dms".to_string(), json!({ "username": "bob" })),
        ("/api/v1/blocks".to_string(), json!({ "username": "bob" })),
    ])
    .collect();
    let calls: Vec<Call> = paths
        .iter()
        .map(|(path, base)| Call {
            method: "POST",
            path,
            token: Some(&alice),
            base: base.clone(),
        })
        .collect();
    for call in &calls {
        call.refuses(a, "username", &not_text(true), (400, "invalid_username"))
            .await;
    }
    let [_invite, kick, ban, mute, roles, ..] = &calls[..] else {
        unreachable!()
    };
    // A reason has no code of its own: a bad one (too long, or not a string) is bad_request.
    for call in [kick, ban] {
        call.refuses(a, "reason", &not_text(false), (400, "bad_request"))
            .await;
    }
    mute.refuses(a, "seconds", &not_whole(true), (400, "invalid_duration"))
        .await;
    roles
        .refuses(a, "role", &not_text(true), (400, "invalid_role"))
        .await;

    // Read markers: `seq` has no code of its own in the contract.
    let path = format!("/api/v1/rooms/{id}/read");
    let read = Call {
        method: "POST",
        path: &path,
        token: Some(&bob),
        base: json!({ "seq": 1 }),
    };
    read.refuses(a, "seq", &not_whole(true), (400, "bad_request"))
        .await;

    // An edit's text of the wrong type holds no message.
    let path = format!("/api/v1/rooms/{id}/messages/1");
    let edit = Call {
        method: "PATCH",
        path: &path,
        token: Some(&alice),
        base: json!({ "text": "fixed" }),
    };
    edit.refuses(a, "text", &not_text(true), (400, "empty_message"))
        .await;

    // None of it reached the room: only the two joins are in its timeline, bob is still a
    // member, and no other room was made.
    let (entries, _) = history(a, &alice, &id).await;
    let kinds: Vec<&Value> = entries.iter().map(|e| &e["kind"]).collect();
    assert_eq!(kinds, [&json!("join"), &json!("join")], "{entries:?}");
    let rooms = get(a, "/api/v1/rooms", Some(&alice)).await.json();
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 1, "{rooms}");

    // And the right bodies are taken.
    for call in [&patch, roles, mute, &read] {
        call.takes(a, if call.method == "PATCH" { 200 } else { 204 })
            .await;
    }
    edit.takes(a, 404).await; // seq 1 is a join entry: entry_not_found
    create.takes(a, 201).await;
    s.stop().await;
}

/// What is not a request of the call at all is still `bad_request`: a body that is not a
/// JSON object, or lacks a field the call needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapeless_bodies_are_still_bad_requests() {
    let s = start(&[]).await;
    let a = s.addr;
    let alice = user(a, "alice").await;
    let id = room(a, &alice, "lobby").await;
    let invites = format!("/api/v1/rooms/{id}/invites");
    let read = format!("/api/v1/rooms/{id}/read");
    for (path, body) in [
        ("/api/v1/register", json!({ "username": "x" })),
        ("/api/v1/register", json!(["newbie", PASSWORD])),
        ("/api/v1/login", json!("alice")),
        ("/api/v1/password", json!({ "old": 1 })),
        (invites.as_str(), json!({})),
        (invites.as_str(), json!(null)),
        (read.as_str(), json!({})),
        ("/api/v1/dms", json!([{ "username": "bob" }])),
    ] {
        let r = post(a, path, Some(&alice), body.clone()).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "bad_request"),
            "{path} {body}"
        );
    }
    s.stop().await;
}
