//! Slash commands: a door. Each parses into the same [`Command`] as its REST call, submits it,
//! and returns the same data.

use std::sync::Arc;

use serde_json::{json, Value};

use super::moderation::Seconds;
use super::{Caller, ChatError, Command, Core, User};
use crate::config;

/// What a command answered: the command name, text for humans, and the REST-shaped data.
pub(crate) struct Reply {
    pub(crate) command: &'static str,
    pub(crate) text: String,
    pub(crate) data: Value,
}

pub(crate) const HELP: &[(&str, &str)] = &[
    ("/create NAME", "create a room and join it"),
    ("/join ID", "join a room"),
    ("/leave [ID]", "leave a room (default: this one)"),
    (
        "/rooms [TEXT]",
        "list rooms (first 100; TEXT filters names)",
    ),
    ("/who [ID]", "list a room's members (default: this one)"),
    (
        "/users [TEXT]",
        "list users with their presence (first 100)",
    ),
    ("/me", "who you are and your rooms"),
    ("/me TEXT", "say TEXT as an action (* you TEXT)"),
    (
        "/msg USER TEXT",
        "send TEXT to USER in your direct-message room",
    ),
    ("/invite USER", "invite a user to this room"),
    ("/kick USER [REASON]", "remove a member (moderators)"),
    (
        "/ban USER [REASON]",
        "ban a user from this room (moderators)",
    ),
    ("/unban USER", "lift a ban (moderators)"),
    (
        "/mute USER SECONDS",
        "mute a member for a while (moderators)",
    ),
    ("/unmute USER", "lift a mute (moderators)"),
    ("/op USER", "make a member a moderator (owner)"),
    ("/deop USER", "make a moderator a plain member (owner)"),
    (
        "/topic [TEXT]",
        "set this room's topic, or show it (moderators set)",
    ),
    (
        "/visibility public|private",
        "who may find and join this room (owner)",
    ),
    ("/help", "this list"),
    ("//text", "send text that starts with /"),
];

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Runs a command line such as `/join abc`. `room` is the `send` frame's room, the default
/// for commands that take an optional room.
pub(crate) async fn run(
    core: &Core,
    user: &Arc<User>,
    room: &str,
    line: &str,
) -> Result<Reply, ChatError> {
    let line = line.trim();
    let (name, arg) = match line.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (line, ""),
    };
    let or_default = |arg: &str| {
        if arg.is_empty() {
            room.to_string()
        } else {
            arg.to_string()
        }
    };
    match name {
        "/create" => {
            if arg.is_empty() {
                return Err(ChatError::BadCommand("/create NAME".into()));
            }
            let cmd = Command::CreateRoom {
                name: arg.to_string(),
                capacity: None,
                visibility: None,
                topic: None,
            };
            let r = core.submit(Caller::user(user), cmd).await?.room()?;
            let text = format!("created room {} ({}) and joined it", r.name, r.id);
            Ok(Reply {
                command: "create",
                text,
                data: to_value(&r),
            })
        }
        "/join" => {
            if arg.is_empty() {
                return Err(ChatError::BadCommand("/join ID".into()));
            }
            let cmd = Command::Join {
                room: arg.to_string(),
            };
            let r = core.submit(Caller::user(user), cmd).await?.room()?;
            let text = format!("joined {} ({}), {} members", r.name, r.id, r.members);
            Ok(Reply {
                command: "join",
                text,
                data: to_value(&r),
            })
        }
        "/leave" => {
            let id = or_default(arg);
            if id.is_empty() {
                return Err(ChatError::BadCommand("/leave ID".into()));
            }
            let cmd = Command::Leave { room: id.clone() };
            core.submit(Caller::user(user), cmd).await?;
            Ok(Reply {
                command: "leave",
                text: format!("left {id}"),
                data: Value::Null,
            })
        }
        "/rooms" => {
            let list = core.rooms(user, arg, None, config::LIST_PAGE_DEFAULT)?;
            let text = list
                .rooms
                .iter()
                .map(|r| {
                    let private = if r.visibility == crate::protocol::Visibility::Private {
                        ", private"
                    } else {
                        ""
                    };
                    format!(
                        "{} ({}): {}/{} members{private}",
                        r.name, r.id, r.members, r.capacity
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            let text = match (text.is_empty(), &list.next) {
                (true, _) => "no rooms yet".into(),
                (false, None) => text,
                (false, Some(_)) => format!("{text}\n(first {} shown)", list.rooms.len()),
            };
            Ok(Reply {
                command: "rooms",
                text,
                data: to_value(&list),
            })
        }
        "/who" => {
            let id = or_default(arg);
            if id.is_empty() {
                return Err(ChatError::BadCommand("/who ID".into()));
            }
            let d = core.room_detail(user, &id)?;
            let names: Vec<String> = d
                .member_list
                .iter()
                .map(|m| format!("{}{}", m.username, if m.online { " (online)" } else { "" }))
                .collect();
            let text = format!("{} ({}): {}", d.room.name, d.room.id, names.join(", "));
            Ok(Reply {
                command: "who",
                text,
                data: to_value(&d),
            })
        }
        "/users" => {
            let list = core.users(arg, None, config::LIST_PAGE_DEFAULT);
            let text = list
                .users
                .iter()
                .map(|u| {
                    format!(
                        "{} {}",
                        u.username,
                        if u.online { "online" } else { "offline" }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            let text = match &list.next {
                None => text,
                Some(_) => format!("{text}\n(first {} shown)", list.users.len()),
            };
            Ok(Reply {
                command: "users",
                text,
                data: to_value(&list),
            })
        }
        "/me" => {
            let data = core.me(user);
            let rooms = data["rooms"].as_array().map_or(0, Vec::len);
            let text = format!("you are {}, in {rooms} rooms", user.name);
            Ok(Reply {
                command: "me",
                text,
                data,
            })
        }
        "/msg" => {
            let (target, text) = match arg.split_once(char::is_whitespace) {
                Some((t, x)) if !x.trim().is_empty() => (t, x.trim()),
                _ => return Err(ChatError::BadCommand("/msg USER TEXT".into())),
            };
            let text = core.clean_message(text)?;
            let cmd = Command::OpenDm {
                target: target.to_string(),
            };
            let dm = core.submit(Caller::user(user), cmd).await?.room()?;
            let cmd = Command::Post {
                room: dm.id.clone(),
                text,
                action: false,
                nonce: None,
            };
            core.submit(Caller::user(user), cmd).await?;
            Ok(Reply {
                command: "msg",
                text: format!("sent to {target} ({})", dm.id),
                data: to_value(&dm),
            })
        }
        "/invite" | "/kick" | "/ban" | "/unban" | "/mute" | "/unmute" | "/op" | "/deop" => {
            moderate(core, user, room, name, arg).await
        }
        "/topic" => {
            let r = if arg.is_empty() {
                core.room_detail(user, room)?.room
            } else {
                let cmd = Command::Update {
                    room: room.to_string(),
                    name: None,
                    topic: Some(Value::String(arg.to_string())),
                    visibility: None,
                };
                core.submit(Caller::user(user), cmd).await?.room()?
            };
            let text = match r.topic.as_str() {
                "" => format!("{} has no topic", r.name),
                t => format!("topic of {}: {t}", r.name),
            };
            Ok(Reply {
                command: "topic",
                text,
                data: to_value(&r),
            })
        }
        "/visibility" => {
            if arg.is_empty() {
                return Err(ChatError::BadCommand("/visibility public|private".into()));
            }
            let cmd = Command::Update {
                room: room.to_string(),
                name: None,
                topic: None,
                visibility: Some(Value::String(arg.to_string())),
            };
            let r = core.submit(Caller::user(user), cmd).await?.room()?;
            Ok(Reply {
                command: "visibility",
                text: format!("{} is {}", r.name, r.visibility.as_str()),
                data: to_value(&r),
            })
        }
        "/help" => {
            let text = HELP
                .iter()
                .map(|(c, h)| format!("{c:<14} {h}"))
                .collect::<Vec<_>>()
                .join("\n");
            let commands: Vec<Value> = HELP
                .iter()
                .map(|(c, h)| json!({ "command": c, "help": h }))
                .collect();
            Ok(Reply {
                command: "help",
                text,
                data: json!({ "commands": commands }),
            })
        }
        other => Err(ChatError::UnknownCommand(other.to_string())),
    }
}

/// The moderation commands that name a user and answer `null` (their REST call's 204),
/// acting on the `send` frame's room.
async fn moderate(
    core: &Core,
    user: &Arc<User>,
    room: &str,
    name: &str,
    arg: &str,
) -> Result<Reply, ChatError> {
    let command = &name[1..];
    let usage = HELP
        .iter()
        .find(|(c, _)| c.split(' ').next() == Some(name))
        .map_or(name, |(c, _)| c);
    let (target, rest) = match arg.split_once(char::is_whitespace) {
        Some((t, r)) => (t, r.trim()),
        None => (arg, ""),
    };
    if target.is_empty() {
        return Err(ChatError::BadCommand(usage.to_string()));
    }
    let reason = Some(rest).filter(|r| !r.is_empty()).map(str::to_string);
    let (room, target) = (room.to_string(), target.to_string());
    let (cmd, text) = match name {
        "/invite" => {
            let text = format!("invited {target}");
            (Command::Invite { room, target }, text)
        }
        "/kick" | "/ban" => {
            let ban = name == "/ban";
            let text = format!("{} {target}", if ban { "banned" } else { "kicked" });
            let cmd = Command::Remove {
                room,
                target,
                reason,
                ban,
            };
            (cmd, text)
        }
        "/unban" | "/unmute" => {
            let unban = name == "/unban";
            let text = format!("{} {target}", if unban { "unbanned" } else { "unmuted" });
            (
                Command::Lift {
                    room,
                    target,
                    unban,
                },
                text,
            )
        }
        "/mute" => {
            let text = format!("muted {target} for {} s", rest.trim());
            let seconds = Seconds::Word(rest).get().ok();
            let cmd = Command::Mute {
                room,
                target,
                seconds,
            };
            (cmd, text)
        }
        _ => {
            let op = name == "/op";
            let text = format!("{target} is a {}", if op { "moderator" } else { "member" });
            let role = Some(if op { "moderator" } else { "member" }.to_string());
            (Command::Role { room, target, role }, text)
        }
    };
    core.submit(Caller::user(user), cmd).await?;
    Ok(Reply {
        command: match command {
            "invite" => "invite",
            "kick" => "kick",
            "ban" => "ban",
            "unban" => "unban",
            "mute" => "mute",
            "unmute" => "unmute",
            "op" => "op",
            _ => "deop",
        },
        text,
        data: Value::Null,
    })
}
