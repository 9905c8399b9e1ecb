// The bundle's bytes (PROTOCOL §7) and the messages its signatures cover
// (PROTOCOL §8).
//
// Model (every id a 16-byte Uint8Array):
//   { vault, run, submitter, parts: [{
//       principal, legacyKeyPair, newKeyPair,
//       target ('hpke-p256' | 'hpke-p521' | 'hpke-mlkem768-x25519'; the
//         key kind byte of §7.2; encodeBody also takes the former
//         curve: 'p256' | 'p521'),
//       publicKey (SEC1 point, or a hybrid key's 1,281 bytes),
//       wrappedPrivate (envelope bytes or null),
//       grants: [{ replaces, subjectKind (1 | 2), subjectId, envelope }],
//       nonMigratable: [{ grant, reason (1 | 2 | 3) }],
//       holderGrants: [{ holder, holderKeyPair, envelope }] }] }
// Signatures: [{ principal, kind (1 legacy key: RSA-PSS, or ECDSA for a key
//   of an earlier migration | 2 new key: ECDSA), bytes }].

import { RekeyError } from './errors.js';
import { concat, equalBytes, Reader, u16, u32, utf8 } from './bytes.js';
import { CURVES } from './ec.js';
import { isValidPublicKey, targetOfCurve, targetOfKeyByte, targetOfName } from './target.js';
import { parseEnvelope } from './envelope.js';
import { sha256 } from './kdf.js';

export const MAGIC = utf8('rekey-bundle');
export const VERSION = 0x01;
export const SIGNATURE_LABEL = utf8('rekey/v1/bundle-signature');
// Kind 1 is by the part's legacy key: RSA-PSS for an RSA key, ECDSA (as kind
// 2) for a key of an earlier migration; LEGACY_RSA_PSS is its former name.
export const SIGNATURE_KIND = Object.freeze({ LEGACY_KEY: 0x01, LEGACY_RSA_PSS: 0x01, NEW_KEY_ECDSA: 0x02 });
export const NON_MIGRATABLE = Object.freeze({ MALFORMED_ENVELOPE: 0x01, COULD_NOT_DECRYPT: 0x02, NOT_LEGACY: 0x03 });

// Smallest encodings of each repeated item (PROTOCOL §7.7).
const MIN_PART = 16 * 3 + 1 + 65 + 1 + 12;
const MIN_GRANT = 16 + 1 + 16 + 4;
const MIN_NON_MIGRATABLE = 17;
const MIN_HOLDER = 16 + 16 + 4;
const MIN_SIGNATURE = 19;

function id16(value, what) {
  if (!(value instanceof Uint8Array) || value.length !== 16) {
    throw new RekeyError('bad_bundle', `${what} is not a 16-byte id`);
  }
  return value;
}

function lengthPrefixed(bytes) {
  return [u32(bytes.length), bytes];
}

/** Encodes a bundle body (PROTOCOL §7.1–§7.5). */
export function encodeBody(bundle) {
  const out = [id16(bundle.vault, 'vault'), id16(bundle.run, 'run'), id16(bundle.submitter, 'submitter')];
  out.push(u32(bundle.parts.length));
  for (const part of bundle.parts) {
    const target =
      part.target !== undefined ? targetOfName(part.target) : Object.hasOwn(CURVES, part.curve ?? '') ? targetOfCurve(CURVES[part.curve]) : null;
    if (!target || !(part.publicKey instanceof Uint8Array) || part.publicKey.length !== target.publicKeyLen) {
      throw new RekeyError('bad_bundle', 'a part has a bad key kind or public key');
    }
    out.push(id16(part.principal, 'principal'), id16(part.legacyKeyPair, 'legacy key pair'), id16(part.newKeyPair, 'new key pair'));
    out.push(Uint8Array.of(target.keyByte), part.publicKey);
    if (part.wrappedPrivate) {
      out.push(Uint8Array.of(1), ...lengthPrefixed(part.wrappedPrivate));
    } else {
      out.push(Uint8Array.of(0));
    }
    out.push(u32(part.grants.length));
    for (const g of part.grants) {
      out.push(id16(g.replaces, 'replaces'), Uint8Array.of(g.subjectKind), id16(g.subjectId, 'subject id'));
      out.push(...lengthPrefixed(g.envelope));
    }
    out.push(u32(part.nonMigratable.length));
    for (const nm of part.nonMigratable) {
      out.push(id16(nm.grant, 'non-migratable grant'), Uint8Array.of(nm.reason));
    }
    out.push(u32(part.holderGrants.length));
    for (const h of part.holderGrants) {
      out.push(id16(h.holder, 'holder'), id16(h.holderKeyPair, 'holder key pair'), ...lengthPrefixed(h.envelope));
    }
  }
  return concat(...out);
}

/** The whole signed bundle: magic ‖ version ‖ body_len ‖ body ‖ count ‖ signatures. */
export function encodeSignedBundle(body, signatures) {
  const out = [MAGIC, Uint8Array.of(VERSION), u32(body.length), body, u16(signatures.length)];
  for (const s of signatures) {
    out.push(id16(s.principal, 'signer'), Uint8Array.of(s.kind), u16(s.bytes.length), s.bytes);
  }
  return concat(...out);
}

/** Encodes a bundle and its signatures. */
export function encodeBundle(bundle, signatures) {
  return encodeSignedBundle(encodeBody(bundle), signatures);
}

/** `"rekey/v1/bundle-signature" ‖ kind ‖ principal ‖ digest` (74 bytes). */
export function signedMessageOfDigest(digest, kind, principal) {
  return concat(SIGNATURE_LABEL, Uint8Array.of(kind), id16(principal, 'signer'), digest);
}

/** The message a signature of `kind` by `principal` covers, over the exact body bytes. */
export async function signedMessage(body, kind, principal) {
  return signedMessageOfDigest(await sha256(body), kind, principal);
}

function envelopeAt(r, what) {
  const len = r.u32(`${what} length`);
  const bytes = r.take(len, what);
  try {
    parseEnvelope(bytes);
  } catch (cause) {
    throw new RekeyError('bundle_bad_envelope', `invalid envelope in ${what}: ${cause.message}`);
  }
  return bytes.slice();
}

function count(r, what, min) {
  const n = r.u32(`${what} count`);
  if (n * min > r.remaining) throw new RekeyError('bundle_count_too_large', `the bundle declares more ${what} than its bytes can hold`);
  return n;
}

function tag(what, value) {
  return new RekeyError('bundle_bad_tag', `invalid ${what}: ${value}`);
}

/** Decodes a body (PROTOCOL §7.1), refusing what §7.7 refuses. */
export function decodeBody(body) {
  const r = new Reader(body);
  const bundle = {
    vault: r.take(16, 'vault').slice(),
    run: r.take(16, 'run').slice(),
    submitter: r.take(16, 'submitter').slice(),
    parts: [],
  };
  const nParts = count(r, 'parts', MIN_PART);
  for (let i = 0; i < nParts; i++) {
    const part = {
      principal: r.take(16, 'part principal').slice(),
      legacyKeyPair: r.take(16, 'legacy key pair').slice(),
      newKeyPair: r.take(16, 'new key pair').slice(),
    };
    const k = r.u8('key kind');
    const target = targetOfKeyByte(k);
    if (!target) throw tag('key kind', k);
    part.target = target.name;
    part.publicKey = r.take(target.publicKeyLen, 'new public key').slice();
    // A point on its curve; a hybrid key: a valid ML-KEM-768 key, 32 bytes
    // of X25519 key, a point on P-256 (target.js isValidPublicKey).
    if (!isValidPublicKey(target, part.publicKey)) {
      throw new RekeyError('bundle_bad_public_key', 'a new public key is not a valid key of its kind');
    }
    const flag = r.u8('wrapped-key flag');
    if (flag === 1) part.wrappedPrivate = envelopeAt(r, 'wrapped private key');
    else if (flag === 0) part.wrappedPrivate = null;
    else throw tag('wrapped-key flag', flag);
    part.grants = [];
    for (let n = count(r, 'grants', MIN_GRANT); n > 0; n--) {
      const replaces = r.take(16, 'grant id').slice();
      const subjectKind = r.u8('subject kind');
      if (subjectKind !== 1 && subjectKind !== 2) throw tag('subject kind', subjectKind);
      const subjectId = r.take(16, 'subject id').slice();
      part.grants.push({ replaces, subjectKind, subjectId, envelope: envelopeAt(r, 'grant envelope') });
    }
    part.nonMigratable = [];
    for (let n = count(r, 'non-migratable grants', MIN_NON_MIGRATABLE); n > 0; n--) {
      const grant = r.take(16, 'non-migratable grant id').slice();
      const reason = r.u8('non-migratable reason');
      if (reason < 1 || reason > 3) throw tag('non-migratable reason', reason);
      part.nonMigratable.push({ grant, reason });
    }
    part.holderGrants = [];
    for (let n = count(r, 'holder grants', MIN_HOLDER); n > 0; n--) {
      const holder = r.take(16, 'holder id').slice();
      const holderKeyPair = r.take(16, 'holder key pair id').slice();
      part.holderGrants.push({ holder, holderKeyPair, envelope: envelopeAt(r, 'holder grant envelope') });
    }
    bundle.parts.push(part);
  }
  if (r.remaining > 0) throw new RekeyError('bundle_trailing_bytes', `${r.remaining} unexpected bytes after the last part`);
  return bundle;
}

/**
 * Parses a signed bundle (PROTOCOL §7): `{body, bundle, signatures}`, where
 * `body` is the exact body bytes the signatures cover.
 */
export function parseBundle(bytes) {
  if (bytes.length < MAGIC.length || !equalBytes(bytes.subarray(0, MAGIC.length), MAGIC)) {
    throw new RekeyError('bundle_bad_magic', 'not a rekey bundle (bad magic bytes)');
  }
  const r = new Reader(bytes);
  r.take(MAGIC.length, 'magic');
  const version = r.u8('version');
  if (version !== VERSION) throw new RekeyError('bundle_unsupported_version', `bundle version ${version}`);
  const bodyLen = r.u32('body length');
  const body = r.take(bodyLen, 'body').slice();
  const bundle = decodeBody(body);
  const n = r.u16('signature count');
  if (n * MIN_SIGNATURE > r.remaining) throw new RekeyError('bundle_count_too_large', 'more signatures than bytes');
  const signatures = [];
  for (let i = 0; i < n; i++) {
    const principal = r.take(16, 'signature principal').slice();
    const kind = r.u8('signature kind');
    if (kind !== 1 && kind !== 2) throw tag('signature kind', kind);
    const len = r.u16('signature length');
    signatures.push({ principal, kind, bytes: r.take(len, 'signature').slice() });
  }
  if (r.remaining > 0) throw new RekeyError('bundle_trailing_bytes', `${r.remaining} unexpected bytes after the last signature`);
  return { body, bundle, signatures };
}
