// Parley's browser client: sign-in, the room list, the open room's log and the composer.
// State lives in memory; the session token in sessionStorage (see docs/BROWSER.md).

import { makeApi, enc, ApiError } from './api.js';
import { Link } from './socket.js';
import { el, clear, messageText, clock } from './view.js';

const $ = (id) => document.getElementById(id);
const TYPING_SEND_MS = 2000;
const TYPING_SHOW_MS = 4000;
const PAGE = 50;

const S = {
  token: sessionStorage.getItem('parley.token'),
  username: sessionStorage.getItem('parley.username'),
  admin: false,
  epoch: null,
  link: null,
  /** id -> {room, entries: Map seq -> entry, oldest, complete, typing: Map, members} */
  rooms: new Map(),
  current: null,
  /** lowercase username -> online */
  presence: new Map(),
  invites: [],
  /** {room, seq} while the composer edits a message */
  editing: null,
  lastTypingSent: 0,
  /** counts connection attempts: a room remembers the one during which it was added */
  gen: 0,
  /** nonce -> {room, text, node} shown greyed until acknowledged */
  pending: new Map(),
  loadingOlder: false,
  /** room id to open when its `joined` frame arrives */
  openOnJoin: null,
};

const api = makeApi(() => S.token, () => sessionEnded('Your session has ended; please log in again.'));

// ---------------------------------------------------------------- sign-in

function showSignin(message = '') {
  $('chat').hidden = true;
  $('signin').hidden = false;
  $('signin-status').textContent = message;
  $('signin-status').classList.toggle('error', Boolean(message));
  $('username').focus();
}

async function signin(register) {
  const username = $('username').value.trim();
  const password = $('password').value;
  const status = $('signin-status');
  status.classList.remove('error');
  if (!username || !password) {
    status.textContent = 'Enter a username and a password.';
    status.classList.add('error');
    return;
  }
  status.textContent = register ? 'Creating your account…' : 'Logging in…';
  try {
    if (register) {
      const body = { username, password };
      const code = $('invite-code').value.trim();
      if (!$('invite-field').hidden && code) body.invite_code = code;
      await api.post('/register', body);
      // The code is spent: a reload must not offer it again.
      if (location.search) history.replaceState(null, '', location.pathname);
      $('invite-code').value = '';
      $('invite-field').hidden = true;
    }
    const r = await api.post('/login', { username, password });
    S.token = r.token;
    S.username = r.username;
    sessionStorage.setItem('parley.token', r.token);
    sessionStorage.setItem('parley.username', r.username);
    $('password').value = '';
    status.textContent = '';
    await startChat();
  } catch (e) {
    status.classList.add('error');
    status.textContent = signinError(e);
    if (e.code === 'invite_required') {
      $('invite-field').hidden = false;
      $('invite-code').focus();
    }
  }
}

function signinError(e) {
  const messages = {
    invalid_credentials: 'Wrong username or password.',
    username_taken: 'That username is taken.',
    invalid_username: 'Usernames are 3 to 32 letters, digits, _ or -.',
    too_many_attempts: 'Too many attempts; try again later.',
    invite_required: 'Registering here needs an invite code: enter a valid one and press Register.',
    registration_closed: 'Registration is closed: an administrator creates the accounts.',
    account_disabled: 'This account is disabled.',
  };
  return messages[e.code] || e.message;
}

function sessionEnded(message) {
  if (!S.token) return;
  stopChat();
  showSignin(message);
}

function stopChat() {
  if (S.link) S.link.stop();
  S.link = null;
  S.token = null;
  sessionStorage.removeItem('parley.token');
  sessionStorage.removeItem('parley.username');
  sessionStorage.removeItem('parley.outbox');
  S.rooms.clear();
  S.current = null;
  S.pending.clear();
  S.invites = [];
  S.epoch = null;
  S.admin = false;
  $('admin').hidden = true;
}

async function logout() {
  try {
    await api.post('/logout');
  } catch {
    // Logged out already, or unreachable: forget the token either way.
  }
  stopChat();
  showSignin('You are logged out.');
  $('signin-status').classList.remove('error');
}

// ---------------------------------------------------------------- chat start

async function startChat() {
  $('signin').hidden = true;
  $('chat').hidden = false;
  $('me').textContent = `Signed in as ${S.username}`;
  $('notify').hidden = !('Notification' in window) || Notification.permission !== 'default';
  try {
    const me = await api.get('/me');
    S.admin = me.admin === true;
    S.username = me.username;
    for (const r of me.rooms) upsertRoom(r);
    S.invites = me.invites || [];
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
  }
  $('admin').hidden = !S.admin;
  renderRooms();
  renderInvites();
  for (const R of S.rooms.values()) if (R.room.kind === 'dm') loadPresence(dmPeer(R.room));
  const restored = restoreOutbox();
  const want = sessionStorage.getItem('parley.room');
  if (want && S.rooms.has(want)) openRoom(want);
  else if (S.rooms.size) openRoom(sortedRooms()[0].room.id);
  S.link = new Link(S.token, {
    frame: onFrame,
    state: onLinkState,
    lastSeq: (id) => {
      const R = S.rooms.get(id);
      return R && R.entries.size ? R.last : null;
    },
    ack: onAck,
    fail: onFail,
    probeRoom: () => {
      const R = S.rooms.get(S.current) || S.rooms.values().next().value;
      return R ? { id: R.room.id, seq: R.last || R.room.last_seq || 0 } : null;
    },
    save: saveOutbox,
  }, restored);
  S.link.start();
}

function onLinkState(state, detail) {
  const conn = $('conn');
  conn.classList.toggle('offline', state === 'offline');
  if (state === 'online') {
    conn.textContent = '';
    markRead();
  } else if (state === 'connecting') {
    S.gen += 1;
    conn.textContent = 'Connecting…';
  }
  else if (state === 'syncing') conn.textContent = 'Catching up…';
  else if (state === 'offline') {
    conn.textContent = `Offline; reconnecting in ${Math.ceil(detail.delay / 1000)} s`;
    if (!detail.hello) {
      // Never got a hello: perhaps the token is gone (the upgrade answered 401).
      api.get('/me').catch(() => {});
    }
  } else if (state === 'ended') sessionEnded('Your session has ended; please log in again.');
}

// ---------------------------------------------------------------- rooms

function upsertRoom(room) {
  let R = S.rooms.get(room.id);
  if (!R) {
    R = { room, entries: new Map(), last: 0, oldest: null, complete: false, typing: new Map(), members: null, gen: S.gen };
    S.rooms.set(room.id, R);
  } else {
    const { unread, read_seq: _, ...rest } = room;
    R.room = { ...R.room, ...rest };
    if (unread !== undefined) applyCounts(R, room);
  }
  return R;
}

/**
 * Takes the unread count of a Room the server sent, which counted up to its `last_seq`: live
 * entries this tab got after that are added, and an answer older than this tab's own read
 * marker (a read frame still on its way) is ignored.
 */
function applyCounts(R, r) {
  const serverRead = r.read_seq || 0;
  if (serverRead < (R.room.read_seq || 0)) return;
  const me = S.username.toLowerCase();
  const counts = (e) => e.kind === 'message' && !e.deleted && e.from.toLowerCase() !== me;
  // Holding every entry after the marker, the tab counts them itself: the server's count
  // may already include an entry its answer's last_seq does not (one not yet committed).
  const contiguous = R.oldest !== null && R.last - R.oldest + 1 === R.entries.size;
  let unread;
  if (contiguous && R.oldest <= serverRead + 1) {
    unread = 0;
    for (const e of R.entries.values()) if (e.seq > serverRead && counts(e)) unread += 1;
  } else {
    unread = r.unread || 0;
    for (const e of R.entries.values()) if (e.seq > (r.last_seq || 0) && e.seq > serverRead && counts(e)) unread += 1;
  }
  R.room.unread = unread;
  R.room.read_seq = serverRead;
}

function removeRoom(id, why) {
  S.rooms.delete(id);
  if (S.current === id) {
    S.current = null;
    const next = sortedRooms()[0];
    if (next) openRoom(next.room.id);
    else renderRoom();
    if (why) notice(why, true);
  }
  renderRooms();
}

function roomLabel(room) {
  if (room.kind === 'dm') return dmPeer(room) || room.name;
  return room.name;
}

function dmPeer(room) {
  const names = room.name.split(', ');
  return names.find((n) => n.toLowerCase() !== S.username.toLowerCase()) || names[0];
}

function sortedRooms() {
  return [...S.rooms.values()].sort((a, b) => roomLabel(a.room).localeCompare(roomLabel(b.room)));
}

/** The room list's items by room id: kept across renders, so a click never lands on a replaced button. */
const roomItems = new Map();

function renderRooms() {
  const list = $('rooms');
  const shown = sortedRooms();
  const ids = new Set(shown.map((R) => R.room.id));
  for (const [id, li] of roomItems) {
    if (!ids.has(id)) {
      li.remove();
      roomItems.delete(id);
    }
  }
  let prev = null;
  for (const R of shown) {
    const r = R.room;
    let li = roomItems.get(r.id);
    if (!li) {
      li = el('li', {}, el('button', {
        type: 'button',
        dataset: { room: r.id },
        onclick: () => {
          openRoom(r.id);
          $('chat').classList.remove('show-side');
          $('message').focus();
        },
      }));
      roomItems.set(r.id, li);
    }
    const button = li.firstChild;
    const unread = r.unread || 0;
    const on = r.kind === 'dm' && Boolean(S.presence.get(dmPeer(r).toLowerCase()));
    // Only what changed is redrawn: a catch-up of many rooms renders the list many times.
    const look = JSON.stringify([roomLabel(r), r.kind, r.visibility, on, unread]);
    if (button.dataset.look !== look) {
      button.dataset.look = look;
      clear(button);
      if (r.kind === 'dm') {
        button.append(el('span', { class: `dot${on ? ' on' : ''}`, title: on ? 'online' : 'offline', 'aria-hidden': 'true' }));
      } else if (r.visibility === 'private') {
        button.append(el('span', { class: 'lock', title: 'private room', 'aria-hidden': 'true' }));
      } else {
        button.append(el('span', { 'aria-hidden': 'true' }, '#'));
      }
      button.append(el('span', { class: 'name' }, roomLabel(r)));
      if (unread > 0) button.append(el('span', { class: 'badge', title: `${unread} unread` }, String(unread)));
    }
    if (S.current === r.id) button.setAttribute('aria-current', 'page');
    else button.removeAttribute('aria-current');
    const at = prev ? prev.nextSibling : list.firstChild;
    if (at !== li) list.insertBefore(li, at);
    prev = li;
  }
  const total = [...S.rooms.values()].reduce((n, R) => n + (R.room.unread || 0), 0);
  document.title = total ? `(${total}) Parley` : 'Parley';
  // On a phone the list hides behind ☰, so the button carries the total.
  $('menu').textContent = total ? `☰ ${total}` : '☰';
}

function openRoom(id) {
  S.current = id;
  sessionStorage.setItem('parley.room', id);
  cancelEdit();
  const R = S.rooms.get(id);
  renderRooms();
  renderRoom();
  if (R && !R.complete && R.entries.size < PAGE) loadOlder();
  if (R && !R.members) loadMembers(id);
  markRead();
}

function isMod(R) {
  return R && (R.room.role === 'owner' || R.room.role === 'moderator');
}

function renderRoom() {
  const R = S.rooms.get(S.current);
  const log = $('log');
  clear(log);
  $('room-tools').hidden = !R;
  if (!R) {
    $('room-name').textContent = 'No room open';
    $('room-topic').textContent = '';
    log.append(el('p', { class: 'empty' }, 'Pick a room on the left, or make one with New room.'));
    renderMembers();
    return;
  }
  renderHead();
  if (R.oldest !== null && !R.complete) {
    log.append(el('p', { class: 'more' }, el('button', { type: 'button', class: 'small', onclick: loadOlder }, 'Load earlier messages')));
  }
  const seqs = [...R.entries.keys()].sort((a, b) => a - b);
  for (const seq of seqs) {
    const node = entryNode(R, R.entries.get(seq));
    if (node) log.append(node);
  }
  for (const p of S.pending.values()) if (p.room === R.room.id) log.append(p.node);
  log.scrollTop = log.scrollHeight;
  renderTyping();
  renderMembers();
}

function renderHead() {
  const R = S.rooms.get(S.current);
  if (!R) return;
  const r = R.room;
  $('room-name').textContent = r.kind === 'dm' ? `${roomLabel(r)} (direct messages)` : r.name;
  $('room-topic').textContent = r.topic || '';
  $('room-settings').hidden = !(isMod(R) || (r.kind === 'dm'));
  $('invite-user').hidden = r.kind === 'dm' || (r.visibility === 'private' && !isMod(R));
}

// ---------------------------------------------------------------- entries

const SYSTEM = {
  join: (e) => `${e.from} joined`,
  leave: (e) => `${e.from} left`,
  kick: (e) => `${e.from} removed ${e.target}${e.text ? `: ${e.text}` : ''}`,
  ban: (e) => `${e.from} banned ${e.target}${e.text ? `: ${e.text}` : ''}`,
  unban: (e) => `${e.from} lifted the ban on ${e.target}`,
  mute: (e) => `${e.from} muted ${e.target} until ${clock(e.until)}`,
  unmute: (e) => `${e.from} unmuted ${e.target}`,
  role: (e) => `${e.from} made ${e.target} ${e.text}`,
  update: (e) => {
    const c = e.changes || {};
    const parts = [];
    if ('name' in c) parts.push(`renamed the room to “${c.name}”`);
    if ('topic' in c) parts.push(c.topic ? `set the topic to “${c.topic}”` : 'cleared the topic');
    if ('visibility' in c) parts.push(`made the room ${c.visibility}`);
    return `${e.from} ${parts.join(', ') || 'changed the room'}`;
  },
};

function nameButton(name) {
  return el('button', { type: 'button', class: 'link from', onclick: () => userMenu(name) }, name);
}

function entryNode(R, e) {
  if (e.kind === 'edit' || e.kind === 'delete') return null;
  const time = el('time', { datetime: new Date(e.ts).toISOString() }, clock(e.ts));
  const attrs = { class: 'entry', dataset: { seq: String(e.seq) } };
  if (e.kind === 'message') {
    const mine = e.from.toLowerCase() === S.username.toLowerCase();
    const mentioned = (e.mentions || []).some((m) => m.toLowerCase() === S.username.toLowerCase());
    attrs.class += `${mine ? ' mine' : ''}${mentioned ? ' mentioned' : ''}${e.deleted ? ' deleted' : ''}`;
    let body;
    if (e.deleted) body = el('span', { class: 'body' }, 'message deleted');
    else if (e.action) body = el('span', { class: 'body action' }, '* ', nameButton(e.from), ' ', messageText(e.text || '', e.mentions));
    else body = el('span', { class: 'body' }, nameButton(e.from), ': ', messageText(e.text || '', e.mentions));
    if (e.edited && !e.deleted) body.append(' ', el('span', { class: 'edited' }, '(edited)'));
    const tools = el('span', { class: 'tools' });
    if (!e.deleted && mine) tools.append(el('button', { type: 'button', class: 'small', onclick: () => startEdit(R.room.id, e.seq) }, 'Edit'));
    if (!e.deleted && (mine || isMod(R))) tools.append(el('button', { type: 'button', class: 'small', onclick: () => deleteMessage(R.room.id, e.seq) }, 'Delete'));
    return el('div', attrs, time, body, tools);
  }
  const describe = SYSTEM[e.kind];
  if (!describe) return null;
  attrs.class += ' system';
  return el('div', attrs, time, el('span', { class: 'body' }, describe(e)), el('span'));
}

/** Merges entries into a room; returns the ones that were new. Dedupes by seq. */
function mergeEntries(R, entries) {
  const fresh = [];
  for (const e of entries) {
    if (R.entries.has(e.seq)) continue;
    R.entries.set(e.seq, e);
    fresh.push(e);
    if (e.seq > R.last) R.last = e.seq;
    if (R.oldest === null || e.seq < R.oldest) R.oldest = e.seq;
    if (e.seq === 1) R.complete = true;
    if (e.kind === 'edit' && e.ref) {
      const m = R.entries.get(e.ref);
      if (m && !m.deleted && e.text !== undefined) {
        m.text = e.text;
        m.mentions = e.mentions;
        m.edited = true;
      }
    } else if (e.kind === 'delete' && e.ref) {
      const m = R.entries.get(e.ref);
      if (m) {
        m.deleted = true;
        delete m.text;
      }
    }
  }
  return fresh;
}

function replaceEntryNode(R, seq) {
  if (S.current !== R.room.id) return;
  const old = $('log').querySelector(`[data-seq="${seq}"]`);
  const e = R.entries.get(seq);
  if (!old || !e) return;
  const node = entryNode(R, e);
  if (node) old.replaceWith(node);
}

function atBottom() {
  const log = $('log');
  return log.scrollHeight - log.scrollTop - log.clientHeight < 60;
}

/** A live entry (or one a sync brought): store it, show it, count it. */
function liveEntry(e) {
  const R = S.rooms.get(e.room);
  if (!R) return;
  const fresh = mergeEntries(R, [e]);
  if (!fresh.length) return;
  if (e.seq > (R.room.last_seq || 0)) R.room.last_seq = e.seq;
  afterNew(R, fresh);
}

function afterNew(R, fresh) {
  const me = S.username.toLowerCase();
  const viewing = S.current === R.room.id;
  const stick = viewing && atBottom();
  let unreadChanged = false;
  for (const e of fresh) {
    if (e.kind === 'edit' || e.kind === 'delete') {
      replaceEntryNode(R, e.ref);
      if (e.kind === 'delete' && e.ref > (R.room.read_seq || 0)) refreshRoom(R.room.id);
      continue;
    }
    if (viewing) {
      const node = entryNode(R, e);
      if (node) insertInOrder(node, e.seq);
    }
    if (e.kind === 'message') {
      R.typing.delete(e.from.toLowerCase());
      const mine = e.from.toLowerCase() === me;
      if (mine) {
        R.room.read_seq = Math.max(R.room.read_seq || 0, e.seq);
        R.room.unread = 0;
        unreadChanged = true;
      } else if (e.seq > (R.room.read_seq || 0)) {
        R.room.unread = (R.room.unread || 0) + 1;
        unreadChanged = true;
        maybeNotify(R, e);
      }
    }
    if ((e.kind === 'kick' || e.kind === 'ban') && e.target && e.target.toLowerCase() === me) {
      removeRoom(R.room.id, `You were ${e.kind === 'kick' ? 'removed from' : 'banned from'} ${roomLabel(R.room)}.`);
      return;
    }
    if (e.kind === 'leave' && e.from.toLowerCase() === me) {
      removeRoom(R.room.id);
      return;
    }
    if (e.kind === 'update' && e.changes) {
      Object.assign(R.room, e.changes);
      if (viewing) renderHead();
      unreadChanged = true;
    }
    if (['join', 'leave', 'kick', 'ban', 'role'].includes(e.kind)) {
      R.members = null;
      if (viewing) loadMembers(R.room.id);
      if (e.kind === 'role' && e.target && e.target.toLowerCase() === me) {
        refreshRoom(R.room.id);
      }
    }
  }
  if (viewing) {
    renderTyping();
    if (stick) $('log').scrollTop = $('log').scrollHeight;
    markRead();
  }
  if (unreadChanged) renderRooms();
}

function insertInOrder(node, seq) {
  const log = $('log');
  const after = [...log.querySelectorAll('[data-seq]')].find((n) => Number(n.dataset.seq) > seq);
  if (after) log.insertBefore(node, after);
  else {
    const firstPending = log.querySelector('.pending');
    if (firstPending) log.insertBefore(node, firstPending);
    else log.append(node);
  }
}

async function refreshRoom(id) {
  try {
    const r = await api.get(`/rooms/${enc(id)}`);
    const R = S.rooms.get(id);
    if (!R) return;
    const { member_list: members, ...room } = r;
    upsertRoom(room);
    R.members = members;
    renderRooms();
    if (S.current === id) {
      renderHead();
      renderMembers();
      renderRoom();
    }
  } catch {
    // The room may be gone; its frames say so.
  }
}

async function loadOlder() {
  const R = S.rooms.get(S.current);
  if (!R || R.complete || S.loadingOlder) return;
  S.loadingOlder = true;
  try {
    const before = R.oldest ?? (R.room.last_seq || 0) + 1;
    const res = await api.get(`/rooms/${enc(R.room.id)}/messages?before=${before}&limit=${PAGE}`);
    const log = $('log');
    const fromBottom = log.scrollHeight - log.scrollTop;
    mergeEntries(R, res.entries);
    if (res.entries.length === 0 || res.entries[0].seq <= (res.first_seq || 1)) R.complete = true;
    if (S.current === R.room.id) {
      renderRoom();
      log.scrollTop = log.scrollHeight - fromBottom;
    }
  } catch (e) {
    notice(`Could not load history: ${e.message}`, true);
  } finally {
    S.loadingOlder = false;
  }
}

/** Tells the server (and so the user's other tabs) what this tab has shown. */
function markRead() {
  const R = S.rooms.get(S.current);
  if (!R || document.visibilityState !== 'visible' || !atBottom()) return;
  const last = R.last || 0;
  if (last === 0) return;
  if (last > (R.room.read_seq || 0) || (R.room.unread || 0) > 0) {
    if (S.link && S.link.now({ type: 'read', room: R.room.id, seq: last })) {
      R.room.read_seq = Math.max(R.room.read_seq || 0, last);
      R.room.unread = 0;
      renderRooms();
    }
  }
}

// ---------------------------------------------------------------- frames

function onFrame(f) {
  switch (f.type) {
    case 'hello': {
      if (S.epoch !== null && S.epoch !== f.epoch) {
        for (const R of S.rooms.values()) {
          R.entries.clear();
          R.last = 0;
          R.oldest = null;
          R.complete = false;
        }
      }
      S.epoch = f.epoch;
      // Rooms this tab knew before the connection began and the hello lacks are gone; one
      // created or joined since (REST answers can overtake the hello) is kept.
      const ids = new Set(f.rooms.map((r) => r.id));
      for (const [id, R] of [...S.rooms]) if (!ids.has(id) && R.gen < S.gen) S.rooms.delete(id);
      for (const r of f.rooms) upsertRoom(r);
      if (S.current && !S.rooms.has(S.current)) S.current = null;
      if (!S.current && S.rooms.size) openRoom(sortedRooms()[0].room.id);
      renderRooms();
      break;
    }
    case 'entry':
      liveEntry(f);
      break;
    case 'history': {
      const R = S.rooms.get(f.room);
      if (!R) break;
      const fresh = mergeEntries(R, f.entries || []);
      if (fresh.length) {
        const last = fresh.reduce((m, e) => Math.max(m, e.seq), 0);
        if (last > (R.room.last_seq || 0)) R.room.last_seq = last;
        if (S.current === f.room) {
          const stick = atBottom();
          renderRoom();
          if (!stick) {
            // renderRoom scrolled to the bottom; that is fine for a catch-up.
          }
          markRead();
        }
        // Counts after a sync are the server's: ask once rather than guess.
        refreshUnread(R);
      }
      break;
    }
    case 'joined': {
      upsertRoom(f.room);
      if (f.room.kind === 'dm') loadPresence(dmPeer(f.room));
      renderRooms();
      if (S.openOnJoin === f.room.id) {
        S.openOnJoin = null;
        openRoom(f.room.id);
      }
      break;
    }
    case 'presence':
      S.presence.set(f.username.toLowerCase(), f.online);
      renderRooms();
      renderMembers();
      break;
    case 'typing': {
      const R = S.rooms.get(f.room);
      if (!R) break;
      const key = f.username.toLowerCase();
      clearTimeout(R.typing.get(key)?.timer);
      const timer = setTimeout(() => {
        R.typing.delete(key);
        renderTyping();
      }, TYPING_SHOW_MS);
      R.typing.set(key, { name: f.username, timer });
      renderTyping();
      break;
    }
    case 'read': {
      const R = S.rooms.get(f.room);
      if (!R) break;
      R.room.read_seq = Math.max(R.room.read_seq || 0, f.seq);
      if (f.seq >= (R.room.last_seq || 0)) {
        R.room.unread = 0;
        renderRooms();
      } else refreshUnread(R);
      break;
    }
    case 'invite':
      S.invites = S.invites.filter((i) => i.room.id !== f.room.id);
      S.invites.push({ room: f.room, by: f.by });
      renderInvites();
      maybeNotifyText(`${f.by} invited you to ${f.room.name}`, f.room.id);
      break;
    case 'room_deleted': {
      const R = S.rooms.get(f.room);
      S.invites = S.invites.filter((i) => i.room.id !== f.room);
      renderInvites();
      if (R) removeRoom(f.room, `${f.by} deleted ${roomLabel(R.room)}.`);
      break;
    }
    case 'reply':
      onReply(f);
      break;
    case 'error':
      if (!f.nonce) notice(`${f.message} (${f.code})`, true);
      break;
    default:
      break;
  }
}

async function refreshUnread(R) {
  try {
    applyCounts(R, await api.get(`/rooms/${enc(R.room.id)}`));
    renderRooms();
    if (S.current === R.room.id) markRead();
  } catch {
    // Gone or unreachable; the next frame corrects it.
  }
}

function onReply(f) {
  const d = f.data;
  if (d && typeof d === 'object' && d.id && d.kind && (f.command === 'msg' || f.command === 'create' || f.command === 'join')) {
    upsertRoom(d);
    renderRooms();
    openRoom(d.id);
  }
  if (f.command === 'help') {
    notice(`${f.text}\nThis page also runs /block USER, /unblock USER, /blocks, /bans, /rename NAME, /owner USER, /invites and /password.`);
  } else if (f.command !== 'msg') notice(f.text);
}

function onAck(nonce) {
  const p = S.pending.get(nonce);
  if (p) {
    p.node.remove();
    S.pending.delete(nonce);
  }
}

function onFail(nonce, f) {
  const p = S.pending.get(nonce);
  if (p) {
    p.node.remove();
    S.pending.delete(nonce);
  }
  notice(`Not sent: ${f.message} (${f.code})`, true);
}

/** A line in the open room's log that is not an entry: command answers and errors. */
function notice(text, error = false) {
  if (!S.current) {
    $('conn').textContent = text;
    return;
  }
  const node = el('div', { class: `entry notice${error ? ' error' : ''}` }, el('time', {}, clock(Date.now())), el('span', { class: 'body' }, text), el('span'));
  const log = $('log');
  const stick = atBottom();
  log.append(node);
  if (stick || error) log.scrollTop = log.scrollHeight;
}

function renderTyping() {
  const R = S.rooms.get(S.current);
  const names = R ? [...R.typing.values()].map((t) => t.name) : [];
  $('typing').textContent =
    names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
}

// ---------------------------------------------------------------- composer

function send() {
  const box = $('message');
  const text = box.value.trim();
  const R = S.rooms.get(S.current);
  if (!text || !S.link) return;
  // Without a room the composer still takes commands (`/join ID`, `/create NAME`, `/msg`).
  if (!R && !text.startsWith('/')) {
    $('conn').textContent = 'Open or create a room first, or type a command such as /join ID.';
    return;
  }
  if (S.editing) {
    S.link.post({ type: 'edit', room: S.editing.room, seq: S.editing.seq, text });
    cancelEdit();
    box.value = '';
    return;
  }
  box.value = '';
  autosize();
  if (localCommand(text, R)) return;
  const nonce = S.link.post({ type: 'send', room: R ? R.room.id : '', text });
  if (!R) return;
  if (showPending(nonce, R.room.id, text)) {
    $('log').append(S.pending.get(nonce).node);
    $('log').scrollTop = $('log').scrollHeight;
  }
}

/** Keeps a message on its way greyed ("sending") until acknowledged; false for a command. */
function showPending(nonce, room, text) {
  if (text.startsWith('/') && !text.startsWith('//') && !text.startsWith('/me ')) return false;
  const shown = text.startsWith('/me ')
    ? `* ${S.username} ${text.slice(4)}`
    : `${S.username}: ${text.startsWith('//') ? text.slice(1) : text}`;
  const node = el('div', { class: 'entry pending mine', dataset: { nonce } }, el('time', {}, '…'), el('span', { class: 'body' }, shown), el('span', { class: 'edited' }, 'sending'));
  S.pending.set(nonce, { room, text, node });
  return true;
}

/**
 * The outbox an earlier page of this tab left (a reload while offline), if it is this user's:
 * [{frame, since}]. Its messages show greyed until the link sends them.
 */
function restoreOutbox() {
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem('parley.outbox') || 'null');
  } catch {
    saved = null;
  }
  if (!saved || !Array.isArray(saved.items) || String(saved.user).toLowerCase() !== S.username.toLowerCase()) return [];
  for (const { frame } of saved.items) {
    if (frame && frame.type === 'send' && frame.room && typeof frame.text === 'string') showPending(frame.nonce, frame.room, frame.text);
  }
  return saved.items;
}

function saveOutbox(items) {
  if (items.length) sessionStorage.setItem('parley.outbox', JSON.stringify({ user: S.username, items }));
  else sessionStorage.removeItem('parley.outbox');
}

/**
 * The commands `parley-cli` runs itself over REST because the server has no slash command
 * for them; true when `text` was one. Everything else goes to the server as typed.
 */
function localCommand(text, R) {
  const [, name, rest = ''] = /^\/(\S+)\s*([\s\S]*)$/.exec(text) || [];
  const arg = rest.trim();
  const room = R ? enc(R.room.id) : null;
  const run = (promise, done) => promise.then((res) => notice(done(res))).catch((e) => notice(`/${name}: ${e.message} (${e.code})`, true));
  const needRoom = () => {
    if (!room) notice(`/${name} acts on the open room: open one first.`, true);
    return Boolean(room);
  };
  switch (name) {
    case 'block':
      if (!arg) return notice('/block USER', true) || true;
      run(api.post('/blocks', { username: arg }), () => `Blocked ${arg}: they cannot open a DM with you or write in yours.`);
      return true;
    case 'unblock':
      if (!arg) return notice('/unblock USER', true) || true;
      run(api.del(`/blocks/${enc(arg)}`), () => `Unblocked ${arg}.`);
      return true;
    case 'blocks':
      run(api.get('/blocks'), (res) => (res.blocks.length ? `Blocked: ${res.blocks.join(', ')}` : 'You block nobody.'));
      return true;
    case 'bans':
      if (!needRoom()) return true;
      run(api.get(`/rooms/${room}/bans`), (res) => (res.bans.length
        ? `Banned: ${res.bans.map((b) => (b.reason ? `${b.username} (${b.reason})` : b.username)).join(', ')}`
        : 'Nobody is banned here.'));
      return true;
    case 'rename':
      if (!needRoom()) return true;
      if (!arg) return notice('/rename NAME', true) || true;
      run(api.patch(`/rooms/${room}`, { name: arg }).then((r) => {
        upsertRoom(r);
        renderRooms();
        renderHead();
      }), () => `Renamed to ${arg}.`);
      return true;
    case 'owner':
      if (!needRoom()) return true;
      if (!arg) return notice('/owner USER', true) || true;
      run(api.post(`/rooms/${room}/roles`, { username: arg, role: 'owner' }), () => `${arg} owns the room now.`);
      return true;
    case 'invites':
      notice(S.invites.length ? `Invitations: ${S.invites.map((i) => `${i.room.name} (from ${i.by})`).join(', ')}` : 'No invitations.');
      return true;
    case 'password':
    case 'passwd':
      changePassword();
      return true;
    default:
      return false;
  }
}

async function changePassword() {
  await dialog('Change password', [
    { name: 'old', label: 'Current password', type: 'password', required: true },
    { name: 'new', label: 'New password', type: 'password', required: true },
  ], 'Change', async (v) => {
    await api.post('/password', { old: v.old, new: v.new });
    notice('Password changed; your other sessions have ended.');
  });
}

function startEdit(room, seq) {
  const R = S.rooms.get(room);
  const e = R && R.entries.get(seq);
  if (!e || e.deleted) return;
  S.editing = { room, seq };
  $('editing').hidden = false;
  const box = $('message');
  box.value = e.text || '';
  box.focus();
  autosize();
}

function cancelEdit() {
  if (!S.editing) return;
  S.editing = null;
  $('editing').hidden = true;
  $('message').value = '';
  autosize();
}

function deleteMessage(room, seq) {
  if (!window.confirm('Delete this message?')) return;
  S.link.post({ type: 'delete', room, seq });
}

function autosize() {
  const box = $('message');
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight + 2, 160)}px`;
}

function onComposerKey(ev) {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    send();
  } else if (ev.key === 'Escape' && S.editing) {
    ev.preventDefault();
    cancelEdit();
  } else if (ev.key === 'ArrowUp' && !$('message').value && S.current) {
    const R = S.rooms.get(S.current);
    const mine = [...R.entries.values()].filter((e) => e.kind === 'message' && !e.deleted && e.from.toLowerCase() === S.username.toLowerCase());
    const last = mine.sort((a, b) => b.seq - a.seq)[0];
    if (last) {
      ev.preventDefault();
      startEdit(R.room.id, last.seq);
    }
  }
}

function onComposerInput() {
  autosize();
  const text = $('message').value;
  const now = Date.now();
  if (!S.current || S.editing || !text || text.startsWith('/') || now - S.lastTypingSent < TYPING_SEND_MS) return;
  if (S.link && S.link.now({ type: 'typing', room: S.current })) S.lastTypingSent = now;
}

// ---------------------------------------------------------------- dialogs

/**
 * A modal form: fields [{name, label, type?, value?, options?}]; resolves with the values,
 * or null when cancelled. submit(values) may throw to show an error and keep it open.
 */
function dialog(title, fields, okLabel, submit, extra) {
  return new Promise((resolve) => {
    const d = $('dialog');
    $('dialog-title').textContent = title;
    const body = $('dialog-body');
    clear(body);
    $('dialog-error').textContent = '';
    $('dialog-ok').textContent = okLabel;
    const inputs = {};
    for (const f of fields) {
      const id = `dlg-${f.name}`;
      if (f.type === 'checkbox') {
        inputs[f.name] = el('input', { id, type: 'checkbox', checked: f.value ? true : null });
        body.append(el('label', { class: 'check', for: id }, inputs[f.name], f.label));
      } else if (f.options) {
        inputs[f.name] = el('select', { id }, f.options.map((o) => el('option', { value: o, selected: o === f.value ? true : null }, o)));
        body.append(el('label', { for: id }, f.label), inputs[f.name]);
      } else {
        inputs[f.name] = el('input', { id, type: f.type || 'text', value: f.value ?? '', required: f.required ? true : null, autocomplete: 'off' });
        body.append(el('label', { for: id }, f.label), inputs[f.name]);
      }
    }
    if (extra) body.append(extra(close));
    function values() {
      const v = {};
      for (const [k, input] of Object.entries(inputs)) {
        if (input.type === 'checkbox') v[k] = input.checked;
        else v[k] = input.type === 'password' ? input.value : input.value.trim();
      }
      return v;
    }
    let done = false;
    function close(result) {
      if (done) return;
      done = true;
      d.close();
      resolve(result);
    }
    $('dialog-form').onsubmit = async (ev) => {
      ev.preventDefault();
      try {
        const v = values();
        const out = submit ? await submit(v) : v;
        close(out ?? v);
      } catch (e) {
        $('dialog-error').textContent = e.message;
      }
    };
    $('dialog-cancel').onclick = () => close(null);
    // A close event still queued from the dialog before this one (opened straight after it
    // closed) finds this one open: only a close of this one cancels it.
    d.onclose = () => {
      if (!d.open) close(null);
    };
    d.showModal();
    const first = body.querySelector('input, select');
    if (first) first.focus();
  });
}

async function newRoom() {
  const done = await dialog('New room', [
    { name: 'name', label: 'Room name', required: true },
    { name: 'topic', label: 'Topic (optional)' },
    { name: 'private', label: 'Private (by invitation only)', type: 'checkbox' },
  ], 'Create', async (v) => {
    const body = { name: v.name, visibility: v.private ? 'private' : 'public' };
    if (v.topic) body.topic = v.topic;
    const room = await api.post('/rooms', body);
    upsertRoom(room);
    renderRooms();
    openRoom(room.id);
    return room;
  });
  if (done) $('message').focus();
}

async function joinRoom() {
  const pick = el('ul', { class: 'pick', 'aria-label': 'Public rooms' });
  const done = await dialog('Join room', [{ name: 'id', label: 'Room id' }], 'Join', async (v) => {
    if (!v.id) throw new Error('Enter a room id, or pick a room below.');
    return joinById(v.id);
  }, (close) => {
    api.get('/rooms?limit=100').then((res) => {
      for (const r of res.rooms) {
        if (S.rooms.has(r.id)) continue;
        pick.append(el('li', {}, el('span', {}, `${r.name} (${r.members})`), el('button', {
          type: 'button',
          class: 'small',
          onclick: async () => {
            try {
              close(await joinById(r.id));
            } catch (e) {
              $('dialog-error').textContent = e.message;
            }
          },
        }, `Join ${r.name}`)));
      }
      if (!pick.children.length) pick.append(el('li', {}, 'No other public rooms.'));
    }).catch(() => {});
    return el('div', {}, el('h3', {}, 'Public rooms'), pick);
  });
  if (done) $('message').focus();
}

async function joinById(id) {
  const room = await api.post(`/rooms/${enc(id)}/join`);
  upsertRoom(room);
  renderRooms();
  openRoom(room.id);
  return room;
}

async function openDm(username) {
  try {
    const room = await api.post('/dms', { username });
    upsertRoom(room);
    renderRooms();
    openRoom(room.id);
    return room;
  } catch (e) {
    notice(`Could not open a conversation with ${username}: ${e.message}`, true);
    throw e;
  }
}

async function newDm() {
  const done = await dialog('Message user', [{ name: 'username', label: 'Username', required: true }], 'Open', async (v) => {
    const room = await api.post('/dms', { username: v.username });
    upsertRoom(room);
    renderRooms();
    openRoom(room.id);
    return room;
  });
  if (done) $('message').focus();
}

async function inviteUser() {
  const R = S.rooms.get(S.current);
  if (!R) return;
  await dialog(`Invite to ${R.room.name}`, [{ name: 'username', label: 'Username', required: true }], 'Invite', async (v) => {
    await api.post(`/rooms/${enc(R.room.id)}/invites`, { username: v.username });
    notice(`Invited ${v.username}.`);
  });
}

async function leaveRoom() {
  const R = S.rooms.get(S.current);
  if (!R || !window.confirm(`Leave ${roomLabel(R.room)}?`)) return;
  try {
    await api.post(`/rooms/${enc(R.room.id)}/leave`);
    removeRoom(R.room.id);
  } catch (e) {
    notice(e.message, true);
  }
}

async function roomSettings() {
  const R = S.rooms.get(S.current);
  if (!R) return;
  const r = R.room;
  const owner = r.role === 'owner';
  const fields = [{ name: 'topic', label: 'Topic', value: r.topic || '' }];
  if (r.kind !== 'dm') fields.unshift({ name: 'name', label: 'Room name', value: r.name });
  if (owner && r.kind !== 'dm') fields.push({ name: 'visibility', label: 'Visibility', options: ['public', 'private'], value: r.visibility });
  await dialog(`Settings of ${roomLabel(r)}`, fields, 'Save', async (v) => {
    const patch = {};
    if (v.name !== undefined && v.name !== r.name) patch.name = v.name;
    if (v.topic !== (r.topic || '')) patch.topic = v.topic;
    if (v.visibility !== undefined && v.visibility !== r.visibility) patch.visibility = v.visibility;
    if (Object.keys(patch).length) {
      const room = await api.patch(`/rooms/${enc(r.id)}`, patch);
      upsertRoom(room);
      renderRooms();
      renderHead();
    }
  }, r.kind === 'dm' || !isMod(R) ? undefined : (close) => {
    const extra = el('div');
    const bans = el('ul', { class: 'pick', 'aria-label': 'Banned users' });
    extra.append(el('h3', {}, 'Banned'), bans);
    api.get(`/rooms/${enc(r.id)}/bans`).then((res) => {
      for (const b of res.bans) {
        const li = el('li', {}, el('span', {}, b.reason ? `${b.username} (${b.reason})` : b.username), el('button', {
          type: 'button',
          class: 'small',
          onclick: async () => {
            try {
              await api.del(`/rooms/${enc(r.id)}/bans/${enc(b.username)}`);
              li.remove();
            } catch (e) {
              $('dialog-error').textContent = e.message;
            }
          },
        }, `Unban ${b.username}`));
        bans.append(li);
      }
      if (!res.bans.length) bans.append(el('li', {}, 'Nobody is banned.'));
    }).catch(() => {});
    if (owner) {
      extra.append(el('p', {}, el('button', {
        type: 'button',
        class: 'danger',
        onclick: async () => {
          if (!window.confirm(`Delete ${r.name} and its whole history?`)) return;
          try {
            await api.del(`/rooms/${enc(r.id)}`);
            close(null);
            removeRoom(r.id);
          } catch (e) {
            $('dialog-error').textContent = e.message;
          }
        },
      }, 'Delete room')));
    }
    return extra;
  });
}

function renderInvites() {
  const list = $('invite-list');
  clear(list);
  $('invites').hidden = S.invites.length === 0;
  for (const inv of S.invites) {
    list.append(el('li', {},
      el('div', {}, `${inv.by} invited you to `, el('strong', {}, inv.room.name)),
      el('div', { class: 'row' },
        el('button', {
          type: 'button',
          class: 'small primary',
          onclick: async () => {
            try {
              await joinById(inv.room.id);
            } catch (e) {
              notice(e.message, true);
            }
            S.invites = S.invites.filter((i) => i !== inv);
            renderInvites();
          },
        }, `Accept invitation to ${inv.room.name}`),
        el('button', {
          type: 'button',
          class: 'small',
          onclick: () => {
            S.invites = S.invites.filter((i) => i !== inv);
            renderInvites();
          },
        }, 'Dismiss'))));
  }
}

// ---------------------------------------------------------------- members and moderation

async function loadMembers(id) {
  try {
    const r = await api.get(`/rooms/${enc(id)}`);
    const R = S.rooms.get(id);
    if (!R) return;
    R.members = r.member_list || [];
    for (const m of R.members) S.presence.set(m.username.toLowerCase(), m.online);
    const { member_list: _, ...room } = r;
    upsertRoom(room);
    if (S.current === id) {
      renderMembers();
      renderHead();
    }
    renderRooms();
  } catch {
    // Shown again on the next change.
  }
}

/** Whether the other side of a DM is online, for the dot in the room list. */
async function loadPresence(name) {
  try {
    const u = await api.get(`/users/${enc(name)}`);
    S.presence.set(u.username.toLowerCase(), u.online);
    renderRooms();
  } catch {
    // Unknown now: the next presence frame tells.
  }
}

const RANK = { owner: 3, moderator: 2, member: 1 };

function renderMembers() {
  const list = $('member-list');
  clear(list);
  const R = S.rooms.get(S.current);
  if (!R || !R.members) return;
  const myRank = RANK[R.room.role] || 0;
  const me = S.username.toLowerCase();
  for (const m of R.members) {
    const online = S.presence.get(m.username.toLowerCase()) ?? m.online;
    const acts = el('div', { class: 'acts' });
    const self = m.username.toLowerCase() === me;
    if (!self) {
      acts.append(actButton('Message', m.username, () => openDm(m.username).catch(() => {})));
      if (R.room.kind !== 'dm' && myRank >= 2 && myRank > (RANK[m.role] || 0)) {
        acts.append(
          actButton('Kick', m.username, () => moderate(R, 'kick', m.username)),
          actButton('Ban', m.username, () => moderate(R, 'ban', m.username)),
          actButton('Mute', m.username, () => moderate(R, 'mute', m.username)),
          actButton('Unmute', m.username, () => moderate(R, 'unmute', m.username)),
        );
      }
      if (R.room.kind !== 'dm' && R.room.role === 'owner') {
        if (m.role === 'member') acts.append(actButton('Make moderator', m.username, () => moderate(R, 'op', m.username)));
        if (m.role === 'moderator') acts.append(actButton('Remove moderator', m.username, () => moderate(R, 'deop', m.username)));
        acts.append(actButton('Make owner', m.username, () => moderate(R, 'owner', m.username)));
      }
    }
    list.append(el('li', {},
      el('div', { class: 'who' }, el('span', { class: `dot${online ? ' on' : ''}`, title: online ? 'online' : 'offline', 'aria-hidden': 'true' }),
        el('span', {}, m.username), el('span', { class: 'role' }, m.role === 'member' ? '' : m.role),
        el('span', { class: 'sr-only' }, online ? ' (online)' : ' (offline)')),
      acts.children.length ? acts : null));
  }
}

function actButton(label, username, onclick) {
  return el('button', { type: 'button', class: 'small', 'aria-label': `${label} ${username}`, onclick }, label);
}

async function moderate(R, action, username) {
  const id = enc(R.room.id);
  const u = enc(username);
  try {
    if (action === 'kick' || action === 'ban') {
      const v = await dialog(`${action === 'kick' ? 'Remove' : 'Ban'} ${username}`, [{ name: 'reason', label: 'Reason (optional)' }], action === 'kick' ? 'Kick' : 'Ban');
      if (!v) return;
      const body = { username };
      if (v.reason) body.reason = v.reason;
      await api.post(`/rooms/${id}/${action === 'kick' ? 'kick' : 'bans'}`, body);
    } else if (action === 'mute') {
      const v = await dialog(`Mute ${username}`, [{ name: 'seconds', label: 'For how many seconds', type: 'number', value: '600' }], 'Mute');
      if (!v) return;
      await api.post(`/rooms/${id}/mutes`, { username, seconds: Number(v.seconds) });
    } else if (action === 'unmute') {
      await api.del(`/rooms/${id}/mutes/${u}`);
    } else {
      const role = { op: 'moderator', deop: 'member', owner: 'owner' }[action];
      if (role === 'owner' && !window.confirm(`Hand ${R.room.name} over to ${username}? You become a moderator.`)) return;
      await api.post(`/rooms/${id}/roles`, { username, role });
    }
  } catch (e) {
    notice(`${action} ${username}: ${e.message}`, true);
  }
}

function userMenu(name) {
  if (name.toLowerCase() === S.username.toLowerCase()) return;
  openDm(name).catch(() => {});
}

// ---------------------------------------------------------------- administration

/** A refusal of an admin call in plain words; `what` names the user or room asked about. */
function adminError(e, what, disabling = false) {
  const messages = {
    user_not_found: `There is no user named ${what}.`,
    room_not_found: `There is no room ${what}.`,
    forbidden: disabling ? `${what} is a server administrator and cannot be disabled.` : 'Only server administrators may do that.',
    username_taken: `The username ${what} is taken.`,
    invalid_username: 'Usernames are 3 to 32 letters, digits, _ or -.',
    invalid_password: e.message,
    bad_request: e.message,
    rate_limited: 'Too many changes at once; wait a moment and try again.',
  };
  return new Error(messages[e.code] || `${e.message} (${e.code})`);
}

async function createInviteCode() {
  const made = await dialog('Create invite code', [
    { name: 'uses', label: 'Registrations it allows', type: 'number', value: '1', required: true },
    { name: 'days', label: 'Days until it expires', type: 'number', value: '7', required: true },
  ], 'Create', async (v) => {
    const uses = Number(v.uses);
    const days = Number(v.days);
    if (!Number.isInteger(uses) || uses < 1 || uses > 100000) throw new Error('Registrations: a whole number from 1 to 100000.');
    if (!(days > 0) || days > 365) throw new Error('Days: more than 0, at most 365.');
    try {
      return await api.post('/admin/invite-codes', { uses, expires_in: Math.round(days * 86400) });
    } catch (e) {
      throw adminError(e, '');
    }
  });
  if (made && made.code) await showInviteCode(made);
}

/** The new code (shown only once by the server) and a sign-up link, ready to copy. */
async function showInviteCode(made) {
  const link = `${location.origin}/?invite=${enc(made.code)}`;
  const copyButton = (label, text) => el('button', {
    type: 'button',
    class: 'small',
    onclick: async (ev) => {
      const button = ev.currentTarget;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = 'Copied';
      } catch {
        // No clipboard (a page not on a secure origin): the field is selected to copy by hand.
        button.previousElementSibling.select();
        button.textContent = 'Select and copy';
      }
    },
  }, label);
  const until = new Date(made.expires).toLocaleString();
  await dialog('Invite code', [], 'Done', null, () => el('div', {},
    el('p', {}, `Good for ${made.uses} registration${made.uses === 1 ? '' : 's'} until ${until}. The server shows it only now: copy it before closing.`),
    el('label', { for: 'invite-code-made' }, 'New invite code'),
    el('div', { class: 'copy' }, el('input', { id: 'invite-code-made', readonly: true, value: made.code, spellcheck: 'false' }), copyButton('Copy code', made.code)),
    el('label', { for: 'invite-link-made' }, 'Sign-up link'),
    el('div', { class: 'copy' }, el('input', { id: 'invite-link-made', readonly: true, value: link, spellcheck: 'false' }), copyButton('Copy link', link))));
}

async function createAccount() {
  await dialog('Create account', [
    { name: 'username', label: 'Username', required: true },
    { name: 'password', label: 'Password', type: 'password', required: true },
  ], 'Create', async (v) => {
    try {
      const r = await api.post('/admin/users', { username: v.username, password: v.password });
      notice(`Created the account ${r.username}.`);
    } catch (e) {
      throw adminError(e, v.username);
    }
  });
}

async function setAccountDisabled(disabled) {
  await dialog(disabled ? 'Disable account' : 'Enable account', [
    { name: 'username', label: 'Username', required: true },
  ], disabled ? 'Disable' : 'Enable', async (v) => {
    if (disabled && !window.confirm(`Disable ${v.username}? Their sessions end at once and they cannot log in.`)) throw new Error('Not disabled.');
    try {
      await api.post(`/admin/users/${enc(v.username)}/${disabled ? 'disable' : 'enable'}`);
    } catch (e) {
      throw adminError(e, v.username, disabled);
    }
    notice(disabled ? `Disabled ${v.username}: their sessions have ended.` : `Enabled ${v.username}: they can log in again.`);
  });
}

async function adminDeleteRoom() {
  const pick = el('ul', { class: 'pick', 'aria-label': 'Rooms to delete' });
  const remove = async (id, label) => {
    if (!window.confirm(`Delete ${label} and its whole history for everyone?`)) return false;
    try {
      await api.del(`/admin/rooms/${enc(id)}`);
    } catch (e) {
      throw adminError(e, label);
    }
    if (S.rooms.has(id)) removeRoom(id);
    notice(`Deleted ${label}.`);
    return true;
  };
  await dialog('Delete a room', [{ name: 'id', label: 'Room id' }], 'Delete', async (v) => {
    if (!v.id) throw new Error('Enter a room id, or pick a room below.');
    if (!(await remove(v.id, v.id))) throw new Error('Not deleted.');
  }, () => {
    // The rooms this admin can see: public ones and their own; a private room by its id.
    api.get('/rooms?limit=500').then((res) => {
      for (const r of res.rooms) {
        if (r.kind === 'dm') continue;
        const li = el('li', {}, el('span', {}, `${r.name} (${r.members}, ${r.visibility})`), el('button', {
          type: 'button',
          class: 'small danger',
          onclick: async () => {
            try {
              if (await remove(r.id, r.name)) li.remove();
            } catch (e) {
              $('dialog-error').textContent = e.message;
            }
          },
        }, `Delete ${r.name}`));
        pick.append(li);
      }
      if (!pick.children.length) pick.append(el('li', {}, 'No rooms listed.'));
    }).catch((e) => {
      $('dialog-error').textContent = `Could not list the rooms: ${e.message}`;
    });
    return el('div', {}, el('h3', {}, 'Rooms'), pick);
  });
}

// ---------------------------------------------------------------- notifications

function maybeNotify(R, e) {
  if (!document.hidden) return;
  const me = S.username.toLowerCase();
  const mentioned = (e.mentions || []).some((m) => m.toLowerCase() === me);
  if (R.room.kind !== 'dm' && !mentioned) return;
  const where = R.room.kind === 'dm' ? e.from : `${e.from} in ${R.room.name}`;
  maybeNotifyText(`${where}: ${e.text || ''}`, R.room.id);
}

function maybeNotifyText(text, roomId) {
  if (!document.hidden || !('Notification' in window) || Notification.permission !== 'granted') return;
  const n = new Notification('Parley', { body: text.slice(0, 200), tag: roomId });
  n.onclick = () => {
    window.focus();
    if (S.rooms.has(roomId)) openRoom(roomId);
    n.close();
  };
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    signin(false);
  });
  $('register').addEventListener('click', () => signin(true));
  // An invite code is for registering: Enter in its field registers rather than logs in.
  $('invite-code').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      signin(true);
    }
  });
  $('logout').addEventListener('click', logout);
  $('new-room').addEventListener('click', newRoom);
  $('join-room').addEventListener('click', joinRoom);
  $('new-dm').addEventListener('click', newDm);
  $('invite-user').addEventListener('click', inviteUser);
  $('leave-room').addEventListener('click', leaveRoom);
  $('room-settings').addEventListener('click', roomSettings);
  $('admin-invite').addEventListener('click', createInviteCode);
  $('admin-account').addEventListener('click', createAccount);
  $('admin-disable').addEventListener('click', () => setAccountDisabled(true));
  $('admin-enable').addEventListener('click', () => setAccountDisabled(false));
  $('admin-rooms').addEventListener('click', adminDeleteRoom);
  $('members-toggle').addEventListener('click', () => {
    const m = $('members');
    m.hidden = !m.hidden;
    $('members-toggle').setAttribute('aria-expanded', String(!m.hidden));
    if (!m.hidden && S.current) loadMembers(S.current);
  });
  $('menu').addEventListener('click', () => {
    const shown = $('chat').classList.toggle('show-side');
    $('menu').setAttribute('aria-expanded', String(shown));
  });
  $('notify').addEventListener('click', async () => {
    await Notification.requestPermission();
    $('notify').hidden = Notification.permission !== 'default';
  });
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    send();
  });
  $('message').addEventListener('keydown', onComposerKey);
  $('message').addEventListener('input', onComposerInput);
  $('log').addEventListener('scroll', () => {
    if ($('log').scrollTop < 40) loadOlder();
    markRead();
  });
  document.addEventListener('visibilitychange', markRead);
  window.addEventListener('focus', markRead);
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && $('chat').classList.contains('show-side')) $('chat').classList.remove('show-side');
  });
}

wire();
const invited = new URLSearchParams(location.search).get('invite');
if (invited) {
  $('invite-code').value = invited;
  $('invite-field').hidden = false;
}
if (S.token && S.username) startChat();
else showSignin();
