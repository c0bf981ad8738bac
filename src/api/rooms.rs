//! The room calls: creating, listing, joining and leaving rooms, their history, governing
//! them (invitations, kicks, bans, mutes, roles, updates, deletion), and conversations
//! (DMs, blocks, read markers, edits, deletions). Each one parses, calls the one core
//! method its slash command or frame also calls, and shapes the answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::body::{malformed, Body};
use super::{auth, listing, number};
use crate::chat::moderation::Seconds;
use crate::chat::{ChatError, Core, HistoryPage, NewRoomSpec};
use crate::config;
use crate::http::response::Pieces;
use crate::http::{Request, Response};
use crate::metrics::Metrics;
use crate::protocol::{EntryKind, RoomPatch};

/// Which methods a room path accepts (`rest` follows `/api/v1/`); `None` if not a room
/// path.
pub(super) fn allowed(rest: &[&str]) -> Option<&'static [&'static str]> {
    const GET: &[&str] = &["GET"];
    const POST: &[&str] = &["POST"];
    const DELETE: &[&str] = &["DELETE"];
    Some(match rest {
        ["rooms"] | ["rooms", _, "bans"] => &["GET", "POST"],
        ["rooms", _] => &["GET", "PATCH", "DELETE"],
        ["rooms", _, "messages"] => GET,
        ["rooms", _, "join" | "leave" | "invites" | "kick" | "mutes" | "roles" | "read"] => POST,
        ["rooms", _, "bans" | "mutes", _] | ["admin", "rooms", _] | ["blocks", _] => DELETE,
        ["rooms", _, "messages", _] => &["PATCH", "DELETE"],
        ["dms"] => POST,
        ["blocks"] => &["GET", "POST"],
        _ => return None,
    })
}

/// A page of history as a body written in pieces; counts itself abandoned when its writing
/// began but did not reach the end (the client went away).
struct PageBody {
    page: HistoryPage,
    metrics: Arc<Metrics>,
    /// Pieces handed out: 0 before any, `usize::MAX` once the last one was.
    written: AtomicUsize,
}

impl Pieces for PageBody {
    fn len(&self) -> usize {
        self.page.len()
    }

    fn write_piece(&self, i: usize, out: &mut Vec<u8>) -> bool {
        let more = self.page.write_piece(i, out);
        let mark = if more { i + 1 } else { usize::MAX };
        self.written.store(mark, Ordering::Relaxed);
        more
    }
}

impl Drop for PageBody {
    fn drop(&mut self) {
        let written = *self.written.get_mut();
        if written != 0 && written != usize::MAX {
            Metrics::add(&self.metrics.history_abandoned_total, 1);
        }
    }
}

/// The `username` a call acts on: one of the wrong type is no username.
fn username(b: &Body) -> Result<&str, ChatError> {
    b.need_text("username", ChatError::InvalidUsername)
}

/// Answers a room call (`rest` follows `/api/v1/`, and `allowed` accepted it).
pub(super) async fn route(
    core: &Core,
    req: &Request,
    rest: &[&str],
) -> Result<Response, ChatError> {
    let a = auth(core, req).await?;
    let user = &a.user;
    let method = req.method.as_str();
    if method != "GET" {
        core.take_rest_budget(user)?;
    }
    // A body that is not a JSON object with the fields the call needs is 400 `bad_request`;
    // a field of the wrong type gets the code a bad value of it gets (`body`).
    let read = |required: &[&str]| Body::read(req, required);
    let resp = match (method, rest) {
        ("POST", ["rooms"]) => {
            // A missing name is an invalid one (the empty name).
            let b = read(&[])?;
            let spec = NewRoomSpec {
                name: b
                    .text("name", ChatError::InvalidRoomName)?
                    .unwrap_or_default(),
                capacity: b.int("capacity", ChatError::InvalidCapacity)?,
                visibility: b.text("visibility", ChatError::InvalidVisibility)?,
                topic: b.text("topic", ChatError::InvalidTopic)?,
            };
            Response::json(201, &core.create_room(user, &spec).await?)
        }
        (_, ["rooms"]) => {
            let (q, after, limit) = match listing(req) {
                Ok(l) => l,
                Err(resp) => return Ok(resp),
            };
            Response::json(200, &core.rooms(user, &q, after.as_deref(), limit)?)
        }
        ("PATCH", ["rooms", id]) => {
            // The core checks each field's type and value, after the room's access.
            let b = read(&[])?;
            let patch = RoomPatch {
                name: b.value("name").cloned(),
                topic: b.value("topic").cloned(),
                visibility: b.value("visibility").cloned(),
            };
            Response::json(200, &core.update_room(user, id, &patch).await?)
        }
        ("DELETE", ["rooms", id]) => {
            core.delete_room(user, id, false).await?;
            Response::empty(204)
        }
        ("DELETE", ["admin", "rooms", id]) => {
            if !core.is_admin(user) {
                return Err(ChatError::Forbidden);
            }
            core.delete_room(user, id, true).await?;
            Response::empty(204)
        }
        (_, ["rooms", id]) => Response::json(200, &core.room_detail(user, id)?),
        (_, ["rooms", id, "join"]) => Response::json(200, &core.join_room(user, id).await?),
        (_, ["rooms", id, "leave"]) => {
            core.leave_room(user, id).await?;
            Response::empty(204)
        }
        (_, ["rooms", id, "messages"]) => {
            let (before, limit) = match (number(req, "before"), number(req, "limit")) {
                (Ok(b), Ok(l)) => (b, l),
                (Err(resp), _) | (_, Err(resp)) => return Ok(resp),
            };
            let limit = limit.map_or(config::HISTORY_PAGE_DEFAULT, |l| {
                (l as usize).clamp(1, config::HISTORY_PAGE_MAX)
            });
            let page = core.history_page(user, id, before, limit)?;
            let body = PageBody {
                page,
                metrics: core.metrics.clone(),
                written: AtomicUsize::new(0),
            };
            Response::json_pieces(200, Box::new(body))
        }
        ("GET", ["rooms", id, "bans"]) => {
            Response::json(200, &json!({ "bans": core.bans(user, id)? }))
        }
        ("DELETE", ["rooms", id, "bans", name]) => {
            core.lift(user, id, name, EntryKind::Unban).await?;
            Response::empty(204)
        }
        ("DELETE", ["rooms", id, "mutes", name]) => {
            core.lift(user, id, name, EntryKind::Unmute).await?;
            Response::empty(204)
        }
        (_, ["dms"]) => {
            let b = read(&["username"])?;
            Response::json(200, &core.open_dm(user, username(&b)?).await?)
        }
        ("GET", ["blocks"]) => Response::json(200, &json!({ "blocks": core.blocked_users(user) })),
        ("POST", ["blocks"]) => {
            let b = read(&["username"])?;
            core.set_block(user, username(&b)?, true).await?;
            Response::empty(204)
        }
        (_, ["blocks", name]) => {
            core.set_block(user, name, false).await?;
            Response::empty(204)
        }
        (_, ["rooms", id, "read"]) => {
            let b = read(&["seq"])?;
            let seq = b.uint("seq", malformed("seq", "a whole number"))?;
            let seq = seq.ok_or_else(|| malformed("seq", "a whole number"))?;
            core.mark_read(user, id, seq, None)?;
            Response::empty(204)
        }
        (method, ["rooms", id, "messages", seq]) => {
            let Ok(seq) = seq.parse::<u64>() else {
                return Err(ChatError::EntryNotFound);
            };
            // An edit or deletion is an entry: it draws on the message budget, as over
            // WebSocket (the room's budget is taken in the core).
            core.take_message_budget(user)?;
            if method == "PATCH" {
                // A text of the wrong type holds no message.
                let b = read(&["text"])?;
                let text = b.need_text("text", ChatError::EmptyMessage)?;
                Response::json(200, &core.edit(user, id, seq, text, None).await?)
            } else {
                core.delete_message(user, id, seq, None).await?;
                Response::empty(204)
            }
        }
        (_, ["rooms", id, action]) => {
            let b = read(&["username"])?;
            let name = username(&b)?;
            // Like a reason too long, a reason of the wrong type is `bad_request`.
            let reason = b.text("reason", malformed("reason", "a string"));
            match *action {
                "invites" => core.invite(user, id, name).await?,
                "kick" => core.remove_member(user, id, name, reason?, false).await?,
                "bans" => core.remove_member(user, id, name, reason?, true).await?,
                // The core checks `seconds` and `role` (type and value), after the room's
                // access: any type but a whole number or a role's name is invalid.
                "mutes" => {
                    let seconds = Seconds::Json(b.value("seconds"));
                    core.mute(user, id, name, seconds).await?
                }
                _ => {
                    let role = b.value("role").and_then(Value::as_str);
                    core.set_role(user, id, name, role).await?
                }
            }
            Response::empty(204)
        }
        _ => Response::error(404, "not_found", "no such endpoint", None),
    };
    Ok(resp)
}
