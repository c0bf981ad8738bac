//! Presence: request activity, the online/offline announcements to room-mates, and the
//! user views (`users`, a page of the listing, and `user_info`) and online count built
//! from it.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use super::{now_ms, ChatError, Conn, Core, Record, User};
use crate::config;
use crate::protocol::{UserList, UserView};

/// Users per `Record::LastSeen`.
const SEEN_PER_RECORD: usize = 1000;

/// `seen` as `Record::LastSeen` records of at most [`SEEN_PER_RECORD`] users each.
pub(super) fn last_seen_records(seen: &[(String, u64)]) -> impl Iterator<Item = Record> + '_ {
    seen.chunks(SEEN_PER_RECORD)
        .map(|c| Record::LastSeen { seen: c.to_vec() })
}

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
                let at = us.went_offline_at(timeout).min(now);
                us.last_seen = Some(at);
                self.note_seen(user, at);
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

    fn note_seen(&self, user: &User, at: u64) {
        let mut dirty = self.seen_dirty.lock().unwrap_or_else(|e| e.into_inner());
        dirty.insert(user.name.clone(), at);
    }

    /// Writes when the users who went offline since the last call were last seen: one
    /// record, at most [`SEEN_PER_RECORD`] users each. Runs once a second; before a clean stop
    /// (`stopping`), everyone still online is written as seen now.
    pub fn flush_last_seen(&self, stopping: bool) {
        if stopping {
            let now = now_ms();
            for u in self.all_users().iter().filter(|u| u.lock().online) {
                self.note_seen(u, now);
            }
        }
        let seen: Vec<(String, u64)> = {
            let mut dirty = self.seen_dirty.lock().unwrap_or_else(|e| e.into_inner());
            dirty.drain().collect()
        };
        for rec in last_seen_records(&seen) {
            // A full or failed store loses these times; memory keeps them.
            if let Ok(slot) = self.reserve() {
                drop(self.commit(slot, &rec, || {}));
            }
        }
    }

    /// Moves each named user's `last_seen` up to the time given (`Record::LastSeen`).
    pub(super) fn apply_last_seen(&self, seen: &[(String, u64)]) {
        for (name, at) in seen {
            if let Some(user) = self.user(&name.to_ascii_lowercase()) {
                let mut us = user.lock();
                us.last_seen = Some(us.last_seen.map_or(*at, |t| t.max(*at)));
            }
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

    /// A user's presence as the events last told it, after announcing a change the sweep
    /// has not announced yet: what REST says is always what room-mates were last told.
    pub(super) fn presence_of(&self, user: &Arc<User>) -> (bool, Option<u64>) {
        self.refresh_presence(user);
        let us = user.lock();
        (us.online, us.last_seen)
    }

    fn user_view(&self, user: &Arc<User>) -> UserView {
        let (online, last_seen) = self.presence_of(user);
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
            let users = self.users.read();
            let mut matching = users
                .range((start, Bound::Unbounded))
                .filter(|(key, _)| key.contains(&q))
                .map(|(_, u)| u);
            let page = matching.by_ref().take(limit).cloned().collect();
            (page, matching.next().is_some())
        };
        let next = page.last().filter(|_| more).map(|u| u.name.clone());
        let users = page.iter().map(|u| self.user_view(u)).collect();
        UserList { users, next }
    }

    pub fn user_info(&self, name: &str) -> Result<UserView, ChatError> {
        let user = self
            .user(&name.to_ascii_lowercase())
            .ok_or(ChatError::UserNotFound)?;
        Ok(self.user_view(&user))
    }

    /// Users, rooms and kept entries, for the log.
    pub fn counts(&self) -> (usize, usize, usize) {
        let users = self.users.read().len();
        let rooms = self.rooms.all();
        let entries = rooms.iter().map(|r| r.lock().ring.len()).sum();
        (users, rooms.len(), entries)
    }

    pub fn online_users(&self) -> usize {
        let users = self.users.read();
        users.values().filter(|u| u.lock().online).count()
    }
}
