//! The invariants, as a user would notice their breach, and what the checker remembers of
//! each room between steps to judge them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::chat::Core;
use crate::protocol::EntryKind;

/// What a user would notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    /// A room's entries are served with consecutive seqs from `first_seq` to `last_seq`, and
    /// a seq once served always names the same entry (kind, sender, time).
    Seqs,
    /// No room has more members than its capacity.
    Capacity,
    /// No banned user is a member.
    Banned,
    /// No message of a muted user is accepted before the mute's end (by the mute's entry).
    Muted,
    /// A deleted message's text is never served again (kept entries, sync).
    DeletedText,
    /// Every acknowledged change survives a crash and nothing unacknowledged does: the state
    /// recovered from the journal equals the live state; a change whose record the store
    /// failed is answered `unavailable`.
    Durability,
    /// Replicas fed the same log (records through `apply`, or proposals through
    /// `execute`) hold the same state.
    Determinism,
}

/// An invariant found broken, and how.
#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.invariant, self.detail)
    }
}

pub fn violation(invariant: Invariant, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// What the checker remembers of one room.
#[derive(Default)]
struct Seen {
    /// Entries served so far (kept ones only): seq to (kind, sender, ts).
    ids: BTreeMap<u64, (EntryKind, String, u64)>,
    last_seq: u64,
    /// Entries whose effects were read, up to this seq.
    processed: u64,
    /// Mutes in force by the entries read: lowercase name to end (ts).
    mutes: HashMap<String, u64>,
    /// The texts each kept message had (its own, then its edits'), with the seq of the entry
    /// that carries each: the message or the `edit` entry.
    texts: HashMap<u64, Vec<(String, u64)>>,
    /// Texts of deleted messages, with the entry that carried them; forgotten once that entry
    /// is no longer kept (nothing can serve it then).
    deleted: HashMap<String, u64>,
}

#[derive(Default)]
pub struct Checker {
    rooms: HashMap<String, Seen>,
}

impl Checker {
    /// Checks room `id` of `core` (forgetting it once it is gone); `served` also reads its
    /// history as a member's sync gets it.
    pub fn room(&mut self, core: &Core, id: &str, served: bool) -> Result<(), Violation> {
        let Some(f) = core.sim_room(id, 0) else {
            self.rooms.remove(id);
            return Ok(());
        };
        if f.members.len() > f.capacity as usize {
            return Err(violation(
                Invariant::Capacity,
                format!(
                    "room {id} has {} members, capacity {}",
                    f.members.len(),
                    f.capacity
                ),
            ));
        }
        if let Some(b) = f.members.iter().find(|m| f.bans.contains(m)) {
            return Err(violation(
                Invariant::Banned,
                format!("{b} is banned from room {id} and a member"),
            ));
        }
        let seen = self.rooms.entry(id.to_string()).or_default();
        let seq_err = |d: String| Err(violation(Invariant::Seqs, format!("room {id}: {d}")));
        if f.first_seq == 0 || f.last_seq + 1 < f.first_seq {
            return seq_err(format!("first_seq {} last_seq {}", f.first_seq, f.last_seq));
        }
        if f.last_seq < seen.last_seq {
            return seq_err(format!(
                "last_seq went back from {} to {}",
                seen.last_seq, f.last_seq
            ));
        }
        seen.last_seq = f.last_seq;
        for (want, e) in (f.first_seq..).zip(&f.entries) {
            if e.seq != want {
                return seq_err(format!("served seq {} where {want} was due", e.seq));
            }
            let id_now = (e.kind, e.from.clone(), e.ts);
            match seen.ids.get(&e.seq) {
                Some(before) if *before != id_now => {
                    return seq_err(format!(
                        "seq {} was {before:?} and is now {id_now:?}",
                        e.seq
                    ));
                }
                Some(_) => {}
                None => {
                    seen.ids.insert(e.seq, id_now);
                }
            }
        }
        if let Some(last) = f.entries.last() {
            if last.seq != f.last_seq {
                return seq_err(format!(
                    "served up to {} of last_seq {}",
                    last.seq, f.last_seq
                ));
            }
        }
        while seen
            .ids
            .first_key_value()
            .is_some_and(|(s, _)| *s < f.first_seq)
        {
            seen.ids.pop_first();
        }
        // The effects of the entries not read yet, in order.
        let from = seen.processed;
        for e in f.entries.iter().filter(|e| e.seq > from) {
            let target = e
                .extra
                .target
                .as_deref()
                .unwrap_or_default()
                .to_ascii_lowercase();
            match e.kind {
                EntryKind::Mute => {
                    seen.mutes.insert(target, e.extra.until.unwrap_or(0));
                }
                EntryKind::Unmute | EntryKind::Ban => {
                    seen.mutes.remove(&target);
                }
                EntryKind::Message => {
                    let from = e.from.to_ascii_lowercase();
                    if let Some(until) = seen.mutes.get(&from) {
                        if e.ts < *until {
                            return Err(violation(
                                Invariant::Muted,
                                format!(
                                    "room {id}: seq {} from {} at {} though muted until {until}",
                                    e.seq, e.from, e.ts
                                ),
                            ));
                        }
                    }
                    if let Some(t) = &e.text {
                        seen.texts.insert(e.seq, vec![(t.clone(), e.seq)]);
                    }
                }
                EntryKind::Delete => {
                    if let Some(texts) = e.extra.refers.and_then(|s| seen.texts.remove(&s)) {
                        seen.deleted.extend(texts);
                    }
                }
                EntryKind::Edit => {
                    if let (Some(s), Some(t)) = (e.extra.refers, &e.text) {
                        if let Some(texts) = seen.texts.get_mut(&s) {
                            texts.push((t.clone(), e.seq));
                        }
                    }
                }
                _ => {}
            }
            seen.processed = e.seq;
        }
        seen.processed = seen.processed.max(f.last_seq);
        let first = f.first_seq;
        seen.texts
            .retain(|_, texts| texts.iter().any(|(_, at)| *at >= first));
        seen.deleted.retain(|_, at| *at >= first);
        for e in &f.entries {
            if let Some(t) = e.text.as_ref().filter(|t| seen.deleted.contains_key(*t)) {
                return Err(violation(
                    Invariant::DeletedText,
                    format!(
                        "room {id}: seq {} ({:?}, ref {:?}) serves the deleted text {t:?}; kept seqs {}..={}",
                        e.seq, e.kind, e.extra.refers, f.first_seq, f.last_seq
                    ),
                ));
            }
        }
        if served && !seen.deleted.is_empty() {
            if let Some(member) = core.sim_some_member(id) {
                if let Ok(frame) = core.sync_frame(&member, id, 0) {
                    let text = String::from_utf8_lossy(&frame);
                    if let Some(t) = seen.deleted.keys().find(|t| text.contains(t.as_str())) {
                        return Err(violation(
                            Invariant::DeletedText,
                            format!(
                                "room {id}: {}'s sync serves the deleted text {t:?}",
                                member.name
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks every room of `core`, and forgets the rooms it no longer has.
    pub fn all_rooms(&mut self, core: &Core) -> Result<(), Violation> {
        let ids = core.sim_room_ids();
        let keep: HashSet<&String> = ids.iter().collect();
        self.rooms.retain(|id, _| keep.contains(id));
        for id in &ids {
            self.room(core, id, true)?;
        }
        Ok(())
    }
}
