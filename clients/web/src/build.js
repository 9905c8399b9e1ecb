// Building a bundle from a checked package (PROTOCOL §6): unlock the
// account, open its legacy grants, make its new key pair of the package's
// target (P-256, P-521 or hybrid), re-wrap every grant in one batch of the
// target's scheme, migrate the candidates (roles) it can open, give every
// holder the candidates' new KEKs, encode, sign.
//
// The legacy keys are RSA before a vault's first migration. When a migrated
// vault migrates again they are the keys of the previous run's target: the
// legacy grants are then that target's HPKE grants (opened under their
// binding), signature kind 1 is ECDSA made as the new key's, and a pending
// holder gets its KEK single-shot in its key's HPKE scheme.

import { RekeyError, checkAborted } from './errors.js';
import { concat, equalBytes, randomBytes, randomUuid, toHex, uuidToBytes, wipe } from './bytes.js';
import { generateNewKey, newKeyOfBytes, signWithNewKey, wipeNewKey } from './keys.js';
import { kemPublicKey, loadXWing, TARGET_NAMES, targetOfScheme, unsupportedTarget } from './target.js';
import { header, isHpkeScheme, isLegacyScheme, parseEnvelope, SCHEME } from './envelope.js';
import { BatchSealer, GrantOpener, sealGrant } from './hpke.js';
import { deriveKek, unwrapPrivateKey, wrapPrivateKey } from './kek.js';
import { RsaPrivateKey } from './rsa.js';
import { encodeBody, encodeSignedBundle, NON_MIGRATABLE, SIGNATURE_KIND, signedMessageOfDigest } from './bundle.js';
import { sha256 } from './kdf.js';

/**
 * Legacy grants a login has opened, kept across its rebuilds (PROTOCOL
 * §10.2): an entry is reused only for the same grant id with the same
 * envelope bytes, subject and recipient (compared by SHA-256; an HPKE grant
 * of an earlier migration opens only under its binding, so a later package
 * naming the same bytes for another subject or recipient opens them again).
 * `wipe()` zeroes every secret.
 */
export class OpenedGrants {
  constructor() {
    this._map = new Map();
  }

  get size() {
    return this._map.size;
  }

  static async _digest(grant, recipient) {
    const subject = grant.subjectId?.bytes ?? new Uint8Array(0);
    return sha256(concat(Uint8Array.of(grant.subjectKind ?? 0), subject, recipient ?? new Uint8Array(0), grant.envelope));
  }

  /** The secret opened earlier for `grant` addressed to `recipient` (16 bytes, optional), or null. */
  async get(grant, recipient) {
    const entry = this._map.get(grant.id.text);
    if (!entry) return null;
    return equalBytes(entry.digest, await OpenedGrants._digest(grant, recipient)) ? entry.secret.slice() : null;
  }

  async put(grant, secret, recipient) {
    const old = this._map.get(grant.id.text);
    if (old) wipe(old.secret);
    this._map.set(grant.id.text, { digest: await OpenedGrants._digest(grant, recipient), secret: secret.slice() });
  }

  wipe() {
    for (const entry of this._map.values()) wipe(entry.secret);
    this._map.clear();
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; answers results in order. */
async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// Several WebCrypto operations in flight let a browser use its worker
// threads for the RSA decryptions.
const CONCURRENCY = 8;

/**
 * A part's unlocked legacy key, whatever its kind:
 * - `canOpen(scheme)`: whether a grant of `scheme` is one this key opens
 *   (RSA-OAEP `01`–`03` for RSA; the single or batch HPKE scheme of the
 *   key's own target for a key of an earlier migration);
 * - `opener(vault, recipient)`: `{open(env, grant), wipe()}` for the
 *   grants of one principal (HPKE grants are bound to the vault, the
 *   principal whose pending grant it is, and the subject);
 * - `sign(message)`: signature kind 1 (PROTOCOL §8): RSA-PSS, or ECDSA
 *   exactly as a new key of that kind signs (a hybrid key's P-256 half);
 * - `forget()`.
 */
function rsaLegacyKey(rsa) {
  return {
    canOpen: isLegacyScheme,
    opener: () => ({ open: (env) => rsa.decrypt(env.scheme, env.ciphertext), wipe() {} }),
    sign: (message) => rsa.signPss(message),
    forget: () => rsa.forget(),
  };
}

function earlierLegacyKey(key) {
  return {
    canOpen: (scheme) => isHpkeScheme(scheme) && targetOfScheme(scheme) === key.target,
    opener: (vault, recipient) => {
      const opener = new GrantOpener(key.recipient, vault, recipient);
      return { open: (env, g) => opener.open(env, g.subjectKind, g.subjectId.bytes), wipe: () => opener.wipe() };
    },
    sign: (message) => signWithNewKey(key, message),
    forget: () => wipeNewKey(key),
  };
}

/**
 * The legacy private key of `legacy` (a package legacy key) from its
 * unwrapped bytes: PKCS#8 RSA, or the private bytes of its earlier target.
 * Answers `{key}` or `{mismatch: true}` when its public half is not the
 * package's; throws when the bytes do not parse.
 */
async function legacyKeyOfBytes(legacy, bytes) {
  if (!legacy.target) {
    const rsa = await RsaPrivateKey.fromPkcs8(bytes);
    if (!legacy.publicKey.matches(rsa)) {
      rsa.forget();
      return { mismatch: true };
    }
    return { key: rsaLegacyKey(rsa) };
  }
  const key = await newKeyOfBytes(legacy.target, bytes);
  if (!equalBytes(key.publicKey, legacy.publicKey)) {
    wipeNewKey(key);
    return { mismatch: true };
  }
  return { key: earlierLegacyKey(key) };
}

/**
 * Opens one legacy grant with `key` through `opener` (PROTOCOL §6.2):
 * `{secret}` or `{reason}` (a NON_MIGRATABLE byte): not an envelope →
 * malformed; a scheme the key cannot open → not legacy; does not open →
 * could not decrypt.
 */
async function openLegacy(key, opener, grant) {
  let env;
  try {
    env = parseEnvelope(grant.envelope);
  } catch {
    return { reason: NON_MIGRATABLE.MALFORMED_ENVELOPE };
  }
  if (!key.canOpen(env.scheme)) return { reason: NON_MIGRATABLE.NOT_LEGACY };
  try {
    return { secret: await opener.open(env, grant) };
  } catch {
    return { reason: NON_MIGRATABLE.COULD_NOT_DECRYPT };
  }
}

/** A fresh key pair of `target` for a part, its id, and its private bytes wrapped under `kek`. */
async function newKeyPair(target, vault, owner, kek) {
  const { key, privateBytes } = await generateNewKey(target);
  const idText = randomUuid();
  const idBytes = uuidToBytes(idText);
  try {
    const wrapped = await wrapPrivateKey(kek, vault, owner, idBytes, privateBytes);
    return { id: idBytes, idText, key, publicKey: key.publicKey, wrapped };
  } finally {
    wipe(privateBytes);
  }
}

/**
 * Refuses (`unsupported_target`), before any work, a package this client
 * cannot serve: its target, or the target of a migrated holder it may have
 * to seal a KEK to, is not in `targets` (default: every target), or needs
 * the X-Wing code and that does not load.
 */
export async function checkTargets(pkg, targets = TARGET_NAMES) {
  if (!Array.isArray(targets) || targets.some((t) => !TARGET_NAMES.includes(t))) {
    throw new RekeyError('bad_argument', `targets must list names among ${TARGET_NAMES.join(', ')}`);
  }
  // Every kind of key the build may touch: the run's target, the migrated
  // holders' keys (sealed to), and in a vault migrating again the legacy
  // keys of the previous target (opened, signed with, sealed to).
  const needed = new Map([[pkg.target.name, pkg.target]]);
  const whose = new Map([[pkg.target.name, 'the vault migrates to it']]);
  const need = (t, why) => {
    if (!t || needed.has(t.name)) return;
    needed.set(t.name, t);
    whose.set(t.name, why);
  };
  need(pkg.legacyKey?.target, 'the account\'s legacy key is of it');
  for (const c of pkg.candidates) {
    need(c.legacyKey?.target, 'the legacy key of a role is of it');
    for (const h of c.holders) need(h.target, 'a holder of a role has a key of it');
  }
  for (const t of needed.values()) {
    if (!targets.includes(t.name)) {
      throw unsupportedTarget(t.name, `${whose.get(t.name)}, and this client was set up to accept ${targets.join(', ') || 'no target'}`);
    }
    if (t.hybrid) await loadXWing();
  }
}

/**
 * Builds the bundle of a package checked by parsePackage.
 *
 * @param pkg        the checked package
 * @param masterSecret the account's master secret (32 bytes; FORMAT §5)
 * @param options    `{opened: OpenedGrants, onProgress({stage, done, total}), signal,
 *   targets}`; `targets` lists the target names the caller accepts (default:
 *   all); a package needing another is refused first (`checkTargets`)
 * @returns `{bytes, body, bundle, signatures, report}`; `report` has
 *   `principals` (text ids, part order), `grants` (re-wrapped + holder
 *   grants), `rewrapped`, `holderGrants`, `nonMigratable` (entries) and
 *   `skipped` ([{principal, reason}] candidates left to another holder).
 */
export async function buildBundle(pkg, masterSecret, options = {}) {
  await checkTargets(pkg, options.targets);
  const kek = await deriveKek(masterSecret, pkg.vault.bytes, pkg.principal.bytes);
  try {
    return await buildWithKek(pkg, kek, options);
  } finally {
    wipe(kek);
  }
}

async function unlockOwn(pkg, kek) {
  const wrapped = pkg.legacyKey.wrappedPrivate;
  if (!wrapped) throw new RekeyError('missing_wrapped_key', 'the package holds no wrapped legacy private key for this account');
  if (wrapped.scheme !== SCHEME.AES256GCM_KEK) {
    throw new RekeyError('package_refused', 'the account\'s wrapped private key is not an aes256gcm-kek envelope');
  }
  let bytes;
  try {
    bytes = await unwrapPrivateKey(kek, pkg.vault.bytes, pkg.principal.bytes, pkg.legacyKey.id.bytes, wrapped);
  } catch {
    throw new RekeyError('wrong_password', 'the password does not unlock this account\'s key', {
      hint: 'check the password; the server accepted the login, so the vault\'s key for this account may be damaged',
    });
  }
  try {
    // PKCS#8 RSA, or (a vault migrating again) the previous target's
    // private bytes, as this client wraps a new key.
    let out;
    try {
      out = await legacyKeyOfBytes(pkg.legacyKey, bytes);
    } catch (e) {
      if (e.code === 'unsupported_target') throw e;
      const kind = pkg.legacyKey.target ? `a ${pkg.legacyKey.target.name} private key` : 'an RSA PKCS#8 key';
      throw new RekeyError('package_refused', `the account's unlocked legacy key is not ${kind}`, { cause: e });
    }
    // PROTOCOL §5.6 item 6: the unlocked key must be the package's public key.
    if (out.mismatch) {
      throw new RekeyError('package_refused', 'the unlocked legacy key does not match the package\'s public key');
    }
    return out.key;
  } finally {
    wipe(bytes);
  }
}

async function unlockCandidate(c, vault, kek) {
  const wrapped = c.legacyKey.wrappedPrivate;
  if (!wrapped) return { skip: 'its legacy private key is not in the package' };
  if (wrapped.scheme !== SCHEME.AES256GCM_KEK) return { skip: 'its wrapped private key is not an aes256gcm-kek envelope' };
  let bytes;
  try {
    bytes = await unwrapPrivateKey(kek, vault, c.principal.bytes, c.legacyKey.id.bytes, wrapped);
  } catch {
    return { skip: 'its legacy private key does not decrypt' };
  }
  try {
    const out = await legacyKeyOfBytes(c.legacyKey, bytes);
    if (out.mismatch) return { skip: 'its legacy private key does not match its public key' };
    return { key: out.key };
  } catch (e) {
    if (e.code === 'unsupported_target') throw e;
    return { skip: 'its legacy private key does not parse' };
  } finally {
    wipe(bytes);
  }
}

async function buildWithKek(pkg, kek, { opened = new OpenedGrants(), onProgress = () => {}, signal } = {}) {
  const target = pkg.target;
  const vault = pkg.vault.bytes;
  const total = pkg.pendingGrants.length + pkg.candidates.reduce((n, c) => n + c.pendingGrants.length, 0);
  let done = 0;
  const tick = () => {
    done += 1;
    if (done % 16 === 0 || done === total) onProgress({ stage: 'grants', done, total });
  };
  const secrets = []; // every secret byte array we hold, wiped at the end
  const legacyKeys = [];
  try {
    checkAborted(signal);
    onProgress({ stage: 'unlock', done: 0, total });
    const ownKey = await unlockOwn(pkg, kek);
    legacyKeys.push(ownKey);

    // Opens the pending grants of `owner` (the principal they are
    // addressed to) with its legacy key, reusing what earlier attempts
    // opened; re-wraps them in one batch to `sealer`.
    const rewrapAll = async (key, owner, grants, sealer, heldKeks) => {
      const opener = key.opener(vault, owner.bytes);
      let results;
      try {
        results = await mapLimit(grants, CONCURRENCY, async (g) => {
          checkAborted(signal);
          let secret = await opened.get(g, owner.bytes);
          let out;
          if (secret) {
            out = { secret };
          } else {
            out = await openLegacy(key, opener, g);
            if (out.secret) await opened.put(g, out.secret, owner.bytes);
          }
          tick();
          if (out.secret) secrets.push(out.secret);
          return out;
        });
      } finally {
        opener.wipe();
      }
      const rewrapped = [];
      const nonMigratable = [];
      for (let i = 0; i < grants.length; i++) {
        const g = grants[i];
        const r = results[i];
        if (r.reason) {
          nonMigratable.push({ grant: g.id.bytes, reason: r.reason });
          continue;
        }
        rewrapped.push({
          replaces: g.id.bytes,
          subjectKind: g.subjectKind,
          subjectId: g.subjectId.bytes,
          envelope: await sealer.seal(g.subjectKind, g.subjectId.bytes, r.secret),
        });
        // A private_key subject's secret is the KEK of that key pair's
        // owner: it may unlock a candidate (PROTOCOL §6.2, §6.5).
        if (g.subjectKind === 0x02) heldKeks.set(g.subjectId.text, r.secret);
      }
      return { rewrapped, nonMigratable };
    };

    // The account's own part (PROTOCOL §6.3, §6.4).
    const me = pkg.principal;
    const own = await newKeyPair(target, vault, me.bytes, kek);
    const ownSealer = await BatchSealer.create(target, own.publicKey, vault, me.bytes);
    const heldKeks = new Map(); // legacy or new key pair id (text) -> KEK bytes
    const ownGrants = await rewrapAll(ownKey, me, pkg.pendingGrants, ownSealer, heldKeks);
    const parts = [
      {
        principal: me,
        legacyKeyPair: pkg.legacyKey.id,
        keys: own,
        legacy: ownKey,
        wrappedPrivate: own.wrapped,
        ...ownGrants,
        holderGrants: [],
      },
    ];
    const inBundle = new Map([[me.text, { keyPairId: own.id, sealer: ownSealer }]]);

    // One batch per migrated holder, shared by every candidate (§6.6).
    const holderSealers = new Map();
    const sealerForMigrated = async (h) => {
      let s = holderSealers.get(h.principal.text);
      if (!s) {
        // Sealed to the holder's own key, of whatever target it migrated to.
        s = await BatchSealer.create(h.target, h.publicKey, vault, h.principal.bytes);
        holderSealers.set(h.principal.text, s);
      }
      return s;
    };

    // Candidates in waves (§6.5): one is ready once a grant already opened
    // carries the KEK of its legacy key, a holder of its key has a part
    // already, and none of its holders is a candidate still to be built (a
    // holder migrating in this bundle gets the KEK under its new key).
    const skipped = [];
    let waiting = [...pkg.candidates];
    for (;;) {
      checkAborted(signal);
      const unbuilt = new Set(waiting.map((c) => c.principal.text));
      const ready = waiting.filter(
        (c) =>
          heldKeks.has(c.legacyKey.id.text) &&
          c.holders.some((h) => inBundle.has(h.principal.text)) &&
          !c.holders.some((h) => h.principal.text !== c.principal.text && unbuilt.has(h.principal.text)),
      );
      if (ready.length === 0) break;
      waiting = waiting.filter((c) => !ready.includes(c));
      for (const c of ready) {
        const unlocked = await unlockCandidate(c, vault, heldKeks.get(c.legacyKey.id.text));
        if (unlocked.skip) {
          c.pendingGrants.forEach(tick);
          skipped.push({ principal: c.principal.text, reason: unlocked.skip });
          continue;
        }
        legacyKeys.push(unlocked.key);
        const newKek = randomBytes(32);
        secrets.push(newKek);
        const keys = await newKeyPair(target, vault, c.principal.bytes, newKek);
        const sealer = await BatchSealer.create(target, keys.publicKey, vault, c.principal.bytes);
        const grants = await rewrapAll(unlocked.key, c.principal, c.pendingGrants, sealer, heldKeks);
        // The holder grants (§6.6): subject = the candidate's new key pair.
        const holderGrants = [];
        for (const h of c.holders) {
          const here = inBundle.get(h.principal.text);
          let holderKeyPair;
          let envelope;
          if (here) {
            holderKeyPair = here.keyPairId;
            envelope = await here.sealer.seal(0x02, keys.id, newKek);
          } else if (h.state === 'migrated') {
            holderKeyPair = h.keyPair.bytes;
            envelope = await (await sealerForMigrated(h)).seal(0x02, keys.id, newKek);
          } else if (h.target) {
            // A pending holder whose legacy key is of an earlier migration:
            // single-shot HPKE in that key's scheme (`10`, `12`, `14`),
            // bound to (vault, the holder, the candidate's new key pair).
            holderKeyPair = h.keyPair.bytes;
            const pkR = kemPublicKey(h.target, h.publicKey);
            envelope = await sealGrant(h.target.singleScheme, pkR, vault, h.principal.bytes, 0x02, keys.id, newKek);
          } else {
            holderKeyPair = h.keyPair.bytes;
            envelope = concat(header(SCHEME.RSA_OAEP_SHA256), await h.publicKey.encryptOaepSha256(newKek));
          }
          holderGrants.push({ holder: h.principal.bytes, holderKeyPair, envelope });
        }
        parts.push({
          principal: c.principal,
          legacyKeyPair: c.legacyKey.id,
          keys,
          legacy: unlocked.key,
          wrappedPrivate: keys.wrapped,
          ...grants,
          holderGrants,
        });
        inBundle.set(c.principal.text, { keyPairId: keys.id, sealer });
      }
    }
    for (const c of waiting) {
      c.pendingGrants.forEach(tick);
      const why = heldKeks.has(c.legacyKey.id.text)
        ? 'a holder of its key could not be migrated first'
        : 'none of the account\'s grants carries its key';
      skipped.push({ principal: c.principal.text, reason: why });
    }

    // Encode and sign (§6.8, §7, §8).
    checkAborted(signal);
    onProgress({ stage: 'sign', done: total, total });
    const bundle = {
      vault,
      run: pkg.run.bytes,
      submitter: me.bytes,
      parts: parts.map((p) => ({
        principal: p.principal.bytes,
        legacyKeyPair: p.legacyKeyPair.bytes,
        newKeyPair: p.keys.id,
        target: target.name,
        publicKey: p.keys.publicKey,
        wrappedPrivate: p.wrappedPrivate,
        grants: p.rewrapped,
        nonMigratable: p.nonMigratable,
        holderGrants: p.holderGrants,
      })),
    };
    const body = encodeBody(bundle);
    const digest = await sha256(body);
    const signatures = [];
    for (const p of parts) {
      // Kind 1 by the legacy key (RSA-PSS, or ECDSA for a key of an earlier
      // migration), kind 2 by the new key (§8).
      const legacyMsg = signedMessageOfDigest(digest, SIGNATURE_KIND.LEGACY_KEY, p.principal.bytes);
      const ecMsg = signedMessageOfDigest(digest, SIGNATURE_KIND.NEW_KEY_ECDSA, p.principal.bytes);
      signatures.push({ principal: p.principal.bytes, kind: SIGNATURE_KIND.LEGACY_KEY, bytes: await p.legacy.sign(legacyMsg) });
      signatures.push({ principal: p.principal.bytes, kind: SIGNATURE_KIND.NEW_KEY_ECDSA, bytes: await signWithNewKey(p.keys.key, ecMsg) });
    }
    const bytes = encodeSignedBundle(body, signatures);
    for (const s of [ownSealer, ...holderSealers.values(), ...[...inBundle.values()].map((v) => v.sealer)]) s.wipe();
    const rewrapped = parts.reduce((n, p) => n + p.rewrapped.length, 0);
    const holderGrants = parts.reduce((n, p) => n + p.holderGrants.length, 0);
    return {
      bytes,
      body,
      bundle,
      signatures,
      report: {
        principals: parts.map((p) => p.principal.text),
        newKeyPairs: parts.map((p) => p.keys.idText),
        grants: rewrapped + holderGrants,
        rewrapped,
        holderGrants,
        nonMigratable: parts.reduce((n, p) => n + p.nonMigratable.length, 0),
        skipped,
        bodyDigest: toHex(digest),
      },
    };
  } finally {
    for (const s of secrets) wipe(s);
    for (const k of legacyKeys) k.forget();
  }
}
