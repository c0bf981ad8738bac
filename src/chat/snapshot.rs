//! The state as snapshot records, read from the live core on the journal's snapshot thread.
//!
//! Nothing stops for a snapshot. The stream first copies what it needs room by room (each
//! room's lock is held for as long as it takes to clone its members' names and its kept
//! entries, which are `Arc`s), then the users (with their disabled flags), the live invite
//! codes and the sessions, and encodes one record at a time as the snapshot thread pulls them. Rooms are read before users so that every member a
//! room names is among the users; the journal after the snapshot repeats whatever changed
//! meanwhile, and replaying a record the snapshot already holds changes nothing.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{hex, Core, Record};
use crate::store::snapshot::{encode, encode_kept, BATCH_ENTRIES};
use crate::store::KeptEntry;

impl Core {
    /// Compacts the journal once it has grown past `--compact-bytes`; the state is read on
    /// the snapshot thread, not here.
    pub fn compact_if_due(self: &Arc<Self>) {
        let core = Arc::clone(self);
        self.store
            .compact_if_due(move || Box::new(SnapshotStream { core, state: None }));
    }

    /// The state as snapshot records, copied now and encoded as they are pulled: cluster
    /// mode takes it on the stream's reader, between two changes of the log.
    pub fn snapshot_now(self: &Arc<Self>) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
        SnapshotStream {
            core: Arc::clone(self),
            state: Some(SnapshotStream::copy(self)),
        }
    }
}

/// A room as copied for the snapshot: its record and its kept entries.
struct RoomCopy {
    id: String,
    entries: Vec<KeptEntry>,
    next: usize,
}

struct Copied {
    /// Encoded records still to hand out: the header, users and sessions, then the current
    /// room's record.
    ready: VecDeque<Vec<u8>>,
    rooms: std::vec::IntoIter<(Record, RoomCopy)>,
    current: Option<RoomCopy>,
}

struct SnapshotStream {
    core: Arc<Core>,
    /// Copied on the first pull, on the snapshot thread.
    state: Option<Copied>,
}

impl SnapshotStream {
    fn copy(core: &Core) -> Copied {
        let mut rooms = Vec::new();
        for room in core.rooms.all() {
            let rs = room.lock();
            let entries = rs.kept();
            let (members, gov) = governance_record(&rs);
            let rec = Record::RoomSnapshot {
                id: room.id.clone(),
                name: rs.gov.name.clone(),
                owner: rs.gov.owner.clone(),
                capacity: room.capacity,
                last_seq: rs.last_seq,
                members,
                entries: Vec::new(),
                kept: entries.len() as u64,
                gov: Some(Box::new(gov)),
            };
            let copy = RoomCopy {
                id: room.id.clone(),
                entries,
                next: 0,
            };
            rooms.push((rec, copy));
        }
        let mut ready = VecDeque::new();
        ready.push_back(encode(&Record::Epoch {
            epoch: core.epoch(),
        }));
        let last_run = core
            .last_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(run) = last_run {
            ready.push_back(encode(&Record::Started {
                boot_id: run.boot_id,
                fsync: run.fsync,
            }));
        }
        // Whoever is online counts as seen now: after a crash they show when the snapshot
        // was taken, at least.
        let now = super::now_ms();
        let mut seen = Vec::new();
        for u in &core.all_users() {
            let (hash, disabled) = {
                let us = u.lock();
                let at = if us.online { Some(now) } else { us.last_seen };
                seen.extend(at.map(|at| (u.name.clone(), at)));
                (us.hash.clone(), us.disabled)
            };
            ready.push_back(encode(&Record::UserRegistered {
                username: u.name.clone(),
                hash,
                ts: 0,
            }));
            if disabled {
                ready.push_back(encode(&Record::UserDisabled {
                    username: u.name.clone(),
                    disabled,
                }));
            }
        }
        ready.extend(super::presence::last_seen_records(&seen).map(|r| encode(&r)));
        ready.extend(core.invite_records().iter().map(encode));
        let sessions: Vec<Record> = core
            .sessions()
            .iter()
            .map(|(hash, s)| Record::SessionStarted {
                token_hash: hex(hash),
                username: s.user.name.clone(),
                created: s.created,
            })
            .collect();
        ready.extend(sessions.iter().map(encode));
        let blocks: Vec<Record> = {
            let blocks = core.blocks.read().unwrap_or_else(|e| e.into_inner());
            blocks
                .iter()
                .flat_map(|(who, set)| {
                    set.iter().map(move |target| Record::Blocked {
                        username: who.clone(),
                        target: target.clone(),
                        blocked: true,
                    })
                })
                .collect()
        };
        ready.extend(blocks.iter().map(encode));
        Copied {
            ready,
            rooms: rooms.into_iter(),
            current: None,
        }
    }
}

impl Iterator for SnapshotStream {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let core = &self.core;
        let state = self.state.get_or_insert_with(|| Self::copy(core));
        loop {
            if let Some(rec) = state.ready.pop_front() {
                return Some(rec);
            }
            if let Some(room) = &mut state.current {
                if room.next < room.entries.len() {
                    let end = (room.next + BATCH_ENTRIES).min(room.entries.len());
                    let batch = encode_kept(&room.id, &room.entries[room.next..end]);
                    room.next = end;
                    return Some(batch);
                }
            }
            let (rec, copy) = state.rooms.next()?;
            state.ready.push_back(encode(&rec));
            state.current = Some(copy);
        }
    }
}

/// A room's members in the order they joined, and its governance, as a snapshot record
/// keeps them.
fn governance_record(
    rs: &super::rooms::RoomState,
) -> (Vec<String>, crate::store::record::GovernanceRecord) {
    let mut members: Vec<&super::rooms::Member> = rs.members.values().collect();
    members.sort_by_key(|m| m.since);
    let now = super::now_ms();
    let names = members.iter().map(|m| m.user.name.clone()).collect();
    let read = members.iter().map(|m| m.read_seq).collect();
    let gov = crate::store::record::GovernanceRecord {
        visibility: rs.gov.visibility,
        topic: rs.gov.topic.clone(),
        joined: members.iter().map(|m| m.since).collect(),
        moderators: rs.gov.moderators.iter().cloned().collect(),
        bans: rs.gov.bans.values().cloned().collect(),
        mutes: rs
            .gov
            .mutes
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(k, until)| (k.clone(), *until))
            .collect(),
        invites: rs
            .gov
            .invites
            .iter()
            .map(|(k, by)| (k.clone(), by.clone()))
            .collect(),
        dm: rs.gov.dm.clone(),
        read,
        unanswered: members
            .iter()
            .filter(|m| m.unanswered)
            .map(|m| m.user.name.clone())
            .collect(),
    };
    (names, gov)
}
