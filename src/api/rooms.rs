//! The room calls: creating, listing, joining and leaving rooms, their history, governing
//! them (invitations, kicks, bans, mutes, roles, updates, deletion), and conversations
//! (DMs, blocks, read markers, edits, deletions). Each change parses into the
//! [`Command`] its slash command or frame also makes, is submitted to the core, and the
//! reply is shaped into the answer; reads call the core's views.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::body::{malformed, Body};
use super::{auth, listing, number};
use crate::chat::moderation::Seconds;
use crate::chat::{Caller, ChatError, Command, Core, HistoryPage, Reply};
use crate::config;
use crate::http::response::Pieces;
use crate::http::{Request, Response};
use crate::metrics::Metrics;

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
    let submit = |cmd: Command| core.submit(Caller::user(user), cmd);
    let room =
        |reply: Reply| -> Result<Response, ChatError> { Ok(Response::json(200, &reply.room()?)) };
    let s = |t: &str| t.to_string();
    let resp = match (method, rest) {
        ("POST", ["rooms"]) => {
            // A missing name is an invalid one (the empty name).
            let b = read(&[])?;
            let cmd = Command::CreateRoom {
                name: b
                    .text("name", ChatError::InvalidRoomName)?
                    .unwrap_or_default()
                    .to_string(),
                capacity: b.int("capacity", ChatError::InvalidCapacity)?,
                visibility: b.text("visibility", ChatError::InvalidVisibility)?.map(s),
                topic: b.text("topic", ChatError::InvalidTopic)?.map(s),
            };
            Response::json(201, &submit(cmd).await?.room()?)
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
            let cmd = Command::Update {
                room: s(id),
                name: b.value("name").cloned(),
                topic: b.value("topic").cloned(),
                visibility: b.value("visibility").cloned(),
            };
            room(submit(cmd).await?)?
        }
        ("DELETE", ["rooms", id]) => {
            let admin = false;
            submit(Command::DeleteRoom { room: s(id), admin }).await?;
            Response::empty(204)
        }
        ("DELETE", ["admin", "rooms", id]) => {
            if !core.is_admin(user) {
                return Err(ChatError::Forbidden);
            }
            let admin = true;
            submit(Command::DeleteRoom { room: s(id), admin }).await?;
            Response::empty(204)
        }
        (_, ["rooms", id]) => Response::json(200, &core.room_detail(user, id)?),
        (_, ["rooms", id, "join"]) => room(submit(Command::Join { room: s(id) }).await?)?,
        (_, ["rooms", id, "leave"]) => {
            submit(Command::Leave { room: s(id) }).await?;
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
        ("DELETE", ["rooms", id, kind @ ("bans" | "mutes"), name]) => {
            let cmd = Command::Lift {
                room: s(id),
                target: s(name),
                unban: *kind == "bans",
            };
            submit(cmd).await?;
            Response::empty(204)
        }
        (_, ["dms"]) => {
            let b = read(&["username"])?;
            let target = s(username(&b)?);
            room(submit(Command::OpenDm { target }).await?)?
        }
        ("GET", ["blocks"]) => Response::json(200, &json!({ "blocks": core.blocked_users(user) })),
        ("POST", ["blocks"]) => {
            let b = read(&["username"])?;
            let target = s(username(&b)?);
            submit(Command::Block {
                target,
                blocked: true,
            })
            .await?;
            Response::empty(204)
        }
        (_, ["blocks", name]) => {
            let target = s(name);
            submit(Command::Block {
                target,
                blocked: false,
            })
            .await?;
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
            let (room, nonce) = (s(id), None);
            if method == "PATCH" {
                // A text of the wrong type holds no message.
                let b = read(&["text"])?;
                let text = Some(s(b.need_text("text", ChatError::EmptyMessage)?));
                let cmd = Command::Edit {
                    room,
                    seq,
                    text,
                    nonce,
                };
                Response::json(200, &submit(cmd).await?.entry()?)
            } else {
                let text = None;
                let cmd = Command::Edit {
                    room,
                    seq,
                    text,
                    nonce,
                };
                submit(cmd).await?;
                Response::empty(204)
            }
        }
        (_, ["rooms", id, action]) => {
            let b = read(&["username"])?;
            let (room, target) = (s(id), s(username(&b)?));
            // Like a reason too long, a reason of the wrong type is `bad_request`.
            let reason = b.text("reason", malformed("reason", "a string"));
            let cmd = match *action {
                "invites" => Command::Invite { room, target },
                "kick" | "bans" => Command::Remove {
                    room,
                    target,
                    reason: reason?.map(s),
                    ban: *action == "bans",
                },
                // The core checks `seconds` and `role` (type and value), after the room's
                // access: any type but a whole number or a role's name is invalid.
                "mutes" => Command::Mute {
                    room,
                    target,
                    seconds: Seconds::Json(b.value("seconds")).get().ok(),
                },
                _ => Command::Role {
                    room,
                    target,
                    role: b.value("role").and_then(Value::as_str).map(s),
                },
            };
            submit(cmd).await?;
            Response::empty(204)
        }
        _ => Response::error(404, "not_found", "no such endpoint", None),
    };
    Ok(resp)
}
