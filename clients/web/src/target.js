// Migration targets (FORMAT §1, §3.2; PROTOCOL §5, §7.2): the kind of every
// new key pair a package asks for and the batch scheme of every grant
// sealed to such a key.
//
// | target                 | new key pair          | grants | single | key kind byte | public key |
// |------------------------|-----------------------|--------|--------|---------------|------------|
// | `hpke-p256`            | P-256                 | `11`   | `10`   | `01`          | 65-byte SEC1 point |
// | `hpke-p521`            | P-521                 | `13`   | `12`   | `02`          | 133-byte SEC1 point |
// | `hpke-mlkem768-x25519` | X-Wing + P-256 signer | `15`   | `14`   | `03`          | 1,281 bytes: X-Wing key (1,216) ‖ P-256 point (65) |
//
// `single` is the single-shot scheme (FORMAT §3) of a grant to a holder
// still pending when its legacy key is of an earlier migration's target.
//
// Everything here is pure JavaScript and loads nothing: the X-Wing code
// (and its packages) is loaded only when a hybrid key is used (xwing.js).

import { RekeyError } from './errors.js';
import { CURVES, isValidPoint } from './ec.js';

/** ML-KEM-768 encapsulation key (FIPS 203): 3 × 384 bytes of 12-bit coefficients, then ρ (32). */
export const MLKEM768_EK_LEN = 1184;
/** X-Wing public key: ML-KEM-768 encapsulation key ‖ X25519 public key (FORMAT §3.1). */
export const XWING_PUBLIC_KEY_LEN = MLKEM768_EK_LEN + 32;
/** Hybrid public key (FORMAT §3.2). */
export const HYBRID_PUBLIC_KEY_LEN = XWING_PUBLIC_KEY_LEN + CURVES.p256.pointLen;
/** Hybrid private key: X-Wing seed (32) ‖ P-256 scalar (32). */
export const HYBRID_PRIVATE_KEY_LEN = 32 + CURVES.p256.scalarLen;

export const TARGETS = Object.freeze({
  'hpke-p256': Object.freeze({
    name: 'hpke-p256',
    keyByte: 0x01,
    scheme: 0x11,
    singleScheme: 0x10,
    publicKeyLen: CURVES.p256.pointLen,
    curve: CURVES.p256,
    signingCurve: CURVES.p256,
    hybrid: false,
  }),
  'hpke-p521': Object.freeze({
    name: 'hpke-p521',
    keyByte: 0x02,
    scheme: 0x13,
    singleScheme: 0x12,
    publicKeyLen: CURVES.p521.pointLen,
    curve: CURVES.p521,
    signingCurve: CURVES.p521,
    hybrid: false,
  }),
  'hpke-mlkem768-x25519': Object.freeze({
    name: 'hpke-mlkem768-x25519',
    keyByte: 0x03,
    scheme: 0x15,
    singleScheme: 0x14,
    publicKeyLen: HYBRID_PUBLIC_KEY_LEN,
    curve: null,
    signingCurve: CURVES.p256,
    hybrid: true,
  }),
});

/** Every target name, in the order of their key kind bytes. */
export const TARGET_NAMES = Object.freeze(Object.keys(TARGETS));

/** The target of a name (`hpke-p256`…), or null. */
export function targetOfName(name) {
  return typeof name === 'string' && Object.hasOwn(TARGETS, name) ? TARGETS[name] : null;
}

/** The target of a bundle's key kind byte (PROTOCOL §7.2), or null. */
export function targetOfKeyByte(byte) {
  return Object.values(TARGETS).find((t) => t.keyByte === byte) ?? null;
}

/** The target of a stored public key, told by its length (65, 133 or 1,281), or null. */
export function targetOfPublicKey(bytes) {
  return Object.values(TARGETS).find((t) => t.publicKeyLen === bytes.length) ?? null;
}

/** The target of an elliptic curve (`CURVES.p256` → `hpke-p256`). */
export function targetOfCurve(curve) {
  return Object.values(TARGETS).find((t) => t.curve === curve) ?? null;
}

/** The target a grant of `scheme` is sealed to (single or batch form), or null (legacy, KEK). */
export function targetOfScheme(scheme) {
  if (scheme === 0x10 || scheme === 0x11) return TARGETS['hpke-p256'];
  if (scheme === 0x12 || scheme === 0x13) return TARGETS['hpke-p521'];
  if (scheme === 0x14 || scheme === 0x15) return TARGETS['hpke-mlkem768-x25519'];
  return null;
}

/**
 * The FIPS 203 §7.2 encapsulation key check of ML-KEM-768: every 12-bit
 * coefficient of the 3 encoded polynomials (ByteDecode₁₂) is below q = 3329.
 * The trailing 32 bytes (ρ) are not coefficients.
 */
export function isValidMlKem768Key(ek) {
  if (!(ek instanceof Uint8Array) || ek.length !== MLKEM768_EK_LEN) return false;
  let bad = 0;
  for (let i = 0; i < MLKEM768_EK_LEN - 32; i += 3) {
    const a = ek[i] | ((ek[i + 1] & 0x0f) << 8);
    const b = (ek[i + 1] >> 4) | (ek[i + 2] << 4);
    bad |= (a >= 3329) | (b >= 3329);
  }
  return bad === 0;
}

/**
 * Whether `bytes` is a public key of `target`'s kind: an uncompressed SEC1
 * point on the target's curve; for a hybrid key, 1,281 bytes whose X-Wing
 * half is 1,216 bytes with a valid ML-KEM-768 key (the X25519 half, any 32
 * bytes, is not checkable here: a low-order point makes sealing fail later)
 * and whose P-256 half is a point of P-256.
 */
export function isValidPublicKey(target, bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length !== target.publicKeyLen) return false;
  if (!target.hybrid) return isValidPoint(target.curve, bytes);
  return isValidMlKem768Key(bytes.subarray(0, MLKEM768_EK_LEN)) && isValidPoint(CURVES.p256, bytes.subarray(XWING_PUBLIC_KEY_LEN));
}

/** The key grants are sealed to: the point itself, or a hybrid key's X-Wing half. */
export function kemPublicKey(target, publicKey) {
  return target.hybrid ? publicKey.subarray(0, XWING_PUBLIC_KEY_LEN) : publicKey;
}

/** The point that verifies the key's signatures: the point itself, or a hybrid key's P-256 half. */
export function signingPoint(target, publicKey) {
  return target.hybrid ? publicKey.subarray(XWING_PUBLIC_KEY_LEN) : publicKey;
}

/** `unsupported_target`, naming what the client cannot do. */
export function unsupportedTarget(name, why, extra = {}) {
  return new RekeyError('unsupported_target', `this client cannot migrate to ${name}: ${why}`, {
    hint: 'the vault\'s migration target needs a client that supports it; ask the administrator',
    ...extra,
  });
}

let xwingModule = null;

/**
 * The X-Wing module (xwing.js), imported on first use. When it (or its
 * packages, @noble/post-quantum and @noble/curves) cannot be loaded, as on a
 * page whose import map does not serve them, this rejects with
 * `unsupported_target`, and a later call tries again.
 */
export function loadXWing() {
  xwingModule ??= import('./xwing.js').catch((cause) => {
    xwingModule = null;
    throw unsupportedTarget('hpke-mlkem768-x25519', 'its X-Wing code (@noble/post-quantum, @noble/curves) did not load', {
      cause,
      hint: 'serve @noble/post-quantum and @noble/curves beside @noble/hashes (see the README)',
    });
  });
  return xwingModule;
}
