//! `GET /api/v1/openapi.json` against a real server: the document is JSON, OpenAPI 3, well
//! formed (every `$ref` resolves, every path parameter is declared, every call documents a
//! success and its 401 when it needs a token, every error answer names its codes), and
//! every path it lists is answered by the server with exactly the documented methods
//! (others get 405 with that `Allow`).
//! `src/api/mod.rs` checks the converse over the router's whole vocabulary, and
//! `tests/schemathesis.rs` checks the answers against the document.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

async fn document(s: &Server) -> Value {
    let r = get(s.addr, "/api/v1/openapi.json", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).expect("the document is JSON")
}

/// The value a `#/...` reference points at.
fn resolve<'d>(doc: &'d Value, reference: &str) -> Option<&'d Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` anywhere under `v`.
fn refs<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_and_well_formed() {
    let s = start(&[]).await;
    let doc = document(&s).await;
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50);
    for r in all {
        assert!(resolve(&doc, r).is_some(), "{r} does not resolve");
    }

    let mut ids = BTreeSet::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, ops) in paths {
        let params: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in ops.as_object().expect("operations") {
            let what = format!("{} {path}", method.to_uppercase());
            assert!(METHODS.contains(&method.to_uppercase().as_str()), "{what}");
            assert!(ids.insert(op["operationId"].as_str().expect("operationId")));
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(declared, params, "path parameters of {what}");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|c| c.starts_with('2') || c == "101"),
                "{what} has no success"
            );
            let public = op["security"].as_array().is_some_and(Vec::is_empty);
            assert_eq!(
                responses.contains_key("401"),
                !public || path == "/api/v1/login",
                "{what}: 401 iff it needs a token"
            );
            for (code, resp) in responses {
                let resp = match resp.get("$ref").and_then(Value::as_str) {
                    Some(r) => resolve(&doc, r).unwrap(),
                    None => resp,
                };
                assert!(resp["description"].is_string(), "{what} {code}");
                if code.starts_with('4') || (code.starts_with('5') && path != "/healthz") {
                    // The error shape, narrowed to the codes this answer may carry.
                    let schema = &resp["content"]["application/json"]["schema"]["allOf"];
                    assert_eq!(
                        schema[0]["$ref"], "#/components/schemas/Error",
                        "{what} {code}"
                    );
                    let codes = schema[1]["properties"]["error"]["properties"]["code"]["enum"]
                        .as_array()
                        .unwrap_or_else(|| panic!("{what} {code}: no error codes"));
                    assert!(!codes.is_empty(), "{what} {code}");
                }
            }
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn head_answers_the_document_without_a_body() {
    let s = start(&[]).await;
    let full = get(s.addr, "/api/v1/openapi.json", None).await;
    // Read to the end: the answer's head only, with the GET body's Content-Length.
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let req = "HEAD /api/v1/openapi.json HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("in time")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{head}"
    );
    let length = format!("content-length: {}\r\n", full.body.len());
    assert!(head.contains(&length), "{head}");
    assert!(body.is_empty(), "{body}");
    let r = request(s.addr, "POST", "/api/v1/openapi.json", None, None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    s.stop().await;
}

/// Every documented path, with its parameters filled in, is routed: its documented methods
/// are not refused as unknown, and every other method gets 405 with an `Allow` naming
/// exactly the documented ones.
#[tokio::test]
async fn every_documented_call_is_served_with_exactly_its_methods() {
    let s = start(&[]).await;
    let doc = document(&s).await;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 30, "{} paths", paths.len());
    for (template, ops) in paths {
        let path: Vec<&str> = template
            .split('/')
            .map(|seg| match seg {
                "{seq}" => "1",
                s if s.starts_with('{') => "nobody",
                s => s,
            })
            .collect();
        let path = path.join("/");
        let documented: BTreeSet<String> = ops
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        for method in METHODS {
            if path == "/api/v1/ws" && method == "GET" {
                // Served, but as the upgrade: without one, 426.
                let r = get(s.addr, &path, None).await;
                assert_eq!(r.status, 426);
                continue;
            }
            let r = request(s.addr, method, &path, None, None).await;
            let what = format!("{method} {path}: {} {:?}", r.status, r.json());
            if documented.contains(method) {
                assert_ne!(r.status, 405, "{what}");
                assert_ne!(r.code(), "not_found", "{what}");
                let code = r.status.to_string();
                assert!(
                    ops[method.to_lowercase()]["responses"].get(&code).is_some(),
                    "{what}: status not documented"
                );
            } else {
                assert_eq!(r.status, 405, "{what}");
                let allow: BTreeSet<String> = r
                    .header("allow")
                    .expect("Allow")
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .collect();
                assert_eq!(allow, documented, "{what}");
            }
        }
    }
    s.stop().await;
}

// What schemathesis found (scripts/schemathesis.sh), each fixed in the server.

/// `PATCH /api/v1/rooms/{id}` and `POST /api/v1/admin/invite-codes` took the body
/// `[null, null]` (serde reads a struct from an array of its fields) and answered 200 and
/// 201. A body that is not a JSON object is now `400 bad_request`, for every call.
#[tokio::test]
async fn a_body_that_is_an_array_is_refused() {
    let s = start(&["--admin", "ada"]).await;
    let t = register_admin(s.addr, &s.core, "ada").await;
    let id = room(s.addr, &t, "lobby").await;
    let array = serde_json::json!([null, null]);
    let path = format!("/api/v1/rooms/{id}");
    for (method, path) in [
        ("PATCH", path.as_str()),
        ("POST", "/api/v1/admin/invite-codes"),
        ("POST", "/api/v1/rooms"),
        ("POST", "/api/v1/blocks"),
    ] {
        let r = request(s.addr, method, path, Some(&t), Some(&array)).await;
        assert_eq!(r.status, 400, "{method} {path}: {:?}", r.json());
        assert_eq!(r.code(), "bad_request");
    }
    // An object still works, and no body at all still asks for an invite code's defaults.
    let r = request(
        s.addr,
        "PATCH",
        &path,
        Some(&t),
        Some(&serde_json::json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let r = request(s.addr, "POST", "/api/v1/admin/invite-codes", Some(&t), None).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    s.stop().await;
}

/// `{"capacity": 85731.0}`, `{"seq": 10100.0}`, `{"uses": 56.0}` and `{"seconds": 127.0}`
/// (whole numbers as Python's `json` writes floats, and integers for JSON Schema) were
/// refused with 400.
#[tokio::test]
async fn whole_numbers_written_as_floats_are_taken() {
    let s = start(&["--admin", "ada"]).await;
    let t = register_admin(s.addr, &s.core, "ada").await;
    let bo = user(s.addr, "bob").await;
    let r = post(
        s.addr,
        "/api/v1/rooms",
        Some(&t),
        serde_json::json!({ "name": "lobby", "capacity": 10.0 }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(r.json()["capacity"], 10);
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(join(s.addr, &bo, &id).await.status, 200);
    let read = format!("/api/v1/rooms/{id}/read");
    let r = post(s.addr, &read, Some(&t), serde_json::json!({ "seq": 2.0 })).await;
    assert_eq!(r.status, 204, "{:?}", r.json());
    let r = post(s.addr, &read, Some(&t), serde_json::json!({ "seq": 2.5 })).await;
    assert_eq!(r.status, 400);
    let mutes = format!("/api/v1/rooms/{id}/mutes");
    let body = serde_json::json!({ "username": "bob", "seconds": 127.0 });
    let r = post(s.addr, &mutes, Some(&t), body).await;
    assert_eq!(r.status, 204, "{:?}", r.json());
    let body = serde_json::json!({ "uses": 56.0, "expires_in": 60.0 });
    let r = post(s.addr, "/api/v1/admin/invite-codes", Some(&t), body).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(r.json()["uses"], 56);
    s.stop().await;
}
