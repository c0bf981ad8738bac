// Page-load benchmark of Parley's web client in Debian's headless Chromium, driven by
// playwright-core with the launch flags of run.mjs. Run by benches/browser_load.rs
// (`cargo bench --bench browser_load`), which starts the server; by hand:
//   PARLEY_URL=http://127.0.0.1:7878 node tests/browser/load.mjs
// It seeds one user who is a member of 100 rooms, one of which holds 1,000 entries, then
// measures from navigation start, over RUNS runs each cold (a new browser context: nothing
// cached) and warm (a reload of that tab: every file revalidated, 304):
//   - rooms: all 100 rooms listed;
//   - log: the 1,000-entry room (opened at load: it sorts first) shows its latest entry;
//   - then a click on the last room of the list, issued as soon as both of the above hold
//     (the catch-up of the 100 rooms still running): from the click's arrival in the page to
//     the frame that shows the room, and its input delay (arrival to handler);
//   - caught up: the catch-up (a sync of every room) done, the status line cleared.
// It prints Markdown tables: median and worst of each figure, and the bytes transferred.

import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const URL_ = (process.env.PARLEY_URL || '').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const RUNS = Number(process.env.RUNS || 7);
const ROOMS = 100;
const ENTRIES = 1000;
const PASSWORD = 'correct horse battery';
const USER = 'reader';
const BIG = 'a big room';
/** The text of the big room's latest entry, known once seeded. */
let latest = '';
const LAST_ROOM = `room ${String(ROOMS - 1).padStart(3, '0')}`;

if (!URL_) {
  console.error('PARLEY_URL must name the running server, e.g. http://127.0.0.1:7878');
  process.exit(2);
}

const CHROME_ARGS = [
  '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-default-apps', '--disable-extensions', '--disable-gpu', '--disable-dev-shm-usage',
];

async function rest(method, p, body, token) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${URL_}/api/v1${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const login = async () => (await rest('POST', '/login', { username: USER, password: PASSWORD })).token;

/** The user, 99 small rooms and the big one: its creator's join and messages, 1,000 entries. */
async function seed() {
  await rest('POST', '/register', { username: USER, password: PASSWORD });
  const token = await login();
  const big = await rest('POST', '/rooms', { name: BIG }, token);
  for (let i = 1; i < ROOMS; i++) {
    await rest('POST', '/rooms', { name: `room ${String(i).padStart(3, '0')}` }, token);
  }
  const ws = new WebSocket(`${URL_.replace(/^http/, 'ws')}/api/v1/ws?token=${token}`);
  await new Promise((resolve, reject) => {
    ws.on('message', (d) => {
      if (JSON.parse(d.toString()).type === 'hello') resolve();
    });
    ws.on('error', reject);
  });
  const total = ENTRIES - (big.last_seq || 0);
  let acked = 0;
  const done = new Promise((resolve, reject) => {
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString());
      if (f.type === 'error') reject(new Error(`seeding: ${f.code} ${f.message}`));
      if (f.type === 'entry' && f.nonce && ++acked === total) resolve();
    });
  });
  // At most 100 in flight.
  let sent = 0;
  const pump = () => {
    while (sent < total && sent - acked < 100) {
      sent += 1;
      ws.send(JSON.stringify({ type: 'send', room: big.id, text: `line ${sent} of the big room`, nonce: `seed-${sent}` }));
    }
  };
  ws.on('message', pump);
  pump();
  await done;
  latest = `line ${total} of the big room`;
  ws.close();
  const room = await rest('GET', `/rooms/${big.id}`, undefined, token);
  const me = await rest('GET', '/me', undefined, token);
  if (me.rooms.length !== ROOMS) throw new Error(`seeded ${me.rooms.length} rooms, not ${ROOMS}`);
  if (room.last_seq !== ENTRIES) throw new Error(`the big room has ${room.last_seq} entries, not ${ENTRIES}`);
}

/** Waits in the page (polling each frame) until pred holds; the page's ms since navigation start. */
function when(page, pred, arg) {
  return page.waitForFunction(pred, arg, { polling: 'raf', timeout: 60000 }).then((h) => h.jsonValue());
}

/** One load of the page: navigation (or reload) to the three marks, and what went over the wire. */
async function measure(page, navigate) {
  await navigate();
  // Both recorded in the page by a watcher installed at navigation (watchLoad); the big room
  // is the one opened at load.
  const rooms = await when(page, () => window.__roomsShownAt || false);
  const log = await when(page, () => window.__latestShownAt || false);
  await page.locator('#rooms button', { hasText: LAST_ROOM }).click();
  const click = await when(page, (name) => document.getElementById('room-name').textContent === name && window.__click && window.__click.painted && window.__click, LAST_ROOM);
  // Resource Timing: bytes on the wire (headers included; a 304 has no body) of the page's
  // files and of the REST calls made so far; the WebSocket is not counted.
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    const bytes = { files: n.transferSize, fileBodies: n.encodedBodySize, fileCount: 1, api: 0, apiCount: 0 };
    for (const r of performance.getEntriesByType('resource')) {
      if (new URL(r.name).pathname.startsWith('/api/')) {
        bytes.api += r.transferSize;
        bytes.apiCount += 1;
      } else {
        bytes.files += r.transferSize;
        bytes.fileBodies += r.encodedBodySize;
        bytes.fileCount += 1;
      }
    }
    return { dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, bytes };
  });
  const caughtUp = await when(page, () => window.__caughtUpAt || false);
  // The click's own latency: from its arrival in the page (the event's timeStamp) to the
  // frame that shows the room it opened; and its input delay (to the handler).
  return { rooms, log, caughtUp, clickToFrame: click.painted - click.at, inputDelay: click.handled - click.at, ...nav };
}

/**
 * Records (in page time, checked each frame from the start of the document) the first frame
 * in which the room list shows all `rooms`, and the first in which the log shows `latest`.
 */
function watchLoad([rooms, latest]) {
  const check = () => {
    const now = performance.now();
    if (!window.__roomsShownAt && document.querySelectorAll('#rooms button').length === rooms) window.__roomsShownAt = now;
    const log = document.getElementById('log');
    if (!window.__latestShownAt && log && [...log.querySelectorAll('.entry .body')].some((b) => b.textContent.endsWith(latest))) {
      window.__latestShownAt = now;
    }
    if (!window.__roomsShownAt || !window.__latestShownAt) requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
  // The catch-up is over when the status line goes from "Catching up…" to nothing.
  document.addEventListener('DOMContentLoaded', () => {
    const conn = document.getElementById('conn');
    let syncing = false;
    new MutationObserver(() => {
      if (conn.textContent.startsWith('Catching up')) syncing = true;
      else if (syncing && conn.textContent === '' && !window.__caughtUpAt) window.__caughtUpAt = performance.now();
    }).observe(conn, { childList: true, characterData: true, subtree: true });
  });
  document.addEventListener('click', (ev) => {
    const c = { at: ev.timeStamp, handled: performance.now() };
    window.__click = c;
    requestAnimationFrame(() => {
      c.painted = performance.now();
    });
  }, true);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ms = (x) => `${Math.round(x)} ms`;
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

async function main() {
  await seed();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROME_ARGS, chromiumSandbox: false });
  const cold = [];
  const warm = [];
  const errors = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const token = await login();
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      // Signed in already, as a tab that reloads or a link opened after logging in.
      await context.addInitScript(([t, u]) => {
        if (!sessionStorage.getItem('parley.token')) {
          sessionStorage.setItem('parley.token', t);
          sessionStorage.setItem('parley.username', u);
        }
        sessionStorage.removeItem('parley.room');
      }, [token, USER]);
      await context.addInitScript(watchLoad, [ROOMS, latest]);
      const page = await context.newPage();
      page.on('pageerror', (e) => errors.push(String(e)));
      cold.push(await measure(page, () => page.goto(`${URL_}/`)));
      warm.push(await measure(page, () => page.reload()));
      await context.close();
    }
  } finally {
    await browser.close();
  }
  if (errors.length) throw new Error(`script errors in the page: ${errors.join('\n')}`);

  // The files as served: no compression (the server does none), every asset the page loads.
  const assets = ['/', '/web/app.js', '/web/api.js', '/web/socket.js', '/web/view.js', '/web/style.css', '/web/favicon.svg'];
  let total = 0;
  const sizes = [];
  for (const a of assets) {
    const n = (await (await fetch(URL_ + a)).arrayBuffer()).byteLength;
    sizes.push([a, n]);
    total += n;
  }

  console.log(`Page-load of the web client: ${ROOMS} rooms, one of ${ENTRIES} entries; ${RUNS} runs each.\n`);
  console.log('| load | DOMContentLoaded | load event | all 100 rooms listed | 1,000-entry room shows its latest entry | then a click on a room: to the frame showing it | of which input delay | catch-up of all rooms done |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const [name, runs] of [['cold (new context, nothing cached)', cold], ['warm (reload, files revalidated: 304)', warm]]) {
    const cell = (k) => `${ms(median(runs.map((r) => r[k])))} (worst ${ms(Math.max(...runs.map((r) => r[k])))})`;
    console.log(`| ${name} | ${cell('dcl')} | ${cell('load')} | ${cell('rooms')} | ${cell('log')} | ${cell('clickToFrame')} | ${cell('inputDelay')} | ${cell('caughtUp')} |`);
  }
  console.log('\nmedian (worst); ms from navigation start except the click\'s two, all measured in the page (performance.now()).');
  console.log('The click goes to the last room of the list as soon as the two marks before it hold, while the catch-up still runs.\n');
  console.log('| file | bytes as served |');
  console.log('| --- | --- |');
  for (const [a, n] of sizes) console.log(`| \`${a}\` | ${n} |`);
  console.log(`| **total** | **${total}** (${kb(total)}) |`);
  const c = cold[0].bytes;
  const w = warm[0].bytes;
  console.log(`\nOn the wire (Resource Timing, headers included; the WebSocket not counted): a cold load fetched ${c.fileCount} files,`);
  console.log(`${kb(c.files)} (bodies ${kb(c.fileBodies)}), and made ${c.apiCount} REST calls, ${kb(c.api)}, before the click;`);
  console.log(`a warm load revalidated the ${w.fileCount} files: ${kb(w.files)} on the wire (304s, no bodies), and made ${w.apiCount} REST calls, ${kb(w.api)}.`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
