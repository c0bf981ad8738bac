//! Accounts: register, log in, log out, and the end of a session.

use super::{first_room, App, PasswordSource, Session};
use crate::commands;
use crate::conn::Connection;
use crate::outbox::Outbox;
use crate::render::clean;
use crate::timeline::Timeline;

impl App {
    pub(super) fn register(&mut self, name: &str) {
        if let Err(e) = commands::check_username(name) {
            self.error(&e);
            return;
        }
        let Some(pw) = self.ask_password(&format!("new password for {name}: ")) else {
            return;
        };
        if matches!(self.password, PasswordSource::Ask) {
            let Some(again) = self.ask_password("repeat the password: ") else {
                return;
            };
            if again != pw {
                self.error("the passwords differ; nothing was registered");
                return;
            }
        }
        match self.api.register(name, &pw) {
            Ok(()) => {
                self.notice(&format!("registered {name}"));
                self.login_with(name, &pw);
            }
            Err(e) => self.api_error("register failed", e),
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
                let what = if e.code() == Some("invalid_credentials") {
                    "login failed: wrong username or password".to_owned()
                } else {
                    "login failed".to_owned()
                };
                self.api_error(&what, e);
                return;
            }
        };
        if self.session.is_some() {
            self.logout_quietly();
        }
        let rooms = match self.api.me(&ok.token) {
            Ok(me) => me.rooms,
            Err(e) => {
                self.error(&format!("could not list your rooms: {e}"));
                Vec::new()
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
            current: None,
            timeline: Timeline::new(),
            outbox: Outbox::new(),
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
                .map(|r| format!("{} ({})", clean(&r.name), clean(&r.id)))
                .collect();
            format!("your rooms: {}", list.join(", "))
        };
        self.session = Some(s);
        self.notice(&format!("logged in as {}; {summary}", ok.username));
        if let Some(id) = self.session.as_ref().and_then(|s| s.current.clone()) {
            let label = self.label(&id);
            self.notice(&format!("current room: {label}"));
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
