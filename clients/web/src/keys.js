// New key pairs of a migration target (PROTOCOL §6.3, FORMAT §3.2, §5, §8).
//
// A *new key* is `{target, publicKey, recipient, signer}`:
// - `publicKey`: the stored public key (a SEC1 point, or a hybrid key's
//   1,281 bytes);
// - `recipient`: what grants sealed to it open with (hpke.js): the EC key
//   pair `{privateKey (ECDH), publicPoint}`, or a hybrid key's X-Wing key
//   pair; null for a key this client made (it only seals to those);
// - `signer`: the non-extractable WebCrypto ECDSA key that signs for it (a
//   hybrid key's P-256 half).
// Its private bytes (what a KEK wraps) are the EC scalar, or the hybrid
// key's X-Wing seed (32) ‖ P-256 scalar (32).

import { RekeyError } from './errors.js';
import { bytesToBigInt, concat, randomBytes, wipe } from './bytes.js';
import { CURVES, ecdsaSign, ecdsaVerify, generateKeyPair, keyPairOfScalar } from './ec.js';
import { HYBRID_PRIVATE_KEY_LEN, loadXWing, signingPoint } from './target.js';

const P256 = CURVES.p256;

/**
 * A fresh key pair of `target`: `{key, privateBytes}`; the caller wraps
 * `privateBytes` and wipes them.
 */
export async function generateNewKey(target) {
  if (!target.hybrid) {
    const pair = await generateKeyPair(target.curve, 'ECDSA');
    return { key: { target, publicKey: pair.publicPoint, recipient: null, signer: pair.privateKey }, privateBytes: pair.scalar };
  }
  // 64 random bytes: the X-Wing seed, then a P-256 scalar (drawn again in
  // the ~2⁻³² case it is zero or not below the group order).
  const xwing = await loadXWing();
  let bytes = randomBytes(HYBRID_PRIVATE_KEY_LEN);
  for (;;) {
    const d = bytesToBigInt(bytes.subarray(32));
    if (d !== 0n && d < P256.n) break;
    wipe(bytes);
    bytes = randomBytes(HYBRID_PRIVATE_KEY_LEN);
  }
  const kem = xwing.xwingKeyPair(bytes.subarray(0, 32));
  const signing = await keyPairOfScalar(P256, bytes.subarray(32), 'ECDSA');
  const publicKey = concat(kem.publicKey, signing.publicPoint);
  xwing.wipeXWingKey(kem);
  return { key: { target, publicKey, recipient: null, signer: signing.privateKey }, privateBytes: bytes };
}

/**
 * The new key of its private bytes (as unwrapped from a KEK). Throws
 * `bad_private_key` for a wrong length or an out-of-range scalar. Does not
 * keep `bytes`.
 */
export async function newKeyOfBytes(target, bytes) {
  if (!target.hybrid) {
    const ecdh = await keyPairOfScalar(target.curve, bytes, 'ECDH');
    const ecdsa = await keyPairOfScalar(target.curve, bytes, 'ECDSA');
    return { target, publicKey: ecdh.publicPoint, recipient: ecdh, signer: ecdsa.privateKey };
  }
  if (!(bytes instanceof Uint8Array) || bytes.length !== HYBRID_PRIVATE_KEY_LEN) {
    throw new RekeyError('bad_private_key', 'a hybrid private key is 64 bytes: X-Wing seed, P-256 scalar');
  }
  const signing = await keyPairOfScalar(P256, bytes.subarray(32), 'ECDSA');
  const kem = (await loadXWing()).xwingKeyPair(bytes.subarray(0, 32));
  return { target, publicKey: concat(kem.publicKey, signing.publicPoint), recipient: kem, signer: signing.privateKey };
}

/** ECDSA by the key (FORMAT §8): P-256/SHA-256 (also for hybrid keys) or P-521/SHA-512, `r ‖ s`. */
export async function signWithNewKey(key, message) {
  return ecdsaSign(key.target.signingCurve, key.signer, message);
}

/** Verifies a signature by the holder of `publicKey`, a public key of `target`. */
export async function verifyNewKeySignature(target, publicKey, message, signature) {
  return ecdsaVerify(target.signingCurve, signingPoint(target, publicKey), message, signature);
}

/** Zeroes what a new key holds as bytes (a hybrid key's X-Wing secrets). */
export function wipeNewKey(key) {
  if (key?.target.hybrid && key.recipient) wipe(key.recipient.seed, key.recipient.dkM, key.recipient.skX);
}
