//! Direct messages, edits and deletions, and blocks: `/msg`, `/dm`, `/dms`, `/edit`,
//! `/delete`, `/block`, `/unblock`, `/blocks`.

use super::App;
use crate::outbox::next_nonce;
use crate::protocol::{ClientFrame, EntryKind, Room};
use crate::render::clean;

/// How far back `/edit` and `/delete` without a seq look in the server's history when no
/// message of the user's was shown since the client started. Default is 100 entries.
const OWN_LOOKBACK: usize = 100;

impl App {
    /// `/msg USER TEXT`: open (or reuse) the DM and post there; the current room stays.
    pub(super) fn msg(&mut self, user: &str, text: &str) {
        let Some(id) = self.open_dm(user, false) else {
            return;
        };
        self.send_to(id, text.to_owned());
    }

    /// `/dm USER`: open (or reuse) the DM and make it current.
    pub(super) fn dm(&mut self, user: &str) {
        if let Some(id) = self.open_dm(user, true) {
            self.announce_current(&id);
            self.show_unread(&id);
        }
    }

    /// The DM room with `user`, opened over REST if this client does not know it yet.
    fn open_dm(&mut self, user: &str, current: bool) -> Option<String> {
        let token = self.token()?;
        let known = self.session.as_ref().and_then(|s| {
            s.rooms
                .values()
                .find(|r| {
                    r.dm_peer(&s.user)
                        .is_some_and(|p| p.eq_ignore_ascii_case(user))
                })
                .map(|r| r.id.clone())
        });
        if let Some(id) = known {
            if current {
                if let Some(s) = self.session.as_mut() {
                    s.current = Some(id.clone());
                }
            }
            return Some(id);
        }
        match self.api.open_dm(&token, user) {
            Ok(room) => {
                let id = room.id.clone();
                self.entered(room, current);
                let label = self.label(&id);
                self.notice(&format!(
                    "direct messages with {} are {label}; /dm {} makes them current",
                    clean(user),
                    clean(user)
                ));
                Some(id)
            }
            Err(e) => {
                let what = format!("cannot open a DM with {}", clean(user));
                self.api_error(&what, e);
                None
            }
        }
    }

    /// `/dms`: the user's DMs with unread counts.
    pub(super) fn dms(&mut self) {
        if self.need_session().is_none() {
            return;
        }
        let line = self.dm_listing();
        self.print(&line);
    }

    /// The DM section of `/rooms` and `/dms`.
    pub(super) fn dm_listing(&self) -> String {
        let Some(s) = &self.session else {
            return self.style.listing("not logged in", &[]);
        };
        let mut dms: Vec<&Room> = s.rooms.values().filter(|r| r.is_dm()).collect();
        dms.sort_by_key(|r| r.name.to_lowercase());
        let rows: Vec<String> = dms
            .iter()
            .map(|r| {
                let label = self.label(&r.id);
                let row = format!("{label:<20}  id {}", clean(&r.id));
                if r.unread_count() > 0 {
                    self.style
                        .strong(&format!("{row}  {} unread", r.unread_count()))
                } else {
                    row
                }
            })
            .collect();
        let heading = if dms.is_empty() {
            "no direct messages yet: /msg USER TEXT starts one".to_owned()
        } else {
            format!(
                "{} direct message room(s); /dm USER makes one current",
                dms.len()
            )
        };
        self.style.listing(&heading, &rows)
    }

    /// `/edit [SEQ] TEXT` in the current room.
    pub(super) fn edit(&mut self, seq: Option<u64>, text: &str) {
        let Some((room, seq, nonce)) = self.revision_target("/edit", seq) else {
            return;
        };
        if let Some(conn) = self.session.as_ref().and_then(|s| s.conn.as_ref()) {
            let frame = ClientFrame::edit(&room, seq, text, Some(&nonce));
            conn.send(frame.to_json());
        }
    }

    /// `/delete [SEQ]` in the current room.
    pub(super) fn delete(&mut self, seq: Option<u64>) {
        let Some((room, seq, nonce)) = self.revision_target("/delete", seq) else {
            return;
        };
        if let Some(conn) = self.session.as_ref().and_then(|s| s.conn.as_ref()) {
            let frame = ClientFrame::delete(&room, seq, Some(&nonce));
            conn.send(frame.to_json());
        }
    }

    /// The room, seq and a nonce for an edit or deletion, or an error said.
    fn revision_target(&mut self, what: &str, seq: Option<u64>) -> Option<(String, u64, String)> {
        let s = self.need_session()?;
        let Some(room) = s.current.clone() else {
            self.error(&format!(
                "{what} acts on the current room, and there is none: /switch ID first"
            ));
            return None;
        };
        if !s.online {
            self.error(&format!("{what}: offline; try again once reconnected"));
            return None;
        }
        let seq = match seq.or_else(|| s.talk.last_own(&room)) {
            Some(seq) => seq,
            None => self.last_own_in_history(&room)?,
        };
        Some((room, seq, next_nonce()))
    }

    /// This user's last message in `room` that is still kept, from the server's history,
    /// when none was shown since the client started.
    fn last_own_in_history(&mut self, room: &str) -> Option<u64> {
        let (token, me) = self
            .session
            .as_ref()
            .map(|s| (s.token.clone(), s.user.clone()))?;
        let page = match self.api.messages(&token, room, OWN_LOOKBACK) {
            Ok(p) => p,
            Err(e) => {
                self.api_error("cannot look for your last message", e);
                return None;
            }
        };
        let found = page
            .entries
            .iter()
            .rev()
            .find(|e| {
                e.kind == EntryKind::Message && !e.is_deleted() && e.from.eq_ignore_ascii_case(&me)
            })
            .map(|e| e.seq);
        if found.is_none() {
            let label = self.label(room);
            self.error(&format!(
                "no message of yours among the last {OWN_LOOKBACK} entries of {label}; give its number (/history shows them)"
            ));
        }
        found
    }

    /// `/block USER` and `/unblock USER`.
    pub(super) fn block(&mut self, user: &str, block: bool) {
        let Some(token) = self.token() else { return };
        let user = clean(user);
        match (self.api.set_blocked(&token, &user, block), block) {
            (Ok(()), true) => self.notice(&format!(
                "blocked {user}: they cannot open a DM with you or post in yours"
            )),
            (Ok(()), false) => self.notice(&format!("unblocked {user}")),
            (Err(e), _) if e.status() == Some(404) && !block => {
                let code = e.code().unwrap_or("not_found").to_owned();
                if code == "user_not_found" {
                    self.api_error(&format!("cannot unblock {user}"), e);
                } else {
                    self.error(&format!("{user} is not blocked ({code})"));
                }
            }
            (Err(e), true) => self.api_error(&format!("cannot block {user}"), e),
            (Err(e), false) => self.api_error(&format!("cannot unblock {user}"), e),
        }
    }

    /// `/blocks`.
    pub(super) fn blocks(&mut self) {
        let Some(token) = self.token() else { return };
        match self.api.blocks(&token) {
            Ok(list) => {
                let heading = if list.is_empty() {
                    "you have blocked nobody".to_owned()
                } else {
                    format!("{} blocked user(s); /unblock USER", list.len())
                };
                let rows: Vec<String> = list.iter().map(|u| clean(u)).collect();
                let line = self.style.listing(&heading, &rows);
                self.print(&line);
            }
            Err(e) => self.api_error("cannot list blocks", e),
        }
    }
}
