//! REST handlers for server administration (`/api/v1/admin/...`) and a user's own password
//! change (`/api/v1/password`). Thin, like the rest of `api`: the chat core checks who is an
//! admin and decides everything.

use std::net::IpAddr;

use serde_json::json;

use super::{auth, body};
use crate::chat::{ChatError, Core};
use crate::http::{Request, Response};
use crate::protocol::{Credentials, NewInviteCode, PasswordChange};

/// `POST /api/v1/admin/invite-codes` and `/api/v1/admin/users...`; `rest` is the path after
/// `admin`.
pub(super) async fn route(
    core: &Core,
    req: &Request,
    rest: &[&str],
    from: IpAddr,
) -> Result<Response, ChatError> {
    match rest {
        ["invite-codes"] => invite_code(core, req).await,
        ["users"] => create_user(core, req, from).await,
        ["users", name, "disable"] => set_disabled(core, req, name, true).await,
        ["users", name, "enable"] => set_disabled(core, req, name, false).await,
        _ => Ok(Response::error(404, "not_found", "no such endpoint", None)),
    }
}

async fn invite_code(core: &Core, req: &Request) -> Result<Response, ChatError> {
    let a = auth(core, req).await?;
    core.require_admin(&a.user)?;
    core.take_rest_budget(&a.user)?;
    // No body at all asks for the defaults, as `{}` does.
    let wanted = if req.body.iter().all(u8::is_ascii_whitespace) {
        NewInviteCode::default()
    } else {
        match body::<NewInviteCode>(req) {
            Ok(w) => w,
            Err(resp) => return Ok(resp),
        }
    };
    let code = core
        .create_invite(&a.user, wanted.uses, wanted.expires_in)
        .await?;
    Ok(Response::json(201, &code))
}

async fn create_user(core: &Core, req: &Request, from: IpAddr) -> Result<Response, ChatError> {
    let a = auth(core, req).await?;
    core.require_admin(&a.user)?;
    core.take_rest_budget(&a.user)?;
    let c = match body::<Credentials>(req) {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let username = core
        .create_user(&a.user, &c.username, &c.password, from)
        .await?;
    Ok(Response::json(201, &json!({ "username": username })))
}

async fn set_disabled(
    core: &Core,
    req: &Request,
    name: &str,
    disabled: bool,
) -> Result<Response, ChatError> {
    let a = auth(core, req).await?;
    core.require_admin(&a.user)?;
    core.take_rest_budget(&a.user)?;
    core.set_disabled(&a.user, name, disabled).await?;
    Ok(Response::empty(204))
}

/// `POST /api/v1/password {"old","new"}`.
pub(super) async fn change_password(
    core: &Core,
    req: &Request,
    from: IpAddr,
) -> Result<Response, ChatError> {
    let a = auth(core, req).await?;
    core.take_rest_budget(&a.user)?;
    let p = match body::<PasswordChange>(req) {
        Ok(p) => p,
        Err(resp) => return Ok(resp),
    };
    core.change_password(&a, &p.old, &p.new, from).await?;
    Ok(Response::empty(204))
}
