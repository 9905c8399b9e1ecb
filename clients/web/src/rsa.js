// Legacy RSA keys (FORMAT §6, PROTOCOL §6.2, §6.6, §8).
//
// Schemes 01 (OAEP SHA-1/MGF1-SHA-1) and 02 (OAEP SHA-256/MGF1-SHA-256),
// RSA-PSS signing and RSA-OAEP-SHA-256 encryption to pending holders all run
// on WebCrypto. Scheme 03 (OAEP with a SHA-256 label hash but MGF1-SHA-1,
// Java's OAEPWithSHA-256AndMGF1Padding) cannot be expressed in WebCrypto,
// whose RSA-OAEP always uses one hash for both. It is decoded here over a raw
// RSA private-key operation in BigInt arithmetic; see decryptOaepSha256Mgf1Sha1.

import { RekeyError } from './errors.js';
import { bigIntToBytes, bytesToBigInt, concat, equalBytes, randomBytes, u8, wipe } from './bytes.js';
import { parseRsaPkcs8, parseRsaSpki } from './asn1.js';
import { digest } from './kdf.js';

const subtle = () => globalThis.crypto.subtle;

/** RSA public key of an SPKI (checked: RSA, 2048 to 4096 bits). */
export class RsaPublicKey {
  constructor(spki) {
    this.spki = spki;
    const k = parseRsaSpki(spki);
    this.n = k.n;
    this.e = k.e;
    this.bits = k.bits;
    this.modulusLength = k.modulusLength;
    this._oaep = null;
  }

  /** Whether a private key's public half is this key (modulus and exponent). */
  matches(other) {
    return equalBytes(this.n, other.n) && equalBytes(this.e, other.e);
  }

  /** RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) of `secret`: the body of a scheme-02 envelope. */
  async encryptOaepSha256(secret) {
    this._oaep ??= await subtle().importKey('spki', this.spki, { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['encrypt']);
    return u8(await subtle().encrypt({ name: 'RSA-OAEP' }, this._oaep, secret));
  }

  /** Verifies an RSA-PSS signature with PROTOCOL §8's parameters (tests). */
  async verifyPss(message, signature) {
    const key = await subtle().importKey('spki', this.spki, { name: 'RSA-PSS', hash: 'SHA-256' }, false, ['verify']);
    return subtle().verify({ name: 'RSA-PSS', saltLength: 32 }, key, signature, message);
  }
}

/** A legacy RSA private key (PKCS#8 DER), unlocked on this device. */
export class RsaPrivateKey {
  /** Parses and imports `pkcs8` (the caller keeps and wipes its own copy). */
  static async fromPkcs8(pkcs8) {
    const parsed = parseRsaPkcs8(pkcs8);
    const der = pkcs8.slice();
    const imp = (name, hash, usages) => subtle().importKey('pkcs8', der, { name, hash }, false, usages);
    let keys;
    try {
      keys = {
        sha1: await imp('RSA-OAEP', 'SHA-1', ['decrypt']),
        sha256: await imp('RSA-OAEP', 'SHA-256', ['decrypt']),
        pss: await imp('RSA-PSS', 'SHA-256', ['sign']),
      };
    } catch (cause) {
      throw new RekeyError('bad_private_key', 'the platform refused the RSA private key', { cause });
    } finally {
      wipe(der);
    }
    return new RsaPrivateKey(parsed, keys);
  }

  constructor(parsed, keys) {
    this.n = parsed.n;
    this.e = parsed.e;
    this.bits = parsed.bits;
    this.modulusLength = parsed.modulusLength;
    this._priv = parsed.private;
    this._keys = keys;
  }

  /**
   * Decrypts the body of a legacy envelope of `scheme` (01, 02, 03). Throws a
   * RekeyError `could_not_decrypt` on any failure (wrong length, bad padding).
   */
  async decrypt(scheme, ciphertext) {
    if (ciphertext.length !== this.modulusLength) {
      throw new RekeyError('could_not_decrypt', 'the ciphertext is not as long as the modulus');
    }
    try {
      if (scheme === 0x01) return u8(await subtle().decrypt({ name: 'RSA-OAEP' }, this._keys.sha1, ciphertext));
      if (scheme === 0x02) return u8(await subtle().decrypt({ name: 'RSA-OAEP' }, this._keys.sha256, ciphertext));
      if (scheme === 0x03) return await decryptOaepSha256Mgf1Sha1(this._priv, this.modulusLength, ciphertext);
    } catch (cause) {
      throw new RekeyError('could_not_decrypt', 'RSA-OAEP decryption failed', { cause });
    }
    throw new RekeyError('could_not_decrypt', 'not a legacy RSA scheme');
  }

  /** RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt (PROTOCOL §8). */
  async signPss(message) {
    return u8(await subtle().sign({ name: 'RSA-PSS', saltLength: 32 }, this._keys.pss, message));
  }

  /** Drops the private numbers (BigInts cannot be wiped; they become unreachable). */
  forget() {
    this._priv = null;
    this._keys = null;
  }
}

// ---------------------------------------------------------------------------
// Scheme 03 without WebCrypto.
//
// NOT CONSTANT-TIME. BigInt arithmetic in JavaScript engines has data-
// dependent timing, and the private numbers live in BigInts that cannot be
// wiped. This is acceptable here, and only here, because:
//  - the operation runs on the user's own device, on the user's own grants,
//    at most once per grant (grants opened once are reused across rebuilds);
//    no remote party can ask for a decryption and time it: the server sees
//    only the finished bundle, seconds later, after hundreds of other
//    operations;
//  - the ciphertext is blinded with a fresh random r (c·r^e) before the
//    private exponentiation, so timing does not depend on the ciphertext a
//    hostile server may have chosen;
//  - the padding check is branch-free over all bytes and every failure is
//    the same single error, which becomes one reason byte (could_not_decrypt)
//    whatever went wrong: the bundle does not tell which check failed;
//  - the result is checked by re-encrypting (m^e = c), so a faulty CRT step
//    cannot leak a factor through a wrong output.
// A script that can time code inside the page could read the password from
// the form anyway.

function modPow(base, exp, m) {
  // Fixed 4-bit window, left to right.
  const table = [1n, base % m];
  for (let i = 2; i < 16; i++) table.push((table[i - 1] * table[1]) % m);
  const hex = exp.toString(16);
  let r = 1n;
  for (let i = 0; i < hex.length; i++) {
    r = (r * r) % m;
    r = (r * r) % m;
    r = (r * r) % m;
    r = (r * r) % m;
    r = (r * table[parseInt(hex[i], 16)]) % m;
  }
  return r;
}

function modInverse(a, m) {
  let [oldR, r] = [a % m, m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  if (oldR !== 1n) return null;
  return ((oldS % m) + m) % m;
}

/** RSADP with CRT and blinding; answers m as a BigInt. */
function rsaPrivate(key, c) {
  const { n, e, p, q, dp, dq, qinv } = key;
  let r;
  let rInv = null;
  while (rInv === null) {
    const rb = randomBytes(Math.ceil(n.toString(16).length / 2) + 8);
    r = bytesToBigInt(rb) % n;
    wipe(rb);
    if (r > 1n) rInv = modInverse(r, n);
  }
  const blinded = (c * modPow(r, e, n)) % n;
  const m1 = modPow(blinded % p, dp, p);
  const m2 = modPow(blinded % q, dq, q);
  const h = (qinv * (((m1 - m2) % p) + p)) % p;
  const m = ((m2 + h * q) * rInv) % n;
  if (modPow(m, e, n) !== c) throw new RekeyError('could_not_decrypt', 'the RSA operation failed its check');
  return m;
}

export async function mgf1(hash, seed, length) {
  const out = new Uint8Array(length);
  const hLen = hash === 'SHA-1' ? 20 : 32;
  for (let counter = 0, at = 0; at < length; counter++, at += hLen) {
    const c = Uint8Array.of(counter >>> 24, (counter >>> 16) & 0xff, (counter >>> 8) & 0xff, counter & 0xff);
    const block = await digest(hash, concat(seed, c));
    out.set(block.subarray(0, Math.min(hLen, length - at)), at);
  }
  return out;
}

const EMPTY_SHA256 = Uint8Array.from(
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'.match(/../g),
  (h) => parseInt(h, 16),
);

/**
 * RSAES-OAEP-DECRYPT (RFC 8017 §7.1.2) with label hash SHA-256, MGF1-SHA-1
 * and the empty label. `key` holds the private numbers as BigInts; `k` is
 * the modulus length in bytes.
 */
export async function decryptOaepSha256Mgf1Sha1(key, k, ciphertext) {
  const hLen = 32;
  const fail = () => new RekeyError('could_not_decrypt', 'RSA-OAEP decryption failed');
  if (ciphertext.length !== k || k < 2 * hLen + 2) throw fail();
  const c = bytesToBigInt(ciphertext);
  if (c >= key.n) throw fail();
  const em = bigIntToBytes(rsaPrivate(key, c), k);
  const maskedSeed = em.subarray(1, 1 + hLen);
  const maskedDb = em.subarray(1 + hLen);
  const seedMask = await mgf1('SHA-1', maskedDb, hLen);
  const seed = maskedSeed.map((b, i) => b ^ seedMask[i]);
  const dbMask = await mgf1('SHA-1', seed, k - hLen - 1);
  const db = maskedDb.map((b, i) => b ^ dbMask[i]);
  // Branch-free over the whole block: Y = 0, lHash matches, then zeros, a
  // 01 separator, then the message.
  let bad = em[0];
  for (let i = 0; i < hLen; i++) bad |= db[i] ^ EMPTY_SHA256[i];
  let found = 0; // 1 once the separator was seen
  let index = 0;
  for (let i = hLen; i < db.length; i++) {
    const isOne = ((db[i] ^ 1) - 1) >>> 31; // 1 if db[i] === 1
    const isZero = (db[i] - 1) >>> 31; // 1 if db[i] === 0
    const before = found ^ 1; // 1 while the separator has not been seen
    const first = isOne & before;
    index |= -first & i; // the separator's position, once
    bad |= before & ((isOne | isZero) ^ 1); // a byte other than 00 or 01 before the separator
    found |= isOne;
  }
  bad |= found ^ 1;
  const message = db.slice(index + 1);
  wipe(em, seed, db, dbMask, seedMask);
  if (bad !== 0) {
    wipe(message);
    throw fail();
  }
  return message;
}
