// RFC 9180 HPKE on WebCrypto: DHKEM(P-256, HKDF-SHA256) with HKDF-SHA256,
// DHKEM(P-521, HKDF-SHA512) with HKDF-SHA512, the X-Wing KEM (FORMAT §3.1,
// xwing.js, loaded on demand) with HKDF-SHA256, AEAD AES-128-GCM or
// AES-256-GCM; the secret export interface (RFC 9180 §5.3); and rekey's uses
// of it (FORMAT §3 single grants, FORMAT §4 batches).
//
// A recipient key pair is `{privateKey (ECDH), publicPoint}` for the EC
// suites and an X-Wing key pair of `xwingKeyPair` for the X-Wing suite.

import { RekeyError } from './errors.js';
import { concat, randomBytes, toHex, u16, u8, utf8, bytesToBigInt, wipe } from './bytes.js';
import { CURVES, checkPoint, generateKeyPair, keyPairOfScalar } from './ec.js';
import { aesGcmOpen, aesGcmSeal, aesKey, hkdfExpand, hkdfExtract, hmacKey } from './kdf.js';
import { header, isBatchScheme } from './envelope.js';
import { kemPublicKey, loadXWing, targetOfCurve } from './target.js';

const subtle = () => globalThis.crypto.subtle;

/** KEM and KDF of the three suites rekey uses. */
export const SUITES = Object.freeze({
  p256: { curve: CURVES.p256, kemId: 0x0010, kdfId: 0x0001, hash: 'SHA-256', nh: 32, nSecret: 32, bitmask: 0xff },
  p521: { curve: CURVES.p521, kemId: 0x0012, kdfId: 0x0003, hash: 'SHA-512', nh: 64, nSecret: 64, bitmask: 0x01 },
  // The X-Wing shared secret is HPKE's shared_secret as it is (FORMAT §3.1).
  xwing: { curve: null, xwing: true, kemId: 0x647a, kdfId: 0x0001, hash: 'SHA-256', nh: 32, nSecret: 32 },
});

export const AEADS = Object.freeze({
  1: { id: 0x0001, nk: 16 },
  2: { id: 0x0002, nk: 32 },
});

export const MODE = Object.freeze({ base: 0, psk: 1, auth: 2, authPsk: 3 });

const HPKE_V1 = utf8('HPKE-v1');

function kemSuiteId(suite) {
  return concat(utf8('KEM'), u16(suite.kemId));
}

function hpkeSuiteId(suite, aead) {
  return concat(utf8('HPKE'), u16(suite.kemId), u16(suite.kdfId), u16(aead.id));
}

async function labeledExtract(suite, suiteId, salt, label, ikm) {
  return hkdfExtract(suite.hash, salt, concat(HPKE_V1, suiteId, utf8(label), ikm));
}

async function labeledExpand(suite, suiteId, prk, label, info, length) {
  return hkdfExpand(suite.hash, prk, concat(u16(length), HPKE_V1, suiteId, utf8(label), info), length);
}

/** DHKEM's ExtractAndExpand (RFC 9180 §4.1). */
export async function extractAndExpand(suite, dh, kemContext) {
  const id = kemSuiteId(suite);
  const prk = await labeledExtract(suite, id, new Uint8Array(0), 'eae_prk', dh);
  const out = await labeledExpand(suite, id, prk, 'shared_secret', kemContext, suite.nSecret);
  wipe(prk);
  return out;
}

/** DeriveKeyPair (RFC 9180 §7.1.3): answers the private scalar. */
export async function deriveScalar(suite, ikm) {
  const id = kemSuiteId(suite);
  const prk = await labeledExtract(suite, id, new Uint8Array(0), 'dkp_prk', ikm);
  for (let counter = 0; counter < 256; counter++) {
    const bytes = await labeledExpand(suite, id, prk, 'candidate', Uint8Array.of(counter), suite.curve.scalarLen);
    bytes[0] &= suite.bitmask;
    const sk = bytesToBigInt(bytes);
    if (sk !== 0n && sk < suite.curve.n) {
      wipe(prk);
      return bytes;
    }
  }
  throw new RekeyError('internal', 'DeriveKeyPair found no key');
}

/** DeriveKeyPair: `{privateKey (ECDH), publicPoint, scalar}`. */
export async function deriveKeyPair(suite, ikm) {
  const scalar = await deriveScalar(suite, ikm);
  const pair = await keyPairOfScalar(suite.curve, scalar, 'ECDH');
  return { ...pair, scalar };
}

async function dh(suite, privateKey, publicPoint) {
  checkPoint(suite.curve, publicPoint);
  const pub = await subtle().importKey('raw', publicPoint, { name: 'ECDH', namedCurve: suite.curve.webName }, false, []);
  return u8(await subtle().deriveBits({ name: 'ECDH', public: pub }, privateKey, suite.curve.scalarLen * 8));
}

/**
 * Encap (or AuthEncap with `sender`, EC suites): `{sharedSecret, enc}`.
 * `ephemeral` fixes the ephemeral key, for test vectors: `{privateKey,
 * publicPoint}`, or X-Wing's 64 bytes of encapsulation randomness.
 */
export async function encap(suite, pkR, { ephemeral, sender } = {}) {
  if (suite.xwing) {
    if (sender) throw new RekeyError('bad_argument', 'X-Wing has no authenticated mode');
    return (await loadXWing()).xwingEncapsulate(pkR, ephemeral);
  }
  const eph = ephemeral ?? (await generateKeyPair(suite.curve, 'ECDH', { withScalar: false }));
  let secret = await dh(suite, eph.privateKey, pkR);
  let kemContext = concat(eph.publicPoint, pkR);
  if (sender) {
    const second = await dh(suite, sender.privateKey, pkR);
    secret = concat(secret, second);
    wipe(second);
    kemContext = concat(kemContext, sender.publicPoint);
  }
  const sharedSecret = await extractAndExpand(suite, secret, kemContext);
  wipe(secret);
  return { sharedSecret, enc: eph.publicPoint };
}

/** Decap (or AuthDecap with `pkS`, EC suites) with the recipient's key pair. */
export async function decap(suite, enc, recipient, { pkS } = {}) {
  if (suite.xwing) {
    if (pkS) throw new RekeyError('bad_argument', 'X-Wing has no authenticated mode');
    return (await loadXWing()).xwingDecapsulate(enc, recipient);
  }
  let secret = await dh(suite, recipient.privateKey, enc);
  let kemContext = concat(enc, recipient.publicPoint);
  if (pkS) {
    const second = await dh(suite, recipient.privateKey, pkS);
    secret = concat(secret, second);
    wipe(second);
    kemContext = concat(kemContext, pkS);
  }
  const sharedSecret = await extractAndExpand(suite, secret, kemContext);
  wipe(secret);
  return sharedSecret;
}

/** An HPKE context (RFC 9180 §5.2, §5.3). */
export class Context {
  constructor(suite, aead, key, baseNonce, exporterSecret) {
    this.suite = suite;
    this.aead = aead;
    this.key = key;
    this.baseNonce = baseNonce;
    this.exporterSecret = exporterSecret;
    this.seq = 0;
    this._aesKey = null;
    this._exporterKey = null;
  }

  nonce() {
    const n = this.baseNonce.slice();
    // The sequence number fits in 32 bits here; XOR it into the last bytes.
    let s = this.seq;
    for (let i = n.length - 1; s > 0; i--, s = Math.floor(s / 256)) n[i] ^= s & 0xff;
    return n;
  }

  async seal(aad, plaintext) {
    this._aesKey ??= await aesKey(this.key);
    const ct = await aesGcmSeal(this._aesKey, this.nonce(), aad, plaintext);
    this.seq += 1;
    return ct;
  }

  async open(aad, ciphertext) {
    this._aesKey ??= await aesKey(this.key);
    const pt = await aesGcmOpen(this._aesKey, this.nonce(), aad, ciphertext);
    this.seq += 1;
    return pt;
  }

  /** Export(exporter_context, L). */
  async export(exporterContext, length) {
    this._exporterKey ??= await hmacKey(this.suite.hash, this.exporterSecret);
    return labeledExpand(
      this.suite,
      hpkeSuiteId(this.suite, this.aead),
      this._exporterKey,
      'sec',
      exporterContext,
      length,
    );
  }

  /** Wipes the secrets this context holds as bytes. */
  wipe() {
    wipe(this.key, this.baseNonce, this.exporterSecret);
  }
}

/** KeySchedule (RFC 9180 §5.1). */
export async function keySchedule(suite, aead, mode, sharedSecret, info, psk = new Uint8Array(0), pskId = new Uint8Array(0)) {
  const id = hpkeSuiteId(suite, aead);
  const empty = new Uint8Array(0);
  const pskIdHash = await labeledExtract(suite, id, empty, 'psk_id_hash', pskId);
  const infoHash = await labeledExtract(suite, id, empty, 'info_hash', info);
  const context = concat(Uint8Array.of(mode), pskIdHash, infoHash);
  const secret = await labeledExtract(suite, id, sharedSecret, 'secret', psk);
  const secretKey = await hmacKey(suite.hash, secret);
  const key = await labeledExpand(suite, id, secretKey, 'key', context, aead.nk);
  const baseNonce = await labeledExpand(suite, id, secretKey, 'base_nonce', context, 12);
  const exporterSecret = await labeledExpand(suite, id, secretKey, 'exp', context, suite.nh);
  wipe(secret);
  return new Context(suite, aead, key, baseNonce, exporterSecret);
}

/** SetupBaseS: `{enc, ctx}`. */
export async function setupBaseS(suite, pkR, info, { aead = AEADS[2], ephemeral } = {}) {
  const { sharedSecret, enc } = await encap(suite, pkR, { ephemeral });
  const ctx = await keySchedule(suite, aead, MODE.base, sharedSecret, info);
  wipe(sharedSecret);
  return { enc, ctx };
}

/** SetupBaseR with the recipient key pair `{privateKey, publicPoint}`. */
export async function setupBaseR(suite, enc, recipient, info, { aead = AEADS[2] } = {}) {
  const sharedSecret = await decap(suite, enc, recipient);
  const ctx = await keySchedule(suite, aead, MODE.base, sharedSecret, info);
  wipe(sharedSecret);
  return ctx;
}

// ---------------------------------------------------------------------------
// rekey's grants (FORMAT §2–§4)

const GRANT_INFO = utf8('rekey/v1/grant');
const BATCH_INFO = utf8('rekey/v1/batch');
const GRANT_KEY = utf8('rekey/v1/grant-key');

/** The batch scheme of a target or a curve: 0x11 (P-256), 0x13 (P-521), 0x15 (hybrid). */
export function batchScheme(targetOrCurve) {
  return asTarget(targetOrCurve).scheme;
}

// BatchSealer.create took a curve before targets existed; both are accepted.
function asTarget(targetOrCurve) {
  const target = targetOrCurve && targetOrCurve.keyByte !== undefined ? targetOrCurve : targetOfCurve(targetOrCurve);
  if (!target) throw new RekeyError('bad_argument', 'not a target or a curve');
  return target;
}

/** The HPKE suite of a grant scheme (`10`–`15`). */
export function suiteOfScheme(scheme) {
  if (scheme === 0x10 || scheme === 0x11) return SUITES.p256;
  if (scheme === 0x12 || scheme === 0x13) return SUITES.p521;
  if (scheme === 0x14 || scheme === 0x15) return SUITES.xwing;
  throw new RekeyError('bad_envelope', 'not an HPKE scheme');
}

/** `"rekey/v1/batch" ‖ scheme ‖ vault ‖ recipient` (FORMAT §4). */
export function batchInfo(scheme, vault, recipient) {
  return concat(BATCH_INFO, Uint8Array.of(scheme), vault, recipient);
}

/** `"rekey/v1/grant" ‖ scheme ‖ vault ‖ recipient ‖ kind ‖ subject id` (FORMAT §3). */
export function grantInfo(scheme, vault, recipient, subjectKind, subjectId) {
  return concat(GRANT_INFO, Uint8Array.of(scheme), vault, recipient, Uint8Array.of(subjectKind), subjectId);
}

/** `"rekey/v1/grant-key" ‖ kind ‖ subject id` (FORMAT §4). */
export function grantKeyContext(subjectKind, subjectId) {
  return concat(GRANT_KEY, Uint8Array.of(subjectKind), subjectId);
}

/**
 * One batch (FORMAT §4): one encapsulation to a recipient's public key, then
 * any number of grants sealed with keys from the exporter. `target` is a
 * TARGETS entry (or, as before targets, a curve); `publicKey` the
 * recipient's whole public key of that kind (a hybrid key's X-Wing half is
 * what is sealed to); `vault` and `recipient` are 16-byte ids.
 */
export class BatchSealer {
  static async create(target, publicKey, vault, recipient, { ephemeral, nonces } = {}) {
    const t = asTarget(target);
    const scheme = t.scheme;
    const suite = suiteOfScheme(scheme);
    const pkR = kemPublicKey(t, publicKey);
    const { enc, ctx } = await setupBaseS(suite, pkR, batchInfo(scheme, vault, recipient), { ephemeral });
    return new BatchSealer(scheme, enc, ctx, nonces);
  }

  constructor(scheme, enc, ctx, nonces) {
    this.scheme = scheme;
    this.enc = enc;
    this.ctx = ctx;
    this.header = header(scheme);
    this._nonces = nonces; // tests only: a function answering fixed nonces
  }

  /** The envelope of `secret` for the subject (kind byte, 16-byte id). */
  async seal(subjectKind, subjectId, secret) {
    const grantKey = await this.ctx.export(grantKeyContext(subjectKind, subjectId), 32);
    const nonce = this._nonces ? this._nonces() : randomBytes(12);
    const ct = await aesGcmSeal(grantKey, nonce, this.header, secret);
    wipe(grantKey);
    return concat(this.header, this.enc, nonce, ct);
  }

  wipe() {
    this.ctx.wipe();
  }
}

/**
 * Opens a batch grant (`env` a parsed envelope of scheme 0x11/0x13/0x15) with
 * the recipient key pair of its suite (see the top of this file). For
 * checking what a bundle wrote (tests, read-back, role confirmations).
 */
export async function openBatchGrant(env, recipient, vault, recipientId, subjectKind, subjectId) {
  const suite = suiteOfScheme(env.scheme);
  const ctx = await setupBaseR(suite, env.enc, recipient, batchInfo(env.scheme, vault, recipientId));
  const grantKey = await ctx.export(grantKeyContext(subjectKind, subjectId), 32);
  ctx.wipe();
  try {
    return await aesGcmOpen(grantKey, env.nonce, env.header, env.ciphertext);
  } finally {
    wipe(grantKey);
  }
}

/** Seals a single grant (FORMAT §3, scheme 0x10, 0x12 or 0x14; `pkR` the point or X-Wing public key). */
export async function sealGrant(scheme, pkR, vault, recipient, subjectKind, subjectId, secret, { ephemeral } = {}) {
  const suite = suiteOfScheme(scheme);
  if (scheme !== 0x10 && scheme !== 0x12 && scheme !== 0x14) throw new RekeyError('bad_envelope', 'not a single-grant HPKE scheme');
  const h = header(scheme);
  const { enc, ctx } = await setupBaseS(suite, pkR, grantInfo(scheme, vault, recipient, subjectKind, subjectId), {
    ephemeral,
  });
  const ct = await ctx.seal(h, secret);
  ctx.wipe();
  return concat(h, enc, ct);
}

/** Opens a single grant (FORMAT §3). */
export async function openGrant(env, recipient, vault, recipientId, subjectKind, subjectId) {
  const suite = suiteOfScheme(env.scheme);
  const ctx = await setupBaseR(suite, env.enc, recipient, grantInfo(env.scheme, vault, recipientId, subjectKind, subjectId));
  try {
    return await ctx.open(env.header, env.ciphertext);
  } finally {
    ctx.wipe();
  }
}

/**
 * Opens many grants sealed to one recipient key pair (single or batch form
 * of its suite), all addressed to `recipientId` in `vault`, each bound to its
 * subject: a batch's decapsulation is done once per `enc` and its context
 * reused for the batch's other grants, as rekey's GrantOpener does (a vault
 * migrating again opens its previous run's batch grants this way). `wipe()`
 * zeroes the cached contexts.
 */
export class GrantOpener {
  constructor(recipient, vault, recipientId) {
    this.recipient = recipient;
    this.vault = vault;
    this.recipientId = recipientId;
    this._batches = new Map(); // scheme:enc (hex) -> Promise<Context>
    this._contexts = [];
  }

  /** The secret of a parsed envelope of scheme `10`–`15` for the subject; throws when it does not open. */
  async open(env, subjectKind, subjectId) {
    if (!isBatchScheme(env.scheme)) return openGrant(env, this.recipient, this.vault, this.recipientId, subjectKind, subjectId);
    const key = `${env.scheme}:${toHex(env.enc)}`;
    let pending = this._batches.get(key);
    if (!pending) {
      const suite = suiteOfScheme(env.scheme);
      pending = setupBaseR(suite, env.enc, this.recipient, batchInfo(env.scheme, this.vault, this.recipientId)).then((ctx) => {
        this._contexts.push(ctx);
        return ctx;
      });
      this._batches.set(key, pending);
    }
    const ctx = await pending;
    const grantKey = await ctx.export(grantKeyContext(subjectKind, subjectId), 32);
    try {
      return await aesGcmOpen(grantKey, env.nonce, env.header, env.ciphertext);
    } finally {
      wipe(grantKey);
    }
  }

  wipe() {
    for (const ctx of this._contexts) ctx.wipe();
    this._contexts = [];
    this._batches.clear();
  }
}
