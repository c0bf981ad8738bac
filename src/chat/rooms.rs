//! Each room's state: members, governance, subscribed connections and the history ring.
//! The sharded table of rooms is `room_table`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::ratelimit::RoomBudget;
use super::ring::Ring;
use super::users::{Conn, User};
use crate::protocol::{BanView, Role, RoomView, Visibility};
use crate::store::KeptEntry;

pub use super::room_table::RoomTable;

#[derive(Debug)]
pub struct Room {
    pub id: String,
    pub capacity: u32,
    /// Highest seq whose record the store has acknowledged. Readers (history, sync, hello)
    /// see only entries up to it, so nobody is told about an entry a crash could lose.
    pub committed_seq: AtomicU64,
    /// Mirrors `gov.visibility`, so a listing can skip private rooms without their locks.
    private: AtomicBool,
    state: Mutex<RoomState>,
}

/// Most users one message mentions.
pub const MAX_MENTIONS: usize = 20;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// A member of a room: the user, the seq of their `join` (who joined first), how far they
/// have read, and when they last said they were typing.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: Arc<User>,
    pub since: u64,
    pub read_seq: u64,
    /// Set when `read_seq` moved since the last durable write of the room's markers.
    pub read_dirty: bool,
    /// When their last `typing` event was forwarded (ms); 0 if never.
    pub last_typing: u64,
    /// A DM side the other side's open added, who has neither opened it nor written in it
    /// since: the DM does not count toward their `--max-rooms-per-user`.
    pub unanswered: bool,
}

impl Member {
    pub fn new(user: Arc<User>, since: u64) -> Member {
        Member {
            user,
            since,
            read_seq: 0,
            read_dirty: false,
            last_typing: 0,
            unanswered: false,
        }
    }
}

/// What a room's owner and moderators decide: its fields, roles, bans, mutes and
/// invitations. Keys are lowercase usernames.
#[derive(Debug, Clone, Default)]
pub struct Governance {
    pub name: String,
    /// The owner's name as registered. Always a member, except between a room's creation
    /// and its owner's join.
    pub owner: String,
    pub topic: String,
    pub visibility: Visibility,
    pub moderators: BTreeSet<String>,
    pub bans: BTreeMap<String, BanView>,
    /// Mute ends (ts); an ended mute may linger here and counts for nothing.
    pub mutes: HashMap<String, u64>,
    /// Who invited each pending invitee (their name as registered).
    pub invites: BTreeMap<String, String>,
    /// A direct-message room: its two sides, as registered. Both are plain members.
    pub dm: Option<(String, String)>,
}

#[derive(Debug)]
pub struct RoomState {
    /// Members by lowercase username.
    pub members: BTreeMap<String, Member>,
    pub gov: Governance,
    /// Governance as it was before each change the store has not acknowledged yet, oldest
    /// first, so a change the store fails to keep can be undone (`moderation`).
    pub gov_pending: VecDeque<(u64, Governance)>,
    /// Every connection of every member. Copy-on-write: a broadcast clones the `Arc`, and a
    /// change copies the list only while a broadcast still holds the old one.
    pub subscribers: Arc<Vec<Arc<Conn>>>,
    /// The last `--history` entries; the newest has seq `last_seq`, and seqs are consecutive.
    pub ring: Ring<KeptEntry>,
    /// For each kept entry, how many `message` entries came before it (`messages` counts
    /// from any start): the unread count of a marker is a subtraction, not a walk.
    msg_before: Ring<u64>,
    messages: u64,
    /// Seqs of kept `message` entries that were deleted (they no longer count as unread).
    deleted_msgs: BTreeSet<u64>,
    /// Seqs of each author's kept `message` entries, by their name as registered, oldest
    /// first: a member's own messages after their marker (a rejoin, a crash) are not unread.
    own_msgs: HashMap<String, VecDeque<u64>>,
    pub last_seq: u64,
    /// Messages and bytes the room may still take (`--room-rate-limit`, `--room-byte-rate`).
    /// Not kept across restarts: a restarted room starts with a full budget.
    pub budget: RoomBudget,
    /// Set when the last member left and the room was removed from the table: a request
    /// that found it just before must not join it.
    pub deleted: bool,
}

impl Room {
    pub fn new(id: String, gov: Governance, capacity: u32, history: usize) -> Room {
        Room {
            id,
            capacity,
            committed_seq: AtomicU64::new(0),
            private: AtomicBool::new(gov.visibility == Visibility::Private),
            state: Mutex::new(RoomState {
                members: BTreeMap::new(),
                gov,
                gov_pending: VecDeque::new(),
                subscribers: Arc::new(Vec::new()),
                ring: Ring::new(history),
                msg_before: Ring::new(history),
                messages: 0,
                deleted_msgs: BTreeSet::new(),
                own_msgs: HashMap::new(),
                last_seq: 0,
                budget: RoomBudget::default(),
                deleted: false,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, RoomState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn committed(&self) -> u64 {
        self.committed_seq.load(Ordering::Acquire)
    }

    pub fn set_committed(&self, seq: u64) {
        self.committed_seq.fetch_max(seq, Ordering::AcqRel);
    }

    pub fn is_private(&self) -> bool {
        self.private.load(Ordering::Relaxed)
    }

    /// Sets the visibility (under the room's lock, with `gov`).
    pub fn set_visibility(&self, rs: &mut RoomState, v: Visibility) {
        rs.gov.visibility = v;
        self.private
            .store(v == Visibility::Private, Ordering::Relaxed);
    }

    /// The contract's `Room` as the user `viewer` (lowercase) sees it, as of the last
    /// committed entry: with their `role`, `read_seq` and `unread` when they are a member.
    pub fn view(&self, state: &RoomState, viewer: &str) -> RoomView {
        let member = state.members.get(viewer);
        let read_seq = member.map(|m| m.read_seq);
        let last_seq = self.committed().min(state.last_seq);
        RoomView {
            id: self.id.clone(),
            name: state.gov.name.clone(),
            owner: state.gov.owner.clone(),
            members: state.members.len(),
            capacity: self.capacity,
            last_seq,
            kind: if state.gov.dm.is_some() { "dm" } else { "room" }.into(),
            visibility: state.gov.visibility,
            topic: state.gov.topic.clone(),
            role: state.role(viewer),
            read_seq,
            unread: member.map(|m| state.unread_for(m.read_seq, &m.user.name, last_seq)),
        }
    }
}

impl RoomState {
    /// The role of the user `key` (lowercase); `None` when not a member.
    pub fn role(&self, key: &str) -> Option<Role> {
        if !self.members.contains_key(key) {
            None
        } else if self.gov.dm.is_some() {
            Some(Role::Member)
        } else if self.gov.owner.eq_ignore_ascii_case(key) {
            Some(Role::Owner)
        } else if self.gov.moderators.contains(key) {
            Some(Role::Moderator)
        } else {
            Some(Role::Member)
        }
    }

    /// The members named in `text` as `@username`: as registered, in order of first
    /// appearance, each once, at most [`MAX_MENTIONS`]. `None` when there are none. A
    /// mention is `@` at the start or after a character that is not a username character,
    /// followed by a member's name that no username character follows.
    pub fn mentions(&self, text: &str) -> Option<Vec<String>> {
        if !text.contains('@') {
            return None;
        }
        let mut found: Vec<String> = Vec::new();
        let mut prev: Option<char> = None;
        for (i, c) in text.char_indices() {
            if c == '@' && !prev.is_some_and(is_name_char) {
                let rest = &text[i + 1..];
                let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
                let key = rest[..end].to_ascii_lowercase();
                if let Some(m) = self.members.get(&key) {
                    if !found.contains(&m.user.name) {
                        found.push(m.user.name.clone());
                        if found.len() == MAX_MENTIONS {
                            break;
                        }
                    }
                }
            }
            prev = Some(c);
        }
        (!found.is_empty()).then_some(found)
    }

    /// Marks the member `key` of a DM as not having acted in it yet (`true`), or as having
    /// acted (`false`: a message of theirs, or their own open). Returns whether it changed;
    /// a non-member, or a room that is not a DM, changes nothing.
    pub fn set_unanswered(&mut self, key: &str, unanswered: bool) -> bool {
        if self.gov.dm.is_none() {
            return false;
        }
        match self.members.get_mut(key) {
            Some(m) if m.unanswered != unanswered => {
                m.unanswered = unanswered;
                true
            }
            _ => false,
        }
    }

    /// Forgets the governance saved for the change `token` (from `Core::hold_gov`), which
    /// the store has kept.
    pub fn gov_kept(&mut self, token: u64) {
        self.gov_pending.retain(|(t, _)| *t != token);
    }

    /// The end of the user's mute, if one is running at `now`.
    pub fn muted_until(&self, key: &str, now: u64) -> Option<u64> {
        if self.gov.mutes.is_empty() {
            return None;
        }
        self.gov
            .mutes
            .get(key)
            .copied()
            .filter(|until| *until > now)
    }

    /// Appends the room's next entry; returns its seq.
    pub fn append(&mut self, entry: KeptEntry) -> u64 {
        self.last_seq += 1;
        self.msg_before.push(self.messages);
        let seq = self.last_seq;
        if entry.kind() == crate::protocol::EntryKind::Message {
            self.messages += 1;
            if entry.is_deleted() {
                self.deleted_msgs.insert(seq);
            }
            match self.own_msgs.get_mut(entry.from()) {
                Some(seqs) => seqs.push_back(seq),
                None => {
                    self.own_msgs
                        .insert(entry.from().to_string(), VecDeque::from([seq]));
                }
            }
        }
        if let Some(old) = self.ring.push(entry) {
            let first = self.first_seq();
            while self.deleted_msgs.first().is_some_and(|s| *s < first) {
                self.deleted_msgs.pop_first();
            }
            if old.kind() == crate::protocol::EntryKind::Message {
                if let Some(seqs) = self.own_msgs.get_mut(old.from()) {
                    seqs.pop_front();
                    if seqs.is_empty() {
                        self.own_msgs.remove(old.from());
                    }
                }
            }
        }
        seq
    }

    /// Kept, not deleted `message` entries with `read_seq < seq <= upto` that others than
    /// `me` (a name as registered) posted. `upto` is the last committed seq, as the view's
    /// `last_seq` shows.
    pub fn unread_for(&self, read_seq: u64, me: &str, upto: u64) -> u64 {
        let upto = upto.min(self.last_seq);
        if read_seq >= upto || self.ring.len() == 0 {
            return 0;
        }
        let first = self.first_seq();
        let from = read_seq.saturating_add(1).max(first);
        if from > upto {
            return 0;
        }
        let before = |seq: u64| {
            self.msg_before
                .get((seq - first) as usize)
                .copied()
                .unwrap_or(self.messages)
        };
        let total = before(upto + 1) - before(from);
        let deleted = self.deleted_msgs.range(from..=upto).count() as u64;
        let own = self.own_msgs.get(me).map_or(0, |mine| {
            let start = mine.partition_point(|s| *s < from);
            mine.range(start..)
                .take_while(|s| **s <= upto)
                .filter(|s| !self.deleted_msgs.contains(s))
                .count() as u64
        });
        total.saturating_sub(deleted).saturating_sub(own)
    }

    /// The kept entry with seq `seq`, to change it in place (an edit or deletion).
    pub fn entry(&self, seq: u64) -> Option<&KeptEntry> {
        if seq < self.first_seq() || seq > self.last_seq {
            return None;
        }
        self.ring.get((seq - self.first_seq()) as usize)
    }

    /// [`RoomState::entry`] to rewrite.
    pub fn entry_mut(&mut self, seq: u64) -> Option<&mut KeptEntry> {
        if seq < self.first_seq() || seq > self.last_seq {
            return None;
        }
        let i = (seq - self.first_seq()) as usize;
        self.ring.get_mut(i)
    }

    /// Marks the kept message `seq` deleted, for the unread counts.
    pub fn note_deleted(&mut self, seq: u64) {
        self.deleted_msgs.insert(seq);
    }

    /// Appends an entry read back from the journal with its seq. One already kept (a
    /// snapshot may hold entries the journal after it repeats) changes nothing; after a gap
    /// (which recovery never makes) the ring starts afresh, since its seqs must be
    /// consecutive. Returns whether it was appended.
    pub fn restore(&mut self, seq: u64, entry: KeptEntry) -> bool {
        if seq <= self.last_seq {
            return false;
        }
        if seq != self.last_seq + 1 {
            self.ring.clear();
            self.msg_before.clear();
            self.deleted_msgs.clear();
            self.own_msgs.clear();
            self.last_seq = seq - 1;
        }
        self.append(entry);
        true
    }

    /// Seq of the oldest kept entry; `last_seq + 1` when none is kept.
    pub fn first_seq(&self) -> u64 {
        self.last_seq + 1 - self.ring.len() as u64
    }

    /// Kept entries with `from < seq <= to` and their seqs, oldest first.
    pub fn entries_between(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, &KeptEntry)> {
        let first = self.first_seq();
        let start = from.saturating_add(1).max(first) - first;
        let end = to.min(self.last_seq).saturating_add(1).max(first) - first;
        self.ring
            .range(start as usize, end as usize)
            .enumerate()
            .map(move |(i, e)| (first + start + i as u64, e))
    }

    /// Every kept entry, oldest first, for a snapshot.
    pub fn kept(&self) -> Vec<KeptEntry> {
        self.ring.iter().cloned().collect()
    }

    pub fn subscribe(&mut self, conns: &[Arc<Conn>]) {
        let subs = Arc::make_mut(&mut self.subscribers);
        for c in conns {
            if !subs.iter().any(|s| s.id == c.id) {
                subs.push(c.clone());
            }
        }
    }

    pub fn unsubscribe(&mut self, conn_ids: &[u64]) {
        if self.subscribers.iter().any(|s| conn_ids.contains(&s.id)) {
            Arc::make_mut(&mut self.subscribers).retain(|s| !conn_ids.contains(&s.id));
        }
    }

    /// Unsubscribes every connection of a user (by lowercase name), closed ones included.
    pub fn unsubscribe_user(&mut self, key: &str) {
        if self.subscribers.iter().any(|s| s.user.key == key) {
            Arc::make_mut(&mut self.subscribers).retain(|s| s.user.key != key);
        }
    }
}

#[cfg(test)]
mod unread_tests {
    use super::*;
    use crate::protocol::EntryKind;

    fn msg(from: &str) -> KeptEntry {
        KeptEntry::new(1, EntryKind::Message, from, Some("hi"), None)
    }

    #[test]
    fn unread_leaves_out_own_deleted_and_uncommitted_messages_and_trimmed_ones() {
        let room = Room::new("r".into(), Governance::default(), 10, 4);
        let mut rs = room.lock();
        rs.append(KeptEntry::new(1, EntryKind::Join, "al", None, None)); // 1
        for from in ["bo", "al", "bo", "bo"] {
            rs.append(msg(from)); // 2..=5
        }
        // Kept: 2..=5. Bo's 2, 4, 5 are al's unread; al's own 3 is not.
        assert_eq!(rs.unread_for(0, "al", 5), 3);
        assert_eq!(rs.unread_for(3, "al", 5), 2);
        assert_eq!(rs.unread_for(0, "bo", 5), 1);
        // Only what is committed counts.
        assert_eq!(rs.unread_for(0, "al", 4), 2);
        rs.note_deleted(4);
        assert_eq!(rs.unread_for(0, "al", 5), 2);
        // Trimming drops seq 2 (the ring keeps 4).
        rs.append(msg("al")); // 6
        assert_eq!(rs.first_seq(), 3);
        assert_eq!(rs.unread_for(0, "al", 6), 1);
        assert_eq!(rs.unread_for(6, "al", 6), 0);
    }
}
