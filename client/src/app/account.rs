//! Accounts: register, log in, log out, and the end of a session.

use super::{first_room, App, PasswordSource, Session};
use crate::commands;
use crate::conn::Connection;
use crate::outbox::Outbox;
use crate::render::clean;
use crate::timeline::Timeline;

/// How many times `/register` asks for an invite code on a terminal. Default is 3.
const MAX_CODE_ASKS: u32 = 3;

/// Shown before a new password is asked for. The contract's rule: 15 to 1024 bytes by
/// default; a server started with `--min-password-length` says its own minimum when it
/// refuses one.
pub(super) const PASSWORD_RULES: &str =
    "passwords: 15 to 1024 bytes, any characters (a few words make a good one); a server may ask for another minimum";

impl App {
    /// `code`: an invite code typed with the command; else `--invite-code`'s, if any.
    /// When the server wants one and none was given, it is asked for on a terminal.
    pub(super) fn register(&mut self, name: &str, code: Option<String>) {
        if let Err(e) = commands::check_username(name) {
            self.error(&e);
            return;
        }
        let Some(pw) = self.new_password(&format!("new password for {name}: ")) else {
            return;
        };
        let mut code = code.or_else(|| self.invite_code.clone());
        let mut asked = 0;
        loop {
            match self.api.register(name, &pw, code.as_deref()) {
                Ok(()) => {
                    self.notice(&format!("registered {name}"));
                    self.login_with(name, &pw);
                    return;
                }
                Err(e) if e.code() == Some("invite_required") => {
                    let tried = code.is_some();
                    if self.ui.is_none() || asked == MAX_CODE_ASKS {
                        let hint = if tried {
                            "that invite code was not accepted (unknown, used up or expired)"
                        } else {
                            "this server registers only with an invite code: /register NAME CODE, or start with --invite-code CODE"
                        };
                        self.error(&format!("register failed: {hint}"));
                        return;
                    }
                    if tried {
                        self.error(
                            "that invite code was not accepted (unknown, used up or expired)",
                        );
                    } else {
                        self.notice("this server registers only with an invite code");
                    }
                    asked += 1;
                    match self.ask_line("invite code (empty to give up): ") {
                        Some(c) if !c.trim().is_empty() => code = Some(c.trim().to_owned()),
                        _ => {
                            self.notice("nothing was registered");
                            return;
                        }
                    }
                }
                Err(e) if e.code() == Some("registration_closed") => {
                    return self.error(
                        "register failed: registration is closed on this server; an administrator can create your account (registration_closed)",
                    );
                }
                Err(e) => return self.api_error("register failed", e),
            }
        }
    }

    /// A new password: asked twice on a terminal, else the one given.
    pub(super) fn new_password(&mut self, prompt: &str) -> Option<String> {
        if matches!(self.password, PasswordSource::Ask) {
            self.notice(PASSWORD_RULES);
        }
        let pw = self.ask_password(prompt)?;
        if matches!(self.password, PasswordSource::Ask) {
            let again = self.ask_password("repeat the password: ")?;
            if again != pw {
                self.error("the passwords differ; nothing was changed");
                return None;
            }
        }
        Some(pw)
    }

    /// `/password`: asks for the current and a new password, without echo.
    pub(super) fn change_password(&mut self) {
        let Some(token) = self.token() else { return };
        if !matches!(self.password, PasswordSource::Ask) {
            return self.error(
                "/password asks for the passwords and needs a terminal; nothing was changed",
            );
        }
        let Some(old) = self.ask_password("current password: ") else {
            return;
        };
        let Some(new) = self.new_password("new password: ") else {
            return;
        };
        match self.api.change_password(&token, &old, &new) {
            Ok(()) => {
                self.notice("password changed; your other sessions were ended (this one goes on)")
            }
            Err(e) if e.code() == Some("invalid_credentials") => self
                .error("password not changed: the current password is wrong (invalid_credentials)"),
            Err(e) => self.api_error("password not changed", e),
        }
    }

    pub(super) fn login(&mut self, name: &str, check: bool) {
        if check {
            if let Err(e) = commands::check_username(name) {
                self.error(&e);
                return;
            }
        }
        let Some(pw) = self.ask_password(&format!("password for {name}: ")) else {
            return;
        };
        self.login_with(name, &pw);
    }

    pub(super) fn login_with(&mut self, name: &str, pw: &str) {
        let ok = match self.api.login(name, pw) {
            Ok(ok) => ok,
            Err(e) => {
                // Said once: the server's own message would only say it again.
                let text = match e.code() {
                    Some("invalid_credentials") => {
                        "login failed: wrong username or password (invalid_credentials)".to_owned()
                    }
                    Some("account_disabled") => {
                        "login failed: this account was disabled by a server administrator (account_disabled)".to_owned()
                    }
                    _ => format!("login failed: {e}"),
                };
                self.error(&text);
                return;
            }
        };
        if self.session.is_some() {
            self.logout_quietly();
        }
        let (rooms, invites, admin) = match self.api.me(&ok.token) {
            Ok(me) => (me.rooms, me.invites, me.admin),
            Err(e) => {
                self.error(&format!("could not list your rooms: {e}"));
                (Vec::new(), Vec::new(), false)
            }
        };
        self.tag += 1;
        let conn = Connection::start(
            self.api.endpoint().clone(),
            ok.token.clone(),
            self.tag,
            self.events_tx.clone(),
        );
        let mut s = Session {
            user: ok.username.clone(),
            token: ok.token,
            conn: Some(conn),
            online: false,
            ever_connected: false,
            told_queued: false,
            epoch: None,
            rooms: rooms.into_iter().map(|r| (r.id.clone(), r)).collect(),
            invites: invites
                .into_iter()
                .map(|i| (i.room.id.clone(), i))
                .collect(),
            admin,
            current: None,
            timeline: Timeline::new(),
            outbox: Outbox::new(),
            talk: Default::default(),
        };
        s.current = first_room(&s.rooms);
        for r in s.rooms.values() {
            self.room_names.insert(r.id.clone(), r.name.clone());
        }
        let summary = if s.rooms.is_empty() {
            "you are in no room yet: /rooms lists them, /join ID or /create NAME".to_owned()
        } else {
            let list: Vec<String> = s
                .rooms
                .values()
                .filter(|r| !r.is_dm())
                .map(|r| {
                    let private = if r.is_private() { ", private" } else { "" };
                    format!("{} ({}{private})", clean(&r.name), clean(&r.id))
                })
                .collect();
            let dms: Vec<String> = s
                .rooms
                .values()
                .filter_map(|r| r.dm_peer(&s.user))
                .map(|p| clean(&p))
                .collect();
            let rooms = if list.is_empty() {
                "you are in no room".to_owned()
            } else {
                format!("your rooms: {}", list.join(", "))
            };
            if dms.is_empty() {
                rooms
            } else {
                format!("{rooms}; direct messages with: {}", dms.join(", "))
            }
        };
        let invited = s.invites.len();
        let admin = s.admin;
        self.session = Some(s);
        self.notice(&format!("logged in as {}; {summary}", ok.username));
        if admin {
            self.notice("you are a server administrator: /help lists the /admin commands");
        }
        if invited > 0 {
            self.notice(&format!(
                "you have {invited} pending invitation(s): /invites lists them"
            ));
        }
        if let Some(id) = self.session.as_ref().and_then(|s| s.current.clone()) {
            self.announce_current(&id);
        }
    }

    pub(super) fn logout(&mut self) {
        let Some(token) = self.token() else { return };
        let result = self.api.logout(&token);
        let dropped = self.drop_session();
        match result {
            Ok(()) => self.notice("logged out"),
            Err(e) => self.error(&format!(
                "logout: {e} (the session is forgotten here anyway)"
            )),
        }
        if dropped > 0 {
            self.notice(&format!("{dropped} unsent message(s) dropped"));
        }
    }

    pub(super) fn logout_quietly(&mut self) {
        if let Some(s) = &self.session {
            let _ = self.api.logout(&s.token);
        }
        self.drop_session();
    }

    /// Forget the session and stop its connection; returns how many unsent items died.
    pub(super) fn drop_session(&mut self) -> usize {
        let Some(mut s) = self.session.take() else {
            return 0;
        };
        // What the old connection still reports (its 4001 close after a logout) is
        // about a session that is gone: ignore it.
        self.tag += 1;
        if let Some(c) = s.conn.take() {
            c.shutdown();
        }
        s.outbox.clear()
    }

    pub(super) fn end_session(&mut self, reason: &str) {
        let dropped = self.drop_session();
        self.error(&format!("{reason}; log in again with /login NAME"));
        if dropped > 0 {
            self.error(&format!("{dropped} unsent message(s) dropped"));
        }
    }
}
