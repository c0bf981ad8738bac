//! `GET /api/v1/openapi.json` against a real server: the document is JSON, OpenAPI 3, well
//! formed (every `$ref` resolves, every path parameter is declared, every call documents a
//! success and its 401 when it needs a token), and every path it lists is answered by the
//! server with exactly the documented methods (others get 405 with that `Allow`).
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
                    let schema = &resp["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/Error", "{what} {code}");
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
