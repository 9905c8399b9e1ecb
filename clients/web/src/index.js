// rekey's browser client: public API. See README.md.

export { RekeyError } from './errors.js';
export { migrate, migrateWithMasterSecret, RekeyApi, MAX_ATTEMPTS, conflictBackoffMs } from './client.js';
export { checkKdfParams, deriveMasterSecret, loginAuthenticator } from './auth.js';
export { parsePackage, PACKAGE_FORMAT } from './package.js';
export { buildBundle, checkTargets, OpenedGrants } from './build.js';
export { TARGETS, TARGET_NAMES, targetOfName, isValidPublicKey } from './target.js';
export { newKeyOfBytes, signWithNewKey, verifyNewKeySignature } from './keys.js';
export { parseRoleChecks, confirmRole, confirmRoles, receiptMessage, ROLE_CHECKS_FORMAT } from './confirm.js';
export {
  encodeBundle,
  encodeBody,
  encodeSignedBundle,
  parseBundle,
  decodeBody,
  signedMessage,
  signedMessageOfDigest,
  SIGNATURE_KIND,
  NON_MIGRATABLE,
} from './bundle.js';
export { parseEnvelope, SCHEME } from './envelope.js';
export { deriveKek, wrapPrivateKey, unwrapPrivateKey } from './kek.js';
export { BatchSealer, GrantOpener, openBatchGrant, sealGrant, openGrant } from './hpke.js';
export { toHex, fromHex, uuidToBytes, bytesToUuid } from './bytes.js';
