// Byte helpers: hex, UUIDs, big-endian integers, concatenation, wiping.
// Every function checks its input; none of them logs anything.

import { RekeyError } from './errors.js';

const HEX = '0123456789abcdef';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HEX_RE = /^(?:[0-9a-f]{2})*$/;

/** Lowercase hex of `bytes`. */
export function toHex(bytes) {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    out += HEX[bytes[i] >> 4] + HEX[bytes[i] & 15];
  }
  return out;
}

/**
 * Bytes of a lowercase hex string (as the server writes hex). Throws a
 * RekeyError with `code` when the string is not lowercase hex of whole bytes.
 */
export function fromHex(text, what = 'a hex string', code = 'bad_hex') {
  if (typeof text !== 'string' || !HEX_RE.test(text)) {
    throw new RekeyError(code, `${what} is not lowercase hex`);
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(text.substr(2 * i, 2), 16);
  }
  return out;
}

/** Whether `text` is a UUID in its lowercase hyphenated form. */
export function isUuid(text) {
  return typeof text === 'string' && UUID_RE.test(text);
}

/** The 16 raw bytes (RFC 9562 order) of a lowercase hyphenated UUID. */
export function uuidToBytes(text, what = 'an id') {
  if (!isUuid(text)) {
    throw new RekeyError('bad_uuid', `${what} is not a lowercase hyphenated UUID`);
  }
  return fromHex(text.replace(/-/g, ''), what);
}

/** The lowercase hyphenated text of 16 raw bytes. */
export function bytesToUuid(bytes) {
  if (bytes.length !== 16) {
    throw new RekeyError('bad_uuid', 'an id is not 16 bytes');
  }
  const h = toHex(bytes);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A fresh random (version 4) UUID, as PROTOCOL §6.3 asks for new key pair ids. */
export function randomUuid() {
  const b = randomBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  return bytesToUuid(b);
}

/** `n` bytes from the platform CSPRNG. */
export function randomBytes(n) {
  const out = new Uint8Array(n);
  // getRandomValues fills at most 65,536 bytes per call.
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/** ASCII (or UTF-8) bytes of a string. */
export function utf8(text) {
  return new TextEncoder().encode(text);
}

/** The concatenation of byte arrays (or arrays of byte values). */
export function concat(...parts) {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Whether two byte arrays are equal (length and content; not constant-time). */
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** Big-endian u16. */
export function u16(n) {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) {
    throw new RekeyError('too_large', `${n} does not fit in 16 bits`);
  }
  return Uint8Array.of(n >>> 8, n & 0xff);
}

/** Big-endian u32. */
export function u32(n) {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RekeyError('too_large', `${n} does not fit in 32 bits`);
  }
  return Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/** Overwrites byte arrays with zeros (secrets we are done with). */
export function wipe(...arrays) {
  for (const a of arrays) {
    if (a instanceof Uint8Array) a.fill(0);
  }
}

/** A Uint8Array of `buffer` (ArrayBuffer from WebCrypto). */
export function u8(buffer) {
  return buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
}

/** base64url (no padding) to bytes, as JWK members are. */
export function fromBase64Url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '==='.slice((b64.length + 3) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Bytes to base64url (no padding), for JWK members. */
export function toBase64Url(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Unsigned big-endian bytes to a BigInt. */
export function bytesToBigInt(bytes) {
  let n = 0n;
  for (let i = 0; i < bytes.length; i++) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/** A non-negative BigInt to `len` big-endian bytes (throws if it does not fit). */
export function bigIntToBytes(n, len) {
  const out = new Uint8Array(len);
  let v = n;
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (v !== 0n) throw new RekeyError('too_large', 'an integer does not fit its field');
  return out;
}

/** A cursor over bytes that refuses to read past the end. */
export class Reader {
  constructor(bytes) {
    this.buf = bytes;
    this.pos = 0;
  }

  get remaining() {
    return this.buf.length - this.pos;
  }

  take(n, what, code = 'bundle_truncated') {
    if (this.remaining < n) {
      throw new RekeyError(code, `the bytes end inside ${what}`);
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  u8(what, code) {
    return this.take(1, what, code)[0];
  }

  u16(what, code) {
    const b = this.take(2, what, code);
    return (b[0] << 8) | b[1];
  }

  u32(what, code) {
    const b = this.take(4, what, code);
    return ((b[0] << 24) >>> 0) + (b[1] << 16) + (b[2] << 8) + b[3];
  }
}
