// Key-encryption keys and private keys under them (FORMAT §5, PROTOCOL §6.1,
// §6.3).

import { RekeyError } from './errors.js';
import { concat, randomBytes, utf8 } from './bytes.js';
import { aesGcmOpen, aesGcmSeal, hkdf } from './kdf.js';
import { header, parseEnvelope, SCHEME } from './envelope.js';

const KEK_SALT = utf8('rekey/v1/kek');
const KEK_INFO = utf8('rekey/v1/kek:private-key');
const PRIVATE_KEY_AAD = utf8('rekey/v1/private-key');

/**
 * An e2ee user's KEK: HKDF-SHA256(salt = "rekey/v1/kek", ikm = master secret,
 * info = "rekey/v1/kek:private-key" ‖ vault ‖ user, L = 32). Ids are 16 bytes.
 */
export async function deriveKek(masterSecret, vault, user) {
  if (!(masterSecret instanceof Uint8Array) || masterSecret.length < 16) {
    throw new RekeyError('bad_master_secret', 'a master secret is at least 16 bytes');
  }
  return hkdf('SHA-256', KEK_SALT, masterSecret, concat(KEK_INFO, vault, user), 32);
}

/** `726b0120 ‖ "rekey/v1/private-key" ‖ vault ‖ owner ‖ key pair`. */
export function privateKeyAad(vault, owner, keyPair) {
  return concat(header(SCHEME.AES256GCM_KEK), PRIVATE_KEY_AAD, vault, owner, keyPair);
}

/** Wraps private key bytes under `kek`, bound to (vault, owner, key pair): a 0x20 envelope. */
export async function wrapPrivateKey(kek, vault, owner, keyPair, privateKeyBytes, { nonce } = {}) {
  const n = nonce ?? randomBytes(12);
  const ct = await aesGcmSeal(kek, n, privateKeyAad(vault, owner, keyPair), privateKeyBytes);
  return concat(header(SCHEME.AES256GCM_KEK), n, ct);
}

/**
 * Opens a 0x20 envelope (bytes or parsed) with `kek`, bound to (vault, owner,
 * key pair). Throws `wrong_key` when the tag does not verify: for an e2ee
 * user's own key, a wrong password.
 */
export async function unwrapPrivateKey(kek, vault, owner, keyPair, envelope) {
  const env = envelope instanceof Uint8Array ? parseEnvelope(envelope) : envelope;
  if (env.scheme !== SCHEME.AES256GCM_KEK) {
    throw new RekeyError('bad_envelope', 'a wrapped private key is not an aes256gcm-kek envelope');
  }
  try {
    return await aesGcmOpen(kek, env.nonce, privateKeyAad(vault, owner, keyPair), env.ciphertext);
  } catch (cause) {
    throw new RekeyError('wrong_key', 'the key-encryption key does not open this private key', { cause });
  }
}
