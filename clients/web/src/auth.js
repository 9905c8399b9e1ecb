// The demo vault's password KDF and the login authenticator. A real vault
// has its own password KDF: it hands migrateWithMasterSecret the master
// secret instead, and may log in its own way (see README).

import { argon2idAsync } from '@noble/hashes/argon2.js';
import { RekeyError } from './errors.js';
import { concat, utf8, wipe } from './bytes.js';
import { hkdf } from './kdf.js';

const DEMO_SALT = utf8('rekey-demo');
const AUTHENTICATOR_SALT = utf8('rekey/v1/login-authenticator');

/**
 * Checks the JSON of `GET /v1/client-kdf` (an untrusted server could ask for
 * gigabytes): `{"algorithm":"argon2id","m_kib":…,"t":…,"p":…}` with m_kib
 * in 1024..=1048576, t in 1..=10, p in 1..=4 and no other member.
 */
export function checkKdfParams(params) {
  const bad = (why) => new RekeyError('bad_kdf_params', `the vault's password-KDF parameters are refused: ${why}`);
  if (params === null || typeof params !== 'object' || Array.isArray(params)) throw bad('not an object');
  for (const k of Object.keys(params)) {
    if (!['algorithm', 'm_kib', 't', 'p'].includes(k)) throw bad(`unknown member ${JSON.stringify(k)}`);
  }
  if (params.algorithm !== 'argon2id') throw bad('the algorithm is not argon2id');
  const within = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;
  if (!within(params.m_kib, 1024, 1048576)) throw bad('m_kib is outside 1024..1048576');
  if (!within(params.t, 1, 10)) throw bad('t is outside 1..10');
  if (!within(params.p, 1, 4)) throw bad('p is outside 1..4');
  return { algorithm: 'argon2id', m_kib: params.m_kib, t: params.t, p: params.p };
}

/**
 * The demo vault's master secret: Argon2id v0x13 (password UTF-8, salt =
 * "rekey-demo" ‖ vault (16) ‖ user (16), m/t/p from the vault, 32 bytes).
 * `onProgress(fraction)` is called while it runs; the main thread is yielded
 * to regularly so a page stays responsive.
 */
export async function deriveMasterSecret(password, vault, user, params, { onProgress } = {}) {
  const p = checkKdfParams(params);
  const pw = utf8(password);
  const salt = concat(DEMO_SALT, vault, user);
  try {
    return await argon2idAsync(pw, salt, {
      m: p.m_kib,
      t: p.t,
      p: p.p,
      dkLen: 32,
      version: 0x13,
      maxmem: 2 ** 32 - 1,
      asyncTick: 25,
      onProgress,
    });
  } finally {
    wipe(pw);
  }
}

/**
 * The login authenticator: HKDF-SHA256(ikm = master secret, salt =
 * "rekey/v1/login-authenticator", info = vault (16) ‖ principal (16), L = 32).
 */
export async function loginAuthenticator(masterSecret, vault, principal) {
  return hkdf('SHA-256', AUTHENTICATOR_SALT, masterSecret, concat(vault, principal), 32);
}
