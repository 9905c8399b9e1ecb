// HMAC, HKDF (RFC 5869) and AES-GCM on WebCrypto.

import { concat, u8 } from './bytes.js';

const subtle = () => globalThis.crypto.subtle;

const HASH_LEN = { 'SHA-256': 32, 'SHA-384': 48, 'SHA-512': 64 };

/** An HMAC key for `hash`. An empty key is the hash length of zeros (HMAC pads keys with zeros). */
export async function hmacKey(hash, key) {
  // WebCrypto refuses zero-length HMAC keys; HMAC treats both the same.
  const raw = key.length === 0 ? new Uint8Array(HASH_LEN[hash]) : key;
  return subtle().importKey('raw', raw, { name: 'HMAC', hash }, false, ['sign']);
}

export async function hmac(hash, key, data) {
  const k = key instanceof CryptoKey ? key : await hmacKey(hash, key);
  return u8(await subtle().sign('HMAC', k, data));
}

/** HKDF-Extract. */
export async function hkdfExtract(hash, salt, ikm) {
  return hmac(hash, salt, ikm);
}

/** HKDF-Expand; `prk` may be bytes or an HMAC CryptoKey (to reuse one). */
export async function hkdfExpand(hash, prk, info, length) {
  const key = prk instanceof CryptoKey ? prk : await hmacKey(hash, prk);
  const n = HASH_LEN[hash];
  if (length > 255 * n) throw new RangeError('HKDF-Expand: output too long');
  const out = new Uint8Array(Math.ceil(length / n) * n);
  let t = new Uint8Array(0);
  for (let i = 1; (i - 1) * n < length; i++) {
    t = await hmac(hash, key, concat(t, info, Uint8Array.of(i)));
    out.set(t, (i - 1) * n);
  }
  t.fill(0);
  const result = out.slice(0, length);
  out.fill(0);
  return result;
}

/** HKDF (extract then expand) in one WebCrypto call. */
export async function hkdf(hash, salt, ikm, info, length) {
  const key = await subtle().importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return u8(await subtle().deriveBits({ name: 'HKDF', hash, salt, info }, key, length * 8));
}

/** An AES-GCM key of raw bytes (16 or 32). */
export async function aesKey(raw, usages = ['encrypt', 'decrypt']) {
  return subtle().importKey('raw', raw, { name: 'AES-GCM' }, false, usages);
}

/** AES-GCM encryption, 128-bit tag appended. */
export async function aesGcmSeal(key, nonce, aad, plaintext) {
  const k = key instanceof CryptoKey ? key : await aesKey(key);
  return u8(await subtle().encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 }, k, plaintext));
}

/** AES-GCM decryption; throws (OperationError) on a wrong tag. */
export async function aesGcmOpen(key, nonce, aad, ciphertext) {
  const k = key instanceof CryptoKey ? key : await aesKey(key);
  return u8(await subtle().decrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 }, k, ciphertext));
}

export async function sha256(data) {
  return u8(await subtle().digest('SHA-256', data));
}

export async function digest(hash, data) {
  return u8(await subtle().digest(hash, data));
}
