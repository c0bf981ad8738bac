//! The simulated clients: from a seeded generator, the next command one of them sends, and
//! what they remember of the answers (their tokens, the rooms they heard of).
//!
//! Choices lean toward commands that can succeed (an actor who owns the room, a target who
//! is in it), but any command may be refused: the core decides, the invariants judge.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::driver::{Cmd, Reply};
use crate::chat::{ChatError, Core};

/// Accounts the clients may register: `root` (the admin) and `user1` … .
pub const USERS: usize = 24;
/// Rooms the clients create at most (beside DMs).
const MAX_ROOMS: usize = 40;

pub struct World {
    pub rng: StdRng,
    names: Vec<String>,
    /// Live tokens each user holds, by index into `names`.
    tokens: Vec<Vec<String>>,
    registered: Vec<bool>,
    /// Rooms heard of, by id.
    rooms: Vec<String>,
    admin_code: Option<String>,
    texts: u64,
}

impl World {
    pub fn new(seed: u64, admin_code: Option<String>) -> World {
        let mut names = vec!["root".to_string()];
        names.extend((1..USERS).map(|i| format!("user{i}")));
        World {
            rng: StdRng::seed_from_u64(seed),
            tokens: vec![Vec::new(); names.len()],
            registered: vec![false; names.len()],
            names,
            rooms: Vec::new(),
            admin_code,
            texts: 0,
        }
    }

    /// The admin setup code of a restarted core.
    pub fn set_admin_code(&mut self, code: Option<String>) {
        self.admin_code = code;
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> Option<&'a T> {
        if from.is_empty() {
            return None;
        }
        Some(&from[self.rng.random_range(0..from.len())])
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    /// A token of `name`, if they hold one.
    fn token_of(&mut self, name: &str) -> Option<String> {
        let i = self.index(name)?;
        let t = self.tokens[i].clone();
        self.pick(&t).cloned()
    }

    /// Any user holding a token, with it.
    fn someone(&mut self) -> Option<(String, String)> {
        let holders: Vec<usize> = (0..self.names.len())
            .filter(|i| !self.tokens[*i].is_empty())
            .collect();
        let i = *self.pick(&holders)?;
        let t = self.tokens[i].clone();
        Some((self.names[i].clone(), self.pick(&t)?.clone()))
    }

    fn any_name(&mut self) -> String {
        let n = self.names.clone();
        self.pick(&n).cloned().unwrap_or_default()
    }

    fn text(&mut self, kind: char) -> String {
        self.texts += 1;
        format!("{kind}{}z words", self.texts)
    }

    /// The next command, drawn from the seed and what the clients know of `core`.
    pub fn next(&mut self, core: &Core) -> Cmd {
        let Some((_, token)) = self.someone() else {
            return self.login_or_register();
        };
        let room = {
            let r = self.rooms.clone();
            self.pick(&r).cloned()
        };
        let mut facts = room.as_ref().and_then(|r| core.sim_room(r, 0));
        let mut room = room;
        // Moderation in a DM is refused: mostly pick another room.
        if facts.as_ref().is_some_and(|f| f.dm) && self.rng.random_bool(0.7) {
            let r = self.rooms.clone();
            room = self.pick(&r).cloned();
            facts = room.as_ref().and_then(|r| core.sim_room(r, 0));
        }
        // An actor who may moderate `room` (its owner, a moderator), else the sender.
        let mut actor_token = token.clone();
        if let Some(f) = &facts {
            if self.rng.random_bool(0.6) {
                let mut mods = f.moderators.clone();
                mods.push(f.owner.clone());
                if let Some(name) = self.pick(&mods).cloned() {
                    match self.token_of(&name) {
                        Some(t) => actor_token = t,
                        // The owner logs in first.
                        None if self.rng.random_bool(0.3) => return Cmd::Login { user: name },
                        None => {}
                    }
                }
            }
        }
        let member = facts.as_ref().and_then(|f| {
            let m = f.members.clone();
            self.pick(&m).cloned()
        });
        let target = match (&member, self.rng.random_bool(0.7)) {
            (Some(m), true) => m.clone(),
            _ => self.any_name(),
        };
        let room_id = room.clone().unwrap_or_else(|| "nowhere".into());
        let message = facts.as_ref().and_then(|f| {
            let seqs: Vec<u64> = f
                .entries
                .iter()
                .filter(|e| e.kind == crate::protocol::EntryKind::Message)
                .map(|e| e.seq)
                .collect();
            self.pick(&seqs).copied()
        });
        let roll = self.rng.random_range(0..100);
        let (t, r) = (token.clone(), room_id.clone());
        match roll {
            0..=4 => self.login_or_register(),
            5 => Cmd::Logout { token: t },
            6..=9 if self.rooms.len() < MAX_ROOMS => Cmd::CreateRoom {
                token: t,
                name: format!("r{}", self.rng.random_range(0..60)),
                capacity: self.rng.random_range(1..8),
                private: self.rng.random_bool(0.15),
            },
            6..=19 => Cmd::Join { token: t, room: r },
            20..=23 => Cmd::Leave { token: t, room: r },
            24..=26 => Cmd::Invite {
                token: actor_token,
                room: r,
                target: self.any_name(),
            },
            27..=28 => Cmd::Remove {
                token: actor_token,
                room: r,
                target,
                ban: false,
            },
            29..=30 => Cmd::Remove {
                token: actor_token,
                room: r,
                target,
                ban: true,
            },
            31 => Cmd::Lift {
                token: actor_token,
                room: r,
                target,
                unban: true,
            },
            32..=33 => Cmd::Mute {
                token: actor_token,
                room: r,
                target,
                seconds: 3600 * self.rng.random_range(1..4),
            },
            34 => Cmd::Lift {
                token: actor_token,
                room: r,
                target,
                unban: false,
            },
            35..=36 => {
                let role = *self
                    .pick(&[Some("moderator"), None, Some("owner")])
                    .unwrap_or(&None);
                Cmd::Role {
                    token: actor_token,
                    room: r,
                    target,
                    role,
                }
            }
            37 => Cmd::Topic {
                token: actor_token,
                room: r,
                topic: self.text('t'),
            },
            38..=39 if self.rooms.len() < MAX_ROOMS => Cmd::OpenDm {
                token: t,
                target: self.any_name(),
            },
            40 => Cmd::Block {
                token: t,
                target: self.any_name(),
                blocked: self.rng.random_bool(0.6),
            },
            41..=44 => match message {
                Some(seq) => Cmd::Edit {
                    token: actor_token,
                    room: r,
                    seq,
                    text: self.text('e'),
                },
                None => Cmd::Post {
                    token: t,
                    room: r,
                    text: self.text('m'),
                },
            },
            45..=49 => match message {
                Some(seq) => Cmd::Delete {
                    token: actor_token,
                    room: r,
                    seq,
                },
                None => Cmd::Post {
                    token: t,
                    room: r,
                    text: self.text('m'),
                },
            },
            50..=53 => {
                let seq = facts.as_ref().map_or(1, |f| f.last_seq);
                Cmd::MarkRead {
                    token: t,
                    room: r,
                    seq,
                }
            }
            54 => Cmd::FlushRead,
            55 => Cmd::DeleteRoom {
                token: actor_token,
                room: r,
                admin: false,
            },
            56..=58 => match self.token_of("root") {
                Some(root) => match self.rng.random_range(0..4) {
                    0 => Cmd::DeleteRoom {
                        token: root,
                        room: r,
                        admin: true,
                    },
                    1 => Cmd::CreateInvite { token: root },
                    _ => Cmd::Disable {
                        token: root,
                        target: self.any_name(),
                        disabled: self.rng.random_bool(0.3),
                    },
                },
                None => self.login_or_register(),
            },
            _ => {
                // Posts mostly come from members.
                let poster = match &member {
                    Some(m) if self.rng.random_bool(0.8) => self.token_of(m),
                    _ => None,
                };
                Cmd::Post {
                    token: poster.unwrap_or(t),
                    room: r,
                    text: self.text('m'),
                }
            }
        }
    }

    fn login_or_register(&mut self) -> Cmd {
        let i = self.rng.random_range(0..self.names.len());
        let user = self.names[i].clone();
        if self.tokens[i].len() >= 3 {
            // Sessions stay until they expire: a client with three logs one out first.
            return Cmd::Logout {
                token: self.tokens[i][0].clone(),
            };
        }
        if self.registered[i] && self.rng.random_bool(0.95) {
            return Cmd::Login { user };
        }
        let invite = if i == 0 {
            self.admin_code.clone()
        } else {
            None
        };
        Cmd::Register { user, invite }
    }

    /// What the client that sent `cmd` learns from the answer.
    pub fn observe(&mut self, cmd: &Cmd, out: &Result<Reply, ChatError>) {
        match (cmd, out) {
            (Cmd::Register { user, .. }, Ok(_))
            | (Cmd::Register { user, .. }, Err(ChatError::UsernameTaken)) => {
                if let Some(i) = self.index(user) {
                    self.registered[i] = true;
                }
            }
            (Cmd::Login { user }, Ok(Reply::Token(t))) => {
                if let Some(i) = self.index(user) {
                    self.registered[i] = true;
                    self.tokens[i].push(t.clone());
                    if self.tokens[i].len() > 3 {
                        self.tokens[i].remove(0);
                    }
                }
            }
            (Cmd::Logout { token }, Ok(_)) => self.forget_token(token),
            (_, Ok(Reply::Room(id))) if !self.rooms.contains(id) => self.rooms.push(id.clone()),
            (_, Err(ChatError::Unauthorized)) => {
                if let Some(t) = cmd.token() {
                    self.forget_token(t);
                }
            }
            _ => {}
        }
    }

    /// Forgets rooms that no longer exist in `core`.
    pub fn prune_rooms(&mut self, core: &Core) {
        self.rooms.retain(|r| core.sim_room(r, u64::MAX).is_some());
    }

    fn forget_token(&mut self, token: &str) {
        for ts in &mut self.tokens {
            ts.retain(|t| t != token);
        }
    }
}

/// The room a command is about, if any.
pub fn room_of(cmd: &Cmd) -> Option<&str> {
    use Cmd::*;
    match cmd {
        Join { room, .. }
        | Leave { room, .. }
        | Invite { room, .. }
        | Remove { room, .. }
        | Lift { room, .. }
        | Mute { room, .. }
        | Role { room, .. }
        | Topic { room, .. }
        | Post { room, .. }
        | Edit { room, .. }
        | Delete { room, .. }
        | MarkRead { room, .. }
        | DeleteRoom { room, .. } => Some(room),
        _ => None,
    }
}
