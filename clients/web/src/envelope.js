// The envelope of FORMAT §1: magic `72 6b` ‖ version `01` ‖ scheme ‖ body.

import { RekeyError } from './errors.js';

export const MAX_SECRET_LEN = 8192;
const TAG = 16;
const NONCE = 12;
/** An X-Wing ciphertext: ML-KEM-768 ciphertext (1088) ‖ X25519 ephemeral key (32). */
export const XWING_ENC = 1088 + 32;

/** Scheme ids of FORMAT §1, with their names and body layout. */
export const SCHEMES = Object.freeze({
  0x01: { name: 'rsa-oaep-sha1', rsa: true },
  0x02: { name: 'rsa-oaep-sha256', rsa: true },
  0x03: { name: 'rsa-oaep-sha256-mgf1sha1', rsa: true },
  0x10: { name: 'hpke-p256-sha256-aes256gcm', prefix: 65, enc: 65 },
  0x11: { name: 'hpke-p256-sha256-aes256gcm-export', prefix: 65 + NONCE, enc: 65 },
  0x12: { name: 'hpke-p521-sha512-aes256gcm', prefix: 133, enc: 133 },
  0x13: { name: 'hpke-p521-sha512-aes256gcm-export', prefix: 133 + NONCE, enc: 133 },
  0x14: { name: 'hpke-mlkem768-x25519-sha256-aes256gcm', prefix: XWING_ENC, enc: XWING_ENC },
  0x15: { name: 'hpke-mlkem768-x25519-sha256-aes256gcm-export', prefix: XWING_ENC + NONCE, enc: XWING_ENC },
  0x20: { name: 'aes256gcm-kek', prefix: NONCE, enc: 0 },
});

export const SCHEME = Object.freeze({
  RSA_OAEP_SHA1: 0x01,
  RSA_OAEP_SHA256: 0x02,
  RSA_OAEP_SHA256_MGF1SHA1: 0x03,
  HPKE_P256: 0x10,
  HPKE_P256_EXPORT: 0x11,
  HPKE_P521: 0x12,
  HPKE_P521_EXPORT: 0x13,
  HPKE_XWING: 0x14,
  HPKE_XWING_EXPORT: 0x15,
  AES256GCM_KEK: 0x20,
});

/** The 4-byte header of a scheme (the AEAD associated data, or its start). */
export function header(scheme) {
  return Uint8Array.of(0x72, 0x6b, 0x01, scheme);
}

export function isLegacyScheme(scheme) {
  return scheme === 0x01 || scheme === 0x02 || scheme === 0x03;
}

export function isHpkeScheme(scheme) {
  return scheme >= 0x10 && scheme <= 0x15;
}

/** Whether `scheme` is a batch (exporter) HPKE scheme: `11`, `13`, `15` (FORMAT §4). */
export function isBatchScheme(scheme) {
  return scheme === 0x11 || scheme === 0x13 || scheme === 0x15;
}

/**
 * Parses an envelope (FORMAT §1). Refuses fewer than 4 bytes, a wrong magic,
 * a version other than 1, an unknown scheme and a body length the scheme does
 * not allow. Answers `{scheme, bytes, header, enc, nonce, ciphertext}` (views
 * into `bytes`).
 */
export function parseEnvelope(bytes) {
  const bad = (why) => new RekeyError('bad_envelope', `not a valid envelope: ${why}`);
  if (!(bytes instanceof Uint8Array)) throw bad('not bytes');
  if (bytes.length < 4) throw bad('shorter than its header');
  if (bytes[0] !== 0x72 || bytes[1] !== 0x6b) throw bad('wrong magic');
  if (bytes[2] !== 0x01) throw bad(`version ${bytes[2]}`);
  const scheme = bytes[3];
  const s = SCHEMES[scheme];
  if (!s) throw bad(`unknown scheme 0x${scheme.toString(16).padStart(2, '0')}`);
  const body = bytes.length - 4;
  if (s.rsa) {
    if (body < 128 || body > 1024) throw bad(`an RSA body of ${body} bytes`);
  } else if (body < s.prefix + TAG || body > s.prefix + TAG + MAX_SECRET_LEN) {
    throw bad(`a ${s.name} body of ${body} bytes`);
  }
  const prefix = s.rsa ? 0 : s.prefix;
  return {
    scheme,
    name: s.name,
    bytes,
    header: bytes.subarray(0, 4),
    enc: bytes.subarray(4, 4 + (s.enc ?? 0)),
    nonce: bytes.subarray(4 + (s.enc ?? 0), 4 + prefix),
    ciphertext: bytes.subarray(4 + prefix),
  };
}
