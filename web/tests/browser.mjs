// The dashboard in a real browser (Debian's Chromium, driven by playwright-core) against a real
// `berth serve` and engine: log in; a sandbox made through the API appears in the table with no
// reload; its terminal runs `echo hi` and follows the window's size; an uploaded file is
// listed; deleting from the table removes the row; a member sees only its own owner's
// sandboxes. Writes a screenshot of each page to $BERTH_UI_ARTIFACTS.
//   BERTH_URL=http://127.0.0.1:PORT BERTH_ADMIN_KEY=… node tests/browser.mjs

import { mkdirSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const url = process.env.BERTH_URL;
const adminKey = process.env.BERTH_ADMIN_KEY;
const artifacts = process.env.BERTH_UI_ARTIFACTS ?? 'target/ui-artifacts';
const image = process.env.BERTH_TEST_IMAGE ?? 'berth-test/busybox:latest';
const suffix = process.env.BERTH_UI_SUFFIX ?? String(process.pid);
if (!url || !adminKey) throw new Error('set BERTH_URL and BERTH_ADMIN_KEY');
mkdirSync(artifacts, { recursive: true });

const created = [];

async function api(key, method, path, body) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const SLEEP = ['sleep', '3600'];
const TICKING = ['sh', '-c', 'echo sandbox started; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done'];

async function sandbox(key, command = SLEEP, more = {}) {
  const made = await api(key, 'POST', '/v1/sandboxes', { image, command, ttl: '10m', labels: { 'ui-check': suffix }, ...more });
  created.push(made.id);
  return made;
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok - ${message}`);
}

/** The terminal's visible lines, as text. */
async function screenLines(page) {
  return page.$$eval('.xterm-rows > div', (rows) => rows.map((row) => row.textContent.replace(/\u00a0/g, ' ').trimEnd()));
}

async function waitForLine(page, predicate, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  let lines = [];
  while (Date.now() < deadline) {
    lines = await screenLines(page);
    const found = lines.find(predicate);
    if (found !== undefined) return found;
    await page.waitForTimeout(100);
  }
  throw new Error(`the terminal never showed ${what}; it shows:\n${lines.join('\n')}`);
}

async function login(context, key) {
  const page = await context.newPage();
  page.on('dialog', (dialog) => dialog.accept(dialog.type() === 'prompt' ? '1h' : undefined));
  page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  await page.goto(`${url}/ui`);
  await page.fill('input[name=key]', key);
  await page.click('button[type=submit]');
  await page.waitForSelector('nav .who');
  return page;
}

const userData = mkdtempSync(join(tmpdir(), 'berth-ui-chromium-'));
// A persistent context is how playwright takes a fresh profile directory of ours; each tab has
// its own sessionStorage, so the member signs in in a second tab of it.
const browser = await chromium.launchPersistentContext(userData, {
  viewport: { width: 1280, height: 900 },
  executablePath: process.env.BERTH_CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

let failed = false;
try {
  const alice = (await api(adminKey, 'POST', '/v1/keys', { owner: `ui-alice-${suffix}`, role: 'member' })).secret;
  const bob = (await api(adminKey, 'POST', '/v1/keys', { owner: `ui-bob-${suffix}`, role: 'member' })).secret;

  // Log in: a wrong key is refused on the page, the admin's key signs in.
  const page = await browser.newPage();
  // Every address the page asks for, WebSockets included: the key must be in none of them.
  const addresses = [];
  page.on('request', (request) => addresses.push(request.url()));
  page.on('websocket', (socket) => addresses.push(socket.url()));
  page.on('dialog', (dialog) => dialog.accept(dialog.type() === 'prompt' ? '1h' : undefined));
  page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  await page.goto(`${url}/ui`);
  await page.waitForSelector('form.login');
  await page.screenshot({ path: `${artifacts}/login.png` });
  await page.fill('input[name=key]', 'berth_' + '0'.repeat(64));
  await page.click('button[type=submit]');
  await page.waitForSelector('form.login .error:not(:empty)');
  check(true, 'a wrong key is refused on the login page');
  await page.fill('input[name=key]', adminKey);
  await page.click('button[type=submit]');
  await page.waitForSelector('nav .who');
  check((await page.textContent('nav .who')).includes('admin'), 'the admin key signs in');
  check(
    await page.evaluate(() => sessionStorage.getItem('berth.key') !== null && localStorage.length === 0),
    'the key is kept in sessionStorage only',
  );
  await page.waitForSelector('.live.on');

  // A sandbox made through the API appears without a reload.
  await page.evaluate(() => (window.berthNotReloaded = true));
  const first = await sandbox(alice, TICKING, { ports: [8080] });
  const second = await sandbox(adminKey, SLEEP, { labels: { 'ui-check': suffix, tier: 'second' } });
  await page.waitForSelector(`tr[data-id="${first.id}"]`, { timeout: 10_000 });
  check(await page.evaluate(() => window.berthNotReloaded === true), 'a sandbox made through the API appears in the table without a reload');
  await page.waitForFunction((id) => document.querySelector(`tr[data-id="${id}"] .cpu`)?.textContent.includes('%'), first.id, { timeout: 15_000 });
  check(true, 'the table shows the sandbox\u2019s CPU and memory');
  await page.waitForSelector(`tr[data-id="${second.id}"]`);
  // Pause and resume from the table: the row follows through the events.
  const statusOf = (id) => page.textContent(`tr[data-id="${id}"] .status`);
  await page.click(`tr[data-id="${second.id}"] button:text("Pause")`);
  await page.waitForFunction((id) => document.querySelector(`tr[data-id="${id}"] .status`)?.textContent === 'Paused', second.id, { timeout: 10_000 });
  check((await api(adminKey, 'GET', `/v1/sandboxes/${second.id}`)).status === 'Paused', 'pausing from the table pauses the sandbox and the row says so');
  const table = await page.$('table.sandboxes').then((element) => element.boundingBox());
  await page.screenshot({ path: `${artifacts}/sandboxes.png`, clip: { x: 0, y: 0, width: 1280, height: Math.ceil(table.y + table.height + 24) } });
  // Filters: by label, by owner, by status (the page's URL keeps them).
  const shownIds = () => page.$$eval('tbody tr[data-id]', (rows) => rows.map((row) => row.dataset.id));
  const filterBy = async (label, owner, status, expected) => {
    await page.fill('input[name=label]', label);
    await page.fill('input[name=owner]', owner);
    await page.selectOption('select[name=status]', status);
    await page.click('form.filters button[type=submit]');
    await page
      .waitForFunction(
        (expected) => JSON.stringify([...document.querySelectorAll('tbody tr[data-id]')].map((row) => row.dataset.id)) === expected,
        JSON.stringify(expected),
        { timeout: 10_000 },
      )
      .catch(() => {});
    return JSON.stringify(await shownIds()) === JSON.stringify(expected);
  };
  check(await filterBy('tier=second', '', '', [second.id]), 'the label filter shows only the labelled sandbox');
  check(await filterBy('', `ui-alice-${suffix}`, '', [first.id]), 'the owner filter shows only that owner\u2019s sandbox');
  check(await filterBy('', '', 'Paused', [second.id]), 'the status filter shows only the paused sandbox');
  check(new URL(page.url()).searchParams.get('status') === 'Paused', 'the filters are kept in the page\u2019s address');
  check(await filterBy('', '', '', [second.id, first.id]), 'no filter shows both, newest first');
  await page.waitForSelector(`tr[data-id="${first.id}"]`);
  await page.click(`tr[data-id="${second.id}"] button:text("Resume")`);
  await page.waitForFunction((id) => document.querySelector(`tr[data-id="${id}"] .status`)?.textContent === 'Running', second.id, { timeout: 10_000 });
  check((await statusOf(second.id)) === 'Running', 'resuming from the table resumes it');
  await page.click(`tr[data-id="${second.id}"] button:text("Renew")`);
  await page.waitForFunction((id) => /^(59m|1h)/.test(document.querySelector(`tr[data-id="${id}"] [data-until]`)?.textContent ?? ''), second.id, { timeout: 10_000 });
  const renewed = await api(adminKey, 'GET', `/v1/sandboxes/${second.id}`);
  check(Date.parse(renewed.expires_at) - Date.now() > 55 * 60_000, 'renewing from the table (to 1h) moves the deadline and the row shows it');

  // Its page: a terminal that runs commands and follows the window's size.
  await page.click(`tr[data-id="${first.id}"] a`);
  await page.waitForSelector('.terminal[data-state=open]', { timeout: 10_000 });
  const portRow = await page.textContent('section table tr:nth-child(2)');
  check(portRow.startsWith('8080') && portRow.includes(`/v1/sandboxes/${first.id}/proxy/8080/`), 'the sandbox page lists its port, on the host and through the proxy');
  await page.click('.terminal');
  await page.keyboard.type('echo hi\n');
  await waitForLine(page, (line) => line.trim() === 'hi', '`hi`');
  check(true, '`echo hi` in the terminal prints hi');
  const sizeOf = async () => {
    await page.keyboard.type('clear; stty size\n');
    const line = await waitForLine(page, (line) => /^\d+ \d+$/.test(line.trim()), 'the output of `stty size`');
    const [rows, cols] = line.trim().split(' ').map(Number);
    const shown = (await screenLines(page)).length;
    return { rows, cols, shown };
  };
  const before = await sizeOf();
  check(before.rows === before.shown, `stty size says ${before.rows} rows, as many as the terminal shows`);
  await page.setViewportSize({ width: 820, height: 700 });
  let after = before;
  for (let attempt = 0; attempt < 20 && (after.cols === before.cols || after.rows === before.rows); attempt += 1) {
    await page.waitForTimeout(200);
    after = await sizeOf();
  }
  check(after.cols < before.cols && after.rows < before.rows && after.rows === after.shown, `stty size follows the window: ${before.rows}x${before.cols} -> ${after.rows}x${after.cols}`);
  await page.setViewportSize({ width: 1280, height: 900 });

  // Files: upload one, see it listed, download it back.
  await page.setInputFiles('input[name=upload]', { name: 'hello-ui.txt', mimeType: 'text/plain', buffer: Buffer.from('hello from the browser\n') });
  await page.waitForSelector('tr[data-name="hello-ui.txt"]', { timeout: 10_000 });
  check(true, 'an uploaded file appears in the listing');
  const stored = await fetch(`${url}/v1/sandboxes/${first.id}/files?path=/tmp/hello-ui.txt`, { headers: { Authorization: `Bearer ${alice}` } });
  check((await stored.text()) === 'hello from the browser\n', 'the uploaded file holds what was sent');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('tr[data-name="hello-ui.txt"] button')]);
  check(download.suggestedFilename() === 'hello-ui.txt', 'a listed file downloads under its name');
  await page.waitForSelector('table.history tbody tr');
  await page.waitForFunction(
    () => [...document.querySelectorAll('.spark-box svg polyline')].every((line) => line.getAttribute('points').split(' ').length >= 2),
    null,
    { timeout: 10_000 },
  );
  const history = await page.$$eval('table.history tbody tr', (rows) => rows.map((row) => row.textContent));
  check(history.some((row) => row.includes('created')) && history.some((row) => row.includes('Running')), 'the sandbox page shows its status history (created … Running) and stats sparklines');
  // The logs follow: a tick printed after the page opened shows up in it.
  const tickOf = () => page.$eval('pre.logs', (pre) => Math.max(0, ...[...pre.textContent.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]))));
  await page.waitForFunction(() => document.querySelector('pre.logs').textContent.includes('sandbox started'), null, { timeout: 10_000 });
  const seen = await tickOf();
  await page.waitForFunction((seen) => [...document.querySelector('pre.logs').textContent.matchAll(/tick (\d+)/g)].some((m) => Number(m[1]) > seen + 1), seen, { timeout: 10_000 });
  check(true, `the logs follow live (past tick ${seen})`);
  await page.click('.terminal');
  await page.keyboard.type('clear; echo hi from the dashboard; ls /; cat /tmp/hello-ui.txt\n');
  await waitForLine(page, (line) => line.trim() === 'hello from the browser', 'the uploaded file');
  await page.screenshot({ path: `${artifacts}/sandbox.png`, fullPage: true });
  // Ending the shell offers a new session, which works like the first.
  await page.keyboard.type('exit\n');
  await page.waitForSelector('.terminal[data-state=closed]');
  await page.click('.terminal-bar button');
  await page.waitForSelector('.terminal[data-state=open]', { timeout: 10_000 });
  await page.click('.terminal');
  await page.keyboard.type('echo again\n');
  await waitForLine(page, (line) => line.trim() === 'again', '`again`');
  check(true, 'a shell that exits can be replaced by a new session');

  // Delete from the table: the row goes.
  await page.click('nav a[href="/ui/sandboxes"]');
  await page.waitForSelector(`tr[data-id="${first.id}"]`);
  await page.click(`tr[data-id="${first.id}"] button.danger`);
  await page.waitForSelector(`tr[data-id="${first.id}"]`, { state: 'detached', timeout: 10_000 });
  // The events of its stopping and removal come after: the row must not come back with them.
  await page.waitForTimeout(2000);
  check((await page.$(`tr[data-id="${first.id}"]`)) === null, 'the deleted row stays gone while its container is removed');
  const gone = await api(adminKey, 'GET', `/v1/sandboxes/${first.id}`).catch(() => null);
  check(gone === null || ['Terminated', 'Stopping'].includes(gone.status), 'deleting from the table removes the row and the sandbox');

  // Templates and pools: a template whose image is missing until it is built from the page,
  // with the build's log streaming, then its pool filling.
  const template = `ui-check-${suffix}`;
  created.template = template;
  await api(adminKey, 'POST', '/v1/templates', {
    name: template,
    tag: 'latest',
    image: `berth-ui-check/${template}:latest`,
    command: SLEEP,
    pool: { min_ready: 1 },
  });
  await page.click('nav a[href="/ui/templates"]');
  await page.waitForSelector(`tr[data-template="${template}:latest"]`);
  await page.waitForSelector(`form.build option[value="${template}:latest"]`, { state: 'attached' });
  await page.selectOption('form.build select', `${template}:latest`);
  await page.click('form.build button[type=submit]');
  await page.waitForFunction(() => /✔ built|✘/.test(document.querySelector('pre.build-log').textContent), null, { timeout: 60_000 });
  const buildLog = await page.textContent('pre.build-log');
  check(buildLog.includes('✔ built') && buildLog.includes('RUN echo built by the berth dashboard'), 'a build from the templates page streams its log and succeeds');
  await page.waitForFunction(
    (name) => document.querySelector(`tr[data-pool="${name}"] td:nth-child(2)`)?.textContent === '1',
    `${template}:latest`,
    { timeout: 30_000 },
  );
  check(true, 'the built template’s pool shows a ready sandbox');
  await page.screenshot({ path: `${artifacts}/templates.png`, fullPage: true });

  // The other pages answer and draw.
  for (const [path, selector, name] of [
    ['/ui/health', 'dl.spec', 'health'],
    ['/ui/owners', 'section table', 'owners'],
  ]) {
    await page.click(`nav a[href="${path}"]`);
    await page.waitForSelector(selector);
    await page.waitForTimeout(300);
    await page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });
    check(true, `the ${name} page draws`);
  }
  check(
    addresses.some((address) => address.includes('/exec/ws')) && !addresses.some((address) => address.includes(adminKey)),
    `the key is in none of the ${addresses.length} addresses the page asked for (the terminal's WebSocket among them)`,
  );
  await page.close();

  // A member sees only its own owner's sandboxes, live as well as listed.
  const member = await login(browser, alice);
  await member.waitForSelector('.live.on');
  const theirs = await sandbox(bob);
  const mine = await sandbox(alice);
  await member.waitForSelector(`tr[data-id="${mine.id}"]`, { timeout: 10_000 });
  await member.reload();
  await member.waitForSelector(`tr[data-id="${mine.id}"]`, { timeout: 10_000 });
  const owners = await member.$$eval('tbody tr[data-id] td:nth-child(3)', (cells) => cells.map((cell) => cell.textContent));
  check(
    (await member.$(`tr[data-id="${theirs.id}"]`)) === null && owners.every((owner) => owner === `ui-alice-${suffix}`),
    'a member sees only its own sandboxes',
  );
  check((await member.$('nav a[href="/ui/owners"]')) === null, 'a member has no owners page in its navigation');
  await member.screenshot({ path: `${artifacts}/member.png` });
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  for (const id of created) await api(adminKey, 'DELETE', `/v1/sandboxes/${id}`).catch(() => {});
  if (created.template) await api(adminKey, 'DELETE', `/v1/templates/${created.template}:latest`).catch(() => {});
  await browser.close();
  rmSync(userData, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
