//! WebSocket connections as the core sees them: opening (with `hello`) and closing them,
//! queuing frames to one, closing all at shutdown, and the heartbeat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tungstenite::Bytes;

use super::outbound::Outbound;
use super::ratelimit::TokenBucket;
use super::wire as frame;
use super::{deliver_to, encode, now_ms, Auth, Conn, Core};
use crate::metrics::Metrics;
use crate::protocol::ServerFrame;

impl Core {
    /// Registers a new WebSocket connection: it subscribes to the user's rooms and its first
    /// frame is `hello`.
    pub fn open_conn(&self, auth: &Auth) -> Arc<Conn> {
        let burst = self.cfg.rate_burst.max(1);
        let conn = Arc::new(Conn {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            session: auth.session,
            user: auth.user.clone(),
            out: Outbound::new(self.cfg.max_outbound_bytes),
            last_recv: AtomicU64::new(now_ms()),
            abuse: Mutex::new(TokenBucket::full(burst * 3)),
        });
        let user = &auth.user;
        // A lapse of request-based presence not yet announced is announced first, so
        // room-mates see the user go and come back.
        self.refresh_presence(user);
        let rooms = {
            let mut us = user.lock();
            us.conns.push(conn.clone());
            let mut views = Vec::with_capacity(us.rooms.len());
            for id in &us.rooms {
                if let Some(room) = self.rooms.get(id) {
                    let mut rs = room.lock();
                    if rs.members.contains_key(&user.key) {
                        rs.subscribe(std::slice::from_ref(&conn));
                        views.push(room.view(&rs, &user.key));
                    }
                }
            }
            views
        };
        let hello = encode(&ServerFrame::Hello {
            username: &user.name,
            epoch: &self.epoch(),
            heartbeat_ms: self.cfg.heartbeat_interval.as_millis() as u64,
            rooms,
        });
        // Entries may already be queued behind it; `hello` still goes first.
        conn.out.push_front(&hello);
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn.id, conn.clone());
        Metrics::add(&self.metrics.websocket_connections, 1);
        self.refresh_presence(user);
        // The session may have ended while the upgrade was answered (a logout, a disable, a
        // password change): either `end_session` found this connection in `conns`, or this
        // finds the session gone and closes it the same way.
        if !self.sessions.contains(&auth.session) {
            conn.out.close(frame::close::SESSION_ENDED, "session ended");
            self.close_conn(&conn);
        }
        conn
    }

    pub fn close_conn(&self, conn: &Arc<Conn>) {
        let removed = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id);
        if removed.is_none() {
            return;
        }
        {
            let mut us = conn.user.lock();
            us.conns.retain(|c| c.id != conn.id);
            us.last_close = now_ms();
            for id in &us.rooms {
                if let Some(room) = self.rooms.get(id) {
                    room.lock().unsubscribe(&[conn.id]);
                }
            }
        }
        Metrics::sub(&self.metrics.websocket_connections, 1);
        self.refresh_presence(&conn.user);
    }

    /// Queues a frame for one connection.
    pub fn push(&self, conn: &Conn, frame: &Bytes) {
        deliver_to(&self.metrics, conn, frame);
    }

    /// Sends a server frame to one connection.
    pub fn send_frame(&self, conn: &Conn, f: &ServerFrame<'_>) {
        self.push(conn, &encode(f));
    }

    /// Asks every connection to close, for shutdown.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let conns: Vec<Arc<Conn>> = {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.values().cloned().collect()
        };
        for c in conns {
            c.out.close(code, reason);
        }
    }

    pub fn connection_count(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Pings every connection and closes those silent for three intervals.
    pub fn heartbeat(&self) {
        let now = now_ms();
        let limit = 3 * self.cfg.heartbeat_interval.as_millis() as u64;
        let conns: Vec<Arc<Conn>> = {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.values().cloned().collect()
        };
        for c in conns {
            if now.saturating_sub(c.last_recv.load(Ordering::Relaxed)) >= limit {
                c.out.close(frame::close::NORMAL, "heartbeat timeout");
            } else {
                let _ = c.out.push(&self.ping);
            }
        }
    }
}
