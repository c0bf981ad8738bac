// Browser tests of Parley's web client in Debian's headless Chromium, driven by
// playwright-core. Run by tests/browser.rs (`cargo test --test browser`), or by hand:
//   PARLEY_BIN=target/debug/parley-server node tests/browser/run.mjs
// Each scenario is a step; the first failure stops the run with a non-zero exit. Other
// users are played over the public API (REST and a WebSocket), as a second client would.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const BIN = process.env.PARLEY_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.SCREENSHOTS || '';
const ONLY = process.env.ONLY || '';
const T = 15000;
const PASSWORD = 'correct horse battery';

if (!BIN) {
  console.error('PARLEY_BIN must name the parley-server binary');
  process.exit(2);
}

// ------------------------------------------------------------ the server

const dataRoot = mkdtempSync(path.join(tmpdir(), 'parley-browser-'));
let server = null;

function startServer(port = 0, extra = null) {
  return new Promise((resolve, reject) => {
    const args = [
      '--bind', `127.0.0.1:${port}`, ...(extra || ['--data-dir', path.join(dataRoot, 'data')]),
      '--pbkdf2-iterations', '1000', '--min-password-length', '8',
      '--rest-rate-limit', '0', '--rate-limit', '0', '--register-per-ip-per-hour', '0',
      '--log-level', 'warn',
      ...(process.env.PARLEY_FLAGS || '').split(' ').filter(Boolean),
    ];
    const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // The log goes on to ours, and is kept for `setupCodeOf`.
    let log = '';
    createInterface({ input: proc.stderr }).on('line', (line) => {
      log += `${line}\n`;
      process.stderr.write(`${line}\n`);
    });
    const lines = createInterface({ input: proc.stdout });
    const timer = setTimeout(() => reject(new Error('server did not start')), 20000);
    lines.once('line', (line) => {
      clearTimeout(timer);
      const m = /parley listening on (\S+)/.exec(line);
      if (!m) return reject(new Error(`unexpected first line: ${line}`));
      lines.on('line', () => {});
      resolve({ proc, addr: m[1], url: `http://${m[1]}`, log: () => log });
    });
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

/** The admin setup code `srv` logged at its start (it has an `--admin` name without an account). */
async function setupCodeOf(srv) {
  const deadline = Date.now() + T;
  for (;;) {
    const m = /with the invite code (\S+)/.exec(srv.log());
    if (m) return m[1];
    if (Date.now() > deadline) throw new Error(`no admin setup code in the server's log:\n${srv.log()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function stopServer(signal = 'SIGKILL') {
  return new Promise((resolve) => {
    if (!server || server.proc.exitCode !== null) return resolve();
    server.proc.once('exit', () => resolve());
    server.proc.kill(signal);
  });
}

// ------------------------------------------------------------ users over the API

async function rest(method, p, body, token) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${server.url}/api/v1${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return data;
}

/** A user driven over REST and one WebSocket, as another client would. */
class ApiUser {
  static async create(name) {
    await rest('POST', '/register', { username: name, password: PASSWORD });
    const u = new ApiUser(name);
    await u.login();
    return u;
  }

  constructor(name) {
    this.name = name;
    this.frames = [];
    this.waiters = [];
    this.n = 0;
  }

  async login() {
    this.token = (await rest('POST', '/login', { username: this.name, password: PASSWORD })).token;
  }

  call(method, p, body) {
    return rest(method, p, body, this.token);
  }

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${server.addr}/api/v1/ws?token=${this.token}`);
      this.ws = ws;
      ws.on('message', (data) => {
        const f = JSON.parse(data.toString());
        this.frames.push(f);
        if (f.type === 'hello') resolve(f);
        for (const w of [...this.waiters]) {
          if (w.pred(f)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(f);
          }
        }
      });
      ws.on('error', reject);
    });
  }

  /** The first frame since `from` (an index into frames) that pred accepts. */
  next(pred, from = 0, what = 'a frame') {
    const seen = this.frames.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(new Error(`${this.name} waited in vain for ${what}`));
        }
      }, T);
    });
  }

  /** Sends a message and waits for its acknowledgement; returns the entry. */
  async say(room, text) {
    const nonce = `${this.name}-${++this.n}`;
    const mark = this.frames.length;
    this.ws.send(JSON.stringify({ type: 'send', room, text, nonce }));
    return this.next((f) => f.nonce === nonce && (f.type === 'entry' || f.type === 'reply'), mark, `ack of ${text}`);
  }

  frame(f) {
    this.ws.send(JSON.stringify(f));
  }

  close() {
    if (this.ws) this.ws.close();
  }
}

// ------------------------------------------------------------ the browser

const CHROME_ARGS = [
  '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-default-apps', '--disable-extensions', '--disable-gpu', '--disable-dev-shm-usage',
];

let browser;
const pageErrors = [];
const dialogsSeen = [];

async function newPage(opts = {}, url = server.url + '/') {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...opts });
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource|WebSocket connection|ERR_CONNECTION_REFUSED/.test(m.text())) pageErrors.push(m.text());
  });
  page.on('dialog', async (d) => {
    dialogsSeen.push(d.message());
    await d.accept();
  });
  await page.goto(url);
  return page;
}

async function signIn(page, name, register) {
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: register ? 'Register' : 'Log in' }).click();
  await page.getByRole('navigation', { name: 'Rooms' }).waitFor();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

const log = (page) => page.getByRole('log');
const composer = (page) => page.getByRole('textbox', { name: 'Message' });
const roomsNav = (page) => page.getByRole('navigation', { name: 'Rooms' });

async function say(page, text) {
  await composer(page).fill(text);
  await composer(page).press('Enter');
}

/** How many entries of the open room's log show exactly `text` as their message. */
function countInLog(page, text) {
  return page.evaluate((t) => [...document.querySelectorAll('#log .entry:not(.pending) .body')]
    .filter((b) => b.textContent.includes(t)).length, text);
}

async function waitCount(page, text, want) {
  const deadline = Date.now() + T;
  let n;
  while (Date.now() < deadline) {
    n = await countInLog(page, text);
    if (n === want) return;
    await page.waitForTimeout(100);
  }
  throw new Error(`expected ${want} entries with ${JSON.stringify(text)}, saw ${n}`);
}

async function newRoomInPage(page, name, isPrivate = false) {
  await page.getByRole('button', { name: 'New room' }).click();
  await page.getByLabel('Room name').fill(name);
  if (isPrivate) await page.getByLabel('Private (by invitation only)').check();
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name }).waitFor();
  return page.evaluate(() => sessionStorage.getItem('parley.room'));
}

async function shot(page, name, { width, height, dark }) {
  if (!SHOTS) return;
  await page.setViewportSize({ width, height });
  await page.emulateMedia({ colorScheme: dark ? 'dark' : 'light' });
  await page.waitForTimeout(150);
  await page.screenshot({ path: path.join(SHOTS, `${name}-${width < 600 ? 'phone' : 'desktop'}-${dark ? 'dark' : 'light'}.png`) });
}

// ------------------------------------------------------------ scenarios

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

const ctx = {};

const steps = [
  ['static files: CSP, ETag and 304, HEAD', async () => {
    const res = await fetch(server.url + '/');
    assert(res.status === 200, `GET / answered ${res.status}`);
    const csp = res.headers.get('content-security-policy') || '';
    assert(csp.includes("script-src 'self'") && csp.includes("default-src 'self'"), `CSP: ${csp}`);
    const etag = res.headers.get('etag');
    assert(etag, 'no ETag');
    const html = await res.text();
    assert(!/<script>|<script [^>]*>[^<]/.test(html) && !/ on[a-z]+=/.test(html), 'inline script in the page');
    const again = await fetch(server.url + '/', { headers: { 'If-None-Match': etag } });
    assert(again.status === 304, `If-None-Match answered ${again.status}`);
    const head = await fetch(server.url + '/web/app.js', { method: 'HEAD' });
    assert(head.status === 200 && head.headers.get('content-type').startsWith('text/javascript'), 'HEAD /web/app.js');
    const missing = await fetch(server.url + '/web/nope.js');
    assert(missing.status === 404, `unknown asset answered ${missing.status}`);
  }],

  ['register in the page, and see the sign-in screen first', async () => {
    ctx.page = await newPage();
    await ctx.page.getByRole('button', { name: 'Log in' }).waitFor();
    await shot(ctx.page, 'signin', { width: 1280, height: 800, dark: false });
    await ctx.page.setViewportSize({ width: 1280, height: 800 });
    await signIn(ctx.page, 'alice', true);
  }],

  ['with no room yet, the composer takes commands', async () => {
    const { page } = ctx;
    await say(page, '/create first steps');
    await page.getByRole('heading', { name: 'first steps' }).waitFor();
    await roomsNav(page).getByRole('button', { name: /^first steps/ }).waitFor();
  }],

  ['create a room and chat with a user on the API', async () => {
    const { page } = ctx;
    ctx.general = await newRoomInPage(page, 'general');
    ctx.bob = await ApiUser.create('bob');
    await ctx.bob.connect();
    await ctx.bob.call('POST', `/rooms/${ctx.general}/join`);
    await log(page).getByText('bob joined').waitFor();
    await ctx.bob.say(ctx.general, 'hello alice, welcome');
    await log(page).getByText('hello alice, welcome').waitFor();
    const mark = ctx.bob.frames.length;
    await say(page, 'hi bob, good to see you');
    await ctx.bob.next((f) => f.type === 'entry' && f.text === 'hi bob, good to see you', mark, "alice's message");
    await waitCount(page, 'hi bob, good to see you', 1);
  }],

  ['mentions are highlighted, /me is an action', async () => {
    const { page } = ctx;
    await ctx.bob.say(ctx.general, '@alice did you see the news?');
    await log(page).locator('mark.mention', { hasText: '@alice' }).waitFor();
    await say(page, '/me waves at everyone');
    const entry = log(page).locator('.entry:not(.pending)', { hasText: 'waves at everyone' });
    await entry.waitFor();
    const action = await entry.textContent();
    assert(action.includes('* alice waves at everyone'), `action shown as ${action}`);
  }],

  ['a message with HTML shows as text', async () => {
    const { page } = ctx;
    const xss = '<img src=x onerror=alert(1)>';
    await ctx.bob.say(ctx.general, xss);
    await log(page).getByText(xss).waitFor();
    assert((await log(page).locator('img').count()) === 0, 'an <img> made it into the log');
    await page.waitForTimeout(200);
    assert(dialogsSeen.length === 0, `a dialog opened: ${dialogsSeen}`);
  }],

  ['typing indicators both ways', async () => {
    const { page } = ctx;
    ctx.bob.frame({ type: 'typing', room: ctx.general });
    await page.getByText('bob is typing…').waitFor();
    // Typing events go out at most every 2 s; the last one was when she wrote above.
    await page.waitForTimeout(2100);
    const mark = ctx.bob.frames.length;
    await composer(page).pressSequentially('still the', { delay: 20 });
    await ctx.bob.next((f) => f.type === 'typing' && f.username === 'alice', mark, 'typing from alice');
    await composer(page).fill('');
  }],

  ['edit and delete of her own message', async () => {
    const { page } = ctx;
    await say(page, 'this has a tpyo');
    const entry = log(page).locator('.entry:not(.pending)', { hasText: 'this has a tpyo' });
    await entry.waitFor();
    await entry.hover();
    await entry.getByRole('button', { name: 'Edit' }).click();
    const mark = ctx.bob.frames.length;
    await composer(page).fill('this had a typo');
    await composer(page).press('Enter');
    await log(page).locator('.entry', { hasText: 'this had a typo' }).getByText('(edited)').waitFor();
    await ctx.bob.next((f) => f.type === 'entry' && f.kind === 'edit' && f.text === 'this had a typo', mark, 'the edit');
    const fixed = log(page).locator('.entry', { hasText: 'this had a typo' });
    await fixed.hover();
    await fixed.getByRole('button', { name: 'Delete' }).click();
    await ctx.bob.next((f) => f.type === 'entry' && f.kind === 'delete', mark, 'the deletion');
    await log(page).getByText('message deleted').waitFor();
    assert((await countInLog(page, 'this had a typo')) === 0, 'deleted text still shown');
    // Her own entries have tools; bob's do not.
    const bobs = log(page).locator('.entry', { hasText: 'hello alice, welcome' });
    assert((await bobs.getByRole('button', { name: 'Edit' }).count()) === 0, "bob's message is editable");
  }],

  ['a DM from the API shows an unread badge that clears when opened', async () => {
    const { page } = ctx;
    const dm = await ctx.bob.call('POST', '/dms', { username: 'alice' });
    ctx.dm = dm.id;
    const item = roomsNav(page).getByRole('button', { name: /^bob/ });
    await item.waitFor();
    await ctx.bob.say(dm.id, 'psst, a private word');
    await ctx.bob.say(dm.id, 'and another');
    await roomsNav(page).getByRole('button', { name: /^bob\s*2$/ }).waitFor();
    await item.click();
    await log(page).getByText('and another').waitFor();
    await roomsNav(page).getByRole('button', { name: /^bob$/ }).waitFor();
    // The server agrees: the read marker moved.
    const deadline = Date.now() + T;
    for (;;) {
      const r = await rest('GET', `/rooms/${dm.id}`, undefined, (await alice()).token);
      if (r.unread === 0) break;
      assert(Date.now() < deadline, `server still counts ${r.unread} unread`);
      await page.waitForTimeout(100);
    }
  }],

  ['/msg opens a DM and posts there', async () => {
    const { page } = ctx;
    await roomsNav(page).getByRole('button', { name: /^general/ }).click();
    ctx.carol = await ApiUser.create('carol');
    await ctx.carol.connect();
    const mark = ctx.carol.frames.length;
    await say(page, '/msg carol hi carol, got a minute?');
    await ctx.carol.next((f) => f.type === 'entry' && f.text === 'hi carol, got a minute?', mark, 'the /msg');
    await roomsNav(page).getByRole('button', { name: /^carol/ }).waitFor();
    await page.getByRole('heading', { name: /carol/ }).waitFor();
    await log(page).getByText('hi carol, got a minute?').waitFor();
  }],

  ['a private room, an invitation and accepting it', async () => {
    const { page } = ctx;
    const room = await ctx.carol.call('POST', '/rooms', { name: 'secret plans', visibility: 'private' });
    await ctx.carol.call('POST', `/rooms/${room.id}/invites`, { username: 'alice' });
    await page.getByRole('button', { name: 'Accept invitation to secret plans' }).click();
    await page.getByRole('heading', { name: 'secret plans' }).waitFor();
    await log(page).getByText('alice joined').waitFor();
    await ctx.carol.say(room.id, 'welcome to the plans');
    await log(page).getByText('welcome to the plans').waitFor();
    ctx.secret = room.id;
  }],

  ['joining from the public list, and scrolling back through history', async () => {
    const { page } = ctx;
    const room = await ctx.bob.call('POST', '/rooms', { name: 'archive' });
    for (let i = 1; i <= 120; i++) await ctx.bob.say(room.id, `archived line ${i}.`);
    await page.getByRole('button', { name: 'Join room' }).click();
    await page.getByRole('button', { name: 'Join archive' }).click();
    await page.getByRole('heading', { name: 'archive' }).waitFor();
    await log(page).getByText('archived line 120.').waitFor();
    assert((await countInLog(page, 'archived line 1.')) === 0, 'the whole history came at once');
    for (let i = 0; i < 10 && (await countInLog(page, 'archived line 1.')) === 0; i++) {
      await log(page).evaluate((l) => { l.scrollTop = 0; });
      await page.waitForTimeout(300);
    }
    await waitCount(page, 'archived line 1.', 1);
    for (const n of [2, 50, 51, 70, 71, 119, 120]) await waitCount(page, `archived line ${n}.`, 1);
    const seqs = await page.evaluate(() => [...document.querySelectorAll('#log .entry')].map((e) => e.dataset.seq));
    assert(seqs.length === 122 && new Set(seqs).size === 122, `the log holds ${seqs.length} entries, not 122 (two joins, 120 lines)`);
    ctx.archive = room.id;
  }],

  ['unread counts clear across tabs', async () => {
    const { page } = ctx;
    await roomsNav(page).getByRole('button', { name: /^general/ }).click();
    const other = await newPage();
    await signIn(other, 'alice', false);
    await roomsNav(other).getByRole('button', { name: /^general/ }).click();
    await ctx.bob.say(ctx.dm, 'are you there?');
    await roomsNav(page).getByRole('button', { name: /^bob\s*1$/ }).waitFor();
    await roomsNav(other).getByRole('button', { name: /^bob\s*1$/ }).waitFor();
    await roomsNav(other).getByRole('button', { name: /^bob/ }).click();
    await log(other).getByText('are you there?').waitFor();
    await roomsNav(page).getByRole('button', { name: /^bob$/ }).waitFor();
    await other.context().close();
  }],

  ['moderation from the member list: topic, moderator, kick', async () => {
    const { page } = ctx;
    await roomsNav(page).getByRole('button', { name: /^general/ }).click();
    await page.getByRole('button', { name: 'Settings' }).click();
    await page.getByLabel('Topic').fill('Everything and nothing');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.locator('#room-topic', { hasText: 'Everything and nothing' }).waitFor();
    await log(page).getByText('alice set the topic to “Everything and nothing”').waitFor();
    await page.getByRole('button', { name: 'Members' }).click();
    const members = page.getByRole('complementary', { name: 'Members' });
    await members.getByRole('button', { name: 'Make moderator bob' }).click();
    await log(page).getByText('alice made bob moderator').waitFor();
    await members.getByRole('button', { name: 'Remove moderator bob' }).waitFor();
    const mark = ctx.bob.frames.length;
    await members.getByRole('button', { name: 'Kick bob' }).click();
    await page.getByLabel('Reason (optional)').fill('a test');
    await page.getByRole('button', { name: 'Kick', exact: true }).click();
    await ctx.bob.next((f) => f.type === 'entry' && f.kind === 'kick' && f.target === 'bob', mark, 'the kick');
    await log(page).getByText('alice removed bob: a test').waitFor();
    await page.getByRole('button', { name: 'Members' }).click();
    await ctx.bob.call('POST', `/rooms/${ctx.general}/join`);
    await log(page).locator('.entry', { hasText: 'bob joined' }).nth(1).waitFor();
  }],

  ['keyboard only: a room, a message, ArrowUp to edit, Escape to cancel', async () => {
    const { page } = ctx;
    await page.getByRole('button', { name: 'New room' }).focus();
    await page.keyboard.press('Enter');
    await page.keyboard.type('keyboard room');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'keyboard room' }).waitFor();
    await page.keyboard.type('typed with keys');
    await page.keyboard.press('Enter');
    await log(page).locator('.entry:not(.pending)', { hasText: 'typed with keys' }).waitFor();
    await page.keyboard.press('ArrowUp');
    await page.getByText('Editing a message').waitFor();
    assert((await composer(page).inputValue()) === 'typed with keys', 'ArrowUp did not pick her last message');
    await page.keyboard.press('Escape');
    await page.getByText('Editing a message').waitFor({ state: 'hidden' });
    assert((await composer(page).inputValue()) === '', 'Escape left the text');
    ctx.keyboardRoom = await page.evaluate(() => sessionStorage.getItem('parley.room'));
  }],

  ['slash commands run on the server and answer in the log', async () => {
    const { page } = ctx;
    await say(page, '/topic Typed as a command');
    await page.locator('#room-topic', { hasText: 'Typed as a command' }).waitFor();
    await say(page, '/help');
    await log(page).locator('.entry.notice', { hasText: '/join' }).waitFor();
    await say(page, '/frobnicate');
    await log(page).locator('.entry.notice.error', { hasText: 'unknown_command' }).waitFor();
  }],

  ['the commands parley-cli runs itself: /block, /blocks, /unblock, /rename, /password', async () => {
    const { page } = ctx;
    await say(page, '/block carol');
    await log(page).locator('.entry.notice', { hasText: 'Blocked carol' }).waitFor();
    await say(page, '/blocks');
    await log(page).locator('.entry.notice', { hasText: 'Blocked: carol' }).waitFor();
    const refused = await fetch(`${server.url}/api/v1/dms`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ctx.carol.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'alice' }),
    });
    assert(refused.status === 403, `carol's DM with the user who blocks her answered ${refused.status}`);
    await say(page, '/unblock carol');
    await log(page).locator('.entry.notice', { hasText: 'Unblocked carol' }).waitFor();
    await say(page, '/rename keys only');
    await page.getByRole('heading', { name: 'keys only' }).waitFor();
    await roomsNav(page).getByRole('button', { name: /^keys only/ }).waitFor();
    await say(page, '/password');
    await page.getByLabel('Current password').fill('not the password');
    await page.getByLabel('New password').fill('a new password of mine');
    await page.getByRole('button', { name: 'Change' }).click();
    await page.getByRole('alert').getByText(/password|credentials/i).waitFor();
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('button', { name: 'Log out' }).waitFor();
    ctx.keyboardRoomName = 'keys only';
  }],

  ['desktop notifications for a DM and a mention while the tab is hidden', async () => {
    const { page } = ctx;
    await page.evaluate(() => {
      window.__notes = [];
      window.Notification = class {
        static permission = 'granted';
        static requestPermission() { return Promise.resolve('granted'); }
        constructor(title, options) { window.__notes.push(options.body); }
        close() {}
      };
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    });
    await ctx.bob.say(ctx.dm, 'ping while you are away');
    await ctx.bob.say(ctx.general, 'nothing for alice here');
    await ctx.bob.say(ctx.general, 'but @alice should hear this');
    await page.waitForFunction(() => window.__notes.length >= 2);
    await page.waitForTimeout(300);
    const notes = (await page.evaluate(() => window.__notes)).sort();
    assert(JSON.stringify(notes) === JSON.stringify(['bob in general: but @alice should hear this', 'bob: ping while you are away']), `notifications: ${notes}`);
    await page.evaluate(() => {
      delete document.hidden;
      delete document.visibilityState;
    });
  }],

  ['ban, mute and deleting a room', async () => {
    const { page } = ctx;
    const id = await newRoomInPage(page, 'doomed');
    await ctx.bob.call('POST', `/rooms/${id}/join`);
    await log(page).getByText('bob joined').waitFor();
    await page.getByRole('button', { name: 'Members' }).click();
    const members = page.getByRole('complementary', { name: 'Members' });
    await members.getByRole('button', { name: 'Mute bob', exact: true }).click();
    await page.getByLabel('For how many seconds').fill('60');
    await page.getByRole('button', { name: 'Mute', exact: true }).click();
    await log(page).getByText(/alice muted bob until/).waitFor();
    const mark = ctx.bob.frames.length;
    ctx.bob.frame({ type: 'send', room: id, text: 'can I speak?', nonce: 'muted-1' });
    await ctx.bob.next((f) => f.type === 'error' && f.nonce === 'muted-1' && f.code === 'muted', mark, 'the muted error');
    await members.getByRole('button', { name: 'Ban bob' }).click();
    await page.getByRole('button', { name: 'Ban', exact: true }).click();
    await log(page).getByText('alice banned bob').waitFor();
    await page.getByRole('button', { name: 'Members' }).click();
    await page.getByRole('button', { name: 'Settings' }).click();
    await page.getByRole('button', { name: 'Unban bob' }).click();
    await log(page).getByText('alice lifted the ban on bob').waitFor();
    await page.getByRole('button', { name: 'Unban bob' }).waitFor({ state: 'detached' });
    await page.getByRole('button', { name: 'Delete room' }).click();
    await roomsNav(page).getByRole('button', { name: /^doomed/ }).waitFor({ state: 'detached' });
    const res = await fetch(`${server.url}/api/v1/rooms/${id}`, { headers: { Authorization: `Bearer ${ctx.bob.token}` } });
    assert(res.status === 404, `the deleted room answers ${res.status}`);
    await roomsNav(page).getByRole('button', { name: /^keys only/ }).click();
  }],

  ['screenshots of the chat', async () => {
    const { page } = ctx;
    await roomsNav(page).getByRole('button', { name: /^general/ }).click();
    await ctx.bob.say(ctx.archive, 'anyone still here?');
    await ctx.bob.say(ctx.archive, '@alice the archive is complete');
    await roomsNav(page).getByRole('button', { name: /^archive\s*2$/ }).waitFor();
    await page.getByRole('button', { name: 'Members' }).click();
    await shot(page, 'chat', { width: 1280, height: 800, dark: false });
    await shot(page, 'chat', { width: 1280, height: 800, dark: true });
    await page.getByRole('button', { name: 'Members' }).click();
    await shot(page, 'chat', { width: 390, height: 844, dark: false });
    await shot(page, 'chat', { width: 390, height: 844, dark: true });
    if (SHOTS) {
      await page.getByRole('button', { name: 'Show rooms' }).click();
      await shot(page, 'rooms', { width: 390, height: 844, dark: false });
      await page.getByRole('button', { name: 'Show rooms' }).click();
    }
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.emulateMedia({ colorScheme: 'light' });
  }],

  ['the page reconnects by itself after the server restarts', async () => {
    const { page } = ctx;
    await roomsNav(page).getByRole('button', { name: /^general/ }).click();
    const port = server.addr.split(':').pop();
    await stopServer('SIGTERM');
    await page.getByText(/Offline/).waitFor();
    server = await startServer(port);
    ctx.bob.frames = [];
    await ctx.bob.connect();
    await ctx.bob.say(ctx.general, 'back after a clean restart');
    await waitCount(page, 'back after a clean restart', 1);
    await page.locator('#conn', { hasText: /^$/ }).waitFor({ state: 'attached' });
    await say(page, 'and the page is live again');
    await ctx.bob.next((f) => f.type === 'entry' && f.text === 'and the page is live again', 0, 'the message after reconnecting');
    await waitCount(page, 'back after a clean restart', 1);
  }],

  ['a server restart: missed entries once, offline message sent once', async () => {
    const { page } = ctx;
    await roomsNav(page).getByRole('button', { name: /^general/ }).click();
    await log(page).getByText('hi bob, good to see you').waitFor();
    const port = server.addr.split(':').pop();
    // The browser is cut off too, so the message below is certainly posted while the page
    // is away; the page comes back when the browser says it is online again.
    await page.context().setOffline(true);
    await stopServer('SIGKILL');
    await page.getByText(/Offline/).waitFor();
    await say(page, 'typed while offline');
    await log(page).locator('.entry.pending', { hasText: 'typed while offline' }).waitFor();
    server = await startServer(port);
    ctx.bob.frames = [];
    await ctx.bob.connect();
    await ctx.bob.say(ctx.general, 'posted during the outage');
    await page.waitForTimeout(1000);
    assert((await countInLog(page, 'posted during the outage')) === 0, 'the page was not cut off');
    await page.context().setOffline(false);
    await waitCount(page, 'posted during the outage', 1);
    await waitCount(page, 'typed while offline', 1);
    await ctx.bob.next((f) => f.type === 'entry' && f.text === 'typed while offline', 0, 'the offline message');
    await page.waitForTimeout(500);
    await waitCount(page, 'posted during the outage', 1);
    await waitCount(page, 'typed while offline', 1);
    await waitCount(page, 'hi bob, good to see you', 1);
    const hist = await ctx.bob.call('GET', `/rooms/${ctx.general}/messages?limit=500`);
    const sent = hist.entries.filter((e) => e.text === 'typed while offline').length;
    assert(sent === 1, `the offline message was posted ${sent} times`);
  }],

  ['the offline outbox outlives a reload of the tab: sent once after the restart', async () => {
    // A tab of its own whose WebSocket goes through a route that can refuse it: the server
    // dies, a message is typed, the server comes back, and the tab is reloaded before its
    // socket may reconnect; only then is it let through.
    const page = await newPage({}, 'about:blank');
    let blocked = false;
    await page.routeWebSocket(/\/api\/v1\/ws/, (ws) => {
      if (blocked) {
        ws.close();
        return;
      }
      const upstream = ws.connectToServer();
      ws.onMessage((m) => upstream.send(m));
      upstream.onMessage((m) => ws.send(m));
    });
    const text = 'typed offline, then the tab reloaded';
    const posted = async () => (await (await alice()).call('GET', `/rooms/${ctx.general}/messages?limit=500`))
      .entries.filter((e) => e.text === text).length;
    try {
      await page.goto(server.url + '/');
      await signIn(page, 'alice', false);
      await roomsNav(page).getByRole('button', { name: /^general/ }).click();
      await page.getByRole('heading', { name: 'general' }).waitFor();
      const port = server.addr.split(':').pop();
      blocked = true;
      await stopServer('SIGKILL');
      await page.getByText(/Offline/).waitFor();
      await say(page, text);
      await log(page).locator('.entry.pending', { hasText: text }).waitFor();
      const saved = await page.evaluate(() => sessionStorage.getItem('parley.outbox'));
      assert(saved && saved.includes(text), `the outbox was not saved: ${saved}`);
      server = await startServer(port);
      await page.reload();
      await page.getByRole('heading', { name: 'general' }).waitFor();
      await log(page).locator('.entry.pending', { hasText: text }).waitFor();
      await page.waitForTimeout(1000);
      assert((await posted()) === 0, 'posted while the socket was refused');
      blocked = false;
      await waitCount(page, text, 1);
      await page.waitForFunction(() => sessionStorage.getItem('parley.outbox') === null);
      assert((await page.locator('.entry.pending').count()) === 0, 'still shown as sending');
      // Once more: a reload now finds nothing left to send.
      await page.reload();
      await page.getByRole('heading', { name: 'general' }).waitFor();
      await waitCount(page, text, 1);
      await page.waitForTimeout(1000);
      await waitCount(page, text, 1);
      const n = await posted();
      assert(n === 1, `the message was posted ${n} times`);
      ctx.bob.frames = [];
      await ctx.bob.connect();
    } finally {
      await page.context().close();
    }
  }],

  ['a session ended elsewhere (a password change) returns the page to the sign-in form', async () => {
    const { page } = ctx;
    const other = await alice();
    await other.call('POST', '/password', { old: PASSWORD, new: 'a brand new password' });
    await page.getByText('Your session has ended').waitFor();
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    await other.call('POST', '/password', { old: 'a brand new password', new: PASSWORD });
    await signIn(page, 'alice', false);
    await page.getByRole('heading', { name: 'general' }).waitFor();
  }],

  ['a reload keeps the tab signed in; log out', async () => {
    const { page } = ctx;
    await page.reload();
    await page.getByRole('heading', { name: 'general' }).waitFor();
    await waitCount(page, 'typed while offline', 1);
    const token = await page.evaluate(() => sessionStorage.getItem('parley.token'));
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    const res = await fetch(`${server.url}/api/v1/me`, { headers: { Authorization: `Bearer ${token}` } });
    assert(res.status === 401, `the old token answers ${res.status}`);
    assert((await page.evaluate(() => sessionStorage.getItem('parley.token'))) === null, 'token still stored');
    await signIn(page, 'alice', false);
    await roomsNav(page).getByRole('button', { name: /general/ }).waitFor();
  }],

  ['a connection gone silent is noticed and replaced', async () => {
    // A second server with 1 s heartbeats; the page's WebSocket goes through a route that
    // can swallow everything the server sends, as a network that vanished would.
    const quick = await startServer(0, ['--ephemeral', '--heartbeat-interval', '1']);
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const page = await context.newPage();
      page.setDefaultTimeout(T);
      let opened = 0;
      let dead = 0;
      await page.routeWebSocket(/\/api\/v1\/ws/, (ws) => {
        const upstream = ws.connectToServer();
        const id = ++opened;
        ws.onMessage((m) => upstream.send(m));
        upstream.onMessage((m) => {
          if (id !== dead) ws.send(m);
        });
      });
      await page.goto(quick.url + '/');
      await signIn(page, 'dora', true);
      await say(page, '/create quiet room');
      await page.getByRole('heading', { name: 'quiet room' }).waitFor();
      const room = await page.evaluate(() => sessionStorage.getItem('parley.room'));
      await say(page, 'before the silence');
      await log(page).locator('.entry:not(.pending)', { hasText: 'before the silence' }).waitFor();
      dead = opened;
      const post = async (path, body, token) => {
        const res = await fetch(`${quick.url}/api/v1${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
        return res.json().catch(() => null);
      };
      await post('/register', { username: 'eve', password: PASSWORD });
      const { token } = await post('/login', { username: 'eve', password: PASSWORD });
      await post(`/rooms/${room}/join`, {}, token);
      await page.waitForTimeout(2000);
      assert((await countInLog(page, 'eve joined')) === 0, 'the silent connection still delivered');
      await log(page).getByText('eve joined').waitFor({ timeout: 30000 });
      assert(opened === dead + 1, `${opened - dead} new connections`);
      await waitCount(page, 'eve joined', 1);
      await context.close();
    } finally {
      quick.proc.kill('SIGKILL');
    }
  }],

  ['administration: invite codes, disabling accounts, deleting any room', async () => {
    // A server of its own where root is the admin and registering needs an invite code.
    const adminServer = await startServer(0, ['--ephemeral', '--admin', 'root', '--registration', 'invite']);
    const api = async (method, p, body, token) => {
      const headers = { ...(body ? { 'Content-Type': 'application/json' } : {}), ...(token ? { Authorization: `Bearer ${token}` } : {}) };
      const res = await fetch(`${adminServer.url}/api/v1${p}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
      const text = await res.text();
      return { status: res.status, data: text ? JSON.parse(text) : null };
    };
    const pages = [];
    try {
      // The first admin registers with the admin setup code from the server's log.
      const setup = { username: 'root', password: PASSWORD, invite_code: await setupCodeOf(adminServer) };
      const first = await api('POST', '/register', setup);
      assert(first.status === 201, `root's registration: ${first.status} ${JSON.stringify(first.data)}`);
      const root = await newPage({}, adminServer.url + '/');
      pages.push(root);
      await signIn(root, 'root', false);
      const admin = root.getByRole('region', { name: 'Administration' });
      const dlg = root.locator('#dialog');
      await admin.waitFor();

      // Nobody gets in without a code; the page asks for one.
      const guest = await newPage({}, adminServer.url + '/');
      pages.push(guest);
      await guest.getByLabel('Username').fill('newbie');
      await guest.getByLabel('Password').fill(PASSWORD);
      await guest.getByRole('button', { name: 'Register' }).click();
      await guest.getByText('Registering here needs an invite code').waitFor();
      await guest.getByLabel('Invite code').waitFor();

      // The admin makes a code in the page (keyboard only) and copies it from the dialog.
      await admin.getByRole('button', { name: 'Create invite code' }).focus();
      await root.keyboard.press('Enter');
      await root.getByLabel('Registrations it allows').waitFor();
      await root.keyboard.press('Enter');
      const codeField = root.getByLabel('New invite code');
      await codeField.waitFor();
      const code = await codeField.inputValue();
      assert(/^[A-Za-z0-9_-]{20,}$/.test(code), `invite code shown as ${JSON.stringify(code)}`);
      const link = await root.getByLabel('Sign-up link').inputValue();
      assert(link === `${adminServer.url}/?invite=${code}`, `sign-up link ${link}`);
      await root.getByRole('button', { name: 'Done' }).click();

      // With it the guest registers in the page (Enter in the code's field registers); it was
      // good for one use only.
      await guest.getByLabel('Invite code').fill(code);
      await guest.getByLabel('Invite code').press('Enter');
      await guest.getByRole('navigation', { name: 'Rooms' }).waitFor();
      await guest.getByRole('button', { name: 'Log out' }).waitFor();
      assert(!(await guest.getByRole('region', { name: 'Administration' }).isVisible()), 'a member sees the admin tools');
      const again = await api('POST', '/register', { username: 'latecomer', password: PASSWORD, invite_code: code });
      assert(again.status === 403 && again.data.error.code === 'invite_required', `a spent code answered ${again.status}`);

      // The sign-up link fills the code in: a second code, registered through its link.
      await admin.getByRole('button', { name: 'Create invite code' }).click();
      await root.getByRole('button', { name: 'Create', exact: true }).click();
      const link2 = await root.getByLabel('Sign-up link').inputValue();
      await shot(root, 'admin', { width: 1280, height: 800, dark: false });
      await root.getByRole('button', { name: 'Done' }).click();
      const linked = await newPage({}, link2);
      pages.push(linked);
      assert((await linked.getByLabel('Invite code').inputValue()).length > 20, 'the link did not fill the code in');
      await signIn(linked, 'linkuser', true);
      assert(!(await linked.evaluate(() => location.search)), 'the spent code stayed in the address');

      // Deleting any room: the guest's room disappears from the guest's list.
      await say(guest, '/create guest corner');
      await roomsNav(guest).getByRole('button', { name: /^guest corner/ }).waitFor();
      await admin.getByRole('button', { name: 'Delete a room' }).click();
      await root.getByRole('button', { name: 'Delete guest corner' }).click();
      await root.getByRole('button', { name: 'Delete guest corner' }).waitFor({ state: 'detached' });
      await roomsNav(guest).getByRole('button', { name: /^guest corner/ }).waitFor({ state: 'detached' });
      // A wrong id is refused in words, and the dialog stays open.
      await dlg.getByLabel('Room id').fill('no-such-room');
      await root.getByRole('button', { name: 'Delete', exact: true }).click();
      await root.getByRole('alert').getByText('There is no room no-such-room.').waitFor();
      await root.getByRole('button', { name: 'Cancel' }).click();

      // Disabling: the guest's page is signed out and logging in is refused; enabling lets them in.
      await admin.getByRole('button', { name: 'Disable account' }).click();
      await dlg.getByLabel('Username').fill('ghost');
      await root.getByRole('button', { name: 'Disable', exact: true }).click();
      await root.getByRole('alert').getByText('There is no user named ghost.').waitFor();
      await dlg.getByLabel('Username').fill('root');
      await root.getByRole('button', { name: 'Disable', exact: true }).click();
      await root.getByRole('alert').getByText('root is a server administrator and cannot be disabled.').waitFor();
      await dlg.getByLabel('Username').fill('newbie');
      await root.getByRole('button', { name: 'Disable', exact: true }).click();
      await dlg.waitFor({ state: 'hidden' });
      await guest.getByText('Your session has ended').waitFor();
      await guest.getByLabel('Username').fill('newbie');
      await guest.getByLabel('Password').fill(PASSWORD);
      await guest.getByRole('button', { name: 'Log in' }).click();
      await guest.getByText('This account is disabled.').waitFor();
      await admin.getByRole('button', { name: 'Enable account' }).click();
      await dlg.getByLabel('Username').fill('newbie');
      await root.getByRole('button', { name: 'Enable', exact: true }).click();
      await dlg.waitFor({ state: 'hidden' });
      await signIn(guest, 'newbie', false);

      // The admin calls refuse a member even if they make them by hand.
      const member = (await api('POST', '/login', { username: 'linkuser', password: PASSWORD })).data.token;
      const refused = await api('POST', '/admin/invite-codes', {}, member);
      assert(refused.status === 403, `a member's invite code answered ${refused.status}`);
    } finally {
      for (const p of pages) await p.context().close().catch(() => {});
      adminServer.proc.kill('SIGKILL');
    }
  }],

  ['no script errors in the page', async () => {
    assert(pageErrors.length === 0, `errors: ${pageErrors.join('\n')}`);
  }],
];

let aliceUser;
async function alice() {
  if (!aliceUser) {
    aliceUser = new ApiUser('alice');
    await aliceUser.login();
  }
  return aliceUser;
}

// ------------------------------------------------------------ run

async function main() {
  const started = Date.now();
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
  server = await startServer(0);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROME_ARGS, chromiumSandbox: false });
  let passed = 0;
  let failed = 0;
  try {
    for (const [name, fn] of steps) {
      if (ONLY && !name.includes(ONLY) && !/register|create a room/.test(name)) continue;
      const t = Date.now();
      try {
        await fn();
        passed += 1;
        console.log(`ok   ${name} (${Date.now() - t} ms)`);
      } catch (e) {
        failed += 1;
        console.log(`FAIL ${name}: ${e.stack || e}`);
        if (ctx.page) await ctx.page.screenshot({ path: path.join(tmpdir(), 'parley-browser-failure.png') }).catch(() => {});
        break;
      }
    }
  } finally {
    for (const u of [ctx.bob, ctx.carol]) if (u) u.close();
    await browser.close().catch(() => {});
    await stopServer('SIGTERM');
    rmSync(dataRoot, { recursive: true, force: true });
  }
  console.log(`browser: ${passed} passed, ${failed} failed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  process.exit(failed ? 1 : 0);
}

// Stopped from outside (tests/browser.rs on its time limit): take the server down too.
process.on('SIGTERM', () => {
  console.log('browser: stopped from outside');
  stopServer('SIGKILL').finally(() => process.exit(1));
});

main().catch((e) => {
  console.error(e);
  stopServer('SIGKILL').finally(() => process.exit(1));
});
