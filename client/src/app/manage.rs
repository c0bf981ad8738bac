//! Running a room and the server: the moderation commands (sent to the server, which
//! runs them on the current room), and those the client carries out over REST: the ban
//! list, renaming, deleting, handing a room over, invitations, the topic, and `/admin`.

use serde_json::json;

use super::App;
use crate::commands::{self, Admin};
use crate::render::{clean, ms, now_ms};

impl App {
    /// The current room, or an error saying the command needs one.
    fn current_room(&mut self, what: &str) -> Option<String> {
        self.need_session()?;
        let current = self.session.as_ref().and_then(|s| s.current.clone());
        if current.is_none() {
            self.error(&format!(
                "{what} acts on the current room, and there is none: /join ID or /switch ID first"
            ));
        }
        current
    }

    /// `/kick`, `/mute`, `/topic TEXT`...: the server runs them on the current room and
    /// answers with a `reply` (or an `error`); the entry they append shows as it comes.
    pub(super) fn moderate(&mut self, text: String) {
        let name = text
            .split_whitespace()
            .next()
            .unwrap_or("/command")
            .to_owned();
        if self.current_room(&name).is_none() {
            return;
        }
        self.send_text(text, true);
    }

    /// `current room: den (private)`, then the topic if it has one.
    pub(super) fn announce_current(&mut self, id: &str) {
        let label = self.label(id);
        let private = self
            .session
            .as_ref()
            .and_then(|s| s.rooms.get(id))
            .is_some_and(|r| r.is_private());
        let mark = if private { " (private)" } else { "" };
        self.notice(&format!("current room: {label}{mark}"));
        self.topic_line(id, false);
        self.mark_current_read(id);
    }

    /// `topic of den: ...`; with `always`, also say when there is none.
    pub(super) fn topic_line(&mut self, id: &str, always: bool) {
        let topic = self
            .session
            .as_ref()
            .and_then(|s| s.rooms.get(id))
            .map(|r| r.topic.clone())
            .unwrap_or_default();
        let label = self.label(id);
        if !topic.is_empty() {
            self.notice(&format!("topic of {label}: {}", clean(&topic)));
        } else if always {
            self.notice(&format!("{label} has no topic; /topic TEXT sets one"));
        }
    }

    pub(super) fn show_topic(&mut self) {
        if let Some(id) = self.current_room("/topic") {
            self.topic_line(&id, true);
        }
    }

    /// `/topic` with no text shows the topic, so clearing it is a REST call.
    pub(super) fn clear_topic(&mut self) {
        let Some(token) = self.token() else { return };
        let Some(id) = self.current_room("/clear-topic") else {
            return;
        };
        let label = self.label(&id);
        match self.api.update_room(&token, &id, json!({ "topic": "" })) {
            Ok(room) => {
                if let Some(s) = self.session.as_mut() {
                    s.rooms.insert(id.clone(), room);
                }
                self.notice(&format!("{label} has no topic now"));
            }
            Err(e) => self.api_error(&format!("cannot clear the topic of {label}"), e),
        }
    }

    pub(super) fn bans(&mut self) {
        let Some(token) = self.token() else { return };
        let Some(id) = self.current_room("/bans") else {
            return;
        };
        let label = self.label(&id);
        let bans = match self.api.bans(&token, &id) {
            Ok(b) => b,
            Err(e) => return self.api_error(&format!("cannot list the bans of {label}"), e),
        };
        let now = now_ms();
        let w = bans.iter().map(|b| b.username.len()).max().unwrap_or(0);
        let rows: Vec<String> = bans
            .iter()
            .map(|b| {
                let reason = b
                    .reason
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .map(|r| format!(" ({})", clean(r)))
                    .unwrap_or_default();
                format!(
                    "{:<w$}  by {}, {}{reason}",
                    clean(&b.username),
                    clean(&b.by),
                    self.style.when(ms(b.ts), now)
                )
            })
            .collect();
        let heading = if bans.is_empty() {
            format!("nobody is banned from {label}")
        } else {
            format!(
                "{} banned from {label}; /unban USER lets one back",
                bans.len()
            )
        };
        let text = self.style.listing(&heading, &rows);
        self.print(&text);
    }

    pub(super) fn rename(&mut self, name: &str) {
        let Some(token) = self.token() else { return };
        let Some(id) = self.current_room("/rename") else {
            return;
        };
        let old = self.label(&id);
        match self.api.update_room(&token, &id, json!({ "name": name })) {
            // The room's state follows its `update` entry, so that entry shows under
            // the old name here as everywhere else.
            Ok(room) => self.notice(&format!("renamed {old} to {}", clean(&room.name))),
            Err(e) => self.api_error(&format!("cannot rename {old}"), e),
        }
    }

    /// `/delete-room [ID]`: no confirmation; the command's name says what it does.
    pub(super) fn delete_room(&mut self, arg: Option<&str>) {
        let Some(token) = self.token() else { return };
        let id = match arg {
            Some(a) => self.my_room(a).unwrap_or_else(|_| a.to_owned()),
            None => match self.current_room("/delete-room") {
                Some(id) => id,
                None => return,
            },
        };
        let label = self.label(&id);
        match self.api.delete_room(&token, &id) {
            Ok(()) => {
                self.notice(&format!("deleted {label} (id {id}) and its history"));
                self.forget_room(&id);
            }
            Err(e) => self.api_error(&format!("cannot delete {label}"), e),
        }
    }

    /// `/owner USER`: ownership passes to USER; the old owner becomes a moderator.
    pub(super) fn transfer(&mut self, user: &str) {
        let Some(token) = self.token() else { return };
        let Some(id) = self.current_room("/owner") else {
            return;
        };
        let label = self.label(&id);
        match self.api.set_role(&token, &id, user, "owner") {
            Ok(()) => self.notice(&format!(
                "{} is now the owner of {label}; you are a moderator",
                clean(user)
            )),
            Err(e) => self.api_error(&format!("cannot hand {label} to {}", clean(user)), e),
        }
    }

    /// `/invites`: asked of the server, so invitations made while away show too.
    pub(super) fn invites(&mut self) {
        let Some(token) = self.token() else { return };
        let me = match self.api.me(&token) {
            Ok(me) => me,
            Err(e) => return self.api_error("cannot list your invitations", e),
        };
        for i in &me.invites {
            self.room_names
                .insert(i.room.id.clone(), i.room.name.clone());
        }
        let rows: Vec<String> = me
            .invites
            .iter()
            .map(|i| {
                let private = if i.room.is_private() { ", private" } else { "" };
                format!(
                    "{} (id {}{private}) from {}: /join {}",
                    clean(&i.room.name),
                    clean(&i.room.id),
                    clean(&i.by),
                    clean(&i.room.id)
                )
            })
            .collect();
        let heading = if rows.is_empty() {
            "no pending invitations".to_owned()
        } else {
            format!("{} pending invitation(s)", rows.len())
        };
        if let Some(s) = self.session.as_mut() {
            s.invites = me
                .invites
                .into_iter()
                .map(|i| (i.room.id.clone(), i))
                .collect();
        }
        let text = self.style.listing(&heading, &rows);
        self.print(&text);
    }

    pub(super) fn admin(&mut self, a: Admin) {
        let Some(token) = self.token() else { return };
        let result = match a {
            Admin::InviteCode { uses, expires_in } => {
                match self.api.admin_invite_code(&token, uses, expires_in) {
                    Ok(c) => {
                        let expires = if c.expires > 0 {
                            format!(", expires {}", self.style.when(ms(c.expires), now_ms()))
                        } else {
                            String::new()
                        };
                        self.notice(&format!(
                            "invite code: {} ({} use(s){expires}); register with /register NAME {}",
                            clean(&c.code),
                            c.uses,
                            clean(&c.code)
                        ));
                        return;
                    }
                    Err(e) => Err(("cannot make an invite code".to_owned(), e)),
                }
            }
            Admin::Create(user) => {
                if let Err(e) = commands::check_username(&user) {
                    return self.error(&e);
                }
                let Some(pw) = self.new_password(&format!("password for {user}: ")) else {
                    return;
                };
                self.api
                    .admin_create_user(&token, &user, &pw)
                    .map(|()| format!("created the account {user}"))
                    .map_err(|e| (format!("cannot create {user}"), e))
            }
            Admin::Disable(user) => self
                .api
                .admin_set_enabled(&token, &user, false)
                .map(|()| {
                    format!("disabled {user}: their sessions were ended and they cannot log in")
                })
                .map_err(|e| (format!("cannot disable {user}"), e)),
            Admin::Enable(user) => self
                .api
                .admin_set_enabled(&token, &user, true)
                .map(|()| format!("enabled {user}: they may log in again"))
                .map_err(|e| (format!("cannot enable {user}"), e)),
            Admin::DeleteRoom(id) => {
                let label = self.label(&id);
                match self.api.admin_delete_room(&token, &id) {
                    Ok(()) => {
                        self.notice(&format!("deleted {label} (id {id}) and its history"));
                        if self
                            .session
                            .as_ref()
                            .is_some_and(|s| s.rooms.contains_key(&id))
                        {
                            self.forget_room(&id);
                        }
                        return;
                    }
                    Err(e) => Err((format!("cannot delete {label}"), e)),
                }
            }
        };
        match result {
            Ok(done) => self.notice(&clean(&done)),
            Err((_, e)) if e.code() == Some("forbidden") => {
                self.error("/admin: you are not an administrator of this server (forbidden)")
            }
            Err((what, e)) => self.api_error(&clean(&what), e),
        }
    }
}
