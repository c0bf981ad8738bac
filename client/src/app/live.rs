//! The live side: sending messages through the outbox, and turning what the
//! connection reports (hello, entries, histories, presence, replies, errors, drops,
//! rooms joined, invitations, rooms deleted) into output and state.

use std::time::{Duration, Instant};

use super::{first_room, App};
use crate::conn::{Hello, NetEvent};
use crate::protocol::{nonce_str, ClientFrame, Entry, EntryKind, Role, Room, ServerFrame};
use crate::render::{clean, error_text, human_ms};
use crate::timeline::{Gap, Step};

impl App {
    /// A message to the current room, or (`command`) a slash command for the server.
    pub(super) fn send_text(&mut self, text: String, command: bool) {
        let Some(s) = self.need_session() else { return };
        let room = match (&s.current, command) {
            (Some(r), _) => r.clone(),
            (None, true) => String::new(),
            (None, false) => {
                return self
                    .error("no current room: /join ID or /create NAME first (/rooms lists them)");
            }
        };
        self.send_to(room, text);
    }

    /// Queue `text` for `room` and send it when the connection allows.
    pub(super) fn send_to(&mut self, room: String, text: String) {
        let Some(s) = self.need_session() else { return };
        if s.outbox.push(&room, &text).is_none() {
            return self
                .error("too many unacknowledged messages; wait for the connection to catch up");
        }
        let offline_note = !s.online && !s.told_queued && s.ever_connected;
        if offline_note {
            s.told_queued = true;
            self.notice("offline: queued, will be sent once reconnected");
        }
        self.flush_outbox();
    }

    /// Send whatever the outbox says is due, if connected.
    pub(super) fn flush_outbox(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if !s.online {
            return;
        }
        let Some(conn) = &s.conn else { return };
        let timeline = &s.timeline;
        let due = s
            .outbox
            .take_due(Instant::now(), |room| !timeline.is_catching_up(room));
        for p in due {
            let frame = ClientFrame::send(&p.room, &p.text, Some(&p.nonce));
            conn.send(frame.to_json());
        }
    }

    pub(super) fn tick(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let step = s.timeline.expire(Instant::now());
        self.apply(step);
        self.flush_outbox();
        self.flush_reads(false);
    }

    /// Carry out what the timeline asked: tell the gaps, send the syncs, show entries.
    fn apply(&mut self, step: Step) {
        for (room, gap) in &step.gaps {
            let label = self.label(room);
            self.warn(&match gap {
                Gap::NotKept => format!(
                    "{label}: some entries were missed and are no longer kept by the server"
                ),
                Gap::Unfilled => format!(
                    "{label}: some entries were missed and the server did not send them; /history may show them"
                ),
            });
        }
        if let Some(conn) = self.session.as_ref().and_then(|s| s.conn.as_ref()) {
            for (room, since) in &step.sync {
                conn.send(ClientFrame::sync(room, *since).to_json());
            }
        }
        // One bell per batch, however many mentions a catch-up holds.
        let mut bell = true;
        for e in &step.show {
            if self.show_entry(e, bell) {
                bell = false;
            }
        }
        self.flush_reads(false);
    }

    // ----- the connection -----------------------------------------------------------

    pub(super) fn on_net(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Connected(hello) => self.on_hello(hello),
            NetEvent::Frame(f) => self.on_frame(f),
            NetEvent::Garbled(text) => {
                self.warn(&format!("unreadable frame from the server: {text}"))
            }
            NetEvent::Lost { reason, retry_in } => {
                if let Some(s) = self.session.as_mut() {
                    s.online = false;
                    s.told_queued = false;
                    s.outbox.connection_lost();
                    s.timeline.connection_lost();
                }
                self.warn(&format!(
                    "connection lost ({reason}); reconnecting in {}",
                    human_ms(retry_in.as_millis() as u64)
                ));
            }
            NetEvent::RetryFailed {
                reason,
                attempt,
                retry_in,
            } => {
                let first = self.session.as_ref().is_some_and(|s| !s.ever_connected);
                let next = human_ms(retry_in.as_millis() as u64);
                if first && attempt == 1 {
                    self.warn(&format!("cannot connect ({reason}); retrying in {next}"));
                } else {
                    self.notice(&format!(
                        "reconnect attempt {attempt} failed ({reason}); next in {next}"
                    ));
                }
            }
            NetEvent::Ended { reason } => {
                let Some(s) = self.session.as_mut() else {
                    // Logged out here already: the server closing the socket is no news.
                    return;
                };
                // The thread has exited; dropping the handle is enough.
                s.conn = None;
                self.end_session(&reason);
            }
        }
    }

    pub(super) fn on_hello(&mut self, hello: Hello) {
        let now = Instant::now();
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let first = !s.ever_connected;
        let new_epoch = s.epoch.as_ref().is_some_and(|e| *e != hello.epoch);
        // Before anything is printed: the prompt redrawn under the first notice drops
        // `(offline)`.
        s.online = true;
        s.ever_connected = true;
        s.epoch = Some(hello.epoch);
        if new_epoch {
            s.timeline.clear();
        }
        // The hello lists rooms as of the moment the connection was made; a room
        // joined by REST a moment later may be missing. Ask before forgetting any.
        let mut missing: Vec<String> = s
            .rooms
            .keys()
            .filter(|id| !hello.rooms.iter().any(|r| &r.id == *id))
            .cloned()
            .collect();
        let token = s.token.clone();
        let mut rooms_now: Vec<Room> = hello.rooms.clone();
        if !missing.is_empty() {
            if let Ok(me) = self.api.me(&token) {
                missing.retain(|id| !me.rooms.iter().any(|r| &r.id == id));
                for r in me.rooms {
                    if !rooms_now.iter().any(|h| h.id == r.id) {
                        rooms_now.push(r);
                    }
                }
            }
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut syncs = Vec::new();
        for r in &rooms_now {
            s.talk.read_known(&r.id, r.read_marker());
            if s.timeline.knows(&r.id) {
                syncs.push((r.id.clone(), s.timeline.begin_sync(&r.id, now)));
            } else {
                s.timeline.track(&r.id, r.last_seq);
            }
            s.rooms.insert(r.id.clone(), r.clone());
        }
        // A room held for a history that will never come (left while offline) is dropped.
        let stale: Vec<String> = s
            .timeline
            .rooms()
            .filter(|id| !rooms_now.iter().any(|r| r.id == *id))
            .map(str::to_owned)
            .collect();
        for id in &stale {
            s.timeline.forget(id);
        }
        if let Some(conn) = &s.conn {
            for (room, since) in &syncs {
                conn.send(ClientFrame::sync(room, *since).to_json());
            }
        }
        for r in &rooms_now {
            self.room_names.insert(r.id.clone(), r.name.clone());
        }
        if new_epoch {
            self.warn("the server lost its stored history (new epoch); starting afresh from now");
        }
        if first {
            self.notice(&format!("connected as {}", hello.username));
            if let Some(unread) = self.unread_summary() {
                self.notice(&unread);
            }
        } else {
            let n = syncs.len();
            self.notice(&format!("reconnected; catching up on {n} room(s)"));
        }
        for id in missing {
            let label = self.label(&id);
            self.notice(&format!("you are no longer in {label}"));
            self.forget_room(&id);
        }
        if let Some(s) = self.session.as_mut() {
            if s.current.is_none() && !s.rooms.is_empty() {
                s.current = first_room(&s.rooms);
                if let Some(id) = s.current.clone() {
                    self.announce_current(&id);
                }
            }
        }
        self.flush_outbox();
    }

    pub(super) fn on_frame(&mut self, f: ServerFrame) {
        let now = Instant::now();
        let Some(s) = self.session.as_mut() else {
            return;
        };
        match f {
            ServerFrame::Entry(entry) => {
                if let Some(n) = &entry.nonce {
                    s.outbox.ack(&nonce_str(n));
                }
                let me = s.user.eq_ignore_ascii_case(&entry.from);
                if me && entry.kind == EntryKind::Leave && !s.rooms.contains_key(&entry.room) {
                    // The echo of our own /leave: the room is already forgotten.
                    return self.print_entry(&entry);
                }
                let membership = (me && entry.kind != EntryKind::Message)
                    .then(|| (entry.kind, entry.room.clone()));
                // Kicked or banned: the server sends nothing more from the room.
                let removed = matches!(entry.kind, EntryKind::Kick | EntryKind::Ban)
                    && entry
                        .extra
                        .target
                        .as_deref()
                        .is_some_and(|t| s.user.eq_ignore_ascii_case(t))
                    && s.rooms.contains_key(&entry.room);
                let removed = removed.then(|| entry.room.clone());
                let changed = matches!(entry.kind, EntryKind::Update | EntryKind::Role)
                    .then(|| entry.clone());
                let step = s.timeline.on_entry(*entry, now);
                self.apply(step);
                if let Some(e) = changed {
                    self.room_changed(&e);
                }
                match membership {
                    // Left from another device: stop showing the room.
                    Some((EntryKind::Leave, room)) => self.forget_room(&room),
                    // Joined from another device: learn the room's name.
                    Some((EntryKind::Join, room)) => self.learn_room(&room),
                    _ => {}
                }
                if let Some(room) = removed {
                    self.removed_from(&room);
                }
            }
            ServerFrame::History {
                room,
                entries,
                complete,
                more,
            } => {
                // Settle unknown-fate messages before the timeline drops what was shown.
                let after = s.timeline.last_seq(&room).unwrap_or(0);
                s.outbox.settle(&room, &entries, &s.user, after);
                let step = s.timeline.on_history(&room, entries, complete, more, now);
                self.apply(step);
                self.flush_outbox();
            }
            ServerFrame::Presence { username, online } => {
                if !s.user.eq_ignore_ascii_case(&username) {
                    let line = self.style.presence(&username, online);
                    self.print(&line);
                }
            }
            ServerFrame::Reply { nonce, text, .. } => {
                if let Some(n) = nonce {
                    s.outbox.ack(&nonce_str(&n));
                }
                let text = clean(&text);
                self.notice(&text);
            }
            ServerFrame::Error {
                code,
                message,
                nonce,
                retry_after_ms,
            } => {
                let text = error_text(&code, &message, retry_after_ms);
                let Some(n) = nonce.as_ref().map(nonce_str) else {
                    // No nonce: the answer to a frame the client sent by itself (`read`,
                    // `typing`, `sync`), not to a line of the user's. One about a room
                    // just left or deleted is expected (the frame was on its way while
                    // the leave went through) and is no news; others are shown, but
                    // fail nothing the user asked for.
                    // (`room_restricted`: a `read` on its way when a kick or ban came.)
                    if matches!(
                        code.as_str(),
                        "room_not_found" | "not_a_member" | "room_restricted"
                    ) {
                        return;
                    }
                    return self.warn(&text);
                };
                if code == "rate_limited" {
                    let wait = Duration::from_millis(retry_after_ms.unwrap_or(1000));
                    match s.outbox.rate_limited(&n, now, wait) {
                        Some(true) => {
                            return self
                                .notice("sending faster than the server allows; slowing down")
                        }
                        Some(false) => return,
                        None => {}
                    }
                }
                match s.outbox.ack(&n) {
                    Some(p) if !p.text.starts_with('/') || p.text.starts_with("//") => {
                        let label = self.label(&p.room);
                        let preview: String = p.text.chars().take(40).collect();
                        self.error(&format!("not sent to {label} ({preview:?}): {text}"));
                    }
                    _ => self.error(&text),
                }
            }
            ServerFrame::Joined { room } => self.on_joined(room),
            ServerFrame::Invite { room, by } => {
                self.room_names.insert(room.id.clone(), room.name.clone());
                let line = self.style.invite(&by, &room.name, &room.id);
                if let Some(s) = self.session.as_mut() {
                    s.invites.insert(
                        room.id.clone(),
                        crate::api::Invite {
                            room,
                            by: by.clone(),
                        },
                    );
                }
                self.print(&line);
            }
            ServerFrame::RoomDeleted { room, by } => {
                s.invites.remove(&room);
                // Already forgotten when this client deleted it.
                if s.rooms.contains_key(&room) {
                    let label = self.label(&room);
                    let line = self.style.room_deleted(&label, &by);
                    self.print(&line);
                    self.forget_room(&room);
                }
            }
            ServerFrame::Read { room, seq } => self.on_read(&room, seq),
            ServerFrame::Typing { room, username } => self.on_typing(&room, &username),
            ServerFrame::Hello { .. } | ServerFrame::Unknown => {}
        }
    }

    /// `joined`: this user is now in `room`, by any door. A room this client just
    /// joined or created is known already (the REST answer came first): only its fields
    /// are refreshed. Otherwise (another device, an invitation accepted elsewhere, a DM
    /// opened by someone) it is tracked so the `history` that follows shows.
    fn on_joined(&mut self, room: Room) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.invites.remove(&room.id);
        self.room_names.insert(room.id.clone(), room.name.clone());
        if let Some(known) = s.rooms.get_mut(&room.id) {
            *known = room;
            return;
        }
        let id = room.id.clone();
        let peer = room.dm_peer(&s.user);
        self.entered(room, false);
        let label = self.label(&id);
        match peer {
            Some(peer) => {
                let peer = clean(&peer);
                self.notice(&format!(
                    "direct messages with {peer} are {label}; /dm {peer} makes them current, /msg {peer} TEXT answers"
                ));
            }
            None => self.notice(&format!("you are now in {label} (id {id})")),
        }
        self.topic_line(&id, false);
    }

    /// An `update` or `role` entry just shown: keep the room's name, topic, visibility,
    /// owner and this user's role current.
    fn room_changed(&mut self, e: &Entry) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let user = s.user.clone();
        let Some(r) = s.rooms.get_mut(&e.room) else {
            return;
        };
        match e.kind {
            EntryKind::Update => {
                let Some(c) = &e.extra.changes else { return };
                if let Some(name) = &c.name {
                    r.name = name.clone();
                    self.room_names.insert(e.room.clone(), name.clone());
                }
                if let Some(topic) = &c.topic {
                    r.topic = topic.clone();
                }
                if let Some(v) = &c.visibility {
                    r.visibility = *v;
                }
            }
            EntryKind::Role => {
                let (Some(target), Some(role)) = (&e.extra.target, &e.text) else {
                    return;
                };
                if role == "owner" {
                    r.owner = target.clone();
                }
                if target.eq_ignore_ascii_case(&user) {
                    r.role = Role::parse(role);
                }
            }
            _ => {}
        }
    }

    /// This user was kicked or banned from `room`: it is no longer theirs.
    fn removed_from(&mut self, room: &str) {
        let label = self.label(room);
        self.notice(&format!("you are no longer in {label}"));
        self.forget_room(room);
    }

    /// Learn the name of a room we turned out to be in (joined from elsewhere).
    pub(super) fn learn_room(&mut self, id: &str) {
        let Some(s) = &self.session else { return };
        if s.rooms.contains_key(id) {
            return;
        }
        let token = s.token.clone();
        if let Ok(detail) = self.api.room(&token, id) {
            self.room_names
                .insert(id.to_owned(), detail.room.name.clone());
            if let Some(s) = self.session.as_mut() {
                s.rooms.insert(id.to_owned(), detail.room);
                if s.current.is_none() {
                    s.current = Some(id.to_owned());
                }
            }
        }
    }
}
