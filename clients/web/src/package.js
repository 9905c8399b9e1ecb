// The migration package (`rekey-package/2`, PROTOCOL §5) as untrusted
// input: parsePackage checks everything PROTOCOL §5.6 lists before anything
// is built from it (item 6, the unlocked key matching its public key, is
// checked by the builder once the key is unlocked).

import { RekeyError } from './errors.js';
import { isUuid } from './bytes.js';
import { jsonReader } from './json.js';
import { isValidPublicKey, TARGET_NAMES, targetOfName } from './target.js';
import { parseEnvelope } from './envelope.js';
import { RsaPublicKey } from './rsa.js';

export const PACKAGE_FORMAT = 'rekey-package/2';
export const SUBJECT_KIND = Object.freeze({ record_key: 0x01, private_key: 0x02 });

function refuse(why) {
  return new RekeyError('package_refused', `the migration package is refused: ${why}`);
}

const { object, array, id, hex, parse } = jsonReader(refuse);

function rsaKey(spki, where) {
  try {
    return new RsaPublicKey(spki);
  } catch (e) {
    throw refuse(`${where} is not an RSA public key of 2048 to 4096 bits (${e.message})`);
  }
}

// A legacy public key (PROTOCOL §5): RSA (`public_key_spki`) before a vault's
// first migration; when a migrated vault migrates again, the key of the
// previous run's target (`target` and `public_key`, given as a migrated
// holder's). Exactly one of the two forms. Checks the members of `value`
// (`base` and those of its form) and answers `{k, key}`: the checked object
// and `{target: null, spki, publicKey: RsaPublicKey}` or `{target,
// publicKey: bytes}`.
function legacyPublicKey(value, base, where) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw refuse(`${where} is not an object`);
  const hasRsa = Object.hasOwn(value, 'public_key_spki');
  const hasNew = Object.hasOwn(value, 'target') || Object.hasOwn(value, 'public_key');
  if (hasRsa && hasNew) {
    throw refuse(`${where} has both an RSA key (public_key_spki) and a key of an earlier migration (target, public_key)`);
  }
  if (!hasRsa && !hasNew) throw refuse(`${where} has no public key (public_key_spki, or target and public_key)`);
  const k = object(value, [...base, ...(hasRsa ? ['public_key_spki'] : ['target', 'public_key'])], where);
  if (hasRsa) {
    const spki = hex(k.public_key_spki, `${where}.public_key_spki`);
    return { k, key: { target: null, spki, publicKey: rsaKey(spki, `${where}.public_key_spki`) } };
  }
  const t = target(k.target, `${where}.target`);
  return { k, key: { target: t, publicKey: newPublicKey(t, k.public_key, `${where}.public_key`) } };
}

function legacyKey(value, where) {
  const { k, key } = legacyPublicKey(value, ['id', 'wrapped_private'], where);
  let wrappedPrivate = null;
  if (k.wrapped_private !== null) {
    const bytes = hex(k.wrapped_private, `${where}.wrapped_private`);
    try {
      wrappedPrivate = parseEnvelope(bytes);
    } catch {
      throw refuse(`${where}.wrapped_private is not a valid envelope`);
    }
  }
  return { id: id(k.id, `${where}.id`), ...key, wrappedPrivate };
}

function pendingGrants(value, where) {
  const seen = new Set();
  return array(value, where).map((g, i) => {
    const at = `${where}[${i}]`;
    object(g, ['id', 'subject', 'envelope'], at);
    const s = object(g.subject, ['kind', 'id'], `${at}.subject`);
    if (!Object.hasOwn(SUBJECT_KIND, s.kind)) throw refuse(`${at}.subject.kind is neither record_key nor private_key`);
    const grantId = id(g.id, `${at}.id`);
    if (seen.has(grantId.text)) throw refuse(`grant ${grantId.text} appears twice in ${where}`);
    seen.add(grantId.text);
    // The envelope is not parsed here: one that does not parse becomes a
    // non-migratable entry (PROTOCOL §5.6, §6.7), not a refusal.
    return {
      id: grantId,
      subjectKind: SUBJECT_KIND[s.kind],
      subjectId: id(s.id, `${at}.subject.id`),
      envelope: hex(g.envelope, `${at}.envelope`),
    };
  });
}

function target(value, where) {
  const t = targetOfName(value);
  if (!t) throw refuse(`${where} is not one of ${TARGET_NAMES.join(', ')}`);
  return t;
}

// A public key of target `t` (hex): a migrated holder's, or a legacy key of
// an earlier migration.
function newPublicKey(t, value, where) {
  const publicKey = hex(value, where);
  if (!isValidPublicKey(t, publicKey)) {
    throw refuse(
      t.hybrid
        ? `${where} is not a hybrid key (1,281 bytes: a valid ML-KEM-768 key, an X25519 key, a P-256 point)`
        : `${where} is not an uncompressed ${t.curve.webName} point`,
    );
  }
  return publicKey;
}

function holder(value, where) {
  if (value === null || typeof value !== 'object') throw refuse(`${where} is not an object`);
  if (value.state === 'migrated') {
    const h = object(value, ['state', 'principal', 'key_pair', 'target', 'public_key'], where);
    const t = target(h.target, `${where}.target`);
    return {
      state: 'migrated',
      principal: id(h.principal, `${where}.principal`),
      keyPair: id(h.key_pair, `${where}.key_pair`),
      target: t,
      publicKey: newPublicKey(t, h.public_key, `${where}.public_key`),
    };
  }
  if (value.state === 'pending') {
    // Its legacy key: RSA, or a key of an earlier migration (its KEK is then
    // sealed to it single-shot in that key's scheme).
    const { k: h, key } = legacyPublicKey(value, ['state', 'principal', 'key_pair'], where);
    return {
      state: 'pending',
      principal: id(h.principal, `${where}.principal`),
      keyPair: id(h.key_pair, `${where}.key_pair`),
      ...key,
    };
  }
  throw refuse(`${where}.state is neither migrated nor pending`);
}

/**
 * Parses and checks a package (the response text, bytes, or parsed JSON).
 * `expected.principal` (text id) is required; `expected.vault` is checked when
 * given. Answers the checked package with every id as `{text, bytes}`, the
 * target and each migrated holder's target as TARGETS entries, keys parsed,
 * wrapped private keys parsed as envelopes, and the pending grants'
 * envelopes as raw bytes. A legacy key (the account's, a candidate's, a
 * pending holder's) has `target: null`, `spki` and `publicKey` (an
 * RsaPublicKey) when it is RSA, or, in a vault migrating again, `target` (a
 * TARGETS entry, the earlier run's) and `publicKey` (its bytes). A package of any known target parses; whether
 * this client can build for it is the builder's question (`unsupported_target`).
 */
export function parsePackage(input, expected) {
  if (!expected || !isUuid(expected.principal)) {
    throw new RekeyError('bad_argument', 'parsePackage needs the expected principal id');
  }
  const json = parse(input);
  // The format first: a package of another version is named as such, not
  // by the first member it lacks.
  if (json !== null && typeof json === 'object' && json.format !== PACKAGE_FORMAT) {
    throw refuse(`the format is ${JSON.stringify(json.format)}, not ${PACKAGE_FORMAT}`);
  }
  const p = object(json, ['format', 'vault', 'run', 'principal', 'target', 'legacy_key', 'pending_grants', 'candidates'], 'the package');
  const runTarget = target(p.target, 'target');
  const principal = id(p.principal, 'principal');
  if (principal.text !== expected.principal) throw refuse('it is the package of another account');
  const vault = id(p.vault, 'vault');
  if (expected.vault !== undefined && expected.vault !== null && vault.text !== expected.vault) {
    throw refuse('it is a package of another vault');
  }
  const run = id(p.run, 'run');
  const own = legacyKey(p.legacy_key, 'legacy_key');
  const grants = pendingGrants(p.pending_grants, 'pending_grants');
  const seenCandidates = new Set();
  const candidates = array(p.candidates, 'candidates').map((c, i) => {
    const at = `candidates[${i}]`;
    object(c, ['principal', 'legacy_key', 'pending_grants', 'holders'], at);
    const who = id(c.principal, `${at}.principal`);
    if (who.text === principal.text) throw refuse(`${at} is the account itself`);
    if (seenCandidates.has(who.text)) throw refuse(`candidate ${who.text} appears twice`);
    seenCandidates.add(who.text);
    const seenHolders = new Set();
    const holders = array(c.holders, `${at}.holders`).map((h, j) => {
      const parsed = holder(h, `${at}.holders[${j}]`);
      if (seenHolders.has(parsed.principal.text)) throw refuse(`holder ${parsed.principal.text} appears twice in ${at}`);
      seenHolders.add(parsed.principal.text);
      return parsed;
    });
    return {
      principal: who,
      legacyKey: legacyKey(c.legacy_key, `${at}.legacy_key`),
      pendingGrants: pendingGrants(c.pending_grants, `${at}.pending_grants`),
      holders,
    };
  });
  return { format: PACKAGE_FORMAT, vault, run, principal, target: runTarget, legacyKey: own, pendingGrants: grants, candidates };
}
