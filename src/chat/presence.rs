//! Presence: request activity, the online/offline announcements to room-mates, and the
//! user views (`users`, a page of the listing, and `user_info`) and online count built
//! from it.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use super::{now_ms, ChatError, Conn, Core, User};
use crate::config;
use crate::protocol::{UserList, UserView};

impl Core {
    /// Records request activity, announcing the user online if they were not. A lapse not
    /// yet announced is announced first, so room-mates see the user go and come back.
    pub fn touch(&self, user: &Arc<User>) {
        self.refresh_presence(user);
        user.lock().last_request = now_ms();
        self.refresh_presence(user);
    }

    pub(super) fn presence_timeout_ms(&self) -> u64 {
        self.cfg.presence_timeout.as_millis() as u64
    }

    /// Compares a user's presence with what was last announced, and announces a change to
    /// every connection of everyone who shares a room with them.
    pub fn refresh_presence(&self, user: &Arc<User>) {
        let now = now_ms();
        let timeout = self.presence_timeout_ms();
        let (online, rooms) = {
            let mut us = user.lock();
            let online = us.is_online(now, timeout);
            if online == us.online {
                return;
            }
            us.online = online;
            if !online {
                us.last_seen = Some(us.went_offline_at(timeout).min(now));
            }
            (online, us.rooms.clone())
        };
        let mut sent: HashMap<u64, Arc<Conn>> = HashMap::new();
        for id in rooms {
            if let Some(room) = self.rooms.get(&id) {
                let subs = room.lock().subscribers.clone();
                for c in subs.iter().filter(|c| c.user.key != user.key) {
                    sent.entry(c.id).or_insert_with(|| c.clone());
                }
            }
        }
        // Coalesced per connection (`Outbound::push_presence`): a storm of changes costs each
        // connection one pending state per user, never a 4002.
        for c in sent.values() {
            c.out.push_presence(&user.presence, online);
        }
    }

    /// Appends a `presence` frame for every user who shares a room with `conn`'s user, with
    /// their current (announced) state: what a connection gets when its pending presence
    /// changes overflowed. Returns the bytes appended.
    pub fn write_room_mates_presence(&self, conn: &Conn, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        let rooms = conn.user.lock().rooms.clone();
        let mut mates: HashMap<String, Arc<User>> = HashMap::new();
        for id in rooms {
            if let Some(room) = self.rooms.get(&id) {
                for (key, u) in room.lock().members.iter() {
                    if *key != conn.user.key {
                        mates.entry(key.clone()).or_insert_with(|| u.user.clone());
                    }
                }
            }
        }
        for u in mates.values() {
            let online = u.lock().online;
            out.extend_from_slice(u.presence.get(online));
        }
        out.len() - start
    }

    fn user_view(&self, user: &User, now: u64) -> UserView {
        let us = user.lock();
        let timeout = self.presence_timeout_ms();
        let online = us.is_online(now, timeout);
        // Until the sweep announces it, a user whose presence just ran out is still marked
        // online; their `last_seen` is the moment it ran out.
        let last_seen = if !online && us.online {
            Some(us.went_offline_at(timeout).min(now))
        } else {
            us.last_seen
        };
        UserView {
            username: user.name.clone(),
            online,
            last_seen,
        }
    }

    /// A page of the user listing: users by (case-insensitive) name after `after`, whose
    /// name contains `q` case-insensitively; `limit` is clamped to 1..=`LIST_PAGE_MAX`.
    pub fn users(&self, q: &str, after: Option<&str>, limit: usize) -> UserList {
        let limit = limit.clamp(1, config::LIST_PAGE_MAX);
        let q = q.to_ascii_lowercase();
        let start = match after {
            Some(name) => Bound::Excluded(name.to_ascii_lowercase()),
            None => Bound::Unbounded,
        };
        let (page, more): (Vec<Arc<User>>, bool) = {
            let users = self.users.read().unwrap_or_else(|e| e.into_inner());
            let mut matching = users
                .range((start, Bound::Unbounded))
                .filter(|(key, _)| key.contains(&q))
                .map(|(_, u)| u);
            let page = matching.by_ref().take(limit).cloned().collect();
            (page, matching.next().is_some())
        };
        let now = now_ms();
        let next = page.last().filter(|_| more).map(|u| u.name.clone());
        let users = page.iter().map(|u| self.user_view(u, now)).collect();
        UserList { users, next }
    }

    pub fn user_info(&self, name: &str) -> Result<UserView, ChatError> {
        let user = self
            .user(&name.to_ascii_lowercase())
            .ok_or(ChatError::UserNotFound)?;
        Ok(self.user_view(&user, now_ms()))
    }

    /// Users, rooms and kept entries, for the log.
    pub fn counts(&self) -> (usize, usize, usize) {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner()).len();
        let rooms = self.rooms.all();
        let entries = rooms.iter().map(|r| r.lock().ring.len()).sum();
        (users, rooms.len(), entries)
    }

    pub fn online_users(&self) -> usize {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.values().filter(|u| u.lock().online).count()
    }
}
