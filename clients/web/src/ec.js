// P-256 and P-521 public points (SEC1, uncompressed) and private scalars,
// bridged to WebCrypto. The on-curve check is done here, explicitly, before
// WebCrypto sees a point: a package from the server is untrusted input
// (PROTOCOL §5.6 item 3), and the check should not depend on a browser's
// importKey being strict.

import { RekeyError } from './errors.js';
import { bytesToBigInt, concat, fromBase64Url, toBase64Url, u8 } from './bytes.js';

const subtle = () => globalThis.crypto.subtle;

export const CURVES = Object.freeze({
  p256: {
    name: 'p256',
    webName: 'P-256',
    hash: 'SHA-256',
    byte: 0x01,
    scalarLen: 32,
    pointLen: 65,
    sigLen: 64,
    p: 2n ** 256n - 2n ** 224n + 2n ** 192n + 2n ** 96n - 1n,
    b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
    n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
    // 1.2.840.10045.3.1.7
    oid: Uint8Array.of(0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07),
  },
  p521: {
    name: 'p521',
    webName: 'P-521',
    hash: 'SHA-512',
    byte: 0x02,
    scalarLen: 66,
    pointLen: 133,
    sigLen: 132,
    p: 2n ** 521n - 1n,
    b: 0x0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00n,
    n: 0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
    // 1.3.132.0.35
    oid: Uint8Array.of(0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23),
  },
});

function mod(a, p) {
  const r = a % p;
  return r < 0n ? r + p : r;
}

/**
 * Whether `point` is an uncompressed SEC1 point of `curve`: the curve's
 * length, first byte 04, both coordinates below p, and y² = x³ − 3x + b.
 */
export function isValidPoint(curve, point) {
  if (!(point instanceof Uint8Array) || point.length !== curve.pointLen || point[0] !== 0x04) {
    return false;
  }
  const len = curve.scalarLen;
  const x = bytesToBigInt(point.subarray(1, 1 + len));
  const y = bytesToBigInt(point.subarray(1 + len));
  const { p, b } = curve;
  if (x >= p || y >= p) return false;
  return mod(y * y - (x * x * x - 3n * x + b), p) === 0n;
}

/** Throws unless `point` is valid on `curve` (see isValidPoint). */
export function checkPoint(curve, point, what = 'a public key') {
  if (!isValidPoint(curve, point)) {
    throw new RekeyError('bad_public_key', `${what} is not an uncompressed point of ${curve.webName}`);
  }
}

/** A WebCrypto public key of a checked SEC1 point, for `usage` 'ECDH' or 'ECDSA'. */
export async function importPublicPoint(curve, point, algorithm = 'ECDH') {
  checkPoint(curve, point);
  return subtle().importKey(
    'raw',
    point,
    { name: algorithm, namedCurve: curve.webName },
    true,
    algorithm === 'ECDSA' ? ['verify'] : [],
  );
}

// DER of a PKCS#8 EC private key without its (optional) public key: the
// platform computes the public point on import.
function pkcs8OfScalar(curve, scalar) {
  const len = (n) => (n < 128 ? Uint8Array.of(n) : Uint8Array.of(0x81, n));
  const tlv = (tag, body) => concat(Uint8Array.of(tag), len(body.length), body);
  const ecPublicKey = Uint8Array.of(0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01);
  const ecPrivateKey = tlv(0x30, concat(Uint8Array.of(0x02, 0x01, 0x01), tlv(0x04, scalar)));
  return tlv(
    0x30,
    concat(Uint8Array.of(0x02, 0x01, 0x00), tlv(0x30, concat(ecPublicKey, curve.oid)), tlv(0x04, ecPrivateKey)),
  );
}

/**
 * The key pair of a private scalar (big-endian, the curve's length):
 * `{privateKey, publicPoint}` with a WebCrypto private key for `algorithm`
 * ('ECDH' or 'ECDSA').
 */
export async function keyPairOfScalar(curve, scalar, algorithm = 'ECDH') {
  if (scalar.length !== curve.scalarLen) {
    throw new RekeyError('bad_private_key', `a ${curve.webName} scalar must be ${curve.scalarLen} bytes`);
  }
  const d = bytesToBigInt(scalar);
  if (d === 0n || d >= curve.n) {
    throw new RekeyError('bad_private_key', `the scalar is out of range for ${curve.webName}`);
  }
  const usages = algorithm === 'ECDSA' ? ['sign'] : ['deriveBits'];
  const params = { name: algorithm, namedCurve: curve.webName };
  const temp = await subtle().importKey('pkcs8', pkcs8OfScalar(curve, scalar), params, true, usages);
  const jwk = await subtle().exportKey('jwk', temp);
  const publicPoint = concat(Uint8Array.of(4), fromBase64Url(jwk.x), fromBase64Url(jwk.y));
  // Re-imported non-extractable: the scalar stays with the caller only.
  const privateKey = await subtle().importKey('jwk', jwk, params, false, usages);
  jwk.d = '';
  return { privateKey, publicPoint };
}

/**
 * A fresh key pair from the platform. Answers `{privateKey, publicPoint,
 * scalar}`: the private key usable for `algorithm`, the uncompressed point
 * and the big-endian scalar (the caller wipes it; null with `withScalar:
 * false`, when the private key is not extractable either).
 */
export async function generateKeyPair(curve, algorithm = 'ECDSA', { withScalar = true } = {}) {
  const usages = algorithm === 'ECDSA' ? ['sign', 'verify'] : ['deriveBits'];
  const params = { name: algorithm, namedCurve: curve.webName };
  const pair = await subtle().generateKey(params, withScalar, usages);
  const publicPoint = u8(await subtle().exportKey('raw', pair.publicKey));
  if (!withScalar) return { privateKey: pair.privateKey, publicPoint, scalar: null };
  const jwk = await subtle().exportKey('jwk', pair.privateKey);
  const scalar = fromBase64Url(jwk.d);
  jwk.d = '';
  return { privateKey: pair.privateKey, publicPoint, scalar };
}

/** JWK of a public point (tests and adopters). */
export function publicJwk(curve, point) {
  const len = curve.scalarLen;
  return {
    kty: 'EC',
    crv: curve.webName,
    x: toBase64Url(point.subarray(1, 1 + len)),
    y: toBase64Url(point.subarray(1 + len)),
  };
}

/** ECDSA over `message` (P-256: SHA-256, P-521: SHA-512): fixed-width r ‖ s, as FORMAT §8 wants. */
export async function ecdsaSign(curve, privateKey, message) {
  // WebCrypto answers IEEE P1363 (r ‖ s, each left-padded): no DER here.
  const sig = u8(await subtle().sign({ name: 'ECDSA', hash: curve.hash }, privateKey, message));
  if (sig.length !== curve.sigLen) {
    throw new RekeyError('internal', 'the platform answered an ECDSA signature of an unexpected length');
  }
  return sig;
}

/** Verifies a fixed-width r ‖ s ECDSA signature. */
export async function ecdsaVerify(curve, point, message, signature) {
  const key = await importPublicPoint(curve, point, 'ECDSA');
  return subtle().verify({ name: 'ECDSA', hash: curve.hash }, key, signature, message);
}
