//! REST routing and handlers. Handlers are thin: they parse, call the chat core and shape the
//! answer; the core decides everything. The room calls live in `rooms`; administration
//! and password changes in `admin`; the browser client's files in `web`.

mod admin;
mod rooms;
mod web;

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde_json::json;

use crate::chat::{Auth, ChatError, Core};
use crate::config;
use crate::http::parse::percent_decode;
use crate::http::{Request, Response};
use crate::protocol::Credentials;

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
            ["me"] | ["users"] | ["users", _] | ["ws"] => GET,
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

fn body<T: DeserializeOwned>(req: &Request) -> Result<T, Response> {
    serde_json::from_slice(&req.body)
        .map_err(|e| Response::error(400, "bad_request", &format!("invalid JSON body: {e}"), None))
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn auth(core: &Core, req: &Request) -> Result<Auth, ChatError> {
    core.authenticate(bearer(req).ok_or(ChatError::Unauthorized)?)
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
        [""] => web::serve(req, "index.html"),
        ["web", name] => web::serve(req, name),
        ["api", "v1", "register"] => match body::<Credentials>(req) {
            Ok(c) => {
                let code = c.invite_code.as_deref();
                let username = core.register(&c.username, &c.password, code, from).await?;
                Response::json(201, &json!({ "username": username }))
            }
            Err(resp) => resp,
        },
        ["api", "v1", "login"] => match body::<Credentials>(req) {
            Ok(c) => {
                let (token, username) = core.login(&c.username, &c.password, from).await?;
                Response::json(200, &json!({ "token": token, "username": username }))
            }
            Err(resp) => resp,
        },
        ["api", "v1", "logout"] => {
            core.logout(&auth(core, req)?).await?;
            Response::empty(204)
        }
        ["api", "v1", "me"] => {
            let a = auth(core, req)?;
            Response::json(200, &core.me(&a.user))
        }
        ["api", "v1", "password"] => admin::change_password(core, req, from).await?,
        ["api", "v1", "admin", rest @ ..] if matches!(rest, ["invite-codes" | "users", ..]) => {
            admin::route(core, req, rest, from).await?
        }
        ["api", "v1", "users"] => {
            auth(core, req)?;
            let (q, after, limit) = match listing(req) {
                Ok(l) => l,
                Err(resp) => return Ok(resp),
            };
            Response::json(200, &core.users(&q, after.as_deref(), limit))
        }
        ["api", "v1", "users", name] => {
            auth(core, req)?;
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
    let extra = [
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
    Response::text(200, "text/plain; version=0.0.4", m.render(&extra))
}
