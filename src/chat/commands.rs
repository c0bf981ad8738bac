//! Slash commands. Each runs the same core method as its REST call and returns the same data.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{ChatError, Core, User};
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
            let r = core.create_room(user, arg, None).await?;
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
            let r = core.join_room(user, arg).await?;
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
            core.leave_room(user, &id).await?;
            Ok(Reply {
                command: "leave",
                text: format!("left {id}"),
                data: Value::Null,
            })
        }
        "/rooms" => {
            let list = core.rooms(arg, None, config::LIST_PAGE_DEFAULT)?;
            let text = list
                .rooms
                .iter()
                .map(|r| {
                    format!(
                        "{} ({}): {}/{} members",
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
            let d = core.room_detail(&id)?;
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
            let rooms = core.my_rooms(user);
            let text = format!("you are {}, in {} rooms", user.name, rooms.len());
            Ok(Reply {
                command: "me",
                text,
                data: json!({ "username": user.name, "rooms": rooms, "admin": core.is_admin(user) }),
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
