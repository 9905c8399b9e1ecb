// The HTTP side and the migration loop: log in, fetch the package, build,
// submit, rebuild after a conflict (PROTOCOL §10.2).

import { RekeyError, abortError, checkAborted } from './errors.js';
import { isUuid, toHex, uuidToBytes, wipe } from './bytes.js';
import { checkKdfParams, deriveMasterSecret, loginAuthenticator } from './auth.js';
import { parsePackage } from './package.js';
import { buildBundle, OpenedGrants } from './build.js';
import { confirmRoles } from './confirm.js';

/** Builds after which the loop gives up (PROTOCOL §10.2). */
export const MAX_ATTEMPTS = 30;
/** The largest package this client reads (rekey's own client reads at most 512 MiB). */
export const MAX_PACKAGE_BYTES = 512 * 1024 * 1024;

function base(server) {
  if (typeof server !== 'string' || server === '') {
    return globalThis.location ? globalThis.location.origin : '';
  }
  return server.replace(/\/+$/, '');
}

/** A uniformly random pause below 5 ms × attempt, capped at 100 ms. */
export function conflictBackoffMs(retry) {
  const cap = 5 * Math.min(Math.max(retry, 1), 20);
  const draw = new Uint32Array(1);
  crypto.getRandomValues(draw);
  return (cap * draw[0]) / 2 ** 32;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Turns a refusal into a RekeyError carrying the server's code and hint. */
async function refusal(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall through
  }
  const retry = Number.parseInt(response.headers.get('retry-after') ?? '', 10);
  const code = body && typeof body.code === 'string' ? body.code : `http_${response.status}`;
  const message = body && typeof body.error === 'string' ? body.error : `the server answered ${response.status}`;
  return new RekeyError(code, message, {
    status: response.status,
    hint: body && typeof body.hint === 'string' ? body.hint : null,
    retryAfter: Number.isFinite(retry) ? retry : null,
  });
}

/**
 * The migration API of one rekey server. `fetch` and `authorization` are
 * pluggable: a deployment with its own session login passes
 * `authorization: () => 'Bearer …'` (or any header value) instead of calling
 * openSession.
 */
export class RekeyApi {
  constructor({ server, fetch: fetchImpl, authorization } = {}) {
    // One vault of a server of several (PROTOCOL §3, "Several vaults on
    // one server"): `https://host/v1/vaults/NAME` puts every /v1 path of
    // this API under /v1/vaults/NAME.
    const url = base(server);
    const vaultPath = /^(.*)\/v1\/vaults(?:\/([^/]*))?$/.exec(url);
    if (vaultPath && !/^[a-z0-9_-]{1,64}$/.test(vaultPath[2] ?? '')) {
      throw new RekeyError('bad_argument', 'a vault name is 1 to 64 of a-z, 0-9, _ and -');
    }
    this.server = vaultPath ? vaultPath[1] : url;
    this.apiPrefix = vaultPath ? `/v1/vaults/${vaultPath[2]}` : '/v1';
    this._fetch = fetchImpl ?? globalThis.fetch.bind(globalThis);
    this._authorization = authorization ?? null;
  }

  async _request(method, path, { body, contentType, auth = false, signal } = {}) {
    const headers = { Accept: 'application/json' };
    if (contentType) headers['Content-Type'] = contentType;
    if (auth) {
      const value = typeof this._authorization === 'function' ? await this._authorization() : this._authorization;
      if (value) headers.Authorization = value;
    }
    let response;
    try {
      const routed = path.startsWith('/v1/') ? `${this.apiPrefix}${path.slice(3)}` : path;
      response = await this._fetch(`${this.server}${routed}`, { method, headers, body, signal, credentials: 'same-origin' });
    } catch (cause) {
      if (signal?.aborted) throw abortError(signal);
      throw new RekeyError('network', `could not reach the server (${cause?.message ?? cause})`, { cause });
    }
    if (!response.ok) throw await refusal(response);
    return response;
  }

  /** `GET /v1/client-kdf`, checked. */
  async clientKdf({ signal } = {}) {
    const r = await this._request('GET', '/v1/client-kdf', { signal });
    return checkKdfParams(await r.json());
  }

  /**
   * `POST /v1/session` with the login authenticator (32 bytes); answers
   * `{token, principal, expiresAt}` and uses the token from then on.
   */
  async openSession(principal, authenticator, { signal } = {}) {
    const body = JSON.stringify({ principal, authenticator: toHex(authenticator) });
    const r = await this._request('POST', '/v1/session', { body, contentType: 'application/json', signal });
    const s = await r.json();
    if (!s || typeof s.token !== 'string' || s.principal !== principal) {
      throw new RekeyError('bad_session', 'the server answered a session for another account or no token');
    }
    this._authorization = `Bearer ${s.token}`;
    return { token: s.token, principal: s.principal, expiresAt: s.expires_at };
  }

  /** `GET /v1/principals/{id}/package`: the raw JSON text (parse it with parsePackage). */
  async packageText(principal, { signal } = {}) {
    const r = await this._request('GET', `/v1/principals/${principal}/package`, { auth: true, signal });
    const declared = Number.parseInt(r.headers.get('content-length') ?? '', 10);
    if (declared > MAX_PACKAGE_BYTES) throw new RekeyError('package_too_large', 'the package is larger than this client reads');
    const text = await r.text();
    if (text.length > MAX_PACKAGE_BYTES) throw new RekeyError('package_too_large', 'the package is larger than this client reads');
    return text;
  }

  /** `GET /v1/principals/{id}/role-checks`: the raw JSON text (PROTOCOL §15; parse it with parseRoleChecks). */
  async roleChecksText(principal, { signal } = {}) {
    const r = await this._request('GET', `/v1/principals/${principal}/role-checks`, { auth: true, signal });
    const declared = Number.parseInt(r.headers.get('content-length') ?? '', 10);
    if (declared > MAX_PACKAGE_BYTES) throw new RekeyError('role_checks_too_large', 'the role checks are larger than this client reads');
    return r.text();
  }

  /** `POST /v1/principals/{id}/role-receipts` with one receipt (`{role, key_pair, checked, signature}`). */
  async sendReceipt(principal, receipt, { signal } = {}) {
    const body = JSON.stringify({ ...receipt, signature: toHex(receipt.signature) });
    await this._request('POST', `/v1/principals/${principal}/role-receipts`, {
      body,
      contentType: 'application/json',
      auth: true,
      signal,
    });
  }

  /** `POST /v1/principals/{id}/bundle`: answers the server's report. */
  async submit(principal, bytes, { signal } = {}) {
    const r = await this._request('POST', `/v1/principals/${principal}/bundle`, {
      body: bytes,
      contentType: 'application/octet-stream',
      auth: true,
      signal,
    });
    return r.json();
  }
}

function requireIds(vault, principal) {
  if (!isUuid(vault)) throw new RekeyError('bad_argument', 'the vault id is not a lowercase UUID');
  if (!isUuid(principal)) throw new RekeyError('bad_argument', 'the account id is not a lowercase UUID');
}

/**
 * Migrates one account given its master secret, over an API that is already
 * logged in (or whose `authorization` the caller supplies). Answers
 * `{principals, grants, nonMigratable, retries, bundleBytes, alreadyMigrated,
 * skipped, roles}`; `roles` is `{confirmed, refused: [{role, reason}]}`, the
 * role confirmations of PROTOCOL §15 (a refused role means the member who
 * migrated it cut this account off: tell the user, the administrator sees
 * it). `targets` (optional) lists the migration targets the caller accepts
 * (default: all three); a package that needs another is refused with
 * `unsupported_target` before anything is built or sent.
 */
export async function migrateWithMasterSecret({ api, server, fetch, authorization, vault, principal, masterSecret, targets, onProgress = () => {}, signal }) {
  requireIds(vault, principal);
  const client = api ?? new RekeyApi({ server, fetch, authorization });
  const result = await migrateOnly({ client, vault, principal, masterSecret, targets, onProgress, signal });
  // PROTOCOL §15: after its own bundle (or already_migrated), the client
  // confirms the roles other members migrated.
  checkAborted(signal);
  onProgress({ stage: 'roles' });
  const roles = await confirmRoles({ api: client, vault, principal, masterSecret, signal });
  return { ...result, roles };
}

async function migrateOnly({ client, vault, principal, masterSecret, targets, onProgress, signal }) {
  const opened = new OpenedGrants();
  const done = (extra) => ({ principals: [], grants: 0, nonMigratable: 0, skipped: [], ...extra });
  try {
    for (let attempt = 1; ; attempt++) {
      checkAborted(signal);
      onProgress({ stage: 'package', attempt });
      let text;
      try {
        text = await client.packageText(principal, { signal });
      } catch (e) {
        // The account migrated already (an earlier submission was applied).
        if (e.code === 'already_migrated') return done({ alreadyMigrated: true, retries: attempt - 1, bundleBytes: 0 });
        throw e;
      }
      const pkg = parsePackage(text, { principal, vault });
      // buildBundle refuses first a target this client cannot serve
      // (`unsupported_target`): nothing is built or sent then.
      const built = await buildBundle(pkg, masterSecret, {
        opened,
        targets,
        signal,
        onProgress: (p) => onProgress({ ...p, attempt }),
      });
      checkAborted(signal);
      onProgress({ stage: 'submit', attempt, bytes: built.bytes.length });
      try {
        const applied = await client.submit(principal, built.bytes, { signal });
        onProgress({ stage: 'done', attempt });
        return {
          principals: applied.principals,
          grants: applied.grants,
          nonMigratable: applied.non_migratable,
          retries: attempt - 1,
          bundleBytes: built.bytes.length,
          alreadyMigrated: false,
          skipped: built.report.skipped,
        };
      } catch (e) {
        if (e.status !== 409) throw e;
        // Our own part is migrated: an earlier submission was applied.
        if (e.code === 'already_migrated') return done({ alreadyMigrated: true, retries: attempt - 1, bundleBytes: built.bytes.length });
        // Blocked or exempt: rebuilding cannot help (PROTOCOL §10.2).
        if (e.code === 'not_pending') throw e;
        if (attempt >= MAX_ATTEMPTS) {
          throw new RekeyError('too_many_conflicts', `gave up after ${attempt} builds: the vault kept changing`, {
            hint: 'log in again a little later',
            cause: e,
          });
        }
        onProgress({ stage: 'conflict', attempt, code: e.code });
        await sleep(conflictBackoffMs(attempt), signal);
      }
    }
  } finally {
    opened.wipe();
  }
}

/**
 * Logs an account of a demo vault in and migrates it: `GET /v1/client-kdf`,
 * Argon2id, `POST /v1/session`, then migrateWithMasterSecret.
 */
export async function migrate({ server, fetch, vault, principal, password, targets, onProgress = () => {}, signal }) {
  requireIds(vault, principal);
  if (typeof password !== 'string' || password === '') throw new RekeyError('bad_argument', 'a password is needed');
  const api = new RekeyApi({ server, fetch });
  onProgress({ stage: 'kdf', done: 0 });
  const params = await api.clientKdf({ signal });
  const vaultBytes = uuidToBytes(vault);
  const principalBytes = uuidToBytes(principal);
  const master = await deriveMasterSecret(password, vaultBytes, principalBytes, params, {
    onProgress: (f) => onProgress({ stage: 'kdf', done: f }),
  });
  try {
    checkAborted(signal);
    onProgress({ stage: 'login' });
    const authenticator = await loginAuthenticator(master, vaultBytes, principalBytes);
    try {
      await api.openSession(principal, authenticator, { signal });
    } finally {
      wipe(authenticator);
    }
    return await migrateWithMasterSecret({ api, vault, principal, masterSecret: master, targets, onProgress, signal });
  } finally {
    wipe(master);
  }
}
