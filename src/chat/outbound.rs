//! A connection's bounded outbound queue.
//!
//! Broadcasts push shared, already-encoded frames here; the connection's task takes everything
//! pending at once and writes it in one syscall. The queue counts bytes until they are written,
//! so a peer that stops reading is closed with 4002 once it owes more than the limit, and the
//! frames queued for it are dropped at that moment: nobody else waits, and memory stays bounded
//! (by the limit, or by one frame for a peer that had read everything).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tungstenite::Bytes;

use crate::store::record::write_str;

/// Most users whose presence changes one connection holds unwritten. Beyond it the changes
/// are dropped and the connection is told everyone's current presence instead, once it
/// writes again: a reconnect storm costs each connection a bounded amount of memory.
pub(crate) const MAX_PENDING_PRESENCE: usize = 1024;

/// Why the server is closing a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

#[derive(Debug, Default)]
struct Queue {
    frames: Vec<Bytes>,
    /// Bytes queued or taken but not yet written.
    pending: usize,
    close: Option<Close>,
    /// Presence changes not yet written, by user (the address of their frames): the first
    /// state announced since the last write, and the latest. They are not counted against
    /// the limit.
    presence: PendingPresence,
    /// Too many presence changes were pending: tell the current presence of everyone.
    presence_resync: bool,
}

/// Pending presence by the address of a user's frames. The keys are pointers, which need no
/// protection against chosen collisions: a multiplicative hash is enough, and a storm makes
/// millions of these lookups.
type PendingPresence =
    HashMap<usize, (Arc<PresenceFrames>, bool, bool), BuildHasherDefault<PtrHasher>>;

/// Hashes one pointer-sized key by multiplying it by a large odd constant (Fibonacci hashing).
#[derive(Default)]
struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // Allocations are 16-byte aligned: drop the bits that never differ, so the low bits
        // the table indexes by stay distinct; the multiply fills the high bits it tags with.
        self.0 = ((n >> 4) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// What happened to a pushed frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The connection is closing; the frame was dropped.
    Closed,
    /// This frame pushed the connection over its limit; it is now closing with 4002.
    Overflow,
}

#[derive(Debug)]
pub struct Outbound {
    // A std mutex: held for a push or a swap, never across an await.
    queue: Mutex<Queue>,
    notify: Notify,
    limit: usize,
}

impl Outbound {
    pub fn new(limit: usize) -> Self {
        Outbound {
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame at the back.
    pub fn push(&self, frame: &Bytes) -> Pushed {
        self.push_at(frame, false)
    }

    /// Queues a frame before everything pending: used for `hello`, which must come first.
    pub fn push_front(&self, frame: &Bytes) -> Pushed {
        self.push_at(frame, true)
    }

    fn push_at(&self, frame: &Bytes, front: bool) -> Pushed {
        let mut q = self.lock();
        if q.close.is_some() {
            return Pushed::Closed;
        }
        // A connection with nothing unsent is keeping up, so it may take one frame larger than
        // the limit (a `/users` reply on a big server); otherwise the limit holds.
        if q.pending > 0 && q.pending + frame.len() > self.limit {
            q.close = Some(Close {
                code: super::wire::close::TOO_SLOW,
                reason: "too slow: output not read",
            });
            q.pending -= q.frames.iter().map(Bytes::len).sum::<usize>();
            q.frames = Vec::new();
            drop(q);
            self.notify.notify_one();
            return Pushed::Overflow;
        }
        let was_empty = q.frames.is_empty();
        q.pending += frame.len();
        if front {
            q.frames.insert(0, frame.clone());
        } else {
            q.frames.push(frame.clone());
        }
        drop(q);
        if was_empty {
            self.notify.notify_one();
        }
        Pushed::Queued
    }

    /// Queues a presence change of `user`. Changes coalesce per user until the connection
    /// writes: the latest state wins, and a user who went and came back (or came and went)
    /// since the last write is told as both changes, in order, so the change is not lost.
    pub fn push_presence(&self, user: &Arc<PresenceFrames>, online: bool) {
        let mut q = self.lock();
        if q.close.is_some() || q.presence_resync {
            return;
        }
        let was_idle = q.frames.is_empty() && q.presence.is_empty();
        let full = q.presence.len() >= MAX_PENDING_PRESENCE;
        match q.presence.get_mut(&(Arc::as_ptr(user) as usize)) {
            Some((_, _, latest)) => *latest = online,
            None if full => {
                q.presence = PendingPresence::default();
                q.presence_resync = true;
            }
            None => {
                let key = Arc::as_ptr(user) as usize;
                q.presence.insert(key, (user.clone(), online, online));
            }
        }
        drop(q);
        if was_idle {
            self.notify.notify_one();
        }
    }

    /// Counts `n` bytes the writer added itself (a presence resync) as taken, so that
    /// [`Outbound::written`] balances.
    pub fn taken_extra(&self, n: usize) {
        self.lock().pending += n;
    }

    /// Asks the connection to close with `code`; the first reason given wins.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut q = self.lock();
        if q.close.is_none() {
            q.close = Some(Close { code, reason });
        }
        drop(q);
        self.notify.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// Appends every pending frame (and pending presence) to `out`; reports whether a close
    /// was asked for, and whether presence changes overflowed since the last take, in which
    /// case the writer should add every room-mate's current presence (see
    /// [`MAX_PENDING_PRESENCE`]) and count it with [`Outbound::taken_extra`]. The bytes stay
    /// counted until [`Outbound::written`] says they left.
    pub fn take(&self, out: &mut Vec<u8>) -> (Option<Close>, bool) {
        let mut q = self.lock();
        let frames = std::mem::take(&mut q.frames);
        let presence = if q.presence.is_empty() {
            PendingPresence::default()
        } else {
            std::mem::take(&mut q.presence)
        };
        let resync = std::mem::take(&mut q.presence_resync);
        let close = q.close;
        drop(q);
        for f in &frames {
            out.extend_from_slice(f);
        }
        if !presence.is_empty() && close.is_none() {
            let start = out.len();
            for (frames, first, latest) in presence.values() {
                if first != latest {
                    out.extend_from_slice(frames.get(*first));
                }
                out.extend_from_slice(frames.get(*latest));
            }
            self.lock().pending += out.len() - start;
        }
        (close, resync && close.is_none())
    }

    /// `n` bytes taken earlier were written to the socket.
    pub fn written(&self, n: usize) {
        let mut q = self.lock();
        q.pending = q.pending.saturating_sub(n);
    }

    /// Waits until something is pushed or a close is asked for.
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}

/// A user's two `presence` frames, encoded once when the account is loaded and shared by
/// every connection that is told about them.
#[derive(Debug)]
pub struct PresenceFrames {
    online: Bytes,
    offline: Bytes,
}

impl PresenceFrames {
    pub(crate) fn new(user: &str) -> PresenceFrames {
        let frame = |online| {
            let mut out = Vec::new();
            presence_frame(&mut out, user, online);
            Bytes::from(out)
        };
        PresenceFrames {
            online: frame(true),
            offline: frame(false),
        }
    }

    pub(crate) fn get(&self, online: bool) -> &Bytes {
        if online {
            &self.online
        } else {
            &self.offline
        }
    }
}

/// Appends a `presence` frame.
pub(crate) fn presence_frame(out: &mut Vec<u8>, user: &str, online: bool) {
    let mut json = Vec::with_capacity(64);
    json.extend_from_slice(b"{\"type\":\"presence\",\"username\":");
    write_str(&mut json, user);
    json.extend_from_slice(if online {
        b",\"online\":true}".as_slice()
    } else {
        b",\"online\":false}"
    });
    out.extend_from_slice(&super::wire::text(&json));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_closes_and_frees_the_queue() {
        let out = Outbound::new(10);
        let f = Bytes::from_static(b"12345");
        assert_eq!(out.push(&f), Pushed::Queued);
        assert_eq!(out.push(&f), Pushed::Queued);
        assert_eq!(out.push(&f), Pushed::Overflow);
        assert_eq!(out.push(&f), Pushed::Closed);
        let mut buf = Vec::new();
        let close = out.take(&mut buf).0.map(|c| c.code);
        assert_eq!(close, Some(4002));
        assert!(buf.is_empty(), "queued frames are dropped on overflow");
    }

    #[test]
    fn a_caught_up_connection_may_take_one_large_frame() {
        let out = Outbound::new(10);
        let big = Bytes::from(vec![b'x'; 25]);
        assert_eq!(out.push(&big), Pushed::Queued);
        assert_eq!(out.push(&Bytes::from_static(b"1")), Pushed::Overflow);
    }

    #[test]
    fn written_bytes_make_room() {
        let out = Outbound::new(10);
        let f = Bytes::from_static(b"123456");
        assert_eq!(out.push(&f), Pushed::Queued);
        let mut buf = Vec::new();
        assert_eq!(out.take(&mut buf), (None, false));
        assert_eq!(
            out.push(&f),
            Pushed::Overflow,
            "taken bytes still count until written"
        );
        let out = Outbound::new(10);
        out.push(&f);
        out.take(&mut buf);
        out.written(6);
        assert_eq!(out.push(&f), Pushed::Queued);
        out.push_front(&Bytes::from_static(b"h"));
        buf.clear();
        out.take(&mut buf);
        assert_eq!(&buf[..2], b"h1");
    }

    fn presence_frames(out: &Outbound) -> Vec<(String, bool)> {
        let mut buf = Vec::new();
        out.take(&mut buf);
        let mut got = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let len = buf[pos + 1] as usize;
            let v: serde_json::Value =
                serde_json::from_slice(&buf[pos + 2..pos + 2 + len]).unwrap();
            got.push((
                v["username"].as_str().unwrap().to_string(),
                v["online"].as_bool().unwrap(),
            ));
            pos += 2 + len;
        }
        got.sort();
        got
    }

    #[test]
    fn presence_coalesces_per_user_and_keeps_a_bounce() {
        let out = Outbound::new(10);
        let (a, b) = (
            Arc::new(PresenceFrames::new("ann")),
            Arc::new(PresenceFrames::new("bob")),
        );
        for _ in 0..50 {
            out.push_presence(&a, true);
            out.push_presence(&a, false);
        }
        out.push_presence(&a, true);
        out.push_presence(&b, false);
        out.push_presence(&b, true);
        // The limit of 10 bytes is not reached by presence.
        assert_eq!(
            presence_frames(&out),
            vec![
                ("ann".into(), true),
                ("bob".into(), false),
                ("bob".into(), true)
            ]
        );
        assert!(presence_frames(&out).is_empty());
    }

    #[test]
    fn too_many_pending_users_ask_for_a_resync() {
        let out = Outbound::new(10);
        for i in 0..=MAX_PENDING_PRESENCE {
            out.push_presence(&Arc::new(PresenceFrames::new(&format!("u{i}"))), true);
        }
        let mut buf = Vec::new();
        assert_eq!(out.take(&mut buf), (None, true));
        assert!(buf.is_empty(), "the pending changes were dropped");
        assert_eq!(out.take(&mut buf), (None, false));
    }
}
