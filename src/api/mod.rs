//! REST routing and handlers. Handlers are thin: they parse, call the chat core and shape the
//! answer; the core decides everything. The room calls live in `rooms`; administration
//! and password changes in `admin`; the browser client's files in `web`.

mod admin;
mod body;
mod rooms;
mod web;

use std::net::IpAddr;

use serde_json::json;

use crate::chat::{Auth, ChatError, Core};
use crate::config;
use crate::http::parse::percent_decode;
use crate::http::{Request, Response};
use body::Body;

/// The OpenAPI 3 description of every REST call, served at `GET /api/v1/openapi.json`.
/// `tests/openapi.rs` checks it against the routes below, and schemathesis
/// (`scripts/schemathesis.sh`) against a running server.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// A core error as the contract's error response: its status, code, message and, for a
/// limit, `retry_after_ms`. The WebSocket handshake answers its refusals the same way.
impl From<ChatError> for Response {
    fn from(e: ChatError) -> Response {
        Response::error(e.status(), e.code(), &e.to_string(), e.retry_after_ms())
    }
}

/// Which methods a path accepts; `None` for an unknown path.
fn allowed(segments: &[&str]) -> Option<&'static [&'static str]> {
    const GET: &[&str] = &["GET"];
    const POST: &[&str] = &["POST"];
    Some(match segments {
        ["healthz"] | ["metrics"] => GET,
        [""] => GET,
        ["web", name] if web::exists(name) => GET,
        ["api", "v1", rest @ ..] => match rest {
            ["register"] | ["login"] | ["logout"] | ["password"] => POST,
            ["admin", "invite-codes"] | ["admin", "users"] => POST,
            ["admin", "users", _, "disable"] | ["admin", "users", _, "enable"] => POST,
            ["me"] | ["users"] | ["users", _] | ["ws"] | ["openapi.json"] => GET,
            _ => return rooms::allowed(rest),
        },
        _ => return None,
    })
}

/// Answers `req`; `from` is the client's address, for the per-address limits.
pub(crate) async fn handle(core: &Core, req: &Request, from: IpAddr) -> Response {
    let decoded: Option<Vec<String>> = req.path.split('/').skip(1).map(percent_decode).collect();
    let Some(decoded) = decoded else {
        return Response::error(400, "bad_request", "malformed path", None);
    };
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let Some(methods) = allowed(&segments) else {
        return Response::error(404, "not_found", "no such endpoint", None);
    };
    if !methods.contains(&req.method.as_str()) {
        return Response::error(405, "method_not_allowed", "method not allowed here", None)
            .with_header("Allow", methods.join(", "));
    }
    match route(core, req, &segments, from).await {
        Ok(resp) => resp,
        Err(e) => e.into(),
    }
}

/// The `username` and `password` of a register or admin-created account: a name or password
/// of the wrong type is an invalid one.
fn new_account(b: &Body) -> Result<(&str, &str), ChatError> {
    let password = ChatError::InvalidPassword("the password must be a string".into());
    Ok((
        b.need_text("username", ChatError::InvalidUsername)?,
        b.need_text("password", password)?,
    ))
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn auth(core: &Core, req: &Request) -> Result<Auth, ChatError> {
    core.authenticate_current(bearer(req).ok_or(ChatError::Unauthorized)?)
        .await
}

/// Parses an optional numeric query parameter.
fn number(req: &Request, key: &str) -> Result<Option<u64>, Response> {
    match req.query_param(key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Response::error(
                400,
                "bad_request",
                &format!("{key} must be a whole number"),
                None,
            )
        }),
    }
}

/// The `q`, `after` and `limit` of a listing; an empty `after` is no cursor.
fn listing(req: &Request) -> Result<(String, Option<String>, usize), Response> {
    let limit = number(req, "limit")?.map_or(config::LIST_PAGE_DEFAULT, |l| l as usize);
    let after = req.query_param("after").filter(|a| !a.is_empty());
    Ok((req.query_param("q").unwrap_or_default(), after, limit))
}

async fn route(
    core: &Core,
    req: &Request,
    segments: &[&str],
    from: IpAddr,
) -> Result<Response, ChatError> {
    let resp = match segments {
        ["healthz"] => match core.store().failed() {
            None => Response::json(200, &json!({ "status": "ok" })),
            Some(why) => Response::json(503, &json!({ "status": "failing", "reason": why })),
        },
        ["metrics"] => metrics(core),
        ["api", "v1", "openapi.json"] => {
            Response::text(200, "application/json", OPENAPI.to_owned())
        }
        [""] => web::serve(req, "index.html"),
        ["web", name] => web::serve(req, name),
        ["api", "v1", "register"] => {
            let b = Body::read(req, &["username", "password"])?;
            let (username, password) = new_account(&b)?;
            // A code that is not a string is refused (`invite_required`, its one code),
            // whatever `--registration` says: a string that is no live code is ignored where
            // none is needed, but a code of the wrong type is a malformed body.
            let code = b.text("invite_code", ChatError::InviteRequired)?;
            let username = core.register(username, password, code, from).await?;
            Response::json(201, &json!({ "username": username }))
        }
        ["api", "v1", "login"] => {
            // A name or password of the wrong type cannot be anyone's: answered at once, as a
            // name no account can have is.
            let b = Body::read(req, &["username", "password"])?;
            let username = b.need_text("username", ChatError::InvalidCredentials)?;
            let password = b.need_text("password", ChatError::InvalidCredentials)?;
            let (token, username) = core.login(username, password, from).await?;
            Response::json(200, &json!({ "token": token, "username": username }))
        }
        ["api", "v1", "logout"] => {
            core.logout(&auth(core, req).await?).await?;
            Response::empty(204)
        }
        ["api", "v1", "me"] => {
            let a = auth(core, req).await?;
            Response::json(200, &core.me(&a.user))
        }
        ["api", "v1", "password"] => admin::change_password(core, req, from).await?,
        ["api", "v1", "admin", rest @ ..] if matches!(rest, ["invite-codes" | "users", ..]) => {
            admin::route(core, req, rest, from).await?
        }
        ["api", "v1", "users"] => {
            auth(core, req).await?;
            let (q, after, limit) = match listing(req) {
                Ok(l) => l,
                Err(resp) => return Ok(resp),
            };
            Response::json(200, &core.users(&q, after.as_deref(), limit))
        }
        ["api", "v1", "users", name] => {
            auth(core, req).await?;
            Response::json(200, &core.user_info(name)?)
        }
        ["api", "v1", rest @ ..] => rooms::route(core, req, rest).await?,
        _ => Response::error(404, "not_found", "no such endpoint", None),
    };
    Ok(resp)
}

fn metrics(core: &Core) -> Response {
    let (bytes, fsyncs) = core.store().stats();
    let m = &core.metrics;
    m.journal_bytes_total
        .store(bytes, std::sync::atomic::Ordering::Relaxed);
    m.journal_fsyncs_total
        .store(fsyncs, std::sync::atomic::Ordering::Relaxed);
    let mut extra = vec![
        (
            "online_users",
            "Users online now.",
            core.online_users() as u64,
        ),
        ("rooms", "Rooms that exist.", core.room_count() as u64),
        (
            "hashes_waiting",
            "Logins and registrations waiting for a hashing thread.",
            core.hashes_waiting() as u64,
        ),
        (
            "journal_snapshots",
            "Snapshots written since start (compactions).",
            core.store().snapshots(),
        ),
    ];
    if let Some(position) = core.cluster_position() {
        extra.push((
            "cluster_applied_seq",
            "Cluster mode: the stream sequence of the last change applied on this node.",
            position,
        ));
        extra.push((
            "cluster_nats_connected",
            "Cluster mode: 1 while this node reaches NATS, else 0.",
            u64::from(core.store().failed().is_none()),
        ));
    }
    Response::text(200, "text/plain; version=0.0.4", m.render(&extra))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::{allowed, OPENAPI};

    /// The literal words of the route tables: the string literals in both `allowed`
    /// functions, so a route added with a new word is enumerated too.
    fn route_words() -> BTreeSet<&'static str> {
        let mut words = BTreeSet::new();
        for src in [include_str!("mod.rs"), include_str!("rooms.rs")] {
            let start = src.find("fn allowed(").expect("an allowed function");
            let body = &src[start..];
            let body = &body[..body.find("\n}\n").expect("its end")];
            for (i, piece) in body.split('"').enumerate() {
                let word = i % 2 == 1
                    && !piece.is_empty()
                    && piece
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b"._-".contains(&b));
                if word {
                    words.insert(piece);
                }
            }
        }
        words
    }

    /// The document's path templates, split into segments, with their methods.
    fn documented() -> Vec<(Vec<String>, BTreeSet<String>)> {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .map(|(path, ops)| {
                let segments = path.split('/').skip(1).map(str::to_owned).collect();
                let methods = ops
                    .as_object()
                    .expect("operations")
                    .keys()
                    .map(|m| m.to_ascii_uppercase())
                    .collect();
                (segments, methods)
            })
            .collect()
    }

    /// The methods the document gives `segments`: those of the matching template with the
    /// fewest parameters.
    fn doc_methods<'d>(
        doc: &'d [(Vec<String>, BTreeSet<String>)],
        segments: &[&str],
    ) -> Option<&'d BTreeSet<String>> {
        doc.iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template
                        .iter()
                        .zip(segments)
                        .all(|(t, s)| t.starts_with('{') || t == s)
            })
            .min_by_key(|(template, _)| template.iter().filter(|t| t.starts_with('{')).count())
            .map(|(_, methods)| methods)
    }

    /// Every path the router answers, over every combination of its words and a parameter,
    /// is in the OpenAPI document with exactly the methods the router takes.
    #[test]
    fn every_route_is_documented() {
        let doc = documented();
        let mut vocab: Vec<&str> = route_words().into_iter().collect();
        vocab.push("x");
        assert!(
            vocab.contains(&"rooms") && vocab.contains(&"healthz"),
            "{vocab:?}"
        );
        let mut checked = 0;
        let mut check = |segments: &[&str]| {
            let Some(methods) = allowed(segments) else {
                return;
            };
            checked += 1;
            let path = format!("/{}", segments.join("/"));
            let served: BTreeSet<String> = methods.iter().map(|m| m.to_string()).collect();
            match doc_methods(&doc, segments) {
                Some(documented) => assert_eq!(&served, documented, "methods of {path}"),
                None => panic!("{path} ({served:?}) is not in src/api/openapi.json"),
            }
        };
        for a in &vocab {
            check(&[a]);
        }
        let prefix = ["api", "v1"];
        for a in &vocab {
            check(&[prefix[0], prefix[1], a]);
            for b in &vocab {
                check(&[prefix[0], prefix[1], a, b]);
                for c in &vocab {
                    check(&[prefix[0], prefix[1], a, b, c]);
                    for d in &vocab {
                        check(&[prefix[0], prefix[1], a, b, c, d]);
                    }
                }
            }
        }
        assert!(checked > 100, "only {checked} routes found");
        // And the other way: every documented template is routed, with its methods.
        for (template, methods) in &doc {
            let segments: Vec<&str> = template
                .iter()
                .map(|s| if s.starts_with('{') { "x" } else { s.as_str() })
                .collect();
            let served: BTreeSet<String> = allowed(&segments)
                .unwrap_or_else(|| panic!("{template:?} is documented but not routed"))
                .iter()
                .map(|m| m.to_string())
                .collect();
            assert_eq!(&served, methods, "methods of {template:?}");
        }
    }
}
