//! Room and user commands, carried out over REST: create, join, leave, switch, and
//! the listings (rooms, users, who, history).

use std::time::Instant;

use super::{first_room, App, JOIN_CONTEXT};
use crate::protocol::{Role, Room};
use crate::render::{clean, ms, now_ms};

/// Most rooms or users a listing fetches (following the server's pages); the heading says
/// when there were more.
const MAX_LISTED: usize = 5000;

impl App {
    /// Resolve a room the user is in by id, or by a name only one of them has.
    pub(super) fn my_room(&mut self, arg: &str) -> Result<String, String> {
        let Some(s) = &self.session else {
            return Err("not logged in".into());
        };
        if s.rooms.contains_key(arg) {
            return Ok(arg.to_owned());
        }
        // A DM by the other user's name, with or without the `@` it is shown with.
        let peer = arg.strip_prefix('@').unwrap_or(arg);
        let named: Vec<&Room> = s
            .rooms
            .values()
            .filter(|r| match r.dm_peer(&s.user) {
                Some(p) => p.eq_ignore_ascii_case(peer),
                None => r.name.eq_ignore_ascii_case(arg),
            })
            .collect();
        match named.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(format!("you are not in a room {arg:?} (see /rooms)")),
            many => Err(format!(
                "several of your rooms are named {arg:?}; use an id: {}",
                many.iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Record a room just joined or created; make it current if `current` (else only
    /// when there is no current room).
    pub(super) fn entered(&mut self, room: Room, current: bool) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let id = room.id.clone();
        if !s.timeline.knows(&id) {
            s.timeline
                .track(&id, room.last_seq.saturating_sub(JOIN_CONTEXT));
            s.timeline.expect_history(&id, Instant::now());
        }
        self.room_names.insert(id.clone(), room.name.clone());
        s.invites.remove(&id);
        s.rooms.insert(id.clone(), room);
        if current || s.current.is_none() {
            s.current = Some(id);
        }
    }

    pub(super) fn create(&mut self, name: &str) {
        let Some(token) = self.token() else { return };
        match self.api.create_room(&token, name, None) {
            Ok(room) => {
                let id = room.id.clone();
                self.entered(room, true);
                let label = self.label(&id);
                self.notice(&format!(
                    "created {label} (id {id}); you are in it and it is current"
                ));
            }
            Err(e) => self.api_error("cannot create the room", e),
        }
    }

    pub(super) fn join(&mut self, arg: &str) {
        let Some(token) = self.token() else { return };
        if let Ok(id) = self.my_room(arg) {
            if let Some(s) = self.session.as_mut() {
                s.current = Some(id.clone());
            }
            let label = self.label(&id);
            self.notice(&format!("you are already in {label}; it is now current"));
            return;
        }
        // An invitation's room is found by its name too: private rooms are not listed.
        let invited = self.session.as_ref().and_then(|s| {
            let named: Vec<&String> = s
                .invites
                .values()
                .filter(|i| i.room.name.eq_ignore_ascii_case(arg))
                .map(|i| &i.room.id)
                .collect();
            match named.as_slice() {
                [one] if !s.invites.contains_key(arg) => Some((*one).clone()),
                _ => None,
            }
        });
        let arg = invited.as_deref().unwrap_or(arg);
        let result = match self.api.join(&token, arg) {
            Err(e) if e.code() == Some("room_not_found") => match self.room_by_name(&token, arg) {
                Ok(Some(id)) => self.api.join(&token, &id),
                Ok(None) => Err(e),
                Err(msg) => {
                    self.error(&msg);
                    return;
                }
            },
            other => other,
        };
        match result {
            Ok(room) => {
                let id = room.id.clone();
                let (members, capacity) = (room.members, room.capacity);
                let private = if room.is_private() { "private, " } else { "" };
                self.entered(room, true);
                let label = self.label(&id);
                self.notice(&format!(
                    "joined {label} (id {id}, {private}{members}/{capacity} members); it is now current"
                ));
                self.topic_line(&id, false);
            }
            Err(e) => self.api_error(&format!("cannot join {arg:?}"), e),
        }
    }

    /// A room id for `name` when exactly one room has that name.
    pub(super) fn room_by_name(
        &mut self,
        token: &str,
        name: &str,
    ) -> Result<Option<String>, String> {
        let rooms = self
            .api
            .rooms(token, name, MAX_LISTED)
            .map_err(|e| format!("cannot list rooms: {e}"))?
            .items;
        for r in &rooms {
            self.room_names.insert(r.id.clone(), r.name.clone());
        }
        let named: Vec<&Room> = rooms
            .iter()
            .filter(|r| r.name.eq_ignore_ascii_case(name))
            .collect();
        match named.as_slice() {
            [one] => Ok(Some(one.id.clone())),
            [] => Ok(None),
            many => Err(format!(
                "several rooms are named {name:?}; join one by id: {}",
                many.iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    pub(super) fn leave(&mut self, arg: Option<&str>) {
        let Some(token) = self.token() else { return };
        let id = match arg {
            Some(a) => match self.my_room(a) {
                Ok(id) => id,
                Err(_) => a.to_owned(),
            },
            None => match self.session.as_ref().and_then(|s| s.current.clone()) {
                Some(id) => id,
                None => {
                    self.error("no current room to leave; /leave ID");
                    return;
                }
            },
        };
        let label = self.label(&id);
        let result = self.api.leave(&token, &id);
        let forget = match &result {
            Ok(()) => true,
            Err(e) => e.code() == Some("not_a_member") || e.code() == Some("room_not_found"),
        };
        if let Err(e) = result {
            self.api_error(&format!("cannot leave {label}"), e);
        } else {
            self.notice(&format!("left {label}"));
        }
        if forget {
            self.forget_room(&id);
        }
    }

    /// The user is no longer in `id`: drop its state, pick another current room.
    pub(super) fn forget_room(&mut self, id: &str) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.rooms.remove(id);
        s.timeline.forget(id);
        s.talk.forget(id);
        let dropped = s.outbox.drop_room(id);
        if s.current.as_deref() == Some(id) {
            s.current = first_room(&s.rooms);
            let now = s.current.clone();
            match now {
                Some(next) => self.announce_current(&next),
                None => self.notice("you are in no room now: /join ID or /create NAME"),
            }
        }
        if dropped > 0 {
            self.error(&format!("{dropped} unsent message(s) to that room dropped"));
        }
    }

    pub(super) fn switch(&mut self, arg: &str) {
        if self.need_session().is_none() {
            return;
        }
        match self.my_room(arg) {
            Ok(id) => {
                if let Some(s) = self.session.as_mut() {
                    s.current = Some(id.clone());
                }
                self.announce_current(&id);
                self.show_unread(&id);
            }
            Err(e) => self.error(&format!("{e}; /join it first")),
        }
    }

    pub(super) fn rooms(&mut self) {
        let Some(token) = self.token() else { return };
        let (mut rooms, more) = match self.api.rooms(&token, "", MAX_LISTED) {
            Ok(r) => (r.items, r.more),
            Err(e) => return self.api_error("cannot list rooms", e),
        };
        // DMs are listed apart, below.
        rooms.retain(|r| !r.is_dm());
        let mine: Vec<(String, u64)> = self
            .session
            .as_ref()
            .map(|s| {
                s.rooms
                    .values()
                    .map(|r| (r.id.clone(), r.unread_count()))
                    .collect()
            })
            .unwrap_or_default();
        let idw = rooms
            .iter()
            .map(|r| r.id.chars().count())
            .max()
            .unwrap_or(0);
        let namew = rooms
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .min(40);
        let mut rows = Vec::new();
        for r in &rooms {
            self.room_names.insert(r.id.clone(), r.name.clone());
            let unread = mine.iter().find(|(id, _)| *id == r.id).map(|(_, n)| *n);
            let is_mine = unread.is_some();
            let mark = if is_mine { "*" } else { " " };
            let private = if r.is_private() { "  private" } else { "" };
            let unread = match unread {
                Some(n) if n > 0 => format!("  {n} unread"),
                _ => String::new(),
            };
            let row = format!(
                "{mark} {:<idw$}  {:<namew$}  {}/{} members{private}{unread}",
                clean(&r.id),
                clean(&r.name),
                r.members,
                r.capacity
            );
            rows.push(if is_mine {
                self.style.strong(&row)
            } else {
                row
            });
        }
        let heading = if rooms.is_empty() {
            "no rooms yet: /create NAME".to_owned()
        } else {
            format!(
                "{} room(s); * = you are in it (private rooms are listed to members only)",
                rooms.len()
            )
        };
        let heading = if more {
            format!(
                "{heading} (the first {} by name; there are more)",
                rooms.len()
            )
        } else {
            heading
        };
        let text = self.style.listing(&heading, &rows);
        self.print(&text);
        let dms = self.dm_listing();
        self.print(&dms);
    }

    pub(super) fn users(&mut self) {
        let Some(token) = self.token() else { return };
        let (mut users, more) = match self.api.users(&token, "", MAX_LISTED) {
            Ok(u) => (u.items, u.more),
            Err(e) => return self.api_error("cannot list users", e),
        };
        users.sort_by(|a, b| {
            b.online
                .cmp(&a.online)
                .then_with(|| a.username.to_lowercase().cmp(&b.username.to_lowercase()))
        });
        let w = users.iter().map(|u| u.username.len()).max().unwrap_or(0);
        let now = now_ms();
        let online = users.iter().filter(|u| u.online).count();
        let rows: Vec<String> = users
            .iter()
            .map(|u| {
                let name = format!("{:<w$}", clean(&u.username));
                if u.online {
                    format!("{}  online", self.style.strong(&name))
                } else {
                    let seen = match u.last_seen {
                        Some(ts) => format!("offline, last seen {}", self.style.when(ms(ts), now)),
                        None => "offline, never seen".to_owned(),
                    };
                    format!("{name}  {}", self.style.faint(&seen))
                }
            })
            .collect();
        let mut heading = format!("{} user(s), {online} online", users.len());
        if more {
            heading.push_str(" (the first by name; there are more)");
        }
        let text = self.style.listing(&heading, &rows);
        self.print(&text);
    }

    pub(super) fn who(&mut self, arg: Option<&str>) {
        let Some(token) = self.token() else { return };
        let id = match arg {
            Some(a) => self.my_room(a).unwrap_or_else(|_| a.to_owned()),
            None => match self.session.as_ref().and_then(|s| s.current.clone()) {
                Some(id) => id,
                None => return self.error("no current room; /who ID"),
            },
        };
        let detail = match self.api.room(&token, &id) {
            Ok(d) => d,
            Err(e) => return self.api_error(&format!("cannot look up room {id:?}"), e),
        };
        self.room_names
            .insert(detail.room.id.clone(), detail.room.name.clone());
        let mut members = detail.member_list;
        members.sort_by(|a, b| {
            b.online
                .cmp(&a.online)
                .then_with(|| a.username.to_lowercase().cmp(&b.username.to_lowercase()))
        });
        let w = members.iter().map(|m| m.username.len()).max().unwrap_or(0);
        let rows: Vec<String> = members
            .iter()
            .map(|m| {
                let name = format!("{:<w$}", clean(&m.username));
                let role = match m.role {
                    Role::Owner | Role::Moderator => format!("  {}", m.role.as_str()),
                    Role::Member => String::new(),
                };
                if m.online {
                    format!("{}  online{role}", self.style.strong(&name))
                } else {
                    format!("{name}  {}{role}", self.style.faint("offline"))
                }
            })
            .collect();
        let label = self.label(&detail.room.id);
        let private = if detail.room.is_private() {
            ", private"
        } else {
            ""
        };
        let mut heading = format!(
            "{label} (id {}{private}): {}/{} members, owner {}",
            clean(&detail.room.id),
            detail.room.members,
            detail.room.capacity,
            clean(&detail.room.owner)
        );
        if !detail.room.topic.is_empty() {
            heading.push_str(&format!("; topic: {}", clean(&detail.room.topic)));
        }
        let text = self.style.listing(&heading, &rows);
        self.print(&text);
    }

    pub(super) fn history(&mut self, n: usize) {
        let Some(token) = self.token() else { return };
        let Some(id) = self.session.as_ref().and_then(|s| s.current.clone()) else {
            return self.error("no current room; /join ID first");
        };
        let page = match self.api.messages(&token, &id, n) {
            Ok(p) => p,
            Err(e) => return self.api_error("cannot fetch history", e),
        };
        let label = self.label(&id);
        let me = self
            .session
            .as_ref()
            .map(|s| s.user.clone())
            .unwrap_or_default();
        // Each row starts with its seq, the number /edit and /delete take.
        let w = page.entries.last().map_or(1, |e| e.seq.to_string().len());
        let mut rows: Vec<String> = page
            .entries
            .iter()
            .map(|e| {
                let seq = self.style.faint(&format!("#{:<w$}", e.seq));
                format!("{seq} {}", self.style.entry_for(&label, e, &me))
            })
            .collect();
        // Shown in the current room: read.
        if let (Some(s), Some(last)) = (self.session.as_mut(), page.entries.last()) {
            s.talk.want_read(&id, last.seq);
        }
        let heading = if page.entries.is_empty() {
            format!("{label}: nothing yet")
        } else {
            format!("last {} entries of {label}", page.entries.len())
        };
        if page.entries.len() < n && page.first_seq.is_some_and(|f| f > 1) {
            rows.insert(0, self.style.faint("(older entries are no longer kept)"));
        }
        let text = self.style.listing(&heading, &rows);
        self.print(&text);
    }
}
