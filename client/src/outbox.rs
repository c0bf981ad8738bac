//! Messages (and server-side commands) the user sent that the server has not yet
//! acknowledged.
//!
//! Every `send` frame carries a nonce, unique for the life of the process (see
//! [`next_nonce`]). The acknowledgement is the `entry` echoing it (a message) or a `reply`
//! / `error` echoing it (a command or a refusal). A script at end of input waits until
//! this box is empty.
//!
//! Across a reconnect, a message sent on the old connection is *in doubt*: the server may
//! have appended it before the connection died. The server keeps the sender's nonce with
//! each entry and serves it back to that user in `history` frames, so
//! [`Outbox::settle`] recognises such a message by its nonce in the catch-up, whatever the
//! server made of its text (`//x` posts `/x`, blocked words are masked, text is trimmed).
//! Whatever is still in doubt once its room has caught up is sent again, with the same
//! nonce. Messages typed while offline are simply queued.
//!
//! An older server keeps no nonces. Until a `history` frame has carried one, an in-doubt
//! message is also matched by its text against our own new entries, as before nonces
//! were kept; that fallback cannot see through the server's changes to the text.
//!
//! Pacing: at most [`MAX_IN_FLIGHT`] item is unanswered at a time. When the server
//! answers `rate_limited`, everything waits for its `retry_after_ms`, and from then on
//! items go one at a time, spaced by the longest wait the server asked for (which is
//! about one token of its bucket), a little longer after each further refusal, until the
//! box is empty. A pasted page or a piped script so drains at about the server's rate
//! instead of hammering it: a client that kept sending far over the limit would be closed
//! with 1008.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::protocol::{nonce_str, Entry, EntryKind};

/// Most unacknowledged items. Default is 1,000: a paste of that many lines while offline
/// is kept; beyond it the user is told to wait rather than the client growing unbounded.
pub const MAX_PENDING: usize = 1000;

/// Most items sent and not yet answered. Default is 1 (stop and wait): it is the only
/// window that keeps messages in the order typed when the server refuses one for the rate
/// limit while later ones are already on the wire, and it costs one round trip per
/// message, far below the rate limit on any network a person chats over.
pub const MAX_IN_FLIGHT: usize = 1;

/// Shortest and longest spacing while paced. Defaults are 10 ms and 5 s.
const MIN_PACE: Duration = Duration::from_millis(10);
const MAX_PACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not sent on the current connection (offline, refused by the rate limit, or
    /// waiting for a slot).
    Queued,
    /// Sent on the current connection, no answer yet.
    Sent,
    /// Sent on a connection that has since dropped.
    InDoubt,
}

#[derive(Debug, Clone)]
pub struct Pending {
    pub nonce: String,
    pub room: String,
    pub text: String,
    pub state: State,
    /// Sent while paced: a refusal then means the pace is still too fast.
    paced: bool,
}

/// A nonce never used before by this process: 64 random bits drawn once per process,
/// and a counter. Nonces stay unique across logins in one run (the server keeps them with
/// the user's entries), and two clients of one user, which see each other's nonces in
/// their catch-ups, collide with odds of one in 2^64.
pub fn next_nonce() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| format!("{:016x}", rand::random::<u64>()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{prefix}-{n}")
}

#[derive(Debug, Default)]
pub struct Outbox {
    items: VecDeque<Pending>,
    /// A `history` frame has carried a nonce: the server keeps them, so matching by text
    /// is never needed.
    server_keeps_nonces: bool,
    /// Rate limited: send nothing before this moment.
    paused_until: Option<Instant>,
    /// Spacing between sends since the last refusal; `None` when not paced.
    pace: Option<Duration>,
    last_sent: Option<Instant>,
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox {
            items: VecDeque::new(),
            server_keeps_nonces: false,
            paused_until: None,
            pace: None,
            last_sent: None,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queue a new item; `None` when the box is full.
    pub fn push(&mut self, room: &str, text: &str) -> Option<String> {
        if self.items.len() >= MAX_PENDING {
            return None;
        }
        let nonce = next_nonce();
        self.items.push_back(Pending {
            nonce: nonce.clone(),
            room: room.to_owned(),
            text: text.to_owned(),
            state: State::Queued,
            paced: false,
        });
        Some(nonce)
    }

    /// The server answered `nonce`; returns the item if it was ours.
    pub fn ack(&mut self, nonce: &str) -> Option<Pending> {
        let i = self.items.iter().position(|p| p.nonce == nonce)?;
        let p = self.items.remove(i);
        if self.items.is_empty() {
            self.pace = None;
        }
        p
    }

    /// The server refused `nonce` for the rate limit and asked to wait `retry_after`.
    /// `None` if the nonce is not ours; `Some(true)` if this starts pacing (worth telling
    /// the user), `Some(false)` if pacing was already on.
    pub fn rate_limited(
        &mut self,
        nonce: &str,
        now: Instant,
        retry_after: Duration,
    ) -> Option<bool> {
        let p = self.items.iter_mut().find(|p| p.nonce == nonce)?;
        p.state = State::Queued;
        let step = retry_after.clamp(MIN_PACE, MAX_PACE);
        let starting = self.pace.is_none();
        self.pace = Some(match self.pace {
            None => step,
            Some(old) if p.paced => old.mul_f64(1.25).max(step).min(MAX_PACE),
            Some(old) => old.max(step),
        });
        let until = now + retry_after;
        if self.paused_until.is_none_or(|t| t < until) {
            self.paused_until = Some(until);
        }
        Some(starting)
    }

    /// Items to send now, in order, marked as sent. `ready(room)` says whether a room has
    /// caught up after a reconnect; an in-doubt item waits for that (its echo may be in
    /// the catch-up), and so does everything queued behind it.
    pub fn take_due(&mut self, now: Instant, ready: impl Fn(&str) -> bool) -> Vec<Pending> {
        if self.next_due().is_some_and(|t| t > now) {
            return Vec::new();
        }
        self.paused_until = None;
        let paced = self.pace.is_some();
        let mut in_flight = self.items.iter().filter(|p| p.state == State::Sent).count();
        let mut out = Vec::new();
        for p in self.items.iter_mut() {
            if in_flight >= MAX_IN_FLIGHT {
                break;
            }
            match p.state {
                State::Sent => continue,
                // Nothing overtakes a message still in doubt: order is kept.
                State::InDoubt if !ready(&p.room) => break,
                State::InDoubt | State::Queued => {}
            }
            p.state = State::Sent;
            p.paced = paced;
            in_flight += 1;
            out.push(p.clone());
        }
        if !out.is_empty() {
            self.last_sent = Some(now);
        }
        out
    }

    /// When [`Outbox::take_due`] may next send, if it is holding back.
    pub fn next_due(&self) -> Option<Instant> {
        let paced = match (self.pace, self.last_sent) {
            (Some(pace), Some(last)) => Some(last + pace),
            _ => None,
        };
        match (self.paused_until, paced) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The connection dropped: whatever was sent on it is now in doubt.
    pub fn connection_lost(&mut self) {
        for p in self.items.iter_mut() {
            if p.state == State::Sent {
                p.state = State::InDoubt;
            }
        }
    }

    /// A `history` frame for `room` arrived with `entries`. Every item whose nonce is on
    /// one of them reached the server and is done with, whatever its state. `me` and
    /// `after` (the highest seq shown before this frame) serve the text fallback for an
    /// older server. Returns how many items were settled.
    pub fn settle(&mut self, room: &str, entries: &[Entry], me: &str, after: u64) -> usize {
        let mut settled = 0;
        for n in entries.iter().filter_map(|e| e.nonce.as_ref()) {
            self.server_keeps_nonces = true;
            if self.ack(&nonce_str(n)).is_some() {
                settled += 1;
            }
        }
        if self.server_keeps_nonces {
            return settled;
        }
        let ours = entries.iter().filter(|e| {
            e.seq > after && e.kind == EntryKind::Message && e.from.eq_ignore_ascii_case(me)
        });
        for text in ours.filter_map(|e| e.text.as_deref()) {
            if self.settle_text(room, text) {
                settled += 1;
            }
        }
        settled
    }

    /// The text fallback: an in-doubt item of `room` whose text, trimmed, is `text`.
    fn settle_text(&mut self, room: &str, text: &str) -> bool {
        let text = text.trim();
        match self
            .items
            .iter()
            .position(|p| p.state == State::InDoubt && p.room == room && p.text.trim() == text)
        {
            Some(i) => {
                self.items.remove(i);
                if self.items.is_empty() {
                    self.pace = None;
                }
                true
            }
            None => false,
        }
    }

    /// Drop everything (logout); returns how many were dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        n
    }

    /// Drop the items of a room we left.
    pub fn drop_room(&mut self, room: &str) -> usize {
        let before = self.items.len();
        self.items.retain(|p| p.room != room);
        before - self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ack_removes() {
        let mut o = Outbox::new();
        let n = o.push("r", "hi").expect("room");
        assert_eq!(o.take_due(Instant::now(), |_| true).len(), 1);
        assert!(o.ack("unknown").is_none());
        assert_eq!(o.ack(&n).map(|p| p.text), Some("hi".to_owned()));
        assert!(o.is_empty());
    }

    #[test]
    fn sent_items_are_not_sent_twice() {
        let mut o = Outbox::new();
        o.push("r", "a");
        let now = Instant::now();
        assert_eq!(o.take_due(now, |_| true).len(), 1);
        assert!(o.take_due(now, |_| true).is_empty());
    }

    fn entry(seq: u64, from: &str, text: &str, nonce: Option<&str>) -> Entry {
        Entry {
            room: "r".into(),
            seq,
            ts: 0,
            kind: EntryKind::Message,
            from: from.into(),
            text: Some(text.into()),
            nonce: nonce.map(|n| n.into()),
            ..Entry::default()
        }
    }

    fn texts(v: &[Pending]) -> Vec<&str> {
        v.iter().map(|p| p.text.as_str()).collect()
    }

    #[test]
    fn in_doubt_items_settle_by_nonce_whatever_the_text() {
        let mut o = Outbox::new();
        let lit = o.push("r", "//literal").expect("room");
        o.push("r", "two");
        let now = Instant::now();
        o.take_due(now, |_| true);
        o.connection_lost();
        // Still catching up: nothing is resent yet.
        assert!(o.take_due(now, |_| false).is_empty());
        // The catch-up has the first as the server posted it, with its nonce; the text
        // of someone else's entry or a nonce not ours settles nothing.
        let catch_up = [
            entry(7, "al", "/literal", Some(&lit)),
            entry(8, "bo", "two", None),
            entry(9, "al", "two", Some("someone-else-1")),
        ];
        assert_eq!(o.settle("r", &catch_up, "al", 6), 1);
        assert_eq!(o.settle("r", &catch_up, "al", 6), 0, "settled once");
        // What the catch-up did not have goes again, with the nonce it had.
        let again = o.take_due(now, |_| true);
        assert_eq!(texts(&again), ["two"]);
        let two = again[0].nonce.clone();
        o.connection_lost();
        assert_eq!(o.take_due(now, |_| true)[0].nonce, two);
    }

    #[test]
    fn a_nonce_in_a_catch_up_settles_items_in_any_state() {
        let mut o = Outbox::new();
        let n = o.push("r", "typed offline").expect("room");
        assert_eq!(o.settle("r", &[entry(3, "al", "x", Some(&n))], "al", 0), 1);
        assert!(o.is_empty());
    }

    #[test]
    fn text_fallback_only_for_servers_that_keep_no_nonces() {
        // An older server: no nonce anywhere. Our own new message with the same text
        // (trimmed) settles the in-doubt item; older ones and others' do not.
        let mut o = Outbox::new();
        o.push("r", " one ");
        o.push("r", "two");
        o.take_due(Instant::now(), |_| true);
        o.connection_lost();
        let old_server = [
            entry(4, "al", "two", None),
            entry(6, "bo", "two", None),
            entry(7, "AL", "one", None),
        ];
        assert_eq!(o.settle("r", &old_server, "al", 5), 1);
        assert_eq!(texts(&o.take_due(Instant::now(), |_| true)), ["two"]);

        // Once the server has shown it keeps nonces, text proves nothing.
        let mut o = Outbox::new();
        o.push("r", "same words");
        o.take_due(Instant::now(), |_| true);
        o.connection_lost();
        assert_eq!(
            o.settle("r", &[entry(2, "al", "hi", Some("x-1"))], "al", 1),
            0
        );
        let other_device = [entry(3, "al", "same words", None)];
        assert_eq!(o.settle("r", &other_device, "al", 2), 0);
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn nonces_are_unique_for_the_process() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            // A new outbox per login: nonces do not start over.
            let mut o = Outbox::new();
            for i in 0..100 {
                let n = o.push("r", &i.to_string()).expect("room");
                assert!(seen.insert(n), "nonce repeated");
            }
        }
    }

    #[test]
    fn queued_items_do_not_wait_for_catch_up() {
        let mut o = Outbox::new();
        o.push("r", "typed offline");
        assert_eq!(o.take_due(Instant::now(), |_| false).len(), 1);
    }

    #[test]
    fn rate_limit_pauses_everything_then_resumes_in_order() {
        let mut o = Outbox::new();
        let a = o.push("r", "a").expect("room");
        o.push("r", "b");
        let now = Instant::now();
        assert_eq!(o.take_due(now, |_| true).len(), 1);
        let wait = Duration::from_millis(100);
        assert_eq!(o.rate_limited(&a, now, wait), Some(true));
        assert_eq!(o.rate_limited("nope", now, wait), None);
        o.push("r", "c");
        assert!(o.take_due(now, |_| true).is_empty());
        assert_eq!(o.next_due(), Some(now + wait));
        // Paced: one at a time, spaced by the wait the server asked for, in order.
        let mut t = now + wait;
        let mut texts = Vec::new();
        while !o.is_empty() {
            let sent = o.take_due(t, |_| true);
            assert_eq!(sent.len(), 1, "one at a time");
            assert!(o.take_due(t, |_| true).is_empty());
            texts.push(sent[0].text.clone());
            o.ack(&sent[0].nonce);
            t += wait;
        }
        assert_eq!(texts, ["a", "b", "c"]);
        // An empty box ends pacing.
        assert_eq!(o.next_due(), None);
        o.push("r", "d");
        assert_eq!(o.take_due(t, |_| true).len(), 1);
    }

    #[test]
    fn refusals_while_paced_slow_down_further() {
        let mut o = Outbox::new();
        o.push("r", "a");
        o.push("r", "b");
        let now = Instant::now();
        let wait = Duration::from_millis(100);
        let first = o.take_due(now, |_| true);
        assert_eq!(o.rate_limited(&first[0].nonce, now, wait), Some(true));
        let t = now + wait;
        let sent = o.take_due(t, |_| true);
        o.rate_limited(&sent[0].nonce, t, Duration::from_millis(10));
        // Waits at least the 100 ms pace, grown by a quarter: 125 ms after the last send.
        assert_eq!(o.next_due(), Some(t + Duration::from_millis(125)));
    }

    #[test]
    fn in_flight_is_bounded() {
        let mut o = Outbox::new();
        for i in 0..20 {
            o.push("r", &i.to_string());
        }
        let now = Instant::now();
        let first = o.take_due(now, |_| true);
        assert_eq!(first.len(), MAX_IN_FLIGHT);
        assert!(o.take_due(now, |_| true).is_empty());
        o.ack(&first[0].nonce);
        let next = o.take_due(now, |_| true);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].text, MAX_IN_FLIGHT.to_string());
    }

    #[test]
    fn bounded() {
        let mut o = Outbox::new();
        for i in 0..MAX_PENDING {
            assert!(o.push("r", &i.to_string()).is_some());
        }
        assert!(o.push("r", "one too many").is_none());
        assert_eq!(o.drop_room("r"), MAX_PENDING);
    }
}
