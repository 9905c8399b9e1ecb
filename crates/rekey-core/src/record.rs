//! Record content: AES-256-GCM under the record key. Migration never
//! touches it; it only re-wraps record keys.

use crate::crypto::aead::Aead;
use crate::envelope::{NONCE_LEN, TAG_LEN};
use crate::error::CryptoError;
use crate::ids::{RecordId, VaultId};
use crate::labels;
use crate::secret::{RecordKey, SecretBytes};
use rand_core::CryptoRngCore;

/// Version byte that starts every record ciphertext.
pub const RECORD_VERSION: u8 = 1;

/// Encrypts record content: `version ‖ nonce ‖ ciphertext ‖ tag`.
pub fn encrypt_record(
    rng: &mut impl CryptoRngCore,
    key: &RecordKey,
    vault: VaultId,
    record: RecordId,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    encrypt_record_with_nonce(key, vault, record, plaintext, nonce)
}

pub(crate) fn encrypt_record_with_nonce(
    key: &RecordKey,
    vault: VaultId,
    record: RecordId,
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, CryptoError> {
    let aad = labels::record_aad(RECORD_VERSION, vault, record);
    let ct = Aead::Aes256Gcm.seal(key.dangerous_as_bytes(), &nonce, &aad, plaintext)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts record content made by [`encrypt_record`].
pub fn decrypt_record(
    key: &RecordKey,
    vault: VaultId,
    record: RecordId,
    bytes: &[u8],
) -> Result<SecretBytes, CryptoError> {
    if bytes.len() < 1 + NONCE_LEN + TAG_LEN || bytes[0] != RECORD_VERSION {
        return Err(CryptoError::Decrypt);
    }
    let aad = labels::record_aad(RECORD_VERSION, vault, record);
    let pt = Aead::Aes256Gcm.open(
        key.dangerous_as_bytes(),
        &bytes[1..1 + NONCE_LEN],
        &aad,
        &bytes[1 + NONCE_LEN..],
    )?;
    Ok(SecretBytes::from_slice(&pt))
}
