//! Every byte string rekey feeds into a KDF, HPKE `info`, an exporter
//! context or AEAD associated data. docs/FORMAT.md documents each.

use crate::envelope::Scheme;
use crate::ids::{GrantBinding, KeyBinding, KeyPairId, PrincipalId, RecordId, Subject, VaultId};

/// HPKE `info` prefix of a single grant.
pub const GRANT_INFO: &[u8] = b"rekey/v1/grant";
/// HPKE `info` prefix of a batch.
pub const BATCH_INFO: &[u8] = b"rekey/v1/batch";
/// Exporter-context prefix of one grant in a batch.
pub const BATCH_GRANT_CONTEXT: &[u8] = b"rekey/v1/grant-key";
/// HKDF salt of the key-encryption key.
pub const KEK_SALT: &[u8] = b"rekey/v1/kek";
/// HKDF info prefix of the key-encryption key (its purpose label).
pub const KEK_INFO: &[u8] = b"rekey/v1/kek:private-key";
/// Associated-data prefix of a private key under a KEK.
pub const PRIVATE_KEY_AAD: &[u8] = b"rekey/v1/private-key";
/// Associated-data prefix of record content.
pub const RECORD_AAD: &[u8] = b"rekey/v1/record";
/// HKDF salt of the login authenticator (`auth.rs`).
pub const AUTHENTICATOR_SALT: &[u8] = b"rekey/v1/login-authenticator";
/// What a session token's MAC covers first (`auth.rs`).
pub const SESSION_TOKEN: &[u8] = b"rekey/v1/session";
/// Prefix of the message a hybrid key pair's proof of possession signs.
pub const HYBRID_POSSESSION: &[u8] = b"rekey/v1/hybrid-key-possession";

/// `GRANT_INFO ‖ scheme ‖ vault ‖ recipient ‖ subject kind ‖ subject id`.
#[must_use]
pub fn grant_info(scheme: Scheme, binding: &GrantBinding) -> Vec<u8> {
    let mut out = Vec::with_capacity(GRANT_INFO.len() + 1 + 16 + 16 + 17);
    out.extend_from_slice(GRANT_INFO);
    out.push(scheme.id());
    out.extend_from_slice(&binding.vault.to_bytes());
    out.extend_from_slice(&binding.recipient.to_bytes());
    out.extend_from_slice(&binding.subject.to_bytes());
    out
}

/// `BATCH_INFO ‖ scheme ‖ vault ‖ recipient`.
#[must_use]
pub fn batch_info(scheme: Scheme, vault: VaultId, recipient: PrincipalId) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_INFO.len() + 1 + 32);
    out.extend_from_slice(BATCH_INFO);
    out.push(scheme.id());
    out.extend_from_slice(&vault.to_bytes());
    out.extend_from_slice(&recipient.to_bytes());
    out
}

/// `BATCH_GRANT_CONTEXT ‖ subject kind ‖ subject id`.
#[must_use]
pub fn batch_grant_context(subject: Subject) -> Vec<u8> {
    let mut out = BATCH_GRANT_CONTEXT.to_vec();
    out.extend_from_slice(&subject.to_bytes());
    out
}

/// `KEK_INFO ‖ vault ‖ owner`.
#[must_use]
pub fn kek_info(vault: VaultId, owner: PrincipalId) -> Vec<u8> {
    let mut out = KEK_INFO.to_vec();
    out.extend_from_slice(&vault.to_bytes());
    out.extend_from_slice(&owner.to_bytes());
    out
}

/// `header ‖ PRIVATE_KEY_AAD ‖ vault ‖ owner ‖ key pair`.
#[must_use]
pub fn private_key_aad(header: &[u8], binding: &KeyBinding) -> Vec<u8> {
    let mut out = header.to_vec();
    out.extend_from_slice(PRIVATE_KEY_AAD);
    out.extend_from_slice(&binding.vault.to_bytes());
    out.extend_from_slice(&binding.owner.to_bytes());
    out.extend_from_slice(&binding.key_pair.to_bytes());
    out
}

/// `RECORD_AAD ‖ version ‖ vault ‖ record`.
#[must_use]
pub fn record_aad(version: u8, vault: VaultId, record: RecordId) -> Vec<u8> {
    let mut out = RECORD_AAD.to_vec();
    out.push(version);
    out.extend_from_slice(&vault.to_bytes());
    out.extend_from_slice(&record.to_bytes());
    out
}

/// `HYBRID_POSSESSION ‖ vault ‖ owner ‖ key pair ‖ public key`, where the
/// public key is the whole hybrid encoding (X-Wing key ‖ P-256 point).
#[must_use]
pub fn hybrid_possession(
    vault: VaultId,
    owner: PrincipalId,
    key_pair: KeyPairId,
    public_key: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HYBRID_POSSESSION.len() + 48 + public_key.len());
    out.extend_from_slice(HYBRID_POSSESSION);
    out.extend_from_slice(&vault.to_bytes());
    out.extend_from_slice(&owner.to_bytes());
    out.extend_from_slice(&key_pair.to_bytes());
    out.extend_from_slice(public_key);
    out
}
