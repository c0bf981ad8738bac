// The WebSocket half: one connection per tab that reconnects by itself with back-off,
// catches every room up with `sync` from its last seq, and only then sends what was typed
// while offline (an outbox keyed by nonce, so nothing is sent twice). The outbox is handed
// to the page's save hook on every change, so it outlives a reload of the tab.

const MAX_BACKOFF_MS = 15000;
const CATCH_UP_TIMEOUT_MS = 10000;
/** How long past a heartbeat interval of silence (and a probe) a connection is given up. */
const PROBE_GRACE_MS = 10000;

/** A random nonce; crypto.getRandomValues also works on plain-HTTP origins. */
export function nonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class Link {
  /**
   * hooks: frame(f) for every frame from the server; state(s, detail) with s one of
   * 'connecting', 'syncing', 'online', 'offline', 'ended'; lastSeq(room) for the highest seq
   * the page holds of a room (or null); ack(nonce, frame) and fail(nonce, frame) for outbox items;
   * probeRoom() for a room {id, seq} to sync when the connection has been quiet (or null);
   * save(items) with the outbox as [{frame, since}] whenever it changes. `restored` is such a
   * list saved by an earlier page of this tab: it is sent after the first catch-up, unless its
   * nonces come back in the synced history.
   */
  constructor(token, hooks, restored = []) {
    this.token = token;
    this.hooks = hooks;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.ready = false;
    this.pendingSync = new Set();
    /**
     * nonce -> {frame, sent, tries, since} in the order typed; `since` is the highest seq of
     * the frame's room the page held then, so a catch-up from there sees it if it was posted.
     */
    this.outbox = new Map();
    for (const { frame, since } of restored) {
      if (frame && frame.nonce) this.outbox.set(frame.nonce, { frame, sent: false, tries: 0, since: since || 0 });
    }
    this.onWindowOnline = () => this.reconnectNow();
    window.addEventListener('online', this.onWindowOnline);
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener('online', this.onWindowOnline);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
  }

  reconnectNow() {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.timer);
    this.attempt = 0;
    this.open();
  }

  open() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/api/v1/ws?token=${encodeURIComponent(this.token)}`;
    this.ready = false;
    this.hooks.state('connecting');
    const ws = new WebSocket(url);
    this.ws = ws;
    let hello = false;
    let heartbeat = 20000;
    let lastHeard = Date.now();
    let lastProbe = 0;
    // The server's pings are invisible to script, so a quiet connection is asked for
    // something (a sync of the open room from its last seq); one that stays silent is dead
    // even if the browser has not noticed (a network that vanished without a close).
    const probe = setInterval(() => {
      if (this.ws !== ws) {
        clearInterval(probe);
        return;
      }
      if (!hello || ws.readyState !== WebSocket.OPEN) return;
      const now = Date.now();
      if (now - lastHeard > heartbeat + PROBE_GRACE_MS) {
        ws.onclose = null;
        ws.onmessage = null;
        ws.close(4000, 'no answer');
        this.lost(ws, 4000, hello);
      } else if (now - lastHeard > heartbeat && now - lastProbe > heartbeat) {
        const room = this.hooks.probeRoom();
        if (room) {
          lastProbe = now;
          this.raw({ type: 'sync', room: room.id, since: room.seq, nonce: `probe-${now}` });
        }
      }
    }, 1000);
    ws.onmessage = (ev) => {
      lastHeard = Date.now();
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (f.type === 'hello') {
        hello = true;
        heartbeat = f.heartbeat_ms || heartbeat;
        this.attempt = 0;
      }
      this.track(f);
      this.hooks.frame(f);
      if (f.type === 'hello') this.catchUp(f.rooms || []);
    };
    ws.onclose = (ev) => this.lost(ws, ev.code, hello);
  }

  /** The connection `ws` ended with `code`: reconnect after a back-off, unless told not to. */
  lost(ws, code, hello) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.ready = false;
    if (this.stopped) return;
    if (code === 4001) {
      this.hooks.state('ended');
      return;
    }
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.hooks.state('offline', { delay, hello, code });
    this.timer = setTimeout(() => this.open(), delay);
  }

  /** Asks for every room's missed entries; the outbox waits for the answers. */
  catchUp(rooms) {
    this.hooks.state('syncing');
    this.pendingSync = new Set();
    for (const room of rooms) {
      const known = this.hooks.lastSeq(room.id);
      let since = known ?? Math.max(0, (room.last_seq || 0) - 50);
      // Far enough back to see any outbox item of the room that was posted after all.
      const floor = this.floor(room.id);
      if (floor !== null) since = Math.min(since, floor);
      else if (known !== null && known !== undefined && known >= room.last_seq) continue;
      this.pendingSync.add(room.id);
      this.raw({ type: 'sync', room: room.id, since });
    }
    const ws = this.ws;
    setTimeout(() => {
      if (this.ws === ws && !this.ready) this.becomeReady();
    }, CATCH_UP_TIMEOUT_MS);
    if (this.pendingSync.size === 0) this.becomeReady();
  }

  /** The lowest `since` of the outbox items for `room`, or null when it has none. */
  floor(room) {
    let low = null;
    for (const item of this.outbox.values()) {
      if (item.frame.room === room && (low === null || item.since < low)) low = item.since;
    }
    return low;
  }

  save() {
    this.hooks.save([...this.outbox.values()].map(({ frame, since }) => ({ frame, since })));
  }

  /** Sees acknowledgements (live or in synced history) and the end of the catch-up. */
  track(f) {
    if (f.type === 'entry' || f.type === 'reply') {
      if (f.nonce && this.outbox.has(f.nonce)) {
        this.outbox.delete(f.nonce);
        this.save();
        this.hooks.ack(f.nonce, f);
      }
    } else if (f.type === 'history') {
      for (const e of f.entries || []) {
        if (e.nonce && this.outbox.has(e.nonce)) {
          this.outbox.delete(e.nonce);
          this.save();
          this.hooks.ack(e.nonce, e);
        }
      }
      if (this.pendingSync.has(f.room)) {
        const last = (f.entries || []).at(-1);
        if (f.more && last) {
          this.raw({ type: 'sync', room: f.room, since: last.seq });
        } else {
          this.pendingSync.delete(f.room);
          if (this.pendingSync.size === 0 && !this.ready) this.becomeReady();
        }
      }
    } else if (f.type === 'error' && f.nonce && this.outbox.has(f.nonce)) {
      const item = this.outbox.get(f.nonce);
      if ((f.code === 'rate_limited' || f.code === 'unavailable') && item.tries < 5) {
        item.tries += 1;
        setTimeout(() => this.raw(item.frame), f.retry_after_ms || 1000);
        return;
      }
      this.outbox.delete(f.nonce);
      this.save();
      this.hooks.fail(f.nonce, f);
    }
  }

  becomeReady() {
    this.ready = true;
    this.hooks.state('online');
    for (const item of this.outbox.values()) {
      item.sent = true;
      this.raw(item.frame);
    }
  }

  /** Sends a frame now if the socket is open; false otherwise (read, typing: not queued). */
  raw(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Queues a frame that must arrive once (send, edit, delete); returns its nonce. */
  post(frame) {
    const n = nonce();
    const item = { frame: { ...frame, nonce: n }, sent: false, tries: 0, since: this.hooks.lastSeq(frame.room) || 0 };
    this.outbox.set(n, item);
    this.save();
    if (this.ready) {
      item.sent = true;
      this.raw(item.frame);
    }
    return n;
  }

  /** A frame that only matters now (typing, read) once caught up. */
  now(frame) {
    return this.ready && this.raw(frame);
  }
}
