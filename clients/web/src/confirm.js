// Role confirmations (PROTOCOL §15): a member of a role that another member
// migrated checks, with its own keys, that the role's new key opens for it
// and that every grant the migration wrote to the role opens what it names;
// then it signs a receipt with the role's new key.

import { RekeyError } from './errors.js';
import { concat, equalBytes, isUuid, u32, utf8, wipe } from './bytes.js';
import { jsonReader } from './json.js';
import { isBatchScheme, isHpkeScheme, isLegacyScheme, parseEnvelope, SCHEME } from './envelope.js';
import { newKeyOfBytes, signWithNewKey, wipeNewKey } from './keys.js';
import { isValidPublicKey, targetOfPublicKey, targetOfScheme } from './target.js';
import { openBatchGrant, openGrant } from './hpke.js';
import { deriveKek, unwrapPrivateKey } from './kek.js';
import { aesGcmOpen } from './kdf.js';
import { RsaPrivateKey } from './rsa.js';
import { SUBJECT_KIND } from './package.js';

export const ROLE_CHECKS_FORMAT = 'rekey-role-checks/1';
const RECEIPT_LABEL = utf8('rekey/v1/role-receipt');
const RECORD_LABEL = utf8('rekey/v1/record');
const RECORD_VERSION = 0x01;

function refuse(why) {
  return new RekeyError('role_checks_refused', `the role checks are refused: ${why}`);
}

const { object, array, id, hex, parse } = jsonReader(refuse);

function envelope(value, where) {
  try {
    return parseEnvelope(hex(value, where));
  } catch (e) {
    if (e.code === 'role_checks_refused') throw e;
    throw refuse(`${where} is not a valid envelope`);
  }
}

function keyPair(value, where) {
  const k = object(value, ['id', 'owner', 'state', 'public_key', 'wrapped_private'], where);
  if (k.state !== 'legacy' && k.state !== 'current') throw refuse(`${where}.state is neither legacy nor current`);
  const publicKey = hex(k.public_key, `${where}.public_key`);
  // Its kind told by its length (FORMAT §3.2): a P-256 or P-521 point, or a
  // hybrid key. A legacy pair is RSA (SPKI) unless it is such a key: the key
  // of an earlier migration, in a vault migrating again.
  let target = targetOfPublicKey(publicKey);
  if (target && !isValidPublicKey(target, publicKey)) target = null;
  if (k.state === 'current' && !target) {
    throw refuse(`${where}.public_key is not an uncompressed P-256 or P-521 point nor a hybrid key`);
  }
  const wrapped = k.wrapped_private === null ? null : envelope(k.wrapped_private, `${where}.wrapped_private`);
  if (wrapped && wrapped.scheme !== SCHEME.AES256GCM_KEK) throw refuse(`${where}.wrapped_private is not an aes256gcm-kek envelope`);
  return { id: id(k.id, `${where}.id`), owner: id(k.owner, `${where}.owner`), state: k.state, publicKey, target, wrapped };
}

function grant(value, where) {
  const g = object(value, ['id', 'recipient', 'subject', 'envelope'], where);
  const s = object(g.subject, ['kind', 'id'], `${where}.subject`);
  if (!Object.hasOwn(SUBJECT_KIND, s.kind)) throw refuse(`${where}.subject.kind is neither record_key nor private_key`);
  return {
    id: id(g.id, `${where}.id`),
    recipient: id(g.recipient, `${where}.recipient`),
    subjectKind: SUBJECT_KIND[s.kind],
    subjectName: s.kind,
    subjectId: id(s.id, `${where}.subject.id`),
    envelope: envelope(g.envelope, `${where}.envelope`),
  };
}

/**
 * Parses and checks `rekey-role-checks/1` (the response text, bytes or parsed
 * JSON). `expected.principal` is required, `expected.vault` is checked when
 * given: checks for another account or vault are refused, as is any member
 * that is unknown, missing, not hex, or not a valid envelope.
 */
export function parseRoleChecks(input, expected) {
  if (!expected || !isUuid(expected.principal)) {
    throw new RekeyError('bad_argument', 'parseRoleChecks needs the expected principal id');
  }
  const json = parse(input);
  const c = object(json, ['format', 'vault', 'run', 'holder', 'roles'], 'the role checks');
  if (c.format !== ROLE_CHECKS_FORMAT) throw refuse(`the format is ${JSON.stringify(c.format)}, not ${ROLE_CHECKS_FORMAT}`);
  const holder = id(c.holder, 'holder');
  if (holder.text !== expected.principal) throw refuse('they are for another account');
  const vault = id(c.vault, 'vault');
  if (expected.vault != null && vault.text !== expected.vault) throw refuse('they are for another vault');
  const run = id(c.run, 'run');
  const roles = array(c.roles, 'roles').map((r, i) => {
    const at = `roles[${i}]`;
    object(
      r,
      ['role', 'holder_keys', 'role_current', 'role_legacy', 'holder_grants', 'role_grants', 'records', 'subject_keys', 'disowned'],
      at,
    );
    const records = new Map();
    for (const [j, rec] of array(r.records, `${at}.records`).entries()) {
      object(rec, ['id', 'ciphertext'], `${at}.records[${j}]`);
      const rid = id(rec.id, `${at}.records[${j}].id`);
      records.set(rid.text, { id: rid, ciphertext: hex(rec.ciphertext, `${at}.records[${j}].ciphertext`) });
    }
    const keys = (v, w) => array(v, w).map((k, j) => keyPair(k, `${w}[${j}]`));
    const grants = (v, w) => array(v, w).map((g, j) => grant(g, `${w}[${j}]`));
    return {
      role: id(r.role, `${at}.role`),
      holderKeys: keys(r.holder_keys, `${at}.holder_keys`),
      roleCurrent: keyPair(r.role_current, `${at}.role_current`),
      roleLegacy: keyPair(r.role_legacy, `${at}.role_legacy`),
      holderGrants: grants(r.holder_grants, `${at}.holder_grants`),
      roleGrants: grants(r.role_grants, `${at}.role_grants`),
      records,
      subjectKeys: new Map(keys(r.subject_keys, `${at}.subject_keys`).map((k) => [k.id.text, k])),
      disowned: grants(r.disowned, `${at}.disowned`),
    };
  });
  return { format: ROLE_CHECKS_FORMAT, vault, run, holder, roles };
}

/**
 * A key pair's private key unwrapped under `kek` (raw bytes): `{rsa}` for an
 * RSA legacy pair, `{newKey}` (keys.js) for a current one or a legacy one
 * of an earlier migration. Null when it does not
 * unwrap or parse; `unsupported_target` when a hybrid key's X-Wing code does
 * not load.
 */
async function unlock(kp, vault, kek) {
  if (!kp.wrapped) return null;
  let bytes;
  try {
    bytes = await unwrapPrivateKey(kek, vault, kp.owner.bytes, kp.id.bytes, kp.wrapped);
  } catch {
    return null;
  }
  try {
    if (!kp.target) return { rsa: await RsaPrivateKey.fromPkcs8(bytes) };
    return { newKey: await newKeyOfBytes(kp.target, bytes) };
  } catch (e) {
    if (e.code === 'unsupported_target') throw e;
    return null;
  } finally {
    wipe(bytes);
  }
}

/**
 * Opens a grant (legacy RSA, single or batch HPKE of the key's own target)
 * with an unlocked key; null if it does not open.
 */
async function openWith(key, g, vault, recipient) {
  const env = g.envelope;
  try {
    if (isLegacyScheme(env.scheme)) return key.rsa ? await key.rsa.decrypt(env.scheme, env.ciphertext) : null;
    if (!isHpkeScheme(env.scheme) || !key.newKey || targetOfScheme(env.scheme) !== key.newKey.target) return null;
    const open = isBatchScheme(env.scheme) ? openBatchGrant : openGrant;
    return await open(env, key.newKey.recipient, vault, recipient, g.subjectKind, g.subjectId.bytes);
  } catch (e) {
    if (e.code === 'unsupported_target') throw e;
    return null;
  }
}

/** Whether a grant's secret opens what its subject names (FORMAT §7 record, FORMAT §5 key pair). */
async function opensSubject(check, vault, g, secret) {
  try {
    if (g.subjectName === 'record_key') {
      const record = check.records.get(g.subjectId.text);
      const ct = record?.ciphertext;
      if (!ct || ct.length < 1 + 12 + 16 || ct[0] !== RECORD_VERSION || secret.length !== 32) return false;
      const aad = concat(RECORD_LABEL, Uint8Array.of(RECORD_VERSION), vault, g.subjectId.bytes);
      wipe(await aesGcmOpen(secret, ct.subarray(1, 13), aad, ct.subarray(13)));
      return true;
    }
    const kp = check.subjectKeys.get(g.subjectId.text);
    if (!kp || !kp.wrapped || secret.length !== 32) return false;
    wipe(await unwrapPrivateKey(secret, vault, kp.owner.bytes, kp.id.bytes, kp.wrapped));
    return true;
  } catch {
    return false;
  }
}

/** The role's private key of `kp` through one of the member's grants of its KEK (step 2.1). */
async function roleKey(check, vault, holder, holderKeys, kp) {
  for (const g of check.holderGrants) {
    if (g.recipient.text !== holder.text || g.subjectName !== 'private_key' || g.subjectId.text !== kp.id.text) continue;
    for (const key of holderKeys) {
      const kek = await openWith(key, g, vault, holder.bytes);
      if (!kek) continue;
      try {
        if (kek.length !== 32) continue;
        const k = await unlock(kp, vault, kek);
        if (!k) continue;
        if (k.newKey && !equalBytes(k.newKey.publicKey, kp.publicKey)) {
          throw new RekeyError('role_broken', `the role's ${kp.state === 'current' ? 'new' : 'legacy'} private key does not match its public key`);
        }
        return k;
      } finally {
        wipe(kek);
      }
    }
  }
  return null;
}

/** The message a receipt signs (PROTOCOL §15 step 3). */
export function receiptMessage(vault, run, role, keyPair, holder, checked) {
  return concat(RECEIPT_LABEL, vault, run, role, keyPair, holder, u32(checked));
}

/**
 * Checks one role of parsed role checks as `checks.holder` with its KEK
 * (raw bytes). Answers the receipt `{role, key_pair, checked, signature}`
 * (JSON-ready) or throws `role_broken` naming what failed.
 */
export async function confirmRole(checks, check, kek) {
  const vault = checks.vault.bytes;
  const holder = checks.holder;
  const broken = (why) => new RekeyError('role_broken', `role ${check.role.text} does not open for this account: ${why}`, {
    hint: 'the administrator sees this member as unconfirmed; `rekey abort` restores everyone',
  });
  const holderKeys = [];
  for (const kp of check.holderKeys) {
    if (kp.owner.text !== holder.text) continue;
    const k = await unlock(kp, vault, kek);
    if (k) holderKeys.push(k);
  }
  if (holderKeys.length === 0) throw new RekeyError('wrong_password', "the password does not unlock this account's keys");
  const current = await roleKey(check, vault, holder, holderKeys, check.roleCurrent);
  if (!current) throw broken("no grant of the role's new key opens with this account's keys");
  if (!current.newKey) throw broken("the role's new key is not a new (P-256, P-521 or hybrid) key");
  let checked = 0;
  let first = null;
  let failures = 0;
  for (const g of check.roleGrants) {
    if (g.recipient.text !== check.role.text || isLegacyScheme(g.envelope.scheme)) continue;
    checked += 1;
    const secret = await openWith(current, g, vault, check.role.bytes);
    const ok = secret !== null && (await opensSubject(check, vault, g, secret));
    if (secret) wipe(secret);
    if (!ok) {
      failures += 1;
      first ??= `${g.subjectName} ${g.subjectId.text}`;
    }
  }
  if (failures > 0) throw broken(`${failures} of ${checked} migrated grants do not open what they name (first: ${first})`);
  if (check.disowned.length > 0) {
    const legacy = await roleKey(check, vault, holder, holderKeys, check.roleLegacy);
    if (!legacy) throw broken("no grant of the role's legacy key opens with this account's keys");
    for (const g of check.disowned) {
      if (g.recipient.text !== check.role.text) continue;
      const secret = await openWith(legacy, g, vault, check.role.bytes);
      const opens = secret !== null && (await opensSubject(check, vault, g, secret));
      if (secret) wipe(secret);
      if (opens) throw broken(`a grant declared unreadable opens: ${g.subjectName} ${g.subjectId.text}`);
    }
    if (legacy.newKey) wipeNewKey(legacy.newKey);
  }
  const message = receiptMessage(vault, checks.run.bytes, check.role.bytes, check.roleCurrent.id.bytes, holder.bytes, checked);
  // ECDSA by the new key (a hybrid key signs with its P-256 half, FORMAT §8).
  const signature = await signWithNewKey(current.newKey, message);
  for (const k of holderKeys) if (k.newKey) wipeNewKey(k.newKey);
  wipeNewKey(current.newKey);
  return { role: check.role.text, key_pair: check.roleCurrent.id.text, checked, signature };
}

/**
 * Confirms every role the server lists for the account (PROTOCOL §15), given
 * its master secret. Answers `{confirmed, refused: [{role, reason}]}`; a
 * broken role gets no receipt.
 */
export async function confirmRoles({ api, vault, principal, masterSecret, signal }) {
  const text = await api.roleChecksText(principal, { signal });
  const checks = parseRoleChecks(text, { principal, vault });
  const out = { confirmed: 0, refused: [] };
  if (checks.roles.length === 0) return out;
  const kek = await deriveKek(masterSecret, checks.vault.bytes, checks.holder.bytes);
  try {
    for (const check of checks.roles) {
      let receipt;
      try {
        receipt = await confirmRole(checks, check, kek);
      } catch (e) {
        if (e.code !== 'role_broken') throw e;
        out.refused.push({ role: check.role.text, reason: e.message });
        continue;
      }
      try {
        await api.sendReceipt(principal, receipt, { signal });
      } catch (e) {
        // The server did not take it (PROTOCOL §9: receipt_refused): the
        // account has migrated all the same; the role stays unconfirmed.
        if (e.code !== 'receipt_refused') throw e;
        out.refused.push({ role: check.role.text, reason: e.message });
        continue;
      }
      out.confirmed += 1;
    }
  } finally {
    wipe(kek);
  }
  return out;
}
