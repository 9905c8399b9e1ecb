// The X-Wing KEM (FORMAT §3.1): MLKEM768-X25519 of draft-ietf-hpke-pq (KEM
// id 0x647a), the X-Wing of draft-connolly-cfrg-xwing. ML-KEM-768 comes from
// @noble/post-quantum, X25519 from @noble/curves, SHA3-256 and SHAKE256 from
// @noble/hashes (all pinned in package-lock.json); the combiner, the seed
// expansion and the checks are here.
//
// This module is loaded on demand (hpke.js `loadXWing`): a page that
// migrates to P-256 or P-521 never fetches it or its packages.

import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { sha3_256, shake256 } from '@noble/hashes/sha3.js';
import { RekeyError } from './errors.js';
import { concat, randomBytes, u16, utf8, wipe } from './bytes.js';
import { XWING_ENC } from './envelope.js';
import { isValidMlKem768Key, MLKEM768_EK_LEN, XWING_PUBLIC_KEY_LEN } from './target.js';

export const KEM_ID = 0x647a;
export const SEED_LEN = 32;
export const PUBLIC_KEY_LEN = XWING_PUBLIC_KEY_LEN;
export const ENC_LEN = XWING_ENC;
/** Encapsulation randomness: ML-KEM's m (32) ‖ the X25519 ephemeral secret (32). */
export const RANDOMNESS_LEN = 64;
const MLKEM_CT_LEN = 1088;
// The combiner's label, ASCII `\.//^\`.
const LABEL = Uint8Array.of(0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c);

function bad(code, why) {
  return new RekeyError(code, `X-Wing: ${why}`);
}

function isZero(bytes) {
  let acc = 0;
  for (let i = 0; i < bytes.length; i++) acc |= bytes[i];
  return acc === 0;
}

// X25519, refusing the all-zero output (a low-order point), as FORMAT §3.1
// asks where the drafts would combine the zero value. @noble/curves throws on
// it already; the explicit check does not depend on that.
function x25519Shared(secret, publicKey) {
  let out;
  try {
    out = x25519.getSharedSecret(secret, publicKey);
  } catch (cause) {
    throw new RekeyError('bad_public_key', 'X-Wing: the X25519 exchange gives the all-zero value', { cause });
  }
  if (isZero(out)) throw new RekeyError('bad_public_key', 'X-Wing: the X25519 exchange gives the all-zero value');
  return out;
}

/**
 * The X-Wing key pair of a 32-byte seed: `{seed, dkM, skX, pkX, publicKey}`
 * (`publicKey` = ek_M (1184) ‖ pk_X (32)). `seed` is a copy; `wipeXWingKey`
 * zeroes the secrets.
 */
export function xwingKeyPair(seed) {
  if (!(seed instanceof Uint8Array) || seed.length !== SEED_LEN) throw bad('bad_private_key', 'a seed is 32 bytes');
  const expanded = shake256(seed, { dkLen: 96 });
  try {
    const { publicKey: ekM, secretKey: dkM } = ml_kem768.keygen(expanded.subarray(0, 64));
    const skX = expanded.slice(64, 96);
    const pkX = x25519.getPublicKey(skX);
    return { seed: seed.slice(), dkM, skX, pkX, publicKey: concat(ekM, pkX) };
  } finally {
    wipe(expanded);
  }
}

/** Zeroes the secrets of a key pair of `xwingKeyPair`. */
export function wipeXWingKey(key) {
  wipe(key.seed, key.dkM, key.skX);
}

/**
 * HPKE `DeriveKeyPair` of KEM 0x647a (FORMAT §3.1):
 * `SHAKE256(ikm ‖ "HPKE-v1" ‖ "KEM" ‖ 647a ‖ 000d ‖ "DeriveKeyPair" ‖ 0020, 32)`, the seed.
 */
export function deriveXWingSeed(ikm) {
  const input = concat(ikm, utf8('HPKE-v1'), utf8('KEM'), u16(KEM_ID), u16(13), utf8('DeriveKeyPair'), u16(SEED_LEN));
  return shake256(input, { dkLen: SEED_LEN });
}

/** Whether `publicKey` is an X-Wing public key: 1,216 bytes, the ML-KEM half passing FIPS 203 §7.2. */
export function isValidXWingPublicKey(publicKey) {
  return (
    publicKey instanceof Uint8Array &&
    publicKey.length === PUBLIC_KEY_LEN &&
    isValidMlKem768Key(publicKey.subarray(0, MLKEM768_EK_LEN))
  );
}

function combine(ssM, ssX, ctX, pkX) {
  const input = concat(ssM, ssX, ctX, pkX, LABEL);
  const out = sha3_256(input);
  wipe(input);
  return out;
}

/**
 * Encapsulation to an X-Wing public key: `{sharedSecret, enc}`. `randomness`
 * (64 bytes: m ‖ X25519 ephemeral secret) is drawn fresh unless given (test
 * vectors only); it is not kept.
 */
export function xwingEncapsulate(publicKey, randomness) {
  if (!isValidXWingPublicKey(publicKey)) throw bad('bad_public_key', 'not a valid X-Wing public key');
  if (randomness !== undefined && (!(randomness instanceof Uint8Array) || randomness.length !== RANDOMNESS_LEN)) {
    throw bad('bad_argument', 'the encapsulation randomness is 64 bytes');
  }
  const r = randomness ? randomness.slice() : randomBytes(RANDOMNESS_LEN);
  try {
    const ekM = publicKey.subarray(0, MLKEM768_EK_LEN);
    const pkX = publicKey.subarray(MLKEM768_EK_LEN);
    const { cipherText: ctM, sharedSecret: ssM } = ml_kem768.encapsulate(ekM, r.subarray(0, 32));
    const ekX = r.subarray(32, 64);
    const ctX = x25519.getPublicKey(ekX);
    const ssX = x25519Shared(ekX, pkX);
    const sharedSecret = combine(ssM, ssX, ctX, pkX);
    wipe(ssM, ssX);
    return { sharedSecret, enc: concat(ctM, ctX) };
  } finally {
    wipe(r);
  }
}

/**
 * Decapsulation with a key pair of `xwingKeyPair`: the 32-byte shared secret.
 * A wrong ML-KEM ciphertext gives a wrong secret (implicit rejection), not
 * an error; a low-order `ct_X` is refused.
 */
export function xwingDecapsulate(enc, key) {
  if (!(enc instanceof Uint8Array) || enc.length !== ENC_LEN) throw bad('bad_envelope', 'an X-Wing ciphertext is 1,120 bytes');
  const ctM = enc.subarray(0, MLKEM_CT_LEN);
  const ctX = enc.subarray(MLKEM_CT_LEN);
  const ssM = ml_kem768.decapsulate(ctM, key.dkM);
  const ssX = x25519Shared(key.skX, ctX);
  const sharedSecret = combine(ssM, ssX, ctX, key.pkX);
  wipe(ssM, ssX);
  return sharedSecret;
}
