// Just enough strict DER to read RSA keys: SubjectPublicKeyInfo (RFC 5280)
// and PKCS#8 PrivateKeyInfo (RFC 5208) holding an RSAPrivateKey (RFC 8017
// A.1.2). Anything else, non-minimal lengths or trailing bytes are refused.

import { RekeyError } from './errors.js';
import { bytesToBigInt, equalBytes } from './bytes.js';

// 1.2.840.113549.1.1.1
const RSA_ENCRYPTION = Uint8Array.of(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01);

function fail(code, what) {
  return new RekeyError(code, what);
}

/** Reads one TLV at `pos`: `{tag, content, end}`. */
function tlv(buf, pos, code) {
  if (pos + 2 > buf.length) throw fail(code, 'DER ends early');
  const tag = buf[pos];
  let len = buf[pos + 1];
  let at = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || at + n > buf.length) throw fail(code, 'bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[at + i];
    at += n;
    if (len < 128 || buf[pos + 2] === 0) throw fail(code, 'non-minimal DER length');
  }
  if (at + len > buf.length) throw fail(code, 'DER ends early');
  return { tag, content: buf.subarray(at, at + len), end: at + len };
}

/** The items of a constructed value, in order, checking their tags. */
function sequence(buf, tags, code, { optionalTail = 0 } = {}) {
  const items = [];
  let pos = 0;
  while (pos < buf.length) {
    const t = tlv(buf, pos, code);
    items.push(t);
    pos = t.end;
  }
  if (items.length < tags.length - optionalTail || items.length > tags.length) {
    throw fail(code, 'unexpected DER structure');
  }
  items.forEach((t, i) => {
    if (t.tag !== tags[i]) throw fail(code, 'unexpected DER tag');
  });
  return items;
}

function top(der, tag, code) {
  const t = tlv(der, 0, code);
  if (t.tag !== tag || t.end !== der.length) throw fail(code, 'not a single DER value');
  return t.content;
}

/** A positive INTEGER's magnitude, minimal (no needless leading zero). */
function positiveInteger(content, code) {
  if (content.length === 0 || content[0] & 0x80) throw fail(code, 'a negative or empty INTEGER');
  if (content.length > 1 && content[0] === 0 && !(content[1] & 0x80)) throw fail(code, 'a non-minimal INTEGER');
  return content[0] === 0 && content.length > 1 ? content.subarray(1) : content;
}

function checkAlgorithm(content, code) {
  const [oid, params] = sequence(content, [0x06, 0x05], code);
  if (!equalBytes(oid.content, RSA_ENCRYPTION)) throw fail(code, 'not an rsaEncryption key');
  if (params.content.length !== 0) throw fail(code, 'rsaEncryption parameters are not NULL');
}

function bitLength(bytes) {
  if (bytes.length === 0 || bytes[0] === 0) return 0;
  return (bytes.length - 1) * 8 + (32 - Math.clz32(bytes[0]));
}

/** Refuses moduli outside 2048..4096 bits (PROTOCOL §5.2, §5.6 item 3). */
function checkBits(n, code) {
  const bits = bitLength(n);
  if (bits < 2048 || bits > 4096) throw fail(code, `an RSA key of ${bits} bits (2048 to 4096 are allowed)`);
  return bits;
}

/**
 * Parses an RSA SubjectPublicKeyInfo: `{n, e, bits, modulusLength}` with
 * `n`/`e` as minimal big-endian bytes.
 */
export function parseRsaSpki(der, code = 'bad_public_key') {
  const [alg, bits] = sequence(top(der, 0x30, code), [0x30, 0x03], code);
  checkAlgorithm(alg.content, code);
  if (bits.content.length < 1 || bits.content[0] !== 0) throw fail(code, 'BIT STRING with unused bits');
  const [n, e] = sequence(top(bits.content.subarray(1), 0x30, code), [0x02, 0x02], code);
  const nBytes = positiveInteger(n.content, code);
  const eBytes = positiveInteger(e.content, code);
  const size = checkBits(nBytes, code);
  if ((eBytes[eBytes.length - 1] & 1) === 0 || bytesToBigInt(eBytes) < 3n) throw fail(code, 'a bad RSA public exponent');
  return { n: nBytes, e: eBytes, bits: size, modulusLength: Math.ceil(size / 8) };
}

/**
 * Parses a PKCS#8 RSA private key: the public `{n, e, bits, modulusLength}`
 * and the private numbers as BigInts (`d, p, q, dp, dq, qinv`).
 */
export function parseRsaPkcs8(der, code = 'bad_private_key') {
  const items = sequence(top(der, 0x30, code), [0x02, 0x30, 0x04, 0xa0], code, { optionalTail: 1 });
  const version = items[0].content;
  if (version.length !== 1 || version[0] > 1) throw fail(code, 'unknown PKCS#8 version');
  checkAlgorithm(items[1].content, code);
  const fields = sequence(
    top(items[2].content, 0x30, code),
    [0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02],
    code,
  );
  if (fields[0].content.length !== 1 || fields[0].content[0] !== 0) throw fail(code, 'not a two-prime RSA key');
  const [n, e, d, p, q, dp, dq, qinv] = fields.slice(1).map((f) => positiveInteger(f.content, code));
  const size = checkBits(n, code);
  const big = bytesToBigInt;
  return {
    n,
    e,
    bits: size,
    modulusLength: Math.ceil(size / 8),
    private: { n: big(n), e: big(e), d: big(d), p: big(p), q: big(q), dp: big(dp), dq: big(dq), qinv: big(qinv) },
  };
}
