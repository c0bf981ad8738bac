//! REST handlers for server administration (`/api/v1/admin/...`) and a user's own password
//! change (`/api/v1/password`). Thin, like the rest of `api`: the chat core checks who is an
//! admin and decides everything.

use std::net::IpAddr;

use serde_json::json;

use super::body::{malformed, Body};
use super::{auth, new_account};
use crate::chat::{ChatError, Core};
use crate::http::{Request, Response};

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
    // No body at all asks for the defaults, as `{}` does. Both fields' bad values are
    // `bad_request` (the contract's only code here), whatever their type.
    let b = Body::read_or_empty(req)?;
    let uses = b.uint("uses", malformed("uses", "a whole number"))?;
    let expires_in = b.uint("expires_in", malformed("expires_in", "a whole number"))?;
    let code = core.create_invite(&a.user, uses, expires_in).await?;
    Ok(Response::json(201, &code))
}

async fn create_user(core: &Core, req: &Request, from: IpAddr) -> Result<Response, ChatError> {
    let a = auth(core, req).await?;
    core.require_admin(&a.user)?;
    core.take_rest_budget(&a.user)?;
    let b = Body::read(req, &["username", "password"])?;
    let (username, password) = new_account(&b)?;
    let username = core.create_user(&a.user, username, password, from).await?;
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
    // An `old` of the wrong type cannot be the password (`invalid_credentials`, at once); a
    // `new` of the wrong type is an invalid new one.
    let b = Body::read(req, &["old", "new"])?;
    let old = b.need_text("old", ChatError::InvalidCredentials)?;
    let invalid = ChatError::InvalidPassword("the new password must be a string".into());
    let new = b.need_text("new", invalid)?;
    core.change_password(&a, old, new, from).await?;
    Ok(Response::empty(204))
}
