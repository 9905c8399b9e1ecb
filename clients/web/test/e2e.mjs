// End-to-end: the demo page in headless Chromium, same-origin with a running
// rekey server, logs every user of a credentials file in and migrates it.
//
//   node test/e2e.mjs --server http://127.0.0.1:PORT --credentials FILE
//
// FILE: {"vault": "<uuid>", "users": {"name": {"id": "<uuid>", "password": "…"}}}
// Chromium: $CHROMIUM, else /usr/bin/chromium (no browser is downloaded).
// The page and the library are served by page.route under ${server}/web/…,
// so the page's origin is the API's. Prints one JSON summary line; exits
// non-zero on any failure, including any console error in the page.

import { readFileSync, existsSync, statSync } from 'node:fs';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { RekeyApi, deriveMasterSecret, loginAuthenticator, uuidToBytes } from '../src/index.js';

const webDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const LOGIN_TIMEOUT_MS = 180_000;

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    if (key !== '--server' && key !== '--credentials') throw new Error(`unknown argument ${key}`);
    if (argv[i + 1] === undefined) throw new Error(`${key} needs a value`);
    out[key.slice(2)] = argv[i + 1];
  }
  if (!out.server || !out.credentials) {
    throw new Error('usage: node test/e2e.mjs --server URL --credentials FILE');
  }
  out.server = out.server.replace(/\/+$/, '');
  return out;
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.json': 'application/json', '.css': 'text/css' };

// Only these trees of clients/web are served.
const SERVED = [
  join(webDir, 'src') + sep,
  join(webDir, 'demo') + sep,
  ...['hashes', 'post-quantum', 'curves'].map((p) => join(webDir, 'node_modules', '@noble', p) + sep),
];

function fileFor(urlPath) {
  const rel = decodeURIComponent(urlPath.replace(/^\/web\//, ''));
  const file = normalize(join(webDir, rel));
  if (!SERVED.some((root) => file.startsWith(root))) return null;
  if (!existsSync(file) || !statSync(file).isFile()) return null;
  return file;
}

async function publicProgress(server) {
  const r = await fetch(`${server}/v1/migration/status`);
  if (!r.ok) throw new Error(`GET /v1/migration/status answered ${r.status}`);
  return (await r.json()).progress;
}

// What the server answers to a few requests the page never sends, recorded
// in the summary (SPEC-NOTES.md cites them). Uses the library from Node.
async function probes(server, creds) {
  const [a, b] = Object.keys(creds.users);
  const ua = creds.users[a];
  const api = new RekeyApi({ server });
  const params = await api.clientKdf();
  const master = await deriveMasterSecret(ua.password, uuidToBytes(creds.vault), uuidToBytes(ua.id), params);
  await api.openSession(ua.id, await loginAuthenticator(master, uuidToBytes(creds.vault), uuidToBytes(ua.id)));
  const answer = async (path, init = {}) => {
    const r = await fetch(`${server}${path}`, init);
    const body = await r.json().catch(() => null);
    return { status: r.status, code: body?.code ?? null };
  };
  const auth = { Authorization: api._authorization };
  return {
    client_kdf: params,
    package_of_migrated: await answer(`/v1/principals/${ua.id}/package`, { headers: auth }),
    package_of_another_account: await answer(`/v1/principals/${creds.users[b].id}/package`, { headers: auth }),
    package_without_session: await answer(`/v1/principals/${ua.id}/package`),
    bundle_without_content_type: await answer(`/v1/principals/${ua.id}/bundle`, { method: 'POST', headers: auth, body: new Uint8Array(0) }),
    bundle_garbage: await answer(`/v1/principals/${ua.id}/bundle`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/octet-stream' },
      body: new Uint8Array(16),
    }),
  };
}

const summary = { ok: false, chromium: null, users: [], wrong_password: null, console_errors: [] };

async function main() {
  const { server, credentials } = args();
  const creds = JSON.parse(readFileSync(credentials, 'utf8'));
  const names = Object.keys(creds.users ?? {});
  if (!creds.vault || names.length === 0) throw new Error('the credentials file has no vault or no users');
  const directory = Object.fromEntries(names.map((n) => [n, creds.users[n].id]));

  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(executablePath)) throw new Error(`no Chromium at ${executablePath} (set CHROMIUM)`);
  const browser = await chromium.launch({ executablePath, headless: true, args: ['--disable-gpu', '--no-first-run'] });
  summary.chromium = browser.version();
  const consoleErrors = summary.console_errors;
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text());
    });
    page.on('pageerror', (err) => consoleErrors.push(`uncaught: ${err.message}`));
    await page.route(`${server}/web/**`, async (route) => {
      const url = new URL(route.request().url());
      // A directory of login names for the demo's name field.
      if (url.pathname === '/web/demo/directory.json') {
        return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(directory) });
      }
      const file = fileFor(url.pathname);
      if (!file) return route.fulfill({ status: 404, contentType: 'text/plain', body: 'not served' });
      return route.fulfill({ status: 200, contentType: TYPES[extname(file)] ?? 'application/octet-stream', body: readFileSync(file) });
    });
    const pageUrl = `${server}/web/demo/index.html?vault=${creds.vault}`;

    const login = async (principalField, password) => {
      await page.goto(pageUrl);
      await page.waitForSelector('html[data-ready="true"]');
      if ((await page.inputValue('#vault')) !== creds.vault) throw new Error('the vault was not prefilled');
      await page.fill('#principal', principalField);
      await page.fill('#password', password);
      const started = Date.now();
      await page.click('#go');
      await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: LOGIN_TIMEOUT_MS });
      const ms = Date.now() - started;
      const state = await page.getAttribute('#status', 'data-state');
      return { state, ms };
    };

    // A wrong password: the server's refusal and hint are shown; nothing migrates.
    const before = await publicProgress(server);
    const first = names[0];
    const wrong = await login(creds.users[first].id, `${creds.users[first].password}-wrong`);
    const shownHint = (await page.textContent('#hint')).trim();
    summary.wrong_password = {
      state: wrong.state,
      status: Number(await page.getAttribute('#status', 'data-http-status')),
      code: await page.getAttribute('#status', 'data-code'),
      hint: shownHint,
      ms: wrong.ms,
    };
    if (wrong.state !== 'error' || summary.wrong_password.status !== 401 || summary.wrong_password.code !== 'bad_credentials') {
      throw new Error(`a wrong password was not refused with 401 bad_credentials: ${JSON.stringify(summary.wrong_password)}`);
    }
    if (shownHint.length === 0) throw new Error('the server\'s hint was not shown');
    const after = await publicProgress(server);
    if (JSON.stringify(before) !== JSON.stringify(after)) throw new Error('a refused login changed the migration progress');
    // Chromium reports the refused request itself as a console error; that
    // one is expected, any other is not.
    for (let i = consoleErrors.length - 1; i >= 0; i--) {
      if (/status of 401/.test(consoleErrors[i])) consoleErrors.splice(i, 1);
    }

    // Every user, one after another; the last one by login name.
    for (const [i, name] of names.entries()) {
      const u = creds.users[name];
      const field = i === names.length - 1 ? name : u.id;
      const { state, ms } = await login(field, u.password);
      if (state !== 'done') {
        const text = await page.textContent('#status');
        const hint = await page.textContent('#hint');
        throw new Error(`${name}: ${text} (${hint})`);
      }
      const result = JSON.parse(await page.getAttribute('#result', 'data-json'));
      if (result.roles_refused.length > 0) throw new Error(`${name}: roles refused: ${JSON.stringify(result.roles_refused)}`);
      if (result.principal !== u.id || result.already_migrated || result.principals[0] !== u.id) {
        throw new Error(`${name}: unexpected result ${JSON.stringify(result)}`);
      }
      summary.users.push({ name, by: field === name ? 'name' : 'id', ms, page_ms: result.ms, principals: result.principals.length, grants: result.grants, roles_confirmed: result.roles_confirmed, non_migratable: result.non_migratable, retries: result.retries, bundle_bytes: result.bundle_bytes });
    }
    if (consoleErrors.length > 0) throw new Error(`console errors in the page: ${consoleErrors.join(' | ')}`);
    summary.probes = await probes(server, creds);
    if (summary.probes.package_of_migrated.code !== 'already_migrated') {
      throw new Error(`a migrated account's package is not refused as already_migrated: ${JSON.stringify(summary.probes)}`);
    }
    summary.ok = true;
  } finally {
    await browser.close();
  }
}

main().then(
  () => {
    console.log(JSON.stringify(summary));
  },
  (err) => {
    console.log(JSON.stringify({ ...summary, ok: false, error: String(err?.message ?? err) }));
    process.exitCode = 1;
  },
);
