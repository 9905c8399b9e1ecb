// The demo login page: logs an account in against the server that serves
// this page (same origin) and migrates it, with a progress bar.

import { migrate, RekeyError } from '../src/index.js';

const $ = (id) => document.getElementById(id);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// Prefill from the query (?vault=…&principal=…), never the password.
const query = new URLSearchParams(location.search);
for (const field of ['vault', 'principal']) {
  if (query.get(field)) $(field).value = query.get(field);
}

// The server has no public name lookup: a login name is resolved through an
// optional directory.json beside this page ({"name": "<uuid>"}), which a
// deployment may serve. Otherwise the account id must be typed.
async function resolvePrincipal(text) {
  const value = text.trim();
  if (UUID.test(value.toLowerCase())) return value.toLowerCase();
  let directory = null;
  try {
    const r = await fetch(new URL('directory.json', location.href), { headers: { Accept: 'application/json' } });
    if (r.ok) directory = await r.json();
  } catch {
    directory = null;
  }
  const id = directory && typeof directory[value] === 'string' ? directory[value] : null;
  if (!id || !UUID.test(id)) {
    throw new RekeyError('unknown_name', `no account id is known for "${value}"`, {
      hint: 'enter the account id (a UUID); this page has no directory of login names',
    });
  }
  return id;
}

// Share of the bar for each stage.
function percent(p) {
  switch (p.stage) {
    case 'kdf':
      return 30 * (p.done ?? 0);
    case 'login':
      return 32;
    case 'package':
      return 35;
    case 'unlock':
      return 37;
    case 'grants':
      return 37 + (p.total ? 53 * (p.done / p.total) : 53);
    case 'sign':
      return 92;
    case 'submit':
      return 95;
    case 'conflict':
      return 35;
    case 'done':
      return 100;
    default:
      return null;
  }
}

const WORDS = {
  kdf: 'Deriving your keys from the password…',
  login: 'Logging in…',
  package: 'Fetching your migration package…',
  unlock: 'Unlocking your old key…',
  grants: 'Re-wrapping your records\' keys…',
  sign: 'Signing…',
  submit: 'Sending your new keys…',
  conflict: 'Someone else migrated a shared key meanwhile; rebuilding…',
  done: 'Done.',
};

function setStatus(state, text) {
  $('status').dataset.state = state;
  $('status').textContent = text;
}

function showResult(rows) {
  const dl = $('result');
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dl.append(dt, dd);
  }
  dl.hidden = false;
}

let running = null;

$('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  if (running) return;
  running = new AbortController();
  $('go').disabled = true;
  $('result').hidden = true;
  $('hint').textContent = '';
  delete $('status').dataset.code;
  delete $('status').dataset.httpStatus;
  $('progress').value = 0;
  setStatus('running', 'Starting…');
  const password = $('password').value;
  $('password').value = '';
  const started = performance.now();
  try {
    const principal = await resolvePrincipal($('principal').value);
    const out = await migrate({
      server: location.origin,
      vault: $('vault').value.trim().toLowerCase(),
      principal,
      password,
      signal: running.signal,
      onProgress: (p) => {
        const v = percent(p);
        if (v !== null) $('progress').value = Math.max(p.stage === 'conflict' ? 0 : $('progress').value, v);
        if (WORDS[p.stage]) setStatus('running', WORDS[p.stage]);
      },
    });
    const ms = Math.round(performance.now() - started);
    $('progress').value = 100;
    const summary = {
      principal,
      principals: out.principals,
      grants: out.grants,
      non_migratable: out.nonMigratable,
      retries: out.retries,
      bundle_bytes: out.bundleBytes,
      already_migrated: out.alreadyMigrated,
      roles_confirmed: out.roles.confirmed,
      roles_refused: out.roles.refused,
      ms,
    };
    $('result').dataset.json = JSON.stringify(summary);
    if (out.roles.refused.length > 0) {
      // PROTOCOL §15: a role another member migrated does not open for this
      // account. Nothing is lost yet: finalize waits, abort restores.
      setStatus('error', `A shared folder (role) does not open with your new keys: ${out.roles.refused.map((r) => r.reason).join('; ')}`);
      $('status').dataset.code = 'role_broken';
      $('hint').textContent = 'Your administrator has been alerted (finalize names this account). Nothing was deleted.';
    } else if (out.alreadyMigrated) {
      setStatus('done', 'This account had already moved to its new keys. Nothing to do.');
    } else {
      setStatus('done', `Your account moved to its new keys in ${(ms / 1000).toFixed(1)} s.`);
    }
    showResult([
      ['migrated', out.principals.length ? out.principals.join(', ') : '(already done)'],
      ['grants written', String(out.grants)],
      ['not migratable', String(out.nonMigratable)],
      ['rebuilds', String(out.retries)],
      ['bundle', `${out.bundleBytes} bytes`],
      ['roles confirmed', String(out.roles.confirmed)],
    ]);
  } catch (e) {
    const code = e instanceof RekeyError ? e.code : 'internal';
    $('status').dataset.code = code;
    if (e?.status) $('status').dataset.httpStatus = String(e.status);
    $('progress').value = 0;
    const hint = e?.hint ?? (code === 'internal' ? 'reload the page and try again' : '');
    setStatus('error', code === 'bad_credentials' ? 'Wrong password (or unknown account).' : `Could not migrate: ${e?.message ?? e}`);
    $('hint').textContent = hint;
  } finally {
    running = null;
    $('go').disabled = false;
  }
});

document.documentElement.dataset.ready = 'true';
